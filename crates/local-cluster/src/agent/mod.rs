//! The node agent: this machine as a node of a real Kubernetes control plane. It registers a Node and
//! renews its Lease, provisions volumes for claims of its StorageClass, and runs the pods the scheduler
//! binds to it with the sandbox and the kubelet of this crate, reporting their status back. Objects,
//! controllers, the scheduler and Helm are the control plane's and libhelm's part.
//!
//! It polls rather than watches: a list of the node's pods every [`PERIOD`], which on a local API server
//! costs a few milliseconds and never misses an event.

mod api;
mod kubelet_api;
mod pod_status;
mod pods;
mod provisioner;
mod registration;
mod services;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use provisioner::STORAGE_CLASS;
pub use registration::Capacity;
use registration::Registration;

use crate::error::{Error, Result};
use crate::kubelet::image::Images;
use crate::kubelet::pod::{ExecOutput, ExecTarget, KubeletConfig};

/// Where the ServiceAccount admission plugin mounts a pod's token (`/var/run` is `/run` on this machine).
const SERVICE_ACCOUNT_DIR: &str = "/run/secrets/kubernetes.io/serviceaccount";

/// How often the agent looks at its pods.
pub const PERIOD: Duration = Duration::from_millis(250);

/// What the agent needs to start.
pub struct AgentSettings {
    pub node_name: String,
    /// Credentials of `system:node:<node_name>` (group `system:nodes`).
    pub node_kubeconfig: PathBuf,
    /// Credentials that may create PersistentVolumes and StorageClasses.
    pub provisioner_kubeconfig: PathBuf,
    /// Pods, logs and volumes live here.
    pub dir: PathBuf,
    pub images: Images,
    pub kubelet: KubeletConfig,
    pub init_timeout: Duration,
    /// What the node offers the scheduler.
    pub capacity: Capacity,
    /// The API server's Service IP range (`--service-cluster-ip-range`), routed from pods to the node's
    /// Service forwarders.
    pub service_cidr: String,
}

struct Shared {
    kubelet: Mutex<pods::Kubelet>,
    stop: AtomicBool,
    /// The node cannot reach the control plane (a fault): no heartbeat, no pod list, no status.
    disconnected: AtomicBool,
    /// The last error of the loop, and how often one happened; a scenario that waits in vain shows it.
    last_error: Mutex<Option<String>>,
}

impl kubelet_api::NodePods for Shared {
    fn log_path(&self, namespace: &str, pod: &str) -> Result<PathBuf> {
        self.kubelet.lock().unwrap_or_else(PoisonError::into_inner).log_path(namespace, pod)
    }

    fn exec_target(&self, namespace: &str, pod: &str, container: Option<&str>) -> Result<ExecTarget> {
        self.kubelet.lock().unwrap_or_else(PoisonError::into_inner).exec_target(namespace, pod, container)
    }
}

/// What [`NodeAgent::exec`] runs.
pub struct Command<'a> {
    /// The container; the pod's first when `None`.
    pub container: Option<&'a str>,
    pub argv: &'a [&'a str],
    /// Added to the container's environment.
    pub env: &'a [(&'a str, &'a str)],
    pub stdin: Option<&'a [u8]>,
    /// The command is killed after it.
    pub timeout: Duration,
}

