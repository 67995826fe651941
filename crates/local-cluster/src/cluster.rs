//! The facade a scenario drives: Helm's verbs (install, upgrade, rollback, uninstall, test; several
//! releases in one namespace), kubectl's (exec, logs, delete pod, scale statefulset, create job
//! --from=cronjob, patch secret) and faults (a Pending pod, a hard kill, a kill on a log line, a network
//! cut). It owns the object store and the node, and runs the controllers over them.
//!
//! Time moves as in a cluster only while the harness waits (`wait_*`, Jobs, hooks, `tick`): that is when
//! the kubelet probes and restarts containers and the StatefulSet controller replaces missing pods.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_objects::HookEvent;
use serde_json::Value;

use crate::controllers::job::{self, JobContext, JobReport, JobRun, JobStatus};
use crate::controllers::statefulset::{self, StatefulSet};
use crate::error::{Error, Result};
use crate::helm::{Manifest, RenderRequest};
use crate::kubelet::image::{Images, Postgres};
use crate::kubelet::node::Node;
use crate::kubelet::pod::{ExecOutput, KubeletConfig, Owner, Pod};
use crate::sandbox::netns;

/// How the cluster runs (the parts of `helm` and kubelet configuration that matter here).
#[derive(Debug, Clone)]
pub struct Settings {
    pub chart_dir: PathBuf,
    /// The release the short verbs (`install`, `upgrade`) act on.
    pub release: String,
    pub namespace: String,
    /// A directory for pod volumes, claims and logs; the cluster works in a new subdirectory.
    pub work_root: PathBuf,
    pub postgres: Postgres,
    /// Helm's `--timeout`: how long Helm waits for one hook. A hook Job still running then fails the release
    /// operation and goes on in the cluster, as Helm only stops waiting (`Cluster::set_hook_timeout`).
    pub hook_timeout: Duration,
    /// How long a pod may take to become ready during a rolling update or a restart.
    pub ready_timeout: Duration,
    /// The kubelet's first restart back-off (Kubernetes: 10 s).
    pub restart_backoff: Duration,
    /// Keep the work directory (logs, data) after the cluster is dropped.
    pub keep_work_dir: bool,
}

impl Settings {
    /// Release `my-citus` in namespace `citus`, Helm's default timeout of 5 minutes.
    pub fn new(chart_dir: impl Into<PathBuf>, postgres: Postgres, work_root: impl Into<PathBuf>) -> Self {
        Settings {
            chart_dir: chart_dir.into(),
            release: "my-citus".to_owned(),
            namespace: "citus".to_owned(),
            work_root: work_root.into(),
            postgres,
            hook_timeout: Duration::from_secs(300),
            ready_timeout: Duration::from_secs(300),
            restart_backoff: Duration::from_secs(10),
            keep_work_dir: false,
        }
    }
}

/// A release's revisions, newest last.
#[derive(Debug, Default)]
struct Release {
    history: Vec<(Value, Manifest)>,
    /// Revisions (1-based) whose upgrade failed in a pre-upgrade hook. Helm records them too: they take a
    /// revision number (a retry renders the next one, so per-revision hook names differ), and the next
    /// upgrade compares with the last deployed revision, not with them.
    failed: BTreeSet<usize>,
}

impl Release {
    /// The manifest of the last revision that was deployed.
    fn deployed(&self) -> Option<&Manifest> {
        (1..=self.history.len()).rev().find(|r| !self.failed.contains(r)).map(|r| &self.history[r - 1].1)
    }
}

pub struct Cluster {
    settings: Settings,
    store: crate::store::Store,
    node: Node,
    releases: BTreeMap<String, Release>,
    /// StatefulSets the controller manages (applied by Helm), with their live replicas.
    managed: BTreeMap<String, StatefulSet>,
    job_pods: u32,
    /// Hook Jobs that Helm stopped waiting for (its timeout ran out); the Job controller runs them on.
    background_jobs: Vec<JobRun>,
    /// How those ended, by Job name.
    ended_jobs: BTreeMap<String, JobStatus>,
    dir: PathBuf,
}

