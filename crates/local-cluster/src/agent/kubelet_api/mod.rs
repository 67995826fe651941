//! The kubelet's HTTPS API on 127.0.0.1, what the API server proxies `kubectl logs`, `kubectl exec` and
//! port-forwards to: `GET /containerLogs/<namespace>/<pod>/<container>` (with `tailLines`), and `exec` and
//! `portForward` over WebSocket (the node declares `ExtendWebSocketsToKubelet`, so the API server passes
//! kubectl's WebSocket through: exec in the channel protocols, port-forward also as SPDY tunnelled inside). The pod's log holds every container's
//! output, so each container's log is the pod's. The serving certificate is self-signed: the test API server
//! is not told to verify kubelets (`--kubelet-certificate-authority`), and the API accepts any client on the
//! loopback address.

mod exec;
mod port_forward;
mod spdy;
mod websocket;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;

use super::api::Clients;
use crate::error::{Error, Result};
use crate::kubelet::pod::ExecTarget;

/// What the API serves from: the pods running on the node.
pub trait NodePods: Send + Sync + 'static {
    fn log_path(&self, namespace: &str, pod: &str) -> Result<PathBuf>;
    fn exec_target(&self, namespace: &str, pod: &str, container: Option<&str>) -> Result<ExecTarget>;
}

type Reply = Response<Full<Bytes>>;

/// Starts the API on a free port of 127.0.0.1; returns the port.
pub fn serve(api: &Clients, pods: Arc<dyn NodePods>) -> Result<u16> {
    let tls = tls_config()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| Error::Io { context: "binding the kubelet API".into(), source })?;
    let port =
        listener.local_addr().map_err(|source| Error::Io { context: "the kubelet API's port".into(), source })?.port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    api.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, pods) = (acceptor.clone(), Arc::clone(&pods));
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&pods)));
                // A client that goes away mid-request is no error of the node's.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(port)
}

fn tls_config() -> Result<rustls::ServerConfig> {
    let tls_error = |e: &dyn std::fmt::Display| Error::Manifest(format!("the kubelet API's certificate: {e}"));
    let key = rcgen::KeyPair::generate().map_err(|e| tls_error(&e))?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(|e| tls_error(&e))?;
    let cert = params.self_signed(&key).map_err(|e| tls_error(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| tls_error(&e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(|e| tls_error(&e))
}

fn text(status: StatusCode, body: String) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The query's values of `key`, decoded.
fn query(req: &Request<Incoming>, key: &str) -> Vec<String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn flag(req: &Request<Incoming>, key: &str) -> bool {
    query(req, key).iter().any(|v| v == "1" || v == "true")
}

/// `f` on a blocking thread: the node's lock may be held by the agent's loop while it waits for an API call
/// that only this runtime's worker can complete, so the worker never waits for the lock itself.
async fn off_runtime<T: Send + 'static>(
    pods: &Arc<dyn NodePods>,
    f: impl FnOnce(&dyn NodePods) -> Result<T> + Send + 'static,
) -> Result<T> {
    let pods = Arc::clone(pods);
    tokio::task::spawn_blocking(move || f(pods.as_ref()))
        .await
        .unwrap_or_else(|e| Err(Error::Agent(format!("the kubelet API's lookup failed: {e}"))))
}

async fn answer(mut req: Request<Incoming>, pods: Arc<dyn NodePods>) -> Result<Reply, Infallible> {
    let path: Vec<String> = req.uri().path().trim_start_matches('/').split('/').map(str::to_owned).collect();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    Ok(match path.as_slice() {
        ["containerLogs", ns, pod, _container] => {
            let tail = query(&req, "tailLines").first().and_then(|n| n.parse::<usize>().ok());
            let (ns, pod) = (ns.to_string(), pod.to_string());
            logs(off_runtime(&pods, move |p| read_log(p, &ns, &pod)).await, tail)
        }
        // The API server may add the pod's uid before the container.
        ["exec", ns, pod, container] | ["exec", ns, pod, _, container] => {
            let argv = query(&req, "command");
            let streams =
                exec::Streams { stdin: flag(&req, "input"), stdout: flag(&req, "output"), stderr: flag(&req, "error") };
            if flag(&req, "tty") {
                text(
                    StatusCode::BAD_REQUEST,
                    "the local-cluster node agent offers no TTY: run kubectl exec without -t".into(),
                )
            } else if argv.is_empty() {
                text(StatusCode::BAD_REQUEST, "exec without a command: add `-- <command>`".into())
            } else {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                match off_runtime(&pods, move |p| p.exec_target(&ns, &pod, Some(&container))).await {
                    Ok(target) => websocket::upgrade(&mut req, exec::PROTOCOLS, move |ws, protocol| {
                        exec::serve(ws, protocol, target, argv, streams)
                    }),
                    Err(e) => text(StatusCode::NOT_FOUND, e.to_string()),
                }
            }
        }
        ["portForward", ns, pod] | ["portForward", ns, pod, _] => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            // SPDY's streams name their ports; the channel protocol takes them from the query.
            let ports = match port_forward::ports(&query(&req, "port")) {
                Err(_) if websocket::offers(&req, spdy::TUNNEL_PROTOCOL) => Ok(Vec::new()),
                ports => ports,
            };
            match (ports, off_runtime(&pods, move |p| p.exec_target(&ns, &pod, None)).await) {
                (Err(e), _) => text(StatusCode::BAD_REQUEST, e),
                (_, Err(e)) => text(StatusCode::NOT_FOUND, e.to_string()),
                (Ok(ports), Ok(target)) => {
                    let (netns, pod) = (target.netns(), target.pod().to_owned());
                    websocket::upgrade(&mut req, port_forward::PROTOCOLS, move |ws, protocol| {
                        port_forward::serve(ws, protocol, netns, pod, ports)
                    })
                }
            }
        }
        [op @ ("attach" | "run"), ..] => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("the local-cluster node agent does not serve {op}: use kubectl exec"),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("no such kubelet endpoint: {}", req.uri().path())),
    })
}

fn read_log(pods: &dyn NodePods, ns: &str, pod: &str) -> Result<String> {
    let path = pods.log_path(ns, pod)?;
    std::fs::read_to_string(&path)
        .map_err(|source| Error::Io { context: format!("reading {}", path.display()), source })
}

fn logs(log: Result<String>, tail: Option<usize>) -> Reply {
    match log {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
            text(StatusCode::OK, lines[from..].iter().map(|l| format!("{l}\n")).collect())
        }
        Err(e) => text(StatusCode::NOT_FOUND, e.to_string()),
    }
}
