//! The Job controller's part: one pod at a time (restartPolicy Never), a failed pod is replaced after the
//! controller's back-off (10 s, doubling, at most 6 min) until `backoffLimit` failures have been exceeded;
//! `activeDeadlineSeconds` kills the running pod and fails the Job. A [`JobRun`] is one Job the controller
//! drives, one pass at a time, so that a Job can go on after whoever created it stopped waiting (Helm's
//! `--timeout` ends Helm's wait, not the Job). A hook Pod (`helm test`) runs once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::kubelet::node::{template_labels, Node};
use crate::kubelet::pod::{log_tail, Owner, PodConfig};
use crate::kubelet::podspec::PodSpec;
use crate::store::{kind_and_name, Store};

/// What the Job controller needs besides the node.
pub struct JobContext<'a> {
    pub store: &'a Store,
    /// How long [`run_job`] waits: then the running pod is killed and the Job fails.
    pub timeout: Duration,
    /// Numbers the pods of Jobs (`<job>-<n>`), across the cluster's life.
    pub pod_counter: &'a mut u32,
}

/// How a Job went.
#[derive(Debug, Default)]
pub struct JobReport {
    pub attempts: u32,
    /// The log of each attempt's pod.
    pub logs: Vec<PathBuf>,
}

/// A Job's state as `kubectl get job` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded {
        attempts: u32,
    },
    /// Why it failed (the controller's reason and the last pod's log tail).
    Failed(String),
}

const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

enum Outcome {
    /// Every container ended: whether all succeeded, and the first container's status.
    Exited(bool, String),
    DeadlineReached,
}

/// One Job under the controller: its current pod, or when the next one starts.
pub struct JobRun {
    name: String,
    template: Value,
    spec: PodSpec,
    backoff_limit: u64,
    /// `activeDeadlineSeconds`, counted from the Job's creation.
    deadline: Option<(Instant, String)>,
    failures: u64,
    pod: Option<String>,
    next_start: Instant,
    report: JobReport,
}

