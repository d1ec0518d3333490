//! HTTP/3 over QUIC (quinn + h3, bound by `wire::h3quic`).
//!
//! * One quinn [`Endpoint`](quinn::Endpoint) per connection, bound to
//!   `opts.local_ip` (or the unspecified address of the server's family), so
//!   [`Migrator::migrate`] can move exactly this connection to a new socket.
//! * Resumption and 0-RTT: the client's TLS config (`Shared::tls`) holds the
//!   session store, so a later connection of the same [`crate::Client`] finds a
//!   ticket; then the connection is used before the handshake completes
//!   (`Connecting::into_0rtt`) and the first batch's requests go out in 0-RTT.
//!   Whether the server accepted them is quinn's `ZeroRttAccepted` verdict,
//!   recorded in [`ConnInfo::early_data_accepted`]. If the server rejected 0-RTT,
//!   the requests sent early are lost by design (RFC 9001 §4.6.2): the client
//!   reconnects once and re-issues them, as a real client must.
//! * `run`: every request of a batch is a concurrent stream on the connection.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use quicbench_wire::h3quic;
use quicbench_wire::pattern::Verifier;
use quicbench_wire::resource::Resource;
use quicbench_wire::sockinfo::{ConnProbe, QuicProbeGuard, Side};
use quicbench_wire::tls;
use tokio::task::JoinHandle;

use crate::{ClientError, ConnInfo, Request, RequestRecord, Shared};

type SendRequest = h3::client::SendRequest<h3quic::OpenStreams, Bytes>;

/// Longest `close` waits for the endpoint to drain.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Drained endpoints a client keeps for its next connections.
const POOL_MAX: usize = 8;

/// A client's quinn endpoints whose connections have all closed and drained.
///
/// Every connection gets a UDP socket of its own (its own 5-tuple: the link
/// follows flows by it, and a NAT rebinding moves one connection, not all).
/// A quinn endpoint costs far more than its socket: it zeroes a 3 MB receive
/// buffer (1472 B x 64 GRO segments x 32 datagrams a batch), 16% of a cold
/// h3 connection's CPU, both ends counted (docs/h3.md). So a connection
/// takes a drained endpoint when there is one and moves it onto its fresh
/// socket (`Endpoint::rebind`), and its `close` gives the endpoint back once
/// the draining period is over (no state of the old connection is left).
#[derive(Debug, Default)]
pub struct EndpointPool(std::sync::Mutex<Vec<quinn::Endpoint>>);

impl EndpointPool {
    fn take(&self) -> Option<quinn::Endpoint> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put(&self, ep: quinn::Endpoint) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < POOL_MAX && ep.open_connections() == 0 {
            v.push(ep);
        }
    }

    /// Endpoints held (for tests).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
/// At most one progress sample per this interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(1);

/// The HTTP/3 client's TLS session store: rustls' in-memory cache, plus a note
/// of the cipher suite of each TLS 1.3 ticket received. A ticket carries the
/// suite of the connection that received it, and quinn offers no other way to
/// learn the negotiated suite. With `keep == false` (resumption off) tickets
/// are noted and dropped.
#[derive(Debug)]
pub struct TicketStore {
    inner: rustls::client::ClientSessionMemoryCache,
    keep: bool,
    /// Server name → (tickets received so far, suite of the latest).
    seen: Mutex<HashMap<String, (u64, String)>>,
}

