//! A randomized day-2 run, as Jepsen and CloudNativePG's fault suites do it: from a seed, a sequence of
//! steps drawn from helm upgrades (workers up or down, a setting changed), helm rollbacks, an upgrade that
//! Helm gives up on and that is run again, kills of worker, coordinator and hook pods in the middle of their
//! work, a network cut and heal, a replica change outside Helm and a backup, while a writer inserts rows.
//! After every step the cluster settles and the invariants are checked: every acknowledged write is there;
//! every placement is on a registered, active, reachable worker; no worker is closed to shards; no node is
//! registered twice or under a name the release does not have; pg_dist_cleanup empties; distributed DDL and
//! a multi-shard query work as the application user. A failure names the seed and the steps so far.
//! `DAY2_SEED` and `DAY2_STEPS` replay or lengthen it (the suite runs seed 1 with 8 steps). It runs on the
//! control plane: Helm's releases, hooks and `lookup`, the Job and StatefulSet controllers are the real ones.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::ReleaseOptions;
use serde_json::{json, Value};

use crate::util::{self, Env, APP_PASSWORD, COORDINATOR, COORDINATOR_SERVICE};
use testbed::Space;

crate::scenarios!(Node: a_randomized_day_2_run_keeps_every_acknowledged_write_and_a_consistent_cluster);

const RELEASE: &str = "my-citus";
const WORKERS: &str = "my-citus-worker";
const SETTLE: Duration = Duration::from_secs(300);

/// splitmix64: a seed gives the same steps on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// `helm upgrade` to this many workers.
    Scale(u32),
    /// `helm upgrade` with another work_mem: every pod restarts.
    ChangeSetting,
    /// `helm rollback` to this revision.
    Rollback(u32),
    /// `helm upgrade --timeout 3s` to this many workers, then the same upgrade again.
    RetriedUpgrade(u32),
    /// `helm upgrade` to this many workers whose drain or registration pod is killed while it works.
    KillHookPod(u32),
    KillWorker(u32),
    KillCoordinator,
    /// The coordinator and this worker cannot reach each other for 5 s.
    CutNetwork(u32),
    /// `kubectl scale` of the workers up by one, outside Helm (as an HPA would).
    ScaleOutsideHelm,
    Backup,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// What the cluster should look like after the steps so far.
struct Model {
    rng: Rng,
    /// Workers of the revision Helm applied last.
    workers: u32,
    work_mem: u32,
    backups: u32,
    /// The values of each revision Helm recorded (a refused command records one too), revision 1 first.
    revisions: Vec<Value>,
}

impl Model {
    fn draw(&mut self, revisions: u32) -> Step {
        let other = |rng: &mut Rng, now: u32| loop {
            let n = rng.between(2, 4);
            if n != now {
                return n;
            }
        };
        match self.rng.between(0, 9) {
            0 => Step::Scale(other(&mut self.rng, self.workers)),
            1 => Step::ChangeSetting,
            2 if revisions > 1 => Step::Rollback(self.rng.between(revisions.saturating_sub(3).max(1), revisions - 1)),
            3 => Step::RetriedUpgrade(other(&mut self.rng, self.workers)),
            4 => Step::KillHookPod(other(&mut self.rng, self.workers)),
            5 => Step::KillWorker(self.rng.between(0, self.workers - 1)),
            6 => Step::KillCoordinator,
            7 => Step::CutNetwork(self.rng.between(0, self.workers - 1)),
            8 => Step::ScaleOutsideHelm,
            _ => Step::Backup,
        }
    }

    fn values(&self, workers: u32) -> Value {
        util::values(json!({
            "worker": {"replicaCount": workers},
            "backup": {"enabled": true},
            "postgresql": {"extraConfiguration": format!("work_mem = '{}MB'", self.work_mem)},
        }))
    }
}