impl JobRun {
    /// A created Job (its first pod starts on the first [`JobRun::step`]).
    pub fn new(job: &Value) -> Result<Self> {
        let (_, name) = kind_and_name(job)?;
        let bad = |what: &str| Error::Manifest(format!("Job {name}: {what}"));
        let spec = job.get("spec").ok_or_else(|| bad("no spec"))?;
        let template = spec.get("template").ok_or_else(|| bad("no template"))?;
        let pod_spec = template.get("spec").ok_or_else(|| bad("no template.spec"))?;
        let restart = pod_spec.get("restartPolicy").and_then(Value::as_str).unwrap_or("Always");
        if restart != "Never" {
            return Err(Error::Unsupported(format!("Job {name}: restartPolicy {restart} (only Never)")));
        }
        let now = Instant::now();
        let deadline = spec.get("activeDeadlineSeconds").and_then(Value::as_u64).map(|secs| {
            (now + Duration::from_secs(secs), format!("DeadlineExceeded: activeDeadlineSeconds ({secs}s) reached"))
        });
        Ok(JobRun {
            backoff_limit: spec.get("backoffLimit").and_then(Value::as_u64).unwrap_or(6),
            spec: PodSpec::from_value(&format!("Job {name}"), pod_spec)?,
            template: template.clone(),
            name,
            deadline,
            failures: 0,
            pod: None,
            next_start: now,
            report: JobReport::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pod that runs now, if any.
    pub fn pod(&self) -> Option<&str> {
        self.pod.as_deref()
    }

    /// One pass of the controller over this Job (the kubelet's pass, `Node::sync`, is the caller's):
    /// Some(result) once the Job has ended. An ended pod is deleted, its log kept.
    pub fn step(&mut self, node: &mut Node, store: &Store, pod_counter: &mut u32) -> Result<Option<Result<JobReport>>> {
        let now = Instant::now();
        if let Some(pod) = self.pod.clone() {
            let p = node.pod_mut(&pod)?;
            if let Some(succeeded) = p.completed()? {
                let status = p.exit_status()?.map(|s| s.to_string()).unwrap_or_default();
                node.delete_pod(&pod, store)?;
                self.pod = None;
                if succeeded {
                    return Ok(Some(Ok(std::mem::take(&mut self.report))));
                }
                self.failures += 1;
                if self.failures > self.backoff_limit {
                    let reason = format!(
                        "BackoffLimitExceeded: pod {} ({status}), backoffLimit {}",
                        self.report.attempts, self.backoff_limit
                    );
                    return Ok(Some(Err(self.failed(&reason))));
                }
                self.next_start = now + FIRST_BACKOFF.saturating_mul(1 << (self.failures - 1).min(6)).min(MAX_BACKOFF);
            }
        }
        if let Some((deadline, reason)) = &self.deadline {
            if now >= *deadline {
                let reason = reason.clone();
                return Ok(Some(Err(self.kill(node, store, &reason)?)));
            }
        }
        if self.pod.is_none() && now >= self.next_start {
            *pod_counter += 1;
            let config = PodConfig {
                name: format!("{}-{pod_counter}", self.name),
                namespace: node.namespace.clone(),
                spec: self.spec.clone(),
                labels: template_labels(&self.template),
                subdomain: None,
                claim_templates: Default::default(),
                bound_claims: Default::default(),
                command_override: None,
                owner: Owner::Job(self.name.clone()),
                api_access: None,
            };
            let pod = config.name.clone();
            node.create_pod(config, store)?;
            self.report.attempts += 1;
            self.report.logs.push(node.pod(&pod)?.log_path().to_path_buf());
            self.pod = Some(pod);
        }
        Ok(None)
    }

    /// The Job deleted (its pods go with it, as the garbage collector removes them) or its deadline reached:
    /// the running pod is stopped; the error says why.
    pub fn kill(&mut self, node: &mut Node, store: &Store, reason: &str) -> Result<Error> {
        if let Some(pod) = self.pod.take() {
            node.delete_pod(&pod, store)?;
        }
        Ok(self.failed(reason))
    }

    /// The tail of the latest pod's log.
    pub fn log_tail(&self) -> String {
        self.report.logs.last().map(|l| log_tail(l)).unwrap_or_default()
    }

    fn failed(&self, reason: &str) -> Error {
        Error::JobFailed {
            job: self.name.clone(),
            attempts: self.report.attempts,
            reason: reason.to_owned(),
            log_tail: self.log_tail(),
        }
    }
}

impl From<&Result<JobReport>> for JobStatus {
    fn from(result: &Result<JobReport>) -> Self {
        match result {
            Ok(report) => JobStatus::Succeeded { attempts: report.attempts },
            Err(e) => JobStatus::Failed(e.to_string()),
        }
    }
}

/// Runs a Job object to completion, or until the caller's timeout (`ctx.timeout`), which kills the
/// running pod and fails the Job.
pub fn run_job(node: &mut Node, ctx: &mut JobContext, job: &Value) -> Result<JobReport> {
    let mut run = JobRun::new(job)?;
    let deadline = Instant::now() + ctx.timeout;
    loop {
        node.sync()?;
        if let Some(done) = run.step(node, ctx.store, ctx.pod_counter)? {
            return done;
        }
        if Instant::now() >= deadline {
            return Err(run.kill(node, ctx.store, &format!("Helm's hook timeout ({:?}) ran out", ctx.timeout))?);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A hook Pod: runs once, must exit 0.
pub fn run_hook_pod(node: &mut Node, store: &Store, timeout: Duration, pod: &Value) -> Result<()> {
    let (_, name) = kind_and_name(pod)?;
    let spec_value = pod.get("spec").ok_or_else(|| Error::Manifest(format!("Pod {name}: no spec")))?;
    let config = PodConfig {
        name: name.clone(),
        namespace: node.namespace.clone(),
        spec: PodSpec::from_value(&format!("Pod {name}"), spec_value)?,
        labels: template_labels(pod),
        subdomain: None,
        claim_templates: Default::default(),
        bound_claims: Default::default(),
        command_override: None,
        owner: Owner::HookPod,
        api_access: None,
    };
    let deadline = Instant::now() + timeout;
    let report = JobReport { attempts: 1, logs: Vec::new() };
    match run_to_completion(node, store, config, deadline)? {
        (Outcome::Exited(true, _), _) => Ok(()),
        (Outcome::Exited(false, status), log) => Err(failed(&name, &report, &format!("pod {status}"), &log)),
        (Outcome::DeadlineReached, log) => Err(failed(&name, &report, "Helm's hook timeout ran out", &log)),
    }
}

/// Runs a pod until all its containers have ended or the deadline passes (then it is killed); the pod is
/// deleted either way. The kubelet runs meanwhile, so faults and probes of other pods go on.
fn run_to_completion(
    node: &mut Node,
    store: &Store,
    config: PodConfig,
    deadline: Instant,
) -> Result<(Outcome, PathBuf)> {
    let name = config.name.clone();
    node.create_pod(config, store)?;
    let log = node.pod(&name)?.log_path().to_path_buf();
    let outcome = loop {
        node.sync()?;
        let pod = node.pod_mut(&name)?;
        if let Some(succeeded) = pod.completed()? {
            break Outcome::Exited(succeeded, pod.exit_status()?.map(|s| s.to_string()).unwrap_or_default());
        }
        if Instant::now() >= deadline {
            break Outcome::DeadlineReached;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    node.delete_pod(&name, store)?;
    Ok((outcome, log))
}

fn failed(job: &str, report: &JobReport, reason: &str, log: &std::path::Path) -> Error {
    Error::JobFailed {
        job: job.to_owned(),
        attempts: report.attempts,
        reason: reason.to_owned(),
        log_tail: log_tail(log),
    }
}
