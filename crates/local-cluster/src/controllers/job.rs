//! The Job controller's part: one pod at a time (restartPolicy Never), a failed pod is replaced after the
//! controller's back-off (10 s, doubling, at most 6 min) until `backoffLimit` failures have been exceeded;
//! `activeDeadlineSeconds` (and Helm's hook timeout) kill the running pod and fail the Job.
//! A hook Pod (`helm test`) runs once.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{template_labels, Cluster};
use crate::error::{Error, Result};
use crate::objects::kind_and_name;
use crate::pod::{log_tail, Owner, PodConfig};
use crate::podspec::PodSpec;

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
    Exited(ExitStatus),
    DeadlineReached,
}

impl Cluster {
    /// Runs a Job object to completion.
    pub fn run_job(&mut self, job: &Value) -> Result<JobReport> {
        let (_, name) = kind_and_name(job)?;
        let bad = |what: &str| Error::Manifest(format!("Job {name}: {what}"));
        let spec = job.get("spec").ok_or_else(|| bad("no spec"))?;
        let template = spec.get("template").ok_or_else(|| bad("no template"))?;
        let pod_spec = template
            .get("spec")
            .ok_or_else(|| bad("no template.spec"))?;
        let restart = pod_spec
            .get("restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always");
        if restart != "Never" {
            return Err(Error::Unsupported(format!(
                "Job {name}: restartPolicy {restart} (only Never)"
            )));
        }
        let backoff_limit = spec
            .get("backoffLimit")
            .and_then(Value::as_u64)
            .unwrap_or(6);
        let started = Instant::now();
        let mut deadline = started + self.settings.hook_timeout;
        let mut deadline_reason = format!(
            "Helm's hook timeout ({:?}) ran out",
            self.settings.hook_timeout
        );
        if let Some(secs) = spec.get("activeDeadlineSeconds").and_then(Value::as_u64) {
            if started + Duration::from_secs(secs) < deadline {
                deadline = started + Duration::from_secs(secs);
                deadline_reason =
                    format!("DeadlineExceeded: activeDeadlineSeconds ({secs}s) reached");
            }
        }
        let spec = PodSpec::from_value(&format!("Job {name}"), pod_spec)?;
        let mut report = JobReport {
            attempts: 0,
            logs: Vec::new(),
        };
        let mut failures = 0u64;
        loop {
            self.job_pods += 1;
            let config = PodConfig {
                name: format!("{name}-{}", self.job_pods),
                namespace: self.settings.namespace.clone(),
                spec: spec.clone(),
                labels: template_labels(template),
                subdomain: None,
                claim_templates: Default::default(),
                command_override: None,
                owner: Owner::Job(name.clone()),
            };
            report.attempts += 1;
            let (outcome, log) = self.run_to_completion(config, deadline)?;
            report.logs.push(log.clone());
            let status = match outcome {
                Outcome::Exited(status) if status.success() => return Ok(report),
                Outcome::Exited(status) => status,
                Outcome::DeadlineReached => {
                    return Err(failed(&name, &report, &deadline_reason, &log))
                }
            };
            failures += 1;
            if failures > backoff_limit {
                let reason = format!(
                    "BackoffLimitExceeded: pod {} ({status}), backoffLimit {backoff_limit}",
                    report.attempts
                );
                return Err(failed(&name, &report, &reason, &log));
            }
            let pause = FIRST_BACKOFF
                .saturating_mul(1 << (failures - 1).min(6))
                .min(MAX_BACKOFF);
            if Instant::now() + pause >= deadline {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                return Err(failed(&name, &report, &deadline_reason, &log));
            }
            std::thread::sleep(pause);
        }
    }

    /// A hook Pod: runs once, must exit 0.
    pub(crate) fn run_hook_pod(&mut self, pod: &Value) -> Result<()> {
        let (_, name) = kind_and_name(pod)?;
        let spec_value = pod
            .get("spec")
            .ok_or_else(|| Error::Manifest(format!("Pod {name}: no spec")))?;
        let config = PodConfig {
            name: name.clone(),
            namespace: self.settings.namespace.clone(),
            spec: PodSpec::from_value(&format!("Pod {name}"), spec_value)?,
            labels: template_labels(pod),
            subdomain: None,
            claim_templates: Default::default(),
            command_override: None,
            owner: Owner::HookPod,
        };
        let deadline = Instant::now() + self.settings.hook_timeout;
        let report = JobReport {
            attempts: 1,
            logs: Vec::new(),
        };
        match self.run_to_completion(config, deadline)? {
            (Outcome::Exited(status), _) if status.success() => Ok(()),
            (Outcome::Exited(status), log) => {
                Err(failed(&name, &report, &format!("pod {status}"), &log))
            }
            (Outcome::DeadlineReached, log) => {
                Err(failed(&name, &report, "Helm's hook timeout ran out", &log))
            }
        }
    }

    /// Runs a pod until it exits or the deadline passes (then it is killed); the pod is deleted either way.
    fn run_to_completion(
        &mut self,
        config: PodConfig,
        deadline: Instant,
    ) -> Result<(Outcome, PathBuf)> {
        let name = config.name.clone();
        self.create_pod(config)?;
        let pod = self.pod_mut(&name)?;
        let log = pod.log_path().to_path_buf();
        let outcome = match pod.wait_exit(deadline.saturating_duration_since(Instant::now())) {
            Ok(status) => Outcome::Exited(status),
            Err(Error::Timeout { .. }) => Outcome::DeadlineReached,
            Err(e) => return Err(e),
        };
        self.delete_pod(&name)?;
        Ok((outcome, log))
    }
}

fn failed(job: &str, report: &JobReport, reason: &str, log: &std::path::Path) -> Error {
    Error::JobFailed {
        job: job.to_owned(),
        attempts: report.attempts,
        reason: reason.to_owned(),
        log_tail: log_tail(log),
    }
}
