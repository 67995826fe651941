//! The chart on a real control plane with this machine as its node (issue 16): Helm installs, tests, upgrades
//! and rolls back through the API server; the StatefulSet, Job, disruption and PV controllers and the scheduler
//! do their part; the node agent runs the pods with real PostgreSQL and Citus and reports them back. Each
//! scenario has a namespace of its own, deleted at its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use base64::Engine as _;
use helm_engine::{Helm, ReleaseOptions, RenderOptions};
use local_cluster::agent::STORAGE_CLASS;
use serde_json::{json, Value};

use testbed::{Space, NODES};

use crate::util::{self, Env};

crate::scenarios!(Node:
    helm_install_under_pod_security_restricted_registers_every_worker_passes_helm_test_and_uninstall_stops_every_pod,
    a_rollout_restart_of_the_workers_under_a_writer_loses_no_acknowledged_row,
    the_gitops_path_applies_the_render_twice_and_the_second_apply_restarts_nothing,
    a_rollback_to_a_revision_rendered_with_fewer_live_workers_keeps_every_worker_while_the_coordinator_is_down,
    a_scale_out_to_a_worker_the_coordinator_cannot_reach_fails_naming_it_and_the_retry_after_healing_registers_it,
    a_pod_that_mounts_its_service_account_token_reaches_the_api_server_as_that_account,
    a_helm_upgrade_from_3_to_5_workers_under_a_writer_rebalances_online_and_keeps_every_acknowledged_row,
    the_readmes_kubectl_port_forward_to_the_coordinator_service_carries_concurrent_psql_sessions;
    WholeNode: kubectl_drain_of_the_node_evicts_no_more_than_the_charts_disruption_budgets_allow);

/// The three default workers as `pg_dist_node` names them in namespace `ns`.
pub(crate) fn worker_names(ns: &str) -> Vec<String> {
    (0..3).map(|n| util::worker_host(ns, n)).collect()
}

/// Pods of hooks, which Helm leaves behind: the registration Job's and the test's.
fn is_hook_pod(name: &str) -> bool {
    name.starts_with("my-citus-register-workers-") || name == "my-citus-test"
}

fn registered_workers(space: &Space) -> anyhow::Result<String> {
    space.sql("SELECT nodename FROM pg_dist_node WHERE groupid > 0 AND isactive ORDER BY 1")
}

