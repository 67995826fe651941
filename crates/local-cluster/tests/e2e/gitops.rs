//! GitOps and passwords on the control plane: a first Argo CD-style sync (pre-upgrade hooks applied before
//! any object exists), renders that keep the Secret stable, and the README's two ways of rotating the
//! passwords (`helm upgrade` with new values, an edited existing Secret), each applied by the running nodes
//! without a restart, through the Secret volume the node updates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::{Helm, RenderOptions};
use k8s_objects::Document;
use serde_json::{json, Value};

use crate::util::{self, Env, COORDINATOR, COORDINATOR_SERVICE, SOCKET};
use testbed::{Space, NODES};

crate::scenarios!(Node: first_argo_sync_runs_the_pre_upgrade_hooks_before_the_secret_exists, password_rotation_through_the_secret_leaves_a_working_cluster, password_rotation_by_editing_an_existing_secret_leaves_a_working_cluster; Helm: renders_without_cluster_access_keep_given_passwords);

/// Where Argo CD puts a rendered object: its sync phase, from Helm's hook annotation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    PreSync,
    Sync,
    PostSync,
    /// Hooks Argo CD has no phase for (`helm test`, pre-rollback only, pre-delete).
    Skipped,
}

fn phase(doc: &Value) -> Phase {
    let Some(hooks) = doc.pointer("/metadata/annotations/helm.sh~1hook").and_then(Value::as_str) else {
        return Phase::Sync;
    };
    let has = |h: &str| hooks.split(',').any(|x| x.trim() == h);
    if has("pre-install") || has("pre-upgrade") {
        Phase::PreSync
    } else if has("post-install") || has("post-upgrade") {
        Phase::PostSync
    } else {
        Phase::Skipped
    }
}

/// Applies the objects of `phase` server-side, as Argo CD does; Jobs of a hook phase are deleted first, as
/// its `BeforeHookCreation` policy does. Returns the names of the phase's Jobs.
fn sync_phase(space: &Space, docs: &[Document], which: Phase) -> anyhow::Result<Vec<String>> {
    let objects: Vec<&Value> = docs.iter().map(|d| &d.value).filter(|v| phase(v) == which).collect();
    let jobs: Vec<String> = objects
        .iter()
        .filter(|v| v["kind"] == "Job")
        .filter_map(|v| v.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    if which != Phase::Sync {
        for job in &jobs {
            space.kubectl(&["delete", "job", job, "--ignore-not-found", "--wait=true"])?;
        }
    }
    let stream: String = objects.iter().map(|v| format!("---\n{}\n", v)).collect();
    space.kubectl_with_input(&["apply", "--server-side", "--field-manager=argocd", "-f", "-"], stream.as_bytes())?;
    Ok(jobs)
}

fn wait_complete(space: &Space, jobs: &[String]) -> anyhow::Result<()> {
    for job in jobs {
        space
            .kubectl(&["wait", "--for=condition=Complete", &format!("job/{job}"), "--timeout=300s"])
            .with_context(|| space.diagnose())?;
    }
    Ok(())
}

fn first_argo_sync_runs_the_pre_upgrade_hooks_before_the_secret_exists(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "gitops-first-sync", Some("restricted"))?;
    let options =
        RenderOptions { namespace: space.ns.clone(), kube_version: Some("v1.36.2".into()), ..RenderOptions::default() };
    let docs = Helm::discover()?.render(&util::chart_dir(), &util::values(json!({})), &options)?.documents()?;
    // Argo CD runs pre-install and pre-upgrade hooks alike as PreSync, before it applies anything.
    let started = Instant::now();
    let pre = sync_phase(&space, &docs, Phase::PreSync)?;
    ensure!(!pre.is_empty(), "the render has no PreSync Job");
    wait_complete(&space, &pre).context("the drain hook of a first sync failed")?;
    ensure!(started.elapsed() < Duration::from_secs(60), "the drain hook of a first sync took {:?}", started.elapsed());
    let log = space.job_logs("my-citus-drain-workers-r")?;
    ensure!(
        log.contains("no password Secret and no coordinator yet"),
        "the drain hook did not recognise a first sync:\n{log}"
    );

    // The objects, then PostSync: the registration.
    sync_phase(&space, &docs, Phase::Sync)?;
    let post = sync_phase(&space, &docs, Phase::PostSync)?;
    wait_complete(&space, &post)?;
    space.wait_ready(&NODES, util::READY)?;
    crate::citus_cluster::assert_registered(&space, 3)?;

    // A later sync: its drain hook removes nothing.
    let pre = sync_phase(&space, &docs, Phase::PreSync)?;
    wait_complete(&space, &pre)?;
    let log = space.job_logs("my-citus-drain-workers-r")?;
    ensure!(log.contains("no registered worker at ordinal 3 or above: nothing to drain"), "{log}");
    sync_phase(&space, &docs, Phase::Sync)?;
    crate::citus_cluster::assert_registered(&space, 3)?;
    Ok(())
}

