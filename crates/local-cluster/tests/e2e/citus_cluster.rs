//! Citus scenarios on the default values (1 coordinator + 3 workers), on the control plane: registration,
//! distributed and reference tables, the registration Job run again, a worker recreated, `helm test`, shard
//! moves. The checks of the tables and of `pg_dist_node` serve the other scenarios too.

use std::fmt::Write as _;

use anyhow::{ensure, Context as _};
use serde_json::json;

use crate::util::{self, Env, APP_PASSWORD, COORDINATOR, COORDINATOR_SERVICE, POSTGRES_PASSWORD, SOCKET};
use testbed::{Space, NODES};

crate::scenarios!(Node: install_registers_workers_serves_tables_and_survives_rerun_and_restart, shard_moves_work_as_postgres_and_as_the_application_user);

pub const ROWS: u32 = 10_000;

/// pg_dist_node must hold the coordinator and `workers` active workers, all under their DNS names.
pub fn assert_registered(space: &Space, workers: u32) -> anyhow::Result<Vec<String>> {
    let nodes = util::dist_nodes(space)?;
    let ns = space.ns.as_str();
    let mut expected = vec![format!("{}:5432 0 true primary", util::coordinator_host(ns))];
    expected.extend((0..workers).map(|n| format!("{}:5432 {} true primary", util::worker_host(ns, n), n + 1)));
    let mut sorted = nodes.clone();
    sorted.sort();
    expected.sort();
    ensure!(sorted == expected, "pg_dist_node:\n{}\nexpected:\n{}", nodes.join("\n"), expected.join("\n"));
    Ok(nodes)
}

/// As the application user over TCP through the coordinator Service: a distributed and a reference table
/// with ROWS rows each, loaded with COPY and read back.
pub fn load_tables(space: &Space) -> anyhow::Result<()> {
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
    util::psql(space, COORDINATOR, &login, &sql)?;
    check_tables(space)
}

/// The rows of [`load_tables`] are all there, through a distributed join with the reference table.
pub fn check_tables(space: &Space) -> anyhow::Result<()> {
    let login = util::tcp(COORDINATOR_SERVICE, "citus", APP_PASSWORD);
    let sql = "SELECT count(*), sum(e.id), count(DISTINCT k.name), sum(length(e.payload)) FROM events e JOIN kinds k USING (kind)";
    let got = util::psql(space, COORDINATOR, &login, sql)?;
    let payload_len: u64 = (1..=u64::from(ROWS)).map(|id| format!("payload-{id}").len() as u64).sum();
    let n = u64::from(ROWS);
    let expected = format!("{n}|{}|10|{payload_len}", n * (n + 1) / 2);
    ensure!(got == expected, "events join kinds: {got}, expected {expected}");
    let kinds = util::psql(space, COORDINATOR, &login, "SELECT count(*), sum(kind) FROM kinds")?;
    ensure!(kinds == format!("{n}|{}", n * (n - 1) / 2), "kinds: {kinds}");
    let spread = util::psql(
        space,
        COORDINATOR,
        &SOCKET,
        "SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'events'::regclass",
    )?;
    ensure!(spread == "3", "events shards on {spread} workers");
    Ok(())
}

fn install_registers_workers_serves_tables_and_survives_rerun_and_restart(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "citus-install", None)?;
    space.install(json!({}))?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    let before = assert_registered(&space, 3)?;

    for pod in NODES {
        for pid in space.agent.processes(&space.ns, pod)? {
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
    load_tables(&space)?;

    // An upgrade with the same values runs the registration Job again: it changes nothing.
    space.upgrade(json!({}))?;
    ensure!(before == util::dist_nodes(&space)?, "the second registration changed pg_dist_node");
    let log = space.kubectl(&["logs", "job/my-citus-register-workers"])?;
    ensure!(log.matches("already registered and active").count() == 3, "second run:\n{log}");

    let worker = "my-citus-worker-1";
    let old = space.jsonpath(&format!("pod/{worker}"), "{.metadata.uid} {.status.podIP}")?;
    space.kubectl(&["delete", "pod", worker, "--wait=true"])?;
    space.wait_recreated(worker, &old, util::READY)?;
    let new = space.jsonpath(&format!("pod/{worker}"), "{.metadata.uid} {.status.podIP}")?;
    let address = |ids: &str| ids.split_whitespace().nth(1).map(str::to_owned);
    ensure!(address(&new) != address(&old), "the recreated pod kept its address: {old} -> {new}");
    ensure!(before == assert_registered(&space, 3)?, "pg_dist_node changed by the restart");
    check_tables(&space)?;
    let log = space.kubectl(&["logs", worker, "-c", "postgresql"])?;
    ensure!(log.contains("using the existing data directory"), "{worker} restarted with a new data directory:\n{log}");

    space.helm.test("my-citus", Some(300)).with_context(|| space.diagnose())?;
    Ok(())
}

/// Moves one shard of `events` from worker-0 to worker-1 as `user`; returns the moved shard.
fn move_shard(space: &Space, user: &str, password: &str) -> anyhow::Result<String> {
    let ns = space.ns.as_str();
    let (from, to) = (util::worker_host(ns, 0), util::worker_host(ns, 1));
    let pick = format!("SELECT shardid FROM citus_shards WHERE table_name = 'events'::regclass AND nodename = '{from}' ORDER BY shardid LIMIT 1");
    let shard = util::psql(space, COORDINATOR, &SOCKET, &pick)?;
    ensure!(!shard.is_empty(), "no shard of events on {from}");
    let login = util::tcp(COORDINATOR_SERVICE, user, password);
    let sql = format!("SELECT citus_move_shard_placement({shard}, '{from}', 5432, '{to}', 5432)");
    util::psql(space, COORDINATOR, &login, &sql).with_context(|| format!("moving shard {shard} as {user}"))?;
    let placed =
        util::psql(space, COORDINATOR, &SOCKET, &format!("SELECT nodename FROM citus_shards WHERE shardid = {shard}"))?;
    ensure!(placed == to, "shard {shard} is on {placed} after the move as {user}");
    Ok(shard)
}

fn shard_moves_work_as_postgres_and_as_the_application_user(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "citus-shard-moves", None)?;
    space.install(json!({}))?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    load_tables(&space)?;
    let first = move_shard(&space, "postgres", POSTGRES_PASSWORD)?;
    let second = move_shard(&space, "citus", APP_PASSWORD)?;
    ensure!(first != second, "the same shard moved twice");
    check_tables(&space)?;
    Ok(())
}
