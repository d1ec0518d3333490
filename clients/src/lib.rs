//! quicbench-clients: one client per protocol, each a library that performs
//! requests and returns timings. Clients never print.
//!
//! Every client is reached through [`Client`] (per protocol, holds the TLS
//! session store so later connections can resume) and [`Connection`] (one
//! transport connection; for HTTP/1.0 a factory that opens one per request).
//! [`Connection::run`] issues a batch of [`Request`]s with the protocol's own
//! concurrency: sequential for HTTP/1.x keep-alive, back to back for pipelining,
//! multiplexed streams for HTTP/2 and HTTP/3.

pub mod h1;
pub mod h2;
pub mod h3;
pub mod pipelined;
pub mod udp;

mod record;
pub use quicbench_wire::sockinfo;
pub use record::{ClientError, ConnInfo, Epoch, Progress, Request, RequestRecord};

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quicbench_wire::sockinfo::TransportRecord;
use quicbench_wire::tls::{self, ALPN_H1, ALPN_H2, ALPN_H3};
use quicbench_wire::transport::TcpFastStart;
use quicbench_wire::{CongestionControl, Protocol};
use rustls_pki_types::CertificateDer;

/// Wait until `due` with sub-millisecond precision: tokio's timer has 1 ms
/// granularity (a deadline that is already due still waits for the next tick),
/// so sleep coarsely to 1.5 ms before the deadline and yield for the rest; a
/// deadline already passed returns at once. Latency is measured from the
/// scheduled time, so a late wake-up would be counted as protocol latency.
pub(crate) async fn wait_until(due: std::time::Instant) {
    const COARSE: Duration = Duration::from_micros(1500);
    let now = std::time::Instant::now();
    if due <= now {
        return;
    }
    if due - now > COARSE {
        tokio::time::sleep_until((due - COARSE).into()).await;
    }
    while std::time::Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Server address (the port of the protocol: cleartext, TLS or QUIC).
    pub server: SocketAddr,
    /// TLS server name (SNI and certificate check), e.g. "localhost" or an IP.
    pub server_name: String,
    /// Certificates to trust.
    pub trust: Vec<CertificateDer<'static>>,
    /// Congestion controller of both transports: QUIC's, and `TCP_CONGESTION`
    /// on every TCP socket before it connects. Default cubic. What ran is read
    /// back into [`ConnInfo::congestion_control`].
    pub cc: CongestionControl,
    /// The emulated link, when the harness built it: QUIC's packet size and
    /// batching follow it as the server's do (`wire::transport::LinkShape`).
    /// Default None.
    pub link: Option<quicbench_wire::transport::LinkShape>,
    /// Keep TLS sessions across connections (resumption, QUIC 0-RTT).
    pub resume: bool,
    /// Record per-request progress (bytes vs time) for waterfall and migration charts.
    pub track_progress: bool,
    /// Give up on one request (or connect) after this long.
    pub timeout: Duration,
    /// Give up on a response whose body makes no progress for this long (a
    /// stalled flow, e.g. after a NAT rebinding of a TCP connection); None: only
    /// `timeout` applies. The record then has `error` set and the bytes received
    /// so far, so the caller can resume with a Range request. HTTP/3: the
    /// client pings after this long without a packet from the server (QUIC
    /// keep-alive), so a silent path is noticed in the same time and the
    /// connection migrates instead of failing.
    pub stall_timeout: Option<Duration>,
    /// Write captures here: the TLS key log (`keylog.txt`, NSS format) and, for
    /// QUIC, one qlog per connection (`conn-<id>.qlog`).
    pub capture_dir: Option<std::path::PathBuf>,
    /// Bind the client's sockets to this local address (None: the OS picks).
    pub local_ip: Option<IpAddr>,
    /// Sample each connection's transport state (`TCP_INFO`, quinn's stats)
    /// this often, for charts over time (see `quicbench_wire::sockinfo`).
    /// Default None: only a snapshot when asked ([`Connection::transport`]) and
    /// when the connection closes.
    pub transport_sample: Option<Duration>,
    /// TCP Fast Open (`TCP_FASTOPEN_CONNECT`) and TLS 1.3 early data over
    /// TCP (the request in the first flight; needs `resume`; h1.1-tls and h2
    /// only, the clients that keep their connection for it): the settings
    /// the server shares (`wire::transport::TcpFastStart`). Default both off.
    /// What ran is read back into [`ConnInfo::tcp_syn_data`] and
    /// [`ConnInfo::early_data_accepted`].
    pub fast_start: TcpFastStart,
}

