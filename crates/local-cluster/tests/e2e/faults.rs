//! Scaling promises under the faults of the December review (`shared/notes/review-2026-12-defects.md`):
//! a release change that would delete workers while the coordinator is down is refused, whatever `lookup`
//! answered when its revision was rendered (D2), and one that deletes none goes through (D10); a drain whose
//! hook pod dies leaves no worker closed to shards once a later revision keeps it (D3), and marked before
//! it left pg_dist_node, out of the registration loop's reach (D18); a reference table
//! without primary key does not stop a scale-out (D1), nor does one that cannot be copied before the
//! registration Job's deadline (D12); a worker added while a rebalance runs gets shards (D8);
//! a changed clusterDomain is refused instead of registering every node a second time (D17); so is a changed
//! auth.database, naming the value (D15); a worker whose volume was lost is not taken for a registered one
//! (D19); a drain held up by a transaction left open is told in its log, naming the session (D21).

use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use local_cluster::{Cluster, Manifest};
use serde_json::{json, Value};

use crate::citus_cluster::assert_registered;
use crate::util::Env;
use crate::util::{self, COORDINATOR, SOCKET};

crate::scenarios!(Citus: a_change_that_would_delete_workers_while_the_coordinator_is_down_is_refused_and_one_that_deletes_none_goes_through, a_drain_whose_hook_pod_dies_leaves_no_worker_closed_once_a_revision_keeps_it, a_reference_table_without_primary_key_does_not_stop_a_scale_out, a_reference_table_that_cannot_be_copied_now_does_not_hold_the_scale_out, a_worker_added_while_a_rebalance_runs_gets_shards_too, a_changed_cluster_domain_is_refused_before_any_node_is_registered_twice, a_changed_database_name_is_refused_naming_the_value, a_worker_that_lost_its_volume_stops_the_next_registration, a_drain_held_up_by_an_open_transaction_names_it_and_goes_on_once_it_ends);

const ROWS: u32 = 50_000;

fn sql(cluster: &Cluster, query: &str) -> anyhow::Result<String> {
    util::psql(cluster, COORDINATOR, &SOCKET, query)
}

/// Values with `workers` workers; hook Jobs run once (a failure is final) and wait at most 30 s for nodes.
fn values(workers: u32) -> Value {
    util::values(json!({
        "worker": {"replicaCount": workers},
        "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 30}
    }))
}

/// A distributed table `items` (32 shards, ROWS rows, primary key) and a reference table `kinds`.
fn load(cluster: &Cluster) -> anyhow::Result<()> {
    sql(
        cluster,
        &format!(
            "SET citus.shard_count = 32;\n\
             CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);\n\
             SELECT create_distributed_table('items', 'id') \\g /dev/null\n\
             INSERT INTO items SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;\n\
             CREATE TABLE kinds (kind int PRIMARY KEY, name text NOT NULL);\n\
             SELECT create_reference_table('kinds') \\g /dev/null\n\
             INSERT INTO kinds SELECT g, 'kind-' || g FROM generate_series(1, 100) g;"
        ),
    )?;
    Ok(())
}

/// A release with `workers` workers, ready, holding [`load`]'s tables; returns it with the checksum of items.
fn loaded(env: &Env, workers: u32) -> anyhow::Result<(util::TestCluster, String)> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&values(workers))?;
    cluster.wait_all_ready(util::READY)?;
    load(&cluster)?;
    let sums = checksum(&cluster)?;
    Ok((cluster, sums))
}

/// Count and checksum of every row of `items`.
fn checksum(cluster: &Cluster) -> anyhow::Result<String> {
    let sums =
        sql(cluster, "SELECT count(*) || ' ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items")?;
    ensure!(sums.starts_with(&format!("{ROWS} ")), "items: {sums}");
    Ok(sums)
}

/// Placements of `items` on worker `n`.
fn placements_on(cluster: &Cluster, n: u32) -> anyhow::Result<u32> {
    Ok(copies_on(cluster, "items", n)?.parse()?)
}

