//! A namespace on the run's control plane with Helm pointed at it: the verbs of the scenarios and benchmarks
//! (install, upgrade, exec, SQL, waits) and what the cluster says of itself when one fails.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use control_plane::ControlPlane;
use helm_engine::{Helm, ReleaseOptions, Releases};
use local_cluster::agent::{Command, NodeAgent};
use local_cluster::{ExecOutput, Postgres};
use serde_json::Value;

use crate::chart::{self, COORDINATOR, COORDINATOR_SERVICE, NODES};
use crate::psql::{self, SOCKET};

/// Scenarios share the node; one that cordons or drains it has it alone.
static NODE: RwLock<()> = RwLock::new(());

/// A scenario's hold on the node, released when its namespace is gone.
struct NodeUse {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

/// A namespace on the run's control plane, with Helm pointed at it; deleted (and its pods gone) on drop.
pub struct Space {
    _node: NodeUse,
    pub plane: &'static ControlPlane,
    pub agent: &'static NodeAgent,
    pub ns: String,
    pub helm: Releases,
}

impl Space {
    /// The namespace, enforcing Pod Security `level` when given.
    pub fn create(postgres: &Postgres, ns: &str, level: Option<&str>) -> anyhow::Result<Space> {
        let node = NodeUse { _shared: Some(NODE.read().unwrap_or_else(PoisonError::into_inner)), _alone: None };
        Self::create_using(postgres, ns, level, node)
    }

    /// The namespace, on a node no other scenario uses meanwhile.
    pub fn create_alone(postgres: &Postgres, ns: &str) -> anyhow::Result<Space> {
        let node = NodeUse { _shared: None, _alone: Some(NODE.write().unwrap_or_else(PoisonError::into_inner)) };
        Self::create_using(postgres, ns, None, node)
    }

    fn create_using(postgres: &Postgres, ns: &str, level: Option<&str>, node: NodeUse) -> anyhow::Result<Space> {
        let plane = crate::control_plane()?;
        let agent = crate::node_agent(postgres)?;
        plane.kubectl(&["create", "namespace", ns], None)?;
        let helm = Helm::discover()?.releases(&plane.kubeconfig(), ns)?;
        let space = Space { _node: node, plane, agent, ns: ns.to_owned(), helm };
        if let Some(level) = level {
            space.kubectl(&["label", "namespace", ns, &format!("pod-security.kubernetes.io/enforce={level}")])?;
        }
        Ok(space)
    }

    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        // The namespace first: after `--` it would be the command's.
        let args: Vec<&str> = ["-n", self.ns.as_str()].into_iter().chain(args.iter().copied()).collect();
        Ok(self.plane.kubectl(&args, None)?.0)
    }

    /// `kubectl exec <pod> -c postgresql -- sh -c <script>`: its standard output.
    pub fn shell(&self, pod: &str, script: &str) -> anyhow::Result<String> {
        self.kubectl(&["exec", pod, "-c", "postgresql", "--", "sh", "-c", script])
    }

    pub fn kubectl_with_input(&self, args: &[&str], input: &[u8]) -> anyhow::Result<String> {
        let args: Vec<&str> = ["-n", self.ns.as_str()].into_iter().chain(args.iter().copied()).collect();
        Ok(self.plane.kubectl(&args, Some(input))?.0)
    }

    pub fn jsonpath(&self, what: &str, path: &str) -> anyhow::Result<String> {
        self.kubectl(&["get", what, "-o", &format!("jsonpath={path}")])
    }

    /// `helm install my-citus` with the scenario's passwords plus `extra`; Helm returns once the post-install
    /// registration Job has completed on the node.
    pub fn install(&self, extra: Value) -> anyhow::Result<()> {
        self.install_values(&chart::values(extra))
    }

    /// `helm install my-citus` with exactly `values`.
    pub fn install_values(&self, values: &Value) -> anyhow::Result<()> {
        let options = ReleaseOptions { timeout_seconds: Some(600), ..ReleaseOptions::default() };
        self.helm.install(&chart::chart_dir(), "my-citus", values, &options).with_context(|| self.diagnose())?;
        Ok(())
    }

    /// `helm upgrade my-citus` with the scenario's passwords plus `extra`; Helm returns once its hooks completed.
    pub fn upgrade(&self, extra: Value) -> anyhow::Result<()> {
        self.upgrade_values(&chart::values(extra))
    }

    /// `helm upgrade my-citus` with exactly `values`.
    pub fn upgrade_values(&self, values: &Value) -> anyhow::Result<()> {
        let options = ReleaseOptions { timeout_seconds: Some(600), ..ReleaseOptions::default() };
        self.helm.upgrade(&chart::chart_dir(), "my-citus", values, &options).with_context(|| self.diagnose())?;
        Ok(())
    }

