//! Shared pieces of the scenarios: what a scenario needs and the check of it, the run's control plane and
//! node agent, chart values with known passwords, psql through `kubectl exec`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context as _};
use control_plane::ControlPlane;
use local_cluster::agent::{AgentSettings, Capacity, NodeAgent};
use local_cluster::kubelet::pod::KubeletConfig;
use local_cluster::{host, ExecOutput, Images, Postgres};
use serde_json::{json, Value};

pub const POSTGRES_PASSWORD: &str = "pg-super:secret\\1";
pub const APP_PASSWORD: &str = "app secret 'two'";
pub const COORDINATOR: &str = "my-citus-coordinator-0";
pub const COORDINATOR_SERVICE: &str = "my-citus-coordinator";
pub const READY: Duration = Duration::from_secs(180);
/// How long a Service may take to follow its pods' readiness on the node agent.
pub const SERVING: Duration = Duration::from_secs(10);

/// The name under which the coordinator registers worker `n` of release my-citus in namespace `ns`.
pub fn worker_host(ns: &str, n: u32) -> String {
    format!("my-citus-worker-{n}.my-citus-worker-headless.{ns}.svc.cluster.local")
}

/// The coordinator's own name in `pg_dist_node` in namespace `ns`.
pub fn coordinator_host(ns: &str) -> String {
    format!("my-citus-coordinator-0.my-citus-coordinator-headless.{ns}.svc.cluster.local")
}

pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/citus")
}

/// What a scenario needs from this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Helm only (rendering).
    Helm,
    /// Helm and a real control plane (`KUBE_CONTROL_PLANE_BIN`), shared by the run; no node.
    ControlPlane,
    /// The control plane with this machine as its node (the node agent), running Citus: root (namespaces,
    /// mounts, uid changes), iproute2, PostgreSQL, nss_wrapper, `citus.so` in `pg_config --pkglibdir`.
    Node,
    /// Also a second Citus build mapped to a `citusdata/citus` tag by `LOCAL_CLUSTER_IMAGES`.
    TwoCitus,
}

impl Needs {
    pub fn label(self) -> &'static str {
        match self {
            Needs::Helm => "helm",
            Needs::TwoCitus => "two citus versions",
            Needs::ControlPlane => "control plane",
            Needs::Node => "control plane node",
        }
    }
}

/// One scenario: a name, what it needs, and the function that runs it.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub needs: Needs,
    pub run: fn(&Env) -> anyhow::Result<()>,
}

/// Declares a module's scenarios: `scenarios!(Node: a, b; Helm: c);`.
#[macro_export]
macro_rules! scenarios {
    ($($needs:ident: $($f:ident),+);+ $(;)?) => {
        pub const SCENARIOS: &[$crate::util::Scenario] = &[
            $($($crate::util::Scenario {
                name: stringify!($f),
                needs: $crate::util::Needs::$needs,
                run: $f,
            },)+)+
        ];
    };
}

/// What the machine provides to a scenario.
pub struct Env {
    postgres: Option<Postgres>,
    /// A `citusdata/citus` tag that `LOCAL_CLUSTER_IMAGES` maps to another Citus build.
    pub upgrade_tag: Option<String>,
}

impl Env {
    pub fn postgres(&self) -> anyhow::Result<&Postgres> {
        self.postgres.as_ref().context("this scenario was declared without needing PostgreSQL")
    }
}

/// The environment for `needs`, or why this machine cannot provide it.
pub fn available(needs: Needs) -> Result<Env, String> {
    let host_needs = match needs {
        Needs::Helm => {
            helm_engine::Helm::discover().map_err(|e| e.to_string())?;
            return Ok(Env { postgres: None, upgrade_tag: None });
        }
        Needs::ControlPlane => {
            helm_engine::Helm::discover().map_err(|e| e.to_string())?;
            control_plane::Binaries::discover()?;
            return Ok(Env { postgres: None, upgrade_tag: None });
        }
        Needs::Node => {
            helm_engine::Helm::discover().map_err(|e| e.to_string())?;
            control_plane::Binaries::discover()?;
            host::Needs::Citus
        }
        Needs::TwoCitus => {
            helm_engine::Helm::discover().map_err(|e| e.to_string())?;
            control_plane::Binaries::discover()?;
            host::Needs::TwoCitus
        }
    };
    let host = host::check(host_needs)?;
    Ok(Env { postgres: Some(host.postgres), upgrade_tag: host.upgrade_tag })
}

