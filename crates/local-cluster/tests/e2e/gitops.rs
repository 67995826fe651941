//! GitOps and passwords: a first Argo CD-style sync (pre-upgrade hooks before any object exists), renders
//! that keep the Secret stable, and the README's two ways of rotating the passwords (`helm upgrade` with new
//! values, an edited existing Secret), each applied by the running nodes without a restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use local_cluster::{Cluster, HookEvent};
use serde_json::json;

use crate::scaling::job_logs;
use crate::util::Env;
use crate::util::{self, COORDINATOR, COORDINATOR_SERVICE, SOCKET};

crate::scenarios!(Citus: first_argo_sync_runs_the_pre_upgrade_hooks_before_the_secret_exists, password_rotation_through_the_secret_leaves_a_working_cluster, password_rotation_by_editing_an_existing_secret_leaves_a_working_cluster; Postgres: renders_without_cluster_access_keep_given_passwords);

fn first_argo_sync_runs_the_pre_upgrade_hooks_before_the_secret_exists(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let values = util::values(json!({}));
    // Argo CD runs pre-install and pre-upgrade hooks alike as PreSync, before it applies anything.
    let manifest = cluster.render(&values, true)?;
    let started = std::time::Instant::now();
    cluster.run_hooks(&manifest, HookEvent::PreUpgrade).context("the drain hook of a first sync failed")?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the drain hook of a first sync took {:?}",
        started.elapsed()
    );
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(
        log.contains("no password Secret and no coordinator yet"),
        "the drain hook did not recognise a first sync:\n{log}"
    );

    // The same release then installs and registers, and a later sync's drain hook removes nothing.
    cluster.install(&values)?;
    cluster.wait_all_ready(util::READY)?;
    crate::citus_cluster::assert_registered(&cluster, 3)?;
    cluster.upgrade(&values)?;
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(log.contains("no registered worker at ordinal 3 or above: nothing to drain"), "{log}");
    crate::citus_cluster::assert_registered(&cluster, 3)?;
    Ok(())
}

