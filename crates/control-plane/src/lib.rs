//! A real Kubernetes control plane for the tests: etcd, kube-apiserver (RBAC and Node authorization,
//! NodeRestriction), kube-controller-manager and kube-scheduler, on 127.0.0.1 with their own PKI. The
//! binaries come from `KUBE_CONTROL_PLANE_BIN` (default `/usr/local/lib/kube-control-plane/bin`); they are
//! built on the machine, never part of this project.
//! Every child process dies with the process that started it.

mod error;
mod pki;
mod process;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::{Error, Result};
use pki::{Client, Pki};
use process::Component;

/// The environment variable naming the directory of the control plane's binaries.
pub const BIN_ENV: &str = "KUBE_CONTROL_PLANE_BIN";
/// Where they are looked for without it: a machine-wide install, as Citus is in PostgreSQL's library dir.
pub const DEFAULT_BIN_DIR: &str = "/usr/local/lib/kube-control-plane/bin";
const BINARIES: [&str; 5] = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"];
/// The Service network; its first address is the `kubernetes` Service's.
/// The Service virtual IP range (`--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The one node of the cluster; its kubeconfig ([`ControlPlane::node_kubeconfig`]) carries the identity
/// `system:node:<name>` that the Node authorizer and NodeRestriction scope to it.
pub const NODE_NAME: &str = "local-node";

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    /// The binaries in `KUBE_CONTROL_PLANE_BIN` (else [`DEFAULT_BIN_DIR`]), or why they cannot be used.
    pub fn discover() -> Result<Binaries, String> {
        let dir = std::env::var_os(BIN_ENV).map_or_else(|| PathBuf::from(DEFAULT_BIN_DIR), PathBuf::from);
        let missing: Vec<&str> = BINARIES.iter().copied().filter(|b| !dir.join(b).is_file()).collect();
        if !missing.is_empty() {
            return Err(format!(
                "no control plane binaries: {} lacks {} (set {BIN_ENV} to the directory that holds them)",
                dir.display(),
                missing.join(", ")
            ));
        }
        Ok(Binaries { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A running control plane; stopped when dropped.
pub struct ControlPlane {
    dir: PathBuf,
    kubectl: PathBuf,
    server: String,
    components: std::sync::Mutex<Vec<Component>>,
    /// How long the start took, until the API server and both controllers' leases answer.
    pub started_in: Duration,
}

impl ControlPlane {
    /// Starts etcd, the API server, the controller manager and the scheduler with their state under `dir`.
    pub fn start(bins: &Binaries, dir: &Path) -> Result<ControlPlane> {
        let started = Instant::now();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| Error::Io { what: "creating", path: logs.clone(), source })?;
        let pki = Pki::create(
            &dir.join("pki"),
            SERVICE_IP,
            &[
                ("admin", "kubernetes-admin", Some("system:masters")),
                ("controller-manager", "system:kube-controller-manager", None),
                ("scheduler", "system:kube-scheduler", None),
                ("node", &format!("system:node:{NODE_NAME}"), Some("system:nodes")),
            ],
        )?;
        let (etcd_client, etcd_peer, api_port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = |name: &str| -> Result<PathBuf> {
            let path = dir.join(format!("{name}.kubeconfig"));
            write_kubeconfig(&path, &server, &pki.ca(), &pki.client(name))?;
            Ok(path)
        };
        let admin = kubeconfig("admin")?;
        let controller_manager = kubeconfig("controller-manager")?;
        let scheduler = kubeconfig("scheduler")?;
        kubeconfig("node")?;

        let mut plane = ControlPlane {
            dir: dir.to_owned(),
            kubectl: bins.path("kubectl"),
            server: server.clone(),
            components: std::sync::Mutex::new(Vec::new()),
            started_in: Duration::ZERO,
        };
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        plane.add(Component::spawn(
            "etcd",
            &bins.path("etcd"),
            &[
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                "--unsafe-no-fsync".into(),
            ],
            &logs,
        )?);
        plane.add(Component::spawn(
            "kube-apiserver",
            &bins.path("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                format!("--client-ca-file={}", pki.ca().display()),
                format!("--tls-cert-file={}", pki.serving_cert().display()),
                format!("--tls-private-key-file={}", pki.serving_key().display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", pki.service_account_pub().display()),
                format!("--service-account-signing-key-file={}", pki.service_account_key().display()),
                "--authorization-mode=Node,RBAC".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                // The node's Hostname address does not resolve here; its InternalIP is 127.0.0.1.
                "--kubelet-preferred-address-types=InternalIP".into(),
            ],
            &logs,
        )?);
        plane
            .wait("kube-apiserver", Duration::from_secs(90), |p| p.kubectl_ok(&admin, &["get", "--raw", "/readyz"]))?;
        plane.add(Component::spawn(
            "kube-controller-manager",
            &bins.path("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", controller_manager.display()),
                format!("--authentication-kubeconfig={}", controller_manager.display()),
                format!("--authorization-kubeconfig={}", controller_manager.display()),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", pki.service_account_key().display()),
                format!("--root-ca-file={}", pki.ca().display()),
                format!("--cluster-signing-cert-file={}", pki.ca().display()),
                format!("--cluster-signing-key-file={}", pki.ca_key().display()),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            ],
            &logs,
        )?);
        plane.add(Component::spawn(
            "kube-scheduler",
            &bins.path("kube-scheduler"),
            &[
                format!("--kubeconfig={}", scheduler.display()),
                format!("--authentication-kubeconfig={}", scheduler.display()),
                format!("--authorization-kubeconfig={}", scheduler.display()),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
            ],
            &logs,
        )?);
        // The service-account controller makes every namespace's `default` ServiceAccount: once the one of
        // `default` exists, the controller manager works.
        plane.wait("kube-controller-manager", Duration::from_secs(60), |p| {
            p.kubectl_ok(&admin, &["get", "serviceaccount", "default", "-n", "default"])
        })?;
        plane.started_in = started.elapsed();
        Ok(plane)
    }

    /// Where its state, certificates, kubeconfigs and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (system:masters).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The node's kubeconfig (`system:node:<NODE_NAME>`, group `system:nodes`), for a node agent.
    pub fn node_kubeconfig(&self) -> PathBuf {
        self.dir.join("node.kubeconfig")
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The kubectl built with the control plane, for runs that need their own environment (a plugin's PATH).
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// Runs kubectl as admin with `stdin`; Ok((stdout, stderr)) when it succeeded.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<(String, String)> {
        process::run(&self.kubectl, &self.kubeconfig(), args, stdin)
    }

    fn kubectl_ok(&self, kubeconfig: &Path, args: &[&str]) -> bool {
        process::run(&self.kubectl, kubeconfig, args, None).is_ok()
    }

    /// Stops every component, the last started first. Also done on drop.
    pub fn stop(&self) {
        let mut components = self.components.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(mut c) = components.pop() {
            c.stop();
        }
    }

    fn add(&mut self, component: Component) {
        self.components.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).push(component);
    }

    /// Polls `ready` until it holds; fails naming `component` when it exited or the time ran out.
    fn wait(&mut self, component: &'static str, timeout: Duration, ready: impl Fn(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            for c in self.components.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).iter_mut() {
                c.check_running()?;
            }
            if ready(self) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let components = self.components.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
                let log = components.iter().find(|c| c.name == component).map(|c| c.log.clone()).unwrap_or_default();
                return Err(Error::NotReady { component, seconds: timeout.as_secs(), tail: process::tail(&log), log });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free now, below the kernel's ephemeral range: the port is closed again until its component starts
/// seconds later, and a port of that range could meanwhile become the local end of some outgoing connection
/// (etcd's own, the API server's to etcd), which then refuses the component its listener.
fn free_port() -> Result<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral: u16 = range.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral.max(10_100));
    // Where to start looking: differs between processes and calls, so that runs side by side rarely meet.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed =
        std::process::id().wrapping_mul(7919).wrapping_add(NEXT.fetch_add(97, std::sync::atomic::Ordering::SeqCst));
    let span = u32::from(high - low);
    let mut last = None;
    for i in 0..span {
        let port = low + ((seed.wrapping_add(i)) % span) as u16;
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Port(last.unwrap_or_else(|| std::io::Error::other("no port to try"))))
}

fn write_kubeconfig(path: &Path, server: &str, ca: &Path, client: &Client) -> Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
         users:\n- name: user\n  user:\n    client-certificate: {}\n    client-key: {}\n\
         contexts:\n- name: local\n  context:\n    cluster: local\n    user: user\ncurrent-context: local\n",
        ca.display(),
        client.cert.display(),
        client.key.display()
    );
    std::fs::write(path, text).map_err(|source| Error::Io { what: "writing", path: path.into(), source })
}
