//! The five workloads, run on the client side of a cell. Each returns raw
//! measurements ([`Output`]); statistics happen later, in `results`.
//!
//! Exact metric definitions: docs/methodology.md.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quicbench_clients::udp::{ProbeConfig, ProbeMode};
use quicbench_clients::{
    Client, ClientOptions, ConnInfo, Connection, Epoch, Request, RequestRecord,
};
use quicbench_wire::sockinfo::TransportRecord;
use quicbench_wire::{CongestionControl, Protocol};
use rustls_pki_types::CertificateDer;

/// How often goodput and migration transfers sample the transport.
pub const TRANSPORT_SAMPLE: Duration = quicbench_wire::sockinfo::SAMPLE_PERIOD;

use crate::matrix::{GoodputParams, HandshakeParams, HolParams, MigrationParams, UdpParams};

/// Server ports of one cell.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Ports {
    pub http: u16,
    pub tls: u16,
    pub quic: u16,
    pub udp: u16,
}

/// NAT rebinding on the link, asked for by the migration workload.
pub type RebindFn = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

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
    pub warmup: u32,
    /// Per-request time limit.
    pub timeout: Duration,
    pub rebind: Option<RebindFn>,
    /// TLS key log and qlog go here (with `--pcap`).
    pub capture_dir: Option<std::path::PathBuf>,
    /// See `ClientOptions::stall_timeout` (set by the migration workload).
    pub stall_timeout: Option<Duration>,
    /// See `ClientOptions::transport_sample` (set by the goodput and
    /// migration workloads: their charts show the window over time).
    pub transport_sample: Option<Duration>,
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
    fn fail(&mut self, what: String) {
        self.failures += 1;
        if self.notes.len() < 20 {
            self.notes.push(what);
        }
    }
}

const MS: f64 = 1e6;

fn port_of(p: Protocol, ports: &Ports) -> u16 {
    match p {
        Protocol::H10 | Protocol::H11 => ports.http,
        Protocol::H10Tls | Protocol::H11Tls | Protocol::H11Pipelined | Protocol::H2 => ports.tls,
        Protocol::H3 => ports.quic,
        Protocol::Udp => ports.udp,
    }
}