fn renders_without_cluster_access_keep_given_passwords(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let secret_data =
        |m: &local_cluster::Manifest| m.get("Secret", "my-citus-secret").and_then(|s| s.get("data")).cloned();
    // Explicit passwords: every render (as Argo CD makes at every sync) carries the same Secret.
    let values = util::values(json!({}));
    let first = secret_data(&cluster.render(&values, false)?).context("no Secret")?;
    let again = secret_data(&cluster.render(&values, true)?).context("no Secret")?;
    ensure!(first == again, "the Secret changed between renders");
    // existingSecret: the chart renders no Secret at all, every pod and hook reads the named one.
    let existing = json!({"auth": {"existingSecret": "vault-synced", "postgresPassword": "", "password": ""}});
    let manifest = cluster.render(&util::values(existing), true)?;
    ensure!(secret_data(&manifest).is_none(), "a Secret is rendered although auth.existingSecret is set");
    let text = serde_json::to_string(manifest.documents())?;
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
/// How long a node may take to apply a changed Secret file: the watcher's 10 s period (README), with margin
/// for a loaded machine. The kubelet's propagation (up to about a minute on Kubernetes) is instant here.
const SWITCH: Duration = Duration::from_secs(30);

/// What users turn on to debug or audit (review D5): every statement, its duration and Citus's commands to
/// other nodes in the server log. No password may reach a log for all that.
const LOG_EVERYTHING: &str =
    "log_min_duration_statement = 0\nlog_statement = 'all'\nlog_duration = on\ncitus.log_remote_commands = on";

/// The README's first way: `helm upgrade --reuse-values --set auth.postgresPassword=... --set auth.password=...`
/// (and `metrics.password`). The post-upgrade registration Job, which logs in to every node with the new
/// Secret, must pass, and no pod may restart; with every statement logged, no password reaches a log.
fn password_rotation_through_the_secret_leaves_a_working_cluster(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    // The exporter stand-in is Debian's 0.11.1: the tag says so (see the scrape scenario in harness.rs).
    let installed = util::values(json!({
        "metrics": {"enabled": true, "password": OLD.monitoring, "image": {"tag": "v0.11.1"}},
        "postgresql": {"extraConfiguration": LOG_EVERYTHING},
    }));
    cluster.install(&installed)?;
    cluster.wait_all_ready(util::READY)?;
    crate::citus_cluster::load_tables(&cluster)?;
    let before = running_processes(&cluster)?;
    assert_exporters_scrape(&mut cluster)?;

    let mut rotated = installed;
    rotated["auth"]["postgresPassword"] = json!(NEW.postgres);
    rotated["auth"]["password"] = json!(NEW.app);
    rotated["metrics"]["password"] = json!(NEW.monitoring);
    let started = Instant::now();
    cluster.upgrade(&rotated).context("helm upgrade with the new passwords (its registration Job)")?;
    let upgraded = started.elapsed();
    wait_for_passwords(&mut cluster, NEW, OLD)?;
    println!("upgrade with its hooks {upgraded:?}, every node on the new passwords after {:?}", started.elapsed());

    assert_rotated_in_place(&mut cluster, &before, NEW)?;
    assert_no_password_logged(&cluster, &[OLD, NEW])?;
    Ok(())
}

/// No password (as it is, or quoted as an SQL literal) in any pod's log or in the logs the scripts keep under
/// /tmp/citus in the node pods (the setup server's).
fn assert_no_password_logged(cluster: &Cluster, sets: &[Passwords]) -> anyhow::Result<()> {
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(cluster.dir().join("logs"))? {
        let path = entry?.path();
        logs.push((path.display().to_string(), std::fs::read_to_string(&path)?));
    }
    for (pod, _) in node_hosts(cluster)? {
        let out = cluster.exec(&pod, &["sh", "-c", "cat /tmp/citus/*.log 2>/dev/null || true"], &[], None)?;
        logs.push((format!("{pod}:/tmp/citus/*.log"), out.stdout));
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
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let secret = "citus-credentials";
    cluster.add_object(&json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret, "namespace": "citus"},
        "stringData": {"postgres-password": OLD.postgres, "password": OLD.app, "monitoring-password": OLD.monitoring},
    }))?;
    let values = json!({
        "auth": {"existingSecret": secret, "usePasswordFiles": true},
        "metrics": {"enabled": true, "image": {"tag": "v0.11.1"}},
    });
    cluster.install(&values)?;
    cluster.wait_all_ready(util::READY)?;
    crate::citus_cluster::load_tables(&cluster)?;
    let before = running_processes(&cluster)?;
    assert_exporters_scrape(&mut cluster)?;

    let started = Instant::now();
    cluster.set_secret_values(
        secret,
        &[("postgres-password", NEW.postgres), ("password", NEW.app), ("monitoring-password", NEW.monitoring)],
    )?;
    wait_for_passwords(&mut cluster, NEW, OLD)?;
    let switched = started.elapsed();
    ensure!(switched <= SWITCH, "the nodes took {switched:?} to apply the edited Secret (at most {SWITCH:?})");
    println!("every node on the new passwords {switched:?} after the Secret was edited");

    assert_rotated_in_place(&mut cluster, &before, NEW)?;
    // The chart's Jobs read the edited Secret: the registration Job of the next upgrade logs in with it.
    cluster.upgrade(&values).context("an upgrade after the rotation (its registration Job)")?;
    Ok(())
}

/// The node pods and their FQDNs.
fn node_hosts(cluster: &Cluster) -> anyhow::Result<Vec<(String, String)>> {
    cluster
        .pod_names()
        .into_iter()
        .filter(|p| p.starts_with("my-citus-coordinator-") || p.starts_with("my-citus-worker-"))
        .map(|pod| {
            let host = if pod == COORDINATOR {
                util::COORDINATOR_FQDN.to_owned()
            } else {
                util::worker_fqdn(pod.trim_start_matches("my-citus-worker-").parse()?)
            };
            Ok((pod, host))
        })
        .collect()
}

/// Per node pod: the postmaster's PID (first line of postmaster.pid) and the restarts of every container.
type Processes = BTreeMap<String, (String, BTreeMap<String, u32>)>;

fn running_processes(cluster: &Cluster) -> anyhow::Result<Processes> {
    let mut out = BTreeMap::new();
    for (pod, _) in node_hosts(cluster)? {
        let pid = cluster.exec(&pod, &["sh", "-c", "head -n 1 \"$PGDATA/postmaster.pid\""], &[], None)?;
        let pid = pid.stdout.trim().to_owned();
        ensure!(pid.parse::<u32>().is_ok(), "{pod}: postmaster.pid starts with {pid:?}");
        out.insert(pod.clone(), (pid, cluster.pod(&pod)?.restarts()));
    }
    ensure!(out.len() == 4, "expected the coordinator and 3 workers, found {:?}", out.keys());
    Ok(out)
}