    /// `GET http://<pod>:<port><path>` from inside the coordinator, as a scraper in the cluster does.
    pub fn http_get(&self, pod: &str, port: u16, path: &str) -> anyhow::Result<String> {
        let ip = self.jsonpath(&format!("pod/{pod}"), "{.status.podIP}")?;
        let url = format!("http://{ip}:{port}{path}");
        self.kubectl(&["exec", COORDINATOR, "--", "curl", "-sSf", "--max-time", "10", &url])
    }

    /// `kubectl rollout status` of the coordinator and worker StatefulSets: Helm returns before a changed pod
    /// template has rolled out (the chart's releases run without `--wait`).
    pub fn wait_rolled_out(&self, timeout: Duration) -> anyhow::Result<()> {
        for set in ["statefulset/my-citus-coordinator", "statefulset/my-citus-worker"] {
            self.kubectl(&["rollout", "status", set, &format!("--timeout={}s", timeout.as_secs())])
                .with_context(|| self.diagnose())?;
        }
        Ok(())
    }

    /// A claim of 1 GiB named `name` on the node's StorageClass, once bound; returns its volume's directory
    /// on this node (to fill it as a user would copy data onto a volume).
    pub fn bound_claim(&self, name: &str) -> anyhow::Result<std::path::PathBuf> {
        let claim = serde_json::json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        });
        self.kubectl_with_input(&["apply", "-f", "-"], claim.to_string().as_bytes())?;
        self.kubectl(&["wait", "--for=jsonpath={.status.phase}=Bound", &format!("pvc/{name}"), "--timeout=60s"])?;
        self.volume_dir(name)
    }

    /// The directory on this node of the volume bound to `claim` (the agent provisions host paths).
    pub fn volume_dir(&self, claim: &str) -> anyhow::Result<std::path::PathBuf> {
        let volume = self.jsonpath(&format!("pvc/{claim}"), "{.spec.volumeName}")?;
        ensure!(!volume.is_empty(), "claim {claim} is not bound");
        Ok(self.jsonpath(&format!("pv/{volume}"), "{.spec.hostPath.path}")?.into())
    }

    /// Whether the API server has the pod (whatever its phase).
    pub fn has_pod(&self, pod: &str) -> anyhow::Result<bool> {
        Ok(self.jsonpath("pods", "{.items[*].metadata.name}")?.split_whitespace().any(|p| p == pod))
    }

    /// Waits until the API server no longer has the pod (its controller removed it, the node stopped it).
    pub fn wait_gone(&self, pod: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.has_pod(pod)? {
            ensure!(Instant::now() < deadline, "{pod} still exists after {timeout:?}\n{}", self.diagnose());
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }

    /// Waits until the pod exists (its controller creates it) and is Ready.
    pub fn wait_ready_when_created(&self, pod: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.has_pod(pod)? {
            ensure!(Instant::now() < deadline, "{pod} was not created in {timeout:?}\n{}", self.diagnose());
            std::thread::sleep(Duration::from_millis(500));
        }
        self.wait_ready(&[pod], deadline.saturating_duration_since(Instant::now()))
    }

    /// The logs of every pod of every Job whose name starts with `prefix` (all attempts of all revisions of
    /// a hook Job that Helm has not deleted).
    pub fn job_logs(&self, prefix: &str) -> anyhow::Result<String> {
        let jobs = self.jsonpath("jobs", "{.items[*].metadata.name}")?;
        let mut all = String::new();
        for job in jobs.split_whitespace().filter(|j| j.starts_with(prefix)) {
            let selector = format!("batch.kubernetes.io/job-name={job}");
            all.push_str(&self.kubectl(&["logs", "-l", &selector, "--tail=-1", "--all-containers"])?);
        }
        ensure!(!all.is_empty(), "no log of a Job {prefix}*: jobs {jobs}");
        Ok(all)
    }

    /// Runs `act` while noting, every half second, the pods of Job `job`; returns `act`'s result and the log
    /// of each pod seen, read from the node afterwards: Helm deletes a hook Job that succeeded, and with it
    /// what `kubectl logs` could show.
    pub fn reading_job_logs<T>(&self, job: &str, act: impl FnOnce() -> T) -> (T, BTreeMap<String, String>) {
        let done = AtomicBool::new(false);
        let (result, seen) = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let selector = format!("batch.kubernetes.io/job-name={job}");
                let mut seen = std::collections::BTreeSet::new();
                loop {
                    let last = done.load(Ordering::SeqCst);
                    let pods =
                        self.kubectl(&["get", "pods", "-l", &selector, "-o", "jsonpath={.items[*].metadata.name}"]);
                    seen.extend(pods.unwrap_or_default().split_whitespace().map(str::to_owned));
                    if last {
                        return seen;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
            let result = act();
            done.store(true, Ordering::SeqCst);
            (result, watcher.join().unwrap_or_default())
        });
        let logs =
            seen.into_iter().map(|pod| (pod.clone(), self.agent.log(&self.ns, &pod).unwrap_or_default())).collect();
        (result, logs)
    }

    /// Waits until `pod` is Ready again as another pod than the one `old` (its `{.metadata.uid} ...` before)
    /// described: its controller recreated it after a deletion.
    pub fn wait_recreated(&self, pod: &str, old: &str, timeout: Duration) -> anyhow::Result<()> {
        let old_uid = old.split_whitespace().next().unwrap_or_default();
        let deadline = Instant::now() + timeout;
        loop {
            let now = self
                .jsonpath(&format!("pod/{pod}"), "{.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}");
            match now {
                Ok(now) if !now.starts_with(old_uid) && now.ends_with(" True") => return Ok(()),
                _ if Instant::now() > deadline => {
                    bail!("{pod} not recreated and Ready after {timeout:?}\n{}", self.diagnose())
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// SQL as postgres over the coordinator's socket: Ok(stdout) or Err(stderr).
    pub fn try_sql(&self, sql: &str) -> anyhow::Result<Result<String, String>> {
        psql::try_psql(self, COORDINATOR, &SOCKET, sql)
    }

    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        match self.try_sql(sql)? {
            Ok(out) => Ok(out),
            Err(stderr) => bail!("psql in {}/{} failed: {stderr}\nSQL: {sql}", self.ns, COORDINATOR),
        }
    }

    /// SQL as postgres over the socket of `pod` (the coordinator or a worker).
    pub fn sql_in(&self, pod: &str, sql: &str) -> anyhow::Result<String> {
        psql::psql(self, pod, &SOCKET, sql).with_context(|| format!("in namespace {}", self.ns))
    }

    /// Waits until the pods report Ready to the API server.
    pub fn wait_ready(&self, pods: &[&str], timeout: Duration) -> anyhow::Result<()> {
        let mut args =
            vec!["wait".to_owned(), "--for=condition=Ready".to_owned(), format!("--timeout={}s", timeout.as_secs())];
        args.extend(pods.iter().map(|p| format!("pod/{p}")));
        self.kubectl(&args.iter().map(String::as_str).collect::<Vec<_>>()).with_context(|| self.diagnose())?;
        Ok(())
    }

    /// Waits until the coordinator Service answers from inside the coordinator: as with kube-proxy, a Service
    /// follows its pods' readiness a moment later.
    pub fn wait_serving(&self, timeout: Duration) -> anyhow::Result<()> {
        let argv = ["pg_isready", "-t", "2", "-h", COORDINATOR_SERVICE, "-p", "5432", "-U", "postgres", "-d", "citus"];
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.run(COORDINATOR, &argv, &[], None)?;
            if out.status.success() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the coordinator Service does not answer after {timeout:?}: {}{}",
                out.stdout,
                out.stderr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `name=uid,restarts` of the coordinator and worker pods, to tell a restart.
    pub fn identities(&self) -> anyhow::Result<String> {
        let all = self.jsonpath(
            "pods",
            "{range .items[*]}{.metadata.name}={.metadata.uid},{.status.containerStatuses[0].restartCount}{\"\\n\"}{end}",
        )?;
        Ok(all
            .lines()
            .filter(|l| NODES.iter().any(|p| l.starts_with(&format!("{p}="))))
            .map(|l| format!("{l}\n"))
            .collect())
    }

    /// `kubectl exec` of `argv` in `pod` (its first container) with `env` added to the container's and `stdin`
    /// fed to it; through the node agent, whose exec `kubectl exec` also reaches.
    pub fn run(
        &self,
        pod: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> anyhow::Result<ExecOutput> {
        let command = Command { container: None, argv, env, stdin, timeout: Duration::from_secs(120) };
        Ok(self.agent.exec(&self.ns, pod, &command)?)
    }

    /// What the API server and the agent say of the namespace, for a failure's message.
    pub fn diagnose(&self) -> String {
        let get = |args: &[&str]| self.kubectl(args).unwrap_or_else(|e| e.to_string());
        let mut text = format!(
            "objects:\n{}\nevents:\n{}\nlast agent error: {}\n",
            get(&["get", "pods,pvc,jobs,statefulsets,endpointslices", "-o", "wide"]),
            get(&["get", "events", "--sort-by=.lastTimestamp"]),
            self.agent.last_error().unwrap_or_else(|| "none".into())
        );
        for pod in get(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]).split_whitespace() {
            if let Ok(log) = self.agent.log(&self.ns, pod) {
                let lines: Vec<&str> = log.lines().collect();
                text.push_str(&format!("--- {pod} ---\n{}\n", lines[lines.len().saturating_sub(15)..].join("\n")));
            }
        }
        text
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        // The next scenario should not share the node's two cores with this one's pods.
        let _ = self.plane.kubectl(&["delete", "namespace", &self.ns, "--wait=false"], None);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match self.jsonpath("pods", "{.items[*].metadata.name}") {
                Ok(left) if left.trim().is_empty() => return,
                Err(_) => return,
                Ok(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        eprintln!("namespace {}: pods still there 120 s after its deletion", self.ns);
    }
}
