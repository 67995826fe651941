//! `helm upgrade` on the control plane with a changed setting: hooks, a rolling restart of every node, the
//! setting live; a scale-out then a scale-in that drains the removed worker before its pod goes.

use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::json;

use crate::citus_cluster::{assert_registered, check_tables, load_tables};
use crate::util::{self, Env, SOCKET};
use testbed::{Space, NODES};

crate::scenarios!(Node: upgrade_with_extra_configuration_is_live_on_every_node, scale_out_then_in_drains_the_removed_worker_before_its_pod_goes);

fn upgrade_with_extra_configuration_is_live_on_every_node(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "upgrade-settings", None)?;
    space.install(json!({}))?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    let before = assert_registered(&space, 3)?;
    load_tables(&space)?;
    let uids =
        |space: &Space| space.jsonpath("pods", "{range .items[*]}{.metadata.name}={.metadata.uid}{\"\\n\"}{end}");
    let started = uids(&space)?;

    let extra = "work_mem = '7MB'\ncitus.max_adaptive_executor_pool_size = 4";
    space.upgrade(json!({"postgresql": {"extraConfiguration": extra}}))?;
    space.wait_rolled_out(util::READY)?;
    let now = uids(&space)?;
    for pod in NODES {
        let uid = |all: &str| all.lines().find_map(|l| l.strip_prefix(&format!("{pod}="))).map(str::to_owned);
        ensure!(uid(&now) != uid(&started), "{pod} was not recreated by the upgrade");
        for (setting, expected) in [("work_mem", "7MB"), ("citus.max_adaptive_executor_pool_size", "4")] {
            let got = util::psql(&space, pod, &SOCKET, &format!("SHOW {setting}"))?;
            ensure!(got == expected, "{pod}: {setting} = {got}");
        }
    }
    ensure!(before == assert_registered(&space, 3)?, "pg_dist_node changed by the upgrade");
    space.wait_serving(util::SERVING)?;
    check_tables(&space)?;
    Ok(())
}

fn scale_out_then_in_drains_the_removed_worker_before_its_pod_goes(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "upgrade-scale", None)?;
    space.install(json!({}))?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    load_tables(&space)?;

    // No automatic rebalance: this scenario places one shard on the new worker itself.
    let manual = json!({"rebalance": false});
    space.upgrade(json!({"worker": {"replicaCount": 4}, "workerRegistration": manual}))?;
    assert_registered(&space, 4)?;
    // Give the new worker a shard, so that the scale-in has something to move.
    let (from, to) = (util::worker_host(&space.ns, 0), util::worker_host(&space.ns, 3));
    let pick = format!(
        "SELECT shardid FROM citus_shards WHERE table_name = 'events'::regclass AND nodename = '{from}' LIMIT 1"
    );
    let shard = space.sql(&pick)?;
    space.sql(&format!("SELECT citus_move_shard_placement({shard}, '{from}', 5432, '{to}', 5432)"))?;

    space.upgrade(json!({"worker": {"replicaCount": 3}, "workerRegistration": manual}))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while space.jsonpath("pods", "{.items[*].metadata.name}")?.split_whitespace().any(|p| p == "my-citus-worker-3") {
        ensure!(Instant::now() < deadline, "worker-3 still exists 60 s after the scale-in");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_registered(&space, 3)?;
    let placed = space.sql(&format!("SELECT nodename FROM citus_shards WHERE shardid = {shard}"))?;
    ensure!(placed != to, "shard {shard} still placed on the removed worker");
    check_tables(&space)?;
    Ok(())
}
