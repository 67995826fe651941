//! Scaling promises under the faults of the December review (`shared/notes/review-2026-12-defects.md`), on
//! the control plane: a change that deletes no worker goes through while the coordinator is down (D10; the
//! refused rollback that would delete one, D2, and the drain whose hook pod dies, D3/D18, are in
//! `node_agent` and `node_faults`); a reference table without primary key does not stop a scale-out (D1), nor
//! does one that cannot be copied before the registration Job's deadline (D12); a worker added while a
//! rebalance runs gets shards (D8); a changed clusterDomain is refused instead of registering every node a
//! second time (D17); so is a changed auth.database, naming the value (D15); a worker whose volume was lost is
//! not taken for a registered one (D19); a drain held up by a transaction left open is told in its log,
//! naming the session (D21).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::{Helm, RenderOptions};
use serde_json::{json, Value};

use crate::citus_cluster::assert_registered;
use crate::util::{self, Env, COORDINATOR, SOCKET};
use testbed::Space;

crate::scenarios!(Node: a_change_that_deletes_no_worker_goes_through_while_the_coordinator_is_down, a_reference_table_without_primary_key_does_not_stop_a_scale_out, a_reference_table_that_cannot_be_copied_now_does_not_hold_the_scale_out, a_worker_added_while_a_rebalance_runs_gets_shards_too, a_changed_cluster_domain_is_refused_before_any_node_is_registered_twice, a_changed_database_name_is_refused_naming_the_value, a_worker_that_lost_its_volume_stops_the_next_registration, a_drain_held_up_by_an_open_transaction_names_it_and_goes_on_once_it_ends);

const ROWS: u32 = 50_000;

/// Values with `workers` workers; hook Jobs run once (a failure is final) and wait at most 30 s for nodes.
fn values(workers: u32) -> Value {
    json!({
        "worker": {"replicaCount": workers},
        "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 30}
    })
}

/// A release with `workers` workers holding a distributed table `items` (32 shards, ROWS rows, primary key)
/// and a reference table `kinds`; returns it with the checksum of items.
fn loaded(env: &Env, ns: &str, workers: u32) -> anyhow::Result<(Space, String)> {
    let space = Space::create(env.postgres()?, ns, None)?;
    space.install(values(workers))?;
    space.sql(&format!(
        "SET citus.shard_count = 32;\n\
         CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);\n\
         SELECT create_distributed_table('items', 'id') \\g /dev/null\n\
         INSERT INTO items SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g;\n\
         CREATE TABLE kinds (kind int PRIMARY KEY, name text NOT NULL);\n\
         SELECT create_reference_table('kinds') \\g /dev/null\n\
         INSERT INTO kinds SELECT g, 'kind-' || g FROM generate_series(1, 100) g;"
    ))?;
    let sums = checksum(&space)?;
    Ok((space, sums))
}

/// Count and checksum of every row of `items`.
fn checksum(space: &Space) -> anyhow::Result<String> {
    let sums =
        space.sql("SELECT count(*) || ' ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items")?;
    ensure!(sums.starts_with(&format!("{ROWS} ")), "items: {sums}");
    Ok(sums)
}

/// Placements of `items` on worker `n`.
fn placements_on(space: &Space, n: u32) -> anyhow::Result<u32> {
    Ok(copies_on(space, "items", n)?.parse()?)
}

/// Placements of `table` on worker `n`.
fn copies_on(space: &Space, table: &str, n: u32) -> anyhow::Result<String> {
    let w = util::worker_host(&space.ns, n);
    space.sql(&format!("SELECT count(*) FROM citus_shards WHERE table_name = '{table}'::regclass AND nodename = '{w}'"))
}

