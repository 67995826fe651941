//! Turning gathered structs into text: a human table, or JSON/YAML of the struct itself.

use comfy_table::{presets::NOTHING, Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;

use crate::cli::OutputFormat;
use crate::error::{Error, Result};
use crate::model::*;

/// Something with a human (table) form.
pub trait Human {
    fn human(&self) -> String;
}

pub fn render<T: Serialize + Human>(value: &T, format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Table => Ok(value.human()),
        OutputFormat::Json => {
            serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| Error::Encode(e.to_string()))
        }
        OutputFormat::Yaml => serde_yaml::to_string(value).map_err(|e| Error::Encode(e.to_string())),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(Cell::new));
    t
}

/// The table as text, without the trailing blanks of the last column.
fn grid(t: &Table) -> String {
    t.to_string().lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
}

fn right(s: impl ToString) -> Cell {
    Cell::new(s.to_string()).set_alignment(CellAlignment::Right)
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// 1536 -> "1.5 KiB".
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// 3725 -> "1h2m".
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

impl Human for Status {
    fn human(&self) -> String {
        let mut out = String::new();
        let mut t = table(&[
            "ROLE",
            "NODE",
            "ID",
            "ACTIVE",
            "SHARDS?",
            "REACHABLE",
            "POSTGRES",
            "CITUS",
            "EXTENSION",
            "SHARDS",
            "BYTES",
        ]);
        for n in &self.nodes {
            t.add_row(vec![
                Cell::new(match n.role {
                    Role::Coordinator => "coordinator",
                    Role::Worker => "worker",
                }),
                Cell::new(format!("{}:{}", n.name, n.port)),
                right(n.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into())),
                Cell::new(yes(n.active)),
                Cell::new(yes(n.should_have_shards)),
                Cell::new(match n.reachable {
                    Some(true) => "yes".to_owned(),
                    Some(false) => format!("NO: {}", n.error.as_deref().unwrap_or("")),
                    None => "?".to_owned(),
                }),
                Cell::new(opt(&n.postgres_version.as_ref().map(|v| v.split(' ').next().unwrap_or(v).to_owned()))),
                Cell::new(opt(&n.citus_version)),
                Cell::new(opt(&n.citus_extension_version)),
                right(n.shards),
                right(bytes(n.shard_bytes)),
            ]);
        }
        out.push_str(&format!("Nodes\n{}\n", grid(&t)));
        out.push_str(&format!(
            "Shards: {} ({}), skew {:.2}x by bytes, {:.2}x by count (fullest worker / average)\n",
            self.shards.total,
            bytes(self.shards.bytes),
            self.shards.skew_bytes,
            self.shards.skew_count
        ));
        if let Some(e) = &self.node_check_error {
            out.push_str(&format!("Per-node checks failed: {e}\n"));
        }
        out.push_str(&format!(
            "\nTables: {} distributed, {} reference, {} local\n",
            self.tables.distributed, self.tables.reference, self.tables.local
        ));
        if !self.tables.list.is_empty() {
            let mut t = table(&["TABLE", "TYPE", "COLUMN", "COLOCATION", "SHARDS", "BYTES", "REPLICA IDENTITY"]);
            for x in &self.tables.list {
                t.add_row(vec![
                    Cell::new(&x.name),
                    Cell::new(&x.kind),
                    Cell::new(opt(&x.distribution_column)),
                    right(x.colocation_id),
                    right(x.shard_count),
                    right(bytes(x.bytes)),
                    Cell::new(if x.has_replica_identity { "yes" } else { "NO" }),
                ]);
            }
            out.push_str(&format!("{}\n", grid(&t)));
        }
        out.push('\n');
        match &self.rebalance {
            None => out.push_str("Rebalance: none has run\n"),
            Some(j) => out.push_str(&job_text(j)),
        }
        if let Some(p) = &self.pods {
            out.push('\n');
            if p.unregistered_pods.is_empty() && p.nodes_without_pod.is_empty() {
                out.push_str("Pods: every worker pod is registered and every worker has a pod\n");
            }
            for pod in &p.unregistered_pods {
                out.push_str(&format!("Pod not registered: {pod}\n"));
            }
            for n in &p.nodes_without_pod {
                out.push_str(&format!("Registered worker without a pod: {n}\n"));
            }
        }
        out
    }
}

