//! The workloads, run by a contract client (docs/endpoints.md) instead of
//! ours: each run is one process fetching a list of objects; its downloads
//! are checked byte for byte, its `QB_TIMINGS` (if any) give the
//! client-side times, and the cell's link gives the rest. Metric names and
//! units are those of our own workloads, so the same summary, comparisons
//! and charts hold both (docs/endpoints.md, "what is measured").

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicbench_netem::link::Link;
use quicbench_netem::{NetNs, RebindKind};
use quicbench_wire::{CongestionControl, Protocol};

use super::contract::{self, ClientEnv, Dirs, Object, Timing};
use super::process::Proc;
use super::Endpoint;
use crate::matrix::{GoodputParams, HandshakeParams, HolParams, MigrationParams};
use crate::workloads::names as n;
use crate::workloads::Output;

/// Everything a contract client's run needs from its cell.
pub struct Ctx<'a> {
    pub ns: &'a NetNs,
    pub endpoint: &'a Endpoint,
    pub protocol: Protocol,
    pub cc: Option<CongestionControl>,
    pub server: std::net::IpAddr,
    pub port: u16,
    pub ca: PathBuf,
    /// The cell's client directory; each run gets `run-<i>/` in it.
    pub dir: PathBuf,
    pub scripts: PathBuf,
    pub stop: Arc<AtomicBool>,
    /// The cell's deadline (`cell_timeout_s` from its start): every run of
    /// the client gets what is left of it, so a client that stalls costs a
    /// cell its time limit once, not once per run.
    pub deadline: Instant,
    pub rtt_ms: f64,
    pub rate_bps: Option<u64>,
}

/// What one run of the client is asked to do.
#[derive(Clone, Copy)]
struct Run<'a> {
    objects: &'a [Object],
    /// `QB_PARALLEL`.
    parallel: usize,
    resume: bool,
    early_data: bool,
    /// Stop the client when this is set (the caller's own reason).
    give_up: Option<&'a AtomicBool>,
}

