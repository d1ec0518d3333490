//! The UDP probe client: the link as an application sees it (loss, delay,
//! jitter, reordering, duplication), with no transport in between.
//!
//! Modes (wire format in `quicbench_wire::probe`, docs/udp-probe.md):
//! * **echo**: `count` requests every `interval`; each reply gives an RTT and,
//!   because client and server read the same `CLOCK_MONOTONIC` (namespaces on
//!   one host share it), one-way delays up and down.
//! * **sink**: `count` datagrams to the server, then ask how many arrived
//!   (upstream loss only; the server does not report order or timing).
//! * **source**: ask the server for `count` datagrams every `interval`
//!   (downstream loss, reordering, duplicates, one-way delay, jitter).
//!
//! Sends are paced by absolute deadlines (`start + i × interval`) on a
//! dedicated thread (`thread::sleep` wakes within tens of µs; tokio timers tick
//! in ms); receiving runs concurrently on the tokio side.

pub mod stats;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicbench_wire::clock::{mono_ns, stamp};
use quicbench_wire::probe::{self, Header, Kind, SinkReport, SourceRequest, HEADER_LEN};
use tokio::io::Interest;
use tokio::net::UdpSocket;

pub use stats::{Delays, Jitter, SeqTracker, Summary};

use crate::ClientError;

/// Keep raw samples in the report up to this many.
pub const MAX_RAW_SAMPLES: usize = 10_000;
/// Most datagrams one probe may send (bounds memory and time).
pub const MAX_COUNT: u64 = 10_000_000;
/// Longest a probe's sending may last, `(count − 1) × interval`.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Requests for a sink report or a source run are repeated this many times at most.
const ATTEMPTS: u32 = 3;

/// What the probe measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    Echo,
    Sink,
    Source,
}

impl std::str::FromStr for ProbeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "echo" => Ok(ProbeMode::Echo),
            "sink" => Ok(ProbeMode::Sink),
            "source" => Ok(ProbeMode::Source),
            other => Err(format!(
                "unknown probe mode {other:?}: expected echo, sink or source"
            )),
        }
    }
}

/// One probe run.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The probe server (UDP).
    pub server: SocketAddr,
    pub mode: ProbeMode,
    /// Datagrams to send (echo, sink) or to ask for (source).
    pub count: u64,
    /// Spacing between datagrams.
    pub interval: Duration,
    /// Datagram size, bytes (48..=65507).
    pub size: usize,
    /// How long to wait after the last send for replies (echo), before asking
    /// for the report (sink), or after the expected end of a source run.
    pub timeout: Duration,
    /// Session id: separates concurrent probes from one address.
    pub session: u32,
    /// Bind to this local address (None: the OS picks).
    pub local_ip: Option<IpAddr>,
}

impl ProbeConfig {
    /// 1000 datagrams of 200 bytes every ms, 1 s timeout, a session id from the clock.
    pub fn new(server: SocketAddr, mode: ProbeMode) -> Self {
        ProbeConfig {
            server,
            mode,
            count: 1000,
            interval: Duration::from_millis(1),
            size: 200,
            timeout: Duration::from_secs(1),
            session: (mono_ns() as u32) ^ std::process::id().rotate_left(16),
            local_ip: None,
        }
    }
}

/// What a probe measured. Delays in µs. `None` where the mode cannot tell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeReport {
    pub mode: ProbeMode,
    pub size: usize,
    pub interval_us: u64,
    /// Datagrams sent toward the receiver (by the client, or by the server in source mode).
    pub sent: u64,
    /// Distinct datagrams that arrived (sink: as counted by the server, duplicates included).
    pub received: u64,
    pub lost: u64,
    pub loss_rate: f64,
    pub duplicates: Option<u64>,
    /// RFC 4737: arrived after a datagram with a higher sequence number.
    pub reordered: Option<u64>,
    /// Round-trip time (echo).
    pub rtt: Option<Summary>,
    /// Client → server one-way delay (echo): server_recv − client_send.
    pub owd_up: Option<Summary>,
    /// Server → client one-way delay (echo, source): client_recv − server_send.
    pub owd_down: Option<Summary>,
    /// RFC 3550 interarrival jitter, µs: of the round trip (echo) or of the
    /// downstream one-way transit (source).
    pub jitter_us: Option<f64>,
    /// RTT (echo) or downstream one-way delay (source) samples in arrival order,
    /// µs, when there are at most [`MAX_RAW_SAMPLES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples_us: Vec<u64>,
    /// The same quantity as an HdrHistogram (ns, V2 deflate format, hex).
    pub histogram_v2_hex: Option<String>,
    /// First send to end of measurement, ns.
    pub duration_ns: u64,
    /// Datagrams from the server that did not belong to this probe.
    pub stray: u64,
}

