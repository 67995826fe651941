//! Faults on the real control plane (issue 16): the node agent kills a pod's processes, on demand or when its
//! log shows a line, holds pods Pending, and loses the control plane; the real Job, StatefulSet and node
//! lifecycle controllers, Helm and the API server react as they do in production.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::ReleaseOptions;
use serde_json::{json, Value};

use testbed::Space;

use crate::node_agent::under_writer;
use crate::util::{self, Env, COORDINATOR};

crate::scenarios!(Node:
    the_registration_names_a_coordinator_that_never_listens_before_its_deadline,
    a_drain_whose_hook_pod_is_killed_fails_the_upgrade_and_the_revision_that_keeps_the_workers_reopens_them,
    a_coordinator_killed_under_a_writer_restarts_in_place_and_keeps_every_acknowledged_row;
    WholeNode: a_node_cut_off_from_the_control_plane_keeps_its_pods_and_rows_and_serves_again_when_it_returns);

/// The coordinator held Pending at install: the registration Job gives up, naming the node, before
/// `activeDeadlineSeconds` would end it without a word.
fn the_registration_names_a_coordinator_that_never_listens_before_its_deadline(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "faults-no-coordinator", None)?;
    space.agent.hold_pending(&space.ns, COORDINATOR);
    let values =
        json!({"worker": {"replicaCount": 1}, "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 30}});
    if space.install(values).is_ok() {
        bail!("the registration succeeded without a coordinator");
    }
    let job = "job/my-citus-register-workers";
    let reason = space.jsonpath(job, "{.status.conditions[?(@.type==\"Failed\")].reason}")?;
    ensure!(reason == "BackoffLimitExceeded", "the Job was not failed by the script itself: {reason}");
    let log = space.kubectl(&["logs", job])?;
    let coordinator = util::coordinator_host(&space.ns);
    ensure!(log.contains(&format!("coordinator {coordinator}:5432 did not accept connections in time")), "{log}");
    space.agent.release_pending(&space.ns, COORDINATOR);
    Ok(())
}

const ROWS: u32 = 2000;

/// Values with `workers` workers; hook Jobs run once (a failure is final) and wait at most 45 s for nodes.
fn values(workers: u32) -> Value {
    util::values(json!({
        "worker": {"replicaCount": workers},
        "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 45}
    }))
}

fn upgrade(space: &Space, workers: u32) -> anyhow::Result<()> {
    let options = ReleaseOptions { timeout_seconds: Some(300), ..ReleaseOptions::default() };
    space.helm.upgrade(&util::chart_dir(), "my-citus", &values(workers), &options)?;
    Ok(())
}

/// Count and checksum of every row of `items`.
fn checksum(space: &Space) -> anyhow::Result<String> {
    space.sql("SELECT count(*) || ' ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items")
}

/// Placements of `items` on worker `n`.
fn placements_on(space: &Space, n: usize) -> anyhow::Result<u32> {
    let w = format!("my-citus-worker-{n}.my-citus-worker-headless.{}.svc.cluster.local", space.ns);
    Ok(space
        .sql(&format!("SELECT count(*) FROM citus_shards WHERE table_name = 'items'::regclass AND nodename = '{w}'"))?
        .parse()?)
}

/// What the chart's registration left in worker `n`'s retired mark (`removed`, `kept` or nothing).
fn retired_mark(space: &Space, n: usize) -> anyhow::Result<String> {
    space.sql_in(
        &format!("my-citus-worker-{n}"),
        "SELECT coalesce(pg_read_file('/tmp/citus/retired', 0, 100, true), '')",
    )
}

fn wait_rebalance(space: &Space) -> anyhow::Result<()> {
    space.sql("SELECT citus_rebalance_wait()")?;
    Ok(())
}

fn a_drain_whose_hook_pod_is_killed_fails_the_upgrade_and_the_revision_that_keeps_the_workers_reopens_them(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-drain-kill", None)?;
    let options = ReleaseOptions { timeout_seconds: Some(300), ..ReleaseOptions::default() };
    space.helm.install(&util::chart_dir(), "my-citus", &values(4), &options).with_context(|| space.diagnose())?;
    space.sql(&format!(
        "SET citus.shard_count = 32;
         CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);
         SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;"
    ))?;
    let sums = checksum(&space)?;
    for n in 2..4 {
        ensure!(placements_on(&space, n)? > 0, "worker-{n} holds no shard");
    }

    // The scale-in to 2 workers: the drain Job's pod is killed once it has moved its first shard (as by an
    // eviction or a preemption). With backoffLimit 0 the real Job controller fails the Job, and Helm the upgrade.
    space.agent.kill_on_log_line(&space.ns, "my-citus-drain-workers-r2", "NOTICE:  Moving shard");
    if upgrade(&space, 2).is_ok() {
        bail!("the scale-in succeeded although its hook pod was killed\n{}", space.diagnose());
    }
    space.agent.clear_kills_on_log_lines(&space.ns);
    let failed = space.jsonpath("job/my-citus-drain-workers-r2", "{.status.failed}")?;
    ensure!(failed == "1", "the drain Job's failed pods: {failed:?}");
    let replicas = space.jsonpath("statefulset/my-citus-worker", "{.spec.replicas}")?;
    ensure!(replicas == "4", "the failed scale-in left the worker StatefulSet at {replicas} replicas");
    // The leaving workers were marked before the first shard moved (review D18).
    for n in 2..4 {
        let mark = retired_mark(&space, n)?;
        ensure!(mark == "removed", "worker-{n}'s mark during the drain: {mark:?}");
    }

    // The user keeps the 4 workers: each takes shards again, no record of the abandoned drain is left.
    upgrade(&space, 4).with_context(|| space.diagnose())?;
    for n in 2..4 {
        let mark = retired_mark(&space, n)?;
        ensure!(mark == "kept", "worker-{n}'s mark once kept: {mark:?}");
    }
    let open = space.sql("SELECT string_agg(shouldhaveshards::text, ' ') FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(open == "true true true true", "workers open to shards after the abandoned drain: {open}");
    let records = space.sql("SELECT count(*) FROM citus_chart.draining")?;
    ensure!(records == "0", "{records} record(s) of the abandoned drain left");
    // The rebalance the registration may have started, then one more: neither empties a kept worker.
    wait_rebalance(&space)?;
    if space.sql("SELECT citus_rebalance_start() IS NOT NULL")? == "t" {
        wait_rebalance(&space)?;
    }
    for n in 0..4 {
        ensure!(placements_on(&space, n)? > 0, "worker-{n} holds no shard after a rebalance");
    }
    ensure!(checksum(&space)? == sums, "rows changed");
    Ok(())
}

fn a_coordinator_killed_under_a_writer_restarts_in_place_and_keeps_every_acknowledged_row(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-kill", None)?;
    space.install(json!({}))?;
    space.sql("CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id')")?;
    space.wait_ready(&[COORDINATOR], Duration::from_secs(60))?;
    let restarts = || space.jsonpath(&format!("pod/{COORDINATOR}"), "{.status.containerStatuses[0].restartCount}");
    let uid = || space.jsonpath(&format!("pod/{COORDINATOR}"), "{.metadata.uid}");
    let (uid_before, restarts_before) = (uid()?, restarts()?);

    // SIGKILL to every process of the coordinator (an OOM kill, a crashed postmaster) while a writer runs.
    let writes = under_writer(&space, || {
        space.agent.kill_pod(&space.ns, COORDINATOR)?;
        // The kubelet restarts the container; the API server shows it Ready again with one more restart.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = space.jsonpath(&format!("pod/{COORDINATOR}"), "{.status.containerStatuses[0].ready}");
            if restarts().ok().as_deref() != Some(restarts_before.as_str()) && ready.ok().as_deref() == Some("true") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the coordinator was not Ready again 120 s after the kill\n{}", space.diagnose());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })?;
    ensure!(uid()? == uid_before, "the kill replaced the pod instead of restarting its container");
    let restarts_after: u32 = restarts()?.parse()?;
    ensure!(restarts_after == restarts_before.parse::<u32>()? + 1, "restartCount after one kill: {restarts_after}");
    let reason = space
        .jsonpath(&format!("pod/{COORDINATOR}"), "{.status.containerStatuses[0].lastState.terminated.exitCode}")?;
    ensure!(reason == "137", "the killed container's last exit code: {reason:?}");

    // Writes during the restart fail; every acknowledged one survived crash recovery.
    ensure!(writes.failed > 0, "no write failed while the coordinator was down: was it killed?");
    writes.assert_kept(&space, "in a crash of the coordinator")?;
    Ok(())
}

/// The node loses the control plane (a partition between kubelet and API server) for longer than the node
/// lifecycle controller's grace period: the node turns NotReady, its pods not Ready, the coordinator
/// Service's endpoints not ready, and no controller starts a second copy of a pod. PostgreSQL goes on on the
/// node and takes writes from inside; when the node returns, the same pods (no restart, no recreation) are
/// Ready and served again with every row.
fn a_node_cut_off_from_the_control_plane_keeps_its_pods_and_rows_and_serves_again_when_it_returns(
    env: &Env,
) -> anyhow::Result<()> {
    // The whole node goes: no other scenario may run on it meanwhile.
    let space = Space::create_alone(env.postgres()?, "faults-node-partition")?;
    space.install(json!({}))?;
    space.wait_ready(&testbed::NODES, util::READY)?;
    space.sql(
        "CREATE TABLE kept (id int PRIMARY KEY);\n\
         SELECT create_distributed_table('kept', 'id') \\g /dev/null\n\
         INSERT INTO kept SELECT generate_series(1, 1000);",
    )?;
    let before = space.identities()?;
    let node = format!("node/{}", control_plane::NODE_NAME);
    space.agent.disconnect();
    let partitioned = (|| -> anyhow::Result<()> {
        // The controller's grace period is 50 s; its next look at most 5 s later.
        space.kubectl(&["wait", "--for=condition=Ready=Unknown", &node, "--timeout=120s"])?;
        space.kubectl(&["wait", "--for=condition=Ready=false", &format!("pod/{COORDINATOR}"), "--timeout=60s"])?;
        let slices = "endpointslices";
        let ready = space.kubectl(&[
            "get",
            slices,
            "-l",
            &format!("kubernetes.io/service-name={}", util::COORDINATOR_SERVICE),
            "-o",
            "jsonpath={.items[*].endpoints[*].conditions.ready}",
        ])?;
        ensure!(!ready.contains("true"), "the coordinator Service still has a ready endpoint: {ready}");
        space.sql("INSERT INTO kept SELECT generate_series(1001, 2000)")?;
        let during = space.identities()?;
        ensure!(during == before, "pods changed while the node was away:\n{before}\nthen\n{during}");
        Ok(())
    })();
    space.agent.reconnect();
    partitioned?;
    space.kubectl(&["wait", "--for=condition=Ready", &node, "--timeout=60s"])?;
    space.wait_ready(&testbed::NODES, Duration::from_secs(60))?;
    space.wait_serving(util::SERVING)?;
    let after = space.identities()?;
    ensure!(after == before, "pods restarted or were recreated:\n{before}\nthen\n{after}");
    let login = util::tcp(util::COORDINATOR_SERVICE, "postgres", util::POSTGRES_PASSWORD);
    let count = util::psql(&space, COORDINATOR, &login, "SELECT count(*), sum(id) FROM kept")?;
    ensure!(count == "2000|2001000", "rows through the coordinator Service after the partition: {count}");
    Ok(())
}