fn a_randomized_day_2_run_keeps_every_acknowledged_write_and_a_consistent_cluster(env: &Env) -> anyhow::Result<()> {
    let seed: u64 = std::env::var("DAY2_SEED").ok().map(|s| s.parse()).transpose().context("DAY2_SEED")?.unwrap_or(1);
    let steps: u32 =
        std::env::var("DAY2_STEPS").ok().map(|s| s.parse()).transpose().context("DAY2_STEPS")?.unwrap_or(8);
    let mut model = Model { rng: Rng(seed), workers: 3, work_mem: 4, backups: 0, revisions: Vec::new() };
    let space = Space::create(env.postgres()?, "day2", None)?;
    let values = model.values(3);
    space.install_values(&values)?;
    model.revisions.push(values);
    space.wait_serving(util::SERVING)?;
    let app = util::tcp(COORDINATOR_SERVICE, "citus", APP_PASSWORD);
    util::psql(
        &space,
        COORDINATOR,
        &app,
        "CREATE TABLE writes (id bigint PRIMARY KEY, payload text NOT NULL);\n\
         SELECT create_distributed_table('writes', 'id') \\g /dev/null\n\
         CREATE TABLE kinds (kind int PRIMARY KEY, name text NOT NULL);\n\
         SELECT create_reference_table('kinds') \\g /dev/null\n\
         INSERT INTO kinds SELECT g, 'kind-' || g FROM generate_series(1, 10) g;",
    )?;
    ensure_writer(&space)?;

    let started = Instant::now();
    let mut done: Vec<String> = Vec::new();
    for n in 1..=steps {
        let revisions = model.revisions.len() as u32;
        let step = model.draw(revisions);
        let at = Instant::now();
        let outcome = run_step(&space, &mut model, &step).and_then(|note| {
            let checked =
                settle(&space).and_then(|()| ensure_writer(&space)).and_then(|()| check_invariants(&space, &model));
            checked.map(|()| note.clone()).with_context(|| format!("after the step{note}"))
        });
        match outcome {
            Ok(note) => {
                let acked = acknowledged(&space)?.len();
                let line = format!("{n}. {step}{note} ({:.0?}, {acked} writes acknowledged so far)", at.elapsed());
                println!("day2 seed {seed}: {line}");
                done.push(line);
            }
            Err(e) => bail!(
                "seed {seed}, step {n} ({step}) failed: {e:#}\nsteps so far:\n{}\nreplay: DAY2_SEED={seed} DAY2_STEPS={n}",
                done.join("\n")
            ),
        }
    }
    let acked = stop_writer(&space)?;
    check_acknowledged(&space, &acked)?;
    println!("day2 seed {seed}: {steps} steps, {} acknowledged writes, {:.0?}", acked.len(), started.elapsed());
    Ok(())
}

/// Helm gives up on hooks after `seconds`, as with `--timeout`.
fn timeout(seconds: u64) -> ReleaseOptions {
    ReleaseOptions { timeout_seconds: Some(seconds), ..ReleaseOptions::default() }
}

/// What Helm's server-side apply says when `.spec.replicas` was last set by `kubectl scale`.
const SCALED_BY_KUBECTL: &str = "conflict with \"kubectl\" with subresource \"scale\"";

/// `helm upgrade` with the model's values for `workers` workers; Helm records a revision either way. After
/// a scale outside Helm, Helm's server-side apply refuses to take `.spec.replicas` back from `kubectl` (once
/// its pre-upgrade hooks ran); the operator's answer, `--force-conflicts`, follows at once.
fn upgrade(space: &Space, model: &mut Model, workers: u32, options: &ReleaseOptions) -> anyhow::Result<()> {
    let values = model.values(workers);
    let mut result = space.helm.upgrade(&util::chart_dir(), RELEASE, &values, options).map(drop);
    model.revisions.push(values.clone());
    if matches!(&result, Err(e) if e.to_string().contains(SCALED_BY_KUBECTL)) {
        let forced = ReleaseOptions { force_conflicts: true, ..options.clone() };
        result = space.helm.upgrade(&util::chart_dir(), RELEASE, &values, &forced).map(drop);
        model.revisions.push(values);
    }
    result.map_err(anyhow::Error::from)
}