impl<'a> Run<'a> {
    /// `objects` one after the other on a fresh session.
    fn of(objects: &'a [Object]) -> Run<'a> {
        Run {
            objects,
            parallel: 1,
            resume: false,
            early_data: false,
            give_up: None,
        }
    }
}

/// What one run of the client left.
#[derive(Debug)]
pub struct RunOut {
    /// Why it failed (exit status with stderr tail, or a wrong download).
    pub error: Option<String>,
    pub wall_ms: f64,
    pub timings: Vec<Timing>,
    /// Bytes of verified downloads.
    pub bytes: u64,
}

impl Ctx<'_> {
    /// Run `i` of the client (in `run-<i>/`), as `run` asks.
    fn run_objects(&self, i: usize, run: Run) -> RunOut {
        let Run {
            objects,
            parallel,
            resume,
            early_data,
            give_up,
        } = run;
        let session = self.session();
        let started = Instant::now();
        let fail = |e: String| RunOut {
            error: Some(e),
            wall_ms: started.elapsed().as_secs_f64() * 1e3,
            timings: Vec::new(),
            bytes: 0,
        };
        let dirs = match Dirs::create(self.dir.join(format!("run-{i}"))) {
            Ok(d) => d,
            Err(e) => return fail(format!("{e:#}")),
        };
        let env = ClientEnv {
            protocol: self.protocol,
            cc: self.cc,
            server: self.server,
            port: self.port,
            ca: &self.ca,
            objects,
            parallel,
            resume,
            early_data,
        };
        let mut vars = contract::client_vars(&env, &dirs, &self.scripts);
        // The session file outlives a run: the cell's, not the run's.
        for (k, v) in vars.iter_mut() {
            if k == "QB_SESSION_FILE" {
                *v = session.display().to_string();
            }
        }
        let Some(command) = self.endpoint.command.as_deref() else {
            return fail("not a contract endpoint".into());
        };
        let what = format!("client {}", self.endpoint.name);
        let mut p = match Proc::start(
            self.ns,
            &what,
            crate::cpu_use::CLIENT_PROCESS,
            command,
            &vars,
            &dirs.root,
            &dirs.out(),
        ) {
            Ok(p) => p,
            Err(e) => return fail(format!("{e:#}")),
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let status = p.wait(left.max(Duration::from_secs(1)), &self.stop, give_up);
        let wall_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut out = RunOut {
            error: None,
            wall_ms,
            timings: Vec::new(),
            bytes: 0,
        };
        match status {
            Err(e) => out.error = Some(e),
            Ok(s) if !s.success() => out.error = Some(p.exit_reason(s)),
            Ok(_) => {}
        }
        // Wrong bytes fail the run whatever the exit status said; a run
        // that failed already keeps its own reason.
        match contract::verify_downloads(&dirs.downloads(), objects) {
            Ok(b) => out.bytes = b,
            Err(e) if out.error.is_none() => out.error = Some(format!("{what}: {e}")),
            Err(_) => {}
        }
        match contract::read_timings(&dirs.timings()) {
            Ok(t) => out.timings = t,
            Err(e) if out.error.is_none() => out.error = Some(format!("{what}: timings: {e}")),
            Err(_) => {}
        }
        out
    }

    fn session(&self) -> PathBuf {
        self.dir.join("session.bin")
    }
}

/// The one object of the goodput and migration workloads.
pub fn one_object(size: u64) -> Vec<Object> {
    vec![Object {
        size,
        tag: "object".into(),
    }]
}

fn timing(t: &[Timing], index: usize) -> Option<&Timing> {
    t.iter().find(|x| x.index == index)
}

/// Handshake: `connections` runs, each a fresh process and connection
/// fetching one small object (resumed: after a warm-up run that stores the
/// ticket, each run resumes, with early data where the protocol has it).
pub fn handshake(c: &Ctx, mode: &str, hp: &HandshakeParams) -> Output {
    let mut out = Output::default();
    let resumed = mode == "resumed";
    let early = resumed && c.protocol == Protocol::H3;
    if crate::workloads::lost::Lost::of(mode).is_some() {
        // The link drops the first packet as for ours; the timer that
        // resends it is the third-party stack's own.
        out.notes.push(format!(
            "{mode}: no theory for {}: its retransmission timer is its own (the link's chosen_drops and retransmit_gap_ms show it)",
            c.endpoint.name
        ));
    } else if let Some(t) = c.protocol.theory_ttfb_rtt(early) {
        out.theory.insert("ttfb_rtt".into(), t);
    }
    let mut run = 0;
    if resumed {
        let warm = Object::numbered(hp.size, 0, 1);
        let r = c.run_objects(
            run,
            Run {
                resume: true,
                ..Run::of(&warm)
            },
        );
        run += 1;
        if let Some(e) = r.error {
            out.fail_cell(format!("warm-up run (for the ticket): {e}"));
            return out;
        }
        out.measured_from = Some(Instant::now());
    }
    let (mut resumed_n, mut early_n, mut timed) = (0u64, 0u64, 0u64);
    for i in 0..hp.connections as usize {
        let objs = Object::numbered(hp.size, i, 1);
        let r = c.run_objects(
            run,
            Run {
                resume: resumed,
                early_data: early,
                ..Run::of(&objs)
            },
        );
        run += 1;
        if let Some(e) = r.error {
            out.fail(format!("connection {i}: {e}"));
            continue;
        }
        out.push("process_ms", "ms", r.wall_ms);
        let Some(t) = timing(&r.timings, 0) else {
            continue;
        };
        timed += 1;
        if let Some(v) = t.connect_ms {
            out.push("connect_ms", "ms", v);
        }
        if c.protocol.uses_tls() {
            if let Some(v) = t.tls_ms {
                out.push("tls_ms", "ms", v);
            }
        }
        if let Some(v) = t.ttfb_ms {
            out.push("ttfb_ms", "ms", v);
            if c.rtt_ms > 0.0 {
                out.push("ttfb_rtt", "RTT", v / c.rtt_ms);
            }
        }
        if let Some(v) = t.total_ms {
            out.push("total_ms", "ms", v);
        }
        resumed_n += u64::from(t.resumed == Some(true));
        early_n += u64::from(t.early_data == Some(true));
    }
    if timed == 0 && out.failures == 0 {
        out.notes.push(format!(
            "client {} writes no timings: ttfb comes from the link only",
            c.endpoint.name
        ));
    }
    if timed > 0 {
        let n = timed as f64;
        if c.protocol.uses_tls() {
            out.push("resumed_share", "fraction", resumed_n as f64 / n);
        }
        if c.protocol == Protocol::H3 {
            out.push("zero_rtt_share", "fraction", early_n as f64 / n);
        }
    }
    out
}

/// Goodput: one run fetching the object on a fresh connection. The rate is
/// over the time from the connection being ready (`tls_ms`, or
/// `connect_ms` without TLS) to the last byte, as our client's object starts
/// on a ready connection; a client without timings gets the link's figure
/// only (`link_goodput_mbps`).
pub fn goodput(c: &Ctx, gp: &GoodputParams) -> Output {
    let mut out = Output::default();
    let objs = one_object(gp.size);
    let r = c.run_objects(0, Run::of(&objs));
    if let Some(e) = r.error {
        out.fail_cell(e);
        return out;
    }
    out.push("process_ms", "ms", r.wall_ms);
    let t = timing(&r.timings, 0);
    let ready = t.and_then(|t| t.tls_ms.or(t.connect_ms));
    match (t.and_then(|t| t.total_ms), ready) {
        (Some(total), Some(ready)) if total > ready => {
            let span = total - ready;
            let mbps = gp.size as f64 * 8.0 / (span / 1e3) / 1e6;
            out.push(n::GOODPUT_MBPS, "Mbit/s", mbps);
            out.push(n::COMPLETION_MS, "ms", span);
            if let Some(rate) = c.rate_bps {
                out.push(n::RATE_RATIO, "fraction", mbps * 1e6 / rate as f64);
            }
        }
        _ => out.notes.push(format!(
            "client {} reported no set-up and total time for the object: goodput from the link only",
            c.endpoint.name
        )),
    }
    out
}

/// Parallel objects: one run, `parallel_objects` requests at once. `page_ms`
/// is the last object's end less the connection's set-up (the earliest
/// `tls_ms`, or `connect_ms` without TLS), as our client's page starts on a
/// ready connection.
pub fn hol_parallel(c: &Ctx, hp: &HolParams) -> Output {
    let mut out = Output::default();
    let k = hp.parallel_objects.max(1) as usize;
    let objs = Object::numbered(hp.parallel_size, 0, k);
    let r = c.run_objects(
        0,
        Run {
            parallel: k,
            ..Run::of(&objs)
        },
    );
    if let Some(e) = r.error {
        out.fail_cell(e);
        return out;
    }
    out.push("process_ms", "ms", r.wall_ms);
    let setup = r
        .timings
        .iter()
        .filter_map(|t| t.tls_ms.or(t.connect_ms))
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b))));
    let ends: Vec<f64> = r.timings.iter().filter_map(|t| t.total_ms).collect();
    match (setup, ends.len() == k) {
        (Some(s), true) => {
            for e in &ends {
                out.push("object_ms", "ms", (e - s).max(0.0));
            }
            let last = ends.iter().copied().fold(0.0, f64::max);
            out.push("page_ms", "ms", (last - s).max(0.0));
        }
        _ => out.notes.push(format!(
            "client {} reported {} of {k} objects' times (or no set-up time): no page_ms",
            c.endpoint.name,
            ends.len()
        )),
    }
    out
}

