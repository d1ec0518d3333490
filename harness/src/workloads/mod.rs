//! The five workloads, run on the client side of a cell. Each returns raw
//! measurements ([`Output`]); statistics happen later, in `results`.
//!
//! Exact metric definitions: docs/methodology.md; their names: [`names`].

mod goodput;
mod hol;
pub mod lost;
mod migration;
pub mod names;

pub use goodput::{goodput, static_long_size, steady_goodput, SteadyGoodput};
pub use hol::{
    hol_paced, hol_parallel, paced_plan, split_latency, PacedPlan, H1_PARALLEL_CONNECTIONS,
};
pub use migration::{
    account, disruption, migration, migration_paced, Confirmed, Facts, LinkControl, NatTally,
    Outcome, QueueAtEvent, RebindError, Rebound, Reconnect, TcpRecovery,
};

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quicbench_clients::udp::{ProbeConfig, ProbeMode};
use quicbench_clients::{
    Client, ClientOptions, ConnInfo, Connection, Epoch, Request, RequestRecord,
};
use quicbench_wire::sockinfo::TransportRecord;
use quicbench_wire::transport::TcpFastStart;
use quicbench_wire::{CongestionControl, Protocol};
use rustls_pki_types::CertificateDer;

/// How often goodput and migration transfers sample the transport.
pub const TRANSPORT_SAMPLE: Duration = quicbench_wire::sockinfo::SAMPLE_PERIOD;

use crate::matrix::{HandshakeParams, UdpParams};

/// Server ports of one cell.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Ports {
    pub http: u16,
    pub tls: u16,
    pub quic: u16,
    pub udp: u16,
}

/// What a workload needs to know about its cell.
#[derive(Clone)]
pub struct Env {
    pub server_ip: IpAddr,
    pub ports: Ports,
    pub trust: Vec<CertificateDer<'static>>,
    pub cc: CongestionControl,
    /// Configured base RTT of the link, ms.
    pub rtt_ms: f64,
    pub rate_bps: Option<u64>,
    /// The link's configured loss probability per packet (0 lossless).
    pub loss: f64,
    pub warmup: u32,
    /// Per-request time limit.
    pub timeout: Duration,
    /// The link's NAT, for the migration workload's rebinding events (None:
    /// not a rebinding cell, or a link that cannot rebind).
    pub link: Option<Arc<dyn LinkControl>>,
    /// The link's MTU and batching, which our clients' QUIC follows as the
    /// servers' does (`wire::transport::LinkShape`).
    pub link_shape: Option<quicbench_wire::transport::LinkShape>,
    /// TLS key log and qlog go here (with `--pcap`).
    pub capture_dir: Option<std::path::PathBuf>,
    /// See `ClientOptions::stall_timeout` (set by the migration workload).
    pub stall_timeout: Option<Duration>,
    /// See `ClientOptions::transport_sample` (set by the goodput and
    /// migration workloads: their charts show the window over time).
    pub transport_sample: Option<Duration>,
    /// The server is a third-party static file server: only the object
    /// sizes fixed before the cell exist (`endpoints::cell::objects_of`).
    pub static_server: bool,
}

/// Raw measurements of one cell.
#[derive(Debug, Default)]
pub struct Output {
    /// metric → (unit, samples).
    pub metrics: BTreeMap<String, (String, Vec<f64>)>,
    /// name → (t_ms, value) series (progress for waterfalls and migration).
    pub timelines: BTreeMap<String, Vec<(f64, f64)>>,
    pub records: Vec<RequestRecord>,
    pub conn: Option<ConnInfo>,
    pub theory: BTreeMap<String, f64>,
    pub notes: Vec<String>,
    /// Extra structured data (probe report, events).
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Requests that failed (they are not in the latency samples).
    pub failures: u64,
    /// The client's transport records of its connections (see
    /// `quicbench_wire::sockinfo`), the first [`MAX_TRANSPORT_RECORDS`].
    pub transport: Vec<TransportRecord>,
    /// CLOCK_MONOTONIC ns of the workload's time zero (that of its timelines);
    /// transport records are put on that axis.
    pub t0_mono_ns: u64,
    /// When the measured connections began, where warm-up connections of
    /// their own came first: the link's per-flow metrics leave out the flows
    /// that started before (they are counted, `extra.link_flows.warmup`).
    pub measured_from: Option<std::time::Instant>,
}

