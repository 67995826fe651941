//! Turning autoscaling on for a running release keeps every worker, on real Citus (issue 8 items 3 and 9).
//! The harness renders without cluster access, as `helm template` and Argo CD do: `lookup` reads nothing, so
//! every render here shows the offline floor of the worker count, max(minReplicas, replicaCount). Keeping a
//! count the HPA raised above that floor is the job of `lookup` (helm, Flux), which the harness cannot show,
//! or of Argo CD's ignoreDifferences on /spec/replicas, which it emulates.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use local_cluster::{Cluster, HookEvent};
use serde_json::json;

use crate::util::job_logs;
use crate::util::{self, Env, COORDINATOR, SOCKET};

crate::scenarios!(Citus: enabling_autoscaling_keeps_every_worker_running);

const WORKERS: &str = "my-citus-worker";
const ROWS: &str = "20000|200010000";

fn sql(cluster: &Cluster, query: &str) -> anyhow::Result<String> {
    util::psql(cluster, COORDINATOR, &SOCKET, query)
}

/// The postmaster PID of workers 0..n, from `$PGDATA/postmaster.pid`: a restarted worker has a new one.
fn postmaster_pids(cluster: &Cluster, n: u32) -> anyhow::Result<Vec<String>> {
    (0..n)
        .map(|i| {
            let pod = format!("{WORKERS}-{i}");
            let out = cluster.exec(&pod, &["sh", "-c", "head -1 \"$PGDATA/postmaster.pid\""], &[], None)?;
            ensure!(out.status.success() && !out.stdout.trim().is_empty(), "{pod}: no postmaster.pid: {}", out.stderr);
            Ok(format!("{pod}={}", out.stdout.trim()))
        })
        .collect()
}

/// pg_dist_node lists exactly workers 0..n, all active primaries. Group ids are not compared: the one the
/// registration loop gives an added worker depends on how many attempts used the sequence before.
fn assert_workers(cluster: &Cluster, n: u32, when: &str) -> anyhow::Result<()> {
    let got = sql(
        cluster,
        "SELECT string_agg(nodename || ' ' || isactive || ' ' || noderole, ', ' ORDER BY nodename) FROM pg_dist_node WHERE groupid <> 0",
    )?;
    let want: Vec<String> = (0..n).map(|i| format!("{} true primary", util::worker_fqdn(i))).collect();
    ensure!(got == want.join(", "), "{when}: pg_dist_node workers {got}, expected {}", want.join(", "));
    Ok(())
}

/// Workers that hold shards of `spread`.
fn workers_with_shards(cluster: &Cluster) -> anyhow::Result<String> {
    sql(cluster, "SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'spread'::regclass")
}

/// Every row of `spread`, read through the coordinator (a query on every shard).
fn assert_rows(cluster: &Cluster, when: &str) -> anyhow::Result<()> {
    let rows = sql(cluster, "SELECT count(*), sum(id) FROM spread")?;
    ensure!(rows == ROWS, "{when}: rows {rows}, expected {ROWS}");
    Ok(())
}

