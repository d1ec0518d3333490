//! HTTP/1.0 + HTTP/1.1 cleartext, and HTTP/1.1 + HTTP/2 over TLS 1.3, on hyper.
//!
//! One accept loop per listener, one task per connection. Cleartext connections
//! speak HTTP/1.x (hyper's http1 server: keep-alive, HTTP/1.0 closes unless the
//! request asked `Connection: keep-alive`, pipelined requests answered in order).
//! TLS connections pick HTTP/2 or HTTP/1.1 by ALPN (`h2`, else http/1.1).
//!
//! Limits (see docs/servers.md): `max_connections` concurrent connections per
//! listener (beyond: one 503 with `Connection: close`); `header_timeout` bounds
//! the TLS handshake and every HTTP/1.x request head (slowloris defence, also an
//! idle timeout between keep-alive requests); `max_header_bytes` bounds a request
//! head (431) or an HTTP/2 header list.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, RANGE};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use quicbench_wire::sockinfo::{Probed, Side};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::respond::{self, Body};
use crate::ServerCtx;

/// HTTP/2 flow-control windows and stream limit: QUIC's, from one place
/// (`wire::transport`), so neither transport is window-limited where the
/// other is not.
pub const H2_STREAM_WINDOW: u32 = quicbench_wire::transport::STREAM_WINDOW;
pub const H2_CONN_WINDOW: u32 = quicbench_wire::transport::CONN_WINDOW;
pub const H2_MAX_STREAMS: u32 = quicbench_wire::transport::MAX_STREAMS;
/// Bytes of the HTTP/2 client connection preface (24) plus a frame header (9):
/// what a client must have sent within `header_timeout`.
const H2_PREFACE_MIN: usize = 24 + 9;
/// Connections being refused (503) at once per listener; beyond, new ones are
/// closed at once without a response (a flood must not grow tasks without bound).
const MAX_REFUSING: usize = 1024;

/// Bind a listener (SO_REUSEADDR, large backlog) from a sync context.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, false)
}

/// As [`bind`]; with `reuse_port`, SO_REUSEPORT too (several processes share
/// the port, the kernel spreads new connections over their listeners).
pub fn bind_with(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    if reuse_port {
        sock.set_reuseport(true)?;
    }
    sock.bind(addr)?;
    sock.listen(4096)
}

/// Serve HTTP on `listener`; with `tls`, TLS 1.3 with ALPN h2/http/1.1.
/// The task ends when `ctx.shutdown` flips; open connections then finish their
/// in-flight responses (graceful shutdown) on their own tasks.
pub fn spawn(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: Arc<ServerCtx>,
) -> JoinHandle<()> {
    tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), ctx))
}

/// Per-listener connection counts.
#[derive(Debug, Default)]
struct Slots {
    serving: AtomicUsize,
    refusing: AtomicUsize,
}