fn helm_install_under_pod_security_restricted_registers_every_worker_passes_helm_test_and_uninstall_stops_every_pod(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-install", Some("restricted"))?;
    space.install(json!({}))?;
    let ns = space.ns.as_str();
    let workers = registered_workers(&space)?;
    ensure!(workers == worker_names(ns).join("\n"), "registered workers:\n{workers}");
    let spread = space.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g;
         SELECT (SELECT count(*) FROM items) || ' ' ||
                (SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'items'::regclass)",
    )?;
    ensure!(spread == "1000 3", "rows and workers holding shards: {spread}");

    // The API server's view, as the agent reported it: every pod Running and Ready (once its readiness probe's
    // initial delay has passed), with its address; every claim Bound to a volume of the agent's StorageClass.
    space.wait_ready(&NODES, Duration::from_secs(60))?;
    let pods = space.jsonpath(
        "pods",
        "{range .items[*]}{.metadata.name}={.status.phase},{.status.conditions[?(@.type==\"Ready\")].status},{.status.podIP}{\"\\n\"}{end}",
    )?;
    for pod in NODES {
        let line = pods
            .lines()
            .find(|l| l.starts_with(&format!("{pod}=")))
            .with_context(|| format!("no pod {pod}:\n{pods}"))?;
        ensure!(line.contains("=Running,True,10."), "pod {pod} as reported: {line}");
    }
    let claims = space
        .jsonpath("pvc", "{range .items[*]}{.metadata.name}={.status.phase},{.spec.storageClassName}{\"\\n\"}{end}")?;
    ensure!(
        claims.lines().count() == 4 && claims.lines().all(|l| l.ends_with(&format!("=Bound,{STORAGE_CLASS}"))),
        "claims:\n{claims}"
    );

    // `kubectl logs` and `kubectl exec` through the API server to the agent's kubelet API.
    let log = space.kubectl(&["logs", util::COORDINATOR, "--tail=200"])?;
    ensure!(log.contains("citus-coordinator: starting PostgreSQL"), "kubectl logs of the coordinator:\n{log}");
    let log = space.kubectl(&["logs", "job/my-citus-register-workers"])?;
    ensure!(log.contains("done: 3 active worker(s) registered"), "kubectl logs of the registration Job:\n{log}");
    // Stdin goes in (psql reads it to its end), stdout comes out, a failure's exit code and stderr come back.
    let mut exec = vec!["exec", "-i", util::COORDINATOR, "--"];
    exec.extend(util::psql_argv(&util::SOCKET));
    let count = space.kubectl_with_input(&exec, b"SELECT count(*) FROM items;\nSELECT 'end of input';\n")?;
    ensure!(count == "1000\nend of input\n", "SQL through kubectl exec -i: {count:?}");
    let failing = ["exec", util::COORDINATOR, "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"];
    match space.kubectl(&failing) {
        Ok(out) => bail!("a command that exits 3 succeeded through kubectl exec: {out}"),
        Err(e) => {
            let e = e.to_string();
            ensure!(e.contains("exit code 3") && e.contains("to-stderr"), "kubectl exec of exit 3: {e}");
        }
    }
    // The command runs as the container's user, in its working directory and environment.
    let who = space.kubectl(&["exec", util::COORDINATOR, "--", "sh", "-c", "id -u; echo $PGDATA"])?;
    ensure!(who.starts_with("1001\n/"), "user and PGDATA of an exec: {who:?}");

    // `helm test`: the chart's test pod runs to success on the node (admitted under `restricted` too).
    space.helm.test("my-citus", Some(300)).with_context(|| space.diagnose())?;

    // Uninstall: every pod of the release gets its stop signal and grace period on the node, then leaves the
    // API server. Helm leaves hook objects: the registration Job stays for its TTL, the test pod until the next
    // test, and the README's command removes them.
    space.helm.uninstall("my-citus")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = space.jsonpath("pods", "{.items[*].metadata.name}")?;
        let left: Vec<&str> = left.split_whitespace().filter(|p| !is_hook_pod(p)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("pods left 120 s after uninstall: {left:?}\n{}", space.diagnose());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let jobs = space.jsonpath("jobs", "{.items[*].metadata.name}")?;
    ensure!(jobs == "my-citus-register-workers", "jobs after uninstall: {jobs}");
    space.kubectl(&["delete", "jobs,pods", "-l", "app.kubernetes.io/instance=my-citus", "--wait=true"])?;
    let left = space.jsonpath("jobs,pods", "{.items[*].metadata.name}")?;
    ensure!(left.trim().is_empty(), "left after the README's delete: {left}");
    // The claims stay (the chart's documented behaviour), bound to the agent's volumes.
    let kept = space.jsonpath("pvc", "{.items[*].status.phase}")?;
    ensure!(kept == "Bound Bound Bound Bound", "claims after uninstall: {kept}");
    Ok(())
}

/// Inserts 1, 2, ... into `items`, one statement per psql run on the coordinator, until `stop`; returns the
/// ids psql reported committed and how many statements failed (also those that found no coordinator
/// container to run in, as `kubectl exec` would during a restart).
pub(crate) fn write_until(space: &Space, stop: &AtomicBool) -> anyhow::Result<(Vec<u64>, u32)> {
    let (mut acked, mut failed) = (Vec::new(), 0);
    let mut id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        id += 1;
        if matches!(space.try_sql(&format!("INSERT INTO items VALUES ({id}, 'w')")), Ok(Ok(_))) {
            acked.push(id);
        } else {
            failed += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok((acked, failed))
}

/// What a writer ([`write_until`]) got through while an action ran.
pub(crate) struct Writes {
    pub(crate) acked: Vec<u64>,
    pub(crate) failed: u32,
}

/// Runs `act` while a writer inserts into `items` (from 2 s before to 2 s after it); `act`'s error comes first.
pub(crate) fn under_writer(space: &Space, act: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Writes> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_until(space, &stop));
        std::thread::sleep(Duration::from_secs(2));
        let acted = act();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::SeqCst);
        let written = writer.join().map_err(|_| anyhow::anyhow!("the writer panicked"))?;
        acted?;
        let (acked, failed) = written?;
        Ok(Writes { acked, failed })
    })
}

