//! Scaling on real Citus, on the control plane: scale-in refusals and failures (table without primary key,
//! transfer modes, a leaving worker without address) that leave every worker usable, and workers added
//! outside Helm, as an autoscaler adds them. The scale-out under a writer is in `node_agent`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use serde_json::{json, Value};

use crate::util::{self, Env, SOCKET};
use testbed::Space;

crate::scenarios!(Node: scale_in_refuses_auto_without_replica_identity_restores_after_failure_and_drains_with_block_writes, scale_in_with_a_leaving_worker_without_address_is_refused_and_removes_nothing, workers_added_outside_helm_under_autoscaling_are_registered_within_a_minute);

/// Workers that hold at least one placement of `table`.
fn workers_with_shards(space: &Space, table: &str) -> anyhow::Result<u32> {
    Ok(space
        .sql(&format!("SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = '{table}'::regclass"))?
        .parse()?)
}

/// shouldhaveshards of every registered worker, by name.
fn should_have_shards(space: &Space) -> anyhow::Result<String> {
    space.sql(
        "SELECT string_agg(nodename || '=' || shouldhaveshards, ' ' ORDER BY nodename) FROM pg_dist_node WHERE groupid <> 0",
    )
}

fn scale_in_refuses_auto_without_replica_identity_restores_after_failure_and_drains_with_block_writes(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "scale-in-modes", None)?;
    let no_retry = json!({"backoffLimit": 0});
    space.install(json!({"worker": {"replicaCount": 4}, "workerRegistration": no_retry}))?;
    space.sql(
        "CREATE TABLE nopk (id bigint NOT NULL, payload text NOT NULL);\n\
         SELECT create_distributed_table('nopk', 'id') \\g /dev/null\n\
         INSERT INTO nopk SELECT g, 'row-' || g FROM generate_series(1, 5000) g;",
    )?;
    ensure!(workers_with_shards(&space, "nopk")? == 4, "shards not on 4 workers");
    let all_true = should_have_shards(&space)?;
    ensure!(!all_true.contains("=false"), "{all_true}");
    let count = || space.sql("SELECT count(*), sum(id) FROM nopk");
    let rows = "5000|12502500";
    let leaving = util::worker_host(&space.ns, 3);
    let on_leaving = || {
        space.sql(&format!("SELECT string_agg(shardid::text, ' ' ORDER BY shardid) FROM citus_shards WHERE table_name = 'nopk'::regclass AND nodename = '{leaving}'"))
    };
    let shards = on_leaving()?;
    ensure!(!shards.is_empty(), "worker-3 holds no shard of nopk");
    let scale_in = |mode: &str| json!({"worker": {"replicaCount": 3}, "workerRegistration": {"backoffLimit": 0, "shardTransferMode": mode}});

    // auto: refused before anything moves, naming the table and the fix.
    let err = match space.upgrade(scale_in("auto")) {
        Ok(()) => bail!("scale-in with a table without primary key succeeded in auto mode"),
        Err(e) => format!("{e:#}"),
    };
    let log = space.job_logs("my-citus-drain-workers-r")?;
    ensure!(
        log.contains("without primary key or replica identity")
            && log.contains(": nopk.")
            && log.contains("shardTransferMode=block_writes")
            && log.contains("REPLICA IDENTITY FULL"),
        "the refusal does not name the table and the fix:\n{err}\n{log}"
    );
    ensure!(space.has_pod("my-citus-worker-3")?, "worker-3 removed although refused");
    ensure!(should_have_shards(&space)? == all_true, "shouldhaveshards changed by a refusal");
    ensure!(on_leaving()? == shards, "shards moved although refused");

    // A drain that fails half-way (a view with a shard's name on every kept worker makes each move fail):
    // the leaving worker gets shouldhaveshards=true back, nothing is removed.
    let blockers: Vec<String> = shards.split(' ').map(|id| format!("nopk_{id}")).collect();
    for n in 0..3 {
        // Local objects on a worker: Citus refuses to propagate DDL from there.
        let create: String = std::iter::once("SET citus.enable_ddl_propagation TO off;\n".to_owned())
            .chain(blockers.iter().map(|t| format!("CREATE VIEW public.{t} AS SELECT 1 AS id;\n")))
            .collect();
        util::psql(&space, &format!("my-citus-worker-{n}"), &SOCKET, &create)?;
    }
    ensure!(
        space.upgrade(scale_in("block_writes")).is_err(),
        "the drain succeeded although every move target was blocked"
    );
    let log = space.job_logs("my-citus-drain-workers-r")?;
    ensure!(log.contains("shouldhaveshards=true back"), "no restore after the failed drain:\n{log}");
    let after = should_have_shards(&space)?;
    ensure!(after == all_true, "after a failed drain: {after} (expected {all_true})");
    ensure!(space.has_pod("my-citus-worker-3")?, "worker-3 removed after a failed drain");
    let nodes = space.sql("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "4", "{nodes} workers registered after a failed drain");
    let got = count()?;
    ensure!(got == rows, "rows after the failed drain: {got}");
    for n in 0..3 {
        let drop: String = std::iter::once("SET citus.enable_ddl_propagation TO off;\n".to_owned())
            .chain(blockers.iter().map(|t| format!("DROP VIEW IF EXISTS public.{t};\n")))
            .collect();
        util::psql(&space, &format!("my-citus-worker-{n}"), &SOCKET, &drop)?;
    }

    // block_writes: drains and removes worker-3 before its pod goes.
    space.upgrade(scale_in("block_writes"))?;
    space.wait_gone("my-citus-worker-3", Duration::from_secs(60))?;
    let nodes = space.sql("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "3", "{nodes} workers registered after the scale-in");
    ensure!(workers_with_shards(&space, "nopk")? == 3, "shards not on the 3 kept workers");
    let got = count()?;
    ensure!(got == rows, "rows after the scale-in: {got}");
    let cleanup = space.sql("SELECT count(*) FROM pg_dist_cleanup")?;
    ensure!(cleanup == "0", "{cleanup} pg_dist_cleanup record(s) left");
    Ok(())
}

fn scale_in_with_a_leaving_worker_without_address_is_refused_and_removes_nothing(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "scale-in-unreachable", None)?;
    let values = |workers: u32| -> Value {
        json!({"worker": {"replicaCount": workers}, "workerRegistration": {"backoffLimit": 0}})
    };
    space.install(values(5))?;
    space.sql(
        "CREATE TABLE kept (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('kept', 'id') \\g /dev/null\n\
         INSERT INTO kept SELECT generate_series(1, 10000);",
    )?;
    ensure!(workers_with_shards(&space, "kept")? == 5, "shards not on 5 workers");
    let before = should_have_shards(&space)?;
    // A Pending pod: registered, holding shards, but no address (its DNS record is gone).
    let leaving = "my-citus-worker-4";
    space.agent.hold_pending(&space.ns, leaving);
    space.kubectl(&["delete", "pod", leaving, "--wait=true"])?;

    ensure!(space.upgrade(values(3)).is_err(), "the scale-in went ahead with a leaving worker that cannot be reached");
    let log = space.job_logs("my-citus-drain-workers-r")?;
    ensure!(
        log.contains("not reachable")
            && log.contains(&util::worker_host(&space.ns, 4))
            && log.contains("Nothing was moved or removed"),
        "the refusal does not name worker-4:\n{log}"
    );
    ensure!(space.has_pod("my-citus-worker-3")?, "worker-3 removed although refused");
    ensure!(should_have_shards(&space)? == before, "shouldhaveshards changed by a refusal");
    let nodes = space.sql("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "5", "{nodes} workers registered after the refusal");

    // worker-4 back (the same claim): every row is still there, and the scale-in then drains both.
    space.agent.release_pending(&space.ns, leaving);
    space.wait_ready(&[leaving], util::READY)?;
    let rows = space.sql("SELECT count(*), sum(id) FROM kept")?;
    ensure!(rows == "10000|50005000", "rows with worker-4 back: {rows}");
    space.upgrade(values(3))?;
    space.wait_gone(leaving, Duration::from_secs(60))?;
    space.wait_gone("my-citus-worker-3", Duration::from_secs(60))?;
    let nodes = space.sql("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "3", "{nodes} workers registered after the scale-in");
    let rows = space.sql("SELECT count(*), sum(id) FROM kept")?;
    ensure!(rows == "10000|50005000", "rows after the scale-in: {rows}");
    Ok(())
}

fn workers_added_outside_helm_under_autoscaling_are_registered_within_a_minute(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "scale-outside-helm", None)?;
    space.install(json!({"worker": {"autoscaling": {"enabled": true, "minReplicas": 3, "maxReplicas": 5}}}))?;
    space.sql(
        "CREATE TABLE hpa (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('hpa', 'id') \\g /dev/null\n\
         INSERT INTO hpa SELECT generate_series(1, 10000);",
    )?;
    // What the HPA does: only spec.replicas of the worker StatefulSet changes; no Helm, no hook.
    space.kubectl(&["scale", "statefulset", "my-citus-worker", "--replicas=4"])?;
    space.wait_ready_when_created("my-citus-worker-3", util::READY)?;
    let ready = Instant::now();
    let new = util::worker_host(&space.ns, 3);
    let registered = format!("SELECT count(*) FROM pg_dist_node WHERE nodename = '{new}' AND isactive");
    while space.sql(&registered)? != "1" {
        ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "worker-3 not registered 60 s after it was ready: {:?}",
            util::dist_nodes(&space)?
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("worker-3 registered {:?} after it was ready", ready.elapsed());
    util::wait_rebalance(&space, Duration::from_secs(600))?;
    ensure!(workers_with_shards(&space, "hpa")? == 4, "worker-3 holds no shard of hpa");
    let rows = space.sql("SELECT count(*) FROM hpa")?;
    ensure!(rows == "10000", "rows: {rows}");
    Ok(())
}