impl TicketStore {
    pub fn new(keep: bool) -> Arc<Self> {
        Arc::new(TicketStore {
            inner: rustls::client::ClientSessionMemoryCache::new(256),
            keep,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Tickets received from `server_name` so far, and the latest one's suite.
    pub fn received(&self, server_name: &str) -> (u64, Option<String>) {
        match self.seen.lock() {
            Ok(m) => m
                .get(server_name)
                .map(|(n, s)| (*n, Some(s.clone())))
                .unwrap_or((0, None)),
            Err(_) => (0, None),
        }
    }
}

impl rustls::client::ClientSessionStore for TicketStore {
    fn set_kx_hint(
        &self,
        server_name: rustls_pki_types::ServerName<'static>,
        group: rustls::NamedGroup,
    ) {
        self.inner.set_kx_hint(server_name, group)
    }
    fn kx_hint(
        &self,
        server_name: &rustls_pki_types::ServerName<'_>,
    ) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server_name)
    }
    fn set_tls12_session(
        &self,
        server_name: rustls_pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        if self.keep {
            self.inner.set_tls12_session(server_name, value)
        }
    }
    fn tls12_session(
        &self,
        server_name: &rustls_pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &rustls_pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }
    fn insert_tls13_ticket(
        &self,
        server_name: rustls_pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        let suite = tls::suite_name(rustls::SupportedCipherSuite::Tls13(value.suite()));
        if let Ok(mut m) = self.seen.lock() {
            let e = m
                .entry(server_name.to_str().into_owned())
                .or_insert((0, String::new()));
            e.0 += 1;
            e.1 = suite;
        }
        if self.keep {
            self.inner.insert_tls13_ticket(server_name, value)
        }
    }
    fn take_tls13_ticket(
        &self,
        server_name: &rustls_pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        if self.keep {
            self.inner.take_tls13_ticket(server_name)
        } else {
            None
        }
    }
}

/// One HTTP/3 connection.
pub struct H3Conn {
    shared: Arc<Shared>,
    info: ConnInfo,
    endpoint: quinn::Endpoint,
    bind_ip: IpAddr,
    conn: quinn::Connection,
    send: SendRequest,
    driver: JoinHandle<()>,
    /// Handshake completion (time, 0-RTT accepted) when the connection was
    /// used in 0-RTT; consumed by the first `run`.
    pending_0rtt: Option<JoinHandle<(Instant, bool)>>,
    /// `transport_ready_ns` still to be put on the first request's record.
    ready_unreported: bool,
    /// Early data was attempted (a ticket was held and resumption is on).
    attempted_0rtt: bool,
    /// Tickets received from this server before this connection started.
    tickets_before: u64,
    /// Transport probes (quinn's stats) of the QUIC connections made (a
    /// second one after a rejected 0-RTT), and the guards that release them.
    probes: Vec<Arc<ConnProbe>>,
    probe_guards: Vec<QuicProbeGuard>,
}

impl fmt::Debug for H3Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H3Conn")
            .field("info", &self.info)
            .field("bind_ip", &self.bind_ip)
            .finish_non_exhaustive()
    }
}

/// A handle that moves a connection to a new local UDP port (active migration),
/// usable while the connection is busy in `run` on another task.
#[derive(Debug, Clone)]
pub struct Migrator {
    endpoint: quinn::Endpoint,
    ip: IpAddr,
}

impl Migrator {
    /// Bind a new UDP socket on the same local IP (new port) and move the
    /// endpoint onto it; returns the new local address. quinn then probes the
    /// new path and the server follows the connection ID.
    pub fn migrate(&self) -> Result<SocketAddr, ClientError> {
        let sock = std::net::UdpSocket::bind(SocketAddr::new(self.ip, 0)).map_err(|e| {
            ClientError::Io(format!(
                "migration: cannot bind a new socket on {}: {e}",
                self.ip
            ))
        })?;
        let addr = sock
            .local_addr()
            .map_err(|e| ClientError::Io(format!("migration: new socket address: {e}")))?;
        self.endpoint
            .rebind(sock)
            .map_err(|e| ClientError::Io(format!("migration: rebind to {addr}: {e}")))?;
        Ok(addr)
    }

    /// The endpoint's current local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }
}

/// What one handshake produced.
struct Established {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: SendRequest,
    driver: JoinHandle<()>,
    /// Some: used in 0-RTT, verdict pending.
    pending_0rtt: Option<JoinHandle<(Instant, bool)>>,
    /// The endpoint was bound and the handshake started.
    handshake_start: Instant,
    /// Handshake completed (1-RTT case).
    ready: Option<Instant>,
    /// A first attempt in 0-RTT was rejected; this is the second, 1-RTT one.
    rejected_0rtt: bool,
    /// The UDP socket's buffers as granted (receive, send), read back.
    socket_buffers: (u64, u64),
}

