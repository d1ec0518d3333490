//! HTTP/3 over QUIC (quinn + h3): the same resources, headers and bytes as the
//! TCP servers (all built by [`crate::respond`]; one DATA frame per chunk).
//!
//! * 0-RTT: every accepted connection is turned into a 0.5-RTT connection
//!   (`Connecting::into_0rtt`), so requests a resuming client sent in 0-RTT are
//!   answered at once instead of after the client's Finished. Only GET and HEAD
//!   are served (anything else is 405 with no side effect), so replayed early
//!   data can do no harm.
//! * Limits: beyond `max_connections` live connections, new ones are refused
//!   (CONNECTION_REFUSED, counted in `quic_refused`). When more than
//!   [`RETRY_ABOVE_HANDSHAKES`] handshakes are in progress, a client whose
//!   address is not yet validated is sent a Retry first (a stateless round trip
//!   that proves it owns its address before we spend a handshake on it).
//! * Migration: allowed by the server config (`quicbench_wire::tls`); quinn
//!   validates the new path itself.
//! * Garbage datagrams never reach this code: quinn drops what does not parse
//!   as QUIC.
//! * Connection IDs: 8 bytes from [`ServerCidGenerator`] (48 random bits and a
//!   16-bit keyed check), not quinn's default (24 random bits). quinn 0.11's
//!   `Endpoint::retry` picks the Retry's source CID without checking it against
//!   the CIDs in use, and a client's next Initial is routed by that CID: with
//!   24 bits, tens of thousands of live CIDs make a collision likely enough
//!   (0.1% of Retries at 5,000 connections) that the client's Initials go to
//!   another connection and its handshake never completes. See docs/h3.md.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use quicbench_wire::h3quic::{self, Body};
use quicbench_wire::sockinfo::{ConnProbe, Side};
use tokio::task::JoinHandle;

use crate::respond::{self, BodyPlan, PatternChunks, Reply};
use crate::ServerCtx;

/// Handshakes in progress above which unvalidated clients get a Retry.
pub const RETRY_ABOVE_HANDSHAKES: usize = 64;

/// Bind a QUIC endpoint (must be called inside a tokio runtime).
pub fn bind(addr: SocketAddr, cfg: quinn::ServerConfig) -> std::io::Result<quinn::Endpoint> {
    bind_with(addr, cfg, None).map(|(ep, _)| ep)
}

/// The server endpoint's configuration: quinn's defaults, with connection IDs
/// from [`ServerCidGenerator`].
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut c = quinn::EndpointConfig::default();
    c.cid_generator(|| Box::new(ServerCidGenerator::new()));
    c
}

/// 8-byte connection IDs: 6 random bytes and a 2-byte keyed hash of them, so
/// that most datagrams with a made-up short-header CID are recognised as
/// foreign without a table lookup (and get no stateless reset).
///
/// quinn's default generator has 3 random bytes (16.7 million values). quinn
/// checks the CIDs it issues to connections against those in use, but not the
/// source CID of a Retry (quinn-proto 0.11.19, `Endpoint::retry`), which the
/// client then sends its token-bearing Initials to; those Initials are routed
/// to whichever connection already owns that CID (or whose Initial DCID it is)
/// and dropped there. With 30,000 CIDs in use a Retry collides with
/// probability 0.2%; with 48 random bits, 1 in 10^10.
pub struct ServerCidGenerator {
    key: std::hash::RandomState,
}

const CID_NONCE: usize = 6;
const CID_CHECK: usize = 2;

impl ServerCidGenerator {
    /// A generator with a random key.
    pub fn new() -> Self {
        Self {
            key: std::hash::RandomState::new(),
        }
    }

    fn check(&self, nonce: &[u8]) -> [u8; CID_CHECK] {
        use std::hash::BuildHasher;
        let h = self.key.hash_one(nonce).to_le_bytes();
        [h[0], h[1]]
    }
}

