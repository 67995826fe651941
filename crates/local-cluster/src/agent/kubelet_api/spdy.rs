//! SPDY/3.1 framing, as `kubectl port-forward` speaks it inside a WebSocket (subprotocol
//! `SPDY/3.1+portforward.k8s.io`, passed through by the API server to a node that declares
//! `ExtendWebSocketsToKubelet`): the WebSocket's binary messages carry a byte stream of SPDY frames.
//!
//! Only what a port-forward server needs: streams opened by the client (SYN_STREAM, whose header blocks
//! are zlib-compressed against SPDY's dictionary in one stream per direction), replies, data with FIN, stream
//! resets, PING answered, GOAWAY. SETTINGS and WINDOW_UPDATE are read and ignored: Kubernetes's SPDY
//! implementation has no flow control either.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// The WebSocket subprotocol of a SPDY port-forward tunnel.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const VERSION: u16 = 3;
const FLAG_FIN: u8 = 0x01;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
/// RST_STREAM status: the stream is not wanted any more.
pub const CANCEL: u32 = 5;
/// GOAWAY status: the client broke the protocol.
pub const PROTOCOL_ERROR: u32 = 1;
/// A frame's length field has 24 bits.
const MAX_DATA: usize = (1 << 24) - 1;

/// The header dictionary of SPDY/3 (section 2.6.10.1 of the draft): these words, each after its length as
/// four bytes big-endian, then [`DICTIONARY_TAIL`].
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICTIONARY_TAIL: &str =
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
    203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
    403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
    Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
    chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
    text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            d.extend_from_slice(&(word.len() as u32).to_be_bytes());
            d.extend_from_slice(word.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

/// A frame from the client, as the port-forward server acts on it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// SYN_STREAM: a new stream and its headers (names lower-case).
    Open {
        id: u32,
        headers: BTreeMap<String, String>,
    },
    Data {
        id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    Reset {
        id: u32,
    },
    Ping(u32),
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, NOOP, SYN_REPLY, HEADERS: nothing to do (header blocks still inflated, to keep
    /// the compression stream in step).
    Ignored,
}

/// Splits the client's byte stream into frames.
pub struct Decoder {
    pending: Vec<u8>,
    inflater: Inflater,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { pending: Vec::new(), inflater: Inflater::new() }
    }
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` until one has arrived in full.
    pub fn next(&mut self) -> Result<Option<Frame>, String> {
        let Some(head) = self.pending.get(..8) else { return Ok(None) };
        let length = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
        if self.pending.len() < 8 + length {
            return Ok(None);
        }
        let frame: Vec<u8> = self.pending.drain(..8 + length).collect();
        let (head, body) = frame.split_at(8);
        let flags = head[4];
        let word = |at: usize| -> Result<u32, String> {
            let bytes = body.get(at..at + 4).ok_or_else(|| format!("a frame of {length} bytes is too short"))?;
            Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff)
        };
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data { id, fin: flags & FLAG_FIN != 0, data: body.to_vec() }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(format!("SPDY version {version}; this node speaks SPDY/3.1"));
        }
        Ok(Some(match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                let id = word(0)?;
                let block = body.get(10..).ok_or("a SYN_STREAM without headers")?;
                Frame::Open { id, headers: parse_headers(&self.inflater.inflate(block)?)? }
            }
            kind @ (SYN_REPLY | HEADERS) => {
                let block = body.get(4..).ok_or_else(|| format!("a control frame {kind} without headers"))?;
                self.inflater.inflate(block)?;
                Frame::Ignored
            }
            RST_STREAM => Frame::Reset { id: word(0)? },
            PING => Frame::Ping(word(0)?),
            GOAWAY => Frame::GoAway,
            _ => Frame::Ignored,
        }))
    }
}

/// A header block: a count, then each name and value after its length (four bytes big-endian each).
fn parse_headers(block: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let bytes = block.get(at..at + n).ok_or("a truncated header block")?;
        at += n;
        Ok(bytes)
    };
    let mut number = || -> Result<usize, String> {
        let b = take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = number()?;
    let mut headers = BTreeMap::new();
    for _ in 0..count {
        let mut text = || -> Result<String, String> {
            let b = block.get(at..at + 4).ok_or("a truncated header block")?;
            let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let s = block.get(at + 4..at + 4 + n).ok_or("a truncated header block")?;
            at += 4 + n;
            String::from_utf8(s.to_vec()).map_err(|_| "a header that is not UTF-8".to_owned())
        };
        let name = text()?;
        // Several values of one name are separated by NUL; a port-forward needs the first.
        let value = text()?.split('\0').next().unwrap_or_default().to_owned();
        headers.insert(name.to_ascii_lowercase(), value);
    }
    Ok(headers)
}

/// The client's header compression: one zlib stream for the whole connection, with SPDY's dictionary
/// preset. The dictionary is laid into the decompressor's window before the first byte, which is all a
/// preset dictionary is.
struct Inflater {
    state: Box<DecompressorOxide>,
    /// The last 32 KiB of output (a ring), the dictionary first.
    window: Vec<u8>,
    at: usize,
    /// zlib header bytes still to skip (2, then 4 more for the dictionary's id).
    header: Option<Vec<u8>>,
}

impl Inflater {
    fn new() -> Self {
        let mut window = vec![0u8; 32 * 1024];
        let dictionary = dictionary();
        window[..dictionary.len()].copy_from_slice(dictionary);
        Inflater { state: Box::default(), window, at: dictionary.len(), header: Some(Vec::new()) }
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, String> {
        if let Some(header) = self.header.as_mut() {
            while header.len() < 2 || (header[1] & 0x20 != 0 && header.len() < 6) {
                let Some((&b, rest)) = input.split_first() else { return Ok(Vec::new()) };
                header.push(b);
                input = rest;
            }
            if header[0] & 0x0f != 8 || (u16::from(header[0]) << 8 | u16::from(header[1])) % 31 != 0 {
                return Err("the header block is not a zlib stream".into());
            }
            if header[1] & 0x20 != 0 && header[2..6] != adler32(dictionary()).to_be_bytes() {
                return Err("the header block was compressed with another dictionary than SPDY/3's".into());
            }
            self.header = None;
        }
        let mut out = Vec::new();
        loop {
            let flags = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
            let (status, read, written) = decompress(&mut self.state, input, &mut self.window, self.at, flags);
            out.extend_from_slice(&self.window[self.at..self.at + written]);
            self.at = (self.at + written) % self.window.len();
            input = &input[read..];
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if input.is_empty() => return Ok(out),
                TINFLStatus::NeedsMoreInput => continue,
                other => return Err(format!("the compressed header block does not inflate: {other:?}")),
            }
        }
    }
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    b << 16 | a
}

/// The server's frames. Its header blocks (only empty ones: a SYN_REPLY carries none) are one zlib stream
/// that declares SPDY's dictionary and holds stored blocks, which refer to nothing.
#[derive(Default)]
pub struct Encoder {
    started: bool,
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

impl Encoder {
    /// SYN_REPLY to the client's stream `id`, without headers.
    pub fn reply(&mut self, id: u32) -> Vec<u8> {
        let mut body = id.to_be_bytes().to_vec();
        if !self.started {
            // CMF 0x78 (deflate, 32 KiB window), FLG 0x20 (dictionary; 0x7820 is a multiple of 31).
            body.extend_from_slice(&[0x78, 0x20]);
            body.extend_from_slice(&adler32(dictionary()).to_be_bytes());
            self.started = true;
        }
        // A stored block of the four bytes of "no headers" (not final, LEN 4, NLEN !4), then an empty one, as a
        // sync flush ends a block: a reader hands out what it holds at an empty stored block, and would
        // otherwise wait for the next block's header, past the end of this frame.
        body.extend_from_slice(&[0x00, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xff, 0xff]);
        control(SYN_REPLY, 0, &body)
    }
}

/// DATA frames on stream `id`, the last with FIN when `fin` (an empty one when `data` is).
pub fn data(id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = if data.is_empty() { vec![data] } else { data.chunks(MAX_DATA).collect() };
    let mut frames = Vec::with_capacity(data.len() + 8 * chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        frames.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        frames.push(if fin && i + 1 == chunks.len() { FLAG_FIN } else { 0 });
        frames.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
        frames.extend_from_slice(chunk);
    }
    frames
}

pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

pub fn reset(id: u32, status: u32) -> Vec<u8> {
    control(RST_STREAM, 0, &[id.to_be_bytes(), status.to_be_bytes()].concat())
}

pub fn go_away(last_stream: u32, status: u32) -> Vec<u8> {
    control(GOAWAY, 0, &[last_stream.to_be_bytes(), status.to_be_bytes()].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0)).collect()
    }

    fn syn_stream(id: u32, block: &[u8]) -> Vec<u8> {
        let body = [&id.to_be_bytes()[..], &[0, 0, 0, 0, 0, 0], block].concat();
        control(SYN_STREAM, 0, &body)
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        assert_eq!(dictionary().len(), 1423);
        assert_eq!(adler32(dictionary()), 0xe3c6_a7c2);
    }

    /// Two header blocks as zlib (level 9, SPDY's dictionary, a sync flush after each) compresses them, the
    /// second referring back to the first, fed a few bytes at a time.
    #[test]
    fn streams_opened_by_a_zlib_client_carry_their_headers() -> Result<(), String> {
        let first = hex(
            "78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c606a626c04a4398b20d198094ade8c0600000000ffff",
        );
        let second = hex("c2aa19540e2512d60b000000ffff");
        let bytes = [syn_stream(1, &first), syn_stream(3, &second), data(3, true, b"hello"), ping(7)].concat();
        let mut decoder = Decoder::default();
        let mut frames = Vec::new();
        for chunk in bytes.chunks(5) {
            decoder.push(chunk);
            while let Some(frame) = decoder.next()? {
                frames.push(frame);
            }
        }
        let headers = |kind: &str| -> BTreeMap<String, String> {
            [("port", "5432"), ("requestid", "0"), ("streamtype", kind)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        assert_eq!(
            frames,
            vec![
                Frame::Open { id: 1, headers: headers("error") },
                Frame::Open { id: 3, headers: headers("data") },
                Frame::Data { id: 3, fin: true, data: b"hello".to_vec() },
                Frame::Ping(7),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_header_block_against_another_dictionary_is_refused() {
        let mut block = hex(
            "78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c606a626c04a4398b20d198094ade8c0600000000ffff",
        );
        block[2] ^= 1;
        let mut decoder = Decoder::default();
        decoder.push(&syn_stream(1, &block));
        assert!(decoder.next().is_err_and(|e| e.contains("another dictionary")));
    }

    /// What the server sends inflates, with the dictionary, to an empty header block each time.
    #[test]
    fn replies_inflate_to_empty_header_blocks() -> Result<(), String> {
        let mut encoder = Encoder::default();
        let mut inflater = Inflater::new();
        for id in [1, 3] {
            let frame = encoder.reply(id);
            assert_eq!(&frame[..4], &[0x80, 0x03, 0x00, 0x02]);
            assert_eq!(u32::from_be_bytes([0, frame[5], frame[6], frame[7]]) as usize, frame.len() - 8);
            assert_eq!(inflater.inflate(&frame[12..])?, vec![0, 0, 0, 0]);
        }
        Ok(())
    }
}