impl Writes {
    /// Every acknowledged write is in `items`, and enough of them got through to mean something.
    pub(crate) fn assert_kept(&self, space: &Space, during: &str) -> anyhow::Result<()> {
        let rows = space.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM items")?;
        let present: std::collections::BTreeSet<u64> =
            rows.split(',').filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
        let lost: Vec<&u64> = self.acked.iter().filter(|id| !present.contains(id)).collect();
        ensure!(lost.is_empty(), "acknowledged rows lost {during}: {lost:?}");
        ensure!(
            self.acked.len() > 20,
            "the writer got only {} writes through ({} failed)",
            self.acked.len(),
            self.failed
        );
        eprintln!("{during}: {} writes acknowledged, {} refused", self.acked.len(), self.failed);
        Ok(())
    }
}

fn a_rollout_restart_of_the_workers_under_a_writer_loses_no_acknowledged_row(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-restart", None)?;
    space.install(json!({}))?;
    space.sql("CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id')")?;
    space.wait_ready(&NODES, Duration::from_secs(60))?;
    let before = space.identities()?;

    let writes = under_writer(&space, || {
        space
            .kubectl(&["rollout", "restart", "statefulset/my-citus-worker"])
            .and_then(|_| space.kubectl(&["rollout", "status", "statefulset/my-citus-worker", "--timeout=300s"]))
            .with_context(|| space.diagnose())?;
        Ok(())
    })?;

    // Every worker pod was replaced (new uid), none of them restarted in place, the coordinator untouched.
    let after = space.identities()?;
    for line in before.lines() {
        let (pod, _) = line.split_once('=').context("identity line")?;
        let now = after
            .lines()
            .find(|l| l.starts_with(&format!("{pod}=")))
            .with_context(|| format!("{pod} is gone:\n{after}"))?;
        let replaced = now != line;
        ensure!(replaced == pod.starts_with("my-citus-worker-"), "{pod}: before {line}, after {now}");
        ensure!(now.ends_with(",0"), "{pod} restarted in place: {now}");
    }
    // Writes to a restarting worker's shards fail and are not acknowledged; every acknowledged one is there.
    writes.assert_kept(&space, "in a rollout restart of the workers")?;
    let workers = registered_workers(&space)?;
    ensure!(workers == worker_names(&space.ns).join("\n"), "registered workers after the restart:\n{workers}");
    Ok(())
}

