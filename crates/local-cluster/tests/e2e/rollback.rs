//! Workers leave only after a drain, also on the paths Helm users take when something goes wrong: `helm
//! rollback` to a revision with fewer workers runs the pre-rollback drain; a `helm upgrade` whose drain
//! outlives Helm's `--timeout` fails while the drain goes on, and the retry waits for it instead of
//! interrupting it or draining at the same time; a retried `helm rollback` replaces the earlier Job (same name)
//! but still waits for the drain statement it started.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use local_cluster::{Cluster, JobStatus};
use serde_json::{json, Value};

use crate::citus_cluster::assert_registered;
use crate::util::Env;
use crate::util::{self, COORDINATOR, POSTGRES_PASSWORD, SOCKET};

crate::scenarios!(Citus: helm_rollback_to_fewer_workers_drains_them_first, a_helm_retry_during_a_drain_waits_for_it_instead_of_interrupting_it, a_retried_helm_rollback_replaces_the_drain_job_but_waits_for_its_running_drain);

const ROWS: u32 = 20_000;
const WORKERS: &str = "my-citus-worker";

fn sql(cluster: &Cluster, query: &str) -> anyhow::Result<String> {
    util::psql(cluster, COORDINATOR, &SOCKET, query)
}

fn values(workers: u32) -> Value {
    util::values(json!({"worker": {"replicaCount": workers}, "workerRegistration": {"backoffLimit": 0}}))
}

/// A distributed table with a primary key (movable online) and a reference table, ROWS rows each.
fn load(cluster: &Cluster) -> anyhow::Result<()> {
    sql(
        cluster,
        &format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, payload text NOT NULL);\n\
             SELECT create_distributed_table('items', 'id') \\g /dev/null\n\
             INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g;\n\
             CREATE TABLE kinds (kind int PRIMARY KEY, name text NOT NULL);\n\
             SELECT create_reference_table('kinds') \\g /dev/null\n\
             INSERT INTO kinds SELECT g, 'kind-' || g FROM generate_series(1, {ROWS}) g;"
        ),
    )?;
    Ok(())
}

/// Row counts and checksums over every row of both tables.
fn checksum(cluster: &Cluster) -> anyhow::Result<String> {
    let sums = sql(
        cluster,
        "SELECT (SELECT count(*) || ' ' || sum(id) || ' ' || md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM items)\n\
         || ' / ' || (SELECT count(*) || ' ' || md5(string_agg(kind || ':' || name, ',' ORDER BY kind)) FROM kinds)",
    )?;
    ensure!(sums.starts_with(&format!("{ROWS} ")), "items: {sums}");
    Ok(sums)
}

/// Placements of `table` on worker `n` (0 when it is not registered).
fn placements_on(cluster: &Cluster, table: &str, n: u32) -> anyhow::Result<u32> {
    let w = util::worker_fqdn(n);
    Ok(sql(
        cluster,
        &format!("SELECT count(*) FROM citus_shards WHERE table_name = '{table}'::regclass AND nodename = '{w}'"),
    )?
    .parse()?)
}

