//! The kubelet's loop against the API server: the pods bound to the node are started with the sandbox
//! (one [`kubelet::node::Node`] per namespace: its own pod network and name service), their status is
//! reported, and a pod the API server marks for deletion gets its stop signal and grace period before the
//! agent removes it for good. Secrets, ConfigMaps and Services are read as the node, so the Node authorizer
//! decides what a pod can mount.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod as ApiPod, Secret, Service};
use serde_json::{json, Value};

use super::api::Clients;
use super::pod_status::{self, Observed};
use super::services::ServiceProxy;
use crate::error::{Error, Result};
use crate::kubelet::image::Images;
use crate::kubelet::node::Node;
use crate::kubelet::pod::{ApiAccess, ExecTarget, KubeletConfig, Owner, PodConfig};
use crate::kubelet::podspec::{PodSpec, RestartPolicy};
use crate::store::Store;

/// How often the Secrets and ConfigMaps of a namespace are read again (the kubelet's cache TTL), so that a
/// changed ConfigMap reaches the files of running pods. Services and EndpointSlices are read on every pass:
/// they are kube-proxy's, which follows them within moments.
const REFRESH: Duration = Duration::from_secs(2);

pub struct Kubelet {
    node_name: String,
    /// The Service virtual IP range (the API server's `--service-cluster-ip-range`).
    service_cidr: String,
    /// The `kubernetes` Service's virtual IP and port, read once.
    api_service: Option<SocketAddr>,
    dir: PathBuf,
    images: Images,
    config: KubeletConfig,
    init_timeout: Duration,
    spaces: BTreeMap<String, Space>,
    /// uids of pods whose stop runs on a thread of its own.
    stopping: Arc<Mutex<BTreeSet<String>>>,
    faults: Faults,
}

/// Faults a scenario asked for; they also apply to pods and namespaces the node has not seen yet.
#[derive(Default)]
struct Faults {
    /// (namespace, pod): not started while held, reported Pending.
    held: BTreeSet<(String, String)>,
    /// (namespace, pod or Job, line): handed to the namespace's node, which kills the pod on the line.
    kill_on_log: Vec<(String, String, String)>,
    /// namespace -> further DNS zones its names are answered in.
    zones: BTreeMap<String, Vec<String>>,
}

/// The pods of one namespace on this node.
struct Space {
    node: Node,
    store: Store,
    refreshed: Option<Instant>,
    /// The Services and EndpointSlices the hosts file was last written from.
    services: Vec<String>,
    running: BTreeMap<String, Running>,
    retries: BTreeMap<String, Retry>,
    /// uids of held pods already reported Pending.
    held: BTreeSet<String>,
    /// The `kubernetes` Service's forwarder in this namespace's pod network.
    api_proxy: tokio::task::AbortHandle,
    /// The namespace's ClusterIP Services.
    service_proxy: ServiceProxy,
}

impl Drop for Space {
    fn drop(&mut self) {
        self.api_proxy.abort();
    }
}

struct Running {
    uid: String,
    started: SystemTime,
    ready: (bool, SystemTime),
    restart_policy: RestartPolicy,
    init_containers: Vec<(String, String)>,
    reported: Option<Value>,
}

/// A pod that could not be started: when to try again, and why it failed.
struct Retry {
    uid: String,
    at: Instant,
    attempts: u32,
    reported: Option<Value>,
}

fn meta(pod: &ApiPod) -> Option<(&str, &str, &str)> {
    let m = &pod.metadata;
    Some((m.namespace.as_deref()?, m.name.as_deref()?, m.uid.as_deref()?))
}

/// The Secrets and ConfigMaps a pod spec refers to (volumes, env, envFrom).
fn references(spec: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut secrets, mut maps) = (BTreeSet::new(), BTreeSet::new());
    let mut add = |kind: &str, name: Option<&str>| {
        if let Some(name) = name {
            if kind == "secret" {
                secrets.insert(name.to_owned())
            } else {
                maps.insert(name.to_owned())
            };
        }
    };
    let str_at = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    for v in spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        add("secret", str_at(v, "/secret/secretName").as_deref());
        add("configMap", str_at(v, "/configMap/name").as_deref());
        for source in v.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten() {
            add("secret", str_at(source, "/secret/name").as_deref());
            add("configMap", str_at(source, "/configMap/name").as_deref());
        }
    }
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|k| spec.get(k).and_then(Value::as_array).into_iter().flatten());
    for c in containers {
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            add("secret", str_at(e, "/valueFrom/secretKeyRef/name").as_deref());
            add("configMap", str_at(e, "/valueFrom/configMapKeyRef/name").as_deref());
        }
        for e in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
            add("secret", str_at(e, "/secretRef/name").as_deref());
            add("configMap", str_at(e, "/configMapRef/name").as_deref());
        }
    }
    (secrets, maps)
}

