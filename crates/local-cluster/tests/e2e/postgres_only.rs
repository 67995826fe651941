//! Scenarios that need only PostgreSQL. The node runs the chart's real entrypoint.sh with a test-local copy
//! of the rendered config whose shared_preload_libraries lacks citus, so `CREATE EXTENSION citus` must fail
//! (with or without citus.so). What is checked: everything the entrypoint does before that step, that it
//! fails clearly there, and, on a server started from the same rendered config (`kubectl debug`-style
//! command replacement in the same pod spec), the settings and the authentication rules.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use local_cluster::{HookEvent, Manifest};
use serde_json::json;

use crate::util::Env;
use crate::util::{self, Login, APP_PASSWORD, COORDINATOR_FQDN, COORDINATOR_SERVICE, POSTGRES_PASSWORD, SOCKET};

crate::scenarios!(Postgres: first_start_creates_role_and_database_then_fails_at_the_citus_extension, settings_come_from_values_and_tcp_requires_scram_passwords, restart_reuses_the_data_directory_without_initdb, registration_names_a_node_that_never_listens_before_its_deadline);

const EXTENSION_FAILED: &str = "creating the role, database or extension failed";

/// The server alone, as the entrypoint finally starts it. Like the entrypoint, it first undoes the
/// kubelet's fsGroup change to the data directory (group write), which PostgreSQL refuses.
fn postgres_command() -> Option<Vec<String>> {
    let script =
        "chmod 0700 \"$PGDATA\" && exec postgres -D \"$PGDATA\" -c config_file=/etc/citus/conf/postgresql.conf";
    Some(["/bin/sh", "-c", script].iter().map(|s| (*s).to_owned()).collect())
}

