//! The Kubernetes side, thin over kube-rs: the release's names, its password, a port-forward to the
//! coordinator, its worker pods, Jobs from the backup CronJob. Tested against a mock API server (tests below).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::net::TcpListener;

use crate::error::{kube_status, Error, Result};
use crate::model::{Backup, BackupList, Node, PodCheck, Role, API_VERSION};

/// Names the chart gives a release's objects (templates/_helpers.tpl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub fullname: String,
}

impl Release {
    pub fn new(name: &str, namespace: &str, fullname_override: Option<&str>) -> Self {
        Release { name: name.to_owned(), namespace: namespace.to_owned(), fullname: fullname(name, fullname_override) }
    }
    pub fn coordinator_pod(&self) -> String {
        format!("{}-coordinator-0", self.fullname)
    }
    pub fn secret(&self) -> String {
        format!("{}-secret", self.fullname)
    }
    pub fn backup_cronjob(&self) -> String {
        format!("{}-backup", self.fullname)
    }
    pub fn worker_selector(&self) -> String {
        format!("app.kubernetes.io/instance={},app.kubernetes.io/component=worker", self.name)
    }
    pub fn instance_selector(&self) -> String {
        format!("app.kubernetes.io/instance={}", self.name)
    }
}

/// The chart's `citus.fullname`: the release name when it contains "citus", else `<release>-citus`; at most
/// 42 characters without a trailing dash.
pub fn fullname(release: &str, fullname_override: Option<&str>) -> String {
    let raw = match fullname_override {
        Some(f) if !f.is_empty() => f.to_owned(),
        _ if release.contains("citus") => release.to_owned(),
        _ => format!("{release}-citus"),
    };
    raw.chars().take(42).collect::<String>().trim_end_matches('-').to_owned()
}

/// A client from the kubeconfig (`--kubeconfig`, `--context`), or the in-cluster config.
pub async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<(Client, String)> {
    let opts = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    let fix = "check --kubeconfig/--context (kubectl config get-contexts), or use --dsn to connect without Kubernetes";
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| Error::Release {
                problem: format!("reading kubeconfig {} failed: {e}", path.display()),
                fix: fix.into(),
            })?;
            Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| Error::Release {
                problem: format!("loading kubeconfig {} failed: {e}", path.display()),
                fix: fix.into(),
            })?
        }
        None if context.is_some() => Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| Error::Release { problem: format!("loading the kubeconfig failed: {e}"), fix: fix.into() })?,
        None => Config::infer().await.map_err(|e| Error::Release {
            problem: format!("no Kubernetes configuration found: {e}"),
            fix: fix.into(),
        })?,
    };
    let ns = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| Error::kube("creating the Kubernetes client", fix, e))?;
    Ok((client, ns))
}

/// The superuser's password from the release's Secret.
pub async fn read_password(client: &Client, namespace: &str, secret: &str, key: &str) -> Result<String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let s = api.get(secret).await.map_err(|e| {
        let fix = match kube_status(&e) {
            Some(404) => format!(
                "check the release name (--release), the namespace (-n {namespace}) and, if the release uses \
                 auth.existingSecret, pass it with --secret"
            ),
            Some(403) => "your user may not read Secrets here: ask for get on secrets, or use --dsn".into(),
            _ => "check that the cluster is reachable (kubectl get pods)".into(),
        };
        Error::kube(format!("reading Secret {namespace}/{secret}"), fix, e)
    })?;
    let data = s.data.unwrap_or_default();
    let Some(v) = data.get(key) else {
        let keys: Vec<&String> = data.keys().collect();
        return Err(Error::Release {
            problem: format!("Secret {namespace}/{secret} has no key {key:?} (keys: {keys:?})"),
            fix: "pass the key that holds the superuser's password with --secret-key".into(),
        });
    };
    String::from_utf8(v.0.clone()).map_err(|_| Error::Release {
        problem: format!("key {key:?} of Secret {namespace}/{secret} is not UTF-8 text"),
        fix: "pass the key that holds the superuser's password with --secret-key".into(),
    })
}

/// A local TCP port forwarding every connection to a pod's port through the API server.
pub struct Forwarder {
    pub local_port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The number of the container port called `name` in a pod's spec.
fn named_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find_map(|p| (p.name.as_deref() == Some(name)).then(|| u16::try_from(p.container_port).ok()).flatten())
}

