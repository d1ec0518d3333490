//! The UDP probe server: echo, sink and source (format in `quicbench_wire::probe`,
//! documented in docs/udp-probe.md).
//!
//! * `EchoRequest` → `EchoReply` of the same size, with the server's receive and
//!   send times (`CLOCK_MONOTONIC`, ns) filled in.
//! * `SinkData` is counted per (peer, session); `SinkReportRequest` is answered
//!   with a `SinkReport` (only if the request is at least as large as the report,
//!   so the answer never amplifies).
//! * `SourceRequest` starts a paced run of `SourceData` datagrams toward the
//!   requester, bounded by [`probe::SOURCE_MAX_COUNT`] and
//!   [`probe::SOURCE_MAX_DURATION_US`]. It is an amplification vector, so it is
//!   served only to loopback and the benchmarking ranges 198.18.0.0/15 and
//!   2001:2::/48 unless [`crate::ServerOptions::udp_source_any`] is set.
//!
//! Anything else (short, wrong magic, unknown or server-only kinds, malformed
//! bodies, refused source requests) is counted in `udp_garbage` and dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicbench_wire::clock::{mono_ns, stamp};
use quicbench_wire::probe::{self, Header, Kind, SinkReport, SourceRequest, HEADER_LEN};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::ServerCtx;

/// Sink sessions remembered at once; beyond it new sessions are not counted
/// until idle ones expire (bounds memory against spoofed sources).
const MAX_SINK_SESSIONS: usize = 4096;
/// A sink session unseen for this long may be evicted.
const SINK_IDLE: Duration = Duration::from_secs(300);
/// Source runs in flight at once (each is a thread).
const MAX_SOURCE_JOBS: usize = 16;