fn kubectl_drain_of_the_node_evicts_no_more_than_the_charts_disruption_budgets_allow(env: &Env) -> anyhow::Result<()> {
    let space = Space::create_alone(env.postgres()?, "node-drain")?;
    space.install(json!({}))?;
    space.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g",
    )?;
    space.wait_ready(&NODES, Duration::from_secs(60))?;
    // The disruption controller has counted the healthy pods once the budgets allow a disruption.
    let deadline = Instant::now() + Duration::from_secs(30);
    while space.jsonpath("pdb", "{.items[*].status.disruptionsAllowed}")? != "0 1" {
        ensure!(Instant::now() < deadline, "budgets never settled: {}", space.jsonpath("pdb", "{.items[*].status}")?);
        std::thread::sleep(Duration::from_millis(500));
    }

    // One node: what is evicted cannot come back until the node is uncordoned, so the budgets stop the drain
    // after one worker, and never let the coordinator go.
    let node = control_plane::NODE_NAME;
    let drain = space.plane.kubectl(
        &[
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--pod-selector=app.kubernetes.io/instance=my-citus",
            "--timeout=30s",
        ],
        None,
    );
    let refused = match drain {
        Ok(out) => bail!("the drain went through the budgets: {out:?}"),
        Err(e) => e.to_string(),
    };
    ensure!(refused.contains("disruption budget"), "the drain failed for another reason: {refused}");
    let phases = space.jsonpath("pods", "{range .items[?(@.metadata.labels.app\\.kubernetes\\.io/component)]}{.metadata.name}={.status.phase}{\"\\n\"}{end}")?;
    let pending: Vec<&str> = phases.lines().filter(|l| l.ends_with("=Pending")).collect();
    ensure!(pending.len() == 1 && pending[0].starts_with("my-citus-worker-"), "after the drain:\n{phases}");
    ensure!(phases.contains(&format!("{}=Running", util::COORDINATOR)), "after the drain:\n{phases}");

    space.plane.kubectl(&["uncordon", node], None)?;
    space.wait_ready(&NODES, Duration::from_secs(120))?;
    let count = space.sql("SELECT count(*) FROM items")?;
    ensure!(count == "1000", "rows after the drain and uncordon: {count}");
    Ok(())
}

fn the_gitops_path_applies_the_render_twice_and_the_second_apply_restarts_nothing(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-gitops", Some("restricted"))?;
    let options =
        RenderOptions { namespace: space.ns.clone(), kube_version: Some("v1.36.2".into()), ..RenderOptions::default() };
    let stream = Helm::discover()?.render(&util::chart_dir(), &util::values(json!({})), &options)?.to_yaml_stream();
    let apply = ["apply", "--server-side", "--field-manager=gitops", "-f", "-"];
    let args: Vec<&str> = apply.iter().copied().chain(["-n", &space.ns]).collect();
    space.plane.kubectl(&args, Some(stream.as_bytes()))?;
    // The hooks are plain objects here: the registration Job runs once the nodes answer.
    space
        .kubectl(&["wait", "--for=condition=Complete", "job/my-citus-register-workers", "--timeout=300s"])
        .with_context(|| space.diagnose())?;
    space.wait_ready(&NODES, Duration::from_secs(60))?;
    let workers = registered_workers(&space)?;
    ensure!(workers == worker_names(&space.ns).join("\n"), "registered workers:\n{workers}");

    let before = space.identities()?;
    space.plane.kubectl(&args, Some(stream.as_bytes()))?;
    // Long enough for a controller to act on a changed template and for the agent to report a restart.
    std::thread::sleep(Duration::from_secs(10));
    let after = space.identities()?;
    ensure!(before == after, "the second apply restarted pods:\nbefore:\n{before}\nafter:\n{after}");
    Ok(())
}

