//! Turning autoscaling on for a running release keeps every worker, on real Citus and a real control plane
//! (issue 8 items 3 and 9). Helm's `lookup` reads the live worker count at every render, so a `helm upgrade`
//! after the HPA raised the count keeps it; offline renders (`helm template`, Argo CD) see only the floor
//! max(minReplicas, replicaCount), which the README's GitOps section covers with ignoreDifferences.

use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::json;

use crate::util::{self, Env};
use testbed::Space;

crate::scenarios!(Node: enabling_autoscaling_keeps_every_worker_running);

const WORKERS: &str = "my-citus-worker";
const ROWS: &str = "20000|200010000";

/// The postmaster PID of workers 0..n, from `$PGDATA/postmaster.pid`: a restarted worker has a new one.
fn postmaster_pids(space: &Space, n: u32) -> anyhow::Result<Vec<String>> {
    (0..n)
        .map(|i| {
            let pod = format!("{WORKERS}-{i}");
            let out = space.run(&pod, &["sh", "-c", "head -1 \"$PGDATA/postmaster.pid\""], &[], None)?;
            ensure!(out.status.success() && !out.stdout.trim().is_empty(), "{pod}: no postmaster.pid: {}", out.stderr);
            Ok(format!("{pod}={}", out.stdout.trim()))
        })
        .collect()
}

/// pg_dist_node lists exactly workers 0..n, all active primaries. Group ids are not compared: the one the
/// registration loop gives an added worker depends on how many attempts used the sequence before.
fn assert_workers(space: &Space, n: u32, when: &str) -> anyhow::Result<()> {
    let got = space.sql(
        "SELECT string_agg(nodename || ' ' || isactive || ' ' || noderole, ', ' ORDER BY nodename) FROM pg_dist_node WHERE groupid <> 0",
    )?;
    let want: Vec<String> = (0..n).map(|i| format!("{} true primary", util::worker_host(&space.ns, i))).collect();
    ensure!(got == want.join(", "), "{when}: pg_dist_node workers {got}, expected {}", want.join(", "));
    Ok(())
}

/// Workers that hold shards of `spread`.
fn workers_with_shards(space: &Space) -> anyhow::Result<String> {
    space.sql("SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'spread'::regclass")
}

/// Every row of `spread`, read through the coordinator (a query on every shard).
fn assert_rows(space: &Space, when: &str) -> anyhow::Result<()> {
    let rows = space.sql("SELECT count(*), sum(id) FROM spread")?;
    ensure!(rows == ROWS, "{when}: rows {rows}, expected {ROWS}");
    Ok(())
}

fn replicas(space: &Space) -> anyhow::Result<String> {
    space.jsonpath(&format!("statefulset/{WORKERS}"), "{.spec.replicas}")
}

fn enabling_autoscaling_keeps_every_worker_running(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "autoscaling-on", None)?;
    space.install(json!({"worker": {"replicaCount": 4}}))?;
    space.sql(
        "CREATE TABLE spread (id bigint PRIMARY KEY, payload text NOT NULL);\n\
         SELECT create_distributed_table('spread', 'id') \\g /dev/null\n\
         INSERT INTO spread SELECT g, 'row-' || g FROM generate_series(1, 20000) g;",
    )?;
    ensure!(workers_with_shards(&space)? == "4", "shards not on 4 workers");
    let before = postmaster_pids(&space, 4)?;

    // Autoscaling on, the same replicaCount: minReplicas (2) is below the 4 workers that hold shards.
    let autoscaling =
        json!({"worker": {"replicaCount": 4, "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 6}}});
    space.upgrade(autoscaling.clone())?;
    // The coordinator restarts: it runs the registration loop now.
    space.wait_rolled_out(util::READY)?;
    ensure!(
        replicas(&space)? == "4",
        "the worker StatefulSet has {} replicas after enabling autoscaling",
        replicas(&space)?
    );
    let after = postmaster_pids(&space, 4)?;
    ensure!(after == before, "workers restarted or replaced by enabling autoscaling: {before:?} -> {after:?}");
    assert_workers(&space, 4, "after enabling autoscaling")?;
    assert_rows(&space, "after enabling autoscaling")?;
    ensure!(workers_with_shards(&space)? == "4", "shards not on 4 workers after enabling autoscaling");

    // What the HPA does: only spec.replicas of the worker StatefulSet changes; no Helm, no hook. The
    // coordinator's registration loop registers worker-4 and rebalances onto it.
    space.kubectl(&["scale", &format!("statefulset/{WORKERS}"), "--replicas=5"])?;
    space.wait_ready_when_created(&format!("{WORKERS}-4"), util::READY)?;
    let start = Instant::now();
    let busy = "SELECT count(*) FROM pg_dist_background_job WHERE state NOT IN ('finished', 'failed', 'cancelled')";
    while workers_with_shards(&space)? != "5" || space.sql(busy)? != "0" {
        ensure!(
            start.elapsed() < Duration::from_secs(300),
            "worker-4 not registered and holding shards after 5 minutes: {:?}\n{}",
            util::dist_nodes(&space)?,
            space.sql("SELECT job_id, state, job_type FROM pg_dist_background_job")?
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let failed = space.sql("SELECT count(*) FROM pg_dist_background_job WHERE state IN ('failed', 'cancelled')")?;
    ensure!(failed == "0", "{failed} background job(s) failed or cancelled");
    assert_workers(&space, 5, "after the HPA-style raise")?;
    assert_rows(&space, "after the HPA-style raise")?;
    let raised = postmaster_pids(&space, 5)?;
    ensure!(raised[..4] == before[..], "workers 0-3 restarted by the raise: {before:?} -> {raised:?}");

    // `helm upgrade` with unchanged values: `lookup` reads the live 5, so the render keeps it: the StatefulSet
    // stays at 5, its drain hook has no leaving worker (worker-4 keeps its shards) and nothing restarts.
    space.upgrade(autoscaling)?;
    ensure!(replicas(&space)? == "5", "the worker StatefulSet has {} replicas after the upgrade", replicas(&space)?);
    let synced = postmaster_pids(&space, 5)?;
    ensure!(synced == raised, "workers restarted or replaced by the upgrade: {raised:?} -> {synced:?}");
    assert_workers(&space, 5, "after the upgrade")?;
    assert_rows(&space, "after the upgrade")?;
    ensure!(workers_with_shards(&space)? == "5", "shards not on 5 workers after the upgrade");
    Ok(())
}