/// Releases a connection's slot and `open_connections` when its task ends,
/// however it ends.
struct SlotGuard {
    ctx: Arc<ServerCtx>,
    slots: Arc<Slots>,
    refused: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let c = if self.refused {
            &self.slots.refusing
        } else {
            &self.slots.serving
        };
        c.fetch_sub(1, Ordering::Relaxed);
        self.ctx
            .stats
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves once shutdown is requested. If the sender is gone (the `Servers`
/// handle was dropped without `shutdown`), never: dropping does not stop servers.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, ctx: Arc<ServerCtx>) {
    let slots = Arc::new(Slots::default());
    let mut sd = ctx.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown_requested(&mut sd) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE, ECONNABORTED...: transient; back off briefly so a full
                // fd table does not turn the loop into a spin.
                tracing::debug!("accept on {:?}: {e}", listener.local_addr());
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Responses are written whole by hyper; Nagle would only delay the tail.
        let _ = stream.set_nodelay(true);
        // Opened by a Fast Open SYN (its data acknowledged), read back.
        if quicbench_wire::transport::tcp_syn_data(&stream).unwrap_or(false) {
            ctx.stats.tcp_syn_data.fetch_add(1, Ordering::Relaxed);
        }
        // What this connection really runs (inherited from the listener).
        if let Ok(cc) = quicbench_wire::transport::tcp_congestion(&stream) {
            crate::count_name(
                &ctx.stats.tcp_congestion,
                quicbench_wire::transport::normalize_cc_name(&cc),
            );
        }
        let refused = slots.serving.load(Ordering::Relaxed) >= ctx.max_connections;
        if refused {
            ctx.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            if slots.refusing.load(Ordering::Relaxed) >= MAX_REFUSING {
                drop(stream);
                continue;
            }
            slots.refusing.fetch_add(1, Ordering::Relaxed);
        } else {
            ctx.stats.tcp_accepted.fetch_add(1, Ordering::Relaxed);
            slots.serving.fetch_add(1, Ordering::Relaxed);
        }
        ctx.stats.open_connections.fetch_add(1, Ordering::Relaxed);
        let guard = SlotGuard {
            ctx: ctx.clone(),
            slots: slots.clone(),
            refused,
        };
        let (tls, ctx) = (tls.clone(), ctx.clone());
        tokio::spawn(async move {
            let _guard = guard;
            if refused {
                // A refused connection gets one 503 and no more of our time.
                let limit = ctx.header_timeout.max(Duration::from_millis(100));
                let _ = tokio::time::timeout(limit, serve(stream, peer, tls, ctx, true)).await;
            } else if let Some(log) = &ctx.transport {
                // The probe's final snapshot is taken when the stream is
                // dropped, just before the socket closes.
                let local = stream.local_addr().ok();
                let stream = Probed::new(
                    stream,
                    Side::Server,
                    None,
                    (local, Some(peer)),
                    log.origin_mono_ns,
                );
                log.add(stream.probe());
                serve(stream, peer, tls, ctx, false).await;
            } else {
                serve(stream, peer, tls, ctx, false).await;
            }
        });
    }
}

/// Serve one connection: TLS handshake (if any), then HTTP/1.x or HTTP/2.
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    ctx: Arc<ServerCtx>,
    refuse: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(acceptor) = tls else {
        serve_h1(stream, ctx, refuse).await;
        return;
    };
    if acceptor.config().max_early_data_size > 0 {
        serve_early(stream, peer, acceptor.config().clone(), ctx, refuse).await;
        return;
    }
    let tls_stream = match tokio::time::timeout(ctx.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            ctx.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TLS handshake with {peer}: {e}");
            return;
        }
        Err(_) => {
            ctx.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                "TLS handshake with {peer}: not done after {:?}",
                ctx.header_timeout
            );
            return;
        }
    };
    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(quicbench_wire::tls::ALPN_H2);
    if h2 {
        serve_h2(tls_stream, ctx, refuse).await;
    } else {
        serve_h1(tls_stream, ctx, refuse).await;
    }
}

