//! What every benchmark of this crate needs: the chart, the host check, fixed passwords, psql on the
//! coordinator and a timer that prints.

// Each benchmark compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use local_cluster::{Cluster, Postgres};
use serde_json::{json, Value};

pub const COORDINATOR: &str = "my-citus-coordinator-0";

/// The chart directory of this repository.
pub fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../charts/citus")
}

/// The PostgreSQL installation with Citus, or `None` after printing `skipped: <reason>`.
pub fn citus_host() -> Option<Postgres> {
    match local_cluster::host::check(local_cluster::host::Needs::Citus) {
        Ok(host) => Some(host.postgres),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// Chart values with fixed passwords (a benchmark renders several times) and `extra` on top.
pub fn values(extra: Value) -> Value {
    let mut v = json!({"auth": {"postgresPassword": "bench-postgres", "password": "bench-app"}});
    if let (Some(base), Value::Object(extra)) = (v.as_object_mut(), extra) {
        base.extend(extra);
    }
    v
}

/// Runs `sql` as postgres in database citus on the coordinator pod; unaligned, tuples only.
pub fn coordinator_psql(cluster: &Cluster, sql: &str) -> anyhow::Result<String> {
    let argv = [
        "psql",
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "/var/run/postgresql",
        "-U",
        "postgres",
        "-d",
        "citus",
        "-f",
        "-",
    ];
    let out = cluster.exec(COORDINATOR, &argv, &[], Some(sql.as_bytes()))?;
    ensure!(out.status.success(), "psql on the coordinator: {}", out.stderr);
    Ok(out.stdout.trim().to_owned())
}

/// Runs `f`, prints how long it took under `what`, returns the time.
pub fn timed<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    f().with_context(|| what.to_owned())?;
    let took = started.elapsed();
    println!("  {what}: {:.1} s", took.as_secs_f64());
    Ok(took)
}