/// Runs one step; returns a note on how it went when Helm refused it (a refusal is allowed, the invariants
/// decide whether it left the cluster consistent).
fn run_step(space: &Space, model: &mut Model, step: &Step) -> anyhow::Result<String> {
    let mut note = String::new();
    match *step {
        Step::Scale(n) => {
            let r = upgrade(space, model, n, &timeout(600));
            note += &applied(r, model, n);
        }
        Step::ChangeSetting => {
            model.work_mem = if model.work_mem == 4 { 5 } else { 4 };
            let w = model.workers;
            let r = upgrade(space, model, w, &timeout(600));
            note += &applied(r, model, w);
        }
        Step::Rollback(revision) => {
            let values = model.revisions.get(revision as usize - 1).cloned().context("no such revision")?;
            let n = values["worker"]["replicaCount"].as_u64().context("replicaCount")? as u32;
            let mut r = space.helm.rollback(RELEASE, Some(revision), &timeout(600)).map_err(anyhow::Error::from);
            model.revisions.push(values.clone());
            if matches!(&r, Err(e) if e.to_string().contains(SCALED_BY_KUBECTL)) {
                let forced = ReleaseOptions { force_conflicts: true, ..timeout(600) };
                r = space.helm.rollback(RELEASE, Some(revision), &forced).map_err(anyhow::Error::from);
                model.revisions.push(values.clone());
            }
            if r.is_ok() {
                model.work_mem = work_mem_of(&values)?;
            }
            note += &applied(r, model, n);
        }
        Step::RetriedUpgrade(n) => {
            if let Err(e) = upgrade(space, model, n, &timeout(3)) {
                note = format!(" [first try: {}]", first_line(&format!("{e:#}")));
            }
            // Helm's hooks that outlived --timeout go on; the retry waits for them (README: scale-in).
            let deadline = Instant::now() + SETTLE;
            while !space.jsonpath("jobs", "{.items[*].status.active}")?.trim().is_empty() {
                ensure!(Instant::now() < deadline, "hook Jobs of the first try still run after {SETTLE:?}");
                std::thread::sleep(Duration::from_millis(500));
            }
            let r = upgrade(space, model, n, &timeout(600));
            note += &applied(r, model, n);
        }
        Step::KillHookPod(n) => {
            let revision = model.revisions.len() + 1;
            if n < model.workers {
                let job = format!("my-citus-drain-workers-r{revision}");
                space.agent.kill_on_log_line(&space.ns, &job, "NOTICE:  Moving shard");
            } else {
                space.agent.kill_on_log_line(&space.ns, "my-citus-register-workers", "added as node");
            }
            let r = upgrade(space, model, n, &timeout(600));
            space.agent.clear_kills_on_log_lines(&space.ns);
            note += &applied(r, model, n);
        }
        Step::KillWorker(i) => kill(space, &format!("{WORKERS}-{i}"))?,
        Step::KillCoordinator => kill(space, COORDINATOR)?,
        Step::CutNetwork(i) => {
            let worker = format!("{WORKERS}-{i}");
            space.agent.cut(&space.ns, COORDINATOR, &worker)?;
            std::thread::sleep(Duration::from_secs(5));
            space.agent.heal(&space.ns, COORDINATOR, &worker)?;
        }
        Step::ScaleOutsideHelm => {
            let now: u32 = space.jsonpath(&format!("statefulset/{WORKERS}"), "{.spec.replicas}")?.parse()?;
            space.kubectl(&["scale", &format!("statefulset/{WORKERS}"), &format!("--replicas={}", now + 1)])?;
        }
        Step::Backup => {
            model.backups += 1;
            let job = format!("day2-backup-{}", model.backups);
            space.kubectl(&["create", "job", "--from=cronjob/my-citus-backup", &job])?;
            space
                .kubectl(&["wait", "--for=condition=Complete", &format!("job/{job}"), "--timeout=300s"])
                .with_context(|| space.job_logs(&job).unwrap_or_default())?;
        }
    }
    Ok(note)
}