/// Placements of `table` on worker `n`.
fn copies_on(cluster: &Cluster, table: &str, n: u32) -> anyhow::Result<String> {
    let w = util::worker_fqdn(n);
    sql(
        cluster,
        &format!("SELECT count(*) FROM citus_shards WHERE table_name = '{table}'::regclass AND nodename = '{w}'"),
    )
}

/// `nodename=shouldhaveshards` of every worker, by name.
fn open_to_shards(cluster: &Cluster) -> anyhow::Result<String> {
    sql(
        cluster,
        "SELECT string_agg(nodename || '=' || shouldhaveshards, ' ' ORDER BY nodename) FROM pg_dist_node WHERE groupid <> 0",
    )
}

fn job<'m>(manifest: &'m Manifest, name: &str) -> anyhow::Result<&'m Value> {
    manifest.get("Job", name).with_context(|| format!("the manifest has no Job {name}"))
}

/// The drain Job of `manifest` as Helm stored it on a real cluster, where `lookup` answered at render time:
/// `CITUS_WORKER_LIVE` holds the worker count that ran then (an empty string: rendered without `lookup`, as
/// Argo CD does). Its scripts' ConfigMap (a hook object, deleted after its hook succeeded) is created again.
fn stored_drain_job(cluster: &mut Cluster, manifest: &Manifest, revision: u32, live: &str) -> anyhow::Result<Value> {
    let scripts = format!("my-citus-scale-in-r{revision}");
    let config = manifest.get("ConfigMap", &scripts).with_context(|| format!("no ConfigMap {scripts}"))?;
    cluster.add_object(config)?;
    let mut job = job(manifest, &format!("my-citus-drain-workers-r{revision}"))?.clone();
    let env = job
        .pointer_mut("/spec/template/spec/containers/0/env")
        .and_then(Value::as_array_mut)
        .context("the drain Job's container has no env")?;
    env.retain(|e| e["name"] != "CITUS_WORKER_LIVE");
    env.push(json!({"name": "CITUS_WORKER_LIVE", "value": live}));
    Ok(job)
}

/// The error of a Helm command that must fail; `what` says what went through when it did not.
fn refusal(result: local_cluster::Result<Manifest>, what: &str) -> anyhow::Result<String> {
    match result {
        Ok(_) => bail!("{what}"),
        Err(e) => Ok(format!("{:#}", anyhow::Error::from(e))),
    }
}

/// Runs `job` to its end: Ok(log) when it succeeded, Err(log) when it failed.
fn run_job(cluster: &mut Cluster, job: &Value) -> anyhow::Result<Result<String, String>> {
    match cluster.run_job(job) {
        Ok(report) => {
            let log = report.logs.last().context("no pod log")?;
            Ok(Ok(std::fs::read_to_string(log)?))
        }
        Err(e) => Ok(Err(format!("{:#}", anyhow::Error::from(e)))),
    }
}