/// TLS that answers early data before the handshake ends (0-RTT over TCP,
/// [`crate::early`]), then HTTP/1.x or HTTP/2.
async fn serve_early<S>(
    stream: S,
    peer: SocketAddr,
    cfg: Arc<rustls::ServerConfig>,
    ctx: Arc<ServerCtx>,
    refuse: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accept = crate::early::EarlyTls::accept(stream, cfg);
    let mut tls = match tokio::time::timeout(ctx.header_timeout, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            ctx.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TLS handshake with {peer}: {e}");
            return;
        }
        Err(_) => {
            ctx.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    if tls.early_data_accepted() {
        ctx.stats.tls_early_data.fetch_add(1, Ordering::Relaxed);
    }
    if tls.connection().alpn_protocol() == Some(quicbench_wire::tls::ALPN_H2) {
        serve_h2(tls, ctx, refuse).await;
    } else {
        serve_h1(tls, ctx, refuse).await;
    }
}

/// The request handler shared by HTTP/1.x and HTTP/2. `refused` is notified once
/// a 503 was produced so the connection can be wound down.
fn handle(
    ctx: &Arc<ServerCtx>,
    req: &http::Request<Incoming>,
    refuse: Option<&Notify>,
) -> http::Response<Body> {
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(done) = refuse {
        let mut r = respond::refused();
        if req.version() < http::Version::HTTP_2 {
            r.headers
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        done.notify_one();
        return r.into_hyper(Some(ctx.clone()));
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let reply = respond::reply(
        req.method(),
        target,
        req.headers().get(RANGE),
        ctx.max_bytes,
    );
    if reply.is_client_error() {
        ctx.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
    }
    reply.into_hyper(Some(ctx.clone()))
}

fn note_conn_error(ctx: &ServerCtx, proto: &str, e: &hyper::Error) {
    // hyper answered a malformed or oversized head itself (400/431) before
    // closing: our handler never saw it, so count it here.
    if e.is_parse() || e.is_parse_too_large() {
        ctx.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!("{proto} connection: {e}");
}

async fn serve_h1<S>(io: S, ctx: Arc<ServerCtx>, refuse: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let refused = Arc::new(Notify::new());
    let svc = {
        let (ctx, refused) = (ctx.clone(), refused.clone());
        service_fn(move |req: http::Request<Incoming>| {
            let resp = handle(&ctx, &req, refuse.then_some(&*refused));
            async move { Ok::<_, Infallible>(resp) }
        })
    };
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(ctx.header_timeout)
        .max_header_size(ctx.max_header_bytes)
        // The same header set on every protocol: no Date (h3 sends none).
        .auto_date_header(false)
        // No `pipeline_flush`: it skips flushing while unparsed bytes remain
        // in the read buffer, which swallows the 400 for a malformed head
        // (hyper 1.12). Pipelined responses are still written in order, each
        // flushed on its own, as most servers do.
        .keep_alive(!refuse);
    let conn = b.serve_connection(TokioIo::new(io), svc);
    let mut sd = ctx.shutdown.clone();
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown_requested(&mut sd) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = r {
        note_conn_error(&ctx, "HTTP/1", &e);
    }
}

async fn serve_h2<S>(io: S, ctx: Arc<ServerCtx>, refuse: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let refused = Arc::new(Notify::new());
    let svc = {
        let (ctx, refused) = (ctx.clone(), refused.clone());
        service_fn(move |req: http::Request<Incoming>| {
            let resp = handle(&ctx, &req, refuse.then_some(&*refused));
            async move { Ok::<_, Infallible>(resp) }
        })
    };
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(ctx.max_header_bytes).unwrap_or(u32::MAX))
        .auto_date_header(false)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_concurrent_streams(H2_MAX_STREAMS);
    let (io, read) = CountingIo::new(io);
    let conn = b.serve_connection(TokioIo::new(io), svc);
    let mut sd = ctx.shutdown.clone();
    // hyper's HTTP/2 server has no handshake timeout: a client that completes
    // TLS and then sends nothing would hold its task forever. It must send the
    // connection preface and its SETTINGS frame head within `header_timeout`.
    let preface_deadline = async {
        tokio::time::sleep(ctx.header_timeout).await;
        if read.load(Ordering::Relaxed) >= H2_PREFACE_MIN as u64 {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = preface_deadline => {
            tracing::debug!("HTTP/2 client sent no preface within {:?}", ctx.header_timeout);
            return;
        }
        _ = shutdown_requested(&mut sd) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        _ = refused.notified() => {
            // GOAWAY after the 503: streams in flight finish, no new ones.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = r {
        note_conn_error(&ctx, "HTTP/2", &e);
    }
}

/// Counts the bytes read through it (the HTTP/2 preface deadline).
struct CountingIo<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S> CountingIo<S> {
    fn new(inner: S) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (
            CountingIo {
                inner,
                read: read.clone(),
            },
            read,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        this.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