/// Most client transport records a workload keeps.
pub const MAX_TRANSPORT_RECORDS: usize = 16;

impl Output {
    pub fn push(&mut self, metric: &str, unit: &str, v: f64) {
        if v.is_finite() {
            self.metrics
                .entry(metric.to_string())
                .or_insert_with(|| (unit.to_string(), Vec::new()))
                .1
                .push(v);
        }
    }
    /// Keep the transport records of `conn` (until there are enough).
    fn keep_transport(&mut self, conn: &Connection) {
        if self.transport.len() < MAX_TRANSPORT_RECORDS {
            let room = MAX_TRANSPORT_RECORDS - self.transport.len();
            self.transport
                .extend(conn.transport().into_iter().take(room));
        }
    }
    pub(crate) fn fail(&mut self, what: String) {
        self.failures += 1;
        if self.notes.len() < 20 {
            self.notes.push(what);
        }
    }
    /// The whole cell failed for `reason`: no metric is kept (nothing it would
    /// say is true), the reason becomes the cell's (the first note).
    pub(crate) fn fail_cell(&mut self, reason: String) {
        self.metrics.clear();
        self.failures += 1;
        self.notes.insert(0, reason);
    }
}

const MS: f64 = 1e6;

/// The server port a protocol's client connects to.
pub(crate) fn port_of(p: Protocol, ports: &Ports) -> u16 {
    match p {
        Protocol::H10 | Protocol::H11 => ports.http,
        Protocol::H10Tls | Protocol::H11Tls | Protocol::H11Pipelined | Protocol::H2 => ports.tls,
        Protocol::H3 => ports.quic,
        Protocol::Udp => ports.udp,
    }
}

pub(crate) fn client(
    env: &Env,
    p: Protocol,
    resume: bool,
    progress: bool,
    epoch: Epoch,
) -> Result<Client, String> {
    client_with(env, p, resume, progress, epoch, TcpFastStart::default())
}

/// As [`client`], with TCP Fast Open / early data as `fast` says.
fn client_with(
    env: &Env,
    p: Protocol,
    resume: bool,
    progress: bool,
    epoch: Epoch,
    fast: TcpFastStart,
) -> Result<Client, String> {
    let server = SocketAddr::new(env.server_ip, port_of(p, &env.ports));
    let mut o = ClientOptions::new(server, env.trust.clone());
    o.cc = env.cc;
    o.link = env.link_shape;
    o.resume = resume;
    o.track_progress = progress;
    o.timeout = env.timeout;
    o.capture_dir = env.capture_dir.clone();
    o.stall_timeout = env.stall_timeout;
    o.transport_sample = env.transport_sample;
    o.fast_start = fast;
    Client::with_epoch(p, o, epoch).map_err(|e| e.to_string())
}

