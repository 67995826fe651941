//! The cluster: the objects, the pods and their network, and the Helm operations on them
//! (install, upgrade, hooks, `helm test`) plus what a test does with kubectl (exec, delete a pod, patch a
//! Secret). Name resolution is a shared hosts file (the cluster DNS stand-in) bound over /etc/hosts.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Context, Error, Result};
use crate::image::Postgres;
use crate::manifest::{Manifest, Phase, RenderRequest};
use crate::netns::{self, Network};
use crate::objects::{kind_and_name, Objects};
use crate::pod::{ClusterDirs, ExecOutput, Owner, Pod, PodConfig};
use crate::probe;
use crate::volumes::{Mount, Source};

/// How the cluster runs (the parts of `helm` and kubelet configuration that matter here).
#[derive(Debug, Clone)]
pub struct Settings {
    pub chart_dir: PathBuf,
    pub release: String,
    pub namespace: String,
    /// A directory for pod volumes, claims and logs; the cluster works in a new subdirectory.
    pub work_root: PathBuf,
    pub postgres: Postgres,
    /// Helm's `--timeout`: how long one hook may take.
    pub hook_timeout: Duration,
    /// How long a pod may take to become ready during a rolling update or a restart.
    pub ready_timeout: Duration,
    /// Keep the work directory (logs, data) after the cluster is dropped.
    pub keep_work_dir: bool,
}

impl Settings {
    /// Release `my-citus` in namespace `citus`, Helm's default timeout of 5 minutes.
    pub fn new(
        chart_dir: impl Into<PathBuf>,
        postgres: Postgres,
        work_root: impl Into<PathBuf>,
    ) -> Self {
        Settings {
            chart_dir: chart_dir.into(),
            release: "my-citus".to_owned(),
            namespace: "citus".to_owned(),
            work_root: work_root.into(),
            postgres,
            hook_timeout: Duration::from_secs(300),
            ready_timeout: Duration::from_secs(300),
            keep_work_dir: false,
        }
    }
}

pub struct Cluster {
    pub(crate) settings: Settings,
    pub(crate) objects: Objects,
    pub(crate) pods: BTreeMap<String, Pod>,
    pub(crate) job_pods: u32,
    dir: PathBuf,
    revision: u32,
    cluster_domain: String,
    network: Network,
}

const EXEC_TIMEOUT: Duration = Duration::from_secs(300);