const EXEC_TIMEOUT: Duration = Duration::from_secs(300);

impl Cluster {
    pub fn new(settings: Settings) -> Result<Self> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        netns::remove_stale();
        let dir =
            settings.work_root.join(format!("lc-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed)));
        let images = Images::from_env(settings.postgres.clone())?;
        let kubelet = KubeletConfig { restart_backoff: settings.restart_backoff };
        let node = Node::new(dir.clone(), images, kubelet, settings.namespace.clone(), settings.hook_timeout)?;
        let store = crate::store::Store::default();
        node.write_hosts(&store)?;
        Ok(Cluster {
            settings,
            store,
            node,
            releases: BTreeMap::new(),
            managed: BTreeMap::new(),
            job_pods: 0,
            background_jobs: Vec::new(),
            ended_jobs: BTreeMap::new(),
            dir,
        })
    }

    /// The cluster's work directory (`logs/<pod>.log`, `claims/<claim>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An object that exists before any release (e.g. the Secret named by `auth.existingSecret`).
    pub fn add_object(&mut self, object: &Value) -> Result<()> {
        self.store.put_extra(object)?;
        self.node.write_hosts(&self.store)
    }

    /// `kubectl patch secret`: sets a key of a Secret. Pods see it in mounted Secret volumes at once (the
    /// kubelet's volume sync) and in env only when restarted, as in Kubernetes.
    pub fn set_secret_value(&mut self, name: &str, key: &str, value: &str) -> Result<()> {
        self.store.set_secret_value(name, key, value)?;
        self.sync_volumes()
    }

    /// The kubelet's volume sync: every running pod's ConfigMap and Secret volumes rewritten from the store
    /// (only changed files; env is not touched).
    fn sync_volumes(&self) -> Result<()> {
        for pod in self.node.pods.values() {
            pod.refresh_volumes(&self.store)?;
        }
        Ok(())
    }

    /// Renders the chart for the default release's next install (revision 1) or upgrade.
    pub fn render(&mut self, values: &Value, is_upgrade: bool) -> Result<Manifest> {
        let release = self.settings.release.clone();
        self.render_release(&release, values, is_upgrade)
    }

    /// Renders the chart as `release` (the cluster domain of the pods' DNS names follows `clusterDomain`).
    pub fn render_release(&mut self, release: &str, values: &Value, is_upgrade: bool) -> Result<Manifest> {
        if let Some(domain) = values.get("clusterDomain").and_then(Value::as_str) {
            self.node.cluster_domain = domain.to_owned();
        }
        let revision = self.releases.get(release).map_or(0, |r| r.history.len() as u32);
        Manifest::render(&RenderRequest {
            chart_dir: &self.settings.chart_dir,
            release,
            namespace: &self.settings.namespace,
            values,
            is_upgrade,
            revision: if is_upgrade { revision + 1 } else { 1 },
        })
    }

    /// `helm install` of the default release.
    pub fn install(&mut self, values: &Value) -> Result<Manifest> {
        let release = self.settings.release.clone();
        self.install_release(&release, values)
    }

    /// `helm install` (without --wait): pre-install hooks, the release's objects and pods, post-install hooks.
    pub fn install_release(&mut self, release: &str, values: &Value) -> Result<Manifest> {
        if self.releases.contains_key(release) {
            return Err(Error::Manifest(format!(
                "cannot re-use a name that is still in use: release {release} exists"
            )));
        }
        let manifest = self.render_release(release, values, false)?;
        self.run_hooks(&manifest, HookEvent::PreInstall)?;
        self.apply_release(release, &manifest)?;
        self.releases.entry(release.to_owned()).or_default().history.push((values.clone(), manifest.clone()));
        self.run_hooks(&manifest, HookEvent::PostInstall)?;
        Ok(manifest)
    }

    /// `helm upgrade` of the default release.
    pub fn upgrade(&mut self, values: &Value) -> Result<Manifest> {
        let release = self.settings.release.clone();
        self.upgrade_release(&release, values)
    }

    /// `helm upgrade`: pre-upgrade hooks, then the changed objects, removed/new/updated pods (a rolling
    /// update waits for each pod to be ready, as `--wait` would), then post-upgrade hooks.
    pub fn upgrade_release(&mut self, release: &str, values: &Value) -> Result<Manifest> {
        if !self.releases.contains_key(release) {
            return Err(Error::Manifest(format!("release {release} has no deployed revision to upgrade")));
        }
        let manifest = self.render_release(release, values, true)?;
        if let Err(e) = self.run_hooks(&manifest, HookEvent::PreUpgrade) {
            let r = self.releases.entry(release.to_owned()).or_default();
            r.history.push((values.clone(), manifest));
            r.failed.insert(r.history.len());
            return Err(e);
        }
        self.apply_release(release, &manifest)?;
        // Pods the upgrade did not replace see a changed Secret or ConfigMap in their volumes, as the
        // kubelet's sync makes them (within about a minute there), before the post-upgrade hooks run.
        self.sync_volumes()?;
        self.releases.entry(release.to_owned()).or_default().history.push((values.clone(), manifest.clone()));
        self.run_hooks(&manifest, HookEvent::PostUpgrade)?;
        Ok(manifest)
    }

    /// `helm rollback RELEASE REVISION`: the stored manifest of that revision applied again as a new
    /// revision, between the pre-rollback and post-rollback hooks of that manifest (Helm runs no upgrade
    /// hooks on a rollback).
    pub fn rollback(&mut self, release: &str, revision: u32) -> Result<Manifest> {
        let (values, manifest) = self
            .releases
            .get(release)
            .and_then(|r| r.history.get(revision.checked_sub(1)? as usize))
            .cloned()
            .ok_or_else(|| Error::Manifest(format!("release {release} has no revision {revision}")))?;
        self.run_hooks(&manifest, HookEvent::PreRollback)?;
        self.apply_release(release, &manifest)?;
        self.sync_volumes()?;
        self.releases.entry(release.to_owned()).or_default().history.push((values, manifest.clone()));
        self.run_hooks(&manifest, HookEvent::PostRollback)?;
        Ok(manifest)
    }

    /// `helm history RELEASE`: the values of each revision, oldest first (revision n at index n - 1).
    pub fn revisions(&self, release: &str) -> Vec<&Value> {
        self.releases.get(release).map(|r| r.history.iter().map(|(values, _)| values).collect()).unwrap_or_default()
    }

    /// `helm uninstall`: pre-delete hooks, the release's objects and pods removed (claims and objects with
    /// `helm.sh/resource-policy: keep` stay), post-delete hooks.
    pub fn uninstall(&mut self, release: &str) -> Result<()> {
        let (_, manifest) = self
            .releases
            .get(release)
            .and_then(|r| r.history.last())
            .cloned()
            .ok_or_else(|| Error::Manifest(format!("release {release} not found")))?;
        self.run_hooks(&manifest, HookEvent::PreDelete)?;
        let gone: Vec<String> = manifest
            .resources()?
            .iter()
            .filter(|v| v["kind"] == "StatefulSet")
            .filter_map(|v| v.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        self.store.remove_release(release);
        self.releases.remove(release);
        for name in &gone {
            self.managed.remove(name);
        }
        let sets: Vec<StatefulSet> = self.managed.values().cloned().collect();
        statefulset::remove_orphans(&mut self.node, &self.store, &sets)?;
        self.node.write_hosts(&self.store)?;
        self.run_hooks(&manifest, HookEvent::PostDelete)
    }

    /// `helm test` of a rendered manifest.
    pub fn helm_test(&mut self, manifest: &Manifest) -> Result<()> {
        self.run_hooks(manifest, HookEvent::Test)
    }

    /// Stores the default release's objects without touching pods (what an apply does first).
    pub fn apply_objects(&mut self, manifest: &Manifest) -> Result<()> {
        self.store.set_release(&self.settings.release, &manifest.resources()?)?;
        self.node.write_hosts(&self.store)
    }

    /// Applies the default release's rendered objects and pods without running hooks or recording a
    /// revision (the middle step of an install, for scenarios and benchmarks that time the steps).
    pub fn apply(&mut self, manifest: &Manifest) -> Result<()> {
        let release = self.settings.release.clone();
        self.apply_release(&release, manifest)
    }

    /// Applies a release: its objects, then every StatefulSet reconciled. `spec.replicas` follows Helm's
    /// three-way merge: the chart's value when it sets one; the default 1 when the previous revision set it
    /// and this one does not (the field is removed); otherwise the live value (e.g. from `kubectl scale`).
    fn apply_release(&mut self, release: &str, manifest: &Manifest) -> Result<()> {
        let resources = manifest.resources()?;
        self.store.set_release(release, &resources)?;
        self.node.write_hosts(&self.store)?;
        let previous = self.releases.get(release).and_then(Release::deployed).cloned();
        let mut applied = Vec::new();
        for v in resources.iter().filter(|v| v["kind"] == "StatefulSet") {
            let mut set = StatefulSet::parse(v)?;
            if !set.replicas_set {
                let had = previous
                    .as_ref()
                    .and_then(|m| m.get("StatefulSet", &set.name))
                    .is_some_and(|old| !matches!(old.pointer("/spec/replicas"), None | Some(Value::Null)));
                set.replicas = if had { 1 } else { self.managed.get(&set.name).map_or(1, |live| live.replicas) };
            }
            applied.push(set.name.clone());
            self.managed.insert(set.name.clone(), set);
        }
        let owned_before: Vec<String> = previous
            .map(|m| {
                m.resources()
                    .unwrap_or_default()
                    .iter()
                    .filter(|v| v["kind"] == "StatefulSet")
                    .filter_map(|v| v.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for name in owned_before.iter().filter(|n| !applied.contains(n)) {
            self.managed.remove(name);
        }
        let sets: Vec<StatefulSet> = self.managed.values().cloned().collect();
        statefulset::remove_orphans(&mut self.node, &self.store, &sets)?;
        for name in applied {
            let set = self.managed[&name].clone();
            statefulset::reconcile(&mut self.node, &self.store, &set, self.settings.ready_timeout)?;
        }
        Ok(())
    }

    /// Runs the hooks of an event in Helm's order. Jobs and Pods run to completion; other kinds are
    /// created. `hook-succeeded` deletions happen after every hook of the event succeeded, as in Helm.
    pub fn run_hooks(&mut self, manifest: &Manifest, event: HookEvent) -> Result<()> {
        let hooks = manifest.hooks(event)?;
        for h in &hooks {
            let (kind, name) = (&h.hook.key.kind, &h.hook.key.name);
            if h.hook.delete_before_creation() {
                self.store.delete_hook(kind, name);
                self.delete_job(name)?;
            }
            let result = match kind.as_str() {
                "Job" => self.run_hook_job(&h.value),
                "Pod" => job::run_hook_pod(&mut self.node, &self.store, self.settings.hook_timeout, &h.value),
                _ => self.store.put_hook(&h.value),
            };
            if let Err(source) = result {
                if h.hook.delete_on_failure() {
                    self.store.delete_hook(kind, name);
                    self.delete_job(name)?;
                }
                return Err(Error::Hook {
                    phase: event.to_string(),
                    kind: kind.clone(),
                    name: name.clone(),
                    source: Box::new(source),
                });
            }
        }
        for h in hooks.iter().rev().filter(|h| h.hook.delete_on_success()) {
            self.store.delete_hook(&h.hook.key.kind, &h.hook.key.name);
        }
        Ok(())
    }

    /// A hook Job: created, then waited for up to Helm's timeout. When that runs out, Helm fails the release
    /// operation but the Job is not deleted: it goes on under the Job controller (`tick`, `job_status`).
    fn run_hook_job(&mut self, job: &Value) -> Result<()> {
        let mut run = JobRun::new(job)?;
        let deadline = Instant::now() + self.settings.hook_timeout;
        loop {
            self.node.sync()?;
            self.step_background_jobs()?;
            if let Some(done) = run.step(&mut self.node, &self.store, &mut self.job_pods)? {
                return done.map(drop);
            }
            if Instant::now() >= deadline {
                let what = format!("Job {} to complete (Helm stops waiting; the Job goes on)", run.name());
                let log_tail = run.log_tail();
                self.background_jobs.push(run);
                return Err(Error::Timeout { what, waited: self.settings.hook_timeout, log_tail });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One pass of the Job controller over the Jobs Helm stopped waiting for.
    fn step_background_jobs(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.background_jobs.len() {
            match self.background_jobs[i].step(&mut self.node, &self.store, &mut self.job_pods)? {
                None => i += 1,
                Some(result) => {
                    let run = self.background_jobs.remove(i);
                    self.ended_jobs.insert(run.name().to_owned(), JobStatus::from(&result));
                }
            }
        }
        Ok(())
    }

    /// A Job deleted (Helm's hook deletion): a pod it still runs is deleted with it.
    fn delete_job(&mut self, name: &str) -> Result<()> {
        self.ended_jobs.remove(name);
        if let Some(i) = self.background_jobs.iter().position(|r| r.name() == name) {
            let mut run = self.background_jobs.remove(i);
            run.kill(&mut self.node, &self.store, "deleted")?;
        }
        Ok(())
    }

    /// `kubectl get job NAME` for a hook Job Helm stopped waiting for: running, or how it ended. `None` for
    /// any other Job (those Helm waited for ended within the Helm command).
    pub fn job_status(&self, name: &str) -> Option<JobStatus> {
        if self.background_jobs.iter().any(|r| r.name() == name) {
            return Some(JobStatus::Running);
        }
        self.ended_jobs.get(name).cloned()
    }

    /// Whether a hook Job that Helm stopped waiting for still runs.
    pub fn hook_jobs_running(&self) -> bool {
        !self.background_jobs.is_empty()
    }

    /// The pod a Job runs now (Jobs Helm stopped waiting for).
    pub fn job_pod(&self, name: &str) -> Option<&str> {
        self.background_jobs.iter().find(|r| r.name() == name).and_then(JobRun::pod)
    }

    /// Helm's `--timeout` for the following Helm verbs.
    pub fn set_hook_timeout(&mut self, timeout: Duration) {
        self.settings.hook_timeout = timeout;
    }

    /// Runs a Job object to completion (what the Job controller does with a created Job).
    pub fn run_job(&mut self, job: &Value) -> Result<JobReport> {
        let mut ctx =
            JobContext { store: &self.store, timeout: self.settings.hook_timeout, pod_counter: &mut self.job_pods };
        job::run_job(&mut self.node, &mut ctx, job)
    }

    /// `kubectl create job NAME --from=cronjob/CRONJOB`, run to completion.
    pub fn create_job_from_cronjob(&mut self, cronjob: &str, name: &str) -> Result<JobReport> {
        let cron =
            self.store.get("CronJob", cronjob).ok_or_else(|| Error::Manifest(format!("no CronJob {cronjob}")))?;
        let template = cron
            .pointer("/spec/jobTemplate")
            .cloned()
            .ok_or_else(|| Error::Manifest(format!("CronJob {cronjob} has no jobTemplate")))?;
        let mut job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": template.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})), "spec": template["spec"]});
        job["metadata"]["name"] = Value::String(name.to_owned());
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] = Value::String("manual".to_owned());
        self.run_job(&job)
    }

    /// `kubectl scale statefulset NAME --replicas=N` (what an HPA does): the controller acts at once.
    pub fn scale_statefulset(&mut self, name: &str, replicas: u32) -> Result<()> {
        let set = self.managed.get_mut(name).ok_or_else(|| Error::Manifest(format!("no StatefulSet {name}")))?;
        set.replicas = replicas;
        let set = set.clone();
        statefulset::reconcile(&mut self.node, &self.store, &set, self.settings.ready_timeout)
    }

    /// The replicas a StatefulSet has now.
    pub fn statefulset_replicas(&self, name: &str) -> Option<u32> {
        self.managed.get(name).map(|s| s.replicas)
    }

    /// One pass of the kubelet, the StatefulSet controller (missing pods recreated) and the Job controller
    /// (Jobs Helm stopped waiting for).
    pub fn tick(&mut self) -> Result<()> {
        self.node.sync()?;
        self.step_background_jobs()?;
        let sets: Vec<StatefulSet> = self.managed.values().cloned().collect();
        for set in &sets {
            statefulset::reconcile(&mut self.node, &self.store, set, self.settings.ready_timeout)?;
        }
        Ok(())
    }

    /// Runs the cluster until `done` holds or `timeout` passes; `what` names the condition in the error.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Cluster) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.tick()?;
            if done(self)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout { what: what.to_owned(), waited: timeout, log_tail: String::new() });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Names of the pods that run now (Pending pods excluded).
    pub fn pod_names(&self) -> Vec<String> {
        self.node.pods.keys().cloned().collect()
    }

    pub fn pod(&self, name: &str) -> Result<&Pod> {
        self.node.pod(name)
    }

    pub fn pod_mut(&mut self, name: &str) -> Result<&mut Pod> {
        self.node.pod_mut(name)
    }

    /// `kubectl exec <pod> -- argv` (first container) with extra environment and optional stdin.
    pub fn exec(&self, pod: &str, argv: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Result<ExecOutput> {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        self.pod(pod)?.exec(&argv, env, stdin, EXEC_TIMEOUT)
    }

    /// `kubectl exec <pod> -c <container> -- argv`.
    pub fn exec_container(
        &self,
        pod: &str,
        container: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput> {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        self.pod(pod)?.exec_container(container, &argv, env, stdin, EXEC_TIMEOUT)
    }

    /// `kubectl port-forward` + an HTTP GET: the status and body of `path` on the pod's `port`.
    pub fn http_get(&self, pod: &str, port: u16, path: &str) -> Result<(u16, String)> {
        let p = self.pod(pod)?;
        let addr = std::net::SocketAddr::from((p.ip(), port));
        netns::connect_in(p.net().netns.path(), addr, Some(path.to_owned()), Duration::from_secs(10))
            .map_err(|e| Error::Manifest(format!("GET {path} from pod {pod}: {e}")))
    }

    /// `kubectl logs <pod>` (every container, every start).
    pub fn logs(&self, pod: &str) -> Result<String> {
        let path = self.dir.join("logs").join(format!("{pod}.log"));
        fs::read_to_string(&path).map_err(|source| Error::Io { context: format!("reading {}", path.display()), source })
    }

    /// Waits until the pod's containers are ready, running the kubelet meanwhile.
    pub fn wait_ready(&mut self, pod: &str, timeout: Duration) -> Result<()> {
        self.tick()?;
        self.node.wait_ready(pod, timeout)
    }

    /// Waits until every pod of every StatefulSet is ready (a Pending pod never is: the error names it).
    pub fn wait_all_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.tick()?;
        for set in self.managed.values() {
            for ordinal in 0..set.replicas {
                let name = set.pod_name(ordinal);
                if self.node.is_pending(&name) {
                    return Err(Error::Manifest(format!("pod {name} is Pending")));
                }
            }
        }
        let names: Vec<String> = self
            .node
            .pods
            .values()
            .filter(|p| matches!(p.config.owner, Owner::StatefulSet { .. }))
            .map(|p| p.name().to_owned())
            .collect();
        for name in names {
            self.node.wait_ready(&name, deadline.saturating_duration_since(Instant::now()))?;
        }
        Ok(())
    }

    /// `kubectl delete pod`: stops it; its controller (if Helm applied it) recreates it on the next tick.
    pub fn delete_pod(&mut self, name: &str) -> Result<()> {
        self.node.delete_pod(name, &self.store)
    }

    /// Deletes a StatefulSet pod and waits until its controller has recreated it (new address, same claims)
    /// and it is ready.
    pub fn restart_pod(&mut self, name: &str) -> Result<()> {
        let mut config = self.pod(name)?.config.clone();
        let Owner::StatefulSet { name: set, .. } = &config.owner else {
            return Err(Error::Manifest(format!("pod {name} does not belong to a StatefulSet")));
        };
        let managed = self.managed.contains_key(set);
        config.command_override = None;
        self.node.delete_pod(name, &self.store)?;
        if managed {
            self.tick()?;
        } else {
            self.node.create_pod(config, &self.store)?;
        }
        self.node.wait_ready(name, self.settings.ready_timeout)
    }

    /// Starts pod `ordinal` of a StatefulSet of `manifest` by itself, optionally with its command and args
    /// replaced (like `kubectl debug --copy-to`). Returns the pod name.
    pub fn start_statefulset_pod(
        &mut self,
        manifest: &Manifest,
        set: &str,
        ordinal: u32,
        command: Option<Vec<String>>,
    ) -> Result<String> {
        let value = manifest.get("StatefulSet", set).ok_or_else(|| Error::Manifest(format!("no StatefulSet {set}")))?;
        let config = StatefulSet::parse(value)?.pod_config(ordinal, &self.settings.namespace, command);
        let name = config.name.clone();
        self.node.create_pod(config, &self.store)?;
        Ok(name)
    }

    /// Fault: the pod stays Pending whenever it is (re)created: no address, no DNS name, no process.
    /// A running pod is not affected until it is deleted.
    pub fn hold_pending(&mut self, pod: &str) {
        self.node.faults.pending.insert(pod.to_owned());
    }

    /// Ends [`Cluster::hold_pending`]; the controller creates the pod on the next tick.
    pub fn release_pending(&mut self, pod: &str) -> Result<()> {
        self.node.faults.pending.remove(pod);
        self.tick()
    }

    /// Fault: SIGKILL to every process of the pod (its containers restart as the kubelet decides).
    pub fn kill_pod(&mut self, pod: &str) -> Result<()> {
        self.node.pod_mut(pod)?.kill_everything();
        Ok(())
    }

    /// Fault: kill every process of the pod when its log first shows `line` (the pod may not exist yet).
    /// `pod` may also name a Job: the fault fires in whichever of its pods (`<job>-<n>`) logs the line first.
    pub fn kill_on_log_line(&mut self, pod: &str, line: &str) {
        self.node.faults.kill_on_log.push((pod.to_owned(), line.to_owned()));
    }

    /// Ends every [`Cluster::kill_on_log_line`] fault that has not fired.
    pub fn clear_kills_on_log_lines(&mut self) {
        self.node.faults.kill_on_log.clear();
    }

    /// Fault: the two pods cannot reach each other (packets dropped), also after either is recreated.
    pub fn cut_network(&mut self, a: &str, b: &str) -> Result<()> {
        self.node.cut(a, b)
    }

    pub fn heal_network(&mut self, a: &str, b: &str) -> Result<()> {
        self.node.heal(a, b)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.node.stop_all();
        if self.settings.keep_work_dir || std::thread::panicking() {
            eprintln!("local-cluster: work directory kept: {}", self.dir.display());
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("local-cluster: removing {}: {e}", self.dir.display());
        }
    }
}
