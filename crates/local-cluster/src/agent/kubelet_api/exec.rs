//! `kubectl exec` on the node: the command runs in the container's namespaces as the container's user, its
//! stdin, stdout and stderr streamed over the WebSocket channels 0, 1 and 2, and its end reported on channel 3
//! as the kubelet reports it (a `Status`, with the exit code when it is not 0).

use std::process::Stdio;

use futures::{SinkExt, StreamExt};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::websocket::{close, frame, Ws, CLOSE_SIGNAL};
use crate::kubelet::pod::ExecTarget;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

/// Best first: v5 adds stdin's close signal, v4 the exit code in a `Status`.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];

/// What the client asked for in the query (`input`, `output`, `error`).
#[derive(Clone, Copy)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// The command's end as the kubelet writes it to the error channel; `channel.k8s.io` (v1) gets only a
/// failure's message.
fn end_message(protocol: &str, outcome: Result<std::process::ExitStatus, String>) -> Option<Vec<u8>> {
    let status = match outcome {
        Ok(s) if s.success() => json!({"metadata": {}, "status": "Success"}),
        Ok(s) => {
            // A signal's death reads as 128+signal, as a shell reports it.
            let code = s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0));
            json!({
                "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        }
        Err(e) => json!({"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                         "message": format!("error executing command in container: {e}")}),
    };
    if protocol == "channel.k8s.io" {
        return (status["status"] != "Success").then(|| status["message"].as_str().unwrap_or_default().into());
    }
    Some(status.to_string().into_bytes())
}

async fn pump(channel: u8, mut from: impl AsyncRead + Unpin, to: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.send(frame(channel, &buf[..n])).await.is_err() {
            break;
        }
    }
}

/// Runs `argv` and streams it until it ends; a client that goes away first takes the command down with it.
pub async fn serve(ws: Ws, protocol: &'static str, target: ExecTarget, argv: Vec<String>, streams: Streams) {
    let (mut sink, mut source) = ws.split();
    let piped = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
    let spawned = target.spawn(&argv, &[], [piped(streams.stdin), piped(streams.stdout), piped(streams.stderr)]);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            if let Some(m) = end_message(protocol, Err(e.to_string())) {
                let _ = sink.send(frame(ERROR, &m)).await;
            }
            close(&mut sink).await;
            return;
        }
    };
    let first = if streams.stdout {
        STDOUT
    } else if streams.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = sink.send(frame(first, &[])).await;
    let group = Pid::from_raw(child.id() as i32);
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let mut pumps = Vec::new();
    let stdout = child.stdout.take().and_then(|o| tokio::process::ChildStdout::from_std(o).ok());
    let stderr = child.stderr.take().and_then(|e| tokio::process::ChildStderr::from_std(e).ok());
    if let Some(out) = stdout {
        pumps.push(tokio::spawn(pump(STDOUT, out, tx.clone())));
    }
    if let Some(err) = stderr {
        pumps.push(tokio::spawn(pump(STDERR, err, tx.clone())));
    }
    drop(tx);
    let mut stdin = child.stdin.take().and_then(|i| tokio::process::ChildStdin::from_std(i).ok());
    let mut waiter = tokio::task::spawn_blocking(move || child.wait());
    // Until the command ends: its output goes out, the client's stdin comes in.
    let outcome = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(message) => {
                    if sink.send(message).await.is_err() {
                        break None;
                    }
                }
                // Both pipes closed: what is left is the exit status.
                None => break Some(()),
            },
            incoming = source.next() => match incoming {
                Some(Ok(Message::Binary(data))) => match data.as_ref() {
                    [STDIN, bytes @ ..] => {
                        if let Some(input) = stdin.as_mut() {
                            if input.write_all(bytes).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    [CLOSE_SIGNAL, STDIN] => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
                Some(Ok(_)) => {}
            },
        }
    };
    if outcome.is_none() {
        // The client left: the command and all it started go.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = waiter.await;
        return;
    }
    drop(stdin);
    let mut client_open = true;
    let status = loop {
        tokio::select! {
            status = &mut waiter => break status.map_err(|e| e.to_string()).and_then(|s| s.map_err(|e| e.to_string())),
            incoming = source.next(), if client_open => if matches!(incoming, Some(Ok(Message::Close(_)) | Err(_)) | None) {
                client_open = false;
                let _ = killpg(group, Signal::SIGKILL);
            },
        }
    };
    for pump in pumps {
        let _ = pump.await;
    }
    if let Some(m) = end_message(protocol, status) {
        let _ = sink.send(frame(ERROR, &m)).await;
    }
    close(&mut sink).await;
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    #[test]
    fn exit_codes_are_reported_as_the_kubelet_reports_them() {
        let ok = end_message("v5.channel.k8s.io", Ok(ExitStatus::from_raw(0))).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&ok).unwrap()["status"], "Success");
        let failed: serde_json::Value =
            serde_json::from_slice(&end_message("v4.channel.k8s.io", Ok(ExitStatus::from_raw(3 << 8))).unwrap())
                .unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let killed: serde_json::Value =
            serde_json::from_slice(&end_message("v5.channel.k8s.io", Ok(ExitStatus::from_raw(9))).unwrap()).unwrap();
        assert_eq!(killed["details"]["causes"][0]["message"], "137");
        assert_eq!(end_message("channel.k8s.io", Ok(ExitStatus::from_raw(0))), None);
        let v1 = end_message("channel.k8s.io", Err("no such file".into())).unwrap();
        assert!(String::from_utf8(v1).unwrap().contains("no such file"));
    }
}
