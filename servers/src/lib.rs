//! quicbench-servers: one server per protocol, all serving the same resources
//! (see `quicbench_wire::resource`) with the same headers:
//!
//! * [`tcp`]: HTTP/1.0 and HTTP/1.1 cleartext, and HTTP/1.1 + HTTP/2 over TLS 1.3
//!   (ALPN `http/1.1`, `h2`), on hyper.
//! * [`h3`]: HTTP/3 over QUIC (quinn + h3), session tickets, 0-RTT for GET,
//!   client migration allowed.
//! * [`udp`]: the UDP probe (echo, sink, source).
//!
//! [`start`] binds them all on one or more addresses. Servers know nothing of
//! namespaces: the caller picks the addresses (and the namespace it runs in).

mod early;
pub mod h3;
pub mod respond;
pub mod tcp;
pub mod udp;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quicbench_wire::sockinfo::{ConnProbe, TransportRecord};
use quicbench_wire::tls::{self, Identity, ALPN_H1, ALPN_H1_0, ALPN_H2};
use quicbench_wire::transport::{TcpFastStart, Transport};
use quicbench_wire::CongestionControl;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Addresses to listen on (each gets every server).
    pub listen: Vec<IpAddr>,
    /// Cleartext HTTP/1.0 + HTTP/1.1 (TCP). 0: an ephemeral port.
    pub http_port: u16,
    /// HTTP/1.1 + HTTP/2 over TLS (TCP).
    pub tls_port: u16,
    /// HTTP/3 (QUIC, UDP).
    pub quic_port: u16,
    /// UDP probe.
    pub udp_port: u16,
    pub identity: Identity,
    /// Cap on `/bytes/N` (413 above).
    pub max_bytes: u64,
    /// Congestion controller of both transports: QUIC's, and `TCP_CONGESTION`
    /// on the TCP listeners (accepted connections inherit it). Default cubic.
    pub cc: CongestionControl,
    /// The emulated link, when the harness built it: QUIC's packet size and
    /// batching follow it as the client's do (`wire::transport::LinkShape`).
    /// Default None.
    pub link: Option<quicbench_wire::transport::LinkShape>,
    /// Close an HTTP/1.x connection whose request head has not fully arrived in
    /// this long (slowloris defence).
    pub header_timeout: Duration,
    /// Most concurrent connections per server (TCP and QUIC each); beyond it new
    /// ones are refused (TCP: 503 and close; QUIC: CONNECTION_REFUSED).
    pub max_connections: usize,
    /// Largest request head (HTTP/1.x) or header list (h2/h3) accepted.
    pub max_header_bytes: usize,
    /// Receive (and send) buffer of the QUIC socket, bytes. Default
    /// `wire::transport::QUIC_SOCKET_BUFFER` (16 MiB): the kernel's default
    /// (`net.core.rmem_default`, often 208 KiB) drops datagrams at tens of
    /// Mbit/s and under handshake floods, outside any link model. None: the
    /// kernel's default.
    pub quic_recv_buffer: Option<usize>,
    /// SO_REUSEPORT on the TCP listeners: several server processes share one
    /// port (each process's RLIMIT_NOFILE then bounds only its share).
    pub tcp_reuse_port: bool,
    /// Serve UDP probe source runs to any peer. Off: only to loopback and the
    /// benchmarking ranges 198.18.0.0/15, 2001:2::/48 (source mode amplifies).
    pub udp_source_any: bool,
    /// Keep the transport's view of each connection (TCP: `TCP_INFO` and the
    /// options read back; QUIC: quinn's stats), with a snapshot at its close:
    /// [`Servers::transport`]. The server is the sender of every download, so
    /// its window and retransmissions are the ones that explain a transfer.
    /// Default off (costs a few `getsockopt` per connection).
    pub record_transport: bool,
    /// With `record_transport`, also sample each connection this often
    /// (bounded: see `quicbench_wire::sockinfo::Series`). Default None.
    pub transport_sample: Option<Duration>,
    /// TCP Fast Open on the TCP listeners and TLS 1.3 early data over TCP
    /// (`wire::transport::TcpFastStart`, the settings the client shares).
    /// Default both off.
    pub tcp_fast_start: TcpFastStart,
}