impl Cluster {
    pub fn new(settings: Settings) -> Result<Self> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        netns::remove_stale();
        let dir = settings.work_root.join(format!(
            "lc-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        for sub in ["pods", "claims", "logs"] {
            fs::create_dir_all(dir.join(sub))
                .context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        // No nameserver: glibc then asks 127.0.0.1, which refuses at once inside a pod's namespace.
        let resolv = "# local-cluster: names come from /etc/hosts\noptions timeout:1 attempts:1\n";
        fs::write(dir.join("resolv.conf"), resolv).context(|| "writing resolv.conf".to_owned())?;
        let cluster = Cluster {
            settings,
            objects: Objects::default(),
            pods: BTreeMap::new(),
            job_pods: 0,
            dir,
            revision: 0,
            cluster_domain: "cluster.local".to_owned(),
            network: Network::new()?,
        };
        cluster.write_hosts()?;
        Ok(cluster)
    }

    /// The cluster's work directory (`logs/<pod>.log`, `claims/<claim>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An object that exists before the release (e.g. the Secret named by `auth.existingSecret`).
    pub fn add_object(&mut self, object: &Value) -> Result<()> {
        self.objects.put_extra(object)
    }

    /// `kubectl patch`: sets a key of a Secret; pods started from now on see the new value.
    pub fn set_secret_value(&mut self, name: &str, key: &str, value: &str) -> Result<()> {
        self.objects.set_secret_value(name, key, value)
    }

    /// Renders the chart for the next install (revision 1) or upgrade (next revision). The cluster domain
    /// of the pods' DNS names follows the `clusterDomain` value when there is one.
    pub fn render(&mut self, values: &Value, is_upgrade: bool) -> Result<Manifest> {
        if let Some(domain) = values.get("clusterDomain").and_then(Value::as_str) {
            self.cluster_domain = domain.to_owned();
        }
        Manifest::render(&RenderRequest {
            chart_dir: &self.settings.chart_dir,
            release: &self.settings.release,
            namespace: &self.settings.namespace,
            values,
            is_upgrade,
            revision: if is_upgrade { self.revision + 1 } else { 1 },
        })
    }

    /// `helm install` (without --wait): pre-install hooks, the release's objects and pods, post-install
    /// hooks. Returns the rendered manifest.
    pub fn install(&mut self, values: &Value) -> Result<Manifest> {
        let manifest = self.render(values, false)?;
        self.run_hooks(&manifest, Phase::PreInstall)?;
        self.apply(&manifest)?;
        self.revision = 1;
        self.run_hooks(&manifest, Phase::PostInstall)?;
        Ok(manifest)
    }

    /// `helm upgrade`: pre-upgrade hooks, then the changed objects, removed/new/updated pods (a rolling
    /// update waits for each pod to be ready, as `--wait` would), then post-upgrade hooks.
    pub fn upgrade(&mut self, values: &Value) -> Result<Manifest> {
        let manifest = self.render(values, true)?;
        self.run_hooks(&manifest, Phase::PreUpgrade)?;
        self.apply(&manifest)?;
        self.revision += 1;
        self.run_hooks(&manifest, Phase::PostUpgrade)?;
        Ok(manifest)
    }

    /// `helm test`.
    pub fn helm_test(&mut self, manifest: &Manifest) -> Result<()> {
        self.run_hooks(manifest, Phase::Test)
    }

    /// Stores the release's objects without touching pods (what `apply` does first).
    pub fn apply_objects(&mut self, manifest: &Manifest) -> Result<()> {
        self.objects.set_release(&manifest.resources())?;
        self.write_hosts()
    }

    /// Runs the hooks of a phase in Helm's order. Jobs and Pods run to completion; other kinds are created.
    /// `hook-succeeded` deletions happen after the whole phase succeeded, as in Helm.
    pub fn run_hooks(&mut self, manifest: &Manifest, phase: Phase) -> Result<()> {
        let hooks = manifest.hooks(phase)?;
        for hook in &hooks {
            if hook.delete_before_creation {
                self.objects.delete_hook(&hook.kind, &hook.name);
            }
            let result = match hook.kind.as_str() {
                "Job" => self.run_job(&hook.value).map(drop),
                "Pod" => self.run_hook_pod(&hook.value),
                _ => self.objects.put_hook(&hook.value),
            };
            if let Err(source) = result {
                if hook.delete_on_failure {
                    self.objects.delete_hook(&hook.kind, &hook.name);
                }
                return Err(Error::Hook {
                    phase: phase.as_str().to_owned(),
                    kind: hook.kind.clone(),
                    name: hook.name.clone(),
                    source: Box::new(source),
                });
            }
        }
        for hook in hooks.iter().rev().filter(|h| h.delete_on_success) {
            self.objects.delete_hook(&hook.kind, &hook.name);
        }
        Ok(())
    }

    /// Names of the pods that exist now.
    pub fn pod_names(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    pub fn pod(&self, name: &str) -> Result<&Pod> {
        self.pods
            .get(name)
            .ok_or_else(|| Error::Manifest(format!("no pod {name}")))
    }

    pub fn pod_mut(&mut self, name: &str) -> Result<&mut Pod> {
        self.pods
            .get_mut(name)
            .ok_or_else(|| Error::Manifest(format!("no pod {name}")))
    }

    /// `kubectl exec <pod> -- argv` with extra environment and optional stdin.
    pub fn exec(
        &self,
        pod: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput> {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        self.pod(pod)?.exec(&argv, env, stdin, EXEC_TIMEOUT)
    }

    /// Waits until the pod's readiness probe passes.
    pub fn wait_ready(&mut self, pod: &str, timeout: Duration) -> Result<()> {
        probe::wait_ready(self.pod_mut(pod)?, timeout)
    }

    /// Waits until every pod of every StatefulSet is ready.
    pub fn wait_all_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        for pod in self
            .pods
            .values_mut()
            .filter(|p| matches!(p.config.owner, Owner::StatefulSet { .. }))
        {
            probe::wait_ready(
                pod,
                deadline.saturating_duration_since(std::time::Instant::now()),
            )?;
        }
        Ok(())
    }

    /// `kubectl delete pod`: stops it and removes its namespace and non-persistent volumes.
    pub fn delete_pod(&mut self, name: &str) -> Result<()> {
        let pod = self
            .pods
            .remove(name)
            .ok_or_else(|| Error::Manifest(format!("no pod {name}")))?;
        pod.stop()?;
        self.write_hosts()
    }

    /// Creates and starts a pod (its name and address join the hosts file first).
    pub(crate) fn create_pod(&mut self, config: PodConfig) -> Result<()> {
        if self.pods.contains_key(&config.name) {
            return Err(Error::Manifest(format!(
                "pod {} already exists",
                config.name
            )));
        }
        let in_use: Vec<_> = self.pods.values().map(Pod::ip).collect();
        let net = self.network.add_pod(&in_use)?;
        self.write_hosts_with(Some((&config, net.ip)))?;
        let extra = [
            Mount {
                target: "/etc/hosts".into(),
                source: Source::Path(self.dir.join("hosts")),
                read_only: true,
            },
            Mount {
                target: "/etc/resolv.conf".into(),
                source: Source::Path(self.dir.join("resolv.conf")),
                read_only: true,
            },
        ];
        let dirs = ClusterDirs {
            pods: &self.dir.join("pods"),
            claims: &self.dir.join("claims"),
            logs: &self.dir.join("logs"),
        };
        let name = config.name.clone();
        let pod = Pod::start(
            config,
            net,
            &self.objects,
            &self.settings.postgres,
            &dirs,
            &extra,
        );
        match pod {
            Ok(pod) => {
                self.pods.insert(name, pod);
                Ok(())
            }
            Err(e) => {
                self.write_hosts()?;
                Err(e)
            }
        }
    }

    fn write_hosts(&self) -> Result<()> {
        self.write_hosts_with(None)
    }

    /// Rewrites the hosts file in place (its inode is bind-mounted into every pod): every pod under its
    /// hostname and, for StatefulSet pods, `<pod>.<service>[.<ns>[.svc[.<domain>]]]`; every Service under
    /// `<svc>[.<ns>[.svc[.<domain>]]]` with the addresses of the pods it selects (no virtual IPs).
    fn write_hosts_with(&self, new: Option<(&PodConfig, std::net::Ipv4Addr)>) -> Result<()> {
        let (ns, domain) = (&self.settings.namespace, &self.cluster_domain);
        let names =
            |base: &str| format!("{base}.{ns}.svc.{domain} {base}.{ns}.svc {base}.{ns} {base}");
        let pods: Vec<(&PodConfig, std::net::Ipv4Addr)> = self
            .pods
            .values()
            .map(|p| (&p.config, p.ip()))
            .chain(new)
            .collect();
        let mut text =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (config, ip) in &pods {
            match &config.subdomain {
                Some(sub) => text.push_str(&format!(
                    "{ip}\t{}\n",
                    names(&format!("{}.{sub}", config.name))
                )),
                None => text.push_str(&format!("{ip}\t{}\n", config.name)),
            }
        }
        for service in self.objects.of_kind("Service") {
            let Ok((_, name)) = kind_and_name(service) else {
                continue;
            };
            let Some(selector) = service.pointer("/spec/selector").and_then(Value::as_object)
            else {
                continue;
            };
            for (config, ip) in &pods {
                if selector.iter().all(|(k, v)| {
                    v.as_str()
                        .is_some_and(|v| config.labels.get(k).is_some_and(|l| l == v))
                }) {
                    text.push_str(&format!("{ip}\t{}\n", names(&name)));
                }
            }
        }
        let path = self.dir.join("hosts");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        file.write_all(text.as_bytes())
            .context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop signals to all pods first, so that their shutdowns overlap.
        for pod in self.pods.values_mut() {
            pod.signal_stop();
        }
        for (name, pod) in std::mem::take(&mut self.pods) {
            if let Err(e) = pod.stop() {
                eprintln!("local-cluster: stopping pod {name}: {e}");
            }
        }
        if self.settings.keep_work_dir || std::thread::panicking() {
            eprintln!("local-cluster: work directory kept: {}", self.dir.display());
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("local-cluster: removing {}: {e}", self.dir.display());
        }
    }
}

/// Labels of a pod template (`metadata.labels`).
pub(crate) fn template_labels(template: &Value) -> BTreeMap<String, String> {
    template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}
