//! Citus scenarios on the default values (1 coordinator + 3 workers): registration, distributed and
//! reference tables, the registration Job run again, a worker restart, `helm test`, shard moves.

use std::fmt::Write as _;

use anyhow::{ensure, Context as _};
use serde_json::json;

use crate::util::Env;
use crate::util::{self, APP_PASSWORD, COORDINATOR, COORDINATOR_FQDN, COORDINATOR_SERVICE, POSTGRES_PASSWORD, SOCKET};

crate::scenarios!(Citus: install_registers_workers_serves_tables_and_survives_rerun_and_restart, shard_moves_work_as_postgres_and_as_the_application_user);

pub const ROWS: u32 = 10_000;

/// pg_dist_node must hold the coordinator and `workers` active workers, all under their DNS names.
pub fn assert_registered(cluster: &local_cluster::Cluster, workers: u32) -> anyhow::Result<Vec<String>> {
    let nodes = util::dist_nodes(cluster)?;
    let mut expected = vec![format!("{COORDINATOR_FQDN}:5432 0 true primary")];
    expected.extend((0..workers).map(|n| format!("{}:5432 {} true primary", util::worker_fqdn(n), n + 1)));
    let mut sorted = nodes.clone();
    sorted.sort();
    expected.sort();
    ensure!(sorted == expected, "pg_dist_node:\n{}\nexpected:\n{}", nodes.join("\n"), expected.join("\n"));
    Ok(nodes)
}

/// As the application user over TCP through the coordinator Service: a distributed and a reference table
/// with ROWS rows each, loaded with COPY and read back.
pub fn load_tables(cluster: &local_cluster::Cluster) -> anyhow::Result<()> {
    let login = util::tcp(COORDINATOR_SERVICE, "citus", APP_PASSWORD);
    let mut sql = String::from(
        "CREATE TABLE events (id bigint PRIMARY KEY, kind int NOT NULL, payload text NOT NULL);\n\
         SELECT create_distributed_table('events', 'id') \\g /dev/null\n\
         CREATE TABLE kinds (kind int PRIMARY KEY, name text NOT NULL);\n\
         SELECT create_reference_table('kinds') \\g /dev/null\n\
         COPY events FROM STDIN;\n",
    );
    for id in 1..=ROWS {
        writeln!(sql, "{id}\t{}\tpayload-{id}", id % 10)?;
    }
    sql.push_str("\\.\nCOPY kinds FROM STDIN;\n");
    for kind in 0..ROWS {
        writeln!(sql, "{kind}\tkind-{kind}")?;
    }
    sql.push_str("\\.\n");
    util::psql(cluster, COORDINATOR, &login, &sql)?;
    check_tables(cluster)
}

/// The rows of [`load_tables`] are all there, through a distributed join with the reference table.
pub fn check_tables(cluster: &local_cluster::Cluster) -> anyhow::Result<()> {
    let login = util::tcp(COORDINATOR_SERVICE, "citus", APP_PASSWORD);
    let sql = "SELECT count(*), sum(e.id), count(DISTINCT k.name), sum(length(e.payload)) FROM events e JOIN kinds k USING (kind)";
    let got = util::psql(cluster, COORDINATOR, &login, sql)?;
    let payload_len: u64 = (1..=u64::from(ROWS)).map(|id| format!("payload-{id}").len() as u64).sum();
    let n = u64::from(ROWS);
    let expected = format!("{n}|{}|10|{payload_len}", n * (n + 1) / 2);
    ensure!(got == expected, "events join kinds: {got}, expected {expected}");
    let kinds = util::psql(cluster, COORDINATOR, &login, "SELECT count(*), sum(kind) FROM kinds")?;
    ensure!(kinds == format!("{n}|{}", n * (n - 1) / 2), "kinds: {kinds}");
    let spread = util::psql(
        cluster,
        COORDINATOR,
        &SOCKET,
        "SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'events'::regclass",
    )?;
    ensure!(spread == "3", "events shards on {spread} workers");
    Ok(())
}

fn install_registers_workers_serves_tables_and_survives_rerun_and_restart(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let manifest = cluster.install(&util::values(json!({})))?;
    cluster.wait_all_ready(util::READY)?;
    let before = assert_registered(&cluster, 3)?;

    for pod in cluster.pod_names() {
        for pid in cluster.pod(&pod)?.processes() {
            for secret in [POSTGRES_PASSWORD, APP_PASSWORD] {
                if let Some(facts) = util::process_facts(pid.as_raw(), secret)? {
                    ensure!(facts.uid == 1001, "{pod}: process {pid} runs as uid {}", facts.uid);
                    ensure!(
                        !facts.in_args && !facts.in_env,
                        "{pod}: process {pid} has a password in its arguments or environment"
                    );
                }
            }
        }
    }
    load_tables(&cluster)?;

    let job = manifest.get("Job", "my-citus-register-workers").context("no registration Job")?.clone();
    let report = cluster.run_job(&job)?;
    ensure!(before == util::dist_nodes(&cluster)?, "the second registration changed pg_dist_node");
    let log = std::fs::read_to_string(report.logs.last().context("no job log")?)?;
    ensure!(log.matches("already registered and active").count() == 3, "second run:\n{log}");

    let old_ip = cluster.pod("my-citus-worker-1")?.ip();
    cluster.restart_pod("my-citus-worker-1")?;
    ensure!(cluster.pod("my-citus-worker-1")?.ip() != old_ip, "the recreated pod kept its address");
    ensure!(before == assert_registered(&cluster, 3)?, "pg_dist_node changed by the restart");
    check_tables(&cluster)?;
    let log = std::fs::read_to_string(cluster.pod("my-citus-worker-1")?.log_path())?;
    ensure!(log.contains("using the existing data directory"), "worker-1 restarted with a new data directory:\n{log}");

    cluster.helm_test(&manifest)?;
    Ok(())
}

/// Moves one shard of `events` from worker-0 to worker-1 as `user`; returns the moved shard.
fn move_shard(cluster: &local_cluster::Cluster, user: &str, password: &str) -> anyhow::Result<String> {
    let (from, to) = (util::worker_fqdn(0), util::worker_fqdn(1));
    let pick = format!("SELECT shardid FROM citus_shards WHERE table_name = 'events'::regclass AND nodename = '{from}' ORDER BY shardid LIMIT 1");
    let shard = util::psql(cluster, COORDINATOR, &SOCKET, &pick)?;
    ensure!(!shard.is_empty(), "no shard of events on {from}");
    let login = util::tcp(COORDINATOR_SERVICE, user, password);
    let sql = format!("SELECT citus_move_shard_placement({shard}, '{from}', 5432, '{to}', 5432)");
    util::psql(cluster, COORDINATOR, &login, &sql).with_context(|| format!("moving shard {shard} as {user}"))?;
    let placed = util::psql(
        cluster,
        COORDINATOR,
        &SOCKET,
        &format!("SELECT nodename FROM citus_shards WHERE shardid = {shard}"),
    )?;
    ensure!(placed == to, "shard {shard} is on {placed} after the move as {user}");
    Ok(shard)
}

fn shard_moves_work_as_postgres_and_as_the_application_user(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.install(&util::values(json!({})))?;
    cluster.wait_all_ready(util::READY)?;
    load_tables(&cluster)?;
    let first = move_shard(&cluster, "postgres", POSTGRES_PASSWORD)?;
    let second = move_shard(&cluster, "citus", APP_PASSWORD)?;
    ensure!(first != second, "the same shard moved twice");
    check_tables(&cluster)?;
    Ok(())
}