fn job_text(j: &RebalanceJob) -> String {
    let mut out = format!(
        "Rebalance: job {} ({}) {}: {}/{} tasks done, {} running, {} failed or cancelled; started {}, finished {}\n",
        j.job_id,
        j.job_type,
        j.state,
        j.tasks_done,
        j.tasks_total,
        j.tasks_running,
        j.tasks_failed,
        j.started_at.as_deref().unwrap_or("-"),
        j.finished_at.as_deref().unwrap_or("-"),
    );
    if let Some(m) = &j.last_message {
        out.push_str(&format!("  last message: {}\n", m.trim()));
    }
    let moving: Vec<&ShardMove> = j.moves.iter().filter(|m| m.progress == 1).collect();
    if !moving.is_empty() {
        let mut t = table(&["SHARD", "TABLE", "FROM", "TO", "COPIED", "OF"]);
        for m in moving {
            t.add_row(vec![
                right(m.shard_id),
                Cell::new(&m.table),
                Cell::new(&m.source),
                Cell::new(&m.target),
                right(bytes(m.target_bytes)),
                right(bytes(m.source_bytes)),
            ]);
        }
        out.push_str(&format!("{}\n", grid(&t)));
    }
    out
}

impl Human for DoctorReport {
    fn human(&self) -> String {
        if self.hazards.is_empty() {
            return format!("No hazards found ({} checks ran).\n", self.checks.len());
        }
        let mut out = String::new();
        for h in &self.hazards {
            let sev = match h.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "WARNING",
            };
            out.push_str(&format!("{sev} [{}] {}\n  {}\n  fix: {}\n\n", h.check, h.subject, h.message, h.fix));
        }
        let errors = self.hazards.iter().filter(|h| h.severity == Severity::Error).count();
        out.push_str(&format!(
            "{} hazard(s): {errors} error(s), {} warning(s) ({} checks ran).\n",
            self.hazards.len(),
            self.hazards.len() - errors,
            self.checks.len()
        ));
        out
    }
}

impl Human for RebalanceReport {
    fn human(&self) -> String {
        let mut out = String::new();
        if !self.planned.is_empty() {
            let total: i64 = self.planned.iter().map(|m| m.bytes).sum();
            out.push_str(&format!("Planned moves: {} ({})\n", self.planned.len(), bytes(total)));
            let mut t = table(&["SHARD", "TABLE", "FROM", "TO", "BYTES"]);
            for m in &self.planned {
                t.add_row(vec![
                    right(m.shard_id),
                    Cell::new(&m.table),
                    Cell::new(&m.source),
                    Cell::new(&m.target),
                    right(bytes(m.bytes)),
                ]);
            }
            out.push_str(&format!("{}\n", grid(&t)));
        }
        match &self.job {
            Some(j) => out.push_str(&job_text(j)),
            None => out.push_str("No background job.\n"),
        }
        if let Some(d) = &self.drained_node {
            out.push_str(&format!(
                "Node {}:{}: {} shard(s) and {} cleanup record(s) left\n",
                d.name, d.port, d.shards_left, d.cleanup_records_left
            ));
        }
        out.push_str(&format!("Outcome: {}\n", self.outcome));
        if let Some(n) = &self.next {
            out.push_str(&format!("Next: {n}\n"));
        }
        out
    }
}

impl Human for BackupList {
    fn human(&self) -> String {
        if self.backups.is_empty() {
            return format!("No backups in PVC {}.\n", self.claim);
        }
        let mut t = table(&["BACKUP", "SIZE", "AGE", "COMPLETE"]);
        for b in &self.backups {
            t.add_row(vec![
                Cell::new(&b.name),
                right(bytes(b.bytes)),
                right(age(b.age_seconds)),
                Cell::new(yes(b.complete)),
            ]);
        }
        format!("Backups in PVC {}\n{}\n", self.claim, grid(&t))
    }
}

impl Human for BackupStarted {
    fn human(&self) -> String {
        let mut out = format!("Job {}/{}: {}\n", self.namespace, self.job, self.state);
        if let Some(l) = &self.logs {
            out.push_str(l);
            if !l.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(&format!("Follow it: kubectl logs -n {} -f job/{}\n", self.namespace, self.job));
        }
        out
    }
}