fn connect_error(addr: SocketAddr, e: quinn::ConnectionError) -> ClientError {
    use quinn::ConnectionError as E;
    match &e {
        E::TimedOut => ClientError::Timeout(format!("QUIC handshake with {addr}")),
        // QUIC carries TLS alerts as transport codes 0x100..=0x1ff (RFC 9001 §4.8).
        E::TransportError(t) if u64::from(t.code) & !0xff == 0x100 => ClientError::Tls {
            addr,
            detail: e.to_string(),
        },
        E::ConnectionClosed(c) if u64::from(c.error_code) & !0xff == 0x100 => ClientError::Tls {
            addr,
            detail: e.to_string(),
        },
        _ => ClientError::Connect {
            addr,
            detail: e.to_string(),
        },
    }
}

/// Connect, using 0-RTT when allowed and possible. If the server rejects the
/// early data while HTTP/3 is being set up (the control stream sent in 0-RTT is
/// lost), connect again without 0-RTT; `rejected_0rtt` then says so.
async fn establish(
    shared: &Shared,
    bind_ip: IpAddr,
    allow_0rtt: bool,
) -> Result<Established, ClientError> {
    match establish_once(shared, bind_ip, allow_0rtt).await {
        Ok(e) => Ok(e),
        Err((_, true)) => {
            let mut e = establish_once(shared, bind_ip, false)
                .await
                .map_err(|(e, _)| e)?;
            e.rejected_0rtt = true;
            Ok(e)
        }
        Err((e, false)) => Err(e),
    }
}

/// One connection attempt; on failure, the error and whether 0-RTT was rejected.
async fn establish_once(
    shared: &Shared,
    bind_ip: IpAddr,
    allow_0rtt: bool,
) -> Result<Established, (ClientError, bool)> {
    let fail = |e: ClientError| (e, false);
    let opts = &shared.opts;
    let addr = opts.server;
    let tls_cfg = shared.tls.clone().ok_or_else(|| {
        fail(ClientError::Setup(
            "HTTP/3 needs a TLS configuration".into(),
        ))
    })?;
    // With a capture directory, one qlog per connection attempt.
    let qlog: Option<Box<dyn std::io::Write + Send + Sync>> = match &opts.capture_dir {
        Some(dir) => {
            let path = dir.join(format!("h3-{}.qlog", shared.epoch.now_ns()));
            let file = std::fs::File::create(&path).map_err(|e| {
                fail(ClientError::Setup(format!(
                    "cannot create {}: {e}",
                    path.display()
                )))
            })?;
            Some(Box::new(std::io::BufWriter::new(file)))
        }
        None => None,
    };
    let transport = quicbench_wire::transport::Transport {
        cc: opts.cc,
        link: opts.link,
    };
    // The stall timeout of the TCP clients is the h3 client's keep-alive:
    // the same time to notice a silent path (a NAT rebinding).
    let cfg = tls::quic_client_config_with_qlog(tls_cfg, transport, qlog, opts.stall_timeout)
        .map_err(|e| fail(ClientError::Setup(e.to_string())))?;
    let bind_err = |e: std::io::Error| {
        fail(ClientError::Connect {
            addr,
            detail: format!("cannot bind a UDP socket on {bind_ip}: {e}"),
        })
    };
    let mut pooled = shared.h3_endpoints.take();
    let (endpoint, connecting, handshake_start, socket_buffers) = loop {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0)).map_err(bind_err)?;
        // Buffers of the size the server's get (wire::transport): the default
        // receive buffer drops datagrams at tens of Mbit/s, outside the link.
        let socket_buffers = quicbench_wire::transport::set_socket_buffers(
            &socket,
            quicbench_wire::transport::QUIC_SOCKET_BUFFER,
        );
        let reused = pooled.is_some();
        let mut endpoint = match pooled.take() {
            Some(ep) => {
                ep.rebind(socket).map_err(bind_err)?;
                ep
            }
            None => quicbench_wire::transport::quic_endpoint(
                quinn::EndpointConfig::default(),
                None,
                socket,
            )
            .map_err(bind_err)?,
        };
        endpoint.set_default_client_config(cfg.clone());
        let handshake_start = Instant::now();
        match endpoint.connect(addr, &opts.server_name) {
            Ok(c) => break (endpoint, c, handshake_start, socket_buffers),
            // A pooled endpoint whose runtime has ended: a new one.
            Err(quinn::ConnectError::EndpointStopping) if reused => continue,
            Err(e) => {
                return Err(fail(ClientError::Connect {
                    addr,
                    detail: e.to_string(),
                }))
            }
        }
    };
    let (conn, pending_0rtt, ready) = match connecting.into_0rtt() {
        Ok((conn, accepted)) if allow_0rtt => {
            // The verdict arrives with the handshake: note its time as it happens.
            let verdict = tokio::spawn(async move {
                let ok = accepted.await;
                (Instant::now(), ok)
            });
            (conn, Some(verdict), None)
        }
        Ok((conn, accepted)) => {
            // 0-RTT not wanted (reconnect after a rejection): wait for 1-RTT keys.
            let _ = accepted.await;
            if let Some(e) = conn.close_reason() {
                return Err(fail(connect_error(addr, e)));
            }
            (conn, None, Some(Instant::now()))
        }
        Err(connecting) => {
            let conn = connecting.await.map_err(|e| fail(connect_error(addr, e)))?;
            (conn, None, Some(Instant::now()))
        }
    };
    let built = h3::client::builder()
        .build::<_, _, Bytes>(h3quic::Connection::new(conn.clone()))
        .await;
    let (mut driver, send) = match built {
        Ok(x) => x,
        Err(e) => {
            let err = ClientError::Protocol(format!("HTTP/3 set-up with {addr}: {e}"));
            let mut rejected = false;
            if let Some(verdict) = pending_0rtt {
                let t = shared.opts.timeout;
                rejected = matches!(tokio::time::timeout(t, verdict).await, Ok(Ok((_, false))));
            }
            conn.close(quinn::VarInt::from_u32(0x100), b"");
            return Err((err, rejected));
        }
    };
    let driver = tokio::spawn(async move {
        let e = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
        tracing::debug!("h3 connection closed: {e}");
    });
    Ok(Established {
        endpoint,
        socket_buffers,
        conn,
        send,
        driver,
        pending_0rtt,
        handshake_start,
        ready,
        rejected_0rtt: false,
    })
}