/// The run's control plane, started by the first scenario that needs it and stopped by [`stop_control_plane`].
static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

pub fn control_plane() -> anyhow::Result<&'static ControlPlane> {
    let started = CONTROL_PLANE.get_or_init(|| {
        let bins = control_plane::Binaries::discover()?;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("control-plane-{}", std::process::id()));
        let plane = ControlPlane::start(&bins, &dir).map_err(|e| e.to_string())?;
        eprintln!(
            "control plane at {} started in {:.1} s ({})",
            plane.server(),
            plane.started_in.as_secs_f64(),
            dir.display()
        );
        Ok(plane)
    });
    started.as_ref().map_err(|e| anyhow::anyhow!("the control plane did not start: {e}"))
}

/// Stops the run's control plane, if one was started, and removes its files unless `LOCAL_CLUSTER_KEEP` is set.
pub fn stop_control_plane() {
    if let Some(Ok(agent)) = NODE_AGENT.get() {
        agent.stop();
    }
    if let Some(Ok(plane)) = CONTROL_PLANE.get() {
        plane.stop();
        if std::env::var_os("LOCAL_CLUSTER_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(plane.dir());
        }
    }
}

/// The run's node agent: this machine as the control plane's node, started by the first scenario that
/// needs it and stopped by [`stop_control_plane`].
static NODE_AGENT: OnceLock<Result<NodeAgent, String>> = OnceLock::new();

pub fn node_agent(env: &Env) -> anyhow::Result<&'static NodeAgent> {
    let plane = control_plane()?;
    let postgres = env.postgres()?.clone();
    let started = NODE_AGENT.get_or_init(|| {
        let settings = AgentSettings {
            node_name: control_plane::NODE_NAME.to_owned(),
            node_kubeconfig: plane.node_kubeconfig(),
            provisioner_kubeconfig: plane.kubeconfig(),
            dir: plane.dir().join("node"),
            images: Images::from_env(postgres).map_err(|e| e.to_string())?,
            kubelet: KubeletConfig { restart_backoff: Duration::from_secs(10) },
            init_timeout: Duration::from_secs(300),
            // The scenarios test behaviour, not sizing: the chart's default requests (2.1 CPUs with the
            // registration Job) exceed this 2-core machine, so the node offers more than it has.
            capacity: Capacity { cpu: "16".into(), memory: "64Gi".into() },
            service_cidr: control_plane::SERVICE_CIDR.to_owned(),
        };
        NodeAgent::start(settings).map_err(|e| e.to_string())
    });
    started.as_ref().map_err(|e| anyhow::anyhow!("the node agent did not start: {e}"))
}

/// Chart values: known passwords plus `extra`, merged (objects recursively).
pub fn values(extra: Value) -> Value {
    let mut base = json!({"auth": {"postgresPassword": POSTGRES_PASSWORD, "password": APP_PASSWORD}});
    merge(&mut base, extra);
    base
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// How psql connects.
pub struct Login<'a> {
    pub host: &'a str,
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub database: &'a str,
}

/// Local socket as postgres (trust inside the pod).
pub const SOCKET: Login = Login { host: "/var/run/postgresql", user: "postgres", password: None, database: "citus" };

pub fn tcp<'a>(host: &'a str, user: &'a str, password: &'a str) -> Login<'a> {
    Login { host, user, password: Some(password), database: "citus" }
}