/// Review D2 on a real API server, where `lookup` answers at every render and a rollback replays a revision
/// rendered back then: revision 2 (three workers) is rendered while two run, revision 3 moves shards onto a
/// fourth, revision 4 breaks the coordinator. Rolling back to 2 must not stop worker 3 with its shards; the
/// drain hook cannot ask the broken coordinator what it holds, so the rollback is refused. Rolling back to 3
/// then mends the coordinator with every shard where it was.
fn a_rollback_to_a_revision_rendered_with_fewer_live_workers_keeps_every_worker_while_the_coordinator_is_down(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-rollback", None)?;
    let chart = util::chart_dir();
    let values = |workers: u32, conf: &str| {
        util::values(json!({
            "worker": {"replicaCount": workers},
            "workerRegistration": {"activeDeadlineSeconds": 45},
            "postgresql": {"extraConfiguration": conf},
        }))
    };
    let options = ReleaseOptions { timeout_seconds: Some(240), ..ReleaseOptions::default() };
    space.helm.install(&chart, "my-citus", &values(2, ""), &options).with_context(|| space.diagnose())?;
    space.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g",
    )?;
    for workers in [3, 4] {
        space.helm.upgrade(&chart, "my-citus", &values(workers, ""), &options).with_context(|| space.diagnose())?;
        space.sql("SELECT citus_rebalance_wait()")?;
    }
    let placements = "SELECT string_agg(nodename || ' ' || n, E'\\n' ORDER BY nodename)
                      FROM (SELECT nodename, count(*) AS n FROM citus_shards GROUP BY nodename) s";
    let before = space.sql(placements)?;
    ensure!(before.contains("my-citus-worker-3."), "the rebalance moved nothing onto worker 3:\n{before}");

    // Revision 4: the coordinator no longer starts; its post-upgrade hook gives up after its deadline.
    let broken = space.helm.upgrade(&chart, "my-citus", &values(4, "work_mem = 'not a size'"), &options);
    ensure!(broken.is_err(), "an upgrade that breaks the coordinator succeeded");

    // Helm waits for the drain hook, which waits for the coordinator to ask it what worker 3 holds.
    let impatient = ReleaseOptions { timeout_seconds: Some(60), ..ReleaseOptions::default() };
    let refused = space.helm.rollback("my-citus", Some(2), &impatient);
    let why = match refused {
        Ok(()) => bail!("the rollback to three workers went through with the coordinator down\n{}", space.diagnose()),
        Err(e) => e.to_string(),
    };
    ensure!(why.contains("my-citus-drain-workers-r2"), "the rollback failed elsewhere than in its drain hook: {why}");
    let replicas = space.jsonpath("statefulset/my-citus-worker", "{.spec.replicas}")?;
    ensure!(replicas == "4", "the worker StatefulSet has {replicas} replicas after the refused rollback");
    let drain_pods = space.jsonpath("pods", "{.items[*].metadata.name}")?;
    let drain_log: String = drain_pods
        .split_whitespace()
        .filter(|p| p.starts_with("my-citus-drain-workers-r2"))
        .filter_map(|p| space.agent.log(&space.ns, p).ok())
        .collect();
    ensure!(
        drain_log.contains("worker pod(s) my-citus-worker-3 would be deleted"),
        "the drain hook's log does not name worker 3:\n{drain_log}"
    );

    // The README's procedure: delete the refused drain's Job, roll back to the last good revision, and once the
    // good configuration is applied delete the crash-looping coordinator, which an OrderedReady StatefulSet
    // does not replace by itself.
    space.kubectl(&["delete", "job", "my-citus-drain-workers-r2"])?;
    std::thread::scope(|s| -> anyhow::Result<()> {
        let rollback = s.spawn(|| space.helm.rollback("my-citus", Some(3), &options));
        let deadline = Instant::now() + Duration::from_secs(60);
        while space.jsonpath("configmap/my-citus-config", "{.data.postgresql\\.conf}")?.contains("not a size") {
            ensure!(Instant::now() < deadline, "the rollback did not restore the configuration in 60 s");
            std::thread::sleep(Duration::from_millis(500));
        }
        space.kubectl(&["delete", "pod", util::COORDINATOR])?;
        let done = rollback.join().map_err(|_| anyhow::anyhow!("the rollback panicked"))?;
        done.with_context(|| space.diagnose())
    })?;
    let nodes = [util::COORDINATOR, "my-citus-worker-0", "my-citus-worker-1", "my-citus-worker-2", "my-citus-worker-3"];
    space.wait_ready(&nodes, Duration::from_secs(180))?;
    let after = space.sql(placements)?;
    ensure!(after == before, "placements moved:\nbefore:\n{before}\nafter:\n{after}");
    let count = space.sql("SELECT count(*) FROM items")?;
    ensure!(count == "1000", "rows after the rollbacks: {count}");
    Ok(())
}