/// A port-forward to the container port called `port_name` of the pod (its number comes from the pod: a
/// release may set coordinator.containerPorts.postgresql).
pub async fn port_forward(client: &Client, namespace: &str, pod: &str, port_name: &str) -> Result<Forwarder> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let p = pods.get(pod).await.map_err(|e| {
        let fix = match kube_status(&e) {
            Some(404) => format!(
                "check the release name (--release) and namespace (-n {namespace}): kubectl get pods -n {namespace}"
            ),
            _ => "check that the cluster is reachable (kubectl get pods)".into(),
        };
        Error::kube(format!("reading pod {namespace}/{pod}"), fix, e)
    })?;
    let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase != "Running" {
        return Err(Error::Release {
            problem: format!("pod {namespace}/{pod} is {phase}, not Running"),
            fix: format!("wait for it (kubectl get pod -n {namespace} {pod} -w) or look at kubectl describe pod"),
        });
    }
    let port = named_port(&p, port_name).ok_or_else(|| Error::Release {
        problem: format!("pod {namespace}/{pod} has no container port named {port_name}"),
        fix: "check that the release was installed by this chart (kubectl get pod -o yaml), or connect with --dsn"
            .into(),
    })?;
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Error::io("opening a local port for the port-forward", "check the loopback interface", e))?;
    let local_port = listener
        .local_addr()
        .map_err(|e| Error::io("opening a local port for the port-forward", "check the loopback interface", e))?
        .port();
    // Open the first forward now, so that a refusal (RBAC, no streaming) is reported as such; it serves the
    // first local connection, later connections open their own.
    let first = pods.portforward(pod, &[port]).await.map_err(|e| {
        Error::kube(
            format!("opening a port-forward to pod {namespace}/{pod}"),
            "your user needs create on pods/portforward in that namespace (kubectl auth can-i create \
             pods/portforward), or connect with --dsn",
            e,
        )
    })?;
    let pod = pod.to_owned();
    let task = tokio::spawn(async move {
        let mut first = Some(first);
        while let Ok((mut local, _)) = listener.accept().await {
            let (pods, pod, ready) = (pods.clone(), pod.clone(), first.take());
            tokio::spawn(async move {
                // A failed forward closes the local connection; the PostgreSQL client reports it.
                let mut pf = match ready {
                    Some(pf) => pf,
                    None => match pods.portforward(&pod, &[port]).await {
                        Ok(pf) => pf,
                        Err(_) => return,
                    },
                };
                let Some(mut remote) = pf.take_stream(port) else { return };
                let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                drop(remote);
                let _ = pf.join().await;
            });
        }
    });
    Ok(Forwarder { local_port, task })
}

/// Names of the release's worker pods.
pub async fn worker_pods(client: &Client, release: &Release) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release.namespace);
    let list = pods.list(&ListParams::default().labels(&release.worker_selector())).await.map_err(|e| {
        Error::kube(
            format!("listing worker pods in {}", release.namespace),
            "your user needs list on pods in that namespace",
            e,
        )
    })?;
    let mut names: Vec<String> = list.items.into_iter().filter_map(|p| p.metadata.name).collect();
    names.sort();
    Ok(names)
}

/// With worker.autoscaling.enabled the chart's registration loop registers every worker pod below the HPA's
/// maxReplicas (the HPA never scales in); a pod at or above it is left unregistered on purpose. None when
/// the release has no worker HPA.
pub async fn registered_worker_limit(client: &Client, release: &Release) -> Result<Option<i32>> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &release.namespace);
    let name = format!("{}-worker", release.fullname);
    match api.get_opt(&name).await {
        Ok(hpa) => Ok(hpa.and_then(|h| h.spec).map(|s| s.max_replicas)),
        // Not allowed to read HPAs: judge every pod (the worst case is a warning too many).
        Err(e) if kube_status(&e) == Some(403) => Ok(None),
        Err(e) => Err(Error::kube(
            format!("reading HorizontalPodAutoscaler {}/{name}", release.namespace),
            "check that the cluster is reachable",
            e,
        )),
    }
}