impl Kubelet {
    pub fn new(
        node_name: String,
        service_cidr: String,
        dir: PathBuf,
        images: Images,
        config: KubeletConfig,
        init_timeout: Duration,
    ) -> Self {
        Kubelet {
            node_name,
            service_cidr,
            api_service: None,
            dir,
            images,
            config,
            init_timeout,
            spaces: BTreeMap::new(),
            stopping: Arc::default(),
            faults: Faults::default(),
        }
    }

    /// The container of a running pod, to run a command in.
    pub fn exec_target(&self, namespace: &str, pod: &str, container: Option<&str>) -> Result<ExecTarget> {
        self.space_pod(namespace, pod)?.exec_target(container)
    }

    /// The log of a pod that runs, or that ran here and was deleted (its file stays on the node, as a
    /// container runtime keeps logs until they are collected).
    pub fn log_path(&self, namespace: &str, pod: &str) -> Result<PathBuf> {
        if let Ok(running) = self.space_pod(namespace, pod) {
            return Ok(running.log_path().to_owned());
        }
        let kept = self.dir.join("namespaces").join(namespace).join("logs").join(format!("{pod}.log"));
        if kept.exists() {
            Ok(kept)
        } else {
            Err(no_pod(namespace, pod))
        }
    }

    /// Fault: the pod is not started whenever it is (re)created, and stays Pending; a running pod is not
    /// affected until it is deleted.
    pub fn hold_pending(&mut self, namespace: &str, pod: &str) {
        self.faults.held.insert((namespace.to_owned(), pod.to_owned()));
    }

    /// Ends [`Kubelet::hold_pending`]: the next pass starts the pod.
    pub fn release_pending(&mut self, namespace: &str, pod: &str) {
        self.faults.held.remove(&(namespace.to_owned(), pod.to_owned()));
    }

    /// Forgets what was last reported of every pod, so that the next pass reports each again: after the node
    /// was cut off, the node lifecycle controller has marked its pods not Ready in the meantime.
    pub fn forget_reports(&mut self) {
        for space in self.spaces.values_mut() {
            space.running.values_mut().for_each(|r| r.reported = None);
            space.retries.values_mut().for_each(|r| r.reported = None);
            space.held.clear();
        }
    }

    /// Fault: SIGKILL to every process of the pod; its containers restart as its restart policy says.
    pub fn kill_pod(&mut self, namespace: &str, pod: &str) -> Result<()> {
        let space = self.spaces.get_mut(namespace).ok_or_else(|| no_pod(namespace, pod))?;
        space.node.pod_mut(pod).map_err(|_| no_pod(namespace, pod))?.kill_everything();
        Ok(())
    }

    /// Fault: kill every process of `pod` (or of whichever pod of Job `pod` logs it first) when its log first
    /// shows `line`; the pod may not exist yet.
    pub fn kill_on_log_line(&mut self, namespace: &str, pod: &str, line: &str) {
        self.faults.kill_on_log.push((namespace.to_owned(), pod.to_owned(), line.to_owned()));
    }

    /// Ends every [`Kubelet::kill_on_log_line`] fault of `namespace` that has not fired.
    pub fn clear_kills_on_log_lines(&mut self, namespace: &str) {
        self.faults.kill_on_log.retain(|(ns, _, _)| ns != namespace);
        if let Some(space) = self.spaces.get_mut(namespace) {
            space.node.faults.kill_on_log.clear();
        }
    }

    /// The cluster DNS answers the names of `namespace` in `domain` too (a CoreDNS serving a second zone, as
    /// during a change of the cluster's domain).
    pub fn serve_zone(&mut self, namespace: &str, domain: &str) {
        let zones = self.faults.zones.entry(namespace.to_owned()).or_default();
        if !zones.iter().any(|z| z == domain) {
            zones.push(domain.to_owned());
        }
    }

