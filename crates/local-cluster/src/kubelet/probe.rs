//! The kubelet's probes, run once each: `exec` inside the container (same namespaces, user and env),
//! `httpGet` and `tcpSocket` from inside the pod's network namespace (the kubelet's own connections come
//! from the node into the pod network).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::podspec::{Container, Probe};
use crate::sandbox::netns::connect_in;

/// What one probe run found: Ok(()) or why it failed.
pub type Outcome = Result<(), String>;

/// Runs an exec probe in the container: Ok(exit success, stderr) or Err(reason).
pub type ExecProbe<'a> = dyn Fn(&[String], Duration) -> Result<(bool, String), String> + 'a;

/// Where the probe runs.
pub struct Target<'a> {
    pub container: &'a Container,
    pub netns: PathBuf,
    pub ip: Ipv4Addr,
    pub exec: &'a ExecProbe<'a>,
}

pub fn run(probe: &Probe, target: &Target) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1));
    if let Some(exec) = &probe.exec {
        return match (target.exec)(&exec.command, timeout) {
            Ok((true, _)) => Ok(()),
            Ok((false, stderr)) => Err(format!("exec probe failed: {}", stderr.trim())),
            Err(e) => Err(e),
        };
    }
    let (port, http_path) = match (&probe.http_get, &probe.tcp_socket) {
        (Some(h), _) => (&h.port, Some(if h.path.is_empty() { "/" } else { h.path.as_str() })),
        (None, Some(t)) => (&t.port, None),
        (None, None) => return Err("probe without a handler".to_owned()),
    };
    let port = target.container.port(port).ok_or_else(|| format!("port {port} is not declared"))?;
    let addr = SocketAddr::from((target.ip, port));
    match connect_in(target.netns.clone(), addr, http_path.map(str::to_owned), timeout)? {
        (_, _) if http_path.is_none() => Ok(()),
        (code, _) if (200..400).contains(&code) => Ok(()),
        (code, _) => Err(format!("GET {} answered {code}", http_path.unwrap_or_default())),
    }
}
