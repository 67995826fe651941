//! Shard moves of scaling against the `block_writes` copy floor of the same data, in one run (issue 8 item 10).
//! One release, 1 coordinator + 3 workers, a table of about 110 MB in 32 shards, a 4th worker; 8 shards move
//! each way.
//! - The chart, online (`auto`): `helm upgrade` to 4 workers (pod start, registration Job, the background
//!   rebalance it starts), then back to 3 (the pre-upgrade drain hook, the StatefulSet shrink).
//! - Citus alone: the floor, `rebalance_table_shards` and `citus_drain_node` in `block_writes` (writes to a
//!   moving shard wait; nothing to replicate); then online, `citus_rebalance_start` + `citus_rebalance_wait`
//!   and `citus_drain_node` in `auto` (logical replication; writes go on).
//! - The chart's orchestration, what it adds on top of Citus's own calls: for the scale-out, from the new
//!   worker accepting connections to the end of the rebalance, minus Citus's own online rebalance of the same
//!   shards; for the scale-in, the hooks minus Citus's drain, and the hooks with nothing to move.
//!
//! On the real control plane with this machine as its node; Helm runs without `--wait`.
//!
//! Goals: online within 5x of the floor, orchestration under 5 s. The data is checked (rows, sums, workers
//! holding shards) after every step. Prints `skipped: <reason>` without root, PostgreSQL, Citus or the
//! control plane's binaries.
//! Two rounds, the best time of each step kept (the machine is shared).
//! Run: `cargo bench -p local-cluster --bench scaling` (about 8 minutes; SCALING_BENCH_ROWS to change the
//! size, default 110,000 rows of about 1 kB).

use std::time::Duration;

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};
use testbed::Space;

mod common;
use common::timed;

const NEW_WORKER: &str = "my-citus-worker-3.%";
const NEW_POD: &str = "my-citus-worker-3";
const ROUNDS: u32 = 2;

fn chart_values(workers: u32, rebalance: bool) -> Value {
    testbed::values(json!({
        "worker": {"replicaCount": workers},
        "workerRegistration": {"rebalance": rebalance, "shardTransferMode": "auto"},
        // To compare settings, e.g. PostgreSQL's and Citus's defaults instead of the chart's:
        // SCALING_BENCH_CONFIG=$'wal_retrieve_retry_interval = 5s\ncitus.background_task_queue_interval = 5s'
        "postgresql": {"extraConfiguration": std::env::var("SCALING_BENCH_CONFIG").unwrap_or_default()},
    }))
}

/// What the data looks like; compared after every step.
fn fingerprint(space: &Space) -> anyhow::Result<String> {
    space.sql("SELECT count(*), sum(id), sum(length(payload)) FROM bench")
}

fn workers_with_shards(space: &Space) -> anyhow::Result<u32> {
    Ok(space.sql("SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'bench'::regclass")?.parse()?)
}

fn rebalance(space: &Space, mode: &str) -> anyhow::Result<()> {
    space.sql(&format!(
        "SELECT citus_rebalance_start(shard_transfer_mode => '{mode}') \\g /dev/null\n\
             SELECT citus_rebalance_wait();"
    ))?;
    last_rebalance_seconds(space).map(drop)
}

/// The run time of the newest rebalance job; fails unless it finished.
fn last_rebalance_seconds(space: &Space) -> anyhow::Result<f64> {
    let row = space.sql(
        "SELECT state || ' ' || coalesce(extract(epoch FROM finished_at - started_at)::text, '') \
         FROM pg_dist_background_job WHERE job_type = 'rebalance' ORDER BY job_id DESC LIMIT 1",
    )?;
    let (state, seconds) = row.split_once(' ').context("no rebalance job")?;
    ensure!(state == "finished", "the rebalance job is {state}: SELECT * FROM pg_dist_background_task");
    Ok(seconds.parse()?)
}

fn drain(space: &Space, mode: &str) -> anyhow::Result<()> {
    space
        .sql(&format!(
            "SELECT citus_set_node_property(nodename, nodeport, 'shouldhaveshards', false) \
               FROM pg_dist_node WHERE nodename LIKE '{NEW_WORKER}' \\g /dev/null\n\
             SELECT citus_drain_node(nodename, nodeport, shard_transfer_mode => '{mode}') \
               FROM pg_dist_node WHERE nodename LIKE '{NEW_WORKER}' \\g /dev/null\n\
             SELECT citus_set_node_property(nodename, nodeport, 'shouldhaveshards', true) \
               FROM pg_dist_node WHERE nodename LIKE '{NEW_WORKER}' \\g /dev/null"
        ))
        .map(drop)
}

