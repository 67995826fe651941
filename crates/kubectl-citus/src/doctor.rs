//! Hazards found in gathered facts. Pure: no IO, so every rule is unit-tested on hand-made facts.

use std::collections::BTreeMap;

use crate::model::*;

/// Every check, in the order they run (README, "doctor").
pub const CHECKS: &[&str] = &[
    "node-inactive",
    "node-unreachable",
    "node-check-failed",
    "citus-library-mismatch",
    "citus-extension-outdated",
    "version-differs-between-nodes",
    "wal-level-not-logical",
    "cleanup-leftovers",
    "worker-not-accepting-shards",
    "table-without-replica-identity",
    "shard-skew",
    "rebalance-failed",
];

/// Checks that need the Kubernetes API (cluster mode only).
pub const POD_CHECKS: &[&str] = &["worker-pod-unregistered", "node-without-pod"];

pub fn analyse(status: &Status, cleanup: &[CleanupRecord], skew_threshold: f64) -> DoctorReport {
    let mut h = Vec::new();
    let mut push = |check: &'static str, severity: Severity, subject: String, message: String, fix: String| {
        h.push(Hazard { check, severity, subject, message, fix });
    };
    let addr = |n: &Node| format!("{}:{}", n.name, n.port);

    for n in &status.nodes {
        if !n.active {
            push(
                "node-inactive",
                Severity::Error,
                addr(n),
                format!("{} node {} is inactive: queries on its shards fail", role(n), addr(n)),
                format!(
                    "bring the server back, then SELECT citus_activate_node('{}', {}); or, if it is gone for good \
                     and holds no shards, SELECT citus_remove_node('{}', {});",
                    n.name, n.port, n.name, n.port
                ),
            );
        }
        if n.reachable == Some(false) {
            push(
                "node-unreachable",
                Severity::Error,
                addr(n),
                format!("the coordinator cannot reach {}: {}", addr(n), n.error.as_deref().unwrap_or("no detail")),
                "check that the pod runs and is ready (kubectl get pods), that its DNS name resolves from the \
                 coordinator, the NetworkPolicies, and that the password of the connecting role is known to the \
                 node (pg_dist_authinfo or the pgpass file)"
                    .into(),
            );
        }
        if let (Some(lib), Some(ext)) = (&n.citus_version, &n.citus_extension_version) {
            if !same_minor(lib, ext) {
                push(
                    "citus-library-mismatch",
                    Severity::Error,
                    addr(n),
                    format!(
                        "{} loads citus.so {lib} but the database has the extension at {ext}: every Citus \
                         function fails there",
                        addr(n)
                    ),
                    format!("on {}, run ALTER EXTENSION citus UPDATE; (after upgrading every node's image)", addr(n)),
                );
            } else if let Some(dflt) = &n.citus_default_version {
                if dflt != ext {
                    push(
                        "citus-extension-outdated",
                        Severity::Warning,
                        addr(n),
                        format!("{}: extension citus is at {ext}, the library offers {dflt}", addr(n)),
                        format!("on {}, run ALTER EXTENSION citus UPDATE;", addr(n)),
                    );
                }
            }
        }
        if let Some(w) = &n.wal_level {
            if w != "logical" {
                push(
                    "wal-level-not-logical",
                    Severity::Warning,
                    addr(n),
                    format!("{} has wal_level={w}: online shard moves (logical replication) fail", addr(n)),
                    "set wal_level = logical on every node and restart them, or move shards with \
                     --shard-transfer-mode block_writes"
                        .into(),
                );
            }
        }
        if n.role == Role::Worker && n.active && !n.should_have_shards {
            push(
                "worker-not-accepting-shards",
                Severity::Warning,
                addr(n),
                format!(
                    "worker {} has shouldhaveshards=false (left by an interrupted drain?) and holds {} shard(s): \
                     rebalances put nothing on it",
                    addr(n),
                    n.shards
                ),
                format!(
                    "to keep it: SELECT citus_set_node_property('{}', {}, 'shouldhaveshards', true); then \
                     kubectl citus rebalance; to remove it: kubectl citus drain {} --wait",
                    n.name,
                    n.port,
                    addr(n)
                ),
            );
        }
    }
    if let Some(e) = &status.node_check_error {
        push(
            "node-check-failed",
            Severity::Error,
            "coordinator".into(),
            format!("the coordinator could not query the other nodes: {e}"),
            "if the message mentions the Citus version, run ALTER EXTENSION citus UPDATE; on the coordinator; \
             otherwise check that every node is up (kubectl get pods)"
                .into(),
        );
    }

    for (what, get) in [
        ("PostgreSQL", (|n: &Node| n.postgres_version.clone()) as fn(&Node) -> Option<String>),
        ("Citus library", |n: &Node| n.citus_version.clone()),
        ("Citus extension", |n: &Node| n.citus_extension_version.clone()),
    ] {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &status.nodes {
            if let Some(v) = get(n) {
                let v = if what == "PostgreSQL" { major(&v) } else { v };
                seen.entry(v).or_default().push(addr(n));
            }
        }
        if seen.len() > 1 {
            let list: Vec<String> = seen.iter().map(|(v, ns)| format!("{v} on {}", ns.join(", "))).collect();
            push(
                "version-differs-between-nodes",
                Severity::Error,
                what.into(),
                format!("{what} versions differ between nodes: {}", list.join("; ")),
                "run the same image on every node (one image.tag for the release), then ALTER EXTENSION citus \
                 UPDATE; on each node"
                    .into(),
            );
        }
    }

    if !cleanup.is_empty() {
        let orphaned: Vec<&CleanupRecord> = cleanup.iter().filter(|c| !c.node_exists).collect();
        let names: Vec<&str> = cleanup.iter().take(5).map(|c| c.object_name.as_str()).collect();
        push(
            "cleanup-leftovers",
            if orphaned.is_empty() { Severity::Warning } else { Severity::Error },
            "pg_dist_cleanup".into(),
            format!(
                "{} pg_dist_cleanup record(s) ({}{}){}",
                cleanup.len(),
                names.join(", "),
                if cleanup.len() > names.len() { ", ..." } else { "" },
                if orphaned.is_empty() {
                    String::from(": old shard copies not dropped yet")
                } else {
                    format!(
                        "; {} of them for node groups no longer in pg_dist_node: later moves of those shards fail",
                        orphaned.len()
                    )
                }
            ),
            "CALL citus_cleanup_orphaned_resources(); on the coordinator (records of removed nodes: re-add the \
             node and run it, or delete those rows from pg_dist_cleanup once the shards are gone)"
                .into(),
        );
    }

    let mut no_identity: Vec<&Table> =
        status.tables.list.iter().filter(|t| t.kind != "reference" && !t.has_replica_identity).collect();
    no_identity.sort_by(|a, b| a.name.cmp(&b.name));
    for t in no_identity {
        push(
            "table-without-replica-identity",
            Severity::Warning,
            t.name.clone(),
            format!(
                "{} table {} has no primary key or replica identity: online shard moves (rebalance, drain) of \
                 it fail",
                t.kind, t.name
            ),
            format!(
                "ALTER TABLE {} ADD PRIMARY KEY (...); or ALTER TABLE {} REPLICA IDENTITY FULL; or move with \
                 --shard-transfer-mode block_writes",
                t.name, t.name
            ),
        );
    }

    if status.shards.skew_bytes > skew_threshold {
        push(
            "shard-skew",
            Severity::Warning,
            "shards".into(),
            format!(
                "the fullest worker holds {:.2}x the average bytes (threshold {skew_threshold:.2}; by shard \
                 count {:.2}x)",
                status.shards.skew_bytes, status.shards.skew_count
            ),
            "kubectl citus rebalance --wait".into(),
        );
    }

    if let Some(j) = &status.rebalance {
        if matches!(j.state.as_str(), "failed" | "failing") {
            push(
                "rebalance-failed",
                Severity::Error,
                format!("job {}", j.job_id),
                format!(
                    "background job {} ({}) is {}: {}",
                    j.job_id,
                    j.job_type,
                    j.state,
                    j.last_message.as_deref().unwrap_or("no message")
                ),
                "fix the cause in the message (kubectl citus doctor lists the usual ones), then kubectl citus \
                 rebalance --wait"
                    .into(),
            );
        }
    }

    if let Some(p) = &status.pods {
        for pod in &p.unregistered_pods {
            push(
                "worker-pod-unregistered",
                Severity::Error,
                pod.clone(),
                format!("worker pod {pod} is not in pg_dist_node: it holds no shards and takes no queries"),
                "check the registration Job's log (kubectl logs job/<fullname>-register-workers), or run helm \
                 upgrade to re-run it; by hand: SELECT citus_add_node('<pod DNS name>', 5432);"
                    .into(),
            );
        }
        for node in &p.nodes_without_pod {
            push(
                "node-without-pod",
                Severity::Error,
                node.clone(),
                format!("registered worker {node} has no pod: its shards are unavailable"),
                "scale the worker StatefulSet back up; if the node is gone for good and held shards, restore \
                 them first; remove it with SELECT citus_remove_node(host, port);"
                    .into(),
            );
        }
    }

    let mut checks: Vec<&'static str> = CHECKS.to_vec();
    if status.pods.is_some() {
        checks.extend_from_slice(POD_CHECKS);
    }
    DoctorReport { api_version: API_VERSION, kind: "DoctorReport", checks, hazards: h }
}