impl ClientOptions {
    pub fn new(server: SocketAddr, trust: Vec<CertificateDer<'static>>) -> Self {
        ClientOptions {
            server,
            server_name: server.ip().to_string(),
            trust,
            cc: CongestionControl::default(),
            link: None,
            resume: true,
            track_progress: false,
            timeout: Duration::from_secs(60),
            stall_timeout: None,
            capture_dir: None,
            local_ip: None,
            transport_sample: None,
            fast_start: TcpFastStart::default(),
        }
    }
}

/// What every connection of a [`Client`] shares.
#[derive(Debug)]
pub struct Shared {
    pub proto: Protocol,
    pub opts: ClientOptions,
    pub epoch: Epoch,
    /// TLS config (None for cleartext). Shared so its session store lets later
    /// connections resume.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// HTTP/3 only: the session store inside `tls`, which also notes the cipher
    /// suite of the tickets received (quinn does not expose the negotiated suite).
    pub h3_tickets: Option<Arc<h3::TicketStore>>,
    /// HTTP/3 only: endpoints whose connections have closed and drained.
    pub h3_endpoints: h3::EndpointPool,
    next_conn: AtomicU64,
}

impl Shared {
    /// A fresh connection id, unique within this client.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// A client for one protocol.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    pub fn new(proto: Protocol, opts: ClientOptions) -> Result<Client, ClientError> {
        Self::with_epoch(proto, opts, Epoch::new())
    }

    /// Like [`Client::new`], with times relative to a given epoch (so several
    /// clients share one time axis).
    pub fn with_epoch(
        proto: Protocol,
        opts: ClientOptions,
        epoch: Epoch,
    ) -> Result<Client, ClientError> {
        let alpn: Option<(&[&[u8]], bool)> = match proto {
            Protocol::H10 | Protocol::H11 | Protocol::Udp => None,
            Protocol::H10Tls | Protocol::H11Tls | Protocol::H11Pipelined => {
                Some((&[ALPN_H1], false))
            }
            Protocol::H2 => Some((&[ALPN_H2], false)),
            Protocol::H3 => Some((&[ALPN_H3], true)),
        };
        let mut h3_tickets = None;
        let tls = match alpn {
            None => None,
            Some((alpn, quic_early)) => {
                let early = quic_early || opts.fast_start.early_data > 0;
                let mut cfg = tls::client_config(&opts.trust, alpn, early && opts.resume)
                    .map_err(|e| ClientError::Setup(e.to_string()))?;
                if !opts.resume {
                    cfg.resumption = rustls::client::Resumption::disabled();
                }
                if proto == Protocol::H3 {
                    let store = h3::TicketStore::new(opts.resume);
                    cfg.resumption = rustls::client::Resumption::store(store.clone());
                    h3_tickets = Some(store);
                }
                if let Some(dir) = &opts.capture_dir {
                    let _ = std::fs::create_dir_all(dir);
                    let log = tls::FileKeyLog::open(&dir.join("keylog.txt"))
                        .map_err(|e| ClientError::Setup(e.to_string()))?;
                    cfg.key_log = Arc::new(log);
                }
                Some(Arc::new(cfg))
            }
        };
        Ok(Client {
            shared: Arc::new(Shared {
                proto,
                opts,
                epoch,
                tls,
                h3_tickets,
                h3_endpoints: h3::EndpointPool::default(),
                next_conn: AtomicU64::new(0),
            }),
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.shared.proto
    }

    pub fn epoch(&self) -> &Epoch {
        &self.shared.epoch
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Open a connection (handshake included; timings in its [`ConnInfo`]).
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let s = &self.shared;
        let fut = async {
            Ok(match s.proto {
                Protocol::H10 | Protocol::H10Tls => {
                    Connection::H10(h1::H10Conn::connect(s.clone()).await?)
                }
                Protocol::H11 | Protocol::H11Tls => {
                    Connection::H11(h1::H11Conn::connect(s.clone()).await?)
                }
                Protocol::H11Pipelined => {
                    Connection::Pipelined(pipelined::PipelinedConn::connect(s.clone()).await?)
                }
                Protocol::H2 => Connection::H2(h2::H2Conn::connect(s.clone()).await?),
                Protocol::H3 => Connection::H3(h3::H3Conn::connect(s.clone()).await?),
                Protocol::Udp => {
                    return Err(ClientError::Setup(
                        "the UDP probe has no connections: use clients::udp".into(),
                    ))
                }
            })
        };
        match tokio::time::timeout(s.opts.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(format!(
                "connect to {}",
                s.opts.server
            ))),
        }
    }
}