/// Worker pods vs registered workers. A node matches a pod when its name is the pod name or starts with
/// `<pod>.` (the chart registers `<pod>.<headless service>.<namespace>.svc.<domain>`). Pods at or above
/// `registered_limit` (ordinal) are expected to be unregistered.
pub fn pod_check(pods: &[String], nodes: &[Node], registered_limit: Option<i32>) -> PodCheck {
    let workers: Vec<&Node> = nodes.iter().filter(|n| n.role == Role::Worker).collect();
    let matches = |pod: &str, n: &Node| n.name == pod || n.name.starts_with(&format!("{pod}."));
    let expected = |pod: &str| match (registered_limit, pod.rsplit('-').next().and_then(|o| o.parse::<i32>().ok())) {
        (Some(limit), Some(ordinal)) => ordinal < limit,
        _ => true,
    };
    PodCheck {
        unregistered_pods: pods
            .iter()
            .filter(|p| expected(p) && !workers.iter().any(|n| matches(p, n)))
            .cloned()
            .collect(),
        nodes_without_pod: workers
            .iter()
            .filter(|n| !pods.iter().any(|p| matches(p, n)))
            .map(|n| format!("{}:{}", n.name, n.port))
            .collect(),
    }
}

/// What `kubectl create job --from=cronjob/<name>` creates: the job template, owned by the CronJob,
/// annotated as a manual run. `command` replaces the first container's command (for the listing Job).
pub fn job_from_cronjob(cj: &CronJob, job_name: &str, command: Option<Vec<String>>) -> Result<Job> {
    let cj_name = cj.metadata.name.clone().unwrap_or_default();
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).ok_or_else(|| Error::Release {
        problem: format!("CronJob {cj_name} has no spec"),
        fix: "reinstall the release (helm upgrade) so that the CronJob is complete".into(),
    })?;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
    let mut spec: JobSpec = template.spec.unwrap_or_default();
    if let Some(cmd) = command {
        let c = spec.template.spec.as_mut().and_then(|s| s.containers.first_mut()).ok_or_else(|| Error::Release {
            problem: format!("CronJob {cj_name} has no container"),
            fix: "reinstall the release (helm upgrade)".into(),
        })?;
        c.command = Some(cmd);
        c.args = None;
        spec.backoff_limit = Some(0);
        spec.ttl_seconds_after_finished = Some(600);
    }
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name.to_owned()),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj_name,
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// A Job name `<base>-<suffix>-<unix time>`, at most 63 characters.
pub fn job_name(base: &str, suffix: &str, unix: u64) -> String {
    let tail = format!("-{suffix}-{unix}");
    let keep = 63usize.saturating_sub(tail.len());
    format!("{}{tail}", base.chars().take(keep).collect::<String>().trim_end_matches('-'))
}

async fn backup_cronjob(client: &Client, release: &Release) -> Result<CronJob> {
    let api: Api<CronJob> = Api::namespaced(client.clone(), &release.namespace);
    let name = release.backup_cronjob();
    api.get(&name).await.map_err(|e| {
        let fix = match kube_status(&e) {
            Some(404) => "enable backups in the release (helm upgrade --set backup.enabled=true) and check \
                          --release/-n"
                .to_owned(),
            _ => "check that the cluster is reachable and that you may read CronJobs".to_owned(),
        };
        Error::kube(format!("reading CronJob {}/{name}", release.namespace), fix, e)
    })
}

async fn create_job(client: &Client, namespace: &str, job: &Job) -> Result<String> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let name = job.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), job).await.map_err(|e| {
        Error::kube(format!("creating Job {namespace}/{name}"), "your user needs create on jobs in that namespace", e)
    })?;
    Ok(name)
}

/// `backup now`: a manual run of the backup CronJob.
pub async fn start_backup(client: &Client, release: &Release, unix: u64) -> Result<String> {
    let cj = backup_cronjob(client, release).await?;
    let job = job_from_cronjob(&cj, &job_name(&release.backup_cronjob(), "manual", unix), None)?;
    create_job(client, &release.namespace, &job).await
}