/// A running node agent; stops its pods when dropped.
pub struct NodeAgent {
    shared: Arc<Shared>,
    /// The pod loop and the heartbeat.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl NodeAgent {
    /// Registers the node and its StorageClass, then runs the agent's loop on a thread of its own.
    pub fn start(settings: AgentSettings) -> Result<NodeAgent> {
        crate::sandbox::netns::remove_stale();
        let api = Arc::new(api::Clients::new(&settings.node_kubeconfig, &settings.provisioner_kubeconfig)?);
        let kubelet = pods::Kubelet::new(
            settings.node_name.clone(),
            settings.service_cidr.clone(),
            settings.dir.clone(),
            settings.images,
            settings.kubelet,
            settings.init_timeout,
        );
        let shared = Arc::new(Shared {
            kubelet: Mutex::new(kubelet),
            stop: AtomicBool::new(false),
            disconnected: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let kubelet_port = kubelet_api::serve(&api, Arc::clone(&shared) as Arc<dyn kubelet_api::NodePods>)?;
        let node = Registration {
            name: settings.node_name,
            capacity: settings.capacity,
            kubelet_port,
            since: SystemTime::now(),
        };
        node.register(&api)?;
        provisioner::install(&api)?;
        // Pods share this machine's root file system, whose /run is a mount with mounts inside (/run/netns):
        // a directory created over it would need an overlay hiding them, so the mount point of the service
        // account token volume is made here once, as an image with /var/run/secrets would have it.
        let token_dir = Path::new(SERVICE_ACCOUNT_DIR);
        std::fs::create_dir_all(token_dir)
            .map_err(|source| Error::Io { context: format!("creating {}", token_dir.display()), source })?;
        let volumes = settings.dir.join("volumes");
        std::fs::create_dir_all(&volumes)
            .map_err(|source| Error::Io { context: format!("creating {}", volumes.display()), source })?;
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|source| Error::Io { context: format!("starting the node agent's {name} thread"), source })
        };
        let (loop_shared, loop_api) = (Arc::clone(&shared), Arc::clone(&api));
        let pods = spawn("node-agent", Box::new(move || run(&loop_shared, &loop_api, &volumes)))?;
        let beat_shared = Arc::clone(&shared);
        let heartbeat = spawn("node-heartbeat", Box::new(move || beat(&beat_shared, &api, &node)))?;
        Ok(NodeAgent { shared, threads: Mutex::new(vec![pods, heartbeat]) })
    }

    /// Runs `argv` in a container of a pod (the first without `container`) with the container's env plus
    /// `env`, like `kubectl exec` of `env K=V... argv`.
    pub fn exec(&self, namespace: &str, pod: &str, command: &Command<'_>) -> Result<ExecOutput> {
        let target = self.kubelet().exec_target(namespace, pod, command.container)?;
        let argv: Vec<String> = command.argv.iter().map(|s| (*s).to_owned()).collect();
        target.run(&argv, command.env, command.stdin, command.timeout)
    }

    /// The process ids of everything running in the pod (to inspect their arguments, environment and uid).
    pub fn processes(&self, namespace: &str, pod: &str) -> Result<Vec<nix::unistd::Pid>> {
        Ok(self.kubelet().space_pod(namespace, pod)?.processes())
    }

    /// The pod's log (every container's output, with the agent's notes of starts and kills), also after the
    /// pod was deleted.
    pub fn log(&self, namespace: &str, pod: &str) -> Result<String> {
        let path = self.kubelet().log_path(namespace, pod)?;
        std::fs::read_to_string(&path)
            .map_err(|source| Error::Io { context: format!("reading {}", path.display()), source })
    }

    /// Fault: the pod stays Pending whenever it is (re)created: no process, no address. A running pod is not
    /// affected until it is deleted.
    pub fn hold_pending(&self, namespace: &str, pod: &str) {
        self.kubelet().hold_pending(namespace, pod);
    }

    /// Ends [`NodeAgent::hold_pending`]; the agent starts the pod on its next pass.
    pub fn release_pending(&self, namespace: &str, pod: &str) {
        self.kubelet().release_pending(namespace, pod);
    }

    /// Fault: SIGKILL to every process of the pod (its containers restart as its restart policy says).
    pub fn kill_pod(&self, namespace: &str, pod: &str) -> Result<()> {
        self.kubelet().kill_pod(namespace, pod)
    }

    /// Fault: kill every process of the pod when its log first shows `line` (the pod may not exist yet).
    /// `pod` may also name a Job: the fault fires in whichever of its pods logs the line first.
    pub fn kill_on_log_line(&self, namespace: &str, pod: &str, line: &str) {
        self.kubelet().kill_on_log_line(namespace, pod, line);
    }

