//! What the TCP clients (HTTP/1.0, HTTP/1.1, pipelining, HTTP/2) share: opening
//! a TCP (+TLS 1.3) connection with its [`ConnInfo`], scheduling a batch, and
//! turning a streamed body into a [`RequestRecord`] (bytes, verification,
//! progress). Nothing here prints.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use quicbench_wire::pattern::Verifier;
use quicbench_wire::resource::Resource;
use quicbench_wire::sockinfo::{ConnProbe, Probed, Side};
use quicbench_wire::Protocol;
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpSocket;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::fastopen::{Flight, TcpIo};

use crate::pipelined::parse::{Event, ResponseParser};
use crate::{ClientError, ConnInfo, Epoch, Request, RequestRecord, Shared};

/// A TCP connection, with or without TLS, with a probe on its socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(Probed<TcpIo>),
    Tls(Box<TlsStream<Probed<TcpIo>>>),
}

impl Stream {
    /// The socket's transport probe (`TCP_INFO`; see `quicbench_wire::sockinfo`).
    pub(crate) fn probe(&self) -> Arc<ConnProbe> {
        match self {
            Stream::Plain(s) => s.probe().clone(),
            Stream::Tls(s) => s.get_ref().0.probe().clone(),
        }
    }

    /// The first flight's hold and what Fast Open and early data did.
    pub(crate) fn flight(&self) -> Arc<Flight> {
        match self {
            Stream::Plain(s) => s.get_ref().flight().clone(),
            Stream::Tls(s) => s.get_ref().0.get_ref().flight().clone(),
        }
    }
}

/// Most per-connection probes a client connection keeps (HTTP/1.0 opens one
/// connection per request): the first ones, enough to chart.
pub(crate) const MAX_PROBES: usize = 64;

