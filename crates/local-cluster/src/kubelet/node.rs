//! The node: every pod of the cluster on this machine, the pod network and the name service (the cluster
//! DNS stand-in: one hosts file bound over every pod's `/etc/hosts`, rewritten in place).

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::image::Images;
use super::pod::{ClusterDirs, KubeletConfig, Pod, PodConfig, StartContext};
use crate::error::{Context, Error, Result};
use crate::sandbox::mounts::{Mount, Source};
use crate::sandbox::netns::Network;
use crate::store::{kind_and_name, Store};

/// Faults a scenario asked for (the node agent's fault verbs).
#[derive(Debug, Default)]
pub struct Faults {
    /// (pod, line): kill every process of the pod when its log first shows the line.
    pub kill_on_log: Vec<(String, String)>,
    /// Pairs of pods that cannot reach each other (in both directions).
    pub cuts: Vec<(String, String)>,
}

pub struct Node {
    pub(crate) pods: BTreeMap<String, Pod>,
    /// The `kubernetes` Service's virtual IP, when the pods have a real API server to reach.
    pub api_service: Option<Ipv4Addr>,
    pub(crate) faults: Faults,
    network: Network,
    dir: PathBuf,
    pub(crate) images: Images,
    pub(crate) kubelet: KubeletConfig,
    pub(crate) namespace: String,
    pub(crate) cluster_domain: String,
    /// Further DNS zones names are answered in, as a CoreDNS serving several zones during a domain change.
    pub(crate) extra_domains: Vec<String>,
    pub(crate) init_timeout: Duration,
}