/// Runs the cluster until every node accepts `new` for all three users, then checks that each refuses `old`.
fn wait_for_passwords(cluster: &mut Cluster, new: Passwords, old: Passwords) -> anyhow::Result<()> {
    let hosts = node_hosts(cluster)?;
    let mut pending = String::new();
    let waited = cluster.wait_for("every node accepting the new passwords", SWITCH, |c| {
        for (pod, host) in &hosts {
            for (user, password) in new.by_user() {
                let login = util::tcp(host, user, password);
                if util::try_psql(c, COORDINATOR, &login, "SELECT 1").map_err(to_harness)?.is_err() {
                    pending = format!("{user} on {pod}");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    });
    waited.with_context(|| format!("still refused: {pending}"))?;
    for (pod, host) in &hosts {
        for (user, password) in old.by_user() {
            let refused = util::try_psql(cluster, COORDINATOR, &util::tcp(host, user, password), "SELECT 1")?;
            ensure!(refused.is_err(), "{user} still logs in to {pod} with the old password");
        }
    }
    Ok(())
}

fn to_harness(e: anyhow::Error) -> local_cluster::Error {
    local_cluster::Error::Manifest(format!("{e:#}"))
}

/// After a rotation: nothing restarted, each node's watcher logged both changes once, the nodes' own
/// connections to each other work (distributed query and DDL), and every exporter logs in again.
fn assert_rotated_in_place(cluster: &mut Cluster, before: &Processes, new: Passwords) -> anyhow::Result<()> {
    let after = running_processes(cluster)?;
    ensure!(&after == before, "pods restarted during the rotation:\nbefore {before:?}\nafter  {after:?}");
    for pod in before.keys() {
        let log = cluster.logs(pod)?;
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
    let got = util::psql(cluster, COORDINATOR, &app, "SELECT count(*) FROM events JOIN kinds USING (kind)")?;
    ensure!(got == crate::citus_cluster::ROWS.to_string(), "join after rotation: {got}");
    util::psql(
        cluster,
        COORDINATOR,
        &app,
        "CREATE TABLE after_rotation (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('after_rotation', 'id') \\g /dev/null\n\
         INSERT INTO after_rotation SELECT generate_series(1, 100);\n\
         ALTER TABLE after_rotation ADD COLUMN note text;",
    )?;
    let spread = util::psql(
        cluster,
        COORDINATOR,
        &SOCKET,
        "SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'after_rotation'::regclass",
    )?;
    ensure!(spread == "3", "after_rotation on {spread} workers");
    // The exporters still hold the sessions they opened with the old password: end them, so that `pg_up 1`
    // proves a new login with the rotated one.
    for (pod, _) in node_hosts(cluster)? {
        let ended = util::psql(
            cluster,
            &pod,
            &SOCKET,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{MONITORING_USER}'"
            ),
        )?;
        ensure!(ended != "0", "{pod}: the exporter had no session to end");
    }
    assert_exporters_scrape(cluster)
}

/// Every node's exporter reports `pg_up 1` (within a minute: a scrape right after its connection ended may
/// report the failure once), and the coordinator's scrape, whose Citus queries reach the workers as the
/// monitoring role, reports no error.
fn assert_exporters_scrape(cluster: &mut Cluster) -> anyhow::Result<()> {
    let pods: Vec<String> = node_hosts(cluster)?.into_iter().map(|(pod, _)| pod).collect();
    let mut last = BTreeMap::new();
    let waited = cluster.wait_for("pg_up 1 from every exporter", Duration::from_secs(60), |c| {
        for pod in &pods {
            let (status, body) = c.http_get(pod, 9187, "/metrics")?;
            let up = status == 200 && body.lines().any(|l| l.trim() == "pg_up 1");
            let clean = pod != COORDINATOR
                || body.lines().any(|l| l.starts_with("pg_exporter_last_scrape_error") && l.ends_with(" 0"));
            if !(up && clean) {
                last.insert(pod.clone(), body);
                return Ok(false);
            }
        }
        Ok(true)
    });
    if let Err(e) = waited {
        let detail: Vec<String> = last
            .iter()
            .map(|(pod, body)| {
                let lines: Vec<&str> =
                    body.lines().filter(|l| l.starts_with("pg_up") || l.contains("scrape_error")).collect();
                format!("{pod}: {}", lines.join("; "))
            })
            .collect();
        bail!("{e}: {}", detail.join("\n"));
    }
    Ok(())
}
