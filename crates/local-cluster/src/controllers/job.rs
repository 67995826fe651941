//! The Job controller's part: one pod at a time (restartPolicy Never), a failed pod is replaced after the
//! controller's back-off (10 s, doubling, at most 6 min) until `backoffLimit` failures have been exceeded;
//! `activeDeadlineSeconds` (and Helm's hook timeout) kill the running pod and fail the Job.
//! A hook Pod (`helm test`) runs once.

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
    /// Helm's `--timeout` for hooks (the Job fails when it runs out).
    pub timeout: Duration,
    /// Numbers the pods of Jobs (`<job>-<n>`), across the cluster's life.
    pub pod_counter: &'a mut u32,
}

/// How a Job went.
#[derive(Debug)]
pub struct JobReport {
    pub attempts: u32,
    /// The log of each attempt's pod.
    pub logs: Vec<PathBuf>,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

enum Outcome {
    /// Every container ended: whether all succeeded, and the first container's status.
    Exited(bool, String),
    DeadlineReached,
}

/// Runs a Job object to completion.
pub fn run_job(node: &mut Node, ctx: &mut JobContext, job: &Value) -> Result<JobReport> {
    let (_, name) = kind_and_name(job)?;
    let bad = |what: &str| Error::Manifest(format!("Job {name}: {what}"));
    let spec = job.get("spec").ok_or_else(|| bad("no spec"))?;
    let template = spec.get("template").ok_or_else(|| bad("no template"))?;
    let pod_spec = template.get("spec").ok_or_else(|| bad("no template.spec"))?;
    let restart = pod_spec.get("restartPolicy").and_then(Value::as_str).unwrap_or("Always");
    if restart != "Never" {
        return Err(Error::Unsupported(format!("Job {name}: restartPolicy {restart} (only Never)")));
    }
    let backoff_limit = spec.get("backoffLimit").and_then(Value::as_u64).unwrap_or(6);
    let started = Instant::now();
    let mut deadline = started + ctx.timeout;
    let mut deadline_reason = format!("Helm's hook timeout ({:?}) ran out", ctx.timeout);
    if let Some(secs) = spec.get("activeDeadlineSeconds").and_then(Value::as_u64) {
        if started + Duration::from_secs(secs) < deadline {
            deadline = started + Duration::from_secs(secs);
            deadline_reason = format!("DeadlineExceeded: activeDeadlineSeconds ({secs}s) reached");
        }
    }
    let spec = PodSpec::from_value(&format!("Job {name}"), pod_spec)?;
    let mut report = JobReport { attempts: 0, logs: Vec::new() };
    let mut failures = 0u64;
    loop {
        *ctx.pod_counter += 1;
        let config = PodConfig {
            name: format!("{name}-{}", ctx.pod_counter),
            namespace: node.namespace.clone(),
            spec: spec.clone(),
            labels: template_labels(template),
            subdomain: None,
            claim_templates: Default::default(),
            command_override: None,
            owner: Owner::Job(name.clone()),
        };
        report.attempts += 1;
        let (outcome, log) = run_to_completion(node, ctx.store, config, deadline)?;
        report.logs.push(log.clone());
        let status = match outcome {
            Outcome::Exited(true, _) => return Ok(report),
            Outcome::Exited(false, status) => status,
            Outcome::DeadlineReached => return Err(failed(&name, &report, &deadline_reason, &log)),
        };
        failures += 1;
        if failures > backoff_limit {
            let reason =
                format!("BackoffLimitExceeded: pod {} ({status}), backoffLimit {backoff_limit}", report.attempts);
            return Err(failed(&name, &report, &reason, &log));
        }
        let pause = FIRST_BACKOFF.saturating_mul(1 << (failures - 1).min(6)).min(MAX_BACKOFF);
        if Instant::now() + pause >= deadline {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            return Err(failed(&name, &report, &deadline_reason, &log));
        }
        std::thread::sleep(pause);
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
        command_override: None,
        owner: Owner::HookPod,
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
