//! `helm upgrade` with a changed setting: hooks, a rolling restart of every node, the setting live.

use anyhow::ensure;
use serde_json::json;

use crate::citus_cluster::{assert_registered, check_tables, load_tables};
use crate::util::Env;
use crate::util::{self, SOCKET};

crate::scenarios!(Citus: upgrade_with_extra_configuration_is_live_on_every_node, scale_out_then_in_drains_the_removed_worker_before_its_pod_goes);

fn upgrade_with_extra_configuration_is_live_on_every_node(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.install(&util::values(json!({})))?;
    cluster.wait_all_ready(util::READY)?;
    let before = assert_registered(&cluster, 3)?;
    load_tables(&cluster)?;
    let started: Vec<_> = cluster
        .pod_names()
        .iter()
        .map(|p| Ok((p.clone(), cluster.pod(p)?.started())))
        .collect::<anyhow::Result<_>>()?;

    let extra = "work_mem = '7MB'\ncitus.max_adaptive_executor_pool_size = 4";
    cluster.upgrade(&util::values(json!({"postgresql": {"extraConfiguration": extra}})))?;
    for (pod, at) in started {
        ensure!(cluster.pod(&pod)?.started() > at, "{pod} was not restarted by the upgrade");
        for (setting, expected) in [("work_mem", "7MB"), ("citus.max_adaptive_executor_pool_size", "4")] {
            let got = util::psql(&cluster, &pod, &SOCKET, &format!("SHOW {setting}"))?;
            ensure!(got == expected, "{pod}: {setting} = {got}");
        }
    }
    ensure!(before == assert_registered(&cluster, 3)?, "pg_dist_node changed by the upgrade");
    check_tables(&cluster)?;
    Ok(())
}

fn scale_out_then_in_drains_the_removed_worker_before_its_pod_goes(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.install(&util::values(json!({})))?;
    cluster.wait_all_ready(util::READY)?;
    load_tables(&cluster)?;

    // No automatic rebalance: this scenario places one shard on the new worker itself.
    let manual = json!({"rebalance": false});
    cluster.upgrade(&util::values(json!({"worker": {"replicaCount": 4}, "workerRegistration": manual})))?;
    assert_registered(&cluster, 4)?;
    // Give the new worker a shard, so that the scale-in has something to move.
    let (from, to) = (util::worker_fqdn(0), util::worker_fqdn(3));
    let pick = format!(
        "SELECT shardid FROM citus_shards WHERE table_name = 'events'::regclass AND nodename = '{from}' LIMIT 1"
    );
    let shard = util::psql(&cluster, util::COORDINATOR, &SOCKET, &pick)?;
    util::psql(
        &cluster,
        util::COORDINATOR,
        &SOCKET,
        &format!("SELECT citus_move_shard_placement({shard}, '{from}', 5432, '{to}', 5432)"),
    )?;

    cluster.upgrade(&util::values(json!({"worker": {"replicaCount": 3}, "workerRegistration": manual})))?;
    ensure!(cluster.pod("my-citus-worker-3").is_err(), "worker-3 still exists after the scale-in");
    assert_registered(&cluster, 3)?;
    let placed = util::psql(
        &cluster,
        util::COORDINATOR,
        &SOCKET,
        &format!("SELECT nodename FROM citus_shards WHERE shardid = {shard}"),
    )?;
    ensure!(placed != to, "shard {shard} still placed on the removed worker");
    check_tables(&cluster)?;
    Ok(())
}