/// The final state after workers 3.. left: the StatefulSet and pg_dist_node have workers 0..3 only, no
/// placement of any table on a group that is not registered, every row, the reference table on each kept
/// worker, no cleanup record left.
fn assert_three_workers_with_every_row(cluster: &Cluster, expected_sums: &str) -> anyhow::Result<()> {
    ensure!(
        cluster.statefulset_replicas(WORKERS) == Some(3),
        "worker replicas {:?}",
        cluster.statefulset_replicas(WORKERS)
    );
    for n in 3..5 {
        ensure!(cluster.pod(&format!("{WORKERS}-{n}")).is_err(), "{WORKERS}-{n} still exists");
    }
    assert_registered(cluster, 3)?;
    let orphans = sql(
        cluster,
        "SELECT count(*) FROM pg_dist_placement p WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node n WHERE n.groupid = p.groupid)",
    )?;
    ensure!(orphans == "0", "{orphans} placement(s) on groups that are no longer registered");
    let kept: Vec<String> = (0..3).map(util::worker_fqdn).collect();
    let holders = sql(
        cluster,
        "SELECT string_agg(DISTINCT nodename, ' ' ORDER BY nodename) FROM citus_shards WHERE table_name = 'items'::regclass",
    )?;
    ensure!(holders == kept.join(" "), "items placed on: {holders}");
    let reference = sql(
        cluster,
        "SELECT string_agg(DISTINCT nodename, ' ' ORDER BY nodename) FROM citus_shards \
         WHERE table_name = 'kinds'::regclass AND nodename IN (SELECT nodename FROM pg_dist_node WHERE groupid <> 0)",
    )?;
    ensure!(reference == kept.join(" "), "reference table kinds on workers: {reference}");
    let sums = checksum(cluster)?;
    ensure!(sums == expected_sums, "rows changed: {sums} (before: {expected_sums})");
    let cleanup = sql(cluster, "SELECT count(*) FROM pg_dist_cleanup")?;
    ensure!(cleanup == "0", "{cleanup} pg_dist_cleanup record(s) left");
    Ok(())
}

/// The pods `<job>-<n>` of a Job that have a log (`logs/<pod>.log`, kept after the pod): their numbers, in
/// the order they were created.
fn job_pods(cluster: &Cluster, job: &str) -> anyhow::Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(cluster.dir().join("logs"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_suffix(".log").and_then(|n| n.strip_prefix(job)).and_then(|n| n.strip_prefix('-')) {
            numbers.push(n.parse()?);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The time stamp of the first log line that contains `text`.
fn logged_at<'a>(log: &'a str, text: &str) -> anyhow::Result<&'a str> {
    log.lines()
        .find(|l| l.contains(text))
        .and_then(|l| l.split(' ').next())
        .with_context(|| format!("no log line with {text:?}:\n{log}"))
}

/// Revision 1 with 3 workers and the data, revision 2 with 5 (the rebalance onto workers 3 and 4 finished).
/// Returns the cluster and the data's checksum.
fn three_then_five_workers(env: &Env) -> anyhow::Result<(util::TestCluster, String)> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&values(3))?;
    cluster.wait_all_ready(util::READY)?;
    load(&cluster)?;
    let sums = checksum(&cluster)?;
    cluster.upgrade(&values(5))?;
    util::wait_rebalance(&cluster, Duration::from_secs(600))?;
    Ok((cluster, sums))
}

