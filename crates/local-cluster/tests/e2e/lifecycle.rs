//! A node's life: a first start killed during initdb or during setup completes on the next start (on the
//! control plane), and a Citus minor upgrade (an image tag mapped to another Citus build) updates the extension
//! on every node, coordinator first, with the data intact.

use anyhow::{ensure, Context as _};
use serde_json::json;

use crate::citus_cluster::{assert_registered, check_tables, load_tables};
use crate::node_agent::{Space, NODES};
use crate::util::{self, Env, SOCKET};

crate::scenarios!(
    Node: a_first_start_killed_during_initdb_or_setup_initialises_cleanly_next_time;
    TwoCitus: a_citus_minor_upgrade_updates_every_node_coordinator_first
);

fn a_first_start_killed_during_initdb_or_setup_initialises_cleanly_next_time(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env, "lifecycle-first-start", None)?;
    // initdb's output goes nowhere; the line before it is logged when it starts, and the kill comes within
    // one pass of the node agent, while initdb runs. worker-1 dies later, while the role, database and
    // extension are being created.
    space.agent.kill_on_log_line(&space.ns, "my-citus-worker-0", "initialising a new data directory");
    space.agent.kill_on_log_line(&space.ns, "my-citus-worker-1", "and the citus extension");
    space.install(json!({}))?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    for pod in ["my-citus-worker-0", "my-citus-worker-1"] {
        let path = "{.status.containerStatuses[?(@.name==\"postgresql\")].restartCount}";
        let restarts: u32 = space.jsonpath(&format!("pod/{pod}"), path)?.parse()?;
        ensure!(restarts >= 1, "{pod} was never killed ({restarts} restarts)");
        let staging =
            space.kubectl(&["exec", pod, "--", "sh", "-c", "ls -d \"$PGDATA.initdb\" 2>/dev/null || true"])?;
        ensure!(staging.trim().is_empty(), "{pod}: the interrupted initdb left {staging}");
    }
    let log = space.agent.log(&space.ns, "my-citus-worker-0")?;
    ensure!(log.matches("initialising a new data directory").count() >= 2, "worker-0 did not initialise again:\n{log}");
    assert_registered(&space, 3)?;
    load_tables(&space)?;
    Ok(())
}

fn a_citus_minor_upgrade_updates_every_node_coordinator_first(env: &Env) -> anyhow::Result<()> {
    let tag = env.upgrade_tag.as_deref().context("no upgrade tag")?;
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(json!({})))?;
    cluster.wait_all_ready(util::READY)?;
    load_tables(&cluster)?;
    let before = util::psql(
        &cluster,
        util::COORDINATOR,
        &SOCKET,
        "SELECT extversion FROM pg_extension WHERE extname = 'citus'",
    )?;

    cluster.upgrade(&util::values(json!({"image": {"tag": tag}})))?;
    let pods = ["my-citus-coordinator-0", "my-citus-worker-0", "my-citus-worker-1", "my-citus-worker-2"];
    let mut versions = Vec::new();
    for pod in pods {
        let got = util::psql(
            &cluster,
            pod,
            &SOCKET,
            "SELECT e.extversion || ' ' || a.default_version || ' ' || citus_version() FROM pg_extension e, pg_available_extensions a WHERE e.extname = 'citus' AND a.name = 'citus'",
        )?;
        let mut words = got.split(' ');
        let (installed, available) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
        ensure!(
            installed == available && installed != before,
            "{pod}: extension {installed}, library offers {available} (was {before}): {got}"
        );
        ensure!(got.contains(&format!("Citus {tag}")), "{pod} does not run the {tag} build: {got}");
        versions.push(installed.to_owned());
    }
    // Workers wait for the coordinator's update before their own.
    let coordinator_log = cluster.logs("my-citus-coordinator-0")?;
    ensure!(
        coordinator_log.contains("(ALTER EXTENSION citus UPDATE)"),
        "the coordinator did not update citus:\n{coordinator_log}"
    );
    check_tables(&cluster)?;
    util::psql(
        &cluster,
        util::COORDINATOR,
        &SOCKET,
        "CREATE TABLE after_upgrade (id bigint PRIMARY KEY); SELECT create_distributed_table('after_upgrade', 'id')",
    )?;
    assert_registered(&cluster, 3)?;
    println!("citus {before} -> {} on every node ({tag})", versions[0]);
    Ok(())
}
