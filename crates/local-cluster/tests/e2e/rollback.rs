//! Workers leave only after a drain, also on the paths Helm users take when something goes wrong, on the
//! control plane with libhelm_c: `helm rollback` to a revision with fewer workers runs that revision's stored
//! pre-rollback drain; a `helm upgrade` whose drain outlives Helm's `--timeout` fails while the drain goes on,
//! and the retry waits for it instead of interrupting it or draining at the same time; a retried `helm
//! rollback` replaces the earlier Job (same name) but still waits for the drain statement it started.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::ReleaseOptions;
use serde_json::{json, Value};

use crate::citus_cluster::assert_registered;
use crate::util::{self, Env, COORDINATOR, POSTGRES_PASSWORD, SOCKET};
use testbed::Space;

crate::scenarios!(Node: helm_rollback_to_fewer_workers_drains_them_first, a_helm_retry_during_a_drain_waits_for_it_instead_of_interrupting_it, a_retried_helm_rollback_replaces_the_drain_job_but_waits_for_its_running_drain);

const ROWS: u32 = 20_000;
const WORKERS: &str = "my-citus-worker";

fn values(workers: u32) -> Value {
    json!({"worker": {"replicaCount": workers}, "workerRegistration": {"backoffLimit": 0}})
}

/// Helm gives up on a hook after 20 s, as with `--timeout 20s`.
fn impatient() -> ReleaseOptions {
    ReleaseOptions { timeout_seconds: Some(20), ..ReleaseOptions::default() }
}

fn patient() -> ReleaseOptions {
    ReleaseOptions { timeout_seconds: Some(600), ..ReleaseOptions::default() }
}

/// A distributed table with a primary key (movable online) and a reference table, ROWS rows each.
fn load(space: &Space) -> anyhow::Result<()> {
    space.sql(&format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);\n\
         SELECT create_distributed_table('items', 'id') \\g /dev/null\n\
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g;\n\
         CREATE TABLE kinds (kind int PRIMARY KEY, name text NOT NULL);\n\
         SELECT create_reference_table('kinds') \\g /dev/null\n\
         INSERT INTO kinds SELECT g, 'kind-' || g FROM generate_series(1, {ROWS}) g;"
    ))?;
    Ok(())
}

/// Row counts and checksums over every row of both tables.
fn checksum(space: &Space) -> anyhow::Result<String> {
    let sums = space.sql(
        "SELECT (SELECT count(*) || ' ' || sum(id) || ' ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items)\n\
         || ' / ' || (SELECT count(*) || ' ' || md5(string_agg(kind || ':' || name, ',' ORDER BY kind)) FROM kinds)",
    )?;
    ensure!(sums.starts_with(&format!("{ROWS} ")), "items: {sums}");
    Ok(sums)
}

/// Placements of `table` on worker `n` (0 when it is not registered).
fn placements_on(space: &Space, table: &str, n: u32) -> anyhow::Result<u32> {
    let w = util::worker_host(&space.ns, n);
    Ok(space
        .sql(&format!("SELECT count(*) FROM citus_shards WHERE table_name = '{table}'::regclass AND nodename = '{w}'"))?
        .parse()?)
}

