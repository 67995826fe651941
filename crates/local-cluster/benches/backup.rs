//! Backup and restore throughput of the chart against plain `pg_dump` / `pg_restore`, on the same data in
//! the same run, on the real control plane with this machine as its node. The chart: release A (1
//! coordinator + 3 workers) runs its backup CronJob as a Job (`kubectl create job --from=cronjob/...`, until
//! the Job is complete); release B runs its restore hook on a copy of A's backup volume (`helm upgrade` with
//! `restore.enabled`, until Helm returns). The baseline: one PostgreSQL server (the same
//! binaries, the chart's node settings that matter: wal_level, max_connections), `pg_dump -Fc` and
//! `pg_restore -d` into a new database. Prints MB/s (table data and indexes as the plain server stores
//! them) and the ratios against the goals: backup <= 1.25x pg_dump, restore <= 2x pg_restore. Three rounds,
//! each running all four one after the other, best time of each kept: this machine is shared.
//! Prints `skipped: <reason>` without root, PostgreSQL, Citus or the control plane's binaries.
//! Run: `cargo bench -p local-cluster --bench backup` (about 8 minutes; BACKUP_BENCH_ROWS to change the
//! size, default 1,000,000 rows, about 220 MB).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use local_cluster::Postgres;
use serde_json::{json, Value};
use testbed::Space;

mod common;
use common::timed;

const ROUNDS: u32 = 3;

const SCHEMA: &str = "CREATE TABLE kinds (kind int PRIMARY KEY, name text NOT NULL);\n\
     CREATE TABLE events (tenant_id bigint NOT NULL, id bigint NOT NULL, kind int NOT NULL, \
     ts timestamptz NOT NULL, payload text NOT NULL, PRIMARY KEY (tenant_id, id));\n";
const DISTRIBUTE: &str = "SELECT create_reference_table('kinds');\n\
     SELECT create_distributed_table('events', 'tenant_id');\n";

fn fill(rows: u64) -> String {
    format!(
        "INSERT INTO kinds SELECT k, 'kind ' || k FROM generate_series(0, 999) k;\n\
         INSERT INTO events SELECT g % 1000, g, g % 1000, timestamptz '2025-01-01' + g * interval '1 second', \
         repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g;\n"
    )
}

