//! The pod network: one network namespace per pod, all joined by a bridge that lives in a namespace of its
//! own (the "switch"), so nothing is added to the host's network namespace and every cluster can use the
//! same subnet. Namespaces are named `lc<pid>-<cluster>-<n>`; those of a harness process that no longer
//! exists are removed by [`remove_stale`].

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

const NETNS_DIR: &str = "/run/netns";
const PREFIX: &str = "lc";
/// The subnet of every cluster (each has its own isolated bridge); .1 is the switch's own address, where
/// Service virtual IPs are answered.
const SUBNET: [u8; 3] = [10, 231, 0];
const SWITCH_IP: Ipv4Addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 1);
/// The bridge's own link address (locally administered), fixed for the switch's life.
const SWITCH_MAC: &str = "02:00:0a:e7:00:01";

fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip").args(args).output().map_err(|e| Error::Command {
        command: format!("ip {}", args.join(" ")),
        status: e.to_string(),
        stderr: String::new(),
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("ip {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// A named network namespace; deleted (after killing what runs in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Result<Self> {
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A blackhole route to `peer` (a network cut as seen from this side): a connection attempt from here fails
    /// at once with EINVAL, as behind a rejecting firewall, not after a timeout as in a silent partition.
    pub fn block(&self, peer: Ipv4Addr) -> Result<()> {
        ip(&["-n", &self.name, "route", "replace", "blackhole", &format!("{peer}/32")])
    }

    /// Undoes [`Netns::block`].
    pub fn unblock(&self, peer: Ipv4Addr) -> Result<()> {
        ip(&["-n", &self.name, "route", "del", "blackhole", &format!("{peer}/32")])
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Every process that runs in this namespace (the pod's processes, whoever their parent is).
    pub fn processes(&self) -> Vec<Pid> {
        processes_in(&self.path())
    }

    /// SIGKILLs everything in the namespace and waits (up to `timeout`) until nothing is left.
    pub fn kill_all(&self, timeout: Duration) -> bool {
        kill_all_in(&self.path(), timeout)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all(Duration::from_secs(10));
        // Nothing to report to at drop time; a leftover is removed by the next run's remove_stale.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn processes_in(netns: &std::path::Path) -> Vec<Pid> {
    let Ok(target) = fs::metadata(netns).map(|m| m.ino()) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == target))
        .map(Pid::from_raw)
        .collect()
}

fn kill_all_in(netns: &std::path::Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = processes_in(netns);
        if pids.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        for pid in pids {
            let _ = kill(pid, Signal::SIGKILL); // gone already is fine
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The bridge namespace of one cluster.
#[derive(Debug)]
pub struct Network {
    switch: Netns,
    prefix: String,
    next_port: u32,
    last_host: u8,
    /// The Service virtual IP range routed to the switch (see [`Network::route_services`]).
    services: Option<String>,
}

/// A pod's namespace with its address; dropping it unplugs the pod.
#[derive(Debug)]
pub struct PodNet {
    pub netns: Netns,
    pub ip: Ipv4Addr,
}

impl Network {
    pub fn new() -> Result<Self> {
        static CLUSTERS: AtomicU32 = AtomicU32::new(0);
        let prefix = format!("{PREFIX}{}-{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed));
        let switch = Netns::create(format!("{prefix}-sw"))?;
        // A bridge without an address of its own takes the lowest of its ports' and changes it when that
        // port's pod goes: the pods' ARP entries for the switch would then point nowhere, and their
        // connections to Service addresses time out until the entries expire.
        ip(&["-n", switch.name(), "link", "add", "br0", "address", SWITCH_MAC, "type", "bridge"])?;
        ip(&["-n", switch.name(), "link", "set", "br0", "up"])?;
        ip(&["-n", switch.name(), "addr", "add", &format!("{SWITCH_IP}/24"), "dev", "br0"])?;
        Ok(Network { switch, prefix, next_port: 0, last_host: 1, services: None })
    }

    /// Makes every address of `cidr` (the Service range) local to the switch and routes pods created from now
    /// on there, so that a listener of [`Network::listen`] on a Service's virtual IP answers them.
    pub fn route_services(&mut self, cidr: &str) -> Result<()> {
        ip(&["-n", self.switch.name(), "route", "add", "local", cidr, "dev", "lo"])?;
        self.services = Some(cidr.to_owned());
        Ok(())
    }

    /// The switch's network namespace, to dial pods from.
    pub fn switch_path(&self) -> PathBuf {
        self.switch.path()
    }

    /// A listener on `addr` inside the switch (a Service's virtual IP and port): `setns` changes only the
    /// calling thread, so a short-lived thread binds it; the socket stays in the switch.
    pub fn listen(&self, addr: std::net::SocketAddr) -> Result<std::net::TcpListener> {
        let path = self.switch.path();
        let bound = std::thread::spawn(move || {
            let ns = fs::File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("entering {}: {e}", path.display()))?;
            std::net::TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))
        })
        .join()
        .unwrap_or_else(|_| Err("listening thread panicked".to_owned()));
        bound.map_err(|e| Error::Manifest(format!("the pod network's Service address: {e}")))
    }

    /// A new namespace plugged into the bridge with the next address not `in_use`, round robin, so that a
    /// recreated pod gets a new address as it usually would in Kubernetes.
    pub fn add_pod(&mut self, in_use: &[Ipv4Addr]) -> Result<PodNet> {
        let host = (self.last_host + 1..=254)
            .chain(2..=self.last_host)
            .find(|h| !in_use.iter().any(|a| a.octets()[3] == *h))
            .ok_or_else(|| Error::Unsupported("more than 253 pods at once".to_owned()))?;
        let port = self.next_port;
        self.next_port += 1;
        let netns = Netns::create(format!("{}-{port}", self.prefix))?;
        let ip_addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], host);
        let veth = format!("v{port}");
        let sw = self.switch.name();
        ip(&["-n", sw, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", netns.name()])?;
        ip(&["-n", sw, "link", "set", &veth, "master", "br0", "up"])?;
        ip(&["-n", netns.name(), "addr", "add", &format!("{ip_addr}/24"), "dev", "eth0"])?;
        ip(&["-n", netns.name(), "link", "set", "eth0", "up"])?;
        if let Some(cidr) = &self.services {
            ip(&["-n", netns.name(), "route", "add", cidr, "via", &SWITCH_IP.to_string()])?;
        }
        self.last_host = host;
        Ok(PodNet { netns, ip: ip_addr })
    }
}

/// Removes the namespaces (and kills the processes) of harness processes that died without cleaning up.
pub fn remove_stale() {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()?.parse::<u32>().ok()) else {
            continue;
        };
        if fs::metadata(format!("/proc/{pid}")).is_err() {
            drop(Netns { name });
        }
    }
}

/// A TCP connection opened inside a network namespace (how the kubelet's probes and a port-forward reach a
/// pod): `setns` changes only the calling thread, so a short-lived thread enters the namespace; the socket
/// stays in that namespace after the thread ends.
pub fn dial_in(
    netns: PathBuf,
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> std::result::Result<std::net::TcpStream, String> {
    std::thread::spawn(move || {
        let ns = fs::File::open(&netns).map_err(|e| format!("opening {}: {e}", netns.display()))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering {}: {e}", netns.display()))?;
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))
    })
    .join()
    .unwrap_or_else(|_| Err("connection thread panicked".to_owned()))
}

/// [`dial_in`], then with `path` an HTTP/1.0 GET whose status and body are returned; without, only the
/// TCP connect.
pub fn connect_in(
    netns: PathBuf,
    addr: std::net::SocketAddr,
    path: Option<String>,
    timeout: Duration,
) -> std::result::Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream = dial_in(netns, addr, timeout)?;
    let Some(path) = path else { return Ok((0, String::new())) };
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no HTTP status in {head:?}"))?;
    Ok((status, body.to_owned()))
}
