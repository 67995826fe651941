//! A pod's status as a kubelet reports it: phase, conditions, addresses and one entry per container.

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::kubelet::pod::ContainerReport;
use crate::kubelet::podspec::RestartPolicy;

/// RFC 3339 at whole seconds, as the API server keeps `metav1.Time`.
pub fn time(t: SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts).to_string()
}

/// What the agent knows of a pod it runs.
pub struct Observed<'a> {
    pub containers: &'a [ContainerReport],
    pub init_containers: &'a [(String, String)],
    pub restart_policy: RestartPolicy,
    pub ip: std::net::Ipv4Addr,
    pub host_ip: &'a str,
    pub started: SystemTime,
    /// When the Ready condition last changed, and to what.
    pub ready_since: (bool, SystemTime),
}

/// The pod's phase: Succeeded/Failed once every container ended for good.
pub fn phase(o: &Observed) -> &'static str {
    let ended = |c: &ContainerReport| c.running_since.is_none() && c.last_exit_code.is_some();
    if !o.containers.iter().all(ended) {
        return "Running";
    }
    let ok = o.containers.iter().all(|c| c.last_exit_code == Some(0));
    match o.restart_policy {
        RestartPolicy::Never if ok => "Succeeded",
        RestartPolicy::Never => "Failed",
        RestartPolicy::OnFailure if ok => "Succeeded",
        _ => "Running",
    }
}

pub fn status(o: &Observed) -> Value {
    let phase = phase(o);
    let started = time(o.started);
    let condition = |kind: &str, ok: bool, since: &str| json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": since});
    let ready_since = time(o.ready_since.1);
    let ready = o.ready_since.0;
    let containers: Vec<Value> = o.containers.iter().map(|c| container_status(c, phase)).collect();
    let inits: Vec<Value> = o
        .init_containers
        .iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}},
            })
        })
        .collect();
    let ip = o.ip.to_string();
    json!({
        "phase": phase,
        "conditions": [
            condition("PodReadyToStartContainers", phase == "Running", &started),
            condition("Initialized", true, &started),
            condition("Ready", ready, &ready_since),
            condition("ContainersReady", ready, &ready_since),
            condition("PodScheduled", true, &started),
        ],
        "hostIP": o.host_ip,
        "hostIPs": [{"ip": o.host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "initContainerStatuses": inits,
        "containerStatuses": containers,
    })
}

fn container_status(c: &ContainerReport, phase: &str) -> Value {
    let exit = |code: i32| json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }});
    let state = match (c.running_since, c.last_exit_code) {
        (Some(since), _) => json!({"running": {"startedAt": time(since)}}),
        (None, Some(code)) if phase != "Running" => json!({"terminated": exit(code)}),
        (None, Some(_)) => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
        (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    let mut status = json!({
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "containerID": format!("local://{}", c.name),
        "ready": c.ready,
        "started": c.started,
        "restartCount": c.restarts,
        "state": state,
    });
    if let (true, Some(code)) = (c.restarts > 0, c.last_exit_code) {
        status["lastState"] = json!({"terminated": exit(code)});
    }
    status
}