fn renders_without_cluster_access_keep_given_passwords(_env: &Env) -> anyhow::Result<()> {
    let helm = Helm::discover()?;
    let render = |values: &Value, is_upgrade: bool| -> anyhow::Result<Vec<Document>> {
        let options = RenderOptions { is_upgrade, ..RenderOptions::default() };
        Ok(helm.render(&util::chart_dir(), values, &options)?.documents()?)
    };
    let secret_data = |docs: &[Document]| {
        docs.iter()
            .find(|d| d.value["kind"] == "Secret" && d.value["metadata"]["name"] == "my-citus-secret")
            .map(|d| d.value["data"].clone())
    };
    // Explicit passwords: every render (as Argo CD makes at every sync) carries the same Secret.
    let values = util::values(json!({}));
    let first = secret_data(&render(&values, false)?).context("no Secret")?;
    let again = secret_data(&render(&values, true)?).context("no Secret")?;
    ensure!(first == again, "the Secret changed between renders");
    // existingSecret: the chart renders no Secret at all, every pod and hook reads the named one.
    let existing = json!({"auth": {"existingSecret": "vault-synced", "postgresPassword": "", "password": ""}});
    let docs = render(&util::values(existing), true)?;
    ensure!(secret_data(&docs).is_none(), "a Secret is rendered although auth.existingSecret is set");
    let text = serde_json::to_string(&docs.iter().map(|d| &d.value).collect::<Vec<_>>())?;
    ensure!(text.contains("\"vault-synced\""), "nothing refers to the existing Secret");
    Ok(())
}

/// The three passwords the Secret holds with metrics enabled.
#[derive(Clone, Copy)]
struct Passwords<'a> {
    postgres: &'a str,
    app: &'a str,
    monitoring: &'a str,
}

impl<'a> Passwords<'a> {
    fn by_user(self) -> [(&'static str, &'a str); 3] {
        [("postgres", self.postgres), ("citus", self.app), (MONITORING_USER, self.monitoring)]
    }
}

const MONITORING_USER: &str = "citus_monitor";
/// The monitoring passwords hold every character the exporter's password file (and a connection string)
/// must escape: the exporter never parses them as part of a URL.
const OLD: Passwords =
    Passwords { postgres: util::POSTGRES_PASSWORD, app: util::APP_PASSWORD, monitoring: "mon 'old' \\pw:1" };
const NEW: Passwords =
    Passwords { postgres: "rotated:super\\2", app: "rotated app 'pw'", monitoring: "mon 'new' \\pw:2" };
/// How long a node may take to apply a changed Secret: the node's Secret refresh, the watcher's 10 s period
/// (README) and its 2 s check that the files settled, with margin for a loaded machine. (A kubelet's
/// propagation can take up to about a minute more; the node agent's takes 2 s.)
const SWITCH: Duration = Duration::from_secs(30);

/// What users turn on to debug or audit (review D5): every statement, its duration and Citus's commands to
/// other nodes in the server log. No password may reach a log for all that.
const LOG_EVERYTHING: &str =
    "log_min_duration_statement = 0\nlog_statement = 'all'\nlog_duration = on\ncitus.log_remote_commands = on";

/// The README's first way: `helm upgrade --reuse-values --set auth.postgresPassword=... --set auth.password=...`
/// (and `metrics.password`). The post-upgrade registration Job, which logs in to every node with the new
/// Secret, must pass, and no pod may restart; with every statement logged, no password reaches a log.
fn password_rotation_through_the_secret_leaves_a_working_cluster(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "gitops-rotate-values", None)?;
    // The exporter stand-in is Debian's 0.11.1: the tag says so (see the scrape scenario in harness.rs).
    let installed = json!({
        "metrics": {"enabled": true, "password": OLD.monitoring, "image": {"tag": "v0.11.1"}},
        "postgresql": {"extraConfiguration": LOG_EVERYTHING},
    });
    space.install(installed.clone())?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    crate::citus_cluster::load_tables(&space)?;
    let before = running_processes(&space)?;
    assert_exporters_scrape(&space)?;

    let mut rotated = installed;
    rotated["auth"] = json!({"postgresPassword": NEW.postgres, "password": NEW.app});
    rotated["metrics"]["password"] = json!(NEW.monitoring);
    let started = Instant::now();
    space.upgrade(rotated).context("helm upgrade with the new passwords (its registration Job)")?;
    let upgraded = started.elapsed();
    wait_for_passwords(&space, NEW, OLD)?;
    println!("upgrade with its hooks {upgraded:?}, every node on the new passwords after {:?}", started.elapsed());

    assert_rotated_in_place(&space, &before, NEW)?;
    assert_no_password_logged(&space, &[OLD, NEW])?;
    Ok(())
}