/// One connection of any protocol.
#[derive(Debug)]
pub enum Connection {
    H10(h1::H10Conn),
    H11(h1::H11Conn),
    Pipelined(pipelined::PipelinedConn),
    H2(h2::H2Conn),
    H3(h3::H3Conn),
}

impl Connection {
    /// Handshake facts and timings of this connection (for HTTP/1.0, of the
    /// first connection it opened).
    pub fn info(&self) -> &ConnInfo {
        match self {
            Connection::H10(c) => c.info(),
            Connection::H11(c) => c.info(),
            Connection::Pipelined(c) => c.info(),
            Connection::H2(c) => c.info(),
            Connection::H3(c) => c.info(),
        }
    }

    /// Issue `reqs` (each at its `at` offset from now, if given) with the
    /// protocol's concurrency; one record per request, in request order.
    /// A failed request has `error` set; it never aborts the batch.
    pub async fn run(&mut self, reqs: &[Request]) -> Vec<RequestRecord> {
        match self {
            Connection::H10(c) => c.run(reqs).await,
            Connection::H11(c) => c.run(reqs).await,
            Connection::Pipelined(c) => c.run(reqs).await,
            Connection::H2(c) => c.run(reqs).await,
            Connection::H3(c) => c.run(reqs).await,
        }
    }

    /// The transport's view of each connection this one opened (HTTP/1.0 and
    /// a re-established HTTP/3 connection: several): options read back, a
    /// snapshot (taken now if the connection is still open, else at its close)
    /// and the samples so far. Times count from the client's [`Epoch`].
    pub fn transport(&self) -> Vec<TransportRecord> {
        let probes = match self {
            Connection::H10(c) => c.probes(),
            Connection::H11(c) => c.probes(),
            Connection::Pipelined(c) => c.probes(),
            Connection::H2(c) => c.probes(),
            Connection::H3(c) => c.probes(),
        };
        probes.iter().map(|p| p.record()).collect()
    }

    /// The HTTP/3 connection, for active migration.
    pub fn as_h3(&self) -> Option<&h3::H3Conn> {
        match self {
            Connection::H3(c) => Some(c),
            _ => None,
        }
    }

    /// Close gracefully.
    pub async fn close(self) {
        match self {
            Connection::H10(c) => c.close().await,
            Connection::H11(c) => c.close().await,
            Connection::Pipelined(c) => c.close().await,
            Connection::H2(c) => c.close().await,
            Connection::H3(c) => c.close().await,
        }
    }
}
