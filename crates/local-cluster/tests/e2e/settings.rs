//! Settings in `postgresql.extraConfiguration` that the chart's own work depends on (issue 15, item 3): global
//! timeouts apply to the application, never to the chart's sessions or to Citus's shard moves run by the
//! superuser. A preload library the image does not ship stops the node with a log that names the value.

use std::time::Duration;

use anyhow::{bail, ensure};
use serde_json::json;

use crate::citus_cluster::assert_registered;
use crate::util::{self, Env, APP_PASSWORD, COORDINATOR, POSTGRES_PASSWORD};
use testbed::{Space, NODES};

crate::scenarios!(Node: global_timeouts_cancel_the_applications_statements_but_not_a_scale_out_or_scale_in, a_preload_library_the_image_lacks_is_named_in_the_nodes_log);

const ROWS: u32 = 50_000;

fn checksum(space: &Space) -> anyhow::Result<String> {
    space.sql(
        "SET statement_timeout = 0;\n\
         SELECT count(*) || ' ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items",
    )
}

fn global_timeouts_cancel_the_applications_statements_but_not_a_scale_out_or_scale_in(env: &Env) -> anyhow::Result<()> {
    let values = |workers: u32| {
        json!({
            "worker": {"replicaCount": workers},
            "workerRegistration": {"backoffLimit": 0},
            "postgresql": {"extraConfiguration": "statement_timeout = '1s'\nlock_timeout = '1s'\nidle_in_transaction_session_timeout = '2s'\nidle_session_timeout = '5s'"}
        })
    };
    let space = Space::create(env.postgres()?, "settings-timeouts", None)?;
    space.install(values(2))?;
    space.wait_ready(&NODES[..3], util::READY)?;
    let coordinator = util::coordinator_host(&space.ns);
    space.sql(&format!(
        "SET statement_timeout = 0;\n\
             SET citus.shard_count = 32;\n\
             CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);\n\
             SELECT create_distributed_table('items', 'id') \\g /dev/null\n\
             INSERT INTO items SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;"
    ))?;
    let sums = checksum(&space)?;

    // The application keeps the limits it was given.
    let app = util::tcp(&coordinator, "citus", APP_PASSWORD);
    let cancelled = util::try_psql(&space, COORDINATOR, &app, "SELECT pg_sleep(3)")?;
    ensure!(
        matches!(&cancelled, Err(e) if e.contains("statement timeout")),
        "the application's statement was not cancelled by statement_timeout: {cancelled:?}"
    );

    // A scale-out and its background rebalance, then a scale-in whose drain moves 16 shards.
    space.upgrade(values(3))?;
    util::wait_rebalance(&space, Duration::from_secs(300))?;
    let w2 = util::worker_host(&space.ns, 2);
    let moved = space.sql(&format!("SELECT count(*) FROM citus_shards WHERE nodename = '{w2}'"))?;
    ensure!(moved != "0", "the rebalance moved nothing onto worker-2");
    let failed = space.sql("SELECT count(*) FROM pg_dist_background_task WHERE status <> 'done'")?;
    ensure!(failed == "0", "{failed} background task(s) did not end as done (cancelled by a timeout?)");
    space.upgrade(values(2))?;
    assert_registered(&space, 2)?;
    ensure!(checksum(&space)? == sums, "rows changed");

    // Every node's superuser sessions, which the chart's jobs and Citus's shard moves use, run unlimited.
    let show = "SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')";
    for host in [coordinator, util::worker_host(&space.ns, 0), util::worker_host(&space.ns, 1)] {
        let timeouts = util::psql(&space, COORDINATOR, &util::tcp(&host, "postgres", POSTGRES_PASSWORD), show)?;
        ensure!(timeouts == "0 0", "the superuser's timeouts on {host}: {timeouts}");
    }
    Ok(())
}

fn a_preload_library_the_image_lacks_is_named_in_the_nodes_log(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "settings-preload", None)?;
    let values = json!({
        "worker": {"replicaCount": 1},
        "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 30},
        "postgresql": {"sharedPreloadLibraries": "citus,timescaledb"}
    });
    if space.install(values).is_ok() {
        bail!("the release installed with a preload library this image does not have");
    }
    // Every start of the crash-looping container, as the node keeps it.
    let log = space.agent.log(&space.ns, COORDINATOR)?;
    ensure!(
        log.contains("cannot load the library \"timescaledb\" (postgresql.sharedPreloadLibraries")
            && log.contains("Remove it from the value")
            && log.contains("Libraries this image has:")
            && log.contains(" citus "),
        "the coordinator's log does not name the library, the value and what to do:\n{log}"
    );
    Ok(())
}