impl ServerOptions {
    /// Defaults on 127.0.0.1 with the standard ports (8080, 8443 TCP+UDP, 9000).
    pub fn new(identity: Identity) -> Self {
        ServerOptions {
            listen: vec![IpAddr::from([127, 0, 0, 1])],
            http_port: 8080,
            tls_port: 8443,
            quic_port: 8443,
            udp_port: 9000,
            identity,
            max_bytes: quicbench_wire::resource::DEFAULT_MAX_BYTES,
            cc: CongestionControl::default(),
            link: None,
            header_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            max_header_bytes: 16 * 1024,
            udp_source_any: false,
            quic_recv_buffer: Some(quicbench_wire::transport::QUIC_SOCKET_BUFFER),
            tcp_reuse_port: false,
            record_transport: false,
            transport_sample: None,
            tcp_fast_start: TcpFastStart::default(),
        }
    }

    /// Same, every port ephemeral (tests).
    pub fn ephemeral(identity: Identity) -> Self {
        let mut o = Self::new(identity);
        o.http_port = 0;
        o.tls_port = 0;
        o.quic_port = 0;
        o.udp_port = 0;
        o
    }
}

/// Counters every server updates (relaxed atomics: statistics, not control).
#[derive(Debug, Default)]
pub struct Stats {
    pub tcp_accepted: AtomicU64,
    pub tcp_refused: AtomicU64,
    pub quic_accepted: AtomicU64,
    pub quic_refused: AtomicU64,
    /// QUIC Retry packets sent (address validation under handshake load).
    pub quic_retries: AtomicU64,
    pub requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub tls_failures: AtomicU64,
    /// TCP connections whose SYN carried acknowledged data (Fast Open),
    /// read back from each accepted socket (`TCP_INFO`).
    pub tcp_syn_data: AtomicU64,
    /// TLS-over-TCP connections whose early data this server accepted.
    pub tls_early_data: AtomicU64,
    /// The TLS listener's Fast Open queue, read back (0: off).
    pub tcp_fast_open_queue: AtomicU64,
    pub udp_datagrams: AtomicU64,
    pub udp_garbage: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Connections open now (TCP + QUIC).
    pub open_connections: AtomicU64,
    /// The QUIC socket's buffers as granted by the kernel (read back), bytes.
    pub quic_socket_rcvbuf: AtomicU64,
    pub quic_socket_sndbuf: AtomicU64,
    /// Congestion controller read back from each accepted connection
    /// (`getsockopt(TCP_CONGESTION)`, quinn's state): name → connections.
    pub tcp_congestion: std::sync::Mutex<BTreeMap<String, u64>>,
    pub quic_congestion: std::sync::Mutex<BTreeMap<String, u64>>,
}

/// Count one connection under `name`.
pub(crate) fn count_name(m: &std::sync::Mutex<BTreeMap<String, u64>>, name: String) {
    if let Ok(mut g) = m.lock() {
        *g.entry(name).or_default() += 1;
    }
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            tcp_accepted: l(&self.tcp_accepted),
            tcp_refused: l(&self.tcp_refused),
            quic_accepted: l(&self.quic_accepted),
            quic_refused: l(&self.quic_refused),
            quic_retries: l(&self.quic_retries),
            requests: l(&self.requests),
            bad_requests: l(&self.bad_requests),
            tls_failures: l(&self.tls_failures),
            tcp_syn_data: l(&self.tcp_syn_data),
            tls_early_data: l(&self.tls_early_data),
            tcp_fast_open_queue: l(&self.tcp_fast_open_queue),
            udp_datagrams: l(&self.udp_datagrams),
            udp_garbage: l(&self.udp_garbage),
            bytes_sent: l(&self.bytes_sent),
            open_connections: l(&self.open_connections),
            quic_socket_rcvbuf: l(&self.quic_socket_rcvbuf),
            quic_socket_sndbuf: l(&self.quic_socket_sndbuf),
            tcp_congestion: self
                .tcp_congestion
                .lock()
                .map(|g| g.clone())
                .unwrap_or_default(),
            quic_congestion: self
                .quic_congestion
                .lock()
                .map(|g| g.clone())
                .unwrap_or_default(),
        }
    }
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub tcp_accepted: u64,
    pub tcp_refused: u64,
    pub quic_accepted: u64,
    pub quic_refused: u64,
    #[serde(default)]
    pub quic_retries: u64,
    pub requests: u64,
    pub bad_requests: u64,
    pub tls_failures: u64,
    /// Accepted TCP connections opened by a Fast Open SYN (`TCP_INFO`).
    #[serde(default)]
    pub tcp_syn_data: u64,
    /// TLS-over-TCP connections whose early data was accepted.
    #[serde(default)]
    pub tls_early_data: u64,
    /// The TLS listener's `TCP_FASTOPEN` queue, read back (0: off).
    #[serde(default)]
    pub tcp_fast_open_queue: u64,
    pub udp_datagrams: u64,
    pub udp_garbage: u64,
    pub bytes_sent: u64,
    pub open_connections: u64,
    /// The QUIC socket's buffers as the kernel granted them, bytes.
    #[serde(default)]
    pub quic_socket_rcvbuf: u64,
    #[serde(default)]
    pub quic_socket_sndbuf: u64,
    /// Controller read back per accepted TCP connection: name → count.
    #[serde(default)]
    pub tcp_congestion: BTreeMap<String, u64>,
    /// Controller read back per accepted QUIC connection: name → count.
    #[serde(default)]
    pub quic_congestion: BTreeMap<String, u64>,
}

