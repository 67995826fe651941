//! A port-forward on the node: for the `i`-th port asked for, a TCP connection to `localhost:<port>` inside
//! the pod's network namespace, its bytes on WebSocket channel `2i` and its errors on `2i+1`; each channel
//! first carries the port number (two bytes, little-endian), as the kubelet sends it.

use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::websocket::{close, frame, Ws};
use crate::sandbox::netns::dial_in;

pub const PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

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

/// Forwards until every connection to the pod has ended or the client has gone.
pub async fn serve(ws: Ws, netns: PathBuf, pod: String, ports: Vec<u16>) {
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