/// Runs a command as the OS user `postgres` (initdb refuses root); Ok(stdout) or the error with stderr.
fn as_postgres(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .with_context(|| format!("runuser -u postgres -- {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One PostgreSQL server on a socket only, stopped when dropped.
struct PlainServer {
    bin: PathBuf,
    data: PathBuf,
    socket: String,
}

impl PlainServer {
    fn start(postgres: &Postgres, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let status = Command::new("chown").arg("postgres").arg(dir).status()?;
        ensure!(status.success(), "chown postgres {}", dir.display());
        let data = dir.join("data");
        let socket = dir.display().to_string();
        let bin = postgres.bindir.clone();
        let tool = |name: &str| bin.join(name).display().to_string();
        as_postgres(&[&tool("initdb"), "-D", &data.display().to_string(), "-A", "trust", "-U", "postgres"])?;
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{socket}' -c wal_level=logical -c max_connections=200"
        );
        let log = dir.join("server.log").display().to_string();
        as_postgres(&[&tool("pg_ctl"), "-D", &data.display().to_string(), "-l", &log, "-o", &options, "-w", "start"])?;
        Ok(PlainServer { bin, data, socket })
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        as_postgres(&[
            &self.tool("psql"),
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &self.socket,
            "-d",
            db,
            "-c",
            sql,
        ])
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        if let Err(e) = as_postgres(&[&self.tool("pg_ctl"), "-D", &data, "-m", "immediate", "stop"]) {
            eprintln!("stopping the plain server: {e:#}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let Some(postgres) = common::citus_host() else { return Ok(()) };
    let result = run(&postgres);
    testbed::stop();
    result
}

fn restore_values() -> Value {
    testbed::values(json!({"restore": {"enabled": true, "existingClaim": "old-backups", "backup": "latest"}}))
}

fn run(postgres: &Postgres) -> anyhow::Result<()> {
    let rows: u64 = match std::env::var("BACKUP_BENCH_ROWS") {
        Ok(v) => v.parse().context("BACKUP_BENCH_ROWS")?,
        Err(_) => 1_000_000,
    };
    let work = std::env::temp_dir().join(format!("backup-bench-{}", std::process::id()));

    // --- Setup: the same data in one server and in release A; release B empty, with a claim for the copy. ---
    let plain = PlainServer::start(postgres, &work.join("plain"))?;
    plain.psql("postgres", "CREATE DATABASE bench")?;
    plain.psql("bench", &format!("{SCHEMA}{}", fill(rows)))?;
    let bytes: u64 = plain
        .psql("bench", "SELECT pg_total_relation_size('events') + pg_total_relation_size('kinds')")?
        .trim()
        .parse()?;
    let mb = bytes as f64 / 1_048_576.0;
    println!("{rows} rows, {mb:.0} MB (tables and indexes in the plain server)");
    ensure!(mb >= 200.0, "only {mb:.0} MB of data: raise BACKUP_BENCH_ROWS");
    let dump = work.join("plain/bench.dump").display().to_string();

    let a = Space::create(postgres, "bench-backup-a", None)?;
    a.install(json!({"backup": {"enabled": true}}))?;
    a.sql(&format!("{SCHEMA}{DISTRIBUTE}{}", fill(rows)))?;
    let backups = a.volume_dir("my-citus-backup")?;
    let b = Space::create(postgres, "bench-backup-b", None)?;
    b.install(json!({}))?;
    let copy = b.bound_claim("old-backups")?;

    // --- Rounds, each measurement next to its baseline; the best of each counts (other load on the
    // machine only ever adds time). ---------------------------------------------------------------------
    let mut best = [Duration::MAX; 4];
    for round in 1..=ROUNDS {
        println!("round {round}:");
        let job = format!("backup-bench-{round}");
        let times = [
            timed("pg_dump -Fc (one server)", || {
                as_postgres(&[&plain.tool("pg_dump"), "-h", &plain.socket, "-Fc", "-f", &dump, "bench"])
            })?,
            timed("backup Job (chart, 1 + 3)", || {
                a.kubectl(&["create", "job", &job, "--from=cronjob/my-citus-backup"])?;
                a.kubectl(&["wait", "--for=condition=Complete", &format!("job/{job}"), "--timeout=1800s"])
            })?,
            {
                plain.psql("postgres", "DROP DATABASE IF EXISTS restored")?;
                plain.psql("postgres", "CREATE DATABASE restored")?;
                timed("pg_restore (one server)", || {
                    as_postgres(&[&plain.tool("pg_restore"), "-h", &plain.socket, "-d", "restored", &dump])
                })?
            },
            {
                if round == 1 {
                    let status =
                        Command::new("cp").arg("-a").arg(format!("{}/.", backups.display())).arg(&copy).status()?;
                    ensure!(status.success(), "copying the backup volume");
                } else {
                    b.sql("DROP TABLE events, kinds; DROP SCHEMA citus_chart CASCADE;")?;
                }
                timed("restore hook (chart, 1 + 3, helm upgrade)", || b.upgrade_values(&restore_values()))?
            },
        ];
        for (best, time) in best.iter_mut().zip(times) {
            *best = (*best).min(time);
        }
        let restored = plain.psql("restored", "SELECT count(*) FROM events")?;
        ensure!(restored.trim() == rows.to_string(), "pg_restore gave {restored} rows");
        let restored = b.sql("SELECT count(*) FROM events")?;
        ensure!(restored == rows.to_string(), "the restore gave {restored} rows");
    }
    let plain_size = std::fs::metadata(&dump)?.len() as f64 / 1_048_576.0;
    let latest = std::fs::read_to_string(backups.join("latest"))?;
    let out = Command::new("du").arg("-sk").arg(backups.join(latest.trim())).output()?;
    let chart_size =
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("0").parse::<f64>()? / 1024.0;
    drop((plain, a, b));
    if let Err(e) = std::fs::remove_dir_all(&work) {
        eprintln!("removing {}: {e}", work.display());
    }
    let [pg_dump, backup, pg_restore, restore] = best;
    println!("dump sizes: pg_dump -Fc {plain_size:.0} MB, chart backup {chart_size:.0} MB (gzip level 1)");

    let rate = |d: Duration| mb / d.as_secs_f64();
    let backup_ratio = backup.as_secs_f64() / pg_dump.as_secs_f64();
    let restore_ratio = restore.as_secs_f64() / pg_restore.as_secs_f64();
    let verdict = |ratio: f64, goal: f64| {
        if ratio <= goal {
            "goal met"
        } else {
            "goal MISSED"
        }
    };
    println!("best of {ROUNDS} ({mb:.0} MB):");
    println!(
        "  backup:  {:.1} MB/s (pg_dump {:.1} MB/s), ratio {backup_ratio:.2} (goal <= 1.25: {})",
        rate(backup),
        rate(pg_dump),
        verdict(backup_ratio, 1.25)
    );
    println!(
        "  restore: {:.1} MB/s (pg_restore {:.1} MB/s), ratio {restore_ratio:.2} (goal <= 2.00: {})",
        rate(restore),
        rate(pg_restore),
        verdict(restore_ratio, 2.0)
    );
    Ok(())
}