fn role(n: &Node) -> &'static str {
    match n.role {
        Role::Coordinator => "coordinator",
        Role::Worker => "worker",
    }
}

/// "13.0.3" (library) and "13.0-1" (extension) belong together when major.minor agree.
fn same_minor(lib: &str, ext: &str) -> bool {
    let mm = |s: &str| {
        let mut it = s.split(['.', '-']);
        (it.next().unwrap_or("").to_owned(), it.next().unwrap_or("").to_owned())
    };
    mm(lib) == mm(ext)
}

/// "15.20 (Debian ...)" -> "15".
fn major(v: &str) -> String {
    v.split(['.', ' ']).next().unwrap_or(v).to_owned()
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::model::*;

    pub(crate) fn node(id: i32, group: i32, name: &str) -> Node {
        Node {
            id: Some(id),
            group_id: group,
            role: if group == 0 { Role::Coordinator } else { Role::Worker },
            name: name.into(),
            port: 5432,
            active: true,
            should_have_shards: group != 0,
            reachable: Some(true),
            error: None,
            postgres_version: Some("15.20".into()),
            citus_version: Some("13.0.3".into()),
            citus_extension_version: Some("13.0-1".into()),
            citus_default_version: Some("13.0-1".into()),
            wal_level: Some("logical".into()),
            shards: 16,
            shard_bytes: 1000,
            placements: 16,
        }
    }

    pub(crate) fn status_of(nodes: Vec<Node>) -> Status {
        Status {
            api_version: API_VERSION,
            kind: "Status",
            shards: crate::sql::shard_summary(&nodes),
            nodes,
            tables: TableSummary { distributed: 0, reference: 0, local: 0, list: vec![] },
            rebalance: None,
            pods: None,
            node_check_error: None,
        }
    }

    /// A healthy coordinator with two workers.
    pub(crate) fn status() -> Status {
        status_of(vec![node(1, 0, "c"), node(2, 1, "w0"), node(3, 2, "w1")])
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{node, status_of as status};
    use super::*;

    fn checks(r: &DoctorReport) -> Vec<&'static str> {
        r.hazards.iter().map(|h| h.check).collect()
    }

    #[test]
    fn healthy_cluster_has_no_hazards() {
        let s = status(vec![node(1, 0, "c"), node(2, 1, "w0"), node(3, 2, "w1")]);
        let r = analyse(&s, &[], 1.5);
        assert!(r.hazards.is_empty(), "{:?}", r.hazards);
        assert!(!r.checks.contains(&"worker-pod-unregistered"));
    }

    #[test]
    fn node_problems() {
        let mut w0 = node(2, 1, "w0");
        w0.active = false;
        let mut w1 = node(3, 2, "w1");
        w1.reachable = Some(false);
        w1.error = Some("connection refused".into());
        w1.citus_version = None;
        let mut w2 = node(4, 3, "w2");
        w2.should_have_shards = false;
        w2.wal_level = Some("replica".into());
        let r = analyse(&status(vec![node(1, 0, "c"), w0, w1, w2]), &[], 10.0);
        assert_eq!(
            checks(&r),
            ["node-inactive", "node-unreachable", "wal-level-not-logical", "worker-not-accepting-shards"]
        );
        assert!(r.hazards[0].fix.contains("citus_activate_node('w0', 5432)"));
        assert!(r.hazards[1].message.contains("connection refused"));
        assert!(r.hazards[3].fix.contains("citus_set_node_property('w2', 5432, 'shouldhaveshards', true)"));
    }

    #[test]
    fn versions() {
        let mut w0 = node(2, 1, "w0");
        w0.citus_version = Some("13.1.0".into());
        let mut w1 = node(3, 2, "w1");
        w1.citus_default_version = Some("13.0-2".into());
        let r = analyse(&status(vec![node(1, 0, "c"), w0, w1]), &[], 10.0);
        assert_eq!(checks(&r), ["citus-library-mismatch", "citus-extension-outdated", "version-differs-between-nodes"]);
        assert!(r.hazards[2].message.contains("13.1.0 on w0:5432"), "{}", r.hazards[2].message);
        assert!(same_minor("13.0.3", "13.0-1"));
        assert!(!same_minor("13.2.2", "13.0-1"));
    }

    #[test]
    fn cleanup_of_a_removed_group_is_an_error() {
        let s = status(vec![node(1, 0, "c"), node(2, 1, "w0")]);
        let rec = |exists| CleanupRecord {
            record_id: 1,
            object_name: "public.events_102022".into(),
            node_group_id: 7,
            node_exists: exists,
        };
        let r = analyse(&s, &[rec(true)], 10.0);
        assert_eq!(r.hazards[0].severity, Severity::Warning);
        let r = analyse(&s, &[rec(false)], 10.0);
        assert_eq!(r.hazards[0].severity, Severity::Error);
        assert!(r.hazards[0].message.contains("no longer in pg_dist_node"));
        assert!(r.hazards[0].fix.contains("citus_cleanup_orphaned_resources"));
    }

    #[test]
    fn replica_identity_and_skew() {
        let mut w0 = node(2, 1, "w0");
        w0.shard_bytes = 9000;
        let mut s = status(vec![node(1, 0, "c"), w0, node(3, 2, "w1")]);
        s.tables.list.push(Table {
            name: "events".into(),
            kind: "distributed".into(),
            distribution_column: Some("id".into()),
            colocation_id: 1,
            shard_count: 32,
            bytes: 0,
            has_replica_identity: false,
        });
        s.tables.list.push(Table {
            name: "countries".into(),
            kind: "reference".into(),
            distribution_column: None,
            colocation_id: 2,
            shard_count: 1,
            bytes: 0,
            has_replica_identity: false,
        });
        // Coordinator does not hold shards: average over w0 and w1 = 5000, max 9000.
        assert_eq!(s.shards.skew_bytes, 1.8);
        let r = analyse(&s, &[], 1.5);
        assert_eq!(checks(&r), ["table-without-replica-identity", "shard-skew"]);
        assert_eq!(r.hazards[0].subject, "events");
        assert!(analyse(&s, &[], 2.0).hazards.iter().all(|h| h.check != "shard-skew"));
    }

    #[test]
    fn pods_checks_only_in_cluster_mode() {
        let mut s = status(vec![node(1, 0, "c"), node(2, 1, "w0")]);
        s.pods = Some(PodCheck {
            unregistered_pods: vec!["my-citus-worker-2".into()],
            nodes_without_pod: vec!["old:5432".into()],
        });
        let r = analyse(&s, &[], 10.0);
        assert_eq!(checks(&r), ["worker-pod-unregistered", "node-without-pod"]);
        assert!(r.checks.contains(&"node-without-pod"));
    }
}