/// psql reading SQL from stdin, never prompting for a password, stopping at the first error, rows unaligned.
pub fn psql_argv<'a>(login: &Login<'a>) -> [&'a str; 16] {
    let Login { host, user, database, .. } = *login;
    ["psql", "-X", "-w", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", host, "-U", user, "-d", database, "-f", "-"]
}

/// The pods a scenario runs commands in: a cluster of the simulator, or its namespace on the control plane.
pub trait Pods {
    /// The namespace of the pods.
    fn namespace(&self) -> &str;

    /// `kubectl exec` of `argv` in `pod` with `env` added to the container's and `stdin` fed to it.
    fn run(&self, pod: &str, argv: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> anyhow::Result<ExecOutput>;

    /// What the cluster says of itself, for a failure's message.
    fn diagnose(&self) -> String {
        String::new()
    }
}

/// Runs SQL with psql in `pod` (never prompting for a password); Ok(stdout) or Err(stderr) by exit status.
pub fn try_psql(pods: &dyn Pods, pod: &str, login: &Login, sql: &str) -> anyhow::Result<Result<String, String>> {
    let argv = psql_argv(login);
    let mut env = vec![("PGCONNECT_TIMEOUT", "10")];
    if let Some(p) = login.password {
        env.push(("PGPASSWORD", p));
    }
    let out = pods.run(pod, &argv, &env, Some(sql.as_bytes()))?;
    Ok(if out.status.success() { Ok(out.stdout.trim().to_owned()) } else { Err(out.stderr) })
}

pub fn psql(cluster: &dyn Pods, pod: &str, login: &Login, sql: &str) -> anyhow::Result<String> {
    match try_psql(cluster, pod, login, sql)? {
        Ok(out) => Ok(out),
        Err(stderr) => {
            bail!("psql in {pod} as {}@{} failed: {stderr}\nSQL: {sql}\n{}", login.user, login.host, cluster.diagnose())
        }
    }
}

/// pg_dist_node as "nodename:port group active role" lines, by nodeid.
pub fn dist_nodes(cluster: &dyn Pods) -> anyhow::Result<Vec<String>> {
    let sql = "SELECT nodename || ':' || nodeport || ' ' || groupid || ' ' || isactive || ' ' || noderole FROM pg_dist_node ORDER BY nodeid";
    Ok(psql(cluster, COORDINATOR, &SOCKET, sql)?.lines().map(str::to_owned).collect())
}

/// What a test checks on a pod's process.
pub struct ProcessFacts {
    pub uid: u32,
    pub in_args: bool,
    pub in_env: bool,
}

/// The uid of a process and whether `needle` occurs in its arguments and in its environment; `None` when
/// the process is gone (probes come and go).
pub fn process_facts(pid: i32, needle: &str) -> anyhow::Result<Option<ProcessFacts>> {
    let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).ok();
    let (Some(status), Some(cmdline), Some(environ)) = (read("status"), read("cmdline"), read("environ")) else {
        return Ok(None);
    };
    let status = String::from_utf8_lossy(&status);
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no Uid line")?
        .parse()?;
    let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    Ok(Some(ProcessFacts { uid, in_args: contains(&cmdline), in_env: contains(&environ) }))
}

/// Waits for the newest background rebalance (the registration's; an older one it replaced may have been
/// cancelled); fails when it did not finish.
pub fn wait_rebalance(cluster: &dyn Pods, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let sql = |query: &str| psql(cluster, COORDINATOR, &SOCKET, query);
    loop {
        let state = sql(
            "SELECT coalesce((SELECT state::text FROM pg_dist_background_job WHERE job_type = 'rebalance' ORDER BY job_id DESC LIMIT 1), '')",
        )?;
        if state == "finished" {
            return Ok(());
        }
        if state == "failed" || state == "cancelled" {
            bail!("rebalance ended {state}: {}", sql("SELECT * FROM pg_dist_background_task")?);
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "rebalance not finished after {timeout:?}: {state}");
        std::thread::sleep(Duration::from_secs(1));
    }
}