/// A `helm upgrade` to `workers`. For the scale-out, also the time until the new worker accepts connections
/// (Kubernetes's part: scheduling, the pod's start, initdb), polled from the coordinator; after a scale-in,
/// waits (untimed) until the old worker's pod is gone. Returns (whole upgrade, new worker accepting).
fn upgrade_in_steps(space: &Space, workers: u32, rebalance: bool) -> anyhow::Result<(Duration, Duration)> {
    let values = chart_values(workers, rebalance);
    if workers == 4 {
        let host = format!("{NEW_POD}.my-citus-worker-headless.{}.svc.cluster.local", space.ns);
        let argv = ["pg_isready", "-q", "-t", "1", "-h", host.as_str(), "-p", "5432", "-U", "postgres", "-d", "citus"];
        let accepts = || space.run(testbed::COORDINATOR, &argv, &[], None).is_ok_and(|out| out.status.success());
        let (whole, accepting) = common::timed_until(|| space.upgrade_values(&values), accepts)
            .with_context(|| format!("{NEW_POD} accepting connections"))?;
        println!(
            "  helm upgrade to {workers} workers: {:.1} s; {NEW_POD} accepted connections after {:.1} s",
            whole.as_secs_f64(),
            accepting.as_secs_f64()
        );
        Ok((whole, accepting))
    } else {
        let whole = timed(&format!("helm upgrade to {workers} workers"), || space.upgrade_values(&values))?;
        space.wait_gone(NEW_POD, Duration::from_secs(300))?;
        Ok((whole, Duration::ZERO))
    }
}

/// One round's times; each the best over the rounds (other load on the machine only ever adds time).
#[derive(Clone, Copy)]
struct Round {
    /// From the new worker accepting connections to the end of the rebalance.
    chart_out: Duration,
    chart_in: Duration,
    floor_out: Duration,
    floor_in: Duration,
    online_out: Duration,
    online_in: Duration,
    scale_in_empty: Duration,
}

impl Round {
    fn min(&self, o: &Round) -> Round {
        Round {
            chart_out: self.chart_out.min(o.chart_out),
            chart_in: self.chart_in.min(o.chart_in),
            floor_out: self.floor_out.min(o.floor_out),
            floor_in: self.floor_in.min(o.floor_in),
            online_out: self.online_out.min(o.online_out),
            online_in: self.online_in.min(o.online_in),
            scale_in_empty: self.scale_in_empty.min(o.scale_in_empty),
        }
    }
}

/// The chart's scale-out and scale-in, then Citus's own calls on the same data, then the chart's scale-in
/// of an empty worker; from 3 workers back to 3. `check(space, workers, step)` verifies the data.
fn measure(space: &Space, check: &dyn Fn(&Space, u32, &str) -> anyhow::Result<()>) -> anyhow::Result<Round> {
    println!(" the chart, online (auto):");
    let (upgrade, accepting) = upgrade_in_steps(space, 4, true)?;
    let waited =
        timed("until the background rebalance finished", || space.sql("SELECT citus_rebalance_wait()").map(drop))?;
    last_rebalance_seconds(space)?;
    let chart_out = (upgrade + waited).saturating_sub(accepting);
    check(space, 4, "chart scale-out")?;
    let (chart_in, _) = upgrade_in_steps(space, 3, true)?;
    check(space, 3, "chart scale-in")?;

    println!(" Citus alone, on the same data:");
    upgrade_in_steps(space, 4, false)?;
    check(space, 3, "4th worker registered without rebalance")?;
    let floor_out = timed("rebalance onto the 4th worker, block_writes, synchronous", || {
        space.sql("SELECT rebalance_table_shards(shard_transfer_mode => 'block_writes')").map(drop)
    })?;
    check(space, 4, "block_writes rebalance")?;
    let floor_in = timed("drain of the 4th worker, block_writes", || drain(space, "block_writes"))?;
    check(space, 3, "block_writes drain")?;
    let online_out = timed("background rebalance onto the 4th worker, auto", || rebalance(space, "auto"))?;
    check(space, 4, "auto rebalance")?;
    let online_in = timed("drain of the 4th worker, auto", || drain(space, "auto"))?;
    check(space, 3, "auto drain")?;
    println!(" the chart, nothing to move:");
    let (scale_in_empty, _) = upgrade_in_steps(space, 3, true)?;
    check(space, 3, "scale-in of an empty worker")?;
    Ok(Round { chart_out, chart_in, floor_out, floor_in, online_out, online_in, scale_in_empty })
}

