//! A port-forward on the node: TCP connections to `localhost:<port>` inside the pod's network namespace, in
//! either of the two protocols kubelets speak over WebSocket:
//! - `v4.channel.k8s.io` (kube-rs, `kubectl citus`): the ports in the query, for the `i`-th a connection whose
//!   bytes go on channel `2i` and errors on `2i+1`; each channel first carries the port number (two bytes,
//!   little-endian);
//! - `SPDY/3.1+portforward.k8s.io` (`kubectl port-forward`): SPDY inside the WebSocket; per connection the
//!   client opens an error and a data stream, both naming the port and a request id, and the node answers
//!   each, forwards the data stream, and ends both when the connection ends, errors on the error stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{self, Frame};
use super::websocket::{close, frame, Ws};
use crate::sandbox::netns::dial_in;

pub const PROTOCOLS: &[&str] = &["v4.channel.k8s.io", spdy::TUNNEL_PROTOCOL];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `port` query values (each may list several, comma-separated).
pub fn ports(values: &[String]) -> Result<Vec<u16>, String> {
    let ports: Vec<u16> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{p:?} is not a port (1-65535)")))
        .collect::<Result<_, _>>()?;
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

async fn dial(netns: PathBuf, port: u16) -> Result<tokio::net::TcpStream, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let std = tokio::task::spawn_blocking(move || dial_in(netns, addr, CONNECT_TIMEOUT))
        .await
        .map_err(|e| e.to_string())??;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(std).map_err(|e| e.to_string())
}

/// Serves the port-forward in the protocol the upgrade agreed on; `ports` are the query's, which only
/// `v4.channel.k8s.io` uses (checked before the upgrade).
pub async fn serve(ws: Ws, protocol: &str, netns: PathBuf, pod: String, ports: Vec<u16>) {
    if protocol == spdy::TUNNEL_PROTOCOL {
        serve_spdy(ws, netns, pod).await
    } else {
        serve_channels(ws, netns, pod, ports).await
    }
}

/// Forwards until every connection to the pod has ended or the client has gone.
async fn serve_channels(ws: Ws, netns: PathBuf, pod: String, ports: Vec<u16>) {
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = (2 * i as u8, 2 * i as u8 + 1);
        let _ = sink.send(frame(data, &port.to_le_bytes())).await;
        let _ = sink.send(frame(error, &port.to_le_bytes())).await;
        match dial(netns.clone(), *port).await {
            Ok(stream) => {
                let (mut read, write) = stream.into_split();
                writers.push(Some(write));
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = read.read(&mut buf).await {
                        if n == 0 || tx.send(frame(data, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                writers.push(None);
                let message = format!("error forwarding port {port} to pod {pod}: {e}");
                let _ = sink.send(frame(error, message.as_bytes())).await;
            }
        }
    }
    drop(tx);
    let mut client_open = true;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(message) => {
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                // Every connection to the pod has closed.
                None => break,
            },
            incoming = source.next(), if client_open => match incoming {
                Some(Ok(Message::Binary(data))) => {
                    let Some((&channel, bytes)) = data.split_first() else { continue };
                    if channel % 2 != 0 {
                        continue;
                    }
                    if let Some(slot) = writers.get_mut(usize::from(channel / 2)) {
                        if let Some(w) = slot.as_mut() {
                            if w.write_all(bytes).await.is_err() {
                                *slot = None;
                            }
                        }
                    }
                }
                // The client is done: the pod sees its end of the stream, answers what it still owes, closes.
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    client_open = false;
                    // Dropping a write half shuts down that direction of the connection.
                    writers.clear();
                }
                Some(Ok(_)) => {}
            },
        }
    }
    close(&mut sink).await;
}

/// One connection of a SPDY port-forward: its two streams as they arrive.
#[derive(Default)]
struct Pair {
    port: Option<u16>,
    error: Option<u32>,
    data: Option<u32>,
}

/// The request id that pairs the two streams; clients before Kubernetes 1.6 sent none (then the error stream's
/// id, the data stream's minus 2).
fn request_id(headers: &BTreeMap<String, String>, stream: u32, kind: &str) -> String {
    match headers.get("requestid") {
        Some(id) => id.clone(),
        None if kind == "data" => stream.saturating_sub(2).to_string(),
        None => stream.to_string(),
    }
}