impl H3Conn {
    /// Open a connection: handshake (or 0-RTT set-up when a ticket is held).
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let opts = &shared.opts;
        let bind_ip = opts.local_ip.unwrap_or(if opts.server.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        let conn_id = shared.next_conn_id();
        let tickets_before = shared
            .h3_tickets
            .as_ref()
            .map_or(0, |t| t.received(&opts.server_name).0);
        let start = Instant::now();
        let est = establish(&shared, bind_ip, opts.resume).await?;
        let epoch = shared.epoch;
        let mut info = ConnInfo {
            conn_id,
            protocol: shared.proto.name().to_string(),
            local: est.endpoint.local_addr().ok(),
            peer: Some(est.conn.remote_address()),
            start_ns: epoch.ns(start),
            handshake_start_ns: Some(epoch.ns(est.handshake_start)),
            transport_ready_ns: est.ready.map(|t| epoch.ns(t)),
            tls_ready_ns: est.ready.map(|t| epoch.ns(t)),
            // QUIC v1 is TLS 1.3 only (RFC 9001 §4.2), and our config allows nothing else.
            tls_version: Some("TLSv1_3".into()),
            cipher: None,
            alpn: None,
            resumed: None,
            early_data_accepted: None,
            tcp_syn_data: None,
            // Read back from quinn's state, not the option we passed.
            congestion_control: Some(quicbench_wire::transport::quic_controller(&est.conn)),
            socket_buffers: Some(est.socket_buffers),
            quic_mtu: Some(est.conn.stats().path.current_mtu),
        };
        if est.pending_0rtt.is_none() {
            // No 0-RTT: no ticket was held, resumption is off, or the server
            // rejected the early data (then `resumed` is unknown).
            info.early_data_accepted = Some(false);
            if !opts.resume {
                info.resumed = Some(false);
            }
            fill_alpn(&mut info, &est.conn);
        }
        let attempted_0rtt = est.pending_0rtt.is_some() || est.rejected_0rtt;
        let mut conn = H3Conn {
            shared,
            info,
            endpoint: est.endpoint,
            bind_ip,
            conn: est.conn,
            send: est.send,
            driver: est.driver,
            pending_0rtt: est.pending_0rtt,
            ready_unreported: true,
            attempted_0rtt,
            tickets_before,
            probes: Vec::new(),
            probe_guards: Vec::new(),
        };
        conn.watch();
        Ok(conn)
    }