fn enabling_autoscaling_keeps_every_worker_running(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.install(&util::values(json!({"worker": {"replicaCount": 4}})))?;
    cluster.wait_all_ready(util::READY)?;
    sql(
        &cluster,
        "CREATE TABLE spread (id bigint PRIMARY KEY, payload text NOT NULL);\n\
         SELECT create_distributed_table('spread', 'id') \\g /dev/null\n\
         INSERT INTO spread SELECT g, 'row-' || g FROM generate_series(1, 20000) g;",
    )?;
    ensure!(workers_with_shards(&cluster)? == "4", "shards not on 4 workers");
    let before = postmaster_pids(&cluster, 4)?;

    // Autoscaling on, the same replicaCount: minReplicas (2) is below the 4 workers that hold shards.
    let autoscaling = util::values(json!({"worker": {"replicaCount": 4,
        "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 6}}}));
    let manifest = cluster.upgrade(&autoscaling)?;
    cluster.wait_all_ready(util::READY)?;
    let replicas = cluster.statefulset_replicas(WORKERS);
    ensure!(replicas == Some(4), "the worker StatefulSet has {replicas:?} replicas after enabling autoscaling");
    let after = postmaster_pids(&cluster, 4)?;
    ensure!(after == before, "workers restarted or replaced by enabling autoscaling: {before:?} -> {after:?}");
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(log.contains("no registered worker at ordinal 6 or above: nothing to drain"), "drain hook:\n{log}");
    assert_workers(&cluster, 4, "after enabling autoscaling")?;
    assert_rows(&cluster, "after enabling autoscaling")?;
    ensure!(workers_with_shards(&cluster)? == "4", "shards not on 4 workers after enabling autoscaling");

    // What the HPA does: only spec.replicas of the worker StatefulSet changes; no Helm, no hook. The
    // coordinator's registration loop registers worker-4 and rebalances onto it.
    let mut raised = manifest.clone();
    *raised.get_mut("StatefulSet", WORKERS).and_then(|s| s.pointer_mut("/spec/replicas")).context("replicas")? =
        json!(5);
    cluster.apply(&raised)?;
    cluster.wait_all_ready(util::READY)?;
    let start = Instant::now();
    let busy = "SELECT count(*) FROM pg_dist_background_job WHERE state NOT IN ('finished', 'failed', 'cancelled')";
    while workers_with_shards(&cluster)? != "5" || sql(&cluster, busy)? != "0" {
        ensure!(
            start.elapsed() < Duration::from_secs(300),
            "worker-4 not registered and holding shards after 5 minutes: {:?}\n{}",
            util::dist_nodes(&cluster)?,
            sql(&cluster, "SELECT job_id, state, job_type FROM pg_dist_background_job")?
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let failed = sql(&cluster, "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('failed', 'cancelled')")?;
    ensure!(failed == "0", "{failed} background job(s) failed or cancelled");
    assert_workers(&cluster, 5, "after the HPA-style raise")?;
    assert_rows(&cluster, "after the HPA-style raise")?;
    let raised_pids = postmaster_pids(&cluster, 5)?;
    ensure!(raised_pids[..4] == before[..], "workers 0-3 restarted by the raise: {before:?} -> {raised_pids:?}");

    // A sync with unchanged values. Offline the chart cannot see the live 5: it renders the floor 4, and
    // applied as is (a plain apply, or this harness's `helm upgrade`) that would stop worker-4 undrained.
    // Real `helm upgrade` and Flux read 5 with `lookup`; Argo CD must ignore /spec/replicas (README: GitOps),
    // and keeps the live value then, which is what this sync does. What the chart decides here: its drain
    // hook, in a render whose StatefulSet says 4, must leave worker-4 and its shards alone; nothing restarts.
    let mut sync = cluster.render(&autoscaling, true)?;
    let rendered = sync
        .get_mut("StatefulSet", WORKERS)
        .and_then(|s| s.pointer_mut("/spec/replicas"))
        .context("worker StatefulSet replicas")?;
    ensure!(*rendered == json!(4), "the offline render has {rendered} worker replicas, expected the floor 4");
    *rendered = json!(cluster.statefulset_replicas(WORKERS).context("no worker StatefulSet")?);
    cluster.run_hooks(&sync, HookEvent::PreUpgrade)?;
    cluster.apply(&sync)?;
    cluster.run_hooks(&sync, HookEvent::PostUpgrade)?;
    cluster.wait_all_ready(util::READY)?;
    let replicas = cluster.statefulset_replicas(WORKERS);
    ensure!(replicas == Some(5), "the worker StatefulSet has {replicas:?} replicas after the sync");
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    let kept = log.matches("no registered worker at ordinal 6 or above: nothing to drain").count();
    ensure!(kept == 2 && !log.contains("leaving worker(s)"), "the sync's drain hook under autoscaling:\n{log}");
    let synced = postmaster_pids(&cluster, 5)?;
    ensure!(synced == raised_pids, "workers restarted or replaced by the sync: {raised_pids:?} -> {synced:?}");
    assert_workers(&cluster, 5, "after the sync")?;
    assert_rows(&cluster, "after the sync")?;
    ensure!(workers_with_shards(&cluster)? == "5", "shards not on 5 workers after the sync");
    Ok(())
}