/// A network cut on the node: the coordinator cannot reach the worker that a scale-out adds. The registration
/// hook fails the upgrade and its log names the worker; once the network heals, the same upgrade again
/// registers the worker and the rebalance moves shards onto it, every row still there.
fn a_scale_out_to_a_worker_the_coordinator_cannot_reach_fails_naming_it_and_the_retry_after_healing_registers_it(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-cut", None)?;
    let chart = util::chart_dir();
    let values = |workers: u32| {
        util::values(json!({"worker": {"replicaCount": workers}, "workerRegistration": {"activeDeadlineSeconds": 60}}))
    };
    let options = ReleaseOptions { timeout_seconds: Some(240), ..ReleaseOptions::default() };
    space.helm.install(&chart, "my-citus", &values(2), &options).with_context(|| space.diagnose())?;
    space.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g",
    )?;
    // The cut is in place before the pod exists: it applies when the StatefulSet creates it.
    space.agent.cut(&space.ns, util::COORDINATOR, "my-citus-worker-2")?;
    let impatient = ReleaseOptions { timeout_seconds: Some(90), ..ReleaseOptions::default() };
    match space.helm.upgrade(&chart, "my-citus", &values(3), &impatient) {
        Ok(_) => bail!("the scale-out went through although the coordinator cannot reach worker 2"),
        Err(e) => ensure!(e.to_string().contains("my-citus-register-workers"), "the upgrade failed elsewhere: {e}"),
    }
    let pods = space.jsonpath("pods", "{.items[*].metadata.name}")?;
    let log: String = pods
        .split_whitespace()
        .filter(|p| p.starts_with("my-citus-register-workers-"))
        .filter_map(|p| space.agent.log(&space.ns, p).ok())
        .collect();
    ensure!(
        log.contains("my-citus-worker-2.my-citus-worker-headless"),
        "the registration log does not name worker 2:\n{log}"
    );
    let registered = registered_workers(&space)?;
    ensure!(!registered.contains("my-citus-worker-2."), "worker 2 registered across the cut:\n{registered}");

    space.agent.heal(&space.ns, util::COORDINATOR, "my-citus-worker-2")?;
    space.helm.upgrade(&chart, "my-citus", &values(3), &options).with_context(|| space.diagnose())?;
    space.sql("SELECT citus_rebalance_wait()")?;
    let registered = registered_workers(&space)?;
    let want: Vec<String> = worker_names(&space.ns).into_iter().take(3).collect();
    ensure!(registered == want.join("\n"), "registered after healing:\n{registered}");
    let on_new = space.sql("SELECT count(*) FROM citus_shards WHERE nodename LIKE 'my-citus-worker-2.%'")?;
    ensure!(on_new != "0", "the rebalance moved nothing onto worker 2");
    let count = space.sql("SELECT count(*) FROM items")?;
    ensure!(count == "1000", "rows after the scale-out: {count}");
    Ok(())
}