/// Bind the probe socket (must be called inside a tokio runtime).
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    quicbench_wire::probe::enlarge_buffers(&s, quicbench_wire::probe::SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// Serve the probe protocol on `sock`.
pub fn spawn(sock: UdpSocket, ctx: Arc<ServerCtx>) -> JoinHandle<()> {
    tokio::spawn(serve(sock, ctx))
}

/// May a source run be sent to `ip` without explicit permission?
pub fn source_allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback() || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return source_allowed(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SinkState {
    report: SinkReport,
    last_seen: Instant,
}

async fn serve(sock: UdpSocket, ctx: Arc<ServerCtx>) {
    if let Err(e) = stamp::enable(&sock) {
        tracing::warn!(
            "udp probe: no kernel receive stamps ({e}): arrival is read after the wake-up"
        );
    }
    let sock = Arc::new(sock);
    let mut shutdown = ctx.shutdown.clone();
    let mut buf = vec![0u8; probe::MAX_DATAGRAM + 1];
    let mut sinks: HashMap<(SocketAddr, u32), SinkState> = HashMap::new();
    let jobs = Arc::new(AtomicUsize::new(0));
    let mut running: HashMap<(SocketAddr, u32), Arc<std::sync::atomic::AtomicBool>> =
        HashMap::new();
    // False once the shutdown sender is gone (then `changed()` would fire forever).
    let mut watch_alive = true;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let (n, peer, recv_ns) = tokio::select! {
            r = sock.async_io(Interest::READABLE, || stamp::recv(&*sock, &mut buf, true)) => match r {
                // A datagram's arrival is the kernel's stamp, not this task's
                // wake-up (docs/udp-probe.md, "Timestamps").
                Ok(got) => match got.from {
                    Some(peer) => (got.len, peer, got.arrival_on(mono_ns())),
                    None => continue,
                },
                Err(e) => {
                    // ICMP errors (port unreachable from a vanished client) surface
                    // here on Linux; they concern one peer, never the socket.
                    tracing::debug!("udp probe recv: {e}");
                    // Never spin on an error that repeats.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
            },
            r = shutdown.changed(), if watch_alive => {
                watch_alive = r.is_ok();
                continue;
            }
        };
        ctx.stats.udp_datagrams.fetch_add(1, Ordering::Relaxed);
        let dgram = &mut buf[..n];
        let garbage = || ctx.stats.udp_garbage.fetch_add(1, Ordering::Relaxed);
        let Ok(h) = Header::read(dgram) else {
            garbage();
            continue;
        };
        match h.kind {
            Kind::EchoRequest => {
                // Same datagram back, kind and server times patched in place.
                dgram[4] = Kind::EchoReply as u8;
                dgram[32..40].copy_from_slice(&recv_ns.to_be_bytes());
                dgram[40..48].copy_from_slice(&mono_ns().to_be_bytes());
                if let Err(e) = sock.send_to(dgram, peer).await {
                    tracing::debug!("udp probe echo to {peer}: {e}");
                } else {
                    ctx.stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            Kind::SinkData => {
                let now = Instant::now();
                let key = (peer, h.session);
                if !sinks.contains_key(&key) && sinks.len() >= MAX_SINK_SESSIONS {
                    sinks.retain(|_, s| now.duration_since(s.last_seen) < SINK_IDLE);
                    if sinks.len() >= MAX_SINK_SESSIONS {
                        garbage();
                        continue;
                    }
                }
                let s = sinks.entry(key).or_insert(SinkState {
                    report: SinkReport::default(),
                    last_seen: now,
                });
                s.last_seen = now;
                s.report.received += 1;
                s.report.bytes += n as u64;
                s.report.max_seq_plus_one = s.report.max_seq_plus_one.max(h.seq.saturating_add(1));
            }
            Kind::SinkReportRequest => {
                let report = sinks
                    .get(&(peer, h.session))
                    .map(|s| s.report)
                    .unwrap_or_default();
                let body = report.to_bytes();
                if n < HEADER_LEN + body.len() {
                    // Answering would send more than was received: refuse.
                    garbage();
                    continue;
                }
                let mut out = Header::new(Kind::SinkReport, h.session, h.seq, h.client_send_ns);
                out.server_recv_ns = recv_ns;
                out.server_send_ns = mono_ns();
                if let Ok(d) = probe::encode(&out, &body, HEADER_LEN + body.len()) {
                    if sock.send_to(&d, peer).await.is_ok() {
                        ctx.stats
                            .bytes_sent
                            .fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            Kind::SourceRequest => {
                let Ok(req) = SourceRequest::from_datagram(dgram) else {
                    garbage();
                    continue;
                };
                if let Err(why) = req.check() {
                    tracing::debug!("udp probe source request from {peer} refused: {why}");
                    garbage();
                    continue;
                }
                if !ctx.udp_source_any && !source_allowed(peer.ip()) {
                    tracing::debug!(
                        "udp probe source request from {peer} refused: not a benchmarking address"
                    );
                    garbage();
                    continue;
                }
                running.retain(|_, alive| alive.load(Ordering::Relaxed));
                let key = (peer, h.session);
                // A client repeats its request when it sees nothing: one run per session.
                if running.contains_key(&key) {
                    continue;
                }
                if jobs.load(Ordering::Relaxed) >= MAX_SOURCE_JOBS {
                    tracing::debug!("udp probe source request from {peer} refused: {MAX_SOURCE_JOBS} runs in flight");
                    garbage();
                    continue;
                }
                let out = match sock.as_fd().try_clone_to_owned() {
                    Ok(fd) => std::net::UdpSocket::from(fd),
                    Err(e) => {
                        tracing::warn!(
                            "udp probe: cannot duplicate the socket for a source run: {e}"
                        );
                        continue;
                    }
                };
                let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
                running.insert(key, alive.clone());
                jobs.fetch_add(1, Ordering::Relaxed);
                let ctx2 = ctx.clone();
                let jobs2 = jobs.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("udp-source".into())
                        .spawn(move || {
                            source_run(&out, peer, h.session, req, &ctx2);
                            alive.store(false, Ordering::Relaxed);
                            jobs2.fetch_sub(1, Ordering::Relaxed);
                        });
                if let Err(e) = spawned {
                    tracing::warn!("udp probe: cannot start a source thread: {e}");
                    jobs.fetch_sub(1, Ordering::Relaxed);
                    running.remove(&key);
                }
            }
            // Server-to-client kinds arriving here are not ours to answer.
            Kind::EchoReply | Kind::SinkReport | Kind::SourceData => {
                garbage();
            }
        }
    }
}

/// Send one source run, paced by absolute deadlines on a dedicated thread:
/// `thread::sleep` (nanosleep) wakes within tens of µs, where tokio timers tick
/// in ms; lateness never accumulates because each deadline is `start + i × interval`.
fn source_run(
    sock: &std::net::UdpSocket,
    peer: SocketAddr,
    session: u32,
    req: SourceRequest,
    ctx: &ServerCtx,
) {
    let size = req.size as usize;
    let interval = Duration::from_micros(u64::from(req.interval_us));
    let mut buf = vec![0u8; size];
    let start = Instant::now();
    // Hard stop even if sends stall: the duration bound plus a margin.
    let hard_stop =
        start + Duration::from_micros(probe::SOURCE_MAX_DURATION_US) + Duration::from_secs(5);
    for i in 0..u64::from(req.count) {
        if *ctx.shutdown.borrow() {
            return;
        }
        let Some(deadline) = u32::try_from(i)
            .ok()
            .and_then(|i| interval.checked_mul(i))
            .map(|d| start + d)
        else {
            return;
        };
        if !sleep_until(deadline, || *ctx.shutdown.borrow()) {
            return;
        }
        let mut h = Header::new(Kind::SourceData, session, i, 0);
        h.aux = req.count;
        h.server_send_ns = mono_ns();
        if h.write(&mut buf).is_err() {
            return;
        }
        // The socket is non-blocking (shared with the tokio side): retry briefly
        // when the send buffer is full rather than dropping silently.
        loop {
            match sock.send_to(&buf, peer) {
                Ok(_) => {
                    ctx.stats
                        .bytes_sent
                        .fetch_add(size as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > hard_stop {
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) => {
                    // e.g. ECONNREFUSED from an earlier ICMP: the client left.
                    tracing::debug!("udp probe source to {peer}: {e}");
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        return;
                    }
                    break;
                }
            }
        }
        if Instant::now() > hard_stop {
            return;
        }
    }
}

/// Sleep until `deadline` in slices of at most 50 ms, so `stop` is noticed
/// promptly even between widely spaced datagrams; false if stopped. The last
/// slice ends exactly at the deadline.
fn sleep_until(deadline: Instant, stop: impl Fn() -> bool) -> bool {
    loop {
        if stop() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::source_allowed;

    #[test]
    fn source_only_to_benchmarking_ranges_by_default() {
        for ok in [
            "127.0.0.1",
            "127.9.9.9",
            "198.18.0.1",
            "198.19.255.254",
            "::1",
            "2001:2::1",
            "2001:2:0:ffff::1",
            "::ffff:198.18.1.1",
        ] {
            assert!(source_allowed(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "198.20.0.1",
            "198.17.255.255",
            "10.0.0.1",
            "8.8.8.8",
            "2001:3::1",
            "2001:2:1::1",
            "fe80::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!source_allowed(no.parse().unwrap()), "{no}");
        }
    }
}
