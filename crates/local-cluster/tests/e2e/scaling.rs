//! Scaling on real Citus: scale-out with the automatic background rebalance under a continuous writer, and
//! scale-in refusals and failures (table without primary key, transfer modes) that leave every worker usable.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use local_cluster::Cluster;
use serde_json::json;

use crate::util::Env;
use crate::util::{self, COORDINATOR, SOCKET};

crate::scenarios!(Citus: scale_out_3_to_5_rebalances_online_while_a_writer_inserts, scale_in_refuses_auto_without_replica_identity_restores_after_failure_and_drains_with_block_writes, scale_in_with_a_leaving_worker_without_address_is_refused_and_removes_nothing, workers_added_outside_helm_under_autoscaling_are_registered_within_a_minute);

/// Starts a writer inside the coordinator pod: one INSERT per psql call (each its own transaction, as an
/// application would), ids 1, 2, ...; each committed id goes to /tmp/writer.ok, each failure to
/// /tmp/writer.fail. It stops when /tmp/writer.stop exists and then writes /tmp/writer.done.
fn start_writer(cluster: &Cluster, table: &str) -> anyhow::Result<()> {
    let script = format!(
        r#"i=0
while [ ! -e /tmp/writer.stop ]; do
  i=$((i + 1))
  if out=$(psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d citus -c "INSERT INTO {table} (id, payload) VALUES ($i, 'row-$i')" 2>&1); then
    echo "$i" >> /tmp/writer.ok
  else
    echo "$i $out" | tr '\n' ' ' >> /tmp/writer.fail; echo >> /tmp/writer.fail
  fi
done
echo "$i" > /tmp/writer.done
"#
    );
    std::fs::write(cluster.dir().join("writer.sh"), &script)?;
    let argv =
        ["sh", "-c", "rm -f /tmp/writer.*; cat > /tmp/writer.sh; nohup sh /tmp/writer.sh </dev/null >/dev/null 2>&1 &"];
    let out = cluster.exec(COORDINATOR, &argv, &[], Some(script.as_bytes()))?;
    ensure!(out.status.success(), "starting the writer failed: {}", out.stderr);
    Ok(())
}

fn read_pod_file(cluster: &Cluster, path: &str) -> anyhow::Result<String> {
    let out = cluster.exec(COORDINATOR, &["sh", "-c", &format!("cat {path} 2>/dev/null || true")], &[], None)?;
    Ok(out.stdout)
}