    /// Fault: no packet between pods `a` and `b` of `namespace`, both ways, also after either is recreated.
    pub fn cut(&mut self, namespace: &str, a: &str, b: &str) -> Result<()> {
        self.space_mut(namespace)?.node.cut(a, b)
    }

    pub fn heal(&mut self, namespace: &str, a: &str, b: &str) -> Result<()> {
        self.space_mut(namespace)?.node.heal(a, b)
    }

    fn space_mut(&mut self, namespace: &str) -> Result<&mut Space> {
        self.spaces
            .get_mut(namespace)
            .ok_or_else(|| Error::Manifest(format!("no pod of namespace {namespace} runs on this node")))
    }

    pub(super) fn space_pod(&self, namespace: &str, pod: &str) -> Result<&crate::kubelet::pod::Pod> {
        self.spaces.get(namespace).and_then(|s| s.node.pod(pod).ok()).ok_or_else(|| no_pod(namespace, pod))
    }

    /// One pass over every pod bound to the node.
    pub fn sync(&mut self, api: &Arc<Clients>) -> Result<()> {
        let pods = api.pods_on(&self.node_name)?;
        let mut by_space: BTreeMap<String, Vec<ApiPod>> = BTreeMap::new();
        for pod in pods {
            if let Some((ns, _, _)) = meta(&pod) {
                by_space.entry(ns.to_owned()).or_default().push(pod);
            }
        }
        let mut errors = Vec::new();
        for (ns, pods) in &by_space {
            if !self.spaces.contains_key(ns) {
                let mut node = Node::new(
                    self.dir.join("namespaces").join(ns),
                    self.images.clone(),
                    self.config,
                    ns.clone(),
                    self.init_timeout,
                )?;
                // Pods reach the API server at the `kubernetes` Service's virtual IP, as through kube-proxy.
                let api_service = match self.api_service {
                    Some(a) => a,
                    None => *self.api_service.insert(kubernetes_service(api)?),
                };
                node.network_mut().route_services(&self.service_cidr)?;
                if let IpAddr::V4(ip) = api_service.ip() {
                    node.api_service = Some(ip);
                }
                let api_proxy = api.forward(node.network_mut().listen(api_service)?, api.api_server)?;
                self.spaces.insert(
                    ns.clone(),
                    Space {
                        node,
                        store: Store::default(),
                        refreshed: None,
                        services: Vec::new(),
                        running: BTreeMap::new(),
                        retries: BTreeMap::new(),
                        held: BTreeSet::new(),
                        api_proxy,
                        service_proxy: ServiceProxy::default(),
                    },
                );
            }
            if let Err(e) = self.sync_space(api, ns, pods) {
                errors.push(format!("namespace {ns}: {e}"));
            }
        }
        // Pods the API server no longer has (force-deleted, or the namespace is gone): stopped, nothing to report.
        for (ns, space) in &mut self.spaces {
            let names: BTreeSet<&str> =
                by_space.get(ns).into_iter().flatten().filter_map(|p| p.metadata.name.as_deref()).collect();
            let gone: Vec<String> = space.running.keys().filter(|n| !names.contains(n.as_str())).cloned().collect();
            for name in gone {
                space.stop(&name, None, api, &self.stopping);
            }
            space.retries.retain(|n, _| names.contains(n.as_str()));
        }
        self.spaces.retain(|ns, s| by_space.contains_key(ns) || !s.running.is_empty());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Agent(errors.join("\n")))
        }
    }

    fn sync_space(&mut self, api: &Arc<Clients>, ns: &str, pods: &[ApiPod]) -> Result<()> {
        let space = self.spaces.get_mut(ns).ok_or_else(|| Error::Manifest(format!("namespace {ns}")))?;
        let to_start = pods.iter().any(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            !space.running.contains_key(name) && p.metadata.deletion_timestamp.is_none()
        });
        let objects_due = to_start || space.refreshed.is_none_or(|t| t.elapsed() >= REFRESH);
        space.refresh(api, ns, pods, objects_due)?;
        let mut errors = Vec::new();
        for pod in pods {
            let Some((_, name, uid)) = meta(pod) else { continue };
            let stale = space.running.get(name).is_some_and(|r| r.uid != uid);
            if stale {
                space.stop(name, None, api, &self.stopping);
            }
            if pod.metadata.deletion_timestamp.is_some() {
                if space.running.contains_key(name) {
                    space.stop(name, Some(uid.to_owned()), api, &self.stopping);
                } else if !self.stopping.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(uid) {
                    api.delete_pod_now(ns, name, uid)?;
                }
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
            if !space.running.contains_key(name) && self.faults.held.contains(&(ns.to_owned(), name.to_owned())) {
                if space.held.insert(uid.to_owned()) {
                    let message = "held Pending by a fault of the test: the node agent does not start it";
                    api.patch_pod_status(ns, name, &json!({"phase": "Pending", "message": message}))?;
                }
                continue;
            }
            if !space.running.contains_key(name) && phase != "Succeeded" && phase != "Failed" {
                let api_service = self.api_service.ok_or_else(|| Error::Agent("no kubernetes Service".into()))?;
                if let Err(e) = space.start(api, pod, (ns, name, uid), api_service, self.config) {
                    errors.push(format!("pod {name}: {e}"));
                }
            }
        }
        let (mine, others) =
            std::mem::take(&mut self.faults.kill_on_log).into_iter().partition(|(n, _, _)| n.as_str() == ns);
        self.faults.kill_on_log = others;
        space
            .node
            .faults
            .kill_on_log
            .extend(mine.into_iter().map(|(_, pod, line): (String, String, String)| (pod, line)));
        space.held.retain(|uid| pods.iter().any(|p| p.metadata.uid.as_deref() == Some(uid.as_str())));
        let zones = self.faults.zones.get(ns).cloned().unwrap_or_default();
        if space.node.extra_domains != zones {
            space.node.extra_domains = zones;
            // The hosts file is written again below.
            space.services.clear();
        }
        if let Err(e) = space.node.sync() {
            errors.push(e.to_string());
        }
        for (name, running) in &mut space.running {
            let Ok(pod) = space.node.pod(name) else { continue };
            let containers = pod.container_reports();
            let ready = containers.iter().all(|c| c.ready);
            if ready != running.ready.0 {
                running.ready = (ready, SystemTime::now());
            }
            let status = pod_status::status(&Observed {
                containers: &containers,
                init_containers: &running.init_containers,
                restart_policy: running.restart_policy,
                ip: pod.ip(),
                host_ip: "127.0.0.1",
                started: running.started,
                ready_since: running.ready,
            });
            if running.reported.as_ref() != Some(&status) {
                api.patch_pod_status(ns, name, &status)?;
                running.reported = Some(status);
            }
        }
        let services: Vec<String> =
            space.store.of_kind("Service").chain(space.store.of_kind("EndpointSlice")).map(|s| s.to_string()).collect();
        if services != space.services {
            space.node.write_hosts(&space.store)?;
            let api_service = self.api_service.ok_or_else(|| Error::Agent("no kubernetes Service".into()))?;
            space.service_proxy.sync(api, space.node.network(), &space.store, api_service)?;
            space.services = services;
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Agent(errors.join("\n")))
        }
    }

    /// Stops every pod (the agent stops; the API objects stay, as when a kubelet dies).
    pub fn stop_all(&mut self) {
        for space in self.spaces.values_mut() {
            space.node.stop_all();
        }
        self.spaces.clear();
    }
}

