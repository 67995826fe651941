//! The chart on a real control plane with this machine as its node (issue 16): Helm installs through the API
//! server, the StatefulSet and Job controllers, the scheduler and the PV controller do their part, and the node
//! agent runs the pods with real PostgreSQL and Citus and reports them back. Each scenario has a namespace.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use control_plane::ControlPlane;
use helm_engine::{Helm, ReleaseOptions};
use local_cluster::agent::{NodeAgent, STORAGE_CLASS};
use serde_json::json;

use crate::util::{self, Env};

crate::scenarios!(Node: helm_install_on_a_real_control_plane_registers_every_worker_and_uninstall_stops_every_pod);

/// SQL as postgres over the coordinator's socket; stdout, or the error naming stderr.
fn sql(agent: &NodeAgent, ns: &str, sql: &str) -> anyhow::Result<String> {
    let argv = [
        "psql",
        "-X",
        "-w",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "/var/run/postgresql",
        "-U",
        "postgres",
        "-d",
        "citus",
        "-f",
        "-",
    ];
    let out = agent.exec(ns, util::COORDINATOR, None, &argv, Some(sql.as_bytes()), Duration::from_secs(120))?;
    ensure!(out.status.success(), "psql in {ns}/{} failed: {}\nSQL: {sql}", util::COORDINATOR, out.stderr);
    Ok(out.stdout.trim().to_owned())
}

/// What the API server and the agent say of a namespace, for a failure's message.
fn diagnose(plane: &ControlPlane, agent: &NodeAgent, ns: &str) -> String {
    let get = |args: &[&str]| match plane.kubectl(args, None) {
        Ok((out, _)) => out,
        Err(e) => e.to_string(),
    };
    let mut text = format!(
        "objects:\n{}\nevents:\n{}\nlast agent error: {}\n",
        get(&["get", "pods,pvc,jobs,statefulsets", "-n", ns, "-o", "wide"]),
        get(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]),
        agent.last_error().unwrap_or_else(|| "none".into())
    );
    for pod in get(&["get", "pods", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}"]).split_whitespace() {
        if let Ok(log) = agent.log(ns, pod) {
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!("--- {pod} ---\n{}\n", lines[lines.len().saturating_sub(15)..].join("\n")));
        }
    }
    text
}

fn jsonpath(plane: &ControlPlane, ns: &str, what: &str, path: &str) -> anyhow::Result<String> {
    Ok(plane.kubectl(&["get", what, "-n", ns, "-o", &format!("jsonpath={path}")], None)?.0)
}

fn helm_install_on_a_real_control_plane_registers_every_worker_and_uninstall_stops_every_pod(
    env: &Env,
) -> anyhow::Result<()> {
    let plane = util::control_plane()?;
    let agent = util::node_agent(env)?;
    let ns = "node-install";
    plane.kubectl(&["create", "namespace", ns], None)?;
    let releases = Helm::discover()?.releases(&plane.kubeconfig(), ns)?;
    let options = ReleaseOptions { timeout_seconds: Some(600), ..ReleaseOptions::default() };
    // Helm returns once the post-install registration Job has completed on the node.
    releases
        .install(&util::chart_dir(), "my-citus", &util::values(json!({})), &options)
        .with_context(|| diagnose(plane, agent, ns))?;

    let fqdn = |pod: &str, svc: &str| format!("{pod}.{svc}.{ns}.svc.cluster.local");
    let workers = sql(agent, ns, "SELECT nodename FROM pg_dist_node WHERE groupid > 0 AND isactive ORDER BY 1")?;
    // The chart's default: three workers.
    let want: Vec<String> = (0..3).map(|n| fqdn(&format!("my-citus-worker-{n}"), "my-citus-worker-headless")).collect();
    ensure!(workers == want.join("\n"), "registered workers:\n{workers}\nwanted:\n{}", want.join("\n"));
    let spread = sql(
        agent,
        ns,
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g;
         SELECT (SELECT count(*) FROM items) || ' ' ||
                (SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'items'::regclass)",
    )?;
    ensure!(spread == "1000 3", "rows and workers holding shards: {spread}");

    // The API server's view, as the agent reported it: every pod Running and Ready (once its readiness probe's
    // initial delay has passed), with its address; every claim Bound to a volume of the agent's StorageClass.
    let nodes = [util::COORDINATOR, "my-citus-worker-0", "my-citus-worker-1", "my-citus-worker-2"];
    let wait: Vec<String> = ["wait", "-n", ns, "--for=condition=Ready", "--timeout=60s"]
        .into_iter()
        .map(str::to_owned)
        .chain(nodes.iter().map(|p| format!("pod/{p}")))
        .collect();
    plane
        .kubectl(&wait.iter().map(String::as_str).collect::<Vec<_>>(), None)
        .with_context(|| diagnose(plane, agent, ns))?;
    let pods = jsonpath(
        plane,
        ns,
        "pods",
        "{range .items[*]}{.metadata.name}={.status.phase},{.status.conditions[?(@.type==\"Ready\")].status},{.status.podIP}{\"\\n\"}{end}",
    )?;
    for pod in nodes {
        let line = pods
            .lines()
            .find(|l| l.starts_with(&format!("{pod}=")))
            .with_context(|| format!("no pod {pod}:\n{pods}"))?;
        ensure!(line.contains("=Running,True,10."), "pod {pod} as reported: {line}");
    }
    let claims = jsonpath(
        plane,
        ns,
        "pvc",
        "{range .items[*]}{.metadata.name}={.status.phase},{.spec.storageClassName}{\"\\n\"}{end}",
    )?;
    ensure!(
        claims.lines().count() == 4 && claims.lines().all(|l| l.ends_with(&format!("=Bound,{STORAGE_CLASS}"))),
        "claims:\n{claims}"
    );

    // Uninstall: every pod of the release gets its stop signal and grace period on the node, then leaves the
    // API server. Helm leaves hook objects: the registration Job stays for its TTL, and the README's command
    // removes it and its pod.
    releases.uninstall("my-citus")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = jsonpath(plane, ns, "pods", "{.items[*].metadata.name}")?;
        let left: Vec<&str> =
            left.split_whitespace().filter(|p| !p.starts_with("my-citus-register-workers-")).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("pods left 120 s after uninstall: {left:?}\n{}", diagnose(plane, agent, ns));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let jobs = jsonpath(plane, ns, "jobs", "{.items[*].metadata.name}")?;
    ensure!(jobs == "my-citus-register-workers", "jobs after uninstall: {jobs}");
    plane.kubectl(
        &["delete", "jobs,pods", "-l", "app.kubernetes.io/instance=my-citus", "-n", ns, "--wait=true"],
        None,
    )?;
    let left = jsonpath(plane, ns, "jobs,pods", "{.items[*].metadata.name}")?;
    ensure!(left.trim().is_empty(), "left after the README's delete: {left}");
    let kept = jsonpath(plane, ns, "pvc", "{.items[*].status.phase}")?;
    ensure!(kept == "Bound Bound Bound Bound", "claims after uninstall: {kept}");
    plane.kubectl(&["delete", "namespace", ns, "--wait=false"], None)?;
    Ok(())
}
