//! The kubelet's HTTPS API on 127.0.0.1, the part the API server proxies `kubectl logs` to:
//! `GET /containerLogs/<namespace>/<pod>/<container>` (with `tailLines`). The pod's log holds every container's
//! output, so each container's log is the pod's. Exec, attach and port-forward, which the API server speaks to
//! a kubelet over SPDY, answer 501 naming what is missing. The serving certificate is self-signed: the test
//! API server is not told to verify kubelets (`--kubelet-certificate-authority`), and the API accepts any
//! client on the loopback address.

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

type LogsOf = dyn Fn(&str, &str) -> Result<PathBuf> + Send + Sync;

/// Starts the API on a free port of 127.0.0.1; returns the port.
pub fn serve(api: &Clients, logs_of: impl Fn(&str, &str) -> Result<PathBuf> + Send + Sync + 'static) -> Result<u16> {
    let tls = tls_config()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| Error::Io { context: "binding the kubelet API".into(), source })?;
    let port =
        listener.local_addr().map_err(|source| Error::Io { context: "the kubelet API's port".into(), source })?.port();
    let logs_of: Arc<LogsOf> = Arc::new(logs_of);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    api.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, logs_of) = (acceptor.clone(), Arc::clone(&logs_of));
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&logs_of)));
                // A client that goes away mid-request is no error of the node's.
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
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

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

async fn answer(req: Request<Incoming>, logs_of: Arc<LogsOf>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path: Vec<&str> = req.uri().path().trim_start_matches('/').split('/').collect();
    let tail = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("tailLines="))
        .and_then(|n| n.parse::<usize>().ok());
    Ok(match path.as_slice() {
        ["containerLogs", ns, pod, _container] => match logs_of(ns, pod).and_then(|p| {
            std::fs::read_to_string(&p).map_err(|source| Error::Io { context: format!("reading {}", p.display()), source })
        }) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
                text(StatusCode::OK, lines[from..].iter().map(|l| format!("{l}\n")).collect())
            }
            Err(e) => text(StatusCode::NOT_FOUND, e.to_string()),
        },
        [op @ ("exec" | "attach" | "portForward" | "run"), ..] => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("the local-cluster node agent does not serve {op} yet (it needs SPDY streams): exec through the test harness"),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("no such kubelet endpoint: {}", req.uri().path())),
    })
}