/// Run one probe.
pub async fn probe(cfg: ProbeConfig) -> Result<ProbeReport, ClientError> {
    probe::check_size(cfg.size).map_err(|e| ClientError::Setup(e.to_string()))?;
    if cfg.count == 0 || cfg.count > MAX_COUNT {
        return Err(ClientError::Setup(format!(
            "probe count {} outside 1..={MAX_COUNT}",
            cfg.count
        )));
    }
    let span = cfg
        .interval
        .saturating_mul(u32::try_from(cfg.count - 1).unwrap_or(u32::MAX));
    if span > MAX_DURATION {
        return Err(ClientError::Setup(format!(
            "probe of {} datagrams every {:?} lasts {span:?}, more than {MAX_DURATION:?}",
            cfg.count, cfg.interval
        )));
    }
    if cfg.timeout > MAX_DURATION {
        return Err(ClientError::Setup(format!(
            "probe timeout {:?} above {MAX_DURATION:?}",
            cfg.timeout
        )));
    }
    let sock = open_socket(&cfg)?;
    match cfg.mode {
        ProbeMode::Echo => echo(&cfg, sock).await,
        ProbeMode::Sink => sink(&cfg, sock).await,
        ProbeMode::Source => source(&cfg, sock).await,
    }
}

/// A socket connected to the server: the kernel drops datagrams from anyone else.
fn open_socket(cfg: &ProbeConfig) -> Result<std::net::UdpSocket, ClientError> {
    let ip = cfg.local_ip.unwrap_or(if cfg.server.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    });
    let s =
        std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|e| ClientError::Connect {
            addr: cfg.server,
            detail: format!("cannot bind a UDP socket on {ip}: {e}"),
        })?;
    quicbench_wire::probe::enlarge_buffers(&s, quicbench_wire::probe::SOCKET_BUFFER);
    s.connect(cfg.server).map_err(|e| ClientError::Connect {
        addr: cfg.server,
        detail: e.to_string(),
    })?;
    s.set_nonblocking(true)
        .map_err(|e| ClientError::Io(format!("probe socket: {e}")))?;
    Ok(s)
}

/// A tokio handle on the probe's socket, which has the kernel stamp each
/// datagram it receives: one-way delays and RTTs end when a datagram entered
/// the socket, not when this task woke up to read it (docs/udp-probe.md,
/// "Timestamps").
fn tokio_socket(s: &std::net::UdpSocket) -> Result<UdpSocket, ClientError> {
    if let Err(e) = stamp::enable(s) {
        tracing::warn!(
            "udp probe: no kernel receive stamps ({e}): arrival is read after the wake-up"
        );
    }
    let c = s
        .try_clone()
        .map_err(|e| ClientError::Io(format!("probe socket: {e}")))?;
    UdpSocket::from_std(c).map_err(|e| ClientError::Io(format!("probe socket: {e}")))
}

/// One datagram and its arrival on the [`mono_ns`] clock (the kernel's stamp).
async fn recv_arrival(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, u64)> {
    let got = sock
        .async_io(Interest::READABLE, || stamp::recv(sock, buf, true))
        .await?;
    Ok((got.len, got.arrival_on(mono_ns())))
}