fn a_change_that_would_delete_workers_while_the_coordinator_is_down_is_refused_and_one_that_deletes_none_goes_through(
    env: &Env,
) -> anyhow::Result<()> {
    let (mut cluster, sums) = loaded(env, 2)?;
    // Revision 2 (3 workers) was rendered while 2 ran; revision 3 has 4 workers, each holding shards.
    let rev2 = cluster.upgrade(&values(3))?;
    util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    let rev3 = cluster.upgrade(&values(4))?;
    util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    ensure!(placements_on(&cluster, 3)? > 0, "worker-3 holds no shard");

    // The coordinator goes down (as after a bad revision): no process, no address.
    cluster.hold_pending(COORDINATOR);
    cluster.delete_pod(COORDINATOR)?;

    // `helm rollback my-citus 2` on a real cluster runs revision 2's stored drain Job, whose render saw 2
    // workers: it would keep 3 and delete worker-3, which holds shards. It must refuse, naming the pod.
    let stale = stored_drain_job(&mut cluster, &rev2, 2, "2")?;
    match run_job(&mut cluster, &stale)? {
        Ok(log) => bail!("the drain of a rollback that deletes worker-3 succeeded with the coordinator down:\n{log}"),
        Err(e) => ensure!(
            e.contains("would delete my-citus-worker-3")
                && e.contains("roll back to a revision that has as many workers"),
            "the refusal does not name the doomed pod and the way out: {e}"
        ),
    }
    // The same through Helm: the rollback fails before anything is applied.
    if cluster.rollback("my-citus", 2).is_ok() {
        bail!("helm rollback to 3 workers went through with the coordinator down");
    }
    ensure!(cluster.statefulset_replicas("my-citus-worker") == Some(4), "the refused rollback changed the StatefulSet");

    // A change that deletes no worker (revision 3's own drain, rendered without `lookup` as Argo CD does)
    // does not wait for the coordinator: that is how a broken coordinator gets fixed.
    let started = std::time::Instant::now();
    let argo = stored_drain_job(&mut cluster, &rev3, 3, "")?;
    match run_job(&mut cluster, &argo)? {
        Ok(log) => ensure!(log.contains("nothing to drain"), "{log}"),
        Err(e) => bail!("the drain of a change that keeps every worker failed with the coordinator down: {e}"),
    }
    ensure!(started.elapsed() < Duration::from_secs(25), "it waited {:?} for the coordinator", started.elapsed());

    cluster.release_pending(COORDINATOR)?;
    cluster.wait_all_ready(util::READY)?;
    assert_registered(&cluster, 4)?;
    ensure!(checksum(&cluster)? == sums, "rows changed");
    ensure!(placements_on(&cluster, 3)? > 0, "worker-3 lost its shards");
    Ok(())
}

fn a_drain_whose_hook_pod_dies_leaves_no_worker_closed_once_a_revision_keeps_it(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = loaded(env, 4)?;
    for n in 2..4 {
        ensure!(placements_on(&cluster, n)? > 0, "worker-{n} holds no shard");
    }

    // The scale-in to 2 workers: its hook pod is killed (eviction, preemption, `kubectl delete job`) once the
    // drain has moved its first shard; with backoffLimit 0 the upgrade fails.
    cluster.kill_on_log_line("my-citus-drain-workers-r2", "NOTICE:  Moving shard");
    if cluster.upgrade(&values(2)).is_ok() {
        bail!("the scale-in succeeded although its hook pod was killed");
    }
    ensure!(cluster.statefulset_replicas("my-citus-worker") == Some(4), "the failed scale-in changed the StatefulSet");
    // The leaving workers were marked before the first shard moved, so no round of the registration loop can
    // find one removed and unmarked (D18).
    for n in 2..4 {
        ensure!(
            retired_mark(&cluster, n)? == "removed",
            "worker-{n}'s mark during the drain: {}",
            retired_mark(&cluster, n)?
        );
    }

    // The user keeps the 4 workers. Every worker takes shards again, no record of the abandoned drain is
    // left, and a rebalance spreads the shards over all four.
    cluster.upgrade(&values(4))?;
    for n in 2..4 {
        ensure!(retired_mark(&cluster, n)? == "kept", "worker-{n}'s mark once kept: {}", retired_mark(&cluster, n)?);
    }
    let workers: Vec<String> = (0..4).map(|n| format!("{}=true", util::worker_fqdn(n))).collect();
    ensure!(open_to_shards(&cluster)? == workers.join(" "), "after the abandoned drain: {}", open_to_shards(&cluster)?);
    let records = sql(&cluster, "SELECT count(*) FROM citus_chart.draining")?;
    ensure!(records == "0", "{records} record(s) of the abandoned drain left");
    // The rebalance the registration may have started, then one more: neither empties a kept worker.
    if sql(&cluster, "SELECT count(*) FROM pg_dist_background_job")? != "0" {
        util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    }
    if sql(&cluster, "SELECT citus_rebalance_start() IS NOT NULL")? == "t" {
        util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    }
    for n in 0..4 {
        ensure!(placements_on(&cluster, n)? > 0, "worker-{n} holds no shard after a rebalance");
    }
    assert_registered(&cluster, 4)?;
    ensure!(checksum(&cluster)? == sums, "rows changed");
    Ok(())
}