fn main() -> anyhow::Result<()> {
    let Some(postgres) = common::citus_host() else { return Ok(()) };
    let result = run(&postgres);
    testbed::stop();
    result
}

fn run(postgres: &local_cluster::Postgres) -> anyhow::Result<()> {
    let rows: u64 = match std::env::var("SCALING_BENCH_ROWS") {
        Ok(v) => v.parse().context("SCALING_BENCH_ROWS")?,
        Err(_) => 110_000,
    };
    let space = Space::create(postgres, "bench-scaling", None)?;
    space.install_values(&chart_values(3, true))?;
    space.sql(&format!(
        "CREATE TABLE bench (id bigint PRIMARY KEY, payload text NOT NULL);\n\
             SELECT create_distributed_table('bench', 'id', shard_count => 32) \\g /dev/null\n\
             INSERT INTO bench SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, {rows}) g;"
    ))?;
    let mb: f64 = space.sql("SELECT citus_total_relation_size('bench') / 1048576.0")?.parse::<f64>()?;
    println!("{rows} rows, {mb:.0} MB in 32 shards on 3 workers");
    ensure!(mb >= 100.0, "only {mb:.0} MB: raise SCALING_BENCH_ROWS");
    let expected = fingerprint(&space)?;
    let check = |space: &Space, workers: u32, step: &str| -> anyhow::Result<()> {
        let got = fingerprint(space)?;
        ensure!(got == expected, "{step}: data {got}, expected {expected}");
        let holding = workers_with_shards(space)?;
        ensure!(holding == workers, "{step}: shards on {holding} workers, expected {workers}");
        Ok(())
    };

    let mut best: Option<Round> = None;
    for round in 1..=ROUNDS {
        println!("round {round} of {ROUNDS}:");
        let r = measure(&space, &check)?;
        best = Some(match best {
            Some(b) => b.min(&r),
            None => r,
        });
    }
    let Round { chart_out, chart_in, floor_out, floor_in, online_out, online_in, scale_in_empty } =
        best.context("no round ran")?;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let verdict = |met: bool| if met { "goal met" } else { "goal MISSED" };
    let secs = |d: Duration| d.as_secs_f64();
    println!("best of {ROUNDS} rounds, {mb:.0} MB in 32 shards, 8 of them moved each way; floor = block_writes:");
    for (what, floor, online, chart) in
        [("scale-out", floor_out, online_out, chart_out), ("scale-in", floor_in, online_in, chart_in)]
    {
        let (r, c) = (ratio(online, floor), ratio(chart, floor));
        println!(
            "  {what}: floor {:.1} s; Citus online {:.1} s = {r:.1}x, through the chart {:.1} s = {c:.1}x (goal <= 5x: {})",
            secs(floor),
            secs(online),
            secs(chart),
            verdict(r.max(c) <= 5.0)
        );
    }
    let out_orchestration = chart_out.saturating_sub(online_out);
    let in_orchestration = chart_in.saturating_sub(online_in);
    println!(
        "  chart orchestration on top of Citus: scale-out {:.1} s (new worker accepting to rebalanced {:.1} s - \
         Citus's online rebalance {:.1} s), scale-in {:.1} s (hooks {:.1} s - Citus's drain {:.1} s; with nothing \
         to move {:.1} s) (goal < 5 s: {})",
        secs(out_orchestration),
        secs(chart_out),
        secs(online_out),
        secs(in_orchestration),
        secs(chart_in),
        secs(online_in),
        secs(scale_in_empty),
        verdict(secs(out_orchestration) < 5.0 && secs(in_orchestration.max(scale_in_empty)) < 5.0)
    );
    Ok(())
}