/// No password (as it is, or quoted as an SQL literal) in any pod's log or in the logs the scripts keep under
/// /tmp/citus in the node pods (the setup server's).
fn assert_no_password_logged(space: &Space, sets: &[Passwords]) -> anyhow::Result<()> {
    let mut logs = Vec::new();
    for pod in space.jsonpath("pods", "{.items[*].metadata.name}")?.split_whitespace() {
        logs.push((pod.to_owned(), space.agent.log(&space.ns, pod)?));
    }
    ensure!(
        logs.len() > NODES.len(),
        "no log of a Job's pod among {:?}",
        logs.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
    for pod in NODES {
        let out = space.shell(pod, "cat /tmp/citus/*.log 2>/dev/null || true")?;
        logs.push((format!("{pod}:/tmp/citus/*.log"), out));
    }
    for set in sets {
        for (user, password) in set.by_user() {
            for needle in [password.to_owned(), password.replace('\'', "''")] {
                for (name, text) in &logs {
                    if let Some(line) = text.lines().find(|l| l.contains(needle.as_str())) {
                        bail!("the password of {user} is in {name}: {line}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// The README's second way: with `auth.existingSecret`, edit that Secret (`kubectl edit secret`); here with
/// `auth.usePasswordFiles`, the other way the nodes read their passwords at start.
fn password_rotation_by_editing_an_existing_secret_leaves_a_working_cluster(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "gitops-rotate-secret", None)?;
    let secret = "citus-credentials";
    let object = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret},
        "stringData": {"postgres-password": OLD.postgres, "password": OLD.app, "monitoring-password": OLD.monitoring},
    });
    space.kubectl_with_input(&["apply", "-f", "-"], object.to_string().as_bytes())?;
    let values = json!({
        "auth": {"existingSecret": secret, "usePasswordFiles": true},
        "metrics": {"enabled": true, "image": {"tag": "v0.11.1"}},
    });
    space.install_values(&values)?;
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    crate::citus_cluster::load_tables(&space)?;
    let before = running_processes(&space)?;
    assert_exporters_scrape(&space)?;

    let started = Instant::now();
    let patch = json!({"stringData": {"postgres-password": NEW.postgres, "password": NEW.app, "monitoring-password": NEW.monitoring}});
    space.kubectl(&["patch", "secret", secret, "--type=merge", "-p", &patch.to_string()])?;
    wait_for_passwords(&space, NEW, OLD)?;
    let switched = started.elapsed();
    ensure!(switched <= SWITCH, "the nodes took {switched:?} to apply the edited Secret (at most {SWITCH:?})");
    println!("every node on the new passwords {switched:?} after the Secret was edited");

    assert_rotated_in_place(&space, &before, NEW)?;
    // The chart's Jobs read the edited Secret: the registration Job of the next upgrade logs in with it.
    space.upgrade_values(&values).context("an upgrade after the rotation (its registration Job)")?;
    Ok(())
}

/// The node pods and the names they are registered under.
fn node_hosts(space: &Space) -> Vec<(&'static str, String)> {
    NODES
        .iter()
        .map(|pod| {
            let host = match pod.strip_prefix("my-citus-worker-").and_then(|n| n.parse().ok()) {
                Some(n) => util::worker_host(&space.ns, n),
                None => util::coordinator_host(&space.ns),
            };
            (*pod, host)
        })
        .collect()
}

/// Per node pod: the postmaster's PID (first line of postmaster.pid) and the restarts of every container.
type Processes = BTreeMap<String, (String, String)>;

fn running_processes(space: &Space) -> anyhow::Result<Processes> {
    let mut out = BTreeMap::new();
    for pod in NODES {
        let pid = space.shell(pod, "head -n 1 \"$PGDATA/postmaster.pid\"")?;
        let pid = pid.trim().to_owned();
        ensure!(pid.parse::<u32>().is_ok(), "{pod}: postmaster.pid starts with {pid:?}");
        let restarts = space
            .jsonpath(&format!("pod/{pod}"), "{range .status.containerStatuses[*]}{.name}={.restartCount} {end}")?;
        out.insert(pod.to_owned(), (pid, restarts));
    }
    Ok(out)
}

/// Waits until every node accepts `new` for all three users, then checks that each refuses `old`.
fn wait_for_passwords(space: &Space, new: Passwords, old: Passwords) -> anyhow::Result<()> {
    let hosts = node_hosts(space);
    let deadline = Instant::now() + SWITCH;
    'wait: loop {
        for (pod, host) in &hosts {
            for (user, password) in new.by_user() {
                let login = util::tcp(host, user, password);
                if util::try_psql(space, COORDINATOR, &login, "SELECT 1")?.is_err() {
                    ensure!(Instant::now() < deadline, "still refused after {SWITCH:?}: {user} on {pod}");
                    std::thread::sleep(Duration::from_millis(500));
                    continue 'wait;
                }
            }
        }
        break;
    }
    for (pod, host) in &hosts {
        for (user, password) in old.by_user() {
            let refused = util::try_psql(space, COORDINATOR, &util::tcp(host, user, password), "SELECT 1")?;
            ensure!(refused.is_err(), "{user} still logs in to {pod} with the old password");
        }
    }
    Ok(())
}

/// After a rotation: nothing restarted, each node's watcher logged both changes once, the nodes' own
/// connections to each other work (distributed query and DDL), and every exporter logs in again.
fn assert_rotated_in_place(space: &Space, before: &Processes, new: Passwords) -> anyhow::Result<()> {
    let after = running_processes(space)?;
    ensure!(&after == before, "pods restarted during the rotation:\nbefore {before:?}\nafter  {after:?}");
    for pod in before.keys() {
        let log = space.agent.log(&space.ns, pod)?;
        for line in [
            "the Secret's passwords changed: applied to this node's roles and to its connections to the other nodes",
            "the Secret's monitoring password changed: applied to role citus_monitor",
        ] {
            let seen = log.matches(line).count();
            ensure!(seen == 1, "{pod}: the watcher's line {line:?} appears {seen} times in its log");
        }
    }
    // Distributed queries and metadata changes need the nodes' own connections to each other.
    let app = util::tcp(COORDINATOR_SERVICE, "citus", new.app);
    let got = util::psql(space, COORDINATOR, &app, "SELECT count(*) FROM events JOIN kinds USING (kind)")?;
    ensure!(got == crate::citus_cluster::ROWS.to_string(), "join after rotation: {got}");
    util::psql(
        space,
        COORDINATOR,
        &app,
        "CREATE TABLE after_rotation (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('after_rotation', 'id') \\g /dev/null\n\
         INSERT INTO after_rotation SELECT generate_series(1, 100);\n\
         ALTER TABLE after_rotation ADD COLUMN note text;",
    )?;
    let spread =
        space.sql("SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'after_rotation'::regclass")?;
    ensure!(spread == "3", "after_rotation on {spread} workers");
    // The exporters still hold the sessions they opened with the old password: end them, so that `pg_up 1`
    // proves a new login with the rotated one.
    for pod in NODES {
        let ended = util::psql(
            space,
            pod,
            &SOCKET,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{MONITORING_USER}'"
            ),
        )?;
        ensure!(ended != "0", "{pod}: the exporter had no session to end");
    }
    assert_exporters_scrape(space)
}

/// Every node's exporter reports `pg_up 1` (within a minute: a scrape right after its connection ended may
/// report the failure once), and the coordinator's scrape, whose Citus queries reach the workers as the
/// monitoring role, reports no error.
fn assert_exporters_scrape(space: &Space) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    'wait: loop {
        for pod in NODES {
            let body = space.http_get(pod, 9187, "/metrics").unwrap_or_default();
            let up = body.lines().any(|l| l.trim() == "pg_up 1");
            let clean = pod != COORDINATOR
                || body.lines().any(|l| l.starts_with("pg_exporter_last_scrape_error") && l.ends_with(" 0"));
            if !(up && clean) {
                let lines: Vec<&str> =
                    body.lines().filter(|l| l.starts_with("pg_up") || l.contains("scrape_error")).collect();
                ensure!(
                    Instant::now() < deadline,
                    "pg_up 1 from every exporter: not after 60 s: {pod}: {}",
                    lines.join("; ")
                );
                std::thread::sleep(Duration::from_secs(1));
                continue 'wait;
            }
        }
        return Ok(());
    }
}
