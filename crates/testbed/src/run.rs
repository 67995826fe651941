//! The process's control plane and node agent: started by the first [`crate::Space`] that needs them and
//! stopped by [`stop`], so that every scenario of a run shares one API server and one node.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use control_plane::ControlPlane;
use local_cluster::agent::{AgentSettings, Capacity, NodeAgent};
use local_cluster::kubelet::pod::KubeletConfig;
use local_cluster::{Images, Postgres};

/// Where the control plane and the node keep their files (a test binary's `CARGO_TARGET_TMPDIR`).
static WORK_DIR: OnceLock<PathBuf> = OnceLock::new();
static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static NODE_AGENT: OnceLock<Result<NodeAgent, String>> = OnceLock::new();

/// Sets the directory under which the run's control plane and node keep their files; the first call wins.
pub fn init(work_dir: impl Into<PathBuf>) {
    let _ = WORK_DIR.set(work_dir.into());
}

/// The run's control plane, started on first use.
pub fn control_plane() -> anyhow::Result<&'static ControlPlane> {
    let started = CONTROL_PLANE.get_or_init(|| {
        let work = WORK_DIR.get().ok_or("testbed::init was not called before the first scenario")?;
        let bins = control_plane::Binaries::discover()?;
        let dir = work.join(format!("control-plane-{}", std::process::id()));
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

/// The run's node agent: this machine as the control plane's node, running `postgres` for the Citus images.
pub fn node_agent(postgres: &Postgres) -> anyhow::Result<&'static NodeAgent> {
    let plane = control_plane()?;
    let started = NODE_AGENT.get_or_init(|| {
        let settings = AgentSettings {
            node_name: control_plane::NODE_NAME.to_owned(),
            node_kubeconfig: plane.node_kubeconfig(),
            provisioner_kubeconfig: plane.kubeconfig(),
            dir: plane.dir().join("node"),
            images: Images::from_env(postgres.clone()).map_err(|e| e.to_string())?,
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

/// Stops the node agent and the control plane, if started, and removes their files unless
/// `LOCAL_CLUSTER_KEEP` is set.
pub fn stop() {
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