/// `coordinator.serviceAccount.automountServiceAccountToken=true`: the ServiceAccount admission plugin adds the
/// projected `kube-api-access-*` volume; the pod reaches the API server at the `kubernetes` Service's address
/// with that token and is known there as its service account (which the chart grants nothing: 403).
fn a_pod_that_mounts_its_service_account_token_reaches_the_api_server_as_that_account(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-token", Some("restricted"))?;
    space.install(json!({"coordinator": {"serviceAccount": {"automountServiceAccountToken": true}}}))?;
    let account = space.jsonpath(&format!("pod/{}", util::COORDINATOR), "{.spec.serviceAccountName}")?;
    let script = r#"d=/var/run/secrets/kubernetes.io/serviceaccount
echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $(cat $d/namespace)"
curl -sS --max-time 10 --cacert $d/ca.crt -H "Authorization: Bearer $(cat $d/token)" \
  "https://kubernetes.default.svc/api/v1/namespaces/$(cat $d/namespace)/pods""#;
    let out = space.kubectl(&["exec", util::COORDINATOR, "--", "sh", "-c", script])?;
    let (first, answer) = out.split_once('\n').context("no output")?;
    ensure!(first == "10.96.0.1:443 node-token", "the kubernetes Service and namespace in the pod: {first:?}");
    let answer: Value = serde_json::from_str(answer).with_context(|| format!("the API server's answer: {answer}"))?;
    let message = answer["message"].as_str().unwrap_or_default();
    ensure!(
        answer["code"] == 403 && message.contains(&format!("system:serviceaccount:node-token:{account}")),
        "the API server did not know the pod as {account}: {answer}"
    );
    // The coordinator's Service answers at its virtual IP, forwarded to the coordinator once it is Ready.
    space.wait_ready(&[util::COORDINATOR], Duration::from_secs(60))?;
    let vip = space.jsonpath("service/my-citus-coordinator", "{.spec.clusterIP}")?;
    let lookup = space.kubectl(&["exec", "my-citus-worker-0", "--", "getent", "hosts", "my-citus-coordinator"])?;
    ensure!(
        lookup.split_whitespace().next() == Some(vip.as_str()),
        "my-citus-coordinator resolves to {lookup:?}, not {vip}"
    );
    let query = format!(
        "PGPASSWORD='{}' psql -X -w -tA -h my-citus-coordinator -U postgres -d citus -c 'SELECT inet_server_addr()'",
        util::POSTGRES_PASSWORD
    );
    // The endpoint reaches the proxy as it reaches kube-proxy: after the endpoints controller saw the pod Ready.
    let deadline = Instant::now() + Duration::from_secs(15);
    let served_by = loop {
        match space.kubectl(&["exec", "my-citus-worker-0", "--", "sh", "-c", &query]) {
            Ok(out) => break out,
            Err(e) if Instant::now() > deadline => return Err(e.context("through the coordinator's Service")),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let coordinator_ip = space.jsonpath(&format!("pod/{}", util::COORDINATOR), "{.status.podIP}")?;
    ensure!(served_by.trim() == coordinator_ip, "the Service's connection reached {served_by:?}, not {coordinator_ip}");

    // A worker keeps the chart's default: no token in it.
    let probe = "test -e /var/run/secrets/kubernetes.io/serviceaccount/token && echo token || echo none";
    let worker = space.kubectl(&["exec", "my-citus-worker-0", "--", "sh", "-c", probe])?;
    ensure!(worker.trim() == "none", "a worker without automount has a token: {worker}");
    Ok(())
}

/// The chart's scale-out on the real StatefulSet controller and Helm: the post-upgrade registration adds the
/// two new workers and starts one rebalance, which moves shards online while a writer inserts.
fn a_helm_upgrade_from_3_to_5_workers_under_a_writer_rebalances_online_and_keeps_every_acknowledged_row(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-scale-out", None)?;
    space.install(json!({}))?;
    space.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, 'seed' FROM generate_series(1000001, 1020000) g",
    )?;
    let holding = "SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'items'::regclass";
    ensure!(space.sql(holding)? == "3", "shards not on 3 workers");

    let writes = under_writer(&space, || {
        let options = ReleaseOptions { timeout_seconds: Some(600), ..ReleaseOptions::default() };
        let values = util::values(json!({"worker": {"replicaCount": 5}}));
        space
            .helm
            .upgrade(&util::chart_dir(), "my-citus", &values, &options)
            .map_err(anyhow::Error::from)
            .and_then(|_| space.sql("SELECT citus_rebalance_wait()"))
            .with_context(|| space.diagnose())?;
        Ok(())
    })?;
    let jobs = space.sql("SELECT count(*) FROM pg_dist_background_job WHERE job_type = 'rebalance'")?;
    ensure!(jobs == "1", "the registration started {jobs} rebalance job(s), expected 1");
    ensure!(space.sql(holding)? == "5", "after the rebalance the shards are not on all 5 workers");
    writes.assert_kept(&space, "in a scale-out from 3 to 5 workers")?;
    let seeded = space.sql("SELECT count(*) FROM items WHERE id > 1000000")?;
    ensure!(seeded == "20000", "seed rows after the rebalance: {seeded}");
    Ok(())
}

/// A `kubectl port-forward` that prints where it listens, stopped when dropped.
struct PortForward {
    child: std::process::Child,
    port: u16,
    /// kubectl's standard error, for a failure's message.
    stderr: std::path::PathBuf,
}

impl PortForward {
    /// `kubectl port-forward <target> :<remote> -n <ns>`: the README's command with a free local port. Its
    /// output goes to a file: it writes a line per connection, and a closed pipe would end it.
    fn start(space: &Space, target: &str, remote: u16) -> anyhow::Result<PortForward> {
        let output = |what: &str| space.plane.dir().join(format!("{}-port-forward.{what}", space.ns));
        let (stdout, stderr) = (output("stdout"), output("stderr"));
        let mut child = std::process::Command::new(space.plane.kubectl_path())
            .args(["port-forward", target, &format!(":{remote}"), "-n", &space.ns])
            .env("KUBECONFIG", space.plane.kubeconfig())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("running kubectl port-forward")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // "Forwarding from 127.0.0.1:40123 -> 5432"
            let printed = std::fs::read_to_string(&stdout).unwrap_or_default();
            let port = printed
                .lines()
                .find_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok());
            if let Some(port) = port {
                return Ok(PortForward { child, port, stderr });
            }
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "kubectl port-forward did not listen: {printed}{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host's psql through the forward as postgres; Ok(stdout) or the error with stderr.
    fn psql(&self, password: &str, sql: &str) -> anyhow::Result<String> {
        let out = std::process::Command::new("psql")
            .args(["-X", "-w", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string(), "-d", "citus", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .context("running psql")?;
        ensure!(
            out.status.success(),
            "psql through the port-forward: {}kubectl port-forward said: {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's "连接集群": the password read from `my-citus-secret`, `kubectl port-forward
/// svc/my-citus-coordinator 5432:5432`, psql as postgres on 127.0.0.1, and its SQL example. Real kubectl
/// tunnels SPDY through the API server to the node; several sessions at once, and one carrying megabytes
/// each way, share the forward.
fn the_readmes_kubectl_port_forward_to_the_coordinator_service_carries_concurrent_psql_sessions(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-port-forward", None)?;
    space.install(json!({}))?;
    let encoded = space.jsonpath("secret/my-citus-secret", "{.data.postgres-password}")?;
    let password = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim())?)?;
    ensure!(password == util::POSTGRES_PASSWORD, "my-citus-secret holds another postgres-password");
    let forward = PortForward::start(&space, "svc/my-citus-coordinator", 5432)?;
    forward.psql(
        &password,
        "CREATE TABLE events (id bigserial, device_id bigint, data jsonb, PRIMARY KEY (device_id, id));\n\
         SELECT create_distributed_table('events', 'device_id');",
    )?;
    std::thread::scope(|s| -> anyhow::Result<()> {
        let sessions: Vec<_> = (0..4)
            .map(|n| {
                let (forward, password) = (&forward, &password);
                s.spawn(move || {
                    forward.psql(
                        password,
                        &format!(
                            "INSERT INTO events (device_id, data) SELECT g % 16, jsonb_build_object('n', {n}, 'pad', \
                             repeat('x', 1000)) FROM generate_series(1, 2000) g"
                        ),
                    )
                })
            })
            .collect();
        for session in sessions {
            session.join().map_err(|_| anyhow::anyhow!("a psql session panicked"))??;
        }
        Ok(())
    })?;
    let counted = forward.psql(&password, "SELECT count(*), count(DISTINCT data->>'n') FROM events")?;
    ensure!(counted == "8000|4", "rows through the port-forward: {counted}");
    // About 8 MB back in one result: many SPDY frames, in order, as the coordinator's own socket gives it.
    let query = "SELECT string_agg(data::text, ',' ORDER BY device_id, id) FROM events";
    let (forwarded, local) = (forward.psql(&password, query)?, space.sql(query)?);
    ensure!(
        forwarded.len() > 8_000_000 && forwarded == local,
        "{} bytes through the port-forward, {} on the coordinator's socket, or not the same",
        forwarded.len(),
        local.len()
    );
    Ok(())
}