fn no_pod(namespace: &str, pod: &str) -> Error {
    Error::Manifest(format!("no pod {pod} runs in namespace {namespace} on this node"))
}

impl Space {
    /// Reads the namespace's Services and what its pods refer to, as the node.
    fn refresh(&mut self, api: &Clients, ns: &str, pods: &[ApiPod], objects_due: bool) -> Result<()> {
        let mut store = Store::default();
        for svc in api.services(ns)? {
            store.put(&to_value(&svc)?)?;
        }
        for slice in api.endpoint_slices(ns)? {
            store.put(&to_value(&slice)?)?;
        }
        if !objects_due {
            for object in self.store.of_kind("Secret").chain(self.store.of_kind("ConfigMap")) {
                store.put(object)?;
            }
            self.store = store;
            return Ok(());
        }
        let (mut secrets, mut maps) = (BTreeSet::new(), BTreeSet::new());
        for pod in pods {
            let (s, m) = references(&to_value(&pod.spec)?);
            secrets.extend(s);
            maps.extend(m);
        }
        for name in secrets {
            if let Some(secret) = api.get_opt::<Secret>(ns, &name)? {
                store.put(&to_value(&secret)?)?;
            }
        }
        for name in maps {
            if let Some(map) = api.get_opt::<ConfigMap>(ns, &name)? {
                store.put(&to_value(&map)?)?;
            }
        }
        self.store = store;
        self.refreshed = Some(Instant::now());
        for pod in self.node.pods.values() {
            pod.refresh_volumes(&self.store)?;
        }
        Ok(())
    }