/// The error of a Helm command that must fail; `what` says what went through when it did not.
fn refusal(result: anyhow::Result<()>, what: &str) -> anyhow::Result<String> {
    match result {
        Ok(()) => bail!("{what}"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

/// A change that deletes no worker, rendered without `lookup` as Argo CD renders it, has its drain hook
/// (applied as Argo's PreSync) go through at once while the coordinator is down: that is how a broken
/// coordinator gets fixed.
fn a_change_that_deletes_no_worker_goes_through_while_the_coordinator_is_down(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = loaded(env, "faults-coordinator-down", 2)?;
    space.upgrade(values(3))?;
    util::wait_rebalance(&space, Duration::from_secs(300))?;
    ensure!(placements_on(&space, 2)? > 0, "worker-2 holds no shard");

    // The coordinator goes down (as after a bad revision): no process, no address.
    space.agent.hold_pending(&space.ns, COORDINATOR);
    space.kubectl(&["delete", "pod", COORDINATOR, "--wait=true"])?;

    let options = RenderOptions {
        namespace: space.ns.clone(),
        kube_version: Some("v1.36.2".into()),
        is_upgrade: true,
        revision: 3,
        ..RenderOptions::default()
    };
    let docs = Helm::discover()?.render(&util::chart_dir(), &util::values(values(3)), &options)?.documents()?;
    let hooks: Vec<&Value> = docs
        .iter()
        .map(|d| &d.value)
        .filter(|v| {
            v.pointer("/metadata/annotations/helm.sh~1hook")
                .and_then(Value::as_str)
                .is_some_and(|h| h.contains("pre-upgrade"))
        })
        .collect();
    ensure!(hooks.iter().any(|v| v["kind"] == "Job"), "the render has no pre-upgrade Job");
    let stream: String = hooks.iter().map(|v| format!("---\n{v}\n")).collect();
    let started = Instant::now();
    space.kubectl_with_input(&["apply", "--server-side", "--field-manager=argocd", "-f", "-"], stream.as_bytes())?;
    space
        .kubectl(&["wait", "--for=condition=Complete", "job/my-citus-drain-workers-r3", "--timeout=60s"])
        .context("the drain of a change that keeps every worker failed with the coordinator down")?;
    ensure!(started.elapsed() < Duration::from_secs(25), "it waited {:?} for the coordinator", started.elapsed());
    let log = space.kubectl(&["logs", "job/my-citus-drain-workers-r3"])?;
    ensure!(log.contains("nothing to drain"), "{log}");

    space.agent.release_pending(&space.ns, COORDINATOR);
    space.wait_ready(&[COORDINATOR], util::READY)?;
    assert_registered(&space, 3)?;
    ensure!(checksum(&space)? == sums, "rows changed");
    ensure!(placements_on(&space, 2)? > 0, "worker-2 lost its shards");
    Ok(())
}

fn a_reference_table_without_primary_key_does_not_stop_a_scale_out(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = loaded(env, "faults-reference-no-pk", 2)?;
    space.sql(
        "CREATE TABLE countries (code text, name text);\n\
         SELECT create_reference_table('countries') \\g /dev/null\n\
         INSERT INTO countries VALUES ('fr', 'France'), ('jp', 'Japan');",
    )?;

    space.upgrade(values(3)).context("the scale-out failed")?;
    let log = space.kubectl(&["logs", "job/my-citus-register-workers"])?;
    ensure!(log.contains("WARNING: reference table(s) without primary key") && log.contains("countries"), "{log}");
    util::wait_rebalance(&space, Duration::from_secs(300))?;
    let copies = copies_on(&space, "countries", 2)?;
    ensure!(copies == "1", "countries on worker-2: {copies}");
    ensure!(placements_on(&space, 2)? > 0, "worker-2 holds no shard of items");
    ensure!(checksum(&space)? == sums, "rows changed");
    let joined = space.sql(
        "SELECT count(*) FROM items i JOIN countries c ON c.code = CASE WHEN i.id % 2 = 0 THEN 'fr' ELSE 'jp' END",
    )?;
    ensure!(joined == ROWS.to_string(), "join with countries: {joined}");
    Ok(())
}

/// In `pod`: a session that holds an EXCLUSIVE lock on `shard` until it is ended (application_name
/// `holder`). Shard sizes can still be read (the rebalancer plans with them), but an online copy cannot start:
/// its publication needs a SHARE UPDATE EXCLUSIVE lock.
fn hold_shard(space: &Space, pod: &str, shard: &str) -> anyhow::Result<()> {
    background_session(
        space,
        pod,
        "holder",
        &format!(
            "echo 'BEGIN;'; echo 'SET LOCAL citus.enable_manual_changes_to_shards TO on;'; \
             echo 'LOCK TABLE public.{shard} IN EXCLUSIVE MODE;'; echo 'SELECT pg_sleep(900);'"
        ),
    )?;
    let held = format!("SELECT count(*) FROM pg_locks WHERE relation = to_regclass('public.{shard}') AND mode = 'ExclusiveLock' AND granted");
    for _ in 0..100 {
        if util::psql(space, pod, &SOCKET, &held)? == "1" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the lock on {shard} in {pod} was not taken")
}

/// Starts, in `pod` and in the background, a local psql session as postgres (application name `app`) fed by
/// the output of the shell commands `feed` (no double quotes in them).
fn background_session(space: &Space, pod: &str, app: &str, feed: &str) -> anyhow::Result<()> {
    let script = format!(
        "{{ {feed}; }} | PGAPPNAME={app} psql -X -q -h /var/run/postgresql -U postgres -d citus >/dev/null 2>&1"
    );
    let start = ["sh", "-c", &format!("nohup sh -c \"{script}\" </dev/null >/dev/null 2>&1 &")];
    let out = space.run(pod, &start, &[], None)?;
    ensure!(out.status.success(), "starting session {app} in {pod}: {}", out.stderr);
    Ok(())
}

/// Ends the sessions of [`hold_shard`] in `pod`.
fn release_shards(space: &Space, pod: &str) -> anyhow::Result<()> {
    util::psql(
        space,
        pod,
        &SOCKET,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'",
    )?;
    Ok(())
}

fn a_worker_added_while_a_rebalance_runs_gets_shards_too(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = loaded(env, "faults-rebalance-running", 2)?;

    // A rebalance that runs while the scale-out registers worker-2: it moves shards off worker-1 online and is
    // held at a locked shard of worker-1, so it is still running when the registration looks.
    let w1 = util::worker_host(&space.ns, 1);
    let shard = space.sql(&format!("SELECT shard_name FROM citus_shards WHERE table_name = 'items'::regclass AND nodename = '{w1}' ORDER BY shardid LIMIT 1"))?;
    hold_shard(&space, "my-citus-worker-1", &shard)?;
    space.sql(&format!(
        "SELECT citus_set_node_property('{w1}', 5432, 'shouldhaveshards', false) \\g /dev/null\n\
         SELECT citus_rebalance_start(drain_only => true, shard_transfer_mode => 'force_logical') \\g /dev/null\n\
         SELECT citus_set_node_property('{w1}', 5432, 'shouldhaveshards', true) \\g /dev/null"
    ))?;
    let running = "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running')";
    ensure!(space.sql(running)? == "1", "no rebalance runs");

    space.upgrade(values(3))?;
    // The held shard goes free; the rebalance the registration left (or started) ends.
    release_shards(&space, "my-citus-worker-1")?;
    util::wait_rebalance(&space, Duration::from_secs(300))?;
    ensure!(space.sql(running)? == "0", "a rebalance still runs");
    for n in 0..3 {
        ensure!(placements_on(&space, n)? > 0, "worker-{n} holds no shard of items after the rebalances");
    }
    ensure!(checksum(&space)? == sums, "rows changed");
    Ok(())
}

fn a_reference_table_that_cannot_be_copied_now_does_not_hold_the_scale_out(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = loaded(env, "faults-reference-locked", 2)?;

    // Every copy of the reference table is locked, as a long copy of a big one would take: a copy to a new
    // worker cannot start before the registration Job's deadline (30 s here).
    let shard = space.sql("SELECT shard_name FROM citus_shards WHERE table_name = 'kinds'::regclass LIMIT 1")?;
    let holders = [COORDINATOR, "my-citus-worker-0", "my-citus-worker-1"];
    for pod in holders {
        hold_shard(&space, pod, &shard)?;
    }
    space.upgrade(values(3)).context("the scale-out failed while the reference table could not be copied")?;
    let running = "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running')";
    ensure!(space.sql(running)? == "1", "no rebalance was left to copy the reference table");

    // Once the copies are free, the rebalance copies the reference table and then moves shards.
    for pod in holders {
        release_shards(&space, pod)?;
    }
    util::wait_rebalance(&space, Duration::from_secs(300))?;
    let copies = copies_on(&space, "kinds", 2)?;
    ensure!(copies == "1", "kinds on worker-2: {copies}");
    ensure!(placements_on(&space, 2)? > 0, "worker-2 holds no shard of items");
    ensure!(checksum(&space)? == sums, "rows changed");
    Ok(())
}

fn a_changed_cluster_domain_is_refused_before_any_node_is_registered_twice(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = loaded(env, "faults-cluster-domain", 2)?;
    let nodes = "SELECT string_agg(nodename || ':' || groupid, ' ' ORDER BY groupid) FROM pg_dist_node";
    let registered = space.sql(nodes)?;
    let with_domain = |domain: &str, registration: Value| json!({"worker": {"replicaCount": 2}, "workerRegistration": registration, "clusterDomain": domain});
    // Each change of clusterDomain restarts every node, which Helm does not wait for before its post-upgrade
    // hook: a registration that meets a node restarting fails, and the Job's next attempt goes on. Setting it
    // back gets the chart's defaults for that.
    let set_back = || -> anyhow::Result<()> {
        space.upgrade(with_domain("cluster.local", json!({}))).context("the upgrade that sets clusterDomain back")?;
        space.wait_rolled_out(util::READY)?;
        ensure!(space.sql(nodes)? == registered, "pg_dist_node changed: {} (was {registered})", space.sql(nodes)?);
        Ok(())
    };

    // The upgrade to k8s.example must fail: Helm's error and the Jobs' logs.
    let refused = |registration: Value, what: &str| -> anyhow::Result<String> {
        let err = refusal(space.upgrade(with_domain("k8s.example", registration)), what)?;
        Ok(format!("{err}\n{}", space.job_logs("my-citus-")?))
    };

    // clusterDomain changed in the values alone: the cluster's DNS answers in cluster.local only, so the new
    // names do not resolve. The upgrade fails, naming the value.
    let once = json!({"backoffLimit": 0, "activeDeadlineSeconds": 30});
    let text = refused(once, "the upgrade to an unknown clusterDomain went through")?;
    ensure!(
        text.contains("clusterDomain (k8s.example) is not this cluster's DNS domain"),
        "the failure does not name clusterDomain: {text}"
    );
    set_back()?;

    // The cluster's DNS answers in k8s.example too (a domain change under way): the registration reaches the
    // nodes under their new names, finds them registered under the old ones and refuses to add them again.
    space.agent.serve_zone(&space.ns, "k8s.example");
    let retried = json!({"backoffLimit": 2, "activeDeadlineSeconds": 120});
    let text = refused(retried, "the upgrade that changes clusterDomain went through")?;
    ensure!(
        text.contains("registered under another cluster domain") && text.contains("Set clusterDomain back"),
        "the refusal does not say what happened and what to do: {text}"
    );
    set_back()?;
    assert_registered(&space, 2)?;
    ensure!(checksum(&space)? == sums, "rows changed");
    Ok(())
}

fn a_changed_database_name_is_refused_naming_the_value(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "faults-database-name", None)?;
    space.install(values(1))?;
    let mut changed = util::values(values(1));
    changed["auth"]["database"] = json!("shop");
    let started = Instant::now();
    let err = refusal(space.upgrade_values(&changed), "the upgrade that renames the database went through")?;
    let log = space.job_logs("my-citus-")?;
    ensure!(
        log.contains("has no database shop") && log.contains("Set auth.database back"),
        "the refusal does not name the value and the way back: {err}\n{log}"
    );
    // At once, not after the Job's deadline.
    ensure!(started.elapsed() < Duration::from_secs(25) + util::READY, "refused after {:?}", started.elapsed());
    Ok(())
}

fn a_worker_that_lost_its_volume_stops_the_next_registration(env: &Env) -> anyhow::Result<()> {
    let (space, _) = loaded(env, "faults-lost-volume", 2)?;
    ensure!(placements_on(&space, 1)? > 0, "worker-1 holds no shard");

    // Worker-1's volume is lost (a node's local disk replaced): while its pod is away, the volume's directory
    // on the node is emptied, and the pod starts on it.
    let worker = "my-citus-worker-1";
    let dir = space.volume_dir(&format!("data-{worker}"))?;
    space.agent.hold_pending(&space.ns, worker);
    space.kubectl(&["delete", "pod", worker, "--wait=true"])?;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("the volume {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?
        } else {
            std::fs::remove_file(&path)?
        }
    }
    space.agent.release_pending(&space.ns, worker);
    space.wait_ready(&[worker], util::READY)?;

    let err = refusal(
        space.upgrade(values(2)),
        "the registration took worker-1 with its new, empty data directory for a registered worker",
    )?;
    let log = space.job_logs("my-citus-")?;
    ensure!(
        log.contains(&format!("worker {} holds", util::worker_host(&space.ns, 1)))
            && log.contains("was initialised again"),
        "the registration does not say that worker-1 lost its data: {err}\n{log}"
    );
    Ok(())
}

fn a_drain_held_up_by_an_open_transaction_names_it_and_goes_on_once_it_ends(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = loaded(env, "faults-open-transaction", 3)?;
    // An application transaction that wrote a row on worker-2 and stays open (idle in transaction) for 45 s.
    let w2 = util::worker_host(&space.ns, 2);
    let id = space.sql(&format!(
        "SELECT min(i.id) FROM items i WHERE (SELECT nodename FROM citus_shards s \
         WHERE s.shardid = get_shard_id_for_distribution_column('items', i.id)) = '{w2}'"
    ))?;
    background_session(
        &space,
        COORDINATOR,
        "forgotten",
        &format!("echo 'BEGIN;'; echo 'UPDATE items SET payload = payload WHERE id = {id};'; sleep 45; echo 'COMMIT;'"),
    )?;
    let open =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'forgotten' AND state = 'idle in transaction'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while space.sql(open)? != "1" {
        ensure!(Instant::now() < deadline, "the transaction did not open");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Helm deletes a drain Job that succeeded: its log is read while it runs.
    let started = Instant::now();
    let (upgraded, logs) = space.reading_job_logs("my-citus-drain-workers-r2", || space.upgrade(values(2)));
    let log: String = logs.into_values().collect();
    upgraded.context("the scale-in failed")?;
    ensure!(started.elapsed() > Duration::from_secs(20), "the drain did not wait for the open transaction");
    ensure!(
        log.contains("the drain waits for a lock held by")
            && log.contains("application forgotten")
            && log.contains("idle in transaction")
            && log.contains("pg_terminate_backend"),
        "the drain's log does not name the session that holds it up:\n{log}"
    );
    assert_registered(&space, 2)?;
    ensure!(checksum(&space)? == sums, "rows changed");
    Ok(())
}