    /// Put a transport probe on the current QUIC connection.
    fn watch(&mut self) {
        let (probe, guard) = ConnProbe::quic(
            &self.conn,
            Side::Client,
            Some(self.info.conn_id),
            self.shared.epoch.mono_ns(),
        );
        if let Some(period) = self.shared.opts.transport_sample {
            probe.start_sampling(period);
        }
        self.probes.push(probe);
        self.probe_guards.push(guard);
    }

    pub(crate) fn probes(&self) -> &[Arc<ConnProbe>] {
        &self.probes
    }

    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// Whether this connection tried 0-RTT (accepted or not: see
    /// [`ConnInfo::early_data_accepted`]).
    pub fn attempted_0rtt(&self) -> bool {
        self.attempted_0rtt
    }

    /// The underlying QUIC connection (statistics, RTT, path).
    pub fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    /// A handle for active migration, usable while `run` is in progress.
    pub fn migrator(&self) -> Migrator {
        Migrator {
            endpoint: self.endpoint.clone(),
            ip: self.bind_ip,
        }
    }

    /// Move the connection to a new local port now; returns the new address.
    pub fn migrate(&self) -> Result<SocketAddr, ClientError> {
        self.migrator().migrate()
    }

    /// Issue `reqs` as concurrent streams; one record per request, in order.
    pub async fn run(&mut self, reqs: &[Request]) -> Vec<RequestRecord> {
        let batch_start = Instant::now();
        let mut records = self.issue(reqs, batch_start, None).await;

        if let Some(verdict) = self.pending_0rtt.take() {
            let timeout = self.shared.opts.timeout;
            let (at, accepted) = match tokio::time::timeout(timeout, verdict).await {
                Ok(Ok(v)) => v,
                _ => (Instant::now(), false),
            };
            let epoch = self.shared.epoch;
            let handshake_ok = self.conn.close_reason().is_none();
            if handshake_ok {
                self.info.transport_ready_ns = Some(epoch.ns(at));
                self.info.tls_ready_ns = Some(epoch.ns(at));
            }
            self.info.early_data_accepted = Some(accepted);
            // TLS 1.3 accepts early data only with the PSK (RFC 8446 §4.2.10):
            // accepted 0-RTT proves resumption; a rejection tells nothing about it.
            self.info.resumed = if accepted { Some(true) } else { None };
            fill_alpn(&mut self.info, &self.conn);
            if !accepted {
                self.recover_from_rejected_0rtt(reqs, batch_start, &mut records)
                    .await;
            }
        }
        self.note_cipher();
        if self.ready_unreported {
            self.ready_unreported = false;
            if let Some(first) = records.first_mut() {
                first.transport_ready_ns = self.info.transport_ready_ns;
                first.tls_ready_ns = self.info.tls_ready_ns;
            }
        }
        records
    }

    /// The cipher suite, once a session ticket arrived on this connection (it
    /// carries the negotiated suite); later runs retry if none has yet.
    fn note_cipher(&mut self) {
        if self.info.cipher.is_some() {
            return;
        }
        if let Some(store) = &self.shared.h3_tickets {
            let (n, suite) = store.received(&self.shared.opts.server_name);
            if n > self.tickets_before {
                self.info.cipher = suite;
            }
        }
    }

    /// The server refused our 0-RTT data: reconnect (1-RTT) and re-issue what failed.
    async fn recover_from_rejected_0rtt(
        &mut self,
        reqs: &[Request],
        batch_start: Instant,
        records: &mut [RequestRecord],
    ) {
        let failed: Vec<usize> = records
            .iter()
            .filter(|r| !r.ok())
            .map(|r| r.index)
            .collect();
        if failed.is_empty() {
            return;
        }
        self.driver.abort();
        // The final snapshot of the abandoned connection, before it closes.
        self.probe_guards.clear();
        self.conn.close(
            quinn::VarInt::from_u32(0x100),
            b"0-RTT rejected; reconnecting",
        );
        match establish(&self.shared, self.bind_ip, false).await {
            Ok(est) => {
                self.endpoint = est.endpoint;
                self.conn = est.conn;
                self.send = est.send;
                self.driver = est.driver;
                self.info.local = self.endpoint.local_addr().ok();
                self.info.handshake_start_ns = Some(self.shared.epoch.ns(est.handshake_start));
                self.watch();
                if let Some(t) = est.ready {
                    let epoch = self.shared.epoch;
                    self.info.transport_ready_ns = Some(epoch.ns(t));
                    self.info.tls_ready_ns = Some(epoch.ns(t));
                }
                let again = self.issue(reqs, batch_start, Some(&failed)).await;
                for r in again {
                    let i = r.index;
                    if let Some(slot) = records.get_mut(i) {
                        *slot = r;
                    }
                }
            }
            Err(e) => {
                for i in failed {
                    if let Some(r) = records.get_mut(i) {
                        r.error = Some(format!("0-RTT rejected and reconnect failed: {e}"));
                    }
                }
            }
        }
    }