/// Migration: one run fetching the object; when a quarter of it has crossed
/// the link toward the client, the link's NAT rebinds. A client that then
/// gets no byte for [`GIVE_UP_MIN_MS`] (or 5 × `stall_timeout_ms`) is
/// stopped: it did not survive. Survived: the run completed with every byte right (a contract client cannot say whether it
/// reconnected, so `survived` is `completed` here: docs/endpoints.md).
/// Disruption: the longest gap in bytes delivered to the client from the
/// event on, sampled on the link every 2 ms.
pub fn migration(c: &Ctx, link: &Link, kind: &str, mp: &MigrationParams) -> Output {
    let mut out = Output::default();
    let rk = match kind {
        "port" => RebindKind::Port,
        "address" => RebindKind::Address,
        other => {
            out.fail_cell(format!(
                "migration kind {other:?} needs quicbench's own client"
            ));
            return out;
        }
    };
    let objs = one_object(mp.size);
    let before = toward_client(link);
    let stop_watch = AtomicBool::new(false);
    let stalled = AtomicBool::new(false);
    let quarter = mp.size / 4;
    let give_up_ms = (5 * mp.stall_timeout_ms).max(GIVE_UP_MIN_MS) as f64;
    let (r, watched) = std::thread::scope(|s| {
        let h = s.spawn(|| watch(link, before, quarter, rk, give_up_ms, &stop_watch, &stalled));
        let r = c.run_objects(
            0,
            Run {
                give_up: Some(&stalled),
                ..Run::of(&objs)
            },
        );
        stop_watch.store(true, std::sync::atomic::Ordering::Relaxed);
        (r, h.join())
    });
    let Ok(w) = watched else {
        out.fail_cell("the link watcher panicked".into());
        return out;
    };
    let Some(ev) = w.event_ms else {
        let why = w
            .error
            .unwrap_or_else(|| "the transfer ended before a quarter of it crossed".into());
        out.fail_cell(format!("no rebinding: {why}"));
        return out;
    };
    out.extra.insert(
        "event".into(),
        serde_json::json!({"kind": kind, "t_ms": ev, "ok": true, "detail": w.detail,
            "measured_at": "link"}),
    );
    out.extra.insert("event_t_ms".into(), serde_json::json!(ev));
    let done = r.error.is_none();
    if stalled.load(std::sync::atomic::Ordering::Relaxed) {
        out.notes.push(format!(
            "no byte toward the client for {give_up_ms:.0} ms after the rebinding: stopped, did not survive"
        ));
    } else if let Some(e) = &r.error {
        out.notes.push(format!("after the rebinding: {e}"));
    }
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    out.push(n::SURVIVED, "bool", b(done));
    out.push(n::COMPLETED, "bool", b(done));
    if done {
        out.push(n::COMPLETION_MS, "ms", r.wall_ms);
        out.push(n::DISRUPTION_MS, "ms", w.gap_ms);
    }
    out.timelines.insert("bytes_vs_time".into(), w.series);
    out
}

