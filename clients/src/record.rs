//! What a client records: per-request timings and per-connection facts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The zero of a client's time axis. All recorded times are ns since the epoch,
/// from the monotonic clock (`Instant`, CLOCK_MONOTONIC on Linux, ns resolution).
#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    at: Instant,
    /// The same moment as host-wide CLOCK_MONOTONIC ns, to put records made
    /// elsewhere (a server's transport samples) on this axis.
    mono_ns: u64,
}

impl Epoch {
    pub fn new() -> Self {
        Epoch {
            at: Instant::now(),
            mono_ns: quicbench_wire::clock::mono_ns(),
        }
    }
    pub fn instant(&self) -> Instant {
        self.at
    }
    /// The epoch in host-wide CLOCK_MONOTONIC ns.
    pub fn mono_ns(&self) -> u64 {
        self.mono_ns
    }
    /// ns since the epoch of an instant (0 if before it).
    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.at).as_nanos() as u64
    }
    /// ns since the epoch, now.
    pub fn now_ns(&self) -> u64 {
        self.ns(Instant::now())
    }
}

impl Default for Epoch {
    fn default() -> Self {
        Self::new()
    }
}

/// One request to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Request target, e.g. "/bytes/1024".
    pub path: String,
    /// Ask for the body from this byte on (`Range: bytes=N-`), to resume a transfer.
    pub range_from: Option<u64>,
    /// Issue this long after the batch starts (paced workloads); None: at once.
    pub at: Option<Duration>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Request {
            path: path.into(),
            range_from: None,
            at: None,
        }
    }
    pub fn bytes(n: u64) -> Self {
        Self::get(format!("/bytes/{n}"))
    }
    pub fn at(mut self, at: Duration) -> Self {
        self.at = Some(at);
        self
    }
    pub fn range_from(mut self, from: u64) -> Self {
        self.range_from = Some(from);
        self
    }
}

/// Progress samples: (ns since epoch, body bytes received so far).
pub type Progress = Vec<(u64, u64)>;

/// Everything measured about one request. Times are ns since the client's
/// [`Epoch`]; `None` when that point was never reached.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    /// Index of the request in its batch.
    pub index: usize,
    pub path: String,
    /// Connection that carried it (unique within the client).
    pub conn_id: u64,
    /// Stream id (HTTP/2, HTTP/3) or position on the connection (HTTP/1.1).
    pub stream_id: Option<u64>,
    /// When the application wanted to issue the request (its scheduled time):
    /// latency is measured from here, so queueing behind earlier requests counts.
    pub start_ns: u64,
    /// TCP connected / QUIC handshake done, if this request opened the connection.
    pub transport_ready_ns: Option<u64>,
    /// TLS handshake done (same as transport for QUIC), if this request opened it.
    pub tls_ready_ns: Option<u64>,
    /// Request fully handed to the transport.
    pub request_sent_ns: Option<u64>,
    /// First byte of the response (status line / HEADERS frame) received.
    pub first_byte_ns: Option<u64>,
    /// Last body byte received.
    pub last_byte_ns: Option<u64>,
    /// Body bytes received.
    pub bytes: u64,
    pub status: Option<u16>,
    /// Body matched the /bytes/N pattern (None: not a pattern body or not checked).
    pub verified: Option<bool>,
    pub error: Option<String>,
    /// Bytes vs time, when the client tracks progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Progress,
}

impl RequestRecord {
    pub fn new(index: usize, path: &str, conn_id: u64, start_ns: u64) -> Self {
        RequestRecord {
            index,
            path: path.to_string(),
            conn_id,
            start_ns,
            ..Default::default()
        }
    }
    /// Succeeded: no error, a status, and (for pattern bodies) verified bytes.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status.is_some() && self.verified != Some(false)
    }
    /// Time to first byte from start, ns.
    pub fn ttfb_ns(&self) -> Option<u64> {
        self.first_byte_ns.map(|t| t.saturating_sub(self.start_ns))
    }
    /// Total time from start to last byte, ns.
    pub fn total_ns(&self) -> Option<u64> {
        self.last_byte_ns.map(|t| t.saturating_sub(self.start_ns))
    }
}

/// Facts about one connection.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnInfo {
    pub conn_id: u64,
    pub protocol: String,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    /// Connect started (ns since epoch).
    pub start_ns: u64,
    /// QUIC: the endpoint is bound and the first Initial is about to leave
    /// (`start_ns` to here is the client's own set-up: UDP socket, buffers,
    /// quinn endpoint, transport config). None for TCP, whose connect is
    /// `start_ns`.
    #[serde(default)]
    pub handshake_start_ns: Option<u64>,
    /// TCP connected / QUIC handshake complete.
    pub transport_ready_ns: Option<u64>,
    /// TLS handshake complete (QUIC: same as transport).
    pub tls_ready_ns: Option<u64>,
    /// e.g. "TLSv1_3".
    pub tls_version: Option<String>,
    /// e.g. "TLS13_AES_128_GCM_SHA256".
    pub cipher: Option<String>,
    pub alpn: Option<String>,
    /// The TLS session was resumed (ticket accepted).
    pub resumed: Option<bool>,
    /// 0-RTT data was sent and accepted by the server (QUIC; TLS 1.3 early
    /// data over TCP), read back from the TLS state.
    pub early_data_accepted: Option<bool>,
    /// TCP Fast Open: the SYN carried data the server acknowledged
    /// (`TCP_INFO`'s `TCPI_OPT_SYN_DATA`), read back once data came back.
    #[serde(default)]
    pub tcp_syn_data: Option<bool>,
    /// Congestion controller read back from the connection (TCP:
    /// `getsockopt(TCP_CONGESTION)`; QUIC: quinn's state), in our names.
    pub congestion_control: Option<String>,
    /// The socket's buffers as the kernel granted them (SO_RCVBUF,
    /// SO_SNDBUF), read back, bytes.
    #[serde(default)]
    pub socket_buffers: Option<(u64, u64)>,
    /// QUIC: the UDP payload quinn's path used once the handshake was done
    /// (`stats().path.current_mtu`), read back: the link's MTU less the
    /// headers where the link is known, else quinn's 1200 before discovery.
    #[serde(default)]
    pub quic_mtu: Option<u16>,
}

/// Client failures, naming the step that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("client set-up: {0}")]
    Setup(String),
    #[error("connect to {addr}: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    #[error("TLS handshake with {addr}: {detail}")]
    Tls { addr: SocketAddr, detail: String },
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("I/O: {0}")]
    Io(String),
}
