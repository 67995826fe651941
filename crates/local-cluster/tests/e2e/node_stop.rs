//! A node's stop and start under the review's faults, on the control plane: a pod stopped while sessions are
//! open, by the image's stop signal or by SIGTERM, stops at once and comes back without crash recovery (D4);
//! a Citus library older than the extension in the data (a rollback of a Citus upgrade) stops the node with a
//! message naming both versions and the way out (D7).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use serde_json::json;

use crate::util::{self, Env, COORDINATOR, POSTGRES_PASSWORD, SOCKET};
use testbed::{Space, NODES};

crate::scenarios!(Node: a_node_deleted_with_sessions_open_stops_at_once_and_starts_without_recovery, a_citus_library_older_than_the_data_stops_the_node_naming_both_versions);

const WORKER: &str = "my-citus-worker-0";
const RESTARTS: &str = "{.status.containerStatuses[?(@.name==\"postgresql\")].restartCount}";

fn a_node_deleted_with_sessions_open_stops_at_once_and_starts_without_recovery(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "stop-sessions", None)?;
    space.install(json!({"worker": {"replicaCount": 1}}))?;
    space.wait_ready(&NODES[..2], util::READY)?;

    // `kubectl delete pod`: the node sends the image's stop signal (the postgres image's STOPSIGNAL is
    // SIGINT), then SIGKILL after the 30 s grace period.
    hold_idle_session(&space)?;
    let old = space.jsonpath(&format!("pod/{WORKER}"), "{.metadata.uid}")?;
    let started = Instant::now();
    space.kubectl(&["delete", "pod", WORKER, "--wait=true"])?;
    let stopped = started.elapsed();
    ensure!(stopped < Duration::from_secs(10), "the deleted worker took {stopped:?} to stop with a session open");
    space.wait_recreated(WORKER, &old, util::READY)?;
    assert_no_crash_recovery(&space)?;

    // SIGTERM, what a runtime sends for an image without STOPSIGNAL (a derived image, the HA image) or a
    // container's `lifecycle.stopSignal`: PostgreSQL reads it as a smart shutdown that waits for every session.
    hold_idle_session(&space)?;
    let restarts = space.jsonpath(&format!("pod/{WORKER}"), RESTARTS)?;
    let term =
        "pm=$(head -n 1 \"$PGDATA/postmaster.pid\"); kill -TERM \"$(awk '{print $4}' /proc/$pm/stat)\"; echo $pm";
    let out = space.run(WORKER, &["sh", "-c", term], &[], None)?;
    ensure!(out.status.success(), "sending SIGTERM to the container's main process: {}", out.stderr);
    // The pods share this machine's process ids.
    let postmaster = format!("/proc/{}", out.stdout.trim());
    let started = Instant::now();
    while std::path::Path::new(&postmaster).exists() {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "PostgreSQL still runs {:?} after SIGTERM with a session open",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after_term = started.elapsed();
    // The container restarts in place: its restart count grows, then it is Ready again.
    let deadline = Instant::now() + util::READY;
    while space.jsonpath(&format!("pod/{WORKER}"), RESTARTS)? == restarts {
        ensure!(Instant::now() < deadline, "{WORKER} was not restarted after its PostgreSQL stopped");
        std::thread::sleep(Duration::from_millis(200));
    }
    space.wait_ready(&[WORKER], util::READY)?;
    assert_no_crash_recovery(&space)?;
    println!("stopped {stopped:?} after deletion and {after_term:?} after SIGTERM, with a session open");
    Ok(())
}

/// An idle client session on the worker, as an application pool or another node's cached connection is.
fn hold_idle_session(space: &Space) -> anyhow::Result<()> {
    let worker = util::worker_host(&space.ns, 0);
    let idle = format!(
        "nohup sh -c \"(echo 'SELECT 1;'; sleep 600) | PGAPPNAME=idle psql -X -q -h {worker} -U postgres -d citus\" \
         </dev/null >/dev/null 2>&1 &"
    );
    let out = space.run(COORDINATOR, &["sh", "-c", &idle], &[("PGPASSWORD", POSTGRES_PASSWORD)], None)?;
    ensure!(out.status.success(), "starting the idle session: {}", out.stderr);
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idle'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while util::psql(space, WORKER, &SOCKET, sessions)? != "1" {
        ensure!(Instant::now() < deadline, "the idle session did not connect");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The worker's last start found a cleanly shut down data directory.
fn assert_no_crash_recovery(space: &Space) -> anyhow::Result<()> {
    let log = space.agent.log(&space.ns, WORKER)?;
    let last_start = log.rsplit("==== local-cluster:").next().unwrap_or_default();
    for crash in ["was interrupted", "automatic recovery in progress", "not properly shut down"] {
        ensure!(!last_start.contains(crash), "the restarted worker ran crash recovery ({crash}):\n{last_start}");
    }
    Ok(())
}

fn a_citus_library_older_than_the_data_stops_the_node_naming_both_versions(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "stop-old-library", None)?;
    space.install(json!({"worker": {"replicaCount": 1}}))?;
    space.wait_ready(&NODES[..2], util::READY)?;
    // The data as a newer Citus left it (what a rollback of a Citus upgrade meets): its extension version is
    // above the library's, in the chart's database.
    let library = space.sql_in(WORKER, "SELECT default_version FROM pg_available_extensions WHERE name = 'citus'")?;
    let newer = "99.0-1";
    space.sql_in(WORKER, &format!("UPDATE pg_extension SET extversion = '{newer}' WHERE extname = 'citus'"))?;

    let old = space.jsonpath(&format!("pod/{WORKER}"), "{.metadata.uid}")?;
    let started = Instant::now();
    space.kubectl(&["delete", "pod", WORKER, "--wait=true"])?;
    let refusal = format!(
        "this image's Citus library is {library}, older than the extension in the data (database citus has citus {newer})"
    );
    let deadline = Instant::now() + util::READY;
    let log = loop {
        let log = space.agent.log(&space.ns, WORKER).unwrap_or_default();
        let recreated = space.jsonpath(&format!("pod/{WORKER}"), "{.metadata.uid}").is_ok_and(|uid| uid != old);
        if recreated && log.contains(&refusal) {
            break log;
        }
        ensure!(Instant::now() < deadline, "the recreated worker never refused its data:\n{log}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let ready = space.jsonpath(&format!("pod/{WORKER}"), "{.status.conditions[?(@.type==\"Ready\")].status}")?;
    if ready == "True" {
        bail!("the worker became ready with citus {newer} in its data and the {library} library");
    }
    ensure!(
        log.contains("Citus cannot be downgraded and nothing was changed") && log.contains("Set image.tag back"),
        "the worker's log does not say what happened and what to do:\n{log}"
    );
    // Refused before the worker waits for the coordinator's update (up to 300 s).
    ensure!(
        !log.contains("waiting for the coordinator to update citus"),
        "it waited for the coordinator first:\n{log}"
    );
    println!("refused {:?} after the deletion", started.elapsed());
    Ok(())
}