/// The final state after workers 3.. left: the StatefulSet and pg_dist_node have workers 0..3 only, no
/// placement of any table on a group that is not registered, every row, the reference table on each kept
/// worker, no cleanup record left.
fn assert_three_workers_with_every_row(space: &Space, expected_sums: &str) -> anyhow::Result<()> {
    let replicas = space.jsonpath(&format!("statefulset/{WORKERS}"), "{.spec.replicas}")?;
    ensure!(replicas == "3", "worker replicas {replicas}");
    for n in 3..5 {
        space.wait_gone(&format!("{WORKERS}-{n}"), Duration::from_secs(60))?;
    }
    assert_registered(space, 3)?;
    let orphans = space.sql(
        "SELECT count(*) FROM pg_dist_placement p WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node n WHERE n.groupid = p.groupid)",
    )?;
    ensure!(orphans == "0", "{orphans} placement(s) on groups that are no longer registered");
    let kept: Vec<String> = (0..3).map(|n| util::worker_host(&space.ns, n)).collect();
    let holders = space.sql(
        "SELECT string_agg(DISTINCT nodename, ' ' ORDER BY nodename) FROM citus_shards WHERE table_name = 'items'::regclass",
    )?;
    ensure!(holders == kept.join(" "), "items placed on: {holders}");
    let reference = space.sql(
        "SELECT string_agg(DISTINCT nodename, ' ' ORDER BY nodename) FROM citus_shards \
         WHERE table_name = 'kinds'::regclass AND nodename IN (SELECT nodename FROM pg_dist_node WHERE groupid <> 0)",
    )?;
    ensure!(reference == kept.join(" "), "reference table kinds on workers: {reference}");
    let sums = checksum(space)?;
    ensure!(sums == expected_sums, "rows changed: {sums} (before: {expected_sums})");
    let cleanup = space.sql("SELECT count(*) FROM pg_dist_cleanup")?;
    ensure!(cleanup == "0", "{cleanup} pg_dist_cleanup record(s) left");
    Ok(())
}

/// How many pods the Job controller created for Jobs named `job` (each incarnation of the name), from the
/// events it records.
fn pods_created(space: &Space, job: &str) -> anyhow::Result<usize> {
    let created = space.jsonpath(
        "events",
        "{range .items[?(@.reason==\"SuccessfulCreate\")]}{.involvedObject.kind}/{.involvedObject.name} {.message}{\"\\n\"}{end}",
    )?;
    Ok(created.lines().filter(|l| l.starts_with(&format!("Job/{job} Created pod: "))).count())
}

/// The time stamp of the first log line that contains `text`.
fn logged_at<'a>(log: &'a str, text: &str) -> anyhow::Result<&'a str> {
    log.lines()
        .find(|l| l.contains(text))
        .and_then(|l| l.split(' ').next())
        .with_context(|| format!("no log line with {text:?}:\n{log}"))
}

/// Revision 1 with 3 workers and the data, revision 2 with 5 (the rebalance onto workers 3 and 4 finished).
/// Returns the namespace and the data's checksum.
fn three_then_five_workers(env: &Env, ns: &str) -> anyhow::Result<(Space, String)> {
    let space = Space::create(env.postgres()?, ns, None)?;
    space.install(values(3))?;
    load(&space)?;
    let sums = checksum(&space)?;
    space.upgrade(values(5))?;
    util::wait_rebalance(&space, Duration::from_secs(600))?;
    Ok((space, sums))
}

fn helm_rollback_to_fewer_workers_drains_them_first(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = three_then_five_workers(env, "rollback-fewer")?;
    assert_registered(&space, 5)?;
    for n in 3..5 {
        ensure!(placements_on(&space, "items", n)? > 0, "worker-{n} holds no shard of items after the rebalance");
    }
    let registrations = pods_created(&space, "my-citus-register-workers")?;
    ensure!(pods_created(&space, "my-citus-drain-workers-r2")? == 1, "pre-upgrade drain pods of revision 2");

    let (rolled, logs) =
        space.reading_job_logs("my-citus-drain-workers-r1", || space.helm.rollback("my-citus", Some(1), &patient()));
    rolled.with_context(|| space.diagnose())?;

    // The hooks are those of revision 1's stored manifest (Helm does not render on a rollback): its drain Job
    // ran once, as pre-rollback; no Job of another revision ran, none of revision 3 exists.
    ensure!(pods_created(&space, "my-citus-drain-workers-r1")? == 1, "pre-rollback drain pods");
    ensure!(pods_created(&space, "my-citus-drain-workers-r2")? == 1, "revision 2's drain ran again");
    ensure!(pods_created(&space, "my-citus-drain-workers-r3")? == 0, "a drain Job of revision 3 ran");
    let log: String = logs.into_values().collect();
    let leaving = format!("{} {}", util::worker_host(&space.ns, 3), util::worker_host(&space.ns, 4));
    ensure!(
        log.contains(&format!("leaving worker(s): {leaving}"))
            && log.contains(&format!("done: {leaving} drained and removed")),
        "the pre-rollback drain did not drain workers 3 and 4:\n{log}"
    );
    ensure!(
        pods_created(&space, "my-citus-register-workers")? == registrations + 1,
        "the post-rollback registration did not run once"
    );
    assert_three_workers_with_every_row(&space, &sums)?;
    Ok(())
}

