//! Readiness: the container's exec readiness probe, run as the kubelet would (inside the container, with its
//! user and env, `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `successThreshold`), until a
//! deadline. Liveness and startup probes are not run: nothing here restarts containers.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pod::Pod;

/// Waits until the pod is ready. Fails at once when the container exits.
pub fn wait_ready(pod: &mut Pod, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let probe = pod.config.spec.container.readiness_probe.clone();
    let mut successes = 0;
    let mut last = String::from("no probe ran yet");
    let first =
        pod.started() + Duration::from_secs(probe.as_ref().map_or(0, |p| p.initial_delay_seconds));
    loop {
        if let Some(status) = pod.exit_status()? {
            return Err(Error::PodExited {
                pod: pod.name().to_owned(),
                status: status.to_string(),
                during: "while waiting for it to become ready".to_owned(),
                log_tail: pod.log_tail(),
            });
        }
        let now = Instant::now();
        if now >= first {
            let Some(probe) = &probe else { return Ok(()) }; // no probe: ready once running
            let command = probe
                .exec
                .as_ref()
                .map(|e| e.command.clone())
                .unwrap_or_default();
            let probe_timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1));
            match pod.exec(&command, &[], None, probe_timeout) {
                Ok(out) if out.status.success() => {
                    successes += 1;
                    if successes >= probe.success_threshold.unwrap_or(1) {
                        return Ok(());
                    }
                }
                Ok(out) => {
                    successes = 0;
                    last = format!("probe {} {}", out.status, out.stderr.trim());
                }
                Err(Error::Timeout { .. }) => {
                    successes = 0;
                    last = format!("probe timed out after {probe_timeout:?}");
                }
                // The container may be ending (its namespaces go before its exit status comes): report that.
                Err(_) if pod.wait_exit(Duration::from_secs(2)).is_ok() => continue,
                Err(e) => return Err(e),
            }
        }
        if now >= deadline {
            return Err(Error::Timeout {
                what: format!("pod {} to become ready (last: {last})", pod.name()),
                waited: timeout,
                log_tail: pod.log_tail(),
            });
        }
        let period =
            Duration::from_secs(probe.as_ref().and_then(|p| p.period_seconds).unwrap_or(10));
        let next = if now < first { first } else { now + period };
        std::thread::sleep(next.min(deadline).saturating_duration_since(Instant::now()));
    }
}
