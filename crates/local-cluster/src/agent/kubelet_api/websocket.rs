//! The WebSocket side of the kubelet's streaming endpoints: the upgrade, the subprotocol the client and the
//! endpoint agree on, and the channel framing (the first byte of each binary message names the stream).

use futures::stream::SplitSink;
use futures::SinkExt;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use hyper::upgrade::Upgraded;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{text, Reply};

pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Channel 255 of `v5.channel.k8s.io`: `[255, n]` says the client closed its stream `n` (stdin's EOF).
pub const CLOSE_SIGNAL: u8 = 255;

/// Ends the connection with a normal closure: clients take any other code, also "no status", for an error
/// and drop what they have not yet read.
pub async fn close(sink: &mut SplitSink<Ws, Message>) {
    let normal = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = sink.send(Message::Close(Some(normal))).await;
    let _ = sink.close().await;
}

/// A binary message on channel `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Whether the client offers WebSocket subprotocol `protocol`.
pub fn offers(req: &Request<Incoming>, protocol: &str) -> bool {
    offered(req).contains(&protocol)
}

fn offered(req: &Request<Incoming>) -> Vec<&str> {
    req.headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Answers the upgrade with the first of `supported` (best first) that the client offers, or with no
/// subprotocol when the client names none, and hands the WebSocket to `serve` once the upgrade is done.
/// A SPDY upgrade or a client that offers only other subprotocols gets 400 naming what is served.
pub fn upgrade<F, Fut>(req: &mut Request<Incoming>, supported: &[&'static str], serve: F) -> Reply
where
    F: FnOnce(Ws, &'static str) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).unwrap_or("");
    let wanted = header(UPGRADE);
    if !wanted.eq_ignore_ascii_case("websocket") {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "the local-cluster node agent streams over WebSocket ({}), not {wanted:?}: use kubectl 1.30 or \
                 newer, or a client that speaks WebSocket",
                supported.join(", ")
            ),
        );
    }
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
        return text(StatusCode::BAD_REQUEST, "a WebSocket upgrade without Sec-WebSocket-Key".into());
    };
    let offered = offered(req);
    let protocol = if offered.is_empty() {
        ""
    } else {
        match supported.iter().find(|p| offered.contains(p)) {
            Some(p) => p,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "none of the subprotocols {offered:?} is served by the local-cluster node agent; it serves {}",
                        supported.join(", ")
                    ),
                )
            }
        }
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        // The API server gave up before the switch: nothing to serve.
        let Ok(upgraded) = on_upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        serve(ws, protocol).await;
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&key) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if !protocol.is_empty() {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
    response
}