impl Node {
    pub fn new(
        dir: PathBuf,
        images: Images,
        kubelet: KubeletConfig,
        namespace: String,
        init_timeout: Duration,
    ) -> Result<Self> {
        for sub in ["pods", "logs"] {
            fs::create_dir_all(dir.join(sub)).context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        // No nameserver: glibc then asks 127.0.0.1, which refuses at once inside a pod's namespace.
        let resolv = "# local-cluster: names come from /etc/hosts\noptions timeout:1 attempts:1\n";
        fs::write(dir.join("resolv.conf"), resolv).context(|| "writing resolv.conf".to_owned())?;
        Ok(Node {
            pods: BTreeMap::new(),
            api_service: None,
            faults: Faults::default(),
            network: Network::new()?,
            dir,
            images,
            kubelet,
            namespace,
            cluster_domain: "cluster.local".to_owned(),
            extra_domains: Vec::new(),
            init_timeout,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    pub fn pod(&self, name: &str) -> Result<&Pod> {
        self.pods.get(name).ok_or_else(|| Error::Manifest(format!("no pod {name}")))
    }

    pub fn pod_mut(&mut self, name: &str) -> Result<&mut Pod> {
        self.pods.get_mut(name).ok_or_else(|| Error::Manifest(format!("no pod {name}")))
    }

    /// Creates and starts a pod (its name and address join the hosts file first).
    pub fn create_pod(&mut self, config: PodConfig, store: &Store) -> Result<()> {
        if self.pods.contains_key(&config.name) {
            return Err(Error::Manifest(format!("pod {} already exists", config.name)));
        }
        let in_use: Vec<_> = self.pods.values().map(Pod::ip).collect();
        let net = self.network.add_pod(&in_use)?;
        self.write_hosts_with(store, Some((&config, net.ip)))?;
        let extra = [
            Mount { target: "/etc/hosts".into(), source: Source::Path(self.dir.join("hosts")), read_only: true },
            Mount {
                target: "/etc/resolv.conf".into(),
                source: Source::Path(self.dir.join("resolv.conf")),
                read_only: true,
            },
        ];
        let dirs = ClusterDirs { pods: &self.dir.join("pods"), logs: &self.dir.join("logs") };
        let ctx = StartContext {
            store,
            images: &self.images,
            dirs: &dirs,
            extra_mounts: &extra,
            kubelet: self.kubelet,
            init_timeout: self.init_timeout,
        };
        let name = config.name.clone();
        match Pod::start(config, net, &ctx) {
            Ok(pod) => {
                self.pods.insert(name.clone(), pod);
                self.apply_cuts(&name)
            }
            Err(e) => {
                self.write_hosts(store)?;
                Err(e)
            }
        }
    }

    /// One pass of the kubelet over every pod, and the log-triggered kills that are due.
    pub fn sync(&mut self) -> Result<()> {
        let mut fired = Vec::new();
        for (i, (target, line)) in self.faults.kill_on_log.iter().enumerate() {
            // A Job's pods are `<job>-<n>` here and `<job>-<5 random characters>` on a real control plane: a
            // fault on the Job's name fires in whichever pod runs it.
            let is_target = |name: &str| {
                name == target
                    || name.strip_prefix(target.as_str()).and_then(|n| n.strip_prefix('-')).is_some_and(|n| {
                        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                            || (n.len() == 5 && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
                    })
            };
            for (_, p) in self.pods.iter_mut().filter(|(name, _)| is_target(name)) {
                if fs::read_to_string(p.log_path()).is_ok_and(|log| log.contains(line.as_str())) {
                    p.kill_everything();
                    fired.push(i);
                    break;
                }
            }
        }
        for i in fired.into_iter().rev() {
            self.faults.kill_on_log.remove(i);
        }
        for pod in self.pods.values_mut() {
            pod.sync()?;
        }
        Ok(())
    }

    /// Blocks traffic between two pods both ways (and again whenever either is recreated).
    pub fn cut(&mut self, a: &str, b: &str) -> Result<()> {
        self.faults.cuts.push((a.to_owned(), b.to_owned()));
        self.apply_cuts(a)
    }

    pub fn heal(&mut self, a: &str, b: &str) -> Result<()> {
        self.faults.cuts.retain(|(x, y)| !((x == a && y == b) || (x == b && y == a)));
        if let (Some(pa), Some(pb)) = (self.pods.get(a), self.pods.get(b)) {
            pa.net().netns.unblock(pb.ip())?;
            pb.net().netns.unblock(pa.ip())?;
        }
        Ok(())
    }

    fn apply_cuts(&self, pod: &str) -> Result<()> {
        for (a, b) in &self.faults.cuts {
            let other = if a == pod {
                b
            } else if b == pod {
                a
            } else {
                continue;
            };
            if let (Some(p), Some(o)) = (self.pods.get(pod), self.pods.get(other)) {
                p.net().netns.block(o.ip())?;
                o.net().netns.block(p.ip())?;
            }
        }
        Ok(())
    }

    pub fn write_hosts(&self, store: &Store) -> Result<()> {
        self.write_hosts_with(store, None)
    }

    /// Rewrites the hosts file in place (its inode is bind-mounted into every pod): every pod under its
    /// hostname and, for StatefulSet pods, `<pod>.<service>[.<ns>[.svc[.<domain>]]]`; every Service under
    /// `<svc>[.<ns>[.svc[.<domain>]]]` with its virtual IP or, headless, its ready endpoints.
    fn write_hosts_with(&self, store: &Store, new: Option<(&PodConfig, Ipv4Addr)>) -> Result<()> {
        let (ns, domain) = (&self.namespace, &self.cluster_domain);
        let names = |base: &str| {
            let extra: String = self.extra_domains.iter().map(|d| format!(" {base}.{ns}.svc.{d}")).collect();
            format!("{base}.{ns}.svc.{domain}{extra} {base}.{ns}.svc {base}.{ns} {base}")
        };
        let pods: Vec<(&PodConfig, Ipv4Addr)> = self.pods.values().map(|p| (&p.config, p.ip())).chain(new).collect();
        let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        if let Some(ip) = self.api_service {
            text.push_str(&format!(
                "{ip}\tkubernetes.default.svc.{domain} kubernetes.default.svc kubernetes.default\n"
            ));
        }
        for (config, ip) in &pods {
            match &config.subdomain {
                Some(sub) => text.push_str(&format!("{ip}\t{}\n", names(&format!("{}.{sub}", config.name)))),
                None => text.push_str(&format!("{ip}\t{}\n", config.name)),
            }
        }
        for service in store.of_kind("Service") {
            let Ok((_, name)) = kind_and_name(service) else { continue };
            // As cluster DNS answers: a ClusterIP Service at its virtual IP (the agent's Service proxy), a
            // headless one with the ready endpoints of its EndpointSlices.
            let addresses = match cluster_ip(service) {
                Some(ip) => vec![ip.to_string()],
                None => ready_endpoints(store, &name),
            };
            for ip in addresses {
                text.push_str(&format!("{ip}\t{}\n", names(&name)));
            }
        }
        let path = self.dir.join("hosts");
        let file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        // Pods resolve names while this runs: truncating first would leave them an empty file, and names
        // that exist failing to resolve. The new text overwrites the old in one write, padded with a comment
        // to the old length, so that the file never shrinks.
        let old_len = file.metadata().context(|| format!("reading {}", path.display()))?.len() as usize;
        if text.len() < old_len {
            let pad = old_len - text.len();
            text.push_str(&format!("{:<width$}\n", if pad > 1 { "#" } else { "" }, width = pad - 1));
        }
        file.write_all_at(text.as_bytes(), 0).context(|| format!("writing {}", path.display()))
    }

    /// Stops every pod, stop signals first so that their shutdowns overlap.
    pub fn stop_all(&mut self) {
        for pod in self.pods.values_mut() {
            pod.signal_stop();
        }
        for (name, pod) in std::mem::take(&mut self.pods) {
            if let Err(e) = pod.stop() {
                eprintln!("local-cluster: stopping pod {name}: {e}");
            }
        }
    }
}

/// A Service's virtual IP, when it has one (not headless).
pub fn cluster_ip(service: &Value) -> Option<std::net::IpAddr> {
    service.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|ip| ip.parse().ok())
}

/// The ready addresses of the EndpointSlices of Service `name` (a headless Service with
/// `publishNotReadyAddresses` has its not-ready pods marked ready by the endpoints controller).
fn ready_endpoints(store: &Store, name: &str) -> Vec<String> {
    let mut addresses: Vec<String> = store
        .of_kind("EndpointSlice")
        .filter(|slice| {
            slice.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) == Some(name)
        })
        .flat_map(|slice| slice.get("endpoints").and_then(Value::as_array).into_iter().flatten())
        .filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false))
        .flat_map(|e| e.get("addresses").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}