/// What every server task shares.
#[derive(Debug)]
pub struct ServerCtx {
    pub max_bytes: u64,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    /// See [`ServerOptions::udp_source_any`].
    pub udp_source_any: bool,
    pub stats: Stats,
    /// Flips to true on shutdown; tasks stop accepting and finish.
    pub shutdown: watch::Receiver<bool>,
    /// Per-connection transport records (None: not recorded).
    pub transport: Option<TransportLog>,
}

/// Most connections whose transport records a server keeps (the first ones).
pub const MAX_TRANSPORT_RECORDS: usize = 64;

/// The probes of a server's connections (see `ServerOptions::record_transport`).
#[derive(Debug)]
pub struct TransportLog {
    /// Times in records count from here (CLOCK_MONOTONIC ns; the servers' start).
    pub origin_mono_ns: u64,
    pub sample: Option<Duration>,
    probes: std::sync::Mutex<Vec<Arc<ConnProbe>>>,
    /// Connections beyond [`MAX_TRANSPORT_RECORDS`], not recorded.
    pub dropped: AtomicU64,
}

impl TransportLog {
    pub fn new(sample: Option<Duration>) -> Self {
        TransportLog {
            origin_mono_ns: quicbench_wire::clock::mono_ns(),
            sample,
            probes: std::sync::Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Keep `p` (and start sampling it) unless the log is full.
    pub fn add(&self, p: &Arc<ConnProbe>) {
        let mut v = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= MAX_TRANSPORT_RECORDS {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        v.push(p.clone());
        drop(v);
        if let Some(period) = self.sample {
            p.start_sampling(period);
        }
    }

    /// A record per connection kept: the snapshot at its close, or one taken
    /// now if it is still open.
    pub fn records(&self) -> Vec<TransportRecord> {
        let v = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().map(|p| p.record()).collect()
    }
}

impl ServerCtx {
    /// See [`Servers::transport`].
    pub fn transport_records(&self) -> Vec<TransportRecord> {
        self.transport
            .as_ref()
            .map(TransportLog::records)
            .unwrap_or_default()
    }
}

/// Where each server ended up listening.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BoundAddrs {
    pub http: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub quic: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
}

/// Running servers; dropping it does not stop them, call [`Servers::shutdown`].
#[derive(Debug)]
pub struct Servers {
    pub addrs: BoundAddrs,
    pub ctx: Arc<ServerCtx>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    quic_endpoints: Vec<quinn::Endpoint>,
}

/// Failures to start, naming the address.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {proto} on {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS set-up: {0}")]
    Tls(#[from] quicbench_wire::tls::TlsError),
    #[error("{0}")]
    CongestionControl(#[from] quicbench_wire::transport::CcError),
    #[error("TCP Fast Open on the listener: {0}")]
    FastOpen(std::io::Error),
}

/// Fast Open on a TCP listener as `opts` says; the TLS listener's queue is
/// read back into the stats.
fn fast_open(
    opts: &ServerOptions,
    l: &tokio::net::TcpListener,
    ctx: &ServerCtx,
    tls: bool,
) -> Result<(), ServeError> {
    opts.tcp_fast_start
        .apply_listener(l)
        .map_err(ServeError::FastOpen)?;
    if tls {
        let q = quicbench_wire::transport::tcp_fast_open(l).0.unwrap_or(0);
        ctx.stats
            .tcp_fast_open_queue
            .store(u64::from(q), Ordering::Relaxed);
    }
    Ok(())
}

/// Bind and start every server on every address in `opts.listen`.
pub async fn start(opts: ServerOptions) -> Result<Servers, ServeError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ctx = Arc::new(ServerCtx {
        max_bytes: opts.max_bytes,
        header_timeout: opts.header_timeout,
        max_connections: opts.max_connections,
        max_header_bytes: opts.max_header_bytes,
        udp_source_any: opts.udp_source_any,
        stats: Stats::default(),
        shutdown: shutdown_rx,
        transport: opts
            .record_transport
            .then(|| TransportLog::new(opts.transport_sample)),
    });
    // http/1.0 too: curl --http1.0 offers only that over TLS, and rustls refuses
    // a handshake with no ALPN overlap. The TCP server treats it as HTTP/1.x.
    let tls_cfg = Arc::new(tls::tcp_server_config(
        &opts.identity,
        &[ALPN_H2, ALPN_H1, ALPN_H1_0],
        opts.tcp_fast_start,
    )?);
    let transport = Transport {
        cc: opts.cc,
        link: opts.link,
    };
    let quic_cfg = tls::quic_server_config(&opts.identity, transport)?;
    let mut addrs = BoundAddrs::default();
    let mut tasks = Vec::new();
    let mut quic_endpoints = Vec::new();
    for ip in &opts.listen {
        let a = SocketAddr::new(*ip, opts.http_port);
        let l = tcp::bind_with(a, opts.tcp_reuse_port).map_err(|source| ServeError::Bind {
            proto: "http (tcp)",
            addr: a,
            source,
        })?;
        transport.apply_tcp(&l)?;
        fast_open(&opts, &l, &ctx, false)?;
        addrs.http.push(l.local_addr().unwrap_or(a));
        tasks.push(tcp::spawn(l, None, ctx.clone()));

        let a = SocketAddr::new(*ip, opts.tls_port);
        let l = tcp::bind_with(a, opts.tcp_reuse_port).map_err(|source| ServeError::Bind {
            proto: "https (tcp)",
            addr: a,
            source,
        })?;
        transport.apply_tcp(&l)?;
        fast_open(&opts, &l, &ctx, true)?;
        let tls_addr = l.local_addr().unwrap_or(a);
        addrs.tls.push(tls_addr);
        tasks.push(tcp::spawn(l, Some(tls_cfg.clone()), ctx.clone()));

        // QUIC defaults to the TLS port number (like real deployments: 443/tcp + 443/udp).
        let qport = if opts.quic_port == 0 && opts.tls_port == 0 {
            tls_addr.port()
        } else {
            opts.quic_port
        };
        let a = SocketAddr::new(*ip, qport);
        let rcvbuf = opts.quic_recv_buffer;
        let ep = h3::bind_with(a, quic_cfg.clone(), rcvbuf).or_else(|e| {
            if opts.quic_port == 0 {
                // The TLS port's number may be taken on UDP: any free port then.
                h3::bind_with(SocketAddr::new(*ip, 0), quic_cfg.clone(), rcvbuf)
            } else {
                Err(e)
            }
        });
        let (ep, granted) = ep.map_err(|source| ServeError::Bind {
            proto: "h3 (quic/udp)",
            addr: a,
            source,
        })?;
        ctx.stats
            .quic_socket_rcvbuf
            .store(granted.0, Ordering::Relaxed);
        ctx.stats
            .quic_socket_sndbuf
            .store(granted.1, Ordering::Relaxed);
        addrs.quic.push(ep.local_addr().unwrap_or(a));
        quic_endpoints.push(ep.clone());
        tasks.push(h3::spawn(ep, ctx.clone()));

        let a = SocketAddr::new(*ip, opts.udp_port);
        let s = udp::bind(a).map_err(|source| ServeError::Bind {
            proto: "udp probe",
            addr: a,
            source,
        })?;
        addrs.udp.push(s.local_addr().unwrap_or(a));
        tasks.push(udp::spawn(s, ctx.clone()));
    }
    Ok(Servers {
        addrs,
        ctx,
        shutdown_tx,
        tasks,
        quic_endpoints,
    })
}

impl Servers {
    pub fn stats(&self) -> StatsSnapshot {
        self.ctx.stats.snapshot()
    }

    /// The transport records of the connections served so far (empty unless
    /// `ServerOptions::record_transport`). After [`Servers::shutdown`], read
    /// them through a clone of `ctx`: closed connections have their final
    /// snapshot by then.
    pub fn transport(&self) -> Vec<TransportRecord> {
        self.ctx.transport_records()
    }

    /// Stop accepting, close QUIC endpoints, and wait (at most `grace`) for tasks.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown_tx.send(true);
        for ep in &self.quic_endpoints {
            ep.close(quinn::VarInt::from_u32(0), b"server shutdown");
        }
        let all = futures::future::join_all(self.tasks.into_iter().map(|t| async move {
            let _ = t.await;
        }));
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::debug!("server tasks still running after {grace:?}; abandoning them");
        }
    }
}