    fn start(
        &mut self,
        api: &Clients,
        pod: &ApiPod,
        (ns, name, uid): (&str, &str, &str),
        api_service: SocketAddr,
        config: KubeletConfig,
    ) -> Result<()> {
        let previous = self.retries.get(name).filter(|r| r.uid == uid);
        if previous.is_some_and(|r| Instant::now() < r.at) {
            return Ok(());
        }
        if previous.is_none() {
            // A new pod of the same name (a StatefulSet's replacement) has a log of its own, as with a kubelet.
            let log = self.node.dir().join("logs").join(format!("{name}.log"));
            match std::fs::remove_file(&log) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Io { context: format!("removing {}", log.display()), source: e })
                }
                _ => {}
            }
        }
        let started = pod_config(api, pod, (ns, name, uid), api_service)
            .and_then(|(pod_config, running)| self.node.create_pod(pod_config, &self.store).map(|()| running));
        let e = match started {
            Ok(running) => {
                self.retries.remove(name);
                self.running.insert(name.to_owned(), running);
                return Ok(());
            }
            Err(e) => e,
        };
        // As the kubelet: the pod stays Pending and is tried again after a back-off; an init container that
        // failed ends a pod that is never restarted.
        let previous = self.retries.remove(name).filter(|r| r.uid == uid);
        let attempts = previous.as_ref().map_or(0, |r| r.attempts) + 1;
        let never = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
        let message = e.to_string();
        let status = if matches!(e, Error::PodExited { .. }) && never {
            json!({"phase": "Failed", "reason": "InitContainerFailed", "message": message})
        } else {
            json!({"phase": "Pending", "reason": "CreateContainerError", "message": message})
        };
        let mut reported = previous.and_then(|r| r.reported);
        if reported.as_ref() != Some(&status) {
            api.patch_pod_status(ns, name, &status)?;
            reported = Some(status);
        }
        let backoff = config.restart_backoff.saturating_mul(1 << attempts.min(5)).min(Duration::from_secs(300));
        self.retries
            .insert(name.to_owned(), Retry { uid: uid.to_owned(), at: Instant::now() + backoff, attempts, reported });
        Err(e)
    }

    /// Takes the pod off the node and stops it on a thread of its own (stop signal, grace period, SIGKILL);
    /// with `delete_uid`, then deletes it from the API server, as the kubelet ends a graceful deletion.
    fn stop(
        &mut self,
        name: &str,
        delete_uid: Option<String>,
        api: &Arc<Clients>,
        stopping: &Arc<Mutex<BTreeSet<String>>>,
    ) {
        let Some(running) = self.running.remove(name) else { return };
        let Some(pod) = self.node.pods.remove(name) else { return };
        if let Err(e) = self.node.write_hosts(&self.store) {
            eprintln!("node agent: rewriting the hosts file: {e}");
        }
        let (api, stopping, ns, name) =
            (Arc::clone(api), Arc::clone(stopping), pod.config.namespace.clone(), name.to_owned());
        stopping.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(running.uid.clone());
        std::thread::spawn(move || {
            if let Err(e) = pod.stop() {
                eprintln!("node agent: stopping pod {ns}/{name}: {e}");
            }
            if let Some(uid) = delete_uid {
                if let Err(e) = api.delete_pod_now(&ns, &name, &uid) {
                    eprintln!("node agent: {e}");
                }
            }
            stopping.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&running.uid);
        });
    }
}