/// A client and its first connection; failures are recorded in `out`.
async fn open(
    env: &Env,
    p: Protocol,
    resume: bool,
    progress: bool,
    epoch: Epoch,
    out: &mut Output,
) -> Option<(Client, Connection)> {
    let c = match client(env, p, resume, progress, epoch) {
        Ok(c) => c,
        Err(e) => {
            out.fail(e);
            return None;
        }
    };
    match c.connect().await {
        Ok(conn) => Some((c, conn)),
        Err(e) => {
            out.fail(format!("connect: {e}"));
            None
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / MS
}

/// Handshake: sequential fresh connections, each fetching one small object.
/// `mode`: `cold`, `resumed`, or a lost-flight mode ([`lost`]: the cell's
/// link drops each measured connection's first client or server packet).
pub async fn handshake(env: &Env, p: Protocol, mode: &str, hp: &HandshakeParams) -> Output {
    let mut out = Output::default();
    let lost = lost::Lost::of(mode);
    // TCP's answer to 0-RTT (the server runs the same settings: cell.rs).
    let fast = crate::matrix::tcp_fast_start(mode);
    let resumed = mode == "resumed" || fast != TcpFastStart::default();
    let epoch = Epoch::new();
    out.t0_mono_ns = epoch.mono_ns();
    let c = match client_with(env, p, resumed, false, epoch, fast) {
        Ok(c) => c,
        Err(e) => {
            out.fail(e);
            return out;
        }
    };
    handshake_theory(&mut out, env, p, resumed, lost, fast);
    // Warm-up connections: in resumed modes they also obtain the ticket (and
    // the Fast Open cookie). A lost-flight link drops nothing while they run:
    // only measured connections lose their first packet.
    let warm = env.warmup.max(if resumed { 1 } else { 0 });
    if lost.is_some() {
        arm_chosen_drops(env, &mut out, false);
    }
    for _ in 0..warm {
        if let Ok(mut conn) = c.connect().await {
            let _ = conn.run(&[Request::bytes(hp.size)]).await;
            conn.close().await;
        }
    }
    if lost.is_some() {
        arm_chosen_drops(env, &mut out, true);
    }
    out.measured_from = Some(std::time::Instant::now());
    let (mut resumed_n, mut early_n, mut syn_n) = (0u64, 0u64, 0u64);
    for i in 0..hp.connections {
        if let Some((r, e, syn)) = measure_connection(env, p, &c, hp, epoch, i, &mut out).await {
            resumed_n += r as u64;
            early_n += e as u64;
            syn_n += syn as u64;
        }
    }
    let n = hp.connections.max(1) as f64;
    if p.uses_tls() {
        out.push("resumed_share", "fraction", resumed_n as f64 / n);
    }
    if p == Protocol::H3 {
        out.push("zero_rtt_share", "fraction", early_n as f64 / n);
    }
    push_fast_start_shares(&mut out, fast, syn_n, early_n, n);
    out
}

/// The handshake's theory: round trips (`ttfb_rtt`), and for the lost-flight
/// modes also the retransmission timer and the TTFB in ms it predicts.
fn handshake_theory(
    out: &mut Output,
    env: &Env,
    p: Protocol,
    resumed: bool,
    lost: Option<lost::Lost>,
    fast: TcpFastStart,
) {
    if let Some(lost) = lost {
        if let Some((ttfb_ms, timer_ms)) = lost::theory(lost, p, env.rtt_ms) {
            out.theory.insert(lost::THEORY_TTFB_MS.into(), ttfb_ms);
            out.theory.insert(lost::THEORY_TIMER_MS.into(), timer_ms);
            if env.rtt_ms > 0.0 {
                out.theory.insert("ttfb_rtt".into(), ttfb_ms / env.rtt_ms);
            }
        }
    } else if fast != TcpFastStart::default() {
        if let Some(t) = p.theory_ttfb_rtt_tcp(fast.fast_open, fast.early_data > 0) {
            out.theory.insert("ttfb_rtt".into(), t);
        }
    } else if let Some(t) = p.theory_ttfb_rtt(resumed && p == Protocol::H3) {
        out.theory.insert("ttfb_rtt".into(), t);
    }
}

/// Arm or disarm the link's `drop-nth`; a link that cannot (the kernel
/// backend, or no link handle) leaves a note: its warm-up connections lose
/// their first packet too.
fn arm_chosen_drops(env: &Env, out: &mut Output, armed: bool) {
    let why = match env.link.as_ref().map(|l| l.arm_chosen_drops(armed)) {
        Some(Ok(true)) => return,
        Some(Ok(false)) => "the link has no drop-nth".to_string(),
        Some(Err(e)) => e,
        None => "no link handle".to_string(),
    };
    if !armed && env.warmup > 0 {
        out.notes.push(format!(
            "warm-up connections were not spared the chosen drop ({why})"
        ));
    } else if armed {
        out.notes
            .push(format!("could not arm the chosen drop: {why}"));
    }
}

/// One measured connection of the handshake workload: its metrics go into
/// `out`; returns (resumed, early data accepted, SYN data acknowledged), None
/// when it failed.
async fn measure_connection(
    env: &Env,
    p: Protocol,
    c: &Client,
    hp: &HandshakeParams,
    epoch: Epoch,
    i: u32,
    out: &mut Output,
) -> Option<(bool, bool, bool)> {
    let t0 = epoch.now_ns();
    let mut conn = match c.connect().await {
        Ok(conn) => conn,
        Err(e) => {
            out.fail(format!("connection {i}: {e}"));
            return None;
        }
    };
    let recs = conn.run(&[Request::bytes(hp.size)]).await;
    let info = conn.info().clone();
    out.keep_transport(&conn);
    conn.close().await;
    let Some(r) = recs.into_iter().next() else {
        out.fail(format!("connection {i}: no record"));
        return None;
    };
    if !r.ok() {
        out.fail(format!(
            "connection {i}: {}",
            r.error
                .clone()
                .unwrap_or_else(|| format!("status {:?}", r.status))
        ));
        out.records.push(r);
        return None;
    }
    let transport = r.transport_ready_ns.or(info.transport_ready_ns);
    let tls = r.tls_ready_ns.or(info.tls_ready_ns);
    if let Some(t) = transport {
        out.push("connect_ms", "ms", ms(t.saturating_sub(t0)));
    }
    if p.uses_tls() {
        if let Some(t) = tls {
            out.push("tls_ms", "ms", ms(t.saturating_sub(t0)));
        }
    }
    if let Some(fb) = r.first_byte_ns {
        let v = ms(fb.saturating_sub(t0));
        out.push("ttfb_ms", "ms", v);
        if env.rtt_ms > 0.0 {
            out.push("ttfb_rtt", "RTT", v / env.rtt_ms);
        }
    }
    if let Some(lb) = r.last_byte_ns {
        out.push("total_ms", "ms", ms(lb.saturating_sub(t0)));
    }
    let flags = (
        info.resumed == Some(true),
        info.early_data_accepted == Some(true),
        info.tcp_syn_data == Some(true),
    );
    if out.conn.is_none() {
        out.conn = Some(info);
    }
    out.records.push(r);
    Some(flags)
}

/// `tfo_share` (SYN data acknowledged) and `early_data_share` (the server
/// accepted TLS early data), read back per connection, for the modes that
/// ask for them.
fn push_fast_start_shares(out: &mut Output, fast: TcpFastStart, syn: u64, early: u64, n: f64) {
    if fast.fast_open {
        out.push("tfo_share", "fraction", syn as f64 / n);
    }
    if fast.early_data > 0 {
        out.push("early_data_share", "fraction", early as f64 / n);
    }
}

/// The raw UDP baseline: the probe in echo mode.
pub async fn udp(env: &Env, up: &UdpParams) -> Output {
    let mut out = Output::default();
    let mut cfg = ProbeConfig::new(
        SocketAddr::new(env.server_ip, env.ports.udp),
        ProbeMode::Echo,
    );
    cfg.count = up.count as u64;
    cfg.interval = Duration::from_micros(up.interval_us);
    cfg.size = up.size as usize;
    cfg.timeout = Duration::from_millis((env.rtt_ms * 4.0) as u64 + 500);
    match quicbench_clients::udp::probe(cfg).await {
        Ok(rep) => {
            for v in &rep.samples_us {
                out.push("rtt_ms", "ms", *v as f64 / 1000.0);
            }
            if let Some(s) = &rep.owd_up {
                out.push("owd_up_p50_ms", "ms", s.p50_us / 1000.0);
            }
            if let Some(s) = &rep.owd_down {
                out.push("owd_down_p50_ms", "ms", s.p50_us / 1000.0);
            }
            out.push("loss_rate", "fraction", rep.loss_rate);
            if let Some(r) = rep.reordered {
                out.push("reordered", "packets", r as f64);
            }
            if let Some(d) = rep.duplicates {
                out.push("duplicates", "packets", d as f64);
            }
            if let Some(j) = rep.jitter_us {
                out.push("jitter_ms", "ms", j / 1000.0);
            }
            out.extra.insert(
                "probe".into(),
                serde_json::to_value(&rep).unwrap_or_default(),
            );
        }
        Err(e) => out.fail(format!("probe: {e}")),
    }
    out
}
