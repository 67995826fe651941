//! The node in the API server: its Node object (capacity, addresses, the Ready condition) and its Lease in
//! `kube-node-lease`, renewed as the kubelet does so that the node lifecycle controller keeps it Ready.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use super::api::Clients;
use super::pod_status::time;
use crate::error::{Error, Result};

/// How long the lease holds; renewed every quarter of it, as the kubelet does.
pub const LEASE_SECONDS: u64 = 40;

/// What the node offers the scheduler.
#[derive(Debug, Clone)]
pub struct Capacity {
    /// CPUs, as a quantity (`"2"`, `"1500m"`).
    pub cpu: String,
    /// Memory, as a quantity (`"8Gi"`).
    pub memory: String,
}

/// The node as the agent reports it.
pub struct Registration {
    pub name: String,
    pub capacity: Capacity,
    /// Where the kubelet API listens on 127.0.0.1 (the API server proxies logs, exec and port-forwards there).
    pub kubelet_port: u16,
    /// When the agent started: the conditions' transition time.
    pub since: SystemTime,
}

impl Registration {
    /// Creates the Node object (or keeps the one that exists) and reports it Ready.
    pub fn register(&self, api: &Clients) -> Result<()> {
        let name = &self.name;
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                },
            },
        }))
        .map_err(|e| Error::Manifest(format!("the Node object: {e}")))?;
        api.register_node(&node)?;
        self.heartbeat(api)
    }

    /// Renews the lease and reports the node Ready, as it has been since the agent started.
    pub fn heartbeat(&self, api: &Clients) -> Result<()> {
        let (name, capacity, since) = (&self.name, &self.capacity, self.since);
        let now = SystemTime::now();
        let resources =
            json!({"cpu": capacity.cpu, "memory": capacity.memory, "pods": "110", "ephemeral-storage": "100Gi"});
        let condition = |kind: &str, status: &str, reason: &str| {
            json!({"type": kind, "status": status, "reason": reason, "message": reason,
               "lastHeartbeatTime": time(now), "lastTransitionTime": time(since)})
        };
        let status: Value = json!({
            "capacity": resources,
            "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            // The kubelet API speaks WebSocket itself: the API server passes kubectl's streams through.
            "declaredFeatures": ["ExtendWebSocketsToKubelet"],
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                condition("Ready", "True", "KubeletReady"),
            ],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "local-cluster",
                "containerRuntimeVersion": "local-cluster://sandbox", "kubeletVersion": "v1.36.2",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            },
        });
        api.patch_node_status(name, &status)?;
        let micro = jiff::Timestamp::try_from(now).map_err(|e| Error::Manifest(format!("clock: {e}")))?;
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": micro.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            },
        });
        api.apply_lease(name, &lease)
    }
}
