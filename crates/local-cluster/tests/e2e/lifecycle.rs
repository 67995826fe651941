//! A node's life: a first start creates roles and database before it listens on TCP, a restart reuses the
//! data directory, a first start killed during initdb or during setup completes on the next start (on the
//! control plane), and a Citus minor upgrade (an image tag mapped to another Citus build) updates the extension
//! on every node, coordinator first, with the data intact.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use serde_json::json;

use crate::citus_cluster::{assert_registered, check_tables, load_tables};
use crate::util::{self, Env, SOCKET};
use testbed::{Space, NODES};

crate::scenarios!(
    Node: a_first_start_killed_during_initdb_or_setup_initialises_cleanly_next_time,
        a_first_setup_killed_after_citus_turned_ssl_on_but_before_its_certificate_starts_next_time,
        a_first_start_creates_scram_roles_and_the_database_before_it_listens,
        a_restart_reuses_the_data_directory_without_initdb;
    TwoCitus: a_citus_minor_upgrade_updates_every_node_coordinator_first
);

fn a_first_start_killed_during_initdb_or_setup_initialises_cleanly_next_time(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "lifecycle-first-start", None)?;
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

/// `CREATE EXTENSION citus` writes `ssl = on` to postgresql.auto.conf at once (outside its transaction), then
/// the certificate. A first setup killed between the two leaves exactly this: the setting, no certificate, no
/// extension, no mark of a finished setup; the scenario above met it by chance. The node must start again, with
/// TLS and a certificate of its own.
fn a_first_setup_killed_after_citus_turned_ssl_on_but_before_its_certificate_starts_next_time(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "lifecycle-setup-ssl", None)?;
    let pods = &NODES[..2];
    space.install(json!({"worker": {"replicaCount": 1}}))?;
    space.wait_ready(pods, util::READY)?;
    let worker = pods[1];
    let left = space.shell(
        worker,
        "psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d citus -c 'DROP EXTENSION citus CASCADE' \
         && rm \"$PGDATA/server.crt\" \"$PGDATA/server.key\" \"$PGDATA/citus-chart-init.done\" \
         && grep '^ssl = ' \"$PGDATA/postgresql.auto.conf\"",
    )?;
    ensure!(left.trim() == "ssl = 'on'", "postgresql.auto.conf does not turn ssl on: {left}");
    let extension = util::psql(&space, worker, &SOCKET, "SELECT count(*) FROM pg_extension WHERE extname = 'citus'")?;
    ensure!(extension == "0", "the citus extension is still there");
    space.agent.kill_pod(&space.ns, worker)?;
    let restarted = |n: &str| format!("{{.status.containerStatuses[?(@.name==\"postgresql\")].restartCount}}={n}");
    space.kubectl(&[
        "wait",
        &format!("--for=jsonpath={}", restarted("1")),
        &format!("pod/{worker}"),
        "--timeout=60s",
    ])?;
    space.wait_ready(&[worker], Duration::from_secs(120))?;
    let settings = "SELECT current_setting('ssl') || ' ' || current_setting('citus.node_conninfo') || ' ' || \
                    (SELECT count(*) FROM pg_extension WHERE extname = 'citus')";
    let (restarted, coordinator) = (util::psql(&space, worker, &SOCKET, settings)?, space.sql(settings)?);
    ensure!(
        restarted == coordinator && restarted.starts_with("on "),
        "ssl, node_conninfo and the extension after the restart ({restarted}) are not the coordinator's ({coordinator})"
    );
    let log = space.agent.log(&space.ns, worker)?;
    ensure!(log.contains("before it wrote the certificate"), "the repair is not logged:\n{log}");
    let files = space
        .shell(worker, "ls \"$PGDATA/server.crt\" \"$PGDATA/server.key\" \"$PGDATA/citus-chart-init.done\" | wc -l")?;
    ensure!(files.trim() == "3", "certificate, key and the setup's mark: {files} of 3");
    Ok(())
}