/// What the link watcher saw of a migration run.
struct Watched {
    event_ms: Option<f64>,
    detail: String,
    error: Option<String>,
    /// Longest gap in delivered bytes after the event, ms.
    gap_ms: f64,
    /// (ms since the watch began, bytes delivered toward the client).
    series: Vec<(f64, f64)>,
}

/// Bytes that reached the client's namespace: payload of the flows the link
/// records (packets the NAT drops after a rebinding, sent to the old
/// binding, are not delivered), else the link model's delivered bytes
/// (kernel backend: no flow record; there the NAT drops are counted apart).
fn toward_client(link: &Link) -> u64 {
    match link.flows() {
        Some(f) => f
            .flows
            .iter()
            .filter(|f| f.client_in == quicbench_netem::flows::Side::ClientNs)
            .map(|f| f.down.delivered_payload_bytes)
            .sum(),
        None => link.counters().down.model.bytes_delivered,
    }
}

/// A contract client that gets no byte for this long after a rebinding
/// (at least 5 × `stall_timeout_ms`) did not survive it: it is stopped
/// rather than left to the cell's limit.
const GIVE_UP_MIN_MS: u64 = 5000;

fn watch(
    link: &Link,
    base: u64,
    quarter: u64,
    kind: RebindKind,
    give_up_ms: f64,
    stop: &AtomicBool,
    stalled: &AtomicBool,
) -> Watched {
    use std::sync::atomic::Ordering;
    let t0 = Instant::now();
    let mut w = Watched {
        event_ms: None,
        detail: String::new(),
        error: None,
        gap_ms: 0.0,
        series: Vec::new(),
    };
    let (mut last_bytes, mut last_change) = (0u64, 0.0f64);
    while !stop.load(Ordering::Relaxed) {
        let now = t0.elapsed().as_secs_f64() * 1e3;
        let bytes = toward_client(link).saturating_sub(base);
        if bytes != last_bytes || w.series.is_empty() {
            if w.series.len() < 5000 {
                w.series.push((now, bytes as f64));
            }
            if let Some(ev) = w.event_ms {
                w.gap_ms = w.gap_ms.max(now - last_change.max(ev));
            }
            last_bytes = bytes;
            last_change = now;
        }
        if let Some(ev) = w.event_ms {
            if now - last_change.max(ev) >= give_up_ms {
                w.gap_ms = w.gap_ms.max(now - last_change.max(ev));
                stalled.store(true, Ordering::Relaxed);
            }
        }
        if w.event_ms.is_none() && w.error.is_none() && bytes >= quarter.max(1) {
            match link.rebind_now(kind) {
                Ok(e) => {
                    w.event_ms = Some(now);
                    w.detail = e.to_string();
                }
                Err(e) => w.error = Some(e.to_string()),
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_lookup_is_by_index() {
        let t = vec![
            Timing {
                index: 1,
                ttfb_ms: Some(3.0),
                ..Timing::default()
            },
            Timing {
                index: 0,
                ttfb_ms: Some(2.0),
                ..Timing::default()
            },
        ];
        assert_eq!(timing(&t, 0).and_then(|t| t.ttfb_ms), Some(2.0));
        assert!(timing(&t, 2).is_none());
    }
}