/// SPDY inside the WebSocket, until the client goes: every stream answered, each complete pair forwarded.
async fn serve_spdy(ws: Ws, netns: PathBuf, pod: String) {
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let sender = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if sink.send(Message::Binary(bytes.into())).await.is_err() {
                break;
            }
        }
        close(&mut sink).await;
    });
    let mut decoder = spdy::Decoder::default();
    let mut encoder = spdy::Encoder::default();
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    // data stream id -> the write half of its connection to the pod, and the task reading the other half.
    let mut writers: BTreeMap<u32, OwnedWriteHalf> = BTreeMap::new();
    let mut readers: BTreeMap<u32, tokio::task::AbortHandle> = BTreeMap::new();
    let mut last_stream = 0;
    'client: while let Some(Ok(message)) = source.next().await {
        let Message::Binary(bytes) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        decoder.push(&bytes);
        loop {
            let frame = match decoder.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("node agent: port-forward to {pod}: {e}");
                    let _ = tx.send(spdy::go_away(last_stream, spdy::PROTOCOL_ERROR)).await;
                    break 'client;
                }
            };
            match frame {
                Frame::Open { id, headers } => {
                    last_stream = id;
                    if tx.send(encoder.reply(id)).await.is_err() {
                        break 'client;
                    }
                    let kind = headers.get("streamtype").cloned().unwrap_or_default();
                    let port = headers.get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
                    let pair = pairs.entry(request_id(&headers, id, &kind)).or_default();
                    pair.port = pair.port.or(port);
                    match kind.as_str() {
                        "error" => pair.error = Some(id),
                        "data" => pair.data = Some(id),
                        _ => {
                            let _ = tx.send(spdy::reset(id, spdy::CANCEL)).await;
                            continue;
                        }
                    }
                    if let (Some(error), Some(data)) = (pair.error, pair.data) {
                        let port = pair.port;
                        pairs.retain(|_, p| p.error != Some(error));
                        let Some(port) = port else {
                            let message = "a port-forward stream without a valid \"port\" header (1-65535)";
                            let _ = tx.send(end_streams(data, error, message)).await;
                            continue;
                        };
                        match dial(netns.clone(), port).await {
                            Ok(stream) => {
                                let (read, write) = stream.into_split();
                                writers.insert(data, write);
                                let task = tokio::spawn(pod_to_client(read, tx.clone(), data, error));
                                readers.insert(data, task.abort_handle());
                            }
                            Err(e) => {
                                let message = format!("error forwarding port {port} to pod {pod}: {e}");
                                let _ = tx.send(end_streams(data, error, &message)).await;
                            }
                        }
                    }
                }
                Frame::Data { id, fin, data } => {
                    if let Some(write) = writers.get_mut(&id) {
                        if write.write_all(&data).await.is_err() || fin {
                            // Dropping the write half shuts down that direction: the pod sees the end.
                            writers.remove(&id);
                        }
                    }
                }
                Frame::Reset { id } => {
                    writers.remove(&id);
                    if let Some(reader) = readers.remove(&id) {
                        reader.abort();
                    }
                }
                Frame::Ping(id) => {
                    if tx.send(spdy::ping(id)).await.is_err() {
                        break 'client;
                    }
                }
                Frame::GoAway => break 'client,
                Frame::Ignored => {}
            }
        }
    }
    writers.clear();
    readers.values().for_each(tokio::task::AbortHandle::abort);
    drop(tx);
    let _ = sender.await;
}

/// The pod's side of one connection, as DATA frames on stream `data`; at its end, FIN on both streams. A
/// read error ends it the same way, unreported: PostgreSQL resets a connection whose client left with data
/// unread, and kubectl ends the whole port-forward, every other session with it, on any message on an error
/// stream.
async fn pod_to_client(mut read: tokio::net::tcp::OwnedReadHalf, tx: mpsc::Sender<Vec<u8>>, data: u32, error: u32) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(spdy::data(data, false, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(end_streams(data, error, "")).await;
}

/// FIN on both streams of a connection, `message` (when not empty) on its error stream, which the client
/// prints.
fn end_streams(data: u32, error: u32, message: &str) -> Vec<u8> {
    [spdy::data(data, true, b""), spdy::data(error, true, message.as_bytes())].concat()
}
