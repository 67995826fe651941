//! The compiled `kubectl-citus` against a real local Citus cluster (coordinator + 2 workers + 1 spare) with
//! --dsn. Runs its trials one after another on one cluster; each trial sets up what it needs. Without
//! citus.so every trial is reported as ignored, with the reason printed first.

mod support;

use std::process::Command;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use support::cluster::{citus_missing, Cluster};

/// One run of the binary: exit code, stdout, stderr; the failure message shows all of it.
struct Run {
    args: Vec<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "kubectl-citus {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
    fn json(&self) -> Result<Value, Failed> {
        serde_json::from_str(&self.stdout).map_err(|e| format!("stdout is not JSON ({e})\n{}", self.show()).into())
    }
    fn expect_code(self, code: i32) -> Result<Run, Failed> {
        if self.code == code {
            Ok(self)
        } else {
            Err(format!("expected exit code {code}\n{}", self.show()).into())
        }
    }
}

fn run(c: &Cluster, args: &[&str]) -> Run {
    let mut all = vec!["--dsn".to_owned(), c.dsn()];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-citus"))
        .args(&all)
        .env_remove("PGHOST")
        .env_remove("PGPASSWORD")
        .output()
        .expect("running kubectl-citus");
    let r = Run {
        args: all,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // Shown with --nocapture: the real output of each command.
    println!("{}", r.show());
    r
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

/// Tables every trial may rely on: `events` (8 shards, primary key) and reference table `kinds`.
fn base_tables(c: &Cluster) {
    c.coordinator.sql(
        "CREATE TABLE IF NOT EXISTS events (tenant int, id bigint, payload text, PRIMARY KEY (tenant, id));
         CREATE TABLE IF NOT EXISTS kinds (id int PRIMARY KEY, name text);",
    );
    if c.coordinator.sql("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'events'::regclass") == "0" {
        c.coordinator.sql("SET citus.shard_count = 8; SELECT create_distributed_table('events', 'tenant')");
        c.coordinator.sql("SELECT create_reference_table('kinds')");
        c.coordinator.sql(
            "INSERT INTO events SELECT i % 50, i, repeat('x', 200) FROM generate_series(1, 20000) i;
             INSERT INTO kinds VALUES (1, 'a'), (2, 'b');",
        );
    }
}

fn status(c: &Cluster) -> Result<(), Failed> {
    base_tables(c);
    let j = run(c, &["status", "-o", "json"]).expect_code(0)?.json()?;
    ensure(j["kind"] == "Status" && j["apiVersion"] == "kubectl-citus/v1", || format!("header: {j}"))?;
    let nodes = j["nodes"].as_array().ok_or("no nodes")?;
    let registered = c.coordinator.sql("SELECT count(*) FROM pg_dist_node").parse::<usize>()?;
    ensure(nodes.len() == registered, || format!("{} nodes, pg_dist_node has {registered}", nodes.len()))?;
    ensure(nodes[0]["role"] == "coordinator", || format!("first node: {}", nodes[0]))?;
    let lib = c.coordinator.sql("SHOW citus.version");
    for n in nodes {
        ensure(n["reachable"] == true, || format!("unreachable: {n}"))?;
        ensure(n["citus_version"] == lib.as_str(), || format!("citus_version {} != {lib}", n["citus_version"]))?;
        ensure(n["wal_level"] == "logical", || format!("wal_level: {n}"))?;
    }
    let shards: i64 = c
        .coordinator
        .sql("SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid) JOIN pg_dist_partition t USING (logicalrelid) WHERE t.partmethod <> 'n'")
        .parse()?;
    ensure(j["shards"]["total"] == shards, || format!("shards.total {} != {shards}", j["shards"]["total"]))?;
    let per_node: i64 = nodes.iter().map(|n| n["shards"].as_i64().unwrap_or(0)).sum();
    ensure(per_node == shards, || format!("per-node shards add up to {per_node}, not {shards}"))?;
    let tables = j["tables"]["list"].as_array().ok_or("no tables")?;
    let events = tables.iter().find(|t| t["name"] == "events").ok_or("events missing")?;
    ensure(
        events["type"] == "distributed" && events["shard_count"] == 8 && events["has_replica_identity"] == true,
        || format!("events: {events}"),
    )?;
    ensure(events["bytes"].as_i64().unwrap_or(0) > 1_000_000, || format!("events bytes: {events}"))?;
    ensure(j["tables"]["reference"].as_i64() >= Some(1), || format!("tables: {}", j["tables"]))?;

    let y: Value = serde_yaml::from_str(&run(c, &["status", "-o", "yaml"]).expect_code(0)?.stdout)?;
    ensure(y["nodes"] == j["nodes"] && y["tables"]["list"] == j["tables"]["list"], || "yaml differs from json".into())?;

    let t = run(c, &["status"]).expect_code(0)?.stdout;
    let coord = format!("127.0.0.1:{}", c.coordinator.port);
    ensure(t.contains(&coord) && t.contains("events") && t.contains("distributed"), || format!("table output:\n{t}"))?;
    Ok(())
}

fn doctor(c: &Cluster) -> Result<(), Failed> {
    base_tables(c);
    let w1 = &c.workers[1];
    c.coordinator.sql(&format!("SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', true)", w1.port));
    c.coordinator.sql("DROP TABLE IF EXISTS planted_no_pk");
    let clean = run(c, &["doctor", "-o", "json"]);
    // A fresh cluster may have deferred cleanup records from earlier trials; only those are tolerated.
    let j = clean.json()?;
    let other: Vec<&Value> = j["hazards"]
        .as_array()
        .ok_or("no hazards array")?
        .iter()
        .filter(|h| h["check"] != "cleanup-leftovers")
        .collect();
    ensure(other.is_empty(), || format!("hazards on a healthy cluster: {other:?}"))?;

    // Plant: a worker left shouldhaveshards=false, a distributed table without replica identity.
    c.coordinator.sql(&format!("SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', false)", w1.port));
    c.coordinator.sql(
        "CREATE TABLE planted_no_pk (tenant int, v text); SELECT create_distributed_table('planted_no_pk', 'tenant')",
    );
    let r = run(c, &["doctor"]).expect_code(1)?;
    ensure(
        r.stdout.contains("[worker-not-accepting-shards]")
            && r.stdout.contains("[table-without-replica-identity] planted_no_pk"),
        || r.show(),
    )?;
    let j = run(c, &["doctor", "-o", "json"]).expect_code(1)?.json()?;
    let checks: Vec<&str> =
        j["hazards"].as_array().ok_or("hazards")?.iter().filter_map(|h| h["check"].as_str()).collect();
    ensure(
        checks.contains(&"worker-not-accepting-shards") && checks.contains(&"table-without-replica-identity"),
        || format!("{checks:?}"),
    )?;
    let h = j["hazards"]
        .as_array()
        .ok_or("hazards")?
        .iter()
        .find(|h| h["check"] == "worker-not-accepting-shards")
        .ok_or("missing")?;
    ensure(h["subject"] == format!("127.0.0.1:{}", w1.port).as_str(), || format!("{h}"))?;
    ensure(h["fix"].as_str().unwrap_or("").contains("citus_set_node_property"), || format!("{h}"))?;

    c.coordinator.sql(&format!("SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', true)", w1.port));
    c.coordinator.sql("DROP TABLE planted_no_pk");
    Ok(())
}

fn on_node(c: &Cluster, port: u16) -> i64 {
    c.coordinator
        .sql(&format!(
            "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
               JOIN pg_dist_shard s USING (shardid) JOIN pg_dist_partition t USING (logicalrelid)
              WHERE n.nodeport = {port} AND t.partmethod <> 'n'"
        ))
        .parse()
        .unwrap_or(-1)
}

fn rebalance(c: &Cluster) -> Result<(), Failed> {
    base_tables(c);
    let rows_before = c.coordinator.sql("SELECT count(*) FROM events");
    let spare = &c.workers[2];
    c.coordinator.sql(&format!("SELECT citus_add_node('127.0.0.1', {})", spare.port));
    let r = run(c, &["rebalance", "--wait", "-o", "json"]).expect_code(0)?;
    let j = r.json()?;
    ensure(j["outcome"] == "finished" || j["outcome"] == "nothing-to-do", || r.show())?;
    ensure(j["outcome"] == "finished", || format!("adding a worker left nothing to move?\n{}", r.show()))?;
    ensure(!j["planned"].as_array().map(Vec::is_empty).unwrap_or(true), || r.show())?;
    ensure(j["job"]["state"] == "finished", || r.show())?;
    ensure(r.stderr.contains("moved shard"), || format!("no progress lines:\n{}", r.show()))?;
    let moved = on_node(c, spare.port);
    ensure(moved > 0, || format!("the new worker holds {moved} shards after the rebalance"))?;
    ensure(c.coordinator.sql("SELECT count(*) FROM events") == rows_before, || "rows lost".into())?;

    let s = run(c, &["rebalance", "status", "-o", "json"]).expect_code(0)?.json()?;
    ensure(s["outcome"] == "finished" && s["job"]["job_id"] == j["job"]["job_id"], || format!("{s}"))?;
    let stop = run(c, &["rebalance", "stop"]).expect_code(2)?;
    ensure(stop.stderr.contains("refusing to stop the rebalance") && stop.stderr.contains("what to do"), || {
        stop.show()
    })?;
    Ok(())
}

fn drain(c: &Cluster) -> Result<(), Failed> {
    base_tables(c);
    let w0 = &c.workers[0];
    let target = format!("127.0.0.1:{}", w0.port);
    c.coordinator.sql(&format!("SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', true)", w0.port));
    c.coordinator.sql(
        "DROP TABLE IF EXISTS drain_no_pk; CREATE TABLE drain_no_pk (tenant int, v text);
         SET citus.shard_count = 4; SELECT create_distributed_table('drain_no_pk', 'tenant', colocate_with => 'none');
         INSERT INTO drain_no_pk SELECT i, 'v' FROM generate_series(1, 100) i;",
    );
    if on_node(c, w0.port) == 0 {
        return Err("precondition: worker0 holds no shards".into());
    }
    // Refused: online moves of a table without replica identity would fail.
    let r = run(c, &["drain", &target]).expect_code(2)?;
    ensure(r.stderr.contains("refusing to drain") && r.stderr.contains("drain_no_pk"), || r.show())?;
    ensure(
        c.coordinator.sql(&format!("SELECT shouldhaveshards FROM pg_dist_node WHERE nodeport = {}", w0.port)) == "t",
        || "a refused drain changed the node".into(),
    )?;
    // Refused: the coordinator.
    let r = run(c, &["drain", &format!("127.0.0.1:{}", c.coordinator.port)]).expect_code(2)?;
    ensure(r.stderr.contains("it is the coordinator"), || r.show())?;

    c.coordinator.sql("ALTER TABLE drain_no_pk REPLICA IDENTITY FULL");
    let rows = c.coordinator.sql("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM drain_no_pk)");
    let r = run(c, &["drain", &target, "--wait", "-o", "json"]).expect_code(0)?;
    let j = r.json()?;
    ensure(j["outcome"] == "drained" && j["drained_node"]["shards_left"] == 0, || r.show())?;
    ensure(on_node(c, w0.port) == 0, || format!("{} shards still on {target}", on_node(c, w0.port)))?;
    ensure(
        c.coordinator.sql("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM drain_no_pk)") == rows,
        || "rows lost".into(),
    )?;
    // The tool retries the cleanup for a while; whatever is left, what it says next must match it.
    let next = j["next"].as_str().unwrap_or("");
    let says = if j["drained_node"]["cleanup_records_left"] == 0 {
        "citus_remove_node"
    } else {
        "citus_cleanup_orphaned_resources"
    };
    ensure(next.contains(says), || r.show())?;

    // Leave the cluster usable for other trials.
    c.coordinator.sql(&format!("SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', true)", w0.port));
    c.coordinator.sql("DROP TABLE drain_no_pk");
    Ok(())
}

fn errors_say_what_to_do(c: &Cluster) -> Result<(), Failed> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-citus"))
        .args(["--dsn", &format!("host=127.0.0.1 port={port} user=postgres"), "--connect-timeout", "3", "status"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.code() == Some(2), || format!("exit {:?}: {err}", out.status.code()))?;
    ensure(
        err.contains(&format!("connecting to postgres@127.0.0.1:{port}/postgres failed")) && err.contains("what to do"),
        || err.to_string(),
    )?;
    let r = run(c, &["drain", "nosuchnode"]).expect_code(2)?;
    ensure(
        r.stderr.contains("no node matches") && r.stderr.contains(&format!("127.0.0.1:{}", c.coordinator.port)),
        || r.show(),
    )?;
    Ok(())
}

fn psql_and_report(c: &Cluster) -> Result<(), Failed> {
    let r = run(c, &["psql", "--", "-X", "-t", "-A", "-c", "SELECT count(*) FROM pg_dist_node"]).expect_code(0)?;
    let n = c.coordinator.sql("SELECT count(*) FROM pg_dist_node");
    ensure(r.stdout.trim() == n, || r.show())?;
    let r = run(c, &["psql", "--", "-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT no_such_column"]);
    ensure(r.code == 1 && r.stderr.contains("no_such_column"), || {
        format!("psql's exit code must come through\n{}", r.show())
    })?;

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("report.zip");
    let j = run(c, &["report", "-f", file.to_str().ok_or("path")?, "-o", "json"]).expect_code(0)?.json()?;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&file)?)?;
    for name in [
        "status.json",
        "doctor.json",
        "sql/pg_dist_node.json",
        "sql/pg_dist_placement.json",
        "sql/settings.json",
        "README.txt",
    ] {
        ensure(zip.by_name(name).is_ok(), || format!("{name} missing from the report; entries: {}", j["entries"]))?;
    }
    let mut nodes = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("sql/pg_dist_node.json")?, &mut nodes)?;
    let nodes: Value = serde_json::from_str(&nodes)?;
    ensure(nodes.as_array().map(Vec::len) == Some(n.parse()?), || format!("pg_dist_node.json: {nodes}"))?;
    ensure(j["skipped"].to_string().contains("direct connection"), || format!("{j}"))?;
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // One shared cluster whose state the trials change: never in parallel.
    args.test_threads = Some(1);
    type T = fn(&Cluster) -> Result<(), Failed>;
    let trials: [(&str, T); 6] = [
        ("status_all_formats", status),
        ("doctor_finds_planted_hazards", doctor),
        ("rebalance_wait_after_adding_a_worker", rebalance),
        ("drain_refuses_then_drains", drain),
        ("errors_say_what_to_do", errors_say_what_to_do),
        ("psql_and_report_direct", psql_and_report),
    ];
    let missing = citus_missing();
    if let Some(why) = &missing {
        eprintln!("kubectl-citus Citus tests ignored: {why}");
    }
    let cluster: Option<Arc<Cluster>> = if missing.is_none() && !args.list {
        match Cluster::start(2, 1) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                eprintln!("starting the local Citus cluster failed: {e}");
                std::process::exit(101);
            }
        }
    } else {
        None
    };
    let tests = trials
        .into_iter()
        .map(|(name, f)| {
            let c = cluster.clone();
            Trial::test(name, move || match &c {
                Some(c) => f(c),
                None => Err("no cluster".into()),
            })
            .with_ignored_flag(missing.is_some())
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, tests);
    drop(cluster);
    conclusion.exit();
}