impl Human for ReportWritten {
    fn human(&self) -> String {
        let mut out = format!("Wrote {} ({} files)\n", self.file, self.entries.len());
        for s in &self.skipped {
            out.push_str(&format!("  not collected: {s}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor;

    fn sample() -> Status {
        let mut s = doctor::tests_support::status();
        s.tables.list.push(crate::model::Table {
            name: "events".into(),
            kind: "distributed".into(),
            distribution_column: Some("tenant_id".into()),
            colocation_id: 1,
            shard_count: 32,
            bytes: 1 << 20,
            has_replica_identity: true,
        });
        s.tables.distributed = 1;
        s
    }

    #[test]
    fn json_shape_is_stable() {
        let v: serde_json::Value = serde_json::from_str(&render(&sample(), OutputFormat::Json).unwrap()).unwrap();
        assert_eq!(v["apiVersion"], "kubectl-citus/v1");
        assert_eq!(v["kind"], "Status");
        // serde_json sorts keys; compare as sets.
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |a: &[&str]| {
            let mut k: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            sorted(&["apiVersion", "kind", "nodes", "shards", "tables", "rebalance", "pods", "node_check_error"])
        );
        assert_eq!(
            keys(&v["nodes"][0]),
            sorted(&[
                "id",
                "group_id",
                "role",
                "name",
                "port",
                "active",
                "should_have_shards",
                "reachable",
                "error",
                "postgres_version",
                "citus_version",
                "citus_extension_version",
                "citus_default_version",
                "wal_level",
                "shards",
                "shard_bytes",
                "placements"
            ])
        );
        assert_eq!(v["nodes"][0]["role"], "coordinator");
        assert_eq!(v["tables"]["list"][0]["type"], "distributed");
        assert_eq!(v["shards"]["skew_bytes"], 1.0);
    }

    #[test]
    fn yaml_is_the_same_document() {
        let s = sample();
        let y: serde_json::Value = serde_yaml::from_str(&render(&s, OutputFormat::Yaml).unwrap()).unwrap();
        let j: serde_json::Value = serde_json::from_str(&render(&s, OutputFormat::Json).unwrap()).unwrap();
        assert_eq!(y, j);
    }

    #[test]
    fn table_shows_nodes_and_tables() {
        let t = render(&sample(), OutputFormat::Table).unwrap();
        assert!(t.contains("coordinator") && t.contains("w0:5432"), "{t}");
        assert!(t.contains("events") && t.contains("tenant_id") && t.contains("1.0 MiB"), "{t}");
        assert!(t.contains("Rebalance: none has run"), "{t}");
    }

    #[test]
    fn doctor_table_lists_fixes() {
        let mut s = sample();
        s.nodes[1].active = false;
        let r = doctor::analyse(&s, &[], 10.0);
        let t = render(&r, OutputFormat::Table).unwrap();
        assert!(t.starts_with("ERROR [node-inactive] w0:5432"), "{t}");
        assert!(t.contains("fix: bring the server back"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&render(&r, OutputFormat::Json).unwrap()).unwrap();
        assert_eq!(v["kind"], "DoctorReport");
        assert_eq!(v["hazards"][0]["check"], "node-inactive");
        assert_eq!(v["hazards"][0]["severity"], "error");
    }

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(age(59), "59s");
        assert_eq!(age(3725), "1h2m");
        assert_eq!(age(2 * 86400 + 7200), "2d2h");
    }
}

#[cfg(test)]
mod backup_tests {
    use super::*;

    #[test]
    fn backup_list_table() {
        let l = BackupList {
            api_version: API_VERSION,
            kind: "BackupList",
            claim: "prod-citus-backup".into(),
            backups: crate::k8s::parse_listing(
                "backup\t20261124T020000Z\t2048\t1000\nbackup\t.partial-20261125T020000Z\t10\t4000\nnow\t4600\n",
            )
            .unwrap(),
        };
        let t = render(&l, OutputFormat::Table).unwrap();
        println!("{t}");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "Backups in PVC prod-citus-backup");
        assert!(
            lines[2].contains(".partial-20261125T020000Z") && lines[2].contains("10m0s") && lines[2].ends_with("no")
        );
        assert!(lines[3].contains("2.0 MiB") && lines[3].contains("1h0m") && lines[3].ends_with("yes"));
    }
}