/// The first start as the coordinator's log and the API server tell it: initdb into a private data directory
/// on a volume the pod's group may write, roles with SCRAM verifiers, the database owned by the application
/// role, no password in any process's arguments, and Ready only after the setup server (which listens on no
/// TCP address) made way for PostgreSQL.
fn a_first_start_creates_scram_roles_and_the_database_before_it_listens(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "lifecycle-first", None)?;
    space.install(
        json!({"worker": {"replicaCount": 1}, "postgresql": {"maxConnections": 123, "walLevel": "replica"}}),
    )?;
    space.wait_ready(&NODES[..2], util::READY)?;
    let pod = util::COORDINATOR;
    let log = space.kubectl(&["logs", pod, "-c", "postgresql"])?;
    ensure!(log.contains("initialising a new data directory in /var/lib/postgresql/data/pgdata"), "no initdb:\n{log}");
    let started = log
        .lines()
        .find(|l| l.ends_with(": starting PostgreSQL"))
        .and_then(|l| l.split(' ').next())
        .with_context(|| format!("no start of PostgreSQL in:\n{log}"))?;
    let ready =
        space.jsonpath(&format!("pod/{pod}"), "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}")?;
    ensure!(ready.as_str() >= started, "Ready at {ready}, before PostgreSQL started at {started}");

    // The volume's root belongs to root with group fsGroup (setgid), PGDATA below it to uid 1001, mode 0700.
    let modes = space.shell(pod, "stat -c '%u %g %a' \"$(dirname \"$PGDATA\")\" \"$PGDATA\"; ls \"$PGDATA\"")?;
    let mut lines = modes.lines();
    ensure!(lines.next() == Some("0 1001 2775"), "volume root: {modes}");
    ensure!(lines.next() == Some("1001 1001 700"), "PGDATA: {modes}");
    ensure!(lines.any(|f| f == "citus-chart-init.done"), "init not marked done: {modes}");

    let role = space.sql(
        "SELECT rolcanlogin, rolsuper, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'citus'",
    )?;
    ensure!(role == "t|f|t", "application role (login, superuser, scram): {role:?}");
    let su = space.sql("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'")?;
    ensure!(su == "t", "superuser password is not a SCRAM verifier");
    let owner = space.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'citus'")?;
    ensure!(owner == "citus", "database citus owned by {owner:?}");
    for (setting, expected) in
        [("wal_level", "replica"), ("max_connections", "123"), ("password_encryption", "scram-sha-256")]
    {
        let got = space.sql(&format!("SHOW {setting}"))?;
        ensure!(got == expected, "{setting} = {got:?}, expected {expected}");
    }
    Ok(())
}

fn a_restart_reuses_the_data_directory_without_initdb(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "lifecycle-restart", None)?;
    space.install(json!({"worker": {"replicaCount": 1}}))?;
    space.wait_ready(&NODES[..2], util::READY)?;
    let pod = util::COORDINATOR;
    space.sql("CREATE TABLE marker AS SELECT 42 AS answer")?;
    let system_id = space.sql("SELECT system_identifier FROM pg_control_system()")?;
    let old = space.jsonpath(&format!("pod/{pod}"), "{.metadata.uid}")?;
    space.kubectl(&["delete", "pod", pod, "--wait=true"])?;
    space.wait_recreated(pod, &old, util::READY)?;

    let log = space.kubectl(&["logs", pod, "-c", "postgresql"])?;
    ensure!(log.contains("using the existing data directory"), "second start:\n{log}");
    ensure!(!log.contains("initialising a new data directory"), "second start ran initdb again:\n{log}");
    ensure!(!log.contains("already exists"), "second start repeated its setup:\n{log}");
    ensure!(space.sql("SELECT answer FROM marker")? == "42", "data lost");
    let again = space.sql("SELECT system_identifier FROM pg_control_system()")?;
    ensure!(again == system_id, "a different cluster after restart: {system_id} -> {again}");
    Ok(())
}

fn a_citus_minor_upgrade_updates_every_node_coordinator_first(env: &Env) -> anyhow::Result<()> {
    let tag = env.upgrade_tag.as_deref().context("no upgrade tag")?;
    let space = Space::create(env.postgres()?, "lifecycle-citus-upgrade", None)?;
    space.install(json!({}))?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    load_tables(&space)?;
    let before = space.sql("SELECT extversion FROM pg_extension WHERE extname = 'citus'")?;

    space.upgrade(json!({"image": {"tag": tag}}))?;
    space.wait_rolled_out(util::READY)?;
    let mut versions = Vec::new();
    for pod in NODES {
        let got = util::psql(
            &space,
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
    let coordinator_log = space.kubectl(&["logs", util::COORDINATOR, "-c", "postgresql"])?;
    ensure!(
        coordinator_log.contains("(ALTER EXTENSION citus UPDATE)"),
        "the coordinator did not update citus:\n{coordinator_log}"
    );
    space.wait_serving(util::SERVING)?;
    check_tables(&space)?;
    space.sql(
        "CREATE TABLE after_upgrade (id bigint PRIMARY KEY); SELECT create_distributed_table('after_upgrade', 'id')",
    )?;
    assert_registered(&space, 3)?;
    println!("citus {before} -> {} on every node ({tag})", versions[0]);
    Ok(())
}