impl Default for ServerCidGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl quinn::ConnectionIdGenerator for ServerCidGenerator {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut b = [0u8; CID_NONCE + CID_CHECK];
        rand::Rng::fill(&mut rand::rng(), &mut b[..CID_NONCE]);
        let check = self.check(&b[..CID_NONCE]);
        b[CID_NONCE..].copy_from_slice(&check);
        quinn::ConnectionId::new(&b)
    }

    fn validate(&self, cid: &quinn::ConnectionId) -> Result<(), quinn_proto::InvalidCid> {
        if cid.len() == CID_NONCE + CID_CHECK && cid[CID_NONCE..] == self.check(&cid[..CID_NONCE]) {
            Ok(())
        } else {
            Err(quinn_proto::InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_NONCE + CID_CHECK
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// As [`bind`], with the socket's receive buffer set to `recv_buffer` bytes
/// when given (see `ServerOptions::quic_recv_buffer`). Also returns the
/// socket's buffers as the kernel granted them (receive, send), read back.
pub fn bind_with(
    addr: SocketAddr,
    cfg: quinn::ServerConfig,
    recv_buffer: Option<usize>,
) -> std::io::Result<(quinn::Endpoint, (u64, u64))> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let granted = match recv_buffer {
        Some(bytes) => set_recv_buffer(&socket, bytes),
        None => quicbench_wire::transport::socket_buffers(&socket),
    };
    let ep = quicbench_wire::transport::quic_endpoint(endpoint_config(), Some(cfg), socket)?;
    Ok((ep, granted))
}

/// Ask for a receive buffer of `bytes` (and a send buffer as large):
/// `wire::transport::set_socket_buffers`. Best effort; returns what the
/// kernel granted (receive, send).
pub fn set_recv_buffer(socket: &std::net::UdpSocket, bytes: usize) -> (u64, u64) {
    quicbench_wire::transport::set_socket_buffers(socket, bytes)
}

/// Accept connections on `ep` and serve HTTP/3.
pub fn spawn(ep: quinn::Endpoint, ctx: Arc<ServerCtx>) -> JoinHandle<()> {
    tokio::spawn(accept_loop(ep, ctx))
}

/// Decrements a counter when dropped (live connections, handshakes).
struct CountGuard(Arc<AtomicUsize>);

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct OpenGuard(Arc<ServerCtx>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0
            .stats
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(ep: quinn::Endpoint, ctx: Arc<ServerCtx>) {
    let mut shutdown = ctx.shutdown.clone();
    let live = Arc::new(AtomicUsize::new(0));
    let handshaking = Arc::new(AtomicUsize::new(0));
    let mut watch_alive = true;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let incoming = tokio::select! {
            i = ep.accept() => match i {
                Some(i) => i,
                None => break, // endpoint closed
            },
            r = shutdown.changed(), if watch_alive => {
                watch_alive = r.is_ok();
                continue;
            }
        };
        if live.load(Ordering::Relaxed) >= ctx.max_connections {
            ctx.stats.quic_refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        if handshaking.load(Ordering::Relaxed) > RETRY_ABOVE_HANDSHAKES
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            match incoming.retry() {
                Ok(()) => {
                    ctx.stats.quic_retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!("quic retry failed: {e}"),
            }
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        handshaking.fetch_add(1, Ordering::Relaxed);
        let live_guard = CountGuard(live.clone());
        let hs_guard = CountGuard(handshaking.clone());
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _live = live_guard;
            serve_connection(incoming, ctx, hs_guard).await;
        });
    }
}

/// Whether the server's side of the handshake completed: the client's
/// Finished was verified. rustls answers an export only from then on (its
/// traffic states), whether or not the connection has closed since.
fn handshake_completed(conn: &quinn::Connection) -> bool {
    conn.export_keying_material(&mut [0u8; 1], b"EXPORTER-quicbench-handshake", b"")
        .is_ok()
}

async fn serve_connection(incoming: quinn::Incoming, ctx: Arc<ServerCtx>, hs_guard: CountGuard) {
    let peer = incoming.remote_address();
    let mut connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("quic accept from {peer}: {e}");
            ctx.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    // Wait until the whole ClientHello is in (no round trip: it is the
    // client's first flight). A ClientHello in two Initial packets (Chromium's,
    // with its post-quantum key share) leaves the server without the client's
    // transport parameters after the first: h3's first `open_uni` for its
    // control stream then waits on a stream limit of 0, and quinn 0.11 does
    // not wake it when the parameters arrive: no SETTINGS, no response, ever
    // (Chromium stalled on 5 of 5 cells at 20 ms RTT, 1 in 6 on loopback).
    if let Err(e) = connecting.handshake_data().await {
        tracing::debug!("quic handshake with {peer}: {e}");
        ctx.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Servers always get Ok here (0.5-RTT); the Err arm is quinn's type, not a case.
    let mut hs_guard = Some(hs_guard);
    let (conn, established) = match connecting.into_0rtt() {
        Ok((c, z)) => (c, Some(z)),
        Err(connecting) => match connecting.await {
            Ok(c) => {
                ctx.stats.quic_accepted.fetch_add(1, Ordering::Relaxed);
                hs_guard = None;
                (c, None)
            }
            Err(e) => {
                tracing::debug!("quic handshake with {peer}: {e}");
                ctx.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
    };
    ctx.stats.open_connections.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(ctx.clone());
    crate::count_name(
        &ctx.stats.quic_congestion,
        quicbench_wire::transport::quic_controller(&conn),
    );
    // Dropped first when this returns: the final snapshot, then the handle goes.
    let _probe = ctx.transport.as_ref().map(|log| {
        let (probe, guard) = ConnProbe::quic(&conn, Side::Server, None, log.origin_mono_ns);
        log.add(&probe);
        guard
    });
    if let Some(established) = established {
        // Count the connection when its handshake completes (or fails).
        let (ctx2, conn2) = (ctx.clone(), conn.clone());
        tokio::spawn(async move {
            let _ = established.await;
            drop(hs_guard);
            // quinn's value is meaningless on a server, and the future also
            // resolves when the connection ends. "Not closed" is no test
            // either: a 0-RTT client that has its response sends its Finished
            // and its close together, and the close is in before this task
            // runs (1 in 3 resumed connections on loopback). rustls lets a
            // server export keying material only once the client's Finished
            // is verified: that is the handshake's completion.
            if handshake_completed(&conn2) {
                ctx2.stats.quic_accepted.fetch_add(1, Ordering::Relaxed);
            } else {
                ctx2.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let mut h3 = match h3::server::builder()
        .max_field_section_size(ctx.max_header_bytes as u64)
        .build::<_, Body>(h3quic::Connection::new(conn.clone()))
        .await
    {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!("h3 set-up with {peer}: {e}");
            return;
        }
    };
    let mut shutdown = ctx.shutdown.clone();
    let mut watch_alive = true;
    loop {
        let next = tokio::select! {
            r = h3.accept() => r,
            r = shutdown.changed(), if watch_alive => {
                watch_alive = r.is_ok();
                if *shutdown.borrow() {
                    conn.close(quinn::VarInt::from_u32(0x100), b"server shutdown"); // H3_NO_ERROR
                    break;
                }
                continue;
            }
        };
        match next {
            Ok(Some(resolver)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    match resolver.resolve_request().await {
                        Ok((req, stream)) => serve_request(req, stream, &ctx).await,
                        Err(e) => tracing::debug!("h3 request from {peer}: {e}"),
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("h3 connection with {peer} ended: {e}");
                break;
            }
        }
    }
}

async fn serve_request<S>(
    req: http::Request<()>,
    mut stream: h3::server::RequestStream<S, Body>,
    ctx: &ServerCtx,
) where
    S: h3::quic::BidiStream<Body>,
{
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let reply = respond::reply(
        req.method(),
        target,
        req.headers().get(http::header::RANGE),
        ctx.max_bytes,
    );
    if reply.is_client_error() {
        ctx.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
    }
    if let Err(e) = send(&reply, &mut stream, ctx).await {
        // The client went away or reset the stream: nothing to answer to.
        tracing::debug!("h3 response to {target}: {e}");
    }
}

async fn send<S>(
    reply: &Reply,
    stream: &mut h3::server::RequestStream<S, Body>,
    ctx: &ServerCtx,
) -> Result<(), h3::error::StreamError>
where
    S: h3::quic::BidiStream<Body>,
{
    stream.send_response(reply.head()).await?;
    match &reply.body {
        BodyPlan::Empty => {}
        BodyPlan::Small(b) => {
            if !b.is_empty() {
                stream.send_data(Body::from(b.clone())).await?;
                ctx.stats
                    .bytes_sent
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }
        BodyPlan::Pattern(r) => {
            for chunk in PatternChunks::new(*r) {
                let n = chunk.len() as u64;
                stream.send_data(Body::from(chunk)).await?;
                ctx.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
    stream.finish().await
}
