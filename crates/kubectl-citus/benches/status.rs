//! `kubectl-citus status` against the same SQL run by psql, on a local Citus cluster with 1,000 shards.
//! Both sides are whole processes (start, connect, query, print), alternated, median of the runs.
//! Goal: the binary within 1.5x of psql. Without citus.so it says why and exits 0 without numbers.

#[path = "../tests/support/cluster.rs"]
mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{citus_missing, Cluster};

const RUNS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if let Some(why) = citus_missing() {
        eprintln!("status benchmark skipped: {why}");
        return;
    }
    let c = Cluster::start(2, 0).expect("starting the local Citus cluster");
    // 10 colocated tables x 100 shards = 1,000 shards, plus a reference table.
    c.coordinator.sql("SET citus.shard_count = 100; CREATE TABLE t0 (k int PRIMARY KEY, v text); SELECT create_distributed_table('t0', 'k')");
    for i in 1..10 {
        c.coordinator.sql(&format!(
            "CREATE TABLE t{i} (k int PRIMARY KEY, v text); SELECT create_distributed_table('t{i}', 'k', colocate_with => 't0')"
        ));
    }
    c.coordinator.sql("CREATE TABLE r (k int PRIMARY KEY); SELECT create_reference_table('r'); INSERT INTO t0 SELECT i, 'x' FROM generate_series(1, 10000) i");
    let shards = c.coordinator.sql(
        "SELECT count(*) FROM pg_dist_shard s JOIN pg_dist_partition p USING (logicalrelid) WHERE p.partmethod <> 'n'",
    );
    assert_eq!(shards, "1000");

    let dir = tempfile::tempdir().expect("tempdir");
    let sql_file = dir.path().join("status.sql");
    let sql: String = kubectl_citus::sql::STATUS_QUERIES.iter().map(|q| format!("{q};\n")).collect();
    std::fs::write(&sql_file, sql).expect("writing status.sql");

    let bin = env!("CARGO_BIN_EXE_kubectl-citus");
    let tool = || {
        let t = Instant::now();
        let out = Command::new(bin).args(["--dsn", &c.dsn(), "status", "-o", "json"]).output().expect("kubectl-citus");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        t.elapsed()
    };
    let psql = || {
        let t = Instant::now();
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-p", &c.coordinator.port.to_string(), "-f"])
            .arg(&sql_file)
            .output()
            .expect("psql");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        t.elapsed()
    };
    tool();
    psql();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        a.push(tool());
        b.push(psql());
    }
    let (a, b) = (median(a), median(b));
    let ratio = a.as_secs_f64() / b.as_secs_f64();
    println!(
        "status on 1,000 shards, median of {RUNS}: kubectl-citus {:.1} ms, psql with the same queries {:.1} ms, \
         ratio {ratio:.2}x (goal <= 1.5x){}",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        if ratio <= 1.5 { "" } else { " ABOVE GOAL" }
    );
}