/// Poll a Job until it succeeds (true), fails (false) or the timeout passes.
pub async fn wait_job(client: &Client, namespace: &str, name: &str, timeout: Duration, poll: Duration) -> Result<bool> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = api.get(name).await.map_err(|e| {
            Error::kube(format!("reading Job {namespace}/{name}"), "check that the cluster is reachable", e)
        })?;
        let status = job.status.unwrap_or_default();
        let failed_condition =
            status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Failed" && c.status == "True");
        if status.succeeded.unwrap_or(0) > 0 {
            return Ok(true);
        }
        if failed_condition {
            return Ok(false);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Job {
                what: format!("Job {namespace}/{name} did not finish within {}s", timeout.as_secs()),
                fix: format!("look at it: kubectl describe job -n {namespace} {name}; kubectl get pods -n {namespace} -l job-name={name}"),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// The log of a Job's newest pod.
pub async fn job_logs(client: &Client, namespace: &str, job: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .map_err(|e| Error::kube(format!("listing the pods of Job {job}"), "you need list on pods", e))?;
    let newest = list
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| Error::Job {
            what: format!("Job {namespace}/{job} has no pod"),
            fix: format!("kubectl describe job -n {namespace} {job}"),
        })?;
    pods.logs(&newest, &LogParams::default())
        .await
        .map_err(|e| Error::kube(format!("reading the log of pod {newest}"), "you need get on pods/log", e))
}

/// The listing Job's script: one line per backup directory (name, KiB, mtime), then the pod's clock, so that
/// ages do not depend on the local clock. POSIX sh; runs in the backup image, in the CronJob's container
/// whose `BACKUP_DIR` names where the chart mounts the backup volume.
pub const LIST_SCRIPT: &str = r#"set -eu
cd "${BACKUP_DIR:?the backup CronJob sets no BACKUP_DIR: upgrade the release to this chart version}"
for d in 2* .partial-*; do
  [ -d "$d" ] || continue
  printf 'backup\t%s\t%s\t%s\n' "$d" "$(du -sk "$d" | cut -f1)" "$(stat -c %Y "$d")"
done
printf 'now\t%s\n' "$(date +%s)"
"#;

/// Parse the listing Job's output (LIST_SCRIPT), newest first.
pub fn parse_listing(out: &str) -> Result<Vec<Backup>> {
    let mut now = None;
    let mut raw = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["now", t] => now = t.trim().parse::<i64>().ok(),
            ["backup", name, kib, mtime] => {
                if let (Ok(k), Ok(m)) = (kib.trim().parse::<i64>(), mtime.trim().parse::<i64>()) {
                    raw.push((name.to_string(), k * 1024, m));
                }
            }
            _ => {}
        }
    }
    let now = now.ok_or_else(|| Error::Job {
        what: format!("the backup listing Job printed no result: {}", out.trim()),
        fix: "look at the Job's log; the backup volume may not be mounted".into(),
    })?;
    let mut list: Vec<Backup> = raw
        .into_iter()
        .map(|(name, bytes, mtime)| Backup {
            complete: !name.starts_with(".partial-"),
            name,
            bytes,
            age_seconds: now - mtime,
        })
        .collect();
    list.sort_by(|a, b| a.age_seconds.cmp(&b.age_seconds).then(a.name.cmp(&b.name)));
    Ok(list)
}

/// The PVC the CronJob mounts as `backups`; an error when backups are not kept (emptyDir).
pub fn backup_claim(cj: &CronJob) -> Result<String> {
    let vols = cj
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let v = vols.iter().find(|v| v.name == "backups").ok_or_else(|| Error::Release {
        problem: "the backup CronJob has no volume named backups".into(),
        fix: "upgrade the release to this chart version".into(),
    })?;
    v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()).ok_or_else(|| Error::Release {
        problem: "backups are written to an emptyDir and lost after each run (backup.persistence.enabled=false)".into(),
        fix: "helm upgrade --set backup.persistence.enabled=true to keep them on a PVC".into(),
    })
}