/// Send on a non-blocking socket from a plain thread: retry briefly when full.
fn send_blocking(sock: &std::net::UdpSocket, buf: &[u8], give_up: Instant) -> std::io::Result<()> {
    loop {
        match sock.send(buf) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < give_up => {
                std::thread::sleep(Duration::from_micros(20));
            }
            // ECONNREFUSED: an ICMP error from an earlier datagram; the next may pass.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Stops the sender thread when the probe ends early or is cancelled.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Resolves with (datagrams sent, time of the last send), or why sending stopped.
type SenderDone = tokio::sync::oneshot::Receiver<Result<(u64, Instant), String>>;

/// Start the paced sender thread.
fn spawn_sender(
    cfg: &ProbeConfig,
    sock: std::net::UdpSocket,
    kind: Kind,
    stop: Arc<AtomicBool>,
) -> Result<SenderDone, ClientError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (count, interval, size, session) = (cfg.count, cfg.interval, cfg.size, cfg.session);
    std::thread::Builder::new()
        .name("udp-probe-send".into())
        .spawn(move || {
            let mut buf = vec![0u8; size];
            let start = Instant::now();
            let mut sent = 0u64;
            let mut last = start;
            let mut result = Ok(());
            for i in 0..count {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let deadline = u32::try_from(i)
                    .ok()
                    .and_then(|k| interval.checked_mul(k))
                    .map(|d| start + d)
                    .unwrap_or(start + interval.mul_f64(i as f64));
                // Sliced sleep: a cancelled probe's thread exits within 50 ms.
                loop {
                    let now = Instant::now();
                    if now >= deadline || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let h = Header::new(kind, session, i, mono_ns());
                if let Err(e) = h.write(&mut buf) {
                    result = Err(e.to_string());
                    break;
                }
                if let Err(e) = send_blocking(&sock, &buf, Instant::now() + Duration::from_secs(1))
                {
                    result = Err(format!("send: {e}"));
                    break;
                }
                sent += 1;
                last = Instant::now();
            }
            let _ = tx.send(result.map(|()| (sent, last)));
        })
        .map_err(|e| ClientError::Setup(format!("cannot start the probe sender thread: {e}")))?;
    Ok(rx)
}

/// Accumulates one direction's measurements.
struct Meter {
    seq: SeqTracker,
    primary: Delays,
    up: Delays,
    down: Delays,
    jitter: Jitter,
    samples: Vec<u64>,
    stray: u64,
}

impl Meter {
    fn new(expected: u64) -> Self {
        Meter {
            seq: SeqTracker::new(expected),
            primary: Delays::new(),
            up: Delays::new(),
            down: Delays::new(),
            jitter: Jitter::default(),
            samples: Vec::new(),
            stray: 0,
        }
    }

    fn sample(&mut self, ns: u64) {
        self.primary.record(ns);
        if self.samples.len() <= MAX_RAW_SAMPLES {
            self.samples.push(ns / 1000);
        }
    }

    fn report(self, cfg: &ProbeConfig, sent: u64, duration_ns: u64, echo: bool) -> ProbeReport {
        let received = self.seq.received();
        let lost = self.seq.lost(sent);
        let mut samples = self.samples;
        if samples.len() > MAX_RAW_SAMPLES {
            samples.clear();
        }
        ProbeReport {
            mode: cfg.mode,
            size: cfg.size,
            interval_us: cfg.interval.as_micros() as u64,
            sent,
            received,
            lost,
            loss_rate: if sent == 0 {
                0.0
            } else {
                lost as f64 / sent as f64
            },
            duplicates: Some(self.seq.duplicates()),
            reordered: Some(self.seq.reordered()),
            rtt: if echo { self.primary.summary() } else { None },
            owd_up: self.up.summary(),
            owd_down: self.down.summary(),
            jitter_us: (received > 1).then(|| self.jitter.us()),
            samples_us: samples,
            histogram_v2_hex: self
                .primary
                .to_v2_hex()
                .filter(|_| !self.primary.is_empty()),
            duration_ns,
            stray: self.stray,
        }
    }
}

async fn echo(
    cfg: &ProbeConfig,
    std_sock: std::net::UdpSocket,
) -> Result<ProbeReport, ClientError> {
    let sock = tokio_socket(&std_sock)?;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let t0 = Instant::now();
    let mut done = spawn_sender(cfg, std_sock, Kind::EchoRequest, stop)?;
    let mut m = Meter::new(cfg.count);
    let mut buf = vec![0u8; probe::MAX_DATAGRAM + 1];
    let mut sent: Option<(u64, Instant)> = None;
    // Before the sender finishes, the latest possible end is its schedule plus slack.
    let schedule = cfg.interval.mul_f64(cfg.count as f64) + Duration::from_secs(5);
    loop {
        let deadline = match sent {
            Some((_, last)) => last + cfg.timeout,
            None => t0 + schedule + cfg.timeout,
        };
        tokio::select! {
            r = &mut done, if sent.is_none() => {
                match r {
                    Ok(Ok(s)) => sent = Some(s),
                    Ok(Err(e)) => return Err(ClientError::Io(format!("probe to {}: {e}", cfg.server))),
                    Err(_) => return Err(ClientError::Io("probe sender thread died".into())),
                }
            }
            r = tokio::time::timeout_at(deadline.into(), recv_arrival(&sock, &mut buf)) => {
                let (n, now) = match r {
                    Err(_) => break,
                    Ok(Ok(x)) => x,
                    Ok(Err(_)) => continue, // ICMP error from a lost server: keep listening
                };
                match Header::read(&buf[..n]) {
                    Ok(h) if h.kind == Kind::EchoReply && h.session == cfg.session => {
                        if matches!(m.seq.observe(h.seq), stats::Seen::New | stats::Seen::Reordered) {
                            let rtt = now.saturating_sub(h.client_send_ns);
                            m.sample(rtt);
                            if h.server_recv_ns != 0 && h.server_send_ns != 0 {
                                m.up.record(h.server_recv_ns.saturating_sub(h.client_send_ns));
                                m.down.record(now.saturating_sub(h.server_send_ns));
                            }
                            m.jitter.update(h.client_send_ns, now);
                        }
                    }
                    _ => m.stray += 1,
                }
            }
        }
        if let Some((n, _)) = sent {
            if m.seq.received() >= n {
                break;
            }
        }
    }
    let (n, _) = sent.unwrap_or((cfg.count, Instant::now()));
    Ok(m.report(cfg, n, t0.elapsed().as_nanos() as u64, true))
}

async fn sink(
    cfg: &ProbeConfig,
    std_sock: std::net::UdpSocket,
) -> Result<ProbeReport, ClientError> {
    let sock = tokio_socket(&std_sock)?;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let t0 = Instant::now();
    let done = spawn_sender(cfg, std_sock, Kind::SinkData, stop)?;
    let (sent, _) = match done.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ClientError::Io(format!("probe to {}: {e}", cfg.server))),
        Err(_) => return Err(ClientError::Io("probe sender thread died".into())),
    };
    // Let datagrams still in flight (delayed, reordered) arrive before asking.
    tokio::time::sleep(cfg.timeout).await;
    // Padded to the report's size: the server never answers with more than it got.
    let report_size = HEADER_LEN + 24;
    let mut buf = vec![0u8; probe::MAX_DATAGRAM + 1];
    let mut stray = 0;
    for attempt in 0..ATTEMPTS {
        let req = probe::encode(
            &Header::new(
                Kind::SinkReportRequest,
                cfg.session,
                u64::from(attempt),
                mono_ns(),
            ),
            &[],
            report_size,
        )
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        sock.send(&req)
            .await
            .map_err(|e| ClientError::Io(format!("sink report request to {}: {e}", cfg.server)))?;
        let deadline = Instant::now() + cfg.timeout.max(Duration::from_millis(100));
        while let Ok(r) = tokio::time::timeout_at(deadline.into(), sock.recv(&mut buf)).await {
            let Ok(n) = r else { continue };
            match (
                Header::read(&buf[..n]),
                SinkReport::from_datagram(&buf[..n]),
            ) {
                (Ok(h), Ok(rep)) if h.kind == Kind::SinkReport && h.session == cfg.session => {
                    let lost = sent.saturating_sub(rep.received);
                    return Ok(ProbeReport {
                        mode: cfg.mode,
                        size: cfg.size,
                        interval_us: cfg.interval.as_micros() as u64,
                        sent,
                        received: rep.received,
                        lost,
                        loss_rate: if sent == 0 {
                            0.0
                        } else {
                            lost as f64 / sent as f64
                        },
                        duplicates: None,
                        reordered: None,
                        rtt: None,
                        owd_up: None,
                        owd_down: None,
                        jitter_us: None,
                        samples_us: Vec::new(),
                        histogram_v2_hex: None,
                        duration_ns: t0.elapsed().as_nanos() as u64,
                        stray,
                    });
                }
                _ => stray += 1,
            }
        }
    }
    Err(ClientError::Timeout(format!(
        "no sink report from {} after {ATTEMPTS} requests",
        cfg.server
    )))
}