/// Keep `p` in `probes` unless there are [`MAX_PROBES`] already.
pub(crate) fn keep_probe(probes: &mut Vec<Arc<ConnProbe>>, p: Arc<ConnProbe>) {
    if probes.len() < MAX_PROBES {
        probes.push(p);
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => {
                let r = Pin::new(s.as_mut()).poll_read(cx, buf);
                if r.is_ready() {
                    let (io, conn) = s.get_ref();
                    io.get_ref().flight().note_handshake(conn);
                }
                r
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => {
                let r = Pin::new(s.as_mut()).poll_write(cx, buf);
                if let Poll::Ready(Ok(n)) = r {
                    // The request is in TLS now: an armed flight may go.
                    let wrote = buf.get(..n).unwrap_or(buf);
                    s.get_ref().0.get_ref().flight().wrote_above(wrote);
                }
                r
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Wraps a stream to remember when the last write (or flush) completed, in ns
/// since the epoch: hyper hides when it wrote a request, and for a sequential
/// HTTP/1.1 connection the last write before a response head is that request.
#[derive(Debug)]
pub(crate) struct TimedIo<S> {
    inner: S,
    epoch: Epoch,
    last_write_ns: Arc<AtomicU64>,
}

impl<S> TimedIo<S> {
    pub(crate) fn new(inner: S, epoch: Epoch) -> (Self, Arc<AtomicU64>) {
        let last = Arc::new(AtomicU64::new(0));
        (
            TimedIo {
                inner,
                epoch,
                last_write_ns: last.clone(),
            },
            last,
        )
    }
    fn mark(&self) {
        self.last_write_ns
            .store(self.epoch.now_ns(), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.mark();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.mark();
        }
        r
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `host[:port]` for the Host header / :authority (IPv6 literals bracketed).
pub(crate) fn authority(shared: &Shared) -> String {
    let name = &shared.opts.server_name;
    let host = if name.contains(':') && !name.starts_with('[') {
        format!("[{name}]")
    } else {
        name.clone()
    };
    format!("{host}:{}", shared.opts.server.port())
}

/// Open a TCP connection (bound to `opts.local_ip` if set, TCP_NODELAY) and, if
/// the client has a TLS config, run the TLS handshake. Fills every handshake
/// fact of the returned [`ConnInfo`].
pub(crate) async fn open(shared: &Shared, conn_id: u64) -> Result<(Stream, ConnInfo), ClientError> {
    let epoch = &shared.epoch;
    let addr = shared.opts.server;
    let mut info = ConnInfo {
        conn_id,
        protocol: shared.proto.name().to_string(),
        peer: Some(addr),
        start_ns: epoch.now_ns(),
        ..Default::default()
    };
    let connect_err = |e: std::io::Error| ClientError::Connect {
        addr,
        detail: e.to_string(),
    };
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(connect_err)?;
    // The cell's controller on both transports (wire::transport), set before
    // the SYN so the whole connection runs it.
    quicbench_wire::transport::set_tcp_congestion(&sock, shared.opts.cc)
        .map_err(|e| ClientError::Setup(e.to_string()))?;
    let fast = shared.opts.fast_start;
    fast.apply_connect(&sock)
        .map_err(|e| ClientError::Setup(format!("TCP_FASTOPEN_CONNECT: {e}")))?;
    if let Some(ip) = shared.opts.local_ip {
        sock.bind(SocketAddr::new(ip, 0))
            .map_err(|e| ClientError::Connect {
                addr,
                detail: format!("bind to local address {ip}: {e}"),
            })?;
    }
    let tcp = sock.connect(addr).await.map_err(connect_err)?;
    // With Fast Open the SYN leaves at the first write: the transport is
    // "ready" here only in the sense that it may be written to.
    info.transport_ready_ns = Some(epoch.now_ns());
    // Requests are small single writes: never hold them back for an ACK.
    tcp.set_nodelay(true).map_err(connect_err)?;
    info.local = tcp.local_addr().ok();
    // What this connection really runs, read back from the socket.
    info.congestion_control = quicbench_wire::transport::tcp_congestion(&tcp)
        .ok()
        .map(|c| quicbench_wire::transport::normalize_cc_name(&c));
    // TCP's buffers are autotuned (tcp_rmem/tcp_wmem): recorded, not set.
    info.socket_buffers = Some(quicbench_wire::transport::socket_buffers(&tcp));
    // The probe (TCP_INFO, options read back) goes on once the socket is set
    // up, so what it records is what carried the data.
    // Early data only where the client arms the first flight with its
    // request (HTTP/1.1 keep-alive, HTTP/2): elsewhere it would stay held.
    let early = fast.early_data > 0
        && shared.tls.is_some()
        && matches!(shared.proto, Protocol::H11Tls | Protocol::H2);
    let tcp = Probed::new(
        TcpIo::new(tcp),
        Side::Client,
        Some(conn_id),
        (info.local, Some(addr)),
        epoch.mono_ns(),
    );
    if let Some(period) = shared.opts.transport_sample {
        tcp.probe().start_sampling(period);
    }
    let Some(cfg) = &shared.tls else {
        return Ok((Stream::Plain(tcp), info));
    };
    let name = ServerName::try_from(shared.opts.server_name.clone()).map_err(|e| {
        ClientError::Setup(format!(
            "TLS server name {:?}: {e}",
            shared.opts.server_name
        ))
    })?;
    let tls = TlsConnector::from(cfg.clone())
        .early_data(early)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls {
            addr,
            detail: e.to_string(),
        })?;
    let conn = tls.get_ref().1;
    if conn.is_handshaking() {
        // Early data (a ticket allowing it was there): nothing is sent yet.
        // The ClientHello waits for the request, to leave in one flight
        // (see `fastopen`); the handshake ends under the request's reads,
        // its facts are filled in then ([`fill_handshake`]).
        tls.get_ref().0.get_ref().flight().hold();
        return Ok((Stream::Tls(Box::new(tls)), info));
    }
    info.tls_ready_ns = Some(epoch.now_ns());
    info.tls_version = conn.protocol_version().map(|v| format!("{v:?}"));
    info.cipher = conn
        .negotiated_cipher_suite()
        .map(quicbench_wire::tls::suite_name);
    info.alpn = conn
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    info.resumed = Some(conn.handshake_kind() == Some(HandshakeKind::Resumed));
    Ok((Stream::Tls(Box::new(tls)), info))
}

/// What Fast Open and a handshake that ended after `open` (early data) did,
/// read back into `info`: the SYN's data acknowledged, early data accepted,
/// when TLS was done, resumption, ALPN.
pub(crate) fn fill_handshake(info: &mut ConnInfo, flight: &Flight, epoch: &Epoch) {
    if info.tcp_syn_data.is_none() {
        info.tcp_syn_data = flight.syn_data();
    }
    let Some(h) = flight.handshake() else {
        return;
    };
    info.early_data_accepted = Some(h.early_data_accepted);
    if info.tls_ready_ns.is_none() {
        info.tls_ready_ns = Some(epoch.ns(h.at));
        info.resumed = Some(h.resumed);
        info.alpn = h.alpn.clone();
    }
}

/// When each request of a batch is due, and the order to issue them in
/// (by scheduled time, ties in request order).
pub(crate) struct Schedule {
    pub start: Instant,
    pub order: Vec<usize>,
}

impl Schedule {
    pub(crate) fn new(reqs: &[Request]) -> Self {
        let mut order: Vec<usize> = (0..reqs.len()).collect();
        order.sort_by_key(|&i| reqs[i].at.unwrap_or(Duration::ZERO));
        Schedule {
            start: Instant::now(),
            order,
        }
    }
    pub(crate) fn due(&self, req: &Request) -> Instant {
        self.start + req.at.unwrap_or(Duration::ZERO)
    }
}

/// Records of requests that were never issued because of `why`.
pub(crate) fn fail_all(
    reqs: &[Request],
    conn_id: u64,
    epoch: &Epoch,
    sched: &Schedule,
    why: &str,
) -> Vec<RequestRecord> {
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut rec = RequestRecord::new(i, &r.path, conn_id, epoch.ns(sched.due(r)));
            rec.error = Some(why.to_string());
            rec
        })
        .collect()
}

/// The `Range` header value of a request, if any.
pub(crate) fn range_value(req: &Request) -> Option<String> {
    req.range_from.map(|from| format!("bytes={from}-"))
}

/// Check a request target: origin form, no spaces or control bytes. Every
/// client checks it before sending, so a bad path fails alone (without
/// spending or breaking a connection) and, where requests are written by hand,
/// a CR/LF in it cannot smuggle headers or a second request.
pub(crate) fn check_target(req: &Request) -> Result<(), ClientError> {
    let bad = |why: &str| ClientError::Setup(format!("request target {:?}: {why}", req.path));
    if !req.path.starts_with('/') {
        return Err(bad("must start with '/'"));
    }
    if req.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("contains a space or a control byte"));
    }
    http::uri::PathAndQuery::try_from(req.path.as_str()).map_err(|e| bad(&e.to_string()))?;
    Ok(())
}

/// The HTTP/1.x request head of a hand-written GET (target checked first).
pub(crate) fn request_head(
    req: &Request,
    version: &str,
    authority: &str,
    extra: &str,
) -> Result<String, ClientError> {
    check_target(req)?;
    let mut head = format!(
        "GET {} HTTP/{version}\r\nHost: {authority}\r\n{extra}",
        req.path
    );
    if let Some(r) = range_value(req) {
        head.push_str(&format!("Range: {r}\r\n"));
    }
    head.push_str("\r\n");
    Ok(head)
}

/// Consumes a response body as it streams in: counts, verifies `/bytes/N`
/// bodies against the pattern, samples progress. Never holds the body.
///
/// Counts and samples go straight into the record, so a request cancelled by
/// its timeout still says how far it got (what a resumed `Range` request
/// needs); `verified` is `Some(false)` until [`BodySink::finish`] proves it.
pub(crate) struct BodySink {
    epoch: Epoch,
    verifier: Option<Verifier>,
    expected: Option<u64>,
    track: bool,
    last_sample_ns: u64,
}

impl BodySink {
    /// For a response with `status` to `req`; `range_start` is the first byte
    /// of a 206 body (from Content-Range), if known.
    pub(crate) fn new(
        epoch: Epoch,
        req: &Request,
        status: u16,
        range_start: Option<u64>,
        track: bool,
        rec: &mut RequestRecord,
    ) -> Self {
        let n = match Resource::parse(&req.path, u64::MAX) {
            Resource::Bytes(n) => Some(n),
            _ => None,
        };
        let start = match status {
            200 => Some(0),
            206 => range_start.or(req.range_from),
            _ => None,
        };
        let (verifier, expected) = match (n, start) {
            (Some(n), Some(s)) => (Some(Verifier::new(s)), Some(n.saturating_sub(s))),
            _ => (None, None),
        };
        rec.bytes = 0;
        rec.progress.clear();
        rec.verified = verifier.as_ref().map(|_| false);
        BodySink {
            epoch,
            verifier,
            expected,
            track,
            last_sample_ns: 0,
        }
    }

    pub(crate) fn data(&mut self, rec: &mut RequestRecord, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        rec.bytes += chunk.len() as u64;
        if let Some(v) = &mut self.verifier {
            v.update(chunk);
        }
        if self.track {
            let now = self.epoch.now_ns();
            // At most one sample per ms: a 1 GiB transfer stays a few thousand points.
            if rec.progress.is_empty() || now >= self.last_sample_ns + 1_000_000 {
                rec.progress.push((now, rec.bytes));
                self.last_sample_ns = now;
            }
        }
    }

    /// Settle verification and the last progress sample; `end_ns` is when the
    /// response was complete (or abandoned).
    pub(crate) fn finish(self, rec: &mut RequestRecord, end_ns: u64, complete: bool) {
        if let (Some(v), Some(expected)) = (&self.verifier, self.expected) {
            rec.verified = Some(complete && v.first_error().is_none() && rec.bytes == expected);
            if let Some(off) = v.first_error() {
                if rec.error.is_none() {
                    rec.error = Some(format!("body differs from the pattern at byte {off}"));
                }
            }
        }
        if self.track && rec.progress.last() != Some(&(end_ns, rec.bytes)) {
            rec.progress.push((end_ns, rec.bytes));
        }
        if complete {
            rec.last_byte_ns = Some(end_ns);
        }
    }
}

/// Reads responses off a hand-parsed HTTP/1.x connection (HTTP/1.0 and
/// pipelining), one after the other, into records. The buffer and parser live
/// as long as the connection: bytes of the next response may already be here.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    buf: BytesMut,
    parser: ResponseParser,
    eof: bool,
    stall: Option<std::time::Duration>,
}