fn client(
    env: &Env,
    p: Protocol,
    resume: bool,
    progress: bool,
    epoch: Epoch,
) -> Result<Client, String> {
    let server = SocketAddr::new(env.server_ip, port_of(p, &env.ports));
    let mut o = ClientOptions::new(server, env.trust.clone());
    o.cc = env.cc;
    o.resume = resume;
    o.track_progress = progress;
    o.timeout = env.timeout;
    o.capture_dir = env.capture_dir.clone();
    o.stall_timeout = env.stall_timeout;
    o.transport_sample = env.transport_sample;
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
pub async fn handshake(env: &Env, p: Protocol, mode: &str, hp: &HandshakeParams) -> Output {
    let mut out = Output::default();
    let resumed = mode == "resumed";
    let epoch = Epoch::new();
    out.t0_mono_ns = epoch.mono_ns();
    let c = match client(env, p, resumed, false, epoch) {
        Ok(c) => c,
        Err(e) => {
            out.fail(e);
            return out;
        }
    };
    if let Some(t) = p.theory_ttfb_rtt(resumed && p == Protocol::H3) {
        out.theory.insert("ttfb_rtt".into(), t);
    }
    // Warm-up connections: in resumed mode they also obtain the ticket.
    let warm = env.warmup.max(if resumed { 1 } else { 0 });
    for _ in 0..warm {
        if let Ok(mut conn) = c.connect().await {
            let _ = conn.run(&[Request::bytes(hp.size)]).await;
            conn.close().await;
        }
    }
    let (mut resumed_n, mut early_n) = (0u64, 0u64);
    for i in 0..hp.connections {
        let t0 = epoch.now_ns();
        let mut conn = match c.connect().await {
            Ok(conn) => conn,
            Err(e) => {
                out.fail(format!("connection {i}: {e}"));
                continue;
            }
        };
        let recs = conn.run(&[Request::bytes(hp.size)]).await;
        let info = conn.info().clone();
        out.keep_transport(&conn);
        conn.close().await;
        let Some(r) = recs.into_iter().next() else {
            out.fail(format!("connection {i}: no record"));
            continue;
        };
        if !r.ok() {
            out.fail(format!(
                "connection {i}: {}",
                r.error
                    .clone()
                    .unwrap_or_else(|| format!("status {:?}", r.status))
            ));
            out.records.push(r);
            continue;
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
        if info.resumed == Some(true) {
            resumed_n += 1;
        }
        if info.early_data_accepted == Some(true) {
            early_n += 1;
        }
        if out.conn.is_none() {
            out.conn = Some(info);
        }
        out.records.push(r);
    }
    let n = hp.connections.max(1) as f64;
    if p.uses_tls() {
        out.push("resumed_share", "fraction", resumed_n as f64 / n);
    }
    if p == Protocol::H3 {
        out.push("zero_rtt_share", "fraction", early_n as f64 / n);
    }
    out
}

/// HOL (a): one connection, one small request every interval; per-request latency.
pub async fn hol_paced(env: &Env, p: Protocol, hp: &HolParams) -> Output {
    let mut out = Output::default();
    let epoch = Epoch::new();
    let Some((_client, mut conn)) = open(env, p, true, false, epoch, &mut out).await else {
        return out;
    };
    for _ in 0..env.warmup {
        let _ = conn.run(&[Request::bytes(hp.size)]).await;
    }
    let n = (hp.duration_ms / hp.interval_ms).max(1);
    let reqs: Vec<Request> = (0..n)
        .map(|i| Request::bytes(hp.size).at(Duration::from_millis(i * hp.interval_ms)))
        .collect();
    let recs = conn.run(&reqs).await;
    out.conn = Some(conn.info().clone());
    out.t0_mono_ns = epoch.mono_ns();
    out.keep_transport(&conn);
    conn.close().await;
    for r in &recs {
        match (r.ok(), r.total_ns()) {
            (true, Some(t)) => out.push("latency_ms", "ms", ms(t)),
            _ => out.fail(format!(
                "request {}: {}",
                r.index,
                r.error.clone().unwrap_or_else(|| "incomplete".into())
            )),
        }
    }
    out.records = recs;
    out
}

/// Browser-style HTTP/1.1: this many parallel connections.
pub const H1_PARALLEL_CONNECTIONS: usize = 6;

/// HOL (b): K objects requested at once; per-object completion and progress.
pub async fn hol_parallel(env: &Env, p: Protocol, hp: &HolParams) -> Output {
    let mut out = Output::default();
    let epoch = Epoch::new();
    let c = match client(env, p, true, true, epoch) {
        Ok(c) => c,
        Err(e) => {
            out.fail(e);
            return out;
        }
    };
    let k = hp.parallel_objects as usize;
    let nconn = if matches!(p, Protocol::H11 | Protocol::H11Tls) {
        H1_PARALLEL_CONNECTIONS.min(k.max(1))
    } else {
        1
    };
    let mut conns = Vec::new();
    for _ in 0..nconn {
        match c.connect().await {
            Ok(mut conn) => {
                for _ in 0..env.warmup {
                    let _ = conn.run(&[Request::bytes(1)]).await;
                }
                conns.push(conn)
            }
            Err(e) => out.fail(format!("connect: {e}")),
        }
    }
    if conns.is_empty() {
        return out;
    }
    out.notes.push(format!(
        "{} object(s) of {} B over {} connection(s)",
        k,
        hp.parallel_size,
        conns.len()
    ));
    // Round-robin the objects over the connections; each connection runs its
    // share with the protocol's own concurrency.
    let batch_start = epoch.now_ns();
    let nc = conns.len();
    let futs = conns.iter_mut().enumerate().map(|(ci, conn)| {
        let reqs: Vec<Request> = (0..k)
            .filter(|i| i % nc == ci)
            .map(|_| Request::bytes(hp.parallel_size))
            .collect();
        async move { (ci, conn.run(&reqs).await) }
    });
    let results = futures::future::join_all(futs).await;
    let mut all: Vec<(usize, RequestRecord)> = Vec::new();
    for (ci, recs) in results {
        for (j, r) in recs.into_iter().enumerate() {
            all.push((j * nc + ci, r));
        }
    }
    all.sort_by_key(|(i, _)| *i);
    let mut page = 0f64;
    for (obj, r) in &all {
        match (r.ok(), r.last_byte_ns) {
            (true, Some(lb)) => {
                let t = ms(lb.saturating_sub(batch_start));
                page = page.max(t);
                out.push("object_ms", "ms", t);
            }
            _ => out.fail(format!(
                "object {obj}: {}",
                r.error.clone().unwrap_or_else(|| "incomplete".into())
            )),
        }
        let series: Vec<(f64, f64)> = r
            .progress
            .iter()
            .map(|(t, b)| (ms(t.saturating_sub(batch_start)), *b as f64))
            .collect();
        out.timelines.insert(format!("object-{obj:03}"), series);
    }
    if out.failures == 0 {
        out.push("page_ms", "ms", page);
    }
    out.conn = conns.first().map(|c| c.info().clone());
    out.t0_mono_ns = epoch.mono_ns() + batch_start;
    for conn in conns {
        out.keep_transport(&conn);
        conn.close().await;
    }
    out.records = all.into_iter().map(|(_, r)| r).collect();
    out
}

/// Merge attempt progress into one (t_ns, cumulative bytes) series.
fn merged_progress(attempts: &[(u64, RequestRecord)]) -> Vec<(u64, u64)> {
    let mut series = Vec::new();
    for (base, r) in attempts {
        for (t, b) in &r.progress {
            series.push((*t, base + b));
        }
    }
    series.sort_unstable();
    series
}

/// Migration: a long transfer; at `at_ms` the link rebinds or the client migrates.
pub async fn migration(env: &Env, p: Protocol, kind: &str, mp: &MigrationParams) -> Output {
    let mut env = env.clone();
    env.stall_timeout = Some(Duration::from_millis(mp.stall_timeout_ms.max(1)));
    env.transport_sample = Some(TRANSPORT_SAMPLE);
    let env = &env;
    let mut out = Output::default();
    let epoch = Epoch::new();
    let Some((c, conn)) = open(env, p, true, true, epoch, &mut out).await else {
        return out;
    };
    let first_conn = conn.info().conn_id;
    out.conn = Some(conn.info().clone());
    let start = epoch.now_ns();
    out.t0_mono_ns = epoch.mono_ns() + start;
    // The event, on its own task, at its time.
    let event = spawn_event(
        env,
        kind,
        Duration::from_millis(mp.at_ms),
        conn.as_h3().map(|h| h.migrator()),
        epoch,
    );
    let mut attempts: Vec<(u64, RequestRecord)> = Vec::new();
    let mut got = 0u64;
    let mut reconnects = 0u32;
    let mut first = true;
    let mut conn_opt = Some(conn);
    let deadline = tokio::time::Instant::now() + env.timeout;
    while got < mp.size && tokio::time::Instant::now() < deadline {
        let mut cur = match conn_opt.take() {
            Some(cn) => cn,
            None => match c.connect().await {
                Ok(cn) => {
                    reconnects += 1;
                    cn
                }
                Err(e) => {
                    out.fail(format!("reconnect: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let req = if first {
            Request::bytes(mp.size)
        } else {
            Request::bytes(mp.size).range_from(got)
        };
        first = false;
        let recs = cur.run(&[req]).await;
        let Some(r) = recs.into_iter().next() else {
            break;
        };
        let ok = r.ok();
        let base = got;
        got += r.bytes;
        if !ok {
            out.notes.push(format!(
                "attempt {} broke after {} B: {}",
                attempts.len(),
                r.bytes,
                r.error.clone().unwrap_or_default()
            ));
        }
        attempts.push((base, r));
        out.keep_transport(&cur);
        if ok && got >= mp.size {
            cur.close().await;
            break;
        }
        // A broken TCP connection cannot be reused: drop it and start over with a Range request.
        drop(cur);
    }
    let (ev_ns, ev) = match event.await {
        Ok(v) => v,
        Err(e) => (0, Err(format!("event task: {e}"))),
    };
    let end_ns = attempts
        .iter()
        .filter_map(|(_, r)| r.last_byte_ns)
        .max()
        .unwrap_or_else(|| epoch.now_ns());
    match &ev {
        Ok(s) => out.notes.push(format!(
            "event at {:.1} ms: {s}",
            ms(ev_ns.saturating_sub(start))
        )),
        Err(e) => out.notes.push(format!("event failed: {e}")),
    }
    out.extra.insert("event".into(), serde_json::json!({"kind": kind, "t_ms": ms(ev_ns.saturating_sub(start)), "ok": ev.is_ok(), "detail": match &ev { Ok(s) => s.clone(), Err(e) => e.clone() }}));
    let complete = got >= mp.size;
    if ev.is_ok() && ev_ns >= end_ns {
        // The transfer was over before the event: nothing was tested.
        out.notes.push(format!(
            "the transfer ended {:.1} ms after its start, before the event at {:.1} ms: make `size` larger or `at_ms` smaller for this link",
            ms(end_ns.saturating_sub(start)),
            ms(ev_ns.saturating_sub(start))
        ));
        out.fail("migration event after the end of the transfer".into());
        out.records = attempts.into_iter().map(|(_, r)| r).collect();
        return out;
    }
    let same_conn = attempts.iter().all(|(_, r)| r.conn_id == first_conn) && reconnects == 0;
    out.push(
        "survived",
        "bool",
        if complete && same_conn { 1.0 } else { 0.0 },
    );
    out.push(
        "new_handshake",
        "bool",
        if reconnects > 0 { 1.0 } else { 0.0 },
    );
    out.push("completed", "bool", if complete { 1.0 } else { 0.0 });
    if complete {
        out.push("completion_ms", "ms", ms(end_ns.saturating_sub(start)));
    }
    let series = merged_progress(&attempts);
    out.timelines.insert(
        "bytes_vs_time".into(),
        series
            .iter()
            .map(|(t, b)| (ms(t.saturating_sub(start)), *b as f64))
            .collect(),
    );
    out.extra.insert(
        "event_t_ms".into(),
        serde_json::json!(ms(ev_ns.saturating_sub(start))),
    );
    if ev.is_ok() && ev_ns > 0 {
        let (gap, recovery) = disruption(&series, ev_ns, end_ns);
        out.push("disruption_ms", "ms", ms(gap));
        if let Some(r) = recovery {
            out.push("recovery_ms", "ms", ms(r));
        }
    }
    out.records = attempts.into_iter().map(|(_, r)| r).collect();
    out
}

/// The migration event on its own task, at `at` after now: NAT rebinding on the
/// link, or active migration of the HTTP/3 client. Returns (event time, what happened).
fn spawn_event(
    env: &Env,
    kind: &str,
    at: Duration,
    migrator: Option<quicbench_clients::h3::Migrator>,
    epoch: Epoch,
) -> tokio::task::JoinHandle<(u64, Result<String, String>)> {
    let rebind = env.rebind.clone();
    let kind = kind.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(at).await;
        let t = epoch.now_ns();
        let what = match kind.as_str() {
            "active" => match migrator {
                Some(m) => m
                    .migrate()
                    .map(|a| format!("client migrated to {a}"))
                    .map_err(|e| e.to_string()),
                None => Err("active migration needs HTTP/3".into()),
            },
            k => match rebind {
                Some(f) => f(k),
                None => Err("the link cannot rebind (no NAT on this backend)".into()),
            },
        };
        (t, what)
    })
}

/// Migration during a paced request stream: a small request every interval;
/// at `at_ms` the event. Requests broken by it are re-issued on a new
/// connection (TCP); each request's latency runs from its original scheduled
/// time, so the whole recovery shows up in the latencies around the event.
pub async fn migration_paced(env: &Env, p: Protocol, kind: &str, mp: &MigrationParams) -> Output {
    let mut env = env.clone();
    env.stall_timeout = Some(Duration::from_millis(mp.stall_timeout_ms.max(1)));
    env.transport_sample = Some(TRANSPORT_SAMPLE);
    let env = &env;
    let mut out = Output::default();
    let epoch = Epoch::new();
    let Some((c, conn)) = open(env, p, true, false, epoch, &mut out).await else {
        return out;
    };
    let first_conn = conn.info().conn_id;
    out.conn = Some(conn.info().clone());
    let interval = mp.paced_interval_ms.max(1);
    let n = (mp.paced_duration_ms / interval).max(1) as usize;
    let size = 1024u64;
    let start = epoch.now_ns();
    out.t0_mono_ns = epoch.mono_ns() + start;
    let scheduled: Vec<u64> = (0..n)
        .map(|i| start + i as u64 * interval * 1_000_000)
        .collect();
    let event = spawn_event(
        env,
        kind,
        Duration::from_millis(mp.at_ms),
        conn.as_h3().map(|h| h.migrator()),
        epoch,
    );
    let mut done: Vec<Option<RequestRecord>> = vec![None; n];
    let mut pending: Vec<usize> = (0..n).collect();
    let mut reconnects = 0u32;
    let deadline = tokio::time::Instant::now() + env.timeout;
    let mut current = Some(conn);
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        let mut cn = match current.take() {
            Some(cn) => cn,
            None => match c.connect().await {
                Ok(cn) => {
                    reconnects += 1;
                    cn
                }
                Err(e) => {
                    out.fail(format!("reconnect: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let now = epoch.now_ns();
        let reqs: Vec<Request> = pending
            .iter()
            .map(|&i| {
                Request::bytes(size).at(Duration::from_nanos(scheduled[i].saturating_sub(now)))
            })
            .collect();
        let recs = cn.run(&reqs).await;
        let mut still = Vec::new();
        let mut broken = false;
        for (&i, r) in pending.iter().zip(recs) {
            if r.ok() {
                done[i] = Some(r);
            } else {
                broken = true;
                still.push(i);
            }
        }
        pending = still;
        if broken {
            out.keep_transport(&cn);
            // A broken TCP connection cannot carry the rest: start over.
            drop(cn);
        } else {
            current = Some(cn);
        }
    }
    if let Some(cn) = current {
        out.keep_transport(&cn);
        cn.close().await;
    }
    let (ev_ns, ev) = event
        .await
        .unwrap_or_else(|e| (0, Err(format!("event task: {e}"))));
    out.extra.insert(
        "event".into(),
        serde_json::json!({"kind": kind, "t_ms": ms(ev_ns.saturating_sub(start)), "ok": ev.is_ok(),
            "detail": match &ev { Ok(s) => s.clone(), Err(e) => e.clone() }}),
    );
    let completed = pending.is_empty();
    let same = reconnects == 0 && done.iter().flatten().all(|r| r.conn_id == first_conn);
    out.push(
        "survived",
        "bool",
        if completed && same { 1.0 } else { 0.0 },
    );
    out.push(
        "new_handshake",
        "bool",
        if reconnects > 0 { 1.0 } else { 0.0 },
    );
    out.push("completed", "bool", if completed { 1.0 } else { 0.0 });
    out.push("unanswered", "requests", pending.len() as f64);
    let mut worst = 0f64;
    let mut series = Vec::new();
    for (i, r) in done.iter().enumerate() {
        if let Some(lb) = r.as_ref().and_then(|r| r.last_byte_ns) {
            let lat = ms(lb.saturating_sub(scheduled[i]));
            out.push("latency_ms", "ms", lat);
            series.push((ms(scheduled[i].saturating_sub(start)), lat));
            if scheduled[i] + 2 * interval * 1_000_000 >= ev_ns {
                worst = worst.max(lat);
            }
        }
    }
    // Disruption: the worst latency of a request scheduled from shortly before the event on.
    if ev.is_ok() {
        out.push("disruption_ms", "ms", worst);
    }
    out.timelines.insert("latency_vs_time".into(), series);
    out.records = done.into_iter().flatten().collect();
    out
}

/// Longest gap in delivered bytes from the last delivery before the event on,
/// and the time from the event until the trailing-window rate is back to 90% of
/// the pre-event rate (None if it never was). Pure: unit-tested.
pub fn disruption(series: &[(u64, u64)], ev_ns: u64, end_ns: u64) -> (u64, Option<u64>) {
    if series.is_empty() {
        return (end_ns.saturating_sub(ev_ns), None);
    }
    let before = series.iter().rposition(|(t, _)| *t <= ev_ns).unwrap_or(0);
    let mut gap = 0u64;
    let mut prev_t = series[before].0;
    let mut prev_b = series[before].1;
    for &(t, b) in &series[before..] {
        if b > prev_b {
            gap = gap.max(t.saturating_sub(prev_t));
            prev_t = t;
            prev_b = b;
        }
    }
    // A transfer that never resumed: the gap runs to the end.
    if prev_b == series[before].1 {
        gap = gap.max(end_ns.saturating_sub(series[before].0));
    }
    // Recovery: the pre-event rate over a window before the event.
    let bytes_at = |t: u64| -> u64 {
        match series.iter().rposition(|(st, _)| *st <= t) {
            Some(i) => series[i].1,
            None => 0,
        }
    };
    let window = 200_000_000u64.min(ev_ns.saturating_sub(series[0].0)).max(1);
    let pre = bytes_at(ev_ns).saturating_sub(bytes_at(ev_ns.saturating_sub(window))) as f64
        / window as f64;
    let mut recovery = None;
    if pre > 0.0 {
        for &(t, _) in series.iter().filter(|(t, _)| *t > ev_ns + window / 4) {
            let w = window.min(t - ev_ns);
            let rate = bytes_at(t).saturating_sub(bytes_at(t - w)) as f64 / w as f64;
            if rate >= 0.9 * pre {
                recovery = Some(t - ev_ns);
                break;
            }
        }
    }
    (gap, recovery)
}

/// Goodput: one object of N bytes on an established connection.
pub async fn goodput(env: &Env, p: Protocol, gp: &GoodputParams) -> Output {
    let mut env = env.clone();
    env.transport_sample = Some(TRANSPORT_SAMPLE);
    let env = &env;
    let mut out = Output::default();
    let epoch = Epoch::new();
    let Some((_client, mut conn)) = open(env, p, true, false, epoch, &mut out).await else {
        return out;
    };
    for _ in 0..env.warmup {
        let _ = conn.run(&[Request::bytes(1024)]).await;
    }
    let recs = conn.run(&[Request::bytes(gp.size)]).await;
    out.conn = Some(conn.info().clone());
    // The transfer's time zero: when its request was due.
    out.t0_mono_ns = epoch.mono_ns() + recs.first().map_or(0, |r| r.start_ns);
    // Right after the transfer: the connection's state at its end.
    out.keep_transport(&conn);
    conn.close().await;
    for r in &recs {
        match (r.ok(), r.total_ns()) {
            (true, Some(t)) if t > 0 => {
                let mbps = r.bytes as f64 * 8.0 / (t as f64 / 1e9) / 1e6;
                out.push("goodput_mbps", "Mbit/s", mbps);
                out.push("completion_ms", "ms", ms(t));
                if let Some(rate) = env.rate_bps {
                    out.push("rate_ratio", "fraction", mbps * 1e6 / rate as f64);
                }
            }
            _ => out.fail(format!(
                "transfer: {}",
                r.error.clone().unwrap_or_else(|| "incomplete".into())
            )),
        }
    }
    out.records = recs;
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    #[test]
    fn disruption_of_a_steady_transfer_is_its_sample_spacing() {
        // 1 MB/ms... every ms, event at 50 ms, no interruption.
        let s: Vec<(u64, u64)> = (0..100).map(|i| (i * M, i * 1000)).collect();
        let (gap, rec) = disruption(&s, 50 * M, 99 * M);
        assert_eq!(gap, M);
        assert!(rec.unwrap() <= 60 * M, "{rec:?}");
    }

    #[test]
    fn disruption_measures_the_stall() {
        // Steady to 50 ms, nothing until 350 ms, then steady again.
        let mut s: Vec<(u64, u64)> = (0..=50).map(|i| (i * M, i * 1000)).collect();
        s.extend((0..100).map(|i| ((350 + i) * M, 51_000 + i * 1000)));
        let (gap, rec) = disruption(&s, 50 * M, 449 * M);
        assert_eq!(gap, 300 * M);
        let rec = rec.unwrap();
        assert!((300 * M..=450 * M).contains(&rec), "{rec}");
    }

    #[test]
    fn never_resumed_gap_runs_to_the_end() {
        let s: Vec<(u64, u64)> = (0..=50).map(|i| (i * M, i * 1000)).collect();
        let (gap, rec) = disruption(&s, 50 * M, 1000 * M);
        assert_eq!(gap, 950 * M);
        assert_eq!(rec, None);
    }
}