/// Started in the coordinator pod before the scale-in: an ACCESS EXCLUSIVE lock on one shard of worker-4,
/// so that the first drain stops at that shard, held until the retried scale-in's session waits on the
/// chart's advisory lock (then the sessions of both runs are written to /tmp/holder.sessions). Meanwhile
/// /tmp/holder.samples gets, every 0.1 s, the scale-in sessions that run citus_drain_node, until
/// /tmp/holder.stop exists.
const HOLDER: &str = r#"coord() { psql -X -q -t -A -h /var/run/postgresql -U postgres -d citus -c "$1"; }
scale_in="FROM pg_stat_activity WHERE application_name = 'citus-chart-scale-in' AND state = 'active'"
(
  while [ ! -e /tmp/holder.stop ]; do
    echo "$(coord "SELECT coalesce(string_agg(pid::text, ' ' ORDER BY pid), '') $scale_in AND query LIKE 'SELECT citus_drain_node(%'")" >> /tmp/holder.samples
    sleep 0.1
  done
) &
i=0
{
  echo "BEGIN;"
  echo "SET LOCAL citus.enable_manual_changes_to_shards TO on;"
  echo "LOCK TABLE $SHARD IN ACCESS EXCLUSIVE MODE;"
  echo "\\! touch /tmp/holder.locked"
  until [ "$(coord "SELECT count(*) $scale_in AND wait_event = 'advisory' AND query LIKE 'SELECT pg_advisory_lock(%'")" -ge 1 ] \
      || [ "$i" -ge 6000 ]; do
    i=$((i + 1))
    sleep 0.1
  done
  coord "SELECT pid || ' ' || coalesce(wait_event, '-') || ' ' || left(query, 40) $scale_in ORDER BY pid" > /tmp/holder.sessions
  echo "COMMIT;"
} | psql -X -q -v ON_ERROR_STOP=1 -h "$WORKER" -U postgres -d citus > /tmp/holder.out 2>&1
echo $? > /tmp/holder.done
wait
"#;

fn read_coordinator_file(space: &Space, path: &str) -> anyhow::Result<String> {
    Ok(space.run(COORDINATOR, &["sh", "-c", &format!("cat {path} 2>/dev/null || true")], &[], None)?.stdout)
}