fn a_reference_table_without_primary_key_does_not_stop_a_scale_out(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = loaded(env, 2)?;
    sql(
        &cluster,
        "CREATE TABLE countries (code text, name text);\n\
         SELECT create_reference_table('countries') \\g /dev/null\n\
         INSERT INTO countries VALUES ('fr', 'France'), ('jp', 'Japan');",
    )?;

    cluster.upgrade(&values(3)).context("the scale-out failed")?;
    let log = cluster.logs(&last_pod(&cluster, "my-citus-register-workers")?)?;
    ensure!(log.contains("WARNING: reference table(s) without primary key") && log.contains("countries"), "{log}");
    util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    let copies = copies_on(&cluster, "countries", 2)?;
    ensure!(copies == "1", "countries on worker-2: {copies}");
    ensure!(placements_on(&cluster, 2)? > 0, "worker-2 holds no shard of items");
    ensure!(checksum(&cluster)? == sums, "rows changed");
    let joined = sql(
        &cluster,
        "SELECT count(*) FROM items i JOIN countries c ON c.code = CASE WHEN i.id % 2 = 0 THEN 'fr' ELSE 'jp' END",
    )?;
    ensure!(joined == ROWS.to_string(), "join with countries: {joined}");
    Ok(())
}

/// What worker `n`'s removal mark says (empty when it has none).
fn retired_mark(cluster: &Cluster, n: u32) -> anyhow::Result<String> {
    util::psql(
        cluster,
        &format!("my-citus-worker-{n}"),
        &SOCKET,
        "SELECT coalesce(pg_read_file('/tmp/citus/retired', 0, 100, true), '')",
    )
}

/// The newest pod of a Job that has a log (`logs/<job>-<n>.log`).
fn last_pod(cluster: &Cluster, job: &str) -> anyhow::Result<String> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(cluster.dir().join("logs"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_suffix(".log").and_then(|n| n.strip_prefix(job)).and_then(|n| n.strip_prefix('-')) {
            numbers.push(n.parse::<u32>()?);
        }
    }
    let n = numbers.into_iter().max().with_context(|| format!("no pod of {job} has a log"))?;
    Ok(format!("{job}-{n}"))
}

