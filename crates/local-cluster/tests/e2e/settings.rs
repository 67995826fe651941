//! Settings in `postgresql.extraConfiguration` that the chart's own work depends on (issue 15, item 3): global
//! timeouts apply to the application, never to the chart's sessions or to Citus's shard moves run by the
//! superuser. A preload library the image does not ship stops the node with a log that names the value.

use std::time::Duration;

use anyhow::{bail, ensure};
use local_cluster::Cluster;
use serde_json::json;

use crate::citus_cluster::assert_registered;
use crate::util::Env;
use crate::util::{self, APP_PASSWORD, COORDINATOR, COORDINATOR_FQDN, POSTGRES_PASSWORD, SOCKET};

crate::scenarios!(Citus: global_timeouts_cancel_the_applications_statements_but_not_a_scale_out_or_scale_in, a_preload_library_the_image_lacks_is_named_in_the_nodes_log);

const ROWS: u32 = 50_000;

fn sql(cluster: &Cluster, query: &str) -> anyhow::Result<String> {
    util::psql(cluster, COORDINATOR, &SOCKET, query)
}

fn checksum(cluster: &Cluster) -> anyhow::Result<String> {
    sql(
        cluster,
        "SET statement_timeout = 0;\n\
         SELECT count(*) || ' ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items",
    )
}

fn global_timeouts_cancel_the_applications_statements_but_not_a_scale_out_or_scale_in(env: &Env) -> anyhow::Result<()> {
    let values = |workers: u32| {
        util::values(json!({
            "worker": {"replicaCount": workers},
            "workerRegistration": {"backoffLimit": 0},
            "postgresql": {"extraConfiguration": "statement_timeout = '1s'\nlock_timeout = '1s'\nidle_in_transaction_session_timeout = '2s'\nidle_session_timeout = '5s'"}
        }))
    };
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&values(2))?;
    cluster.wait_all_ready(util::READY)?;
    sql(
        &cluster,
        &format!(
            "SET statement_timeout = 0;\n\
             SET citus.shard_count = 32;\n\
             CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);\n\
             SELECT create_distributed_table('items', 'id') \\g /dev/null\n\
             INSERT INTO items SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;"
        ),
    )?;
    let sums = checksum(&cluster)?;

    // The application keeps the limits it was given.
    let app = util::tcp(COORDINATOR_FQDN, "citus", APP_PASSWORD);
    let cancelled = util::try_psql(&cluster, COORDINATOR, &app, "SELECT pg_sleep(3)")?;
    ensure!(
        matches!(&cancelled, Err(e) if e.contains("statement timeout")),
        "the application's statement was not cancelled by statement_timeout: {cancelled:?}"
    );

    // A scale-out and its background rebalance, then a scale-in whose drain moves 16 shards.
    cluster.upgrade(&values(3))?;
    util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    let w2 = util::worker_fqdn(2);
    let moved = sql(&cluster, &format!("SELECT count(*) FROM citus_shards WHERE nodename = '{w2}'"))?;
    ensure!(moved != "0", "the rebalance moved nothing onto worker-2");
    let failed = sql(&cluster, "SELECT count(*) FROM pg_dist_background_task WHERE status <> 'done'")?;
    ensure!(failed == "0", "{failed} background task(s) did not end as done (cancelled by a timeout?)");
    cluster.upgrade(&values(2))?;
    assert_registered(&cluster, 2)?;
    ensure!(checksum(&cluster)? == sums, "rows changed");

    // Every node's superuser sessions, which the chart's jobs and Citus's shard moves use, run unlimited.
    let show = "SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')";
    for host in [COORDINATOR_FQDN.to_owned(), util::worker_fqdn(0), util::worker_fqdn(1)] {
        let timeouts = util::psql(&cluster, COORDINATOR, &util::tcp(&host, "postgres", POSTGRES_PASSWORD), show)?;
        ensure!(timeouts == "0 0", "the superuser's timeouts on {host}: {timeouts}");
    }
    Ok(())
}

fn a_preload_library_the_image_lacks_is_named_in_the_nodes_log(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    let values = util::values(json!({
        "worker": {"replicaCount": 1},
        "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 30},
        "postgresql": {"sharedPreloadLibraries": "citus,timescaledb"}
    }));
    if cluster.install(&values).is_ok() {
        bail!("the release installed with a preload library this image does not have");
    }
    let log = cluster.logs(COORDINATOR)?;
    ensure!(
        log.contains("cannot load the library \"timescaledb\" (postgresql.sharedPreloadLibraries")
            && log.contains("Remove it from the value")
            && log.contains("Libraries this image has:")
            && log.contains(" citus "),
        "the coordinator's log does not name the library, the value and what to do:\n{log}"
    );
    Ok(())
}