/// How a response ended.
pub(crate) struct ReadOutcome {
    /// The server will close the connection after this response.
    pub close: bool,
}

const READ_CHUNK: usize = 64 * 1024;

impl ResponseReader {
    pub(crate) fn new() -> Self {
        ResponseReader {
            buf: BytesMut::with_capacity(READ_CHUNK),
            parser: ResponseParser::new(),
            eof: false,
            stall: None,
        }
    }

    /// Fail a read that brings no byte for this long (see `ClientOptions::stall_timeout`).
    pub(crate) fn with_stall(mut self, stall: Option<std::time::Duration>) -> Self {
        self.stall = stall;
        self
    }

    /// Read one whole response to `req` from `rd` into `rec`: first byte (head
    /// complete), last byte, status, bytes, verification, progress.
    pub(crate) async fn read_response<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        req: &Request,
        rec: &mut RequestRecord,
        epoch: Epoch,
        track: bool,
    ) -> Result<ReadOutcome, ClientError> {
        let mut sink: Option<BodySink> = None;
        let mut keep_alive = false;
        let r = self
            .read_into(rd, req, rec, epoch, track, &mut sink, &mut keep_alive)
            .await;
        let now = epoch.now_ns();
        if let Some(s) = sink {
            s.finish(rec, now, r.is_ok());
        } else if r.is_ok() {
            rec.last_byte_ns = Some(now);
        }
        r.map(|()| ReadOutcome { close: !keep_alive })
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_into<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        req: &Request,
        rec: &mut RequestRecord,
        epoch: Epoch,
        track: bool,
        sink: &mut Option<BodySink>,
        keep_alive: &mut bool,
    ) -> Result<(), ClientError> {
        loop {
            let (used, ev) = self
                .parser
                .advance(&self.buf)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let need_more = ev == Event::NeedMore;
            match ev {
                Event::Head(h) => {
                    rec.first_byte_ns = Some(epoch.now_ns());
                    rec.status = Some(h.status);
                    *keep_alive = h.keep_alive;
                    *sink = Some(BodySink::new(
                        epoch,
                        req,
                        h.status,
                        h.content_range_start,
                        track,
                        rec,
                    ));
                }
                Event::Data(d) => {
                    if let Some(s) = sink {
                        s.data(rec, d);
                    }
                }
                Event::End => {
                    self.buf.advance(used);
                    return Ok(());
                }
                Event::NeedMore => {}
            }
            self.buf.advance(used);
            if !need_more {
                continue;
            }
            if self.eof {
                // A body delimited by the close ends here; anything else is cut short.
                return self.parser.eof().map_err(|e| {
                    ClientError::Protocol(format!("{e} (after {} body bytes)", rec.bytes))
                });
            }
            self.buf.reserve(READ_CHUNK);
            let read = match self.stall {
                Some(d) => match tokio::time::timeout(d, rd.read_buf(&mut self.buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(ClientError::Timeout(format!(
                            "response stalled: no byte for {d:?} (after {} body bytes)",
                            rec.bytes
                        )))
                    }
                },
                None => rd.read_buf(&mut self.buf).await,
            };
            match read {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Err(ClientError::Io(format!("reading the response: {e}"))),
            }
        }
    }
}