/// The `kubernetes` Service's virtual IP and HTTPS port.
fn kubernetes_service(api: &Clients) -> Result<SocketAddr> {
    let svc = api
        .get_opt::<Service>("default", "kubernetes")?
        .ok_or_else(|| Error::Agent("the API server has no Service default/kubernetes".into()))?;
    let spec = svc.spec.unwrap_or_default();
    let ip = spec.cluster_ip.and_then(|ip| ip.parse::<IpAddr>().ok());
    let port = spec.ports.unwrap_or_default().iter().find(|p| p.name.as_deref() == Some("https")).map(|p| p.port);
    match (ip, port.and_then(|p| u16::try_from(p).ok())) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(Error::Agent("Service default/kubernetes has no cluster IP or https port".into())),
    }
}

/// What every pod gets to reach the API server: the `kubernetes` Service's environment, and a token for each
/// projected service account token (bound to the pod, as the kubelet requests them).
fn api_access(api: &Clients, pod: &ApiPod, (ns, name, uid): (&str, &str, &str), at: SocketAddr) -> Result<ApiAccess> {
    let (ip, port) = (at.ip().to_string(), at.port().to_string());
    let url = format!("tcp://{ip}:{port}");
    let env = [
        ("KUBERNETES_SERVICE_HOST", ip.clone()),
        ("KUBERNETES_SERVICE_PORT", port.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", port.clone()),
        ("KUBERNETES_PORT", url.clone()),
        (&format!("KUBERNETES_PORT_{port}_TCP"), url),
        (&format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
        (&format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.clone()),
        (&format!("KUBERNETES_PORT_{port}_TCP_ADDR"), ip),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let spec = pod.spec.as_ref();
    let account = spec.and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
    let mut tokens = BTreeMap::new();
    for volume in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for t in sources.into_iter().flatten().filter_map(|s| s.service_account_token.as_ref()) {
            let token =
                api.service_account_token(ns, account, (name, uid), t.audience.as_deref(), t.expiration_seconds)?;
            tokens.insert(format!("{}/{}", volume.name, t.path), token);
        }
    }
    Ok(ApiAccess { env, tokens })
}

/// How to run an API server pod here, and what the agent keeps of it once it runs.
fn pod_config(
    api: &Clients,
    pod: &ApiPod,
    (ns, name, uid): (&str, &str, &str),
    api_service: SocketAddr,
) -> Result<(PodConfig, Running)> {
    let spec = PodSpec::from_value(&format!("pod {ns}/{name}"), &to_value(&pod.spec)?)?;
    let now = SystemTime::now();
    let running = Running {
        uid: uid.to_owned(),
        started: now,
        ready: (false, now),
        restart_policy: spec.restart_policy,
        init_containers: spec.init_containers.iter().map(|c| (c.name.clone(), c.image.clone())).collect(),
        reported: None,
    };
    let config = PodConfig {
        name: name.to_owned(),
        namespace: ns.to_owned(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        subdomain: pod.spec.as_ref().and_then(|s| s.subdomain.clone()),
        claim_templates: BTreeMap::new(),
        bound_claims: bound_claims(api, ns, &spec)?,
        command_override: None,
        owner: Owner::ApiServer { uid: uid.to_owned() },
        api_access: api_access(api, pod, (ns, name, uid), api_service)?,
        spec,
    };
    Ok((config, running))
}

/// The host directory of the volume bound to each claim the pod mounts.
fn bound_claims(api: &Clients, ns: &str, spec: &PodSpec) -> Result<BTreeMap<String, PathBuf>> {
    let mut bound = BTreeMap::new();
    for claim in spec.volumes.iter().filter_map(|v| v.persistent_volume_claim.as_ref()) {
        let name = &claim.claim_name;
        let pvc = api
            .get_opt::<PersistentVolumeClaim>(ns, name)?
            .ok_or_else(|| Error::Manifest(format!("claim {ns}/{name} does not exist")))?;
        let volume = pvc
            .spec
            .and_then(|s| s.volume_name)
            .ok_or_else(|| Error::Manifest(format!("claim {ns}/{name} is not bound to a volume")))?;
        let pv = api
            .get_volume(&volume)?
            .ok_or_else(|| Error::Manifest(format!("volume {volume} of claim {ns}/{name} does not exist")))?;
        let path = pv.spec.and_then(|s| s.host_path).map(|h| h.path).ok_or_else(|| {
            Error::Unsupported(format!("volume {volume} of claim {ns}/{name}: only hostPath volumes are mounted"))
        })?;
        bound.insert(name.clone(), Path::new(&path).to_owned());
    }
    Ok(bound)
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Manifest(format!("encoding an API object: {e}")))
}