/// Renders (with `extra` values), stores the objects with the citus-less config, and runs the coordinator's
/// entrypoint until it exits. Returns the manifest, the log of this run and how many readiness probes ran
/// (all of which failed) while it ran.
fn run_entrypoint(
    cluster: &mut util::TestCluster,
    manifest: Option<Manifest>,
) -> anyhow::Result<(Manifest, String, u32)> {
    let manifest = match manifest {
        Some(m) => m,
        None => {
            let mut m = cluster
                .render(&util::values(json!({"postgresql": {"maxConnections": 123, "walLevel": "replica"}})), false)?;
            util::drop_citus_preload(&mut m)?;
            cluster.apply_objects(&m)?;
            m
        }
    };
    let log_before = std::fs::read_to_string(cluster.dir().join("logs/my-citus-coordinator-0.log")).unwrap_or_default();
    let pod = cluster.start_statefulset_pod(&manifest, "my-citus-coordinator", 0, None)?;
    let probe = ["/bin/sh", "-c", "exec pg_isready -q -h 127.0.0.1 -p \"$PGPORT\""];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut probes = 0;
    // Nothing may reach the node over TCP before role, database and extension exist.
    while cluster.pod_mut(&pod)?.exit_status()?.is_none() {
        ensure!(Instant::now() < deadline, "entrypoint still running after 120 s");
        match cluster.exec(&pod, &probe, &[], None) {
            Ok(out) => ensure!(!out.status.success(), "the node accepted TCP connections during its first-start setup"),
            // The entrypoint is ending (its namespaces go before its exit status comes).
            Err(_) if cluster.pod_mut(&pod)?.wait_exit(Duration::from_secs(2)).is_ok() => break,
            Err(e) => return Err(e.into()),
        }
        probes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = cluster.pod_mut(&pod)?.wait_exit(Duration::from_secs(5))?;
    let log = std::fs::read_to_string(cluster.pod(&pod)?.log_path())?;
    let log = log.strip_prefix(log_before.as_str()).unwrap_or(&log).to_owned();
    ensure!(!status.success(), "entrypoint succeeded although citus cannot be created:\n{log}");
    cluster.delete_pod(&pod)?;
    Ok((manifest, log, probes))
}

/// Starts postgres itself in the coordinator pod spec (same volumes, env, uid) and waits for readiness.
fn start_server(cluster: &mut util::TestCluster, manifest: &Manifest) -> anyhow::Result<String> {
    let pod = cluster.start_statefulset_pod(manifest, "my-citus-coordinator", 0, postgres_command())?;
    cluster.wait_ready(&pod, util::READY)?;
    Ok(pod)
}

fn first_start_creates_role_and_database_then_fails_at_the_citus_extension(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let (manifest, log, probes) = run_entrypoint(&mut cluster, None)?;
    ensure!(log.contains("initialising a new data directory in /var/lib/postgresql/data/pgdata"), "no initdb:\n{log}");
    ensure!(log.contains(EXTENSION_FAILED), "entrypoint did not fail at the extension step:\n{log}");
    ensure!(log.lines().any(|l| l.contains("ERROR") && l.contains("citus")), "no citus error in:\n{log}");
    ensure!(probes > 0, "no readiness probe ran while the entrypoint worked");

    // The claim root belongs to root (group fsGroup, setgid), PGDATA below it to uid 1001, mode 0700.
    let claim = cluster.dir().join("claims/data-my-citus-coordinator-0");
    let root = std::fs::metadata(&claim)?;
    ensure!((root.uid(), root.gid(), root.mode() & 0o7777) == (0, 1001, 0o2775), "claim root {:o}", root.mode());
    let pgdata = std::fs::metadata(claim.join("pgdata"))?;
    ensure!(pgdata.uid() == 1001 && pgdata.mode() & 0o077 == 0, "pgdata uid {} mode {:o}", pgdata.uid(), pgdata.mode());
    ensure!(!claim.join("pgdata/citus-chart-init.done").exists(), "init marked done although it failed");

    let pod = start_server(&mut cluster, &manifest)?;
    let role = util::psql(
        &cluster,
        &pod,
        &SOCKET,
        "SELECT rolcanlogin, rolsuper, rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'citus'",
    )?;
    ensure!(role == "t|f|t", "application role (login, superuser, scram): {role:?}");
    let su = util::psql(
        &cluster,
        &pod,
        &SOCKET,
        "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'",
    )?;
    ensure!(su == "t", "superuser password is not a SCRAM verifier");
    let owner =
        util::psql(&cluster, &pod, &SOCKET, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'citus'")?;
    ensure!(owner == "citus", "database citus owned by {owner:?}");
    // (The environment is checked in the Citus scenarios: only the real entrypoint removes the passwords.)
    for pid in cluster.pod(&pod)?.processes() {
        if let Some(facts) = util::process_facts(pid.as_raw(), APP_PASSWORD)? {
            ensure!(facts.uid == 1001, "process {pid} runs as uid {}", facts.uid);
            ensure!(!facts.in_args, "process {pid} has the password in its arguments");
        }
    }
    Ok(())
}

fn settings_come_from_values_and_tcp_requires_scram_passwords(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let (manifest, _, _) = run_entrypoint(&mut cluster, None)?;
    let pod = start_server(&mut cluster, &manifest)?;
    for (setting, expected) in
        [("wal_level", "replica"), ("max_connections", "123"), ("password_encryption", "scram-sha-256")]
    {
        let got = util::psql(&cluster, &pod, &SOCKET, &format!("SHOW {setting}"))?;
        ensure!(got == expected, "{setting} = {got:?}, expected {expected}");
    }
    let data_dir = util::psql(&cluster, &pod, &SOCKET, "SHOW data_directory")?;
    ensure!(data_dir == "/var/lib/postgresql/data/pgdata", "data_directory {data_dir}");

    // Another host: a worker pod spec that only sleeps, as a client.
    let sleep = Some(vec!["sleep".to_owned(), "600".to_owned()]);
    let client = cluster.start_statefulset_pod(&manifest, "my-citus-worker", 0, sleep)?;
    for host in [COORDINATOR_FQDN, COORDINATOR_SERVICE] {
        let who = util::psql(&cluster, &client, &util::tcp(host, "citus", APP_PASSWORD), "SELECT current_user")?;
        ensure!(who == "citus", "connected as {who} via {host}");
        let method = "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1";
        let rule = util::psql(&cluster, &client, &util::tcp(host, "postgres", POSTGRES_PASSWORD), method)?;
        ensure!(rule == "scram-sha-256", "first host rule: {rule}");
    }
    let wrong =
        util::try_psql(&cluster, &client, &util::tcp(COORDINATOR_FQDN, "citus", "not-the-password"), "SELECT 1")?;
    let err = wrong.err().context("a wrong password was accepted")?;
    ensure!(err.contains("password authentication failed for user \"citus\""), "wrong password: {err}");
    let none = Login { host: COORDINATOR_FQDN, user: "postgres", password: None, database: "citus" };
    let err =
        util::try_psql(&cluster, &client, &none, "SELECT 1")?.err().context("TCP without password was accepted")?;
    ensure!(err.contains("no password supplied"), "no password: {err}");
    // Not even loopback TCP inside the node's own pod is trusted.
    let loopback = Login { host: "127.0.0.1", user: "postgres", password: None, database: "citus" };
    let err = util::try_psql(&cluster, &pod, &loopback, "SELECT 1")?.err().context("loopback TCP is trusted")?;
    ensure!(err.contains("no password supplied"), "loopback: {err}");
    Ok(())
}

fn restart_reuses_the_data_directory_without_initdb(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let (manifest, _, _) = run_entrypoint(&mut cluster, None)?;
    let pod = start_server(&mut cluster, &manifest)?;
    util::psql(&cluster, &pod, &SOCKET, "CREATE TABLE marker AS SELECT 42 AS answer")?;
    let system_id = util::psql(&cluster, &pod, &SOCKET, "SELECT system_identifier FROM pg_control_system()")?;
    cluster.delete_pod(&pod)?;

    let (manifest, log, _) = run_entrypoint(&mut cluster, Some(manifest))?;
    ensure!(log.contains("using the existing data directory"), "second start:\n{log}");
    ensure!(!log.contains("initialising a new data directory"), "second start ran initdb again:\n{log}");
    // The interrupted setup is repeated idempotently: role and database exist, only the extension fails.
    ensure!(!log.contains("already exists"), "setup not idempotent:\n{log}");
    ensure!(log.contains(EXTENSION_FAILED), "second start:\n{log}");

    let pod = start_server(&mut cluster, &manifest)?;
    ensure!(util::psql(&cluster, &pod, &SOCKET, "SELECT answer FROM marker")? == "42", "data lost");
    let again = util::psql(&cluster, &pod, &SOCKET, "SELECT system_identifier FROM pg_control_system()")?;
    ensure!(again == system_id, "a different cluster after restart: {system_id} -> {again}");
    Ok(())
}

fn registration_names_a_node_that_never_listens_before_its_deadline(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let values =
        json!({"worker": {"replicaCount": 1}, "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 30}});
    let mut manifest = cluster.render(&util::values(values), false)?;
    util::drop_citus_preload(&mut manifest)?;
    cluster.apply(&manifest)?;
    let err =
        cluster.run_hooks(&manifest, HookEvent::PostInstall).err().context("registration succeeded without citus")?;
    let message = format!("{:#}", anyhow::Error::from(err));
    // The script gives up (naming the node) before activeDeadlineSeconds would kill it silently.
    ensure!(message.contains("BackoffLimitExceeded"), "the Job was not failed by the script itself:\n{message}");
    ensure!(
        message.contains(&format!("coordinator {COORDINATOR_FQDN}:5432 did not accept connections in time")),
        "{message}"
    );
    Ok(())
}