/// In `pod`: a session that holds an EXCLUSIVE lock on `shard` until it is ended (application_name
/// `holder`). Shard sizes can still be read (the rebalancer plans with them), but an online copy cannot start:
/// its publication needs a SHARE UPDATE EXCLUSIVE lock.
fn hold_shard(cluster: &Cluster, pod: &str, shard: &str) -> anyhow::Result<()> {
    background_session(
        cluster,
        pod,
        "holder",
        &format!(
            "echo 'BEGIN;'; echo 'SET LOCAL citus.enable_manual_changes_to_shards TO on;'; \
             echo 'LOCK TABLE public.{shard} IN EXCLUSIVE MODE;'; echo 'SELECT pg_sleep(900);'"
        ),
    )?;
    let held = format!("SELECT count(*) FROM pg_locks WHERE relation = to_regclass('public.{shard}') AND mode = 'ExclusiveLock' AND granted");
    for _ in 0..100 {
        if util::psql(cluster, pod, &SOCKET, &held)? == "1" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the lock on {shard} in {pod} was not taken")
}

/// Starts, in `pod` and in the background, a local psql session as postgres (application name `app`) fed by
/// the output of the shell commands `feed` (no double quotes in them).
fn background_session(cluster: &Cluster, pod: &str, app: &str, feed: &str) -> anyhow::Result<()> {
    let script = format!(
        "{{ {feed}; }} | PGAPPNAME={app} psql -X -q -h /var/run/postgresql -U postgres -d citus >/dev/null 2>&1"
    );
    let start = ["sh", "-c", &format!("nohup sh -c \"{script}\" </dev/null >/dev/null 2>&1 &")];
    let out = cluster.exec(pod, &start, &[], None)?;
    ensure!(out.status.success(), "starting session {app} in {pod}: {}", out.stderr);
    Ok(())
}

/// Ends the sessions of [`hold_shard`] in `pod`.
fn release_shards(cluster: &Cluster, pod: &str) -> anyhow::Result<()> {
    util::psql(
        cluster,
        pod,
        &SOCKET,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'",
    )?;
    Ok(())
}

fn a_worker_added_while_a_rebalance_runs_gets_shards_too(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = loaded(env, 2)?;

    // A rebalance that runs while the scale-out registers worker-2: it moves shards off worker-1 online and is
    // held at a locked shard of worker-1, so it is still running when the registration looks.
    let w1 = util::worker_fqdn(1);
    let shard = sql(&cluster, &format!("SELECT shard_name FROM citus_shards WHERE table_name = 'items'::regclass AND nodename = '{w1}' ORDER BY shardid LIMIT 1"))?;
    hold_shard(&cluster, "my-citus-worker-1", &shard)?;
    sql(
        &cluster,
        &format!(
            "SELECT citus_set_node_property('{w1}', 5432, 'shouldhaveshards', false) \\g /dev/null\n\
             SELECT citus_rebalance_start(drain_only => true, shard_transfer_mode => 'force_logical') \\g /dev/null\n\
             SELECT citus_set_node_property('{w1}', 5432, 'shouldhaveshards', true) \\g /dev/null"
        ),
    )?;
    let running = "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running')";
    ensure!(sql(&cluster, running)? == "1", "no rebalance runs");

    cluster.upgrade(&values(3))?;
    // The held shard goes free; the rebalance the registration left (or started) ends.
    release_shards(&cluster, "my-citus-worker-1")?;
    util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    ensure!(sql(&cluster, running)? == "0", "a rebalance still runs");
    for n in 0..3 {
        ensure!(placements_on(&cluster, n)? > 0, "worker-{n} holds no shard of items after the rebalances");
    }
    ensure!(checksum(&cluster)? == sums, "rows changed");
    Ok(())
}

fn a_reference_table_that_cannot_be_copied_now_does_not_hold_the_scale_out(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = loaded(env, 2)?;

    // Every copy of the reference table is locked, as a long copy of a big one would take: a copy to a new
    // worker cannot start before the registration Job's deadline (30 s here).
    let shard = sql(&cluster, "SELECT shard_name FROM citus_shards WHERE table_name = 'kinds'::regclass LIMIT 1")?;
    let holders = ["my-citus-coordinator-0", "my-citus-worker-0", "my-citus-worker-1"];
    for pod in holders {
        hold_shard(&cluster, pod, &shard)?;
    }
    cluster.upgrade(&values(3)).context("the scale-out failed while the reference table could not be copied")?;
    let running = "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running')";
    ensure!(sql(&cluster, running)? == "1", "no rebalance was left to copy the reference table");

    // Once the copies are free, the rebalance copies the reference table and then moves shards.
    for pod in holders {
        release_shards(&cluster, pod)?;
    }
    util::wait_rebalance(&cluster, Duration::from_secs(300))?;
    let copies = copies_on(&cluster, "kinds", 2)?;
    ensure!(copies == "1", "kinds on worker-2: {copies}");
    ensure!(placements_on(&cluster, 2)? > 0, "worker-2 holds no shard of items");
    ensure!(checksum(&cluster)? == sums, "rows changed");
    Ok(())
}

fn a_changed_cluster_domain_is_refused_before_any_node_is_registered_twice(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = loaded(env, 2)?;
    let registered =
        sql(&cluster, "SELECT string_agg(nodename || ':' || groupid, ' ' ORDER BY groupid) FROM pg_dist_node")?;

    // The cluster's DNS now answers for the new domain only, as after a change of clusterDomain.
    let mut changed = values(2);
    changed["clusterDomain"] = json!("k8s.example");
    let err = refusal(cluster.upgrade(&changed), "the upgrade that changes clusterDomain went through")?;
    ensure!(
        err.contains("registered under another cluster domain") && err.contains("Set clusterDomain back"),
        "the refusal does not say what happened and what to do: {err}"
    );
    let nodes = sql(&cluster, "SELECT string_agg(nodename || ':' || groupid, ' ' ORDER BY groupid) FROM pg_dist_node")?;
    ensure!(nodes == registered, "pg_dist_node changed: {nodes} (was {registered})");

    // Set back, the release works as before.
    let mut back = values(2);
    back["clusterDomain"] = json!("cluster.local");
    cluster.upgrade(&back).context("the upgrade that sets clusterDomain back")?;
    assert_registered(&cluster, 2)?;
    ensure!(checksum(&cluster)? == sums, "rows changed");
    Ok(())
}

fn a_changed_database_name_is_refused_naming_the_value(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&values(1))?;
    cluster.wait_all_ready(util::READY)?;
    let mut changed = values(1);
    changed["auth"]["database"] = json!("shop");
    let started = std::time::Instant::now();
    let err = refusal(cluster.upgrade(&changed), "the upgrade that renames the database went through")?;
    ensure!(
        err.contains("has no database shop") && err.contains("Set auth.database back"),
        "the refusal does not name the value and the way back: {err}"
    );
    // At once, not after the Job's deadline.
    ensure!(started.elapsed() < Duration::from_secs(25) + util::READY, "refused after {:?}", started.elapsed());
    Ok(())
}

