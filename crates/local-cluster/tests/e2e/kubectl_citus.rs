//! `kubectl citus` in cluster mode against a release on the real control plane (issue 16): kubectl finds the
//! plugin on PATH, the plugin reads the release's Secret, forwards a port to the coordinator through the API
//! server and the node agent's kubelet API, and runs its Jobs on the node.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

use testbed::Space;

use crate::node_agent::worker_names;
use crate::util::{self, Env};

crate::scenarios!(Node:
    kubectl_citus_in_cluster_mode_reports_drains_rebalances_backs_up_lists_and_writes_a_report_for_a_release);

/// The directory of the `kubectl-citus` that `cargo test --workspace` built next to this test.
fn plugin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-<hash> -> target/<profile>
    let dir = exe.parent().and_then(|deps| deps.parent()).context("the test binary's directory")?.to_owned();
    ensure!(
        dir.join("kubectl-citus").is_file(),
        "no kubectl-citus in {}: build it first (cargo build -p kubectl-citus), as cargo test --workspace does",
        dir.display()
    );
    Ok(dir)
}

/// The outcome of `kubectl citus <args>` in the space's namespace for release my-citus.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn kubectl_citus(space: &Space, plugins: &Path, args: &[&str]) -> anyhow::Result<Run> {
    let path = std::env::join_paths(
        std::iter::once(plugins.to_owned()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let out = Command::new(space.plane.kubectl_path())
        .args(["citus", "--release", "my-citus", "-n", &space.ns])
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", space.plane.kubeconfig())
        .output()
        .context("running kubectl citus")?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `kubectl citus <args> -o json`, which must succeed (or, for doctor, find hazards: exit 1).
fn json_of(space: &Space, plugins: &Path, args: &[&str], codes: &[i32]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let run = kubectl_citus(space, plugins, &all)?;
    ensure!(
        codes.contains(&run.code),
        "kubectl citus {} exited {}:\n{}{}",
        all.join(" "),
        run.code,
        run.stdout,
        run.stderr
    );
    serde_json::from_str(&run.stdout)
        .with_context(|| format!("kubectl citus {} printed no JSON:\n{}{}", all.join(" "), run.stdout, run.stderr))
}

fn kubectl_citus_in_cluster_mode_reports_drains_rebalances_backs_up_lists_and_writes_a_report_for_a_release(
    env: &Env,
) -> anyhow::Result<()> {
    let plugins = plugin_dir()?;
    let space = Space::create(env.postgres()?, "node-plugin", None)?;
    space.install(json!({"backup": {"enabled": true}}))?;
    space.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, v text); SELECT create_distributed_table('items', 'id');
         INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g;",
    )?;
    let ns = space.ns.clone();
    let workers = worker_names(&ns);

    // status: every node, reached through a port-forward to the coordinator, and every worker pod registered.
    let status = json_of(&space, &plugins, &["status"], &[0])?;
    let nodes = status["nodes"].as_array().context("status without nodes")?;
    let names: Vec<&str> = nodes.iter().filter(|n| n["role"] == "worker").filter_map(|n| n["name"].as_str()).collect();
    ensure!(names == workers, "workers in status: {names:?}\n{status:#}");
    ensure!(nodes.iter().all(|n| n["reachable"] != false), "an unreachable node in status:\n{status:#}");
    ensure!(status["shards"]["total"].as_i64().unwrap_or(0) > 0, "shards in status:\n{status:#}");
    ensure!(
        status["pods"] == json!({"unregistered_pods": [], "nodes_without_pod": []}),
        "pods against pg_dist_node:\n{status:#}"
    );

    // doctor: runs every check, the pod checks included (they need the API server).
    let doctor = json_of(&space, &plugins, &["doctor"], &[0, 1])?;
    let checks = doctor["checks"].as_array().context("doctor without checks")?;
    ensure!(checks.len() >= 5, "doctor ran only {checks:?}");

    // psql: the host's psql through the plugin's port-forward, with the release's password.
    let psql = kubectl_citus(&space, &plugins, &["psql", "--", "-tAc", "SELECT count(*) FROM items"])?;
    ensure!(psql.code == 0 && psql.stdout.trim() == "1000", "kubectl citus psql: {}\n{}", psql.stdout, psql.stderr);

    // drain a worker by its pod name, then a rebalance: the drained worker keeps nothing, no row is lost.
    let drain = kubectl_citus(&space, &plugins, &["drain", "my-citus-worker-2", "--wait"])?;
    ensure!(drain.code == 0, "kubectl citus drain: {}\n{}", drain.stdout, drain.stderr);
    let rebalance = kubectl_citus(&space, &plugins, &["rebalance", "--wait"])?;
    ensure!(rebalance.code == 0, "kubectl citus rebalance: {}\n{}", rebalance.stdout, rebalance.stderr);
    let left = space.sql(&format!(
        "SELECT (SELECT count(*) FROM citus_shards WHERE nodename = '{}') || ' ' || (SELECT count(*) FROM items)",
        workers[2]
    ))?;
    ensure!(left == "0 1000", "shards left on the drained worker and rows: {left}");

    // backup now: a Job from the release's CronJob runs on the node; backup list reads the backup volume.
    let backup = kubectl_citus(&space, &plugins, &["backup", "now", "--wait", "--timeout", "300"])?;
    ensure!(backup.code == 0, "kubectl citus backup now: {}\n{}\n{}", backup.stdout, backup.stderr, space.diagnose());
    let list = json_of(&space, &plugins, &["backup", "list", "--timeout", "120"], &[0])?;
    let backups = list["backups"].as_array().context("backup list without backups")?;
    ensure!(
        backups.len() == 1 && backups[0]["complete"] == true && backups[0]["bytes"].as_i64().unwrap_or(0) > 0,
        "backups listed after one backup:\n{list:#}"
    );
    ensure!(list["claim"] == "my-citus-backup", "the backup claim: {list:#}");

    // report: a zip with the release's manifests and the pods' logs (read through the kubelet API).
    let zip = space.plane.dir().join(format!("{ns}-report.zip"));
    let report = kubectl_citus(&space, &plugins, &["report", "-f", &zip.to_string_lossy()])?;
    ensure!(report.code == 0, "kubectl citus report: {}\n{}", report.stdout, report.stderr);
    let file = std::fs::File::open(&zip).with_context(|| format!("opening {}", zip.display()))?;
    let entries: Vec<String> = zip::ZipArchive::new(file)?.file_names().map(str::to_owned).collect();
    let _ = std::fs::remove_file(&zip);
    if !entries.iter().any(|e| e.contains("log") && e.contains(util::COORDINATOR)) {
        bail!("the report has no log of the coordinator: {entries:?}");
    }
    Ok(())
}