fn helm_rollback_to_fewer_workers_drains_them_first(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = three_then_five_workers(env)?;
    assert_registered(&cluster, 5)?;
    for n in 3..5 {
        ensure!(placements_on(&cluster, "items", n)? > 0, "worker-{n} holds no shard of items after the rebalance");
    }
    let registrations = job_pods(&cluster, "my-citus-register-workers")?.len();
    let upgrade_drains = job_pods(&cluster, "my-citus-drain-workers-r2")?;
    ensure!(upgrade_drains.len() == 1, "pre-upgrade drain pods of revision 2: {upgrade_drains:?}");

    cluster.rollback("my-citus", 1)?;

    // The hooks are those of revision 1's stored manifest (Helm does not render on a rollback): its drain Job
    // ran once, as pre-rollback; no Job of another revision ran, none of revision 3 exists.
    let drains = job_pods(&cluster, "my-citus-drain-workers-r1")?;
    ensure!(drains.len() == 1, "pre-rollback drain pods: {drains:?}");
    ensure!(job_pods(&cluster, "my-citus-drain-workers-r2")? == upgrade_drains, "revision 2's drain ran again");
    ensure!(job_pods(&cluster, "my-citus-drain-workers-r3")?.is_empty(), "a drain Job of revision 3 ran");
    let log = cluster.logs(&format!("my-citus-drain-workers-r1-{}", drains[0]))?;
    let leaving = format!("{} {}", util::worker_fqdn(3), util::worker_fqdn(4));
    ensure!(
        log.contains(&format!("leaving worker(s): {leaving}"))
            && log.contains(&format!("done: {leaving} drained and removed")),
        "the pre-rollback drain did not drain workers 3 and 4:\n{log}"
    );
    ensure!(
        job_pods(&cluster, "my-citus-register-workers")?.len() == registrations + 1,
        "the post-rollback registration did not run once"
    );
    assert_three_workers_with_every_row(&cluster, &sums)?;
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

fn read_coordinator_file(cluster: &Cluster, path: &str) -> anyhow::Result<String> {
    let out = cluster.exec(COORDINATOR, &["sh", "-c", &format!("cat {path} 2>/dev/null || true")], &[], None)?;
    Ok(out.stdout)
}

/// Starts [`HOLDER`] on the shard of items with the highest id on worker-4 (the last one its drain moves);
/// returns the shard's name once the lock is held.
fn hold_last_shard_of_worker_4(cluster: &mut Cluster) -> anyhow::Result<String> {
    let w4 = util::worker_fqdn(4);
    let shard = sql(
        cluster,
        &format!("SELECT shard_name FROM citus_shards WHERE table_name = 'items'::regclass AND nodename = '{w4}' ORDER BY shardid DESC LIMIT 1"),
    )?;
    let script = format!("SHARD='public.{shard}' WORKER='{w4}'\n{HOLDER}");
    let start =
        ["sh", "-c", "rm -f /tmp/holder.*; cat > /tmp/holder.sh; nohup sh /tmp/holder.sh </dev/null >/dev/null 2>&1 &"];
    let out = cluster.exec(COORDINATOR, &start, &[("PGPASSWORD", POSTGRES_PASSWORD)], Some(script.as_bytes()))?;
    ensure!(out.status.success(), "starting the lock holder: {}", out.stderr);
    let locked = wait_until(cluster, "the lock on the shard", Duration::from_secs(60), |c| {
        Ok(c.exec(COORDINATOR, &["test", "-e", "/tmp/holder.locked"], &[], None)?.status.success())
    });
    locked.with_context(|| format!("lock holder: {:?}", read_coordinator_file(cluster, "/tmp/holder.out")))?;
    Ok(shard)
}

/// The backend pid of the scale-in session that runs citus_drain_node now.
fn draining_session(cluster: &Cluster) -> anyhow::Result<String> {
    let pid = sql(
        cluster,
        "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity \
         WHERE application_name = 'citus-chart-scale-in' AND query LIKE 'SELECT citus_drain_node(%'",
    )?;
    ensure!(!pid.is_empty() && !pid.contains(' '), "scale-in sessions in citus_drain_node: {pid:?}");
    Ok(pid)
}

/// What [`HOLDER`] saw. When it let the drain go on: `drainer` in citus_drain_node and one other scale-in
/// session waiting on the chart's lock (nothing else). In every sample: at most one session in
/// citus_drain_node, and `drainer` in none after another one. Returns the other sessions seen draining.
fn check_one_drain_at_a_time(cluster: &Cluster, drainer: &str) -> anyhow::Result<Vec<String>> {
    let sessions = read_coordinator_file(cluster, "/tmp/holder.sessions")?;
    let lines: Vec<&str> = sessions.lines().collect();
    ensure!(
        lines.len() == 2
            && lines.iter().any(|l| l.starts_with(&format!("{drainer} ")) && l.contains(" SELECT citus_drain_node("))
            && lines
                .iter()
                .any(|l| !l.starts_with(&format!("{drainer} ")) && l.contains(" advisory SELECT pg_advisory_lock(")),
        "scale-in sessions when the held shard was released (first run: {drainer}):\n{sessions}"
    );
    let samples = read_coordinator_file(cluster, "/tmp/holder.samples")?;
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

/// Runs the cluster (kubelet, Job controller) until `done` holds.
fn wait_until(
    cluster: &mut Cluster,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&Cluster) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        cluster.tick()?;
        if done(cluster)? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{what}: not reached after {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn a_helm_retry_during_a_drain_waits_for_it_instead_of_interrupting_it(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.install(&values(5))?;
    cluster.wait_all_ready(util::READY)?;
    load(&cluster)?;
    let sums = checksum(&cluster)?;
    for n in 3..5 {
        ensure!(placements_on(&cluster, "items", n)? > 1, "worker-{n} holds too few shards of items");
    }

    // The drain goes worker by worker in name order: worker-3 empties, then worker-4 stops at the held shard.
    let (w3, w4) = (util::worker_fqdn(3), util::worker_fqdn(4));
    let shard = hold_last_shard_of_worker_4(&mut cluster)?;

    // helm upgrade --timeout 20s: Helm gives up on the pre-upgrade hook; the Job is not deleted.
    let first = "my-citus-drain-workers-r2";
    cluster.set_hook_timeout(Duration::from_secs(20));
    let err = match cluster.upgrade(&values(3)) {
        Ok(_) => bail!("the upgrade succeeded although its drain was blocked"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    };
    cluster.set_hook_timeout(Duration::from_secs(300));
    ensure!(err.contains(&format!("pre-upgrade hook Job/{first}")) && err.contains("timed out"), "{err}");
    ensure!(cluster.job_status(first) == Some(JobStatus::Running), "{first}: {:?}", cluster.job_status(first));
    let first_pod = cluster.job_pod(first).context("the first drain has no pod")?.to_owned();
    ensure!(cluster.statefulset_replicas(WORKERS) == Some(5), "the failed upgrade changed the StatefulSet");

    // Caught mid-way: worker-3 drained, worker-4 not, both still registered and closed to new shards, the
    // first run waiting on the held shard.
    let waiting_on_shard =
        format!("SELECT count(*) FROM pg_locks WHERE relation = to_regclass('public.{shard}') AND NOT granted");
    wait_until(&mut cluster, "the first drain to reach the held shard", Duration::from_secs(300), |c| {
        Ok(util::psql(c, "my-citus-worker-4", &SOCKET, &waiting_on_shard)? != "0")
    })?;
    ensure!(cluster.job_pod(first) == Some(first_pod.as_str()), "the first drain's pod was replaced");
    ensure!(!cluster.pod(&first_pod)?.processes().is_empty(), "the first drain's pod has no process");
    ensure!(placements_on(&cluster, "items", 3)? == 0, "worker-3 not drained before worker-4");
    ensure!(placements_on(&cluster, "items", 4)? > 0, "worker-4 drained although a shard was held");
    let closed = sql(
        &cluster,
        &format!("SELECT string_agg(nodename || '=' || shouldhaveshards, ' ' ORDER BY nodename) FROM pg_dist_node WHERE nodename IN ('{w3}', '{w4}')"),
    )?;
    ensure!(closed == format!("{w3}=false {w4}=false"), "leaving workers mid-drain: {closed}");
    let drainer = draining_session(&cluster)?;

    // The retry: a new revision, a new Job, which waits for the first run; the holder lets the first run go
    // on only once the retry waits on the chart's lock.
    cluster.upgrade(&values(3))?;
    let retry = "my-citus-drain-workers-r3";
    wait_until(&mut cluster, "the first drain Job to end", Duration::from_secs(300), |c| {
        Ok(c.job_status(first) != Some(JobStatus::Running))
    })?;
    let stop = cluster.exec(COORDINATOR, &["touch", "/tmp/holder.stop"], &[], None)?;
    ensure!(stop.status.success(), "stopping the sampler: {}", stop.stderr);
    ensure!(
        cluster.job_status(first) == Some(JobStatus::Succeeded { attempts: 1 }),
        "{first}: {:?}",
        cluster.job_status(first)
    );
    let holder = read_coordinator_file(&cluster, "/tmp/holder.done")?;
    ensure!(holder.trim() == "0", "lock holder: {holder} {}", read_coordinator_file(&cluster, "/tmp/holder.out")?);

    // The retry waited while the first run drained; it never drained itself (nothing was left).
    let others = check_one_drain_at_a_time(&cluster, &drainer)?;
    ensure!(others.is_empty(), "the retry drained too: sessions {others:?}");

    // The logs: one pod for each Job; the first drained and removed both workers; the retry said that it
    // waited (before the first run ended) and then found nothing left.
    let first_pods = job_pods(&cluster, first)?;
    ensure!(first_pods.len() == 1 && first_pod == format!("{first}-{}", first_pods[0]), "{first} pods: {first_pods:?}");
    let first_log = cluster.logs(&first_pod)?;
    let leaving = format!("{w3} {w4}");
    ensure!(!first_log.contains("ERROR"), "{first_log}");
    let first_done = logged_at(&first_log, &format!("done: {leaving} drained and removed"))?;
    let retry_pods = job_pods(&cluster, retry)?;
    ensure!(retry_pods.len() == 1, "{retry} pods: {retry_pods:?}");
    let retry_log = cluster.logs(&format!("{retry}-{}", retry_pods[0]))?;
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

    assert_three_workers_with_every_row(&cluster, &sums)?;
    Ok(())
}

/// `helm rollback` runs the Job of the target revision's stored manifest, so a retried rollback to the same
/// revision meets the earlier Job under the same name and Helm deletes it (`before-hook-creation`) with its
/// pod. The drain statement that pod started goes on in the coordinator, holding the lock (PostgreSQL only
/// notices the lost client when the statement ends); the new Job waits for it and does the rest.
fn a_retried_helm_rollback_replaces_the_drain_job_but_waits_for_its_running_drain(env: &Env) -> anyhow::Result<()> {
    let (mut cluster, sums) = three_then_five_workers(env)?;
    let shard = hold_last_shard_of_worker_4(&mut cluster)?;

    let job = "my-citus-drain-workers-r1";
    cluster.set_hook_timeout(Duration::from_secs(20));
    let err = match cluster.rollback("my-citus", 1) {
        Ok(_) => bail!("the rollback succeeded although its drain was blocked"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    };
    cluster.set_hook_timeout(Duration::from_secs(300));
    ensure!(err.contains(&format!("pre-rollback hook Job/{job}")) && err.contains("timed out"), "{err}");
    let first_pod = cluster.job_pod(job).context("the first drain has no pod")?.to_owned();
    let waiting_on_shard =
        format!("SELECT count(*) FROM pg_locks WHERE relation = to_regclass('public.{shard}') AND NOT granted");
    wait_until(&mut cluster, "the first drain to reach the held shard", Duration::from_secs(300), |c| {
        Ok(util::psql(c, "my-citus-worker-4", &SOCKET, &waiting_on_shard)? != "0")
    })?;
    let drainer = draining_session(&cluster)?;

    cluster.rollback("my-citus", 1)?;
    ensure!(cluster.pod(&first_pod).is_err(), "the earlier Job's pod {first_pod} survived the retry");
    let holder = read_coordinator_file(&cluster, "/tmp/holder.done")?;
    ensure!(holder.trim() == "0", "lock holder: {holder} {}", read_coordinator_file(&cluster, "/tmp/holder.out")?);
    let stop = cluster.exec(COORDINATOR, &["touch", "/tmp/holder.stop"], &[], None)?;
    ensure!(stop.status.success(), "stopping the sampler: {}", stop.stderr);
    // The deleted pod's session was still in citus_drain_node when the retry waited for the lock.
    check_one_drain_at_a_time(&cluster, &drainer)?;

    let pods = job_pods(&cluster, job)?;
    ensure!(pods.len() == 2 && first_pod == format!("{job}-{}", pods[0]), "{job} pods: {pods:?} (first {first_pod})");
    let first_log = cluster.logs(&first_pod)?;
    ensure!(!first_log.contains("done:"), "the deleted Job's pod finished:\n{first_log}");
    let retry_log = cluster.logs(&format!("{job}-{}", pods[1]))?;
    let leaving = format!("{} {}", util::worker_fqdn(3), util::worker_fqdn(4));
    for line in [
        "another scale-in run holds the lock".to_owned(),
        "the other run ended: draining what it left".to_owned(),
        format!("done: {leaving} drained and removed"),
    ] {
        logged_at(&retry_log, &line)?;
    }
    assert_three_workers_with_every_row(&cluster, &sums)?;
    Ok(())
}