fn a_worker_that_lost_its_volume_stops_the_next_registration(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, _) = loaded(env, 2)?;
    ensure!(placements_on(&cluster, 1)? > 0, "worker-1 holds no shard");

    // Worker-1's volume is lost (a node's local disk, a deleted claim): its pod starts on an empty one.
    let worker = "my-citus-worker-1";
    cluster.hold_pending(worker);
    cluster.delete_pod(worker)?;
    let claim = cluster.dir().join(format!("claims/data-{worker}"));
    for entry in std::fs::read_dir(&claim)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?
        } else {
            std::fs::remove_file(&path)?
        }
    }
    cluster.release_pending(worker)?;
    cluster.wait_all_ready(util::READY)?;

    let err = match cluster.upgrade(&values(2)) {
        Ok(_) => bail!("the registration took worker-1 with its new, empty data directory for a registered worker"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    };
    ensure!(
        err.contains(&format!("worker {} holds", util::worker_fqdn(1))) && err.contains("was initialised again"),
        "the registration does not say that worker-1 lost its data: {err}"
    );
    Ok(())
}

fn a_drain_held_up_by_an_open_transaction_names_it_and_goes_on_once_it_ends(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = loaded(env, 3)?;
    // An application transaction that wrote a row on worker-2 and stays open (idle in transaction) for 45 s.
    let w2 = util::worker_fqdn(2);
    let id = sql(
        &cluster,
        &format!(
            "SELECT min(i.id) FROM items i WHERE (SELECT nodename FROM citus_shards s \
             WHERE s.shardid = get_shard_id_for_distribution_column('items', i.id)) = '{w2}'"
        ),
    )?;
    background_session(
        &cluster,
        COORDINATOR,
        "forgotten",
        &format!("echo 'BEGIN;'; echo 'UPDATE items SET payload = payload WHERE id = {id};'; sleep 45; echo 'COMMIT;'"),
    )?;
    let open =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'forgotten' AND state = 'idle in transaction'";
    let mut waited = 0;
    while sql(&cluster, open)? != "1" {
        waited += 1;
        ensure!(waited < 100, "the transaction did not open");
        std::thread::sleep(Duration::from_millis(100));
    }

    let started = std::time::Instant::now();
    cluster.upgrade(&values(2)).context("the scale-in failed")?;
    ensure!(started.elapsed() > Duration::from_secs(20), "the drain did not wait for the open transaction");
    let log = cluster.logs(&last_pod(&cluster, "my-citus-drain-workers-r2")?)?;
    ensure!(
        log.contains("the drain waits for a lock held by")
            && log.contains("application forgotten")
            && log.contains("idle in transaction")
            && log.contains("pg_terminate_backend"),
        "the drain's log does not name the session that holds it up:\n{log}"
    );
    assert_registered(&cluster, 2)?;
    ensure!(checksum(&cluster)? == sums, "rows changed");
    Ok(())
}
