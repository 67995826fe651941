//! kube-proxy's part on the node, in user space: a listener on each port of each ClusterIP Service inside
//! the namespace's pod network (the switch holds the Service range), forwarding every connection to a ready
//! endpoint of its EndpointSlices. A Service without a ready endpoint has no listener, so a connection to it
//! is refused, as kube-proxy's reject rule does. The forwarded connection comes from the switch's address,
//! not from the client pod (no NAT here): a network cut between two pods does not cut their Service traffic.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::api::Clients;
use crate::error::{Error, Result};
use crate::kubelet::node::cluster_ip;
use crate::sandbox::netns::{dial_in, Network};
use crate::store::{kind_and_name, Store};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Backends = Arc<Mutex<Vec<SocketAddr>>>;

struct Listener {
    backends: Backends,
    task: tokio::task::AbortHandle,
}

/// The Service listeners of one namespace; stopped when dropped.
#[derive(Default)]
pub struct ServiceProxy {
    listeners: BTreeMap<SocketAddr, Listener>,
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        for l in self.listeners.values() {
            l.task.abort();
        }
    }
}

impl ServiceProxy {
    /// Listens on every Service port that has a ready endpoint, and only those; `api_service` (the
    /// `kubernetes` Service, forwarded to the API server on the host) is left alone.
    pub fn sync(&mut self, api: &Clients, network: &Network, store: &Store, api_service: SocketAddr) -> Result<()> {
        let mut wanted = service_backends(store);
        wanted.remove(&api_service);
        self.listeners.retain(|addr, l| {
            let keep = wanted.contains_key(addr);
            if !keep {
                l.task.abort();
            }
            keep
        });
        for (addr, backends) in wanted {
            if let Some(l) = self.listeners.get(&addr) {
                *l.backends.lock().unwrap_or_else(PoisonError::into_inner) = backends;
                continue;
            }
            let listener = network.listen(addr)?;
            let shared: Backends = Arc::new(Mutex::new(backends));
            let task = forward(api, listener, network.switch_path(), Arc::clone(&shared))?;
            self.listeners.insert(addr, Listener { backends: shared, task });
        }
        Ok(())
    }
}

/// Accepts on `listener` and joins each connection to the next backend, dialled from inside the switch.
fn forward(
    api: &Clients,
    listener: std::net::TcpListener,
    switch: PathBuf,
    backends: Backends,
) -> Result<tokio::task::AbortHandle> {
    listener.set_nonblocking(true).map_err(|source| Error::Io { context: "a Service's listener".into(), source })?;
    let next = Arc::new(AtomicUsize::new(0));
    Ok(api.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        while let Ok((mut client, _)) = listener.accept().await {
            let chosen = {
                let all = backends.lock().unwrap_or_else(PoisonError::into_inner);
                (!all.is_empty()).then(|| all[next.fetch_add(1, Ordering::Relaxed) % all.len()])
            };
            let Some(backend) = chosen else { continue };
            let switch = switch.clone();
            tokio::spawn(async move {
                let dialled = tokio::task::spawn_blocking(move || dial_in(switch, backend, CONNECT_TIMEOUT)).await;
                // A backend that cannot be reached closes the client's connection.
                let Ok(Ok(stream)) = dialled else { return };
                if stream.set_nonblocking(true).is_err() {
                    return;
                }
                if let Ok(mut upstream) = tokio::net::TcpStream::from_std(stream) {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    }))
}

/// Each ClusterIP Service port -> the ready endpoints behind it (Services without any left out).
fn service_backends(store: &Store) -> BTreeMap<SocketAddr, Vec<SocketAddr>> {
    let mut wanted = BTreeMap::new();
    for service in store.of_kind("Service") {
        let Ok((_, name)) = kind_and_name(service) else { continue };
        let Some(ip) = cluster_ip(service) else { continue };
        let slices: Vec<&Value> = store
            .of_kind("EndpointSlice")
            .filter(|s| {
                s.pointer("/metadata/labels/kubernetes.io~1service-name").and_then(Value::as_str) == Some(&name)
            })
            .collect();
        for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if port.get("protocol").and_then(Value::as_str).is_some_and(|p| p != "TCP") {
                continue;
            }
            let Some(number) = port.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let port_name = port.get("name").and_then(Value::as_str).unwrap_or("");
            let mut backends: Vec<SocketAddr> =
                slices.iter().flat_map(|slice| ready_backends(slice, port_name)).collect();
            backends.sort();
            backends.dedup();
            if !backends.is_empty() {
                wanted.insert(SocketAddr::new(ip, number), backends);
            }
        }
    }
    wanted
}

/// The ready addresses of `slice` with the number of its port named `port_name`.
fn ready_backends(slice: &Value, port_name: &str) -> Vec<SocketAddr> {
    let port = slice
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
        .and_then(|p| p.get("port").and_then(Value::as_u64))
        .and_then(|p| u16::try_from(p).ok());
    let Some(port) = port else { return Vec::new() };
    slice
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false))
        .flat_map(|e| e.get("addresses").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|a| a.as_str()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_service_port_forwards_to_the_ready_endpoints_of_its_named_port_only() {
        let mut store = Store::default();
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
            "spec": {"clusterIP": "10.96.3.4", "ports": [{"name": "pg", "port": 5432, "targetPort": "pg"},
                                                          {"name": "metrics", "port": 9187}]}});
        let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db-headless"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}});
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "db-x1", "labels": {"kubernetes.io/service-name": "db"}},
            "ports": [{"name": "pg", "port": 5433, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.231.0.5"], "conditions": {"ready": true}},
                          {"addresses": ["10.231.0.6"], "conditions": {"ready": false}}]});
        for v in [&service, &headless, &slice] {
            store.put(v).unwrap();
        }
        let wanted = service_backends(&store);
        // The metrics port has no endpoint port of its name: no listener, so connections are refused.
        assert_eq!(wanted.len(), 1, "{wanted:?}");
        assert_eq!(wanted[&"10.96.3.4:5432".parse().unwrap()], vec!["10.231.0.5:5433".parse().unwrap()]);
    }
}