async fn source(
    cfg: &ProbeConfig,
    std_sock: std::net::UdpSocket,
) -> Result<ProbeReport, ClientError> {
    let count = u32::try_from(cfg.count).unwrap_or(u32::MAX);
    let req = SourceRequest {
        count,
        size: cfg.size as u32,
        interval_us: u32::try_from(cfg.interval.as_micros()).unwrap_or(u32::MAX),
    };
    req.check().map_err(ClientError::Setup)?;
    let sock = tokio_socket(&std_sock)?;
    let t0 = Instant::now();
    let mut m = Meter::new(u64::from(count));
    let mut buf = vec![0u8; probe::MAX_DATAGRAM + 1];
    let run = cfg.interval.mul_f64(f64::from(count.saturating_sub(1)));
    let mut first_rx: Option<Instant> = None;
    let mut attempt = 0u32;
    let mut next_request = Instant::now();
    loop {
        if first_rx.is_none() && Instant::now() >= next_request {
            if attempt == ATTEMPTS {
                break;
            }
            let d = probe::encode(
                &Header::new(
                    Kind::SourceRequest,
                    cfg.session,
                    u64::from(attempt),
                    mono_ns(),
                ),
                &req.to_bytes(),
                HEADER_LEN + 12,
            )
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
            sock.send(&d)
                .await
                .map_err(|e| ClientError::Io(format!("source request to {}: {e}", cfg.server)))?;
            attempt += 1;
            next_request = Instant::now() + cfg.timeout.max(Duration::from_millis(100));
        }
        let deadline = match first_rx {
            Some(t) => t + run + cfg.timeout,
            None => next_request,
        };
        match tokio::time::timeout_at(deadline.into(), recv_arrival(&sock, &mut buf)).await {
            Err(_) => {
                if first_rx.is_some() {
                    break;
                }
            }
            Ok(Err(_)) => {} // ICMP error: keep listening until the deadline
            Ok(Ok((n, now))) => match Header::read(&buf[..n]) {
                Ok(h) if h.kind == Kind::SourceData && h.session == cfg.session => {
                    first_rx.get_or_insert_with(Instant::now);
                    if matches!(
                        m.seq.observe(h.seq),
                        stats::Seen::New | stats::Seen::Reordered
                    ) {
                        let owd = now.saturating_sub(h.server_send_ns);
                        m.sample(owd);
                        m.down.record(owd);
                        m.jitter.update(h.server_send_ns, now);
                    }
                    if m.seq.received() == u64::from(count) {
                        break;
                    }
                }
                _ => m.stray += 1,
            },
        }
    }
    if first_rx.is_none() {
        return Err(ClientError::Timeout(format!(
            "no source data from {} after {ATTEMPTS} requests (source mode is served only to loopback and benchmarking addresses by default)",
            cfg.server
        )));
    }
    Ok(m.report(cfg, u64::from(count), t0.elapsed().as_nanos() as u64, false))
}