/// Kills every process of `pod` and waits until the node restarted its container: until then the API server
/// may still report the pod ready.
fn kill(space: &Space, pod: &str) -> anyhow::Result<()> {
    let path = "{.status.containerStatuses[?(@.name==\"postgresql\")].restartCount}";
    let restarts = || space.jsonpath(&format!("pod/{pod}"), path);
    let before = restarts()?;
    space.agent.kill_pod(&space.ns, pod)?;
    let deadline = Instant::now() + SETTLE;
    while restarts()? == before {
        ensure!(Instant::now() < deadline, "{pod} was not restarted {SETTLE:?} after the kill");
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// The model follows a Helm command that went through; one that failed leaves it (and says why).
fn applied(result: anyhow::Result<()>, model: &mut Model, workers: u32) -> String {
    match result {
        Ok(()) => {
            model.workers = workers;
            String::new()
        }
        Err(e) => format!(" [helm refused: {}]", first_line(&format!("{e:#}"))),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default()
}

fn work_mem_of(values: &Value) -> anyhow::Result<u32> {
    let conf = values["postgresql"]["extraConfiguration"].as_str().context("extraConfiguration")?;
    Ok(conf.trim_start_matches("work_mem = '").trim_end_matches("MB'").parse()?)
}

fn sql(space: &Space, query: &str) -> anyhow::Result<String> {
    space.sql(query)
}

/// Every node pod rolled out and ready, the coordinator Service answering, no Citus background job running
/// (bounded).
fn settle(space: &Space) -> anyhow::Result<()> {
    space.wait_rolled_out(SETTLE)?;
    space.wait_serving(util::SERVING)?;
    let running =
        "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running', 'cancelling', 'failing')";
    let deadline = Instant::now() + SETTLE;
    while sql(space, running)? != "0" {
        ensure!(
            Instant::now() < deadline,
            "a background job still runs: {}",
            sql(space, "SELECT * FROM citus_rebalance_status()")?
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// The invariants of the module documentation.
fn check_invariants(cluster: &Space, model: &Model) -> anyhow::Result<()> {
    let acked = acknowledged(cluster)?;
    check_acknowledged(cluster, &acked)?;
    let misplaced = sql(
        cluster,
        "SELECT count(*) FROM pg_dist_placement p LEFT JOIN pg_dist_node n ON n.groupid = p.groupid \
         WHERE n.nodeid IS NULL OR NOT n.isactive",
    )?;
    ensure!(misplaced == "0", "{misplaced} placement(s) on unregistered or inactive nodes");
    let unhealthy =
        sql(cluster, "SELECT count(*) FROM citus_check_cluster_node_health() WHERE NOT coalesce(result, false)")?;
    ensure!(
        unhealthy == "0",
        "node pairs that cannot connect: {}",
        sql(cluster, "SELECT * FROM citus_check_cluster_node_health() WHERE NOT coalesce(result, false)")?
    );
    let closed = sql(
        cluster,
        "SELECT coalesce(string_agg(nodename, ' '), '') FROM pg_dist_node WHERE groupid <> 0 AND NOT shouldhaveshards",
    )?;
    ensure!(closed.is_empty(), "worker(s) closed to shards with no drain running: {closed}");
    let registered =
        sql(cluster, "SELECT string_agg(nodename, ' ' ORDER BY nodename) FROM pg_dist_node WHERE groupid <> 0")?;
    let expected: Vec<String> = (0..model.workers).map(|n| util::worker_host(&cluster.ns, n)).collect();
    ensure!(
        registered == expected.join(" "),
        "registered workers: {registered}; the release has {}",
        expected.join(" ")
    );
    let mut cleanup = String::new();
    for _ in 0..120 {
        cleanup = sql(cluster, "SELECT count(*) FROM pg_dist_cleanup")?;
        if cleanup == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(cleanup == "0", "{cleanup} pg_dist_cleanup record(s) stay");
    let app = util::tcp(COORDINATOR_SERVICE, "citus", APP_PASSWORD);
    let ddl = "ALTER TABLE writes ALTER COLUMN payload SET DEFAULT 'ddl';\nSELECT count(*) FROM writes w JOIN kinds k ON k.kind = 1 + w.id % 10";
    util::psql(cluster, COORDINATOR, &app, ddl)
        .context("distributed DDL and a multi-shard query as the application user")?;
    Ok(())
}

/// Every acknowledged id is in the table (once: it is the primary key).
fn check_acknowledged(cluster: &Space, acked: &[u64]) -> anyhow::Result<()> {
    let stored: std::collections::BTreeSet<u64> =
        sql(cluster, "SELECT coalesce(string_agg(id::text, ' '), '') FROM writes")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
    let lost: Vec<&u64> = acked.iter().filter(|id| !stored.contains(id)).collect();
    ensure!(lost.is_empty(), "{} acknowledged write(s) missing, e.g. {:?}", lost.len(), &lost[..lost.len().min(10)]);
    Ok(())
}

/// In the coordinator pod: inserts ids 1, 2, ..., one transaction each, appending each acknowledged id to
/// `ok` in [`WRITER_DIR`], on the coordinator's volume: a writer killed with its container or pod (a rolling
/// update replaces the pod, and its /tmp) is started again where it stopped. `DIR` comes from the exec's
/// environment. One at a time: a second one finds the lock taken and leaves (a pid file could name a process
/// of a later container).
const WRITER: &str = r#"exec 9>$DIR/lock
flock -n 9 || exit 0
echo running > $DIR/state
i=$(cat $DIR/next 2>/dev/null) || i=0
while [ ! -e $DIR/stop ]; do
  i=$((i + 1))
  echo "$i" > $DIR/next.new && mv $DIR/next.new $DIR/next
  if psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d citus -c "INSERT INTO writes (id, payload) VALUES ($i, 'row-$i')" >/dev/null 2>&1; then
    echo "$i" >> $DIR/ok
  else
    sleep 0.2
  fi
done
echo stopped > $DIR/state
"#;

/// Where the writer keeps its state: the coordinator's volume (its data directory is a subdirectory).
const WRITER_DIR: &str = "/var/lib/postgresql/data/day2";

fn in_writer_dir(space: &Space, script: &str, stdin: Option<&[u8]>) -> anyhow::Result<local_cluster::ExecOutput> {
    space.run(COORDINATOR, &["sh", "-c", script], &[("DIR", WRITER_DIR)], stdin)
}

fn ensure_writer(cluster: &Space) -> anyhow::Result<()> {
    let start = "mkdir -p $DIR; cat > $DIR/writer.sh; nohup sh $DIR/writer.sh </dev/null >/dev/null 2>&1 &";
    let out = in_writer_dir(cluster, start, Some(WRITER.as_bytes()))?;
    ensure!(out.status.success(), "starting the writer: {}", out.stderr);
    Ok(())
}

fn acknowledged(cluster: &Space) -> anyhow::Result<Vec<u64>> {
    let out = in_writer_dir(cluster, "cat $DIR/ok 2>/dev/null || true", None)?;
    out.stdout.lines().map(|l| l.trim().parse::<u64>().context("an acknowledged id")).collect()
}

fn stop_writer(cluster: &Space) -> anyhow::Result<Vec<u64>> {
    in_writer_dir(cluster, "touch $DIR/stop", None)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = |c: &Space| -> anyhow::Result<String> {
        Ok(in_writer_dir(c, "cat $DIR/state 2>/dev/null || true", None)?.stdout)
    };
    while state(cluster)?.trim() != "stopped" {
        ensure!(Instant::now() < deadline, "the writer did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
    let acked = acknowledged(cluster)?;
    ensure!(acked.len() > 10, "the writer acknowledged only {} writes", acked.len());
    Ok(acked)
}