    /// The cluster DNS answers the names of `namespace` in `domain` as well as in cluster.local, as a CoreDNS
    /// serving a second zone does while a cluster's domain changes.
    pub fn serve_zone(&self, namespace: &str, domain: &str) {
        self.kubelet().serve_zone(namespace, domain);
    }

    /// Ends every [`NodeAgent::kill_on_log_line`] fault of `namespace` that has not fired.
    pub fn clear_kills_on_log_lines(&self, namespace: &str) {
        self.kubelet().clear_kills_on_log_lines(namespace);
    }

    /// Fault: pods `a` and `b` of `namespace` cannot reach each other, also after either is recreated, until
    /// [`NodeAgent::heal`]. A blackhole route on each side: a connection attempt fails at once (EINVAL), as
    /// behind a firewall that rejects, rather than timing out as in a silent partition.
    pub fn cut(&self, namespace: &str, a: &str, b: &str) -> Result<()> {
        self.kubelet().cut(namespace, a, b)
    }

    pub fn heal(&self, namespace: &str, a: &str, b: &str) -> Result<()> {
        self.kubelet().heal(namespace, a, b)
    }

    /// Fault: the node loses the control plane, as a kubelet behind a network partition: no Lease renewal,
    /// no Node or pod status, no pod list, so the node lifecycle controller marks the node and its pods not
    /// Ready after its grace period. The pods' processes go on running; the agent neither starts nor stops
    /// nor restarts any until [`NodeAgent::reconnect`].
    pub fn disconnect(&self) {
        self.shared.disconnected.store(true, Ordering::SeqCst);
    }

    /// Ends [`NodeAgent::disconnect`]: the next heartbeat reports the node Ready, the next pass every pod's
    /// status again (the node lifecycle controller changed them meanwhile).
    pub fn reconnect(&self) {
        self.kubelet().forget_reports();
        self.shared.disconnected.store(false, Ordering::SeqCst);
    }

    /// The loop's last error, if any (it goes on after one, as a kubelet does).
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn kubelet(&self) -> std::sync::MutexGuard<'_, pods::Kubelet> {
        self.shared.kubelet.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the loop and every pod; the API objects stay, as when a kubelet dies.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner)) {
            let _ = thread.join(); // a panic of a loop was already reported on stderr
        }
        self.kubelet().stop_all();
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn report(&self, what: &str, e: Error) {
        let text = format!("{what}: {e}");
        eprintln!("node agent: {text}");
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    }

    fn connected(&self) -> bool {
        !self.disconnected.load(Ordering::SeqCst)
    }
}

/// The pod loop: volumes to provision, pods to start, stop and report, every [`PERIOD`].
fn run(shared: &Shared, api: &Arc<api::Clients>, volumes: &Path) {
    while !shared.stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        if shared.connected() {
            if let Err(e) = provisioner::sync(api, volumes) {
                shared.report("provisioning", e);
            }
            let result = shared.kubelet.lock().unwrap_or_else(PoisonError::into_inner).sync(api);
            if let Err(e) = result {
                shared.report("pods", e);
            }
        }
        std::thread::sleep(PERIOD.saturating_sub(started.elapsed()));
    }
}

/// The heartbeat, on a thread of its own as the kubelet's: a pass of the pod loop that starts a pod (an init
/// container running to completion) must not delay the Lease, or the node would turn NotReady under load.
fn beat(shared: &Shared, api: &api::Clients, node: &Registration) {
    let every = Duration::from_secs(registration::LEASE_SECONDS / 4);
    let mut last: Option<Instant> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.connected() && last.is_none_or(|t| t.elapsed() >= every) {
            if let Err(e) = node.heartbeat(api) {
                shared.report("heartbeat", e);
            }
            last = Some(Instant::now());
        } else if !shared.connected() {
            // Reconnected: beat at once.
            last = None;
        }
        std::thread::sleep(PERIOD);
    }
}