    /// Issue `reqs` (or only the indices in `only`) concurrently.
    async fn issue(
        &self,
        reqs: &[Request],
        batch_start: Instant,
        only: Option<&[usize]>,
    ) -> Vec<RequestRecord> {
        let opts = &self.shared.opts;
        let authority = authority(&opts.server_name, opts.server.port());
        let futs = reqs
            .iter()
            .enumerate()
            .filter(|(i, _)| only.is_none_or(|o| o.contains(i)))
            .map(|(i, r)| {
                let job = Job {
                    index: i,
                    req: r,
                    conn_id: self.info.conn_id,
                    scheduled: batch_start + r.at.unwrap_or_default(),
                    authority: &authority,
                    shared: &self.shared,
                };
                one_request(job, self.send.clone())
            });
        futures::future::join_all(futs).await
    }

    /// Close the connection and wait (bounded) for the endpoint to drain.
    pub async fn close(self) {
        let H3Conn {
            shared,
            endpoint,
            conn,
            send,
            driver,
            pending_0rtt,
            probe_guards,
            ..
        } = self;
        // The final snapshot before CONNECTION_CLOSE.
        drop(probe_guards);
        drop(send);
        conn.close(quinn::VarInt::from_u32(0x100), b"done"); // H3_NO_ERROR
        if let Some(p) = pending_0rtt {
            p.abort();
        }
        // CONNECTION_CLOSE leaves with the endpoint's next poll; the draining
        // period after it (3 PTO, RFC 9000 §10.2: ~85 ms on a 0 ms link, ~1 s
        // at 150 ms RTT) is the endpoint's business, not the caller's. It
        // runs in the background until the runtime ends, so a workload that
        // opens connections one after another does not wait it out each time.
        tokio::spawn(async move {
            let drained = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
            driver.abort();
            if drained.is_ok() {
                shared.h3_endpoints.put(endpoint);
            }
        });
        // Let the endpoint's driver run once: the close goes out now even if
        // the runtime is dropped right after.
        tokio::task::yield_now().await;
    }
}

fn fill_alpn(info: &mut ConnInfo, conn: &quinn::Connection) {
    if let Some(hd) = conn.handshake_data() {
        if let Ok(hd) = hd.downcast::<quinn::crypto::rustls::HandshakeData>() {
            info.alpn = hd
                .protocol
                .map(|p| String::from_utf8_lossy(&p).into_owned());
        }
    }
}

/// `host:port` for the `:authority` pseudo-header (IPv6 literals bracketed).
fn authority(server_name: &str, port: u16) -> String {
    if server_name.parse::<Ipv6Addr>().is_ok() {
        format!("[{server_name}]:{port}")
    } else {
        format!("{server_name}:{port}")
    }
}

struct Job<'a> {
    index: usize,
    req: &'a Request,
    conn_id: u64,
    scheduled: Instant,
    authority: &'a str,
    shared: &'a Shared,
}

/// Where a pattern body starts and how long it must be, from the status and
/// Content-Range; None when the response is not a pattern body.
fn expected_body(path: &str, status: u16, content_range: Option<&str>) -> Option<(u64, u64)> {
    let Resource::Bytes(n) = Resource::parse(path, u64::MAX) else {
        return None;
    };
    match status {
        200 => Some((0, n)),
        206 => {
            // "bytes a-b/len"
            let spec = content_range?.trim().strip_prefix("bytes ")?;
            let (range, _len) = spec.split_once('/')?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
            (b >= a).then(|| (a, b - a + 1))
        }
        _ => None,
    }
}

