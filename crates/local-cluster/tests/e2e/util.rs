//! Shared pieces of the scenarios: what a scenario needs and the check of it, Citus facts several scenarios
//! read. What they run on (the control plane, the node, a namespace with Helm, psql) is the `testbed` crate's.

use std::time::Duration;

use anyhow::{bail, Context as _};
use local_cluster::{host, Postgres};
pub use testbed::{
    chart_dir, control_plane, psql, psql_argv, tcp, try_psql, values, Login, Space, APP_PASSWORD, COORDINATOR,
    COORDINATOR_SERVICE, POSTGRES_PASSWORD, READY, SERVING, SOCKET,
};

/// The name under which the coordinator registers worker `n` of release my-citus in namespace `ns`.
pub fn worker_host(ns: &str, n: u32) -> String {
    format!("my-citus-worker-{n}.my-citus-worker-headless.{ns}.svc.cluster.local")
}

/// The coordinator's own name in `pg_dist_node` in namespace `ns`.
pub fn coordinator_host(ns: &str) -> String {
    format!("my-citus-coordinator-0.my-citus-coordinator-headless.{ns}.svc.cluster.local")
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
    /// The node as [`Needs::Node`], with no other scenario on it meanwhile (it drains or disconnects the
    /// whole node): such scenarios run first, before the others hold the node.
    WholeNode,
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
            Needs::WholeNode => "control plane node, alone",
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
        Needs::Node | Needs::WholeNode => {
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

/// pg_dist_node as "nodename:port group active role" lines, by nodeid.
pub fn dist_nodes(space: &Space) -> anyhow::Result<Vec<String>> {
    let sql = "SELECT nodename || ':' || nodeport || ' ' || groupid || ' ' || isactive || ' ' || noderole FROM pg_dist_node ORDER BY nodeid";
    Ok(psql(space, COORDINATOR, &SOCKET, sql)?.lines().map(str::to_owned).collect())
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
pub fn wait_rebalance(space: &Space, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let sql = |query: &str| psql(space, COORDINATOR, &SOCKET, query);
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