/// Stops the writer; returns the committed ids. Fails when any write failed.
fn stop_writer(cluster: &Cluster) -> anyhow::Result<Vec<u64>> {
    let out = cluster.exec(COORDINATOR, &["touch", "/tmp/writer.stop"], &[], None)?;
    ensure!(out.status.success(), "stopping the writer: {}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_pod_file(cluster, "/tmp/writer.done")?.trim().is_empty() {
        ensure!(Instant::now() < deadline, "the writer did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
    let failed = read_pod_file(cluster, "/tmp/writer.fail")?;
    ensure!(failed.trim().is_empty(), "failed writes:\n{failed}");
    read_pod_file(cluster, "/tmp/writer.ok")?
        .lines()
        .map(|l| l.trim().parse::<u64>().context("writer.ok line"))
        .collect()
}

fn sql(cluster: &Cluster, query: &str) -> anyhow::Result<String> {
    util::psql(cluster, COORDINATOR, &SOCKET, query)
}

/// Workers that hold at least one placement of `table`.
fn workers_with_shards(cluster: &Cluster, table: &str) -> anyhow::Result<u32> {
    Ok(sql(
        cluster,
        &format!("SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = '{table}'::regclass"),
    )?
    .parse()?)
}

fn scale_out_3_to_5_rebalances_online_while_a_writer_inserts(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.install(&util::values(json!({})))?;
    cluster.wait_all_ready(util::READY)?;
    sql(
        &cluster,
        "CREATE TABLE writes (id bigint PRIMARY KEY, payload text NOT NULL);\n\
         SELECT create_distributed_table('writes', 'id') \\g /dev/null\n\
         INSERT INTO writes SELECT g, 'seed-' || g FROM generate_series(1000001, 1020000) g;",
    )?;
    ensure!(workers_with_shards(&cluster, "writes")? == 3, "shards not on 3 workers");

    start_writer(&cluster, "writes")?;
    std::thread::sleep(Duration::from_secs(2));
    cluster.upgrade(&util::values(json!({"worker": {"replicaCount": 5}})))?;
    let jobs = sql(&cluster, "SELECT count(*) FROM pg_dist_background_job WHERE job_type = 'rebalance'")?;
    ensure!(jobs == "1", "the registration started {jobs} rebalance job(s), expected 1");
    util::wait_rebalance(&cluster, Duration::from_secs(600))?;
    std::thread::sleep(Duration::from_secs(2));
    let ids = stop_writer(&cluster)?;
    ensure!(ids.len() > 20, "the writer committed only {} rows", ids.len());

    let stored = sql(&cluster, "SELECT count(*), coalesce(sum(id), 0) FROM writes WHERE id <= 1000000")?;
    let expected = format!("{}|{}", ids.len(), ids.iter().sum::<u64>());
    ensure!(stored == expected, "rows written during the rebalance: {stored}, committed {expected}");
    let seeded = sql(&cluster, "SELECT count(*) FROM writes WHERE id > 1000000")?;
    ensure!(seeded == "20000", "seed rows: {seeded}");
    ensure!(
        workers_with_shards(&cluster, "writes")? == 5,
        "after the rebalance the shards are not on all 5 workers: {}",
        sql(&cluster, "SELECT nodename, count(*) FROM citus_shards WHERE table_name = 'writes'::regclass GROUP BY 1")?
    );
    Ok(())
}

/// shouldhaveshards of every registered worker, by name.
fn should_have_shards(cluster: &Cluster) -> anyhow::Result<String> {
    sql(
        cluster,
        "SELECT string_agg(nodename || '=' || shouldhaveshards, ' ' ORDER BY nodename) FROM pg_dist_node WHERE groupid <> 0",
    )
}

fn scale_in_refuses_auto_without_replica_identity_restores_after_failure_and_drains_with_block_writes(
    env: &Env,
) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let no_retry = json!({"backoffLimit": 0});
    cluster.install(&util::values(json!({"worker": {"replicaCount": 4}, "workerRegistration": no_retry})))?;
    cluster.wait_all_ready(util::READY)?;
    sql(
        &cluster,
        "CREATE TABLE nopk (id bigint NOT NULL, payload text NOT NULL);\n\
         SELECT create_distributed_table('nopk', 'id') \\g /dev/null\n\
         INSERT INTO nopk SELECT g, 'row-' || g FROM generate_series(1, 5000) g;",
    )?;
    ensure!(workers_with_shards(&cluster, "nopk")? == 4, "shards not on 4 workers");
    let all_true = should_have_shards(&cluster)?;
    ensure!(!all_true.contains("=false"), "{all_true}");
    let count = |c: &Cluster| sql(c, "SELECT count(*), sum(id) FROM nopk");
    let rows = "5000|12502500";
    let leaving = util::worker_fqdn(3);
    let on_leaving = |c: &Cluster| {
        sql(
            c,
            &format!("SELECT string_agg(shardid::text, ' ' ORDER BY shardid) FROM citus_shards WHERE table_name = 'nopk'::regclass AND nodename = '{leaving}'"),
        )
    };
    let shards = on_leaving(&cluster)?;
    ensure!(!shards.is_empty(), "worker-3 holds no shard of nopk");
    let scale_in = |mode: &str| {
        util::values(json!({"worker": {"replicaCount": 3},
            "workerRegistration": {"backoffLimit": 0, "shardTransferMode": mode}}))
    };

    // auto: refused before anything moves, naming the table and the fix.
    let err = match cluster.upgrade(&scale_in("auto")) {
        Ok(_) => bail!("scale-in with a table without primary key succeeded in auto mode"),
        Err(e) => format!("{e:#}"),
    };
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(
        log.contains("without primary key or replica identity")
            && log.contains(": nopk.")
            && log.contains("shardTransferMode=block_writes")
            && log.contains("REPLICA IDENTITY FULL"),
        "the refusal does not name the table and the fix:\n{err}\n{log}"
    );
    ensure!(cluster.pod("my-citus-worker-3").is_ok(), "worker-3 removed although refused");
    ensure!(should_have_shards(&cluster)? == all_true, "shouldhaveshards changed by a refusal");
    ensure!(on_leaving(&cluster)? == shards, "shards moved although refused");

    // A drain that fails half-way (a view with a shard's name on every kept worker makes each move fail):
    // the leaving worker gets shouldhaveshards=true back, nothing is removed.
    let blockers: Vec<String> = shards.split(' ').map(|id| format!("nopk_{id}")).collect();
    for n in 0..3 {
        // Local objects on a worker: Citus refuses to propagate DDL from there.
        let create: String = std::iter::once("SET citus.enable_ddl_propagation TO off;\n".to_owned())
            .chain(blockers.iter().map(|t| format!("CREATE VIEW public.{t} AS SELECT 1 AS id;\n")))
            .collect();
        util::psql(&cluster, &format!("my-citus-worker-{n}"), &SOCKET, &create)?;
    }
    ensure!(
        cluster.upgrade(&scale_in("block_writes")).is_err(),
        "the drain succeeded although every move target was blocked"
    );
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(log.contains("shouldhaveshards=true back"), "no restore after the failed drain:\n{log}");
    let after = should_have_shards(&cluster)?;
    ensure!(after == all_true, "after a failed drain: {after} (expected {all_true})");
    ensure!(cluster.pod("my-citus-worker-3").is_ok(), "worker-3 removed after a failed drain");
    let nodes = sql(&cluster, "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "4", "{nodes} workers registered after a failed drain");
    let got = count(&cluster)?;
    ensure!(got == rows, "rows after the failed drain: {got}");
    for n in 0..3 {
        let drop: String = std::iter::once("SET citus.enable_ddl_propagation TO off;\n".to_owned())
            .chain(blockers.iter().map(|t| format!("DROP VIEW IF EXISTS public.{t};\n")))
            .collect();
        util::psql(&cluster, &format!("my-citus-worker-{n}"), &SOCKET, &drop)?;
    }

    // block_writes: drains and removes worker-3 before its pod goes.
    cluster.upgrade(&scale_in("block_writes"))?;
    ensure!(cluster.pod("my-citus-worker-3").is_err(), "worker-3 still exists");
    let nodes = sql(&cluster, "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "3", "{nodes} workers registered after the scale-in");
    ensure!(workers_with_shards(&cluster, "nopk")? == 3, "shards not on the 3 kept workers");
    let got = count(&cluster)?;
    ensure!(got == rows, "rows after the scale-in: {got}");
    let cleanup = sql(&cluster, "SELECT count(*) FROM pg_dist_cleanup")?;
    ensure!(cleanup == "0", "{cleanup} pg_dist_cleanup record(s) left");
    Ok(())
}

fn scale_in_with_a_leaving_worker_without_address_is_refused_and_removes_nothing(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let values = |workers: u32| {
        util::values(json!({"worker": {"replicaCount": workers}, "workerRegistration": {"backoffLimit": 0}}))
    };
    cluster.install(&values(5))?;
    cluster.wait_all_ready(util::READY)?;
    sql(
        &cluster,
        "CREATE TABLE kept (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('kept', 'id') \\g /dev/null\n\
         INSERT INTO kept SELECT generate_series(1, 10000);",
    )?;
    ensure!(workers_with_shards(&cluster, "kept")? == 5, "shards not on 5 workers");
    let before = should_have_shards(&cluster)?;
    // Like a Pending pod: registered, holding shards, but no address (its DNS record is gone).
    cluster.delete_pod("my-citus-worker-4")?;

    ensure!(
        cluster.upgrade(&values(3)).is_err(),
        "the scale-in went ahead with a leaving worker that cannot be reached"
    );
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(
        log.contains("not reachable")
            && log.contains(&util::worker_fqdn(4))
            && log.contains("Nothing was moved or removed"),
        "the refusal does not name worker-4:\n{log}"
    );
    ensure!(cluster.pod("my-citus-worker-3").is_ok(), "worker-3 removed although refused");
    ensure!(should_have_shards(&cluster)? == before, "shouldhaveshards changed by a refusal");
    let nodes = sql(&cluster, "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "5", "{nodes} workers registered after the refusal");

    // worker-4 back (the same claim): every row is still there, and the scale-in then drains both.
    cluster.upgrade(&values(5))?;
    cluster.wait_all_ready(util::READY)?;
    let rows = sql(&cluster, "SELECT count(*), sum(id) FROM kept")?;
    ensure!(rows == "10000|50005000", "rows with worker-4 back: {rows}");
    cluster.upgrade(&values(3))?;
    ensure!(cluster.pod("my-citus-worker-4").is_err(), "worker-4 still exists");
    let nodes = sql(&cluster, "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")?;
    ensure!(nodes == "3", "{nodes} workers registered after the scale-in");
    let rows = sql(&cluster, "SELECT count(*), sum(id) FROM kept")?;
    ensure!(rows == "10000|50005000", "rows after the scale-in: {rows}");
    Ok(())
}

/// The logs of every pod whose name starts with `prefix` (all attempts of all revisions of a hook Job).
pub fn job_logs(cluster: &Cluster, prefix: &str) -> anyhow::Result<String> {
    let mut all = String::new();
    for entry in std::fs::read_dir(cluster.dir().join("logs"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with(prefix) {
            all.push_str(&std::fs::read_to_string(&path)?);
        }
    }
    ensure!(!all.is_empty(), "no log of a pod {prefix}*");
    Ok(all)
}

fn workers_added_outside_helm_under_autoscaling_are_registered_within_a_minute(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let values =
        util::values(json!({"worker": {"autoscaling": {"enabled": true, "minReplicas": 3, "maxReplicas": 5}}}));
    cluster.install(&values)?;
    cluster.wait_all_ready(util::READY)?;
    sql(
        &cluster,
        "CREATE TABLE hpa (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('hpa', 'id') \\g /dev/null\n\
         INSERT INTO hpa SELECT generate_series(1, 10000);",
    )?;
    // What the HPA does: only spec.replicas of the worker StatefulSet changes; no Helm, no hook.
    let mut manifest = cluster.render(&values, true)?;
    *manifest
        .get_mut("StatefulSet", "my-citus-worker")
        .and_then(|s| s.pointer_mut("/spec/replicas"))
        .context("worker StatefulSet replicas")? = json!(4);
    cluster.apply(&manifest)?;
    cluster.wait_all_ready(util::READY)?;
    let ready = Instant::now();
    let new = util::worker_fqdn(3);
    let registered = format!("SELECT count(*) FROM pg_dist_node WHERE nodename = '{new}' AND isactive");
    while sql(&cluster, &registered)? != "1" {
        ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "worker-3 not registered 60 s after it was ready: {:?}",
            util::dist_nodes(&cluster)?
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("worker-3 registered {:?} after it was ready", ready.elapsed());
    util::wait_rebalance(&cluster, Duration::from_secs(600))?;
    ensure!(workers_with_shards(&cluster, "hpa")? == 4, "worker-3 holds no shard of hpa");
    let rows = sql(&cluster, "SELECT count(*) FROM hpa")?;
    ensure!(rows == "10000", "rows: {rows}");
    Ok(())
}