async fn one_request(job: Job<'_>, mut send: SendRequest) -> RequestRecord {
    let epoch = job.shared.epoch;
    let opts = &job.shared.opts;
    let mut rec = RequestRecord::new(
        job.index,
        &job.req.path,
        job.conn_id,
        epoch.ns(job.scheduled),
    );
    crate::wait_until(job.scheduled).await;
    let fut = async {
        let uri = format!("https://{}{}", job.authority, job.req.path);
        let mut b = http::Request::get(uri);
        if let Some(from) = job.req.range_from {
            b = b.header(http::header::RANGE, format!("bytes={from}-"));
        }
        let req = b
            .body(())
            .map_err(|e| format!("bad request {:?}: {e}", job.req.path))?;
        let mut stream = send
            .send_request(req)
            .await
            .map_err(|e| format!("send request: {e}"))?;
        rec.stream_id = Some(stream.id().into_inner());
        if let Err(e) = stream.finish().await {
            // A server may answer before reading our FIN and then stop our
            // sending side (RFC 9114 §4.1): the request was complete and the
            // response still counts. A real failure shows up in recv_response.
            tracing::debug!("finish request stream {:?}: {e}", rec.stream_id);
        }
        rec.request_sent_ns = Some(epoch.now_ns());
        let resp = stream
            .recv_response()
            .await
            .map_err(|e| format!("receive response: {e}"))?;
        let t = Instant::now();
        rec.first_byte_ns = Some(epoch.ns(t));
        let status = resp.status().as_u16();
        rec.status = Some(status);
        let cr = resp
            .headers()
            .get(http::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok());
        let expect = expected_body(&job.req.path, status, cr);
        let mut verifier = expect.map(|(start, _)| Verifier::new(start));
        let mut last_sample = t;
        // Set on the record only once the body is complete (stream FIN).
        let mut last_chunk_ns: Option<u64> = None;
        while let Some(mut chunk) = stream
            .recv_data()
            .await
            .map_err(|e| format!("receive body: {e}"))?
        {
            while chunk.has_remaining() {
                let c = chunk.chunk();
                let n = c.len();
                if let Some(v) = verifier.as_mut() {
                    v.update(c);
                }
                rec.bytes += n as u64;
                chunk.advance(n);
            }
            let now = Instant::now();
            last_chunk_ns = Some(epoch.ns(now));
            if opts.track_progress && now.duration_since(last_sample) >= PROGRESS_EVERY {
                rec.progress.push((epoch.ns(now), rec.bytes));
                last_sample = now;
            }
        }
        // The last DATA chunk; for an empty body, when the stream ended.
        rec.last_byte_ns = Some(last_chunk_ns.unwrap_or_else(|| epoch.now_ns()));
        if opts.track_progress && rec.progress.last().map(|p| p.1) != Some(rec.bytes) {
            if let Some(t) = rec.last_byte_ns {
                rec.progress.push((t, rec.bytes));
            }
        }
        if let (Some((start, len)), Some(v)) = (expect, verifier) {
            if let Some(at) = v.first_error() {
                rec.verified = Some(false);
                return Err(format!("body differs from the pattern at byte {at}"));
            }
            if rec.bytes != len {
                rec.verified = Some(false);
                return Err(format!(
                    "body has {} bytes, expected {len} (from byte {start})",
                    rec.bytes
                ));
            }
            rec.verified = Some(true);
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(opts.timeout, fut).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => rec.error = Some(e),
        Err(_) => {
            rec.error = Some(format!(
                "timed out after {:?} ({} body bytes received)",
                opts.timeout, rec.bytes
            ))
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_bodies() {
        assert_eq!(expected_body("/bytes/100", 200, None), Some((0, 100)));
        assert_eq!(
            expected_body("/bytes/100", 206, Some("bytes 10-99/100")),
            Some((10, 90))
        );
        assert_eq!(
            expected_body("/bytes/100", 206, Some("bytes 10-9/100")),
            None
        );
        assert_eq!(expected_body("/bytes/100", 206, None), None);
        assert_eq!(expected_body("/bytes/100", 404, None), None);
        assert_eq!(expected_body("/", 200, None), None);
    }

    #[test]
    fn authorities() {
        assert_eq!(authority("localhost", 443), "localhost:443");
        assert_eq!(authority("127.0.0.1", 8443), "127.0.0.1:8443");
        assert_eq!(authority("::1", 8443), "[::1]:8443");
    }
}