/// Starts [`HOLDER`] on the shard of items with the highest id on worker-4 (the last one its drain moves);
/// returns the shard's name once the lock is held.
fn hold_last_shard_of_worker_4(space: &Space) -> anyhow::Result<String> {
    let w4 = util::worker_host(&space.ns, 4);
    let shard = space.sql(&format!(
        "SELECT shard_name FROM citus_shards WHERE table_name = 'items'::regclass AND nodename = '{w4}' ORDER BY shardid DESC LIMIT 1"
    ))?;
    let script = format!("SHARD='public.{shard}' WORKER='{w4}'\n{HOLDER}");
    let start =
        ["sh", "-c", "rm -f /tmp/holder.*; cat > /tmp/holder.sh; nohup sh /tmp/holder.sh </dev/null >/dev/null 2>&1 &"];
    let out = space.run(COORDINATOR, &start, &[("PGPASSWORD", POSTGRES_PASSWORD)], Some(script.as_bytes()))?;
    ensure!(out.status.success(), "starting the lock holder: {}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !space.run(COORDINATOR, &["test", "-e", "/tmp/holder.locked"], &[], None)?.status.success() {
        ensure!(
            Instant::now() < deadline,
            "the lock on the shard was not taken: {}",
            read_coordinator_file(space, "/tmp/holder.out")?
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(shard)
}

/// Waits until the drain that runs now waits for the lock on `shard` (held by [`HOLDER`]).
fn wait_drain_at_held_shard(space: &Space, shard: &str) -> anyhow::Result<()> {
    let waiting =
        format!("SELECT count(*) FROM pg_locks WHERE relation = to_regclass('public.{shard}') AND NOT granted");
    let deadline = Instant::now() + Duration::from_secs(300);
    while util::psql(space, "my-citus-worker-4", &SOCKET, &waiting)? == "0" {
        ensure!(Instant::now() < deadline, "the first drain did not reach the held shard in 300 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// The backend pid of the scale-in session that runs citus_drain_node now.
fn draining_session(space: &Space) -> anyhow::Result<String> {
    let pid = space.sql(
        "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity \
         WHERE application_name = 'citus-chart-scale-in' AND query LIKE 'SELECT citus_drain_node(%'",
    )?;
    ensure!(!pid.is_empty() && !pid.contains(' '), "scale-in sessions in citus_drain_node: {pid:?}");
    Ok(pid)
}

/// What [`HOLDER`] saw. When it let the drain go on: `drainer` in citus_drain_node and one other scale-in
/// session waiting on the chart's lock (nothing else). In every sample: at most one session in
/// citus_drain_node, and `drainer` in none after another one. Returns the other sessions seen draining.
fn check_one_drain_at_a_time(space: &Space, drainer: &str) -> anyhow::Result<Vec<String>> {
    let sessions = read_coordinator_file(space, "/tmp/holder.sessions")?;
    let lines: Vec<&str> = sessions.lines().collect();
    ensure!(
        lines.len() == 2
            && lines.iter().any(|l| l.starts_with(&format!("{drainer} ")) && l.contains(" SELECT citus_drain_node("))
            && lines
                .iter()
                .any(|l| !l.starts_with(&format!("{drainer} ")) && l.contains(" advisory SELECT pg_advisory_lock(")),
        "scale-in sessions when the held shard was released (first run: {drainer}):\n{sessions}"
    );
    let samples = read_coordinator_file(space, "/tmp/holder.samples")?;
    ensure!(samples.lines().count() > 50, "too few samples: {samples}");
    let mut others: Vec<String> = Vec::new();
    for sample in samples.lines().map(str::trim).filter(|s| !s.is_empty()) {
        ensure!(!sample.contains(' '), "two drains at once: sessions {sample}");
        if sample == drainer {
            ensure!(others.is_empty(), "the first run drained again after {others:?}");
        } else if !others.iter().any(|o| o == sample) {
            others.push(sample.to_owned());
        }
    }
    Ok(others)
}

/// The pods of Job `job` the API server has now.
fn job_pods(space: &Space, job: &str) -> anyhow::Result<Vec<String>> {
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let pods = space.kubectl(&["get", "pods", "-l", &selector, "-o", "jsonpath={.items[*].metadata.name}"])?;
    Ok(pods.split_whitespace().map(str::to_owned).collect())
}

fn a_helm_retry_during_a_drain_waits_for_it_instead_of_interrupting_it(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "rollback-retry", None)?;
    space.install(values(5))?;
    load(&space)?;
    let sums = checksum(&space)?;
    for n in 3..5 {
        ensure!(placements_on(&space, "items", n)? > 1, "worker-{n} holds too few shards of items");
    }

    // The drain goes worker by worker in name order: worker-3 empties, then worker-4 stops at the held shard.
    let (w3, w4) = (util::worker_host(&space.ns, 3), util::worker_host(&space.ns, 4));
    let shard = hold_last_shard_of_worker_4(&space)?;

    // helm upgrade --timeout 20s: Helm gives up on the pre-upgrade hook; the Job is not deleted.
    let first = "my-citus-drain-workers-r2";
    let err = match space.helm.upgrade(&util::chart_dir(), "my-citus", &util::values(values(3)), &impatient()) {
        Ok(_) => bail!("the upgrade succeeded although its drain was blocked"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(err.contains(first), "the upgrade failed elsewhere than in its drain hook: {err}");
    let active = space.jsonpath(&format!("job/{first}"), "{.status.active}")?;
    ensure!(active == "1", "{first} after Helm gave up: active {active:?}");
    let first_pod = match job_pods(&space, first)?.as_slice() {
        [pod] => pod.clone(),
        pods => bail!("{first} pods: {pods:?}"),
    };
    let replicas = space.jsonpath(&format!("statefulset/{WORKERS}"), "{.spec.replicas}")?;
    ensure!(replicas == "5", "the failed upgrade changed the StatefulSet to {replicas} replicas");

    // Caught mid-way: worker-3 drained, worker-4 not, both still registered and closed to new shards, the
    // first run waiting on the held shard.
    wait_drain_at_held_shard(&space, &shard)?;
    ensure!(job_pods(&space, first)? == [first_pod.clone()], "the first drain's pod was replaced");
    ensure!(!space.agent.processes(&space.ns, &first_pod)?.is_empty(), "the first drain's pod has no process");
    ensure!(placements_on(&space, "items", 3)? == 0, "worker-3 not drained before worker-4");
    ensure!(placements_on(&space, "items", 4)? > 0, "worker-4 drained although a shard was held");
    let closed = space.sql(&format!(
        "SELECT string_agg(nodename || '=' || shouldhaveshards, ' ' ORDER BY nodename) FROM pg_dist_node WHERE nodename IN ('{w3}', '{w4}')"
    ))?;
    ensure!(closed == format!("{w3}=false {w4}=false"), "leaving workers mid-drain: {closed}");
    let drainer = draining_session(&space)?;

    // The retry: a new revision, a new Job, which waits for the first run; the holder lets the first run go
    // on only once the retry waits on the chart's lock. Helm deletes the retry's Job once it succeeded.
    let retry = "my-citus-drain-workers-r3";
    let (retried, retry_logs) = space.reading_job_logs(retry, || space.upgrade(values(3)));
    retried?;
    space.kubectl(&["wait", "--for=condition=Complete", &format!("job/{first}"), "--timeout=300s"])?;
    let stop = space.run(COORDINATOR, &["touch", "/tmp/holder.stop"], &[], None)?;
    ensure!(stop.status.success(), "stopping the sampler: {}", stop.stderr);
    let outcome = space.jsonpath(&format!("job/{first}"), "{.status.succeeded} {.status.failed}")?;
    ensure!(outcome.trim() == "1", "{first}: succeeded, failed = {outcome:?}");
    let holder = read_coordinator_file(&space, "/tmp/holder.done")?;
    ensure!(holder.trim() == "0", "lock holder: {holder} {}", read_coordinator_file(&space, "/tmp/holder.out")?);

    // The retry waited while the first run drained; it never drained itself (nothing was left).
    let others = check_one_drain_at_a_time(&space, &drainer)?;
    ensure!(others.is_empty(), "the retry drained too: sessions {others:?}");

    // The logs: one pod for each Job; the first drained and removed both workers; the retry said that it
    // waited (before the first run ended) and then found nothing left.
    ensure!(job_pods(&space, first)? == [first_pod.clone()], "{first} pods: {:?}", job_pods(&space, first)?);
    let first_log = space.kubectl(&["logs", &first_pod])?;
    let leaving = format!("{w3} {w4}");
    ensure!(!first_log.contains("ERROR"), "{first_log}");
    let first_done = logged_at(&first_log, &format!("done: {leaving} drained and removed"))?;
    ensure!(retry_logs.len() == 1, "{retry} pods: {:?}", retry_logs.keys());
    let retry_log: String = retry_logs.into_values().collect();
    let waited = logged_at(&retry_log, "another scale-in run holds the lock")?;
    ensure!(waited <= first_done, "the retry waited at {waited}, after the first run was done at {first_done}");
    logged_at(&retry_log, &format!("the other run ended and removed {leaving}: nothing left to drain"))?;
    ensure!(!retry_log.contains("ERROR"), "{retry_log}");
    // Waiting for the other run is said once; neither run names the other as a session to end (the first
    // run does name the scenario's lock holder, an application session).
    ensure!(
        first_log.contains("the drain waits for a lock held by") && first_log.contains("application psql"),
        "{first_log}"
    );
    for log in [&first_log, &retry_log] {
        ensure!(!log.contains("application citus-chart-scale-in"), "a scale-in run named as a blocker:\n{log}");
    }

    assert_three_workers_with_every_row(&space, &sums)?;
    Ok(())
}

/// `helm rollback` runs the Job of the target revision's stored manifest, so a retried rollback to the same
/// revision meets the earlier Job under the same name and Helm deletes it (`before-hook-creation`) with its
/// pod. The drain that pod started goes on in the coordinator, holding the lock: PostgreSQL only notices the
/// lost client when the statement ends, and the deleted pod has its grace period, in which its run may even
/// finish. The new Job waits for it either way, then does what is left, if anything.
fn a_retried_helm_rollback_replaces_the_drain_job_but_waits_for_its_running_drain(env: &Env) -> anyhow::Result<()> {
    let (space, sums) = three_then_five_workers(env, "rollback-retried")?;
    let shard = hold_last_shard_of_worker_4(&space)?;

    let job = "my-citus-drain-workers-r1";
    let err = match space.helm.rollback("my-citus", Some(1), &impatient()) {
        Ok(()) => bail!("the rollback succeeded although its drain was blocked"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(err.contains(job), "the rollback failed elsewhere than in its drain hook: {err}");
    let first_pod = match job_pods(&space, job)?.as_slice() {
        [pod] => pod.clone(),
        pods => bail!("{job} pods: {pods:?}"),
    };
    wait_drain_at_held_shard(&space, &shard)?;
    let drainer = draining_session(&space)?;
    let first_log = space.kubectl(&["logs", &first_pod])?;

    let (rolled, logs) = space.reading_job_logs(job, || space.helm.rollback("my-citus", Some(1), &patient()));
    rolled.with_context(|| space.diagnose())?;
    ensure!(!space.has_pod(&first_pod)?, "the earlier Job's pod {first_pod} survived the retry");
    let holder = read_coordinator_file(&space, "/tmp/holder.done")?;
    ensure!(holder.trim() == "0", "lock holder: {holder} {}", read_coordinator_file(&space, "/tmp/holder.out")?);
    let stop = space.run(COORDINATOR, &["touch", "/tmp/holder.stop"], &[], None)?;
    ensure!(stop.status.success(), "stopping the sampler: {}", stop.stderr);
    // The deleted pod's session was still in citus_drain_node when the retry waited for the lock.
    check_one_drain_at_a_time(&space, &drainer)?;

    ensure!(!first_log.contains("done:"), "the deleted Job's pod finished:\n{first_log}");
    let retries: Vec<&String> = logs.iter().filter(|(pod, _)| **pod != first_pod).map(|(_, log)| log).collect();
    ensure!(retries.len() == 1, "pods of the retried {job}: {:?}", logs.keys());
    let leaving = format!("{} {}", util::worker_host(&space.ns, 3), util::worker_host(&space.ns, 4));
    logged_at(retries[0], "another scale-in run holds the lock")?;
    let finished_by_the_first = format!("the other run ended and removed {leaving}: nothing left to drain");
    if retries[0].contains(&finished_by_the_first) {
        println!("the replaced run finished the removal in its grace period; the retry found nothing left");
    } else {
        logged_at(retries[0], "the other run ended: draining what it left")?;
        logged_at(retries[0], &format!("done: {leaving} drained and removed"))?;
    }
    assert_three_workers_with_every_row(&space, &sums)?;
    Ok(())
}