/// `backup list`: a short Job from the backup CronJob (same image, volumes and security context) that lists
/// the backup volume; its log is parsed, then the Job is deleted.
pub async fn list_backups(client: &Client, release: &Release, unix: u64, timeout: Duration) -> Result<BackupList> {
    let cj = backup_cronjob(client, release).await?;
    let claim = backup_claim(&cj)?;
    let cmd = vec!["/bin/sh".to_owned(), "-c".to_owned(), LIST_SCRIPT.to_owned()];
    let job = job_from_cronjob(&cj, &job_name(&release.backup_cronjob(), "list", unix), Some(cmd))?;
    let name = create_job(client, &release.namespace, &job).await?;
    let result = async {
        let ok = wait_job(client, &release.namespace, &name, timeout, Duration::from_secs(2)).await?;
        let log = job_logs(client, &release.namespace, &name).await?;
        if !ok {
            return Err(Error::Job {
                what: format!("the listing Job {name} failed: {}", log.trim()),
                fix: format!("kubectl describe job -n {} {name}", release.namespace),
            });
        }
        parse_listing(&log)
    }
    .await;
    let api: Api<Job> = Api::namespaced(client.clone(), &release.namespace);
    // Best effort: the Job also expires by itself (ttlSecondsAfterFinished).
    let _ = api.delete(&name, &DeleteParams::background()).await;
    Ok(BackupList { api_version: API_VERSION, kind: "BackupList", claim, backups: result? })
}

#[cfg(test)]
mod tests {
    //! The API layer against tower-test's mock service: assert each request, answer it like the API server.
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    #[test]
    fn the_forwarded_port_is_the_pods_named_postgresql_port() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-citus-coordinator-0"},
            "spec": {"containers": [
                {"name": "metrics", "ports": [{"name": "http-metrics", "containerPort": 9187}]},
                {"name": "postgresql", "ports": [{"name": "postgresql", "containerPort": 6432}]}]}
        }))
        .unwrap();
        assert_eq!(named_port(&pod, "postgresql"), Some(6432));
        assert_eq!(named_port(&pod, "nope"), None);
    }

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn mock_client() -> (Client, Handle) {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(svc, "default"), handle)
    }

    async fn body_json(req: Request<Body>) -> serde_json::Value {
        let bytes = req.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn respond(send: mock::SendResponse<Response<Body>>, code: StatusCode, v: serde_json::Value) {
        send.send_response(Response::builder().status(code).body(Body::from(serde_json::to_vec(&v).unwrap())).unwrap());
    }

    fn not_found(what: &str) -> serde_json::Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{what} not found"),
               "reason": "NotFound", "code": 404})
    }

    #[test]
    fn chart_names() {
        assert_eq!(fullname("my-citus", None), "my-citus");
        assert_eq!(fullname("prod", None), "prod-citus");
        assert_eq!(fullname("prod", Some("db")), "db");
        assert_eq!(fullname(&"x".repeat(50), None).len(), 42);
        let r = Release::new("prod", "db", None);
        assert_eq!(r.coordinator_pod(), "prod-citus-coordinator-0");
        assert_eq!(r.secret(), "prod-citus-secret");
        assert_eq!(r.backup_cronjob(), "prod-citus-backup");
        assert_eq!(job_name("prod-citus-backup", "manual", 1700000000), "prod-citus-backup-manual-1700000000");
        assert!(job_name(&"a".repeat(70), "list", 1).len() <= 63);
    }

    #[tokio::test]
    async fn password_from_the_release_secret() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(req.uri().to_string(), "/api/v1/namespaces/db/secrets/prod-citus-secret");
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "prod-citus-secret"},
                       "data": {"postgres-password": "czNjcmV0", "password": "eA=="}}),
            );
        });
        assert_eq!(read_password(&client, "db", "prod-citus-secret", "postgres-password").await.unwrap(), "s3cret");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn missing_secret_and_missing_key_say_what_to_do() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            respond(send, StatusCode::NOT_FOUND, not_found("secrets \"x-citus-secret\""));
            let (_, send) = handle.next_request().await.unwrap();
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "eA=="}}),
            );
        });
        let e = read_password(&client, "db", "x-citus-secret", "postgres-password").await.unwrap_err().to_string();
        assert!(e.contains("reading Secret db/x-citus-secret failed"), "{e}");
        assert!(e.contains("--release"), "{e}");
        let e = read_password(&client, "db", "s", "postgres-password").await.unwrap_err().to_string();
        assert!(e.contains("no key \"postgres-password\"") && e.contains("--secret-key"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn port_forward_refuses_a_pod_that_is_not_running() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.uri().to_string(), "/api/v1/namespaces/db/pods/prod-citus-coordinator-0");
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prod-citus-coordinator-0"},
                       "status": {"phase": "Pending"}}),
            );
        });
        let e = port_forward(&client, "db", "prod-citus-coordinator-0", "postgresql").await.err().unwrap().to_string();
        assert!(e.contains("is Pending, not Running"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn port_forward_asks_the_api_server_for_the_pod_port() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c-0"}, "status": {"phase": "Running"},
                       "spec": {"containers": [{"name": "postgresql",
                                                "ports": [{"name": "postgresql", "containerPort": 6432}]}]}}),
            );
            // The WebSocket upgrade to the pod's portforward subresource.
            let (req, send) = handle.next_request().await.unwrap();
            let uri = req.uri().to_string();
            assert!(uri.starts_with("/api/v1/namespaces/db/pods/c-0/portforward?"), "{uri}");
            // The pod's own port number (coordinator.containerPorts.postgresql), not a default.
            assert!(uri.contains("ports=6432"), "{uri}");
            assert_eq!(req.headers().get(http::header::UPGRADE).unwrap(), "websocket");
            respond(
                send,
                StatusCode::FORBIDDEN,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "forbidden",
                       "reason": "Forbidden", "code": 403}),
            );
        });
        let e = port_forward(&client, "db", "c-0", "postgresql").await.err().unwrap().to_string();
        assert!(e.contains("opening a port-forward to pod db/c-0 failed: forbidden"), "{e}");
        assert!(e.contains("create on pods/portforward"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn worker_pods_by_release_labels() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            let uri = req.uri().to_string();
            assert!(uri.starts_with("/api/v1/namespaces/db/pods?"), "{uri}");
            assert!(
                uri.contains(
                    "labelSelector=app.kubernetes.io%2Finstance%3Dprod%2Capp.kubernetes.io%2Fcomponent%3Dworker"
                ),
                "{uri}"
            );
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                       "items": [{"metadata": {"name": "prod-citus-worker-1"}}, {"metadata": {"name": "prod-citus-worker-0"}}]}),
            );
        });
        let pods = worker_pods(&client, &Release::new("prod", "db", None)).await.unwrap();
        assert_eq!(pods, ["prod-citus-worker-0", "prod-citus-worker-1"]);
        server.await.unwrap();
    }

    #[test]
    fn pods_vs_nodes() {
        let mut s = crate::doctor::tests_support::status();
        s.nodes[1].name = "prod-citus-worker-0.prod-citus-worker-headless.db.svc.cluster.local".into();
        s.nodes[2].name = "10.0.0.7".into();
        let pods = ["prod-citus-worker-0".to_owned(), "prod-citus-worker-1".to_owned()];
        let c = pod_check(&pods, &s.nodes, None);
        assert_eq!(c.unregistered_pods, ["prod-citus-worker-1"]);
        assert_eq!(c.nodes_without_pod, ["10.0.0.7:5432"]);
        // An HPA whose maxReplicas was lowered to 1: worker-1 runs unregistered by design.
        assert!(pod_check(&pods, &s.nodes, Some(1)).unregistered_pods.is_empty());
    }

    #[tokio::test]
    async fn hpa_limits_which_pods_must_be_registered() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                req.uri().to_string(),
                "/apis/autoscaling/v2/namespaces/db/horizontalpodautoscalers/prod-citus-worker"
            );
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "prod-citus-worker"},
                "spec": {"minReplicas": 2, "maxReplicas": 6, "scaleTargetRef": {"kind": "StatefulSet", "name": "prod-citus-worker"}}}),
            );
            let (_, send) = handle.next_request().await.unwrap();
            respond(send, StatusCode::NOT_FOUND, not_found("horizontalpodautoscalers \"prod-citus-worker\""));
        });
        let r = Release::new("prod", "db", None);
        assert_eq!(registered_worker_limit(&client, &r).await.unwrap(), Some(6));
        assert_eq!(registered_worker_limit(&client, &r).await.unwrap(), None);
        server.await.unwrap();
    }

    fn cronjob() -> serde_json::Value {
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "prod-citus-backup", "namespace": "db", "uid": "1234"},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": {
                "metadata": {"labels": {"app.kubernetes.io/component": "backup"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "backup", "image": "postgres:17",
                                    "command": ["/bin/sh", "/opt/citus/scripts/backup.sh"]}],
                    "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": "prod-citus-backup"}}]
                }}}
            }}
        })
    }

    #[tokio::test]
    async fn backup_now_creates_a_job_like_kubectl_create_job_from() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.uri().to_string(), "/apis/batch/v1/namespaces/db/cronjobs/prod-citus-backup");
            respond(send, StatusCode::OK, cronjob());
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::POST);
            assert!(req.uri().to_string().starts_with("/apis/batch/v1/namespaces/db/jobs?"));
            let job = body_json(req).await;
            assert_eq!(job["metadata"]["name"], "prod-citus-backup-manual-1700000000");
            assert_eq!(job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"], "manual");
            assert_eq!(job["metadata"]["labels"]["app.kubernetes.io/component"], "backup");
            assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
            assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "1234");
            assert_eq!(job["spec"]["backoffLimit"], 2);
            assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["command"][1], "/opt/citus/scripts/backup.sh");
            respond(send, StatusCode::CREATED, job);
        });
        let name = start_backup(&client, &Release::new("prod", "db", None), 1700000000).await.unwrap();
        assert_eq!(name, "prod-citus-backup-manual-1700000000");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn backup_now_without_cronjob_says_enable_backups() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            respond(send, StatusCode::NOT_FOUND, not_found("cronjobs.batch \"prod-citus-backup\""));
        });
        let e = start_backup(&client, &Release::new("prod", "db", None), 1).await.unwrap_err().to_string();
        assert!(e.contains("backup.enabled=true"), "{e}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn backup_list_runs_a_job_reads_its_log_and_deletes_it() {
        let (client, mut handle) = mock_client();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            respond(send, StatusCode::OK, cronjob());
            let (req, send) = handle.next_request().await.unwrap();
            let job = body_json(req).await;
            assert_eq!(job["metadata"]["name"], "prod-citus-backup-list-5");
            let c = &job["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["command"][2], LIST_SCRIPT);
            assert_eq!(job["spec"]["backoffLimit"], 0);
            assert_eq!(
                job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
                "prod-citus-backup"
            );
            respond(send, StatusCode::CREATED, job.clone());
            // wait_job: first still running, then succeeded
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.uri().to_string(), "/apis/batch/v1/namespaces/db/jobs/prod-citus-backup-list-5");
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": {"active": 1}}),
            );
            let (_, send) = handle.next_request().await.unwrap();
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": {"succeeded": 1}}),
            );
            let (req, send) = handle.next_request().await.unwrap();
            assert!(req.uri().to_string().contains("labelSelector=job-name%3Dprod-citus-backup-list-5"));
            respond(
                send,
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                "items": [{"metadata": {"name": "lister", "creationTimestamp": "2026-11-25T10:00:00Z"}}]}),
            );
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.uri().to_string(), "/api/v1/namespaces/db/pods/lister/log?");
            send.send_response(Response::builder().body(Body::from(
                "backup\t20261124T020000Z\t2048\t1000\nbackup\t.partial-20261125T020000Z\t10\t4000\nnow\t4600\n".as_bytes().to_vec(),
            )).unwrap());
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(req.method(), http::Method::DELETE);
            assert!(req.uri().to_string().starts_with("/apis/batch/v1/namespaces/db/jobs/prod-citus-backup-list-5"));
            respond(send, StatusCode::OK, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}));
        });
        let list = list_backups(&client, &Release::new("prod", "db", None), 5, Duration::from_secs(60)).await.unwrap();
        assert_eq!(list.claim, "prod-citus-backup");
        assert_eq!(list.backups.len(), 2);
        assert_eq!(list.backups[0].name, ".partial-20261125T020000Z");
        assert!(!list.backups[0].complete);
        assert_eq!(list.backups[1].bytes, 2048 * 1024);
        assert_eq!(list.backups[1].age_seconds, 3600);
        server.await.unwrap();
    }

    #[test]
    fn emptydir_backups_are_reported() {
        let mut cj: CronJob = serde_json::from_value(cronjob()).unwrap();
        let vols = cj.spec.as_mut().unwrap().job_template.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        vols.volumes = Some(vec![serde_json::from_value(json!({"name": "backups", "emptyDir": {}})).unwrap()]);
        let e = backup_claim(&cj).unwrap_err().to_string();
        assert!(e.contains("backup.persistence.enabled=true"), "{e}");
    }

    #[test]
    fn listing_without_result_is_an_error() {
        assert!(parse_listing("sh: cd: /backups: No such file").is_err());
        assert_eq!(parse_listing("now\t10\n").unwrap(), vec![]);
    }
}
