//! Migration: at `at_ms` the link's NAT rebinds the client (port or address)
//! or the HTTP/3 client migrates on its own, during a long transfer (bulk) or a
//! paced request stream. Both share one reconnect loop ([`drive`]) and one
//! accounting ([`account`]): nothing is written unless the event really
//! happened (the link logged the rebind and translated packets after it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quicbench_clients::{Client, Connection, Epoch, Request, RequestRecord};
use quicbench_netem::link::{Link, LinkError};
use quicbench_netem::RebindKind;
use quicbench_wire::Protocol;

use super::names as n;
use super::{ms, open, Env, Output, TRANSPORT_SAMPLE};
use crate::matrix::MigrationParams;

/// NAT counters that confirm a rebind did something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NatTally {
    pub translated_up: u64,
    pub translated_down: u64,
    pub dropped_no_mapping: u64,
}

/// The standing queue at the event (see `Link::standing_queue`): a QUIC
/// connection whose queue toward the old binding is flushed at the NAT loses
/// all of it, a cost of the buffer, not of migration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QueueAtEvent {
    pub down_packets: u64,
    pub down_wait_ms: f64,
    pub up_packets: u64,
    pub up_wait_ms: f64,
}

/// What the link did when asked to rebind.
#[derive(Debug, Clone)]
pub struct Rebound {
    pub detail: String,
    /// The event's generation in the link's own log.
    pub generation: u32,
    pub queue: Option<QueueAtEvent>,
    /// NAT counters just before the rebind.
    pub before: NatTally,
}

/// Why a rebind did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RebindError {
    #[error("the link cannot rebind: {0}")]
    Unsupported(String),
    #[error("the rebind failed: {0}")]
    Failed(String),
}

/// The link as the migration workload sees it (implemented by `Link`; tests
/// use fakes).
pub trait LinkControl: Send + Sync {
    fn rebind(&self, kind: RebindKind) -> Result<Rebound, RebindError>;
    /// Whether the link's log holds the rebind of this generation.
    fn logged(&self, generation: u32) -> bool;
    fn nat_tally(&self) -> NatTally;
    /// Arm (drop) or disarm (only count) the link's `drop-nth` (the
    /// handshake's lost-flight modes spare warm-up connections): Ok(false)
    /// when the link has none, Err when it cannot be switched.
    fn arm_chosen_drops(&self, _armed: bool) -> Result<bool, String> {
        Err("this link cannot switch its chosen drops".into())
    }
}

fn tally(l: &Link) -> NatTally {
    let c = l.counters().nat;
    NatTally {
        translated_up: c.translated_up,
        translated_down: c.translated_down,
        dropped_no_mapping: c.dropped_no_mapping,
    }
}

impl LinkControl for Link {
    fn rebind(&self, kind: RebindKind) -> Result<Rebound, RebindError> {
        let before = tally(self);
        let queue = self.standing_queue().map(|q| QueueAtEvent {
            down_packets: q.down.packets,
            down_wait_ms: ms(q.down.wait_ns),
            up_packets: q.up.packets,
            up_wait_ms: ms(q.up.wait_ns),
        });
        match self.rebind_now(kind) {
            Ok(ev) => Ok(Rebound {
                detail: ev.to_string(),
                generation: ev.generation,
                queue,
                before,
            }),
            Err(LinkError::Unsupported(s)) => Err(RebindError::Unsupported(s)),
            Err(e) => Err(RebindError::Failed(e.to_string())),
        }
    }
    fn logged(&self, generation: u32) -> bool {
        self.rebind_events()
            .iter()
            .any(|e| e.generation == generation)
    }
    fn nat_tally(&self) -> NatTally {
        tally(self)
    }
    fn arm_chosen_drops(&self, armed: bool) -> Result<bool, String> {
        Link::arm_chosen_drops(self, armed).map_err(|e| e.to_string())
    }
}

impl<T: LinkControl + ?Sized> LinkControl for Arc<T> {
    fn rebind(&self, kind: RebindKind) -> Result<Rebound, RebindError> {
        (**self).rebind(kind)
    }
    fn logged(&self, generation: u32) -> bool {
        (**self).logged(generation)
    }
    fn arm_chosen_drops(&self, armed: bool) -> Result<bool, String> {
        (**self).arm_chosen_drops(armed)
    }
    fn nat_tally(&self) -> NatTally {
        (**self).nat_tally()
    }
}

/// What happened at the event, as the client saw it.
#[derive(Debug, Clone)]
enum Happened {
    Rebind(Rebound),
    Active(SocketAddr),
}

/// The event on its own task, at `at` after now. Returns (event time, what happened).
fn spawn_event(
    env: &Env,
    kind: &str,
    at: Duration,
    migrator: Option<quicbench_clients::h3::Migrator>,
    epoch: Epoch,
) -> tokio::task::JoinHandle<(u64, Result<Happened, String>)> {
    let link = env.link.clone();
    let kind = kind.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(at).await;
        let t = epoch.now_ns();
        let what = match kind.as_str() {
            "active" => match migrator {
                Some(m) => m.migrate().map(Happened::Active).map_err(|e| e.to_string()),
                None => Err("active migration needs HTTP/3".into()),
            },
            k => {
                let rk = match k {
                    "address" => RebindKind::Address,
                    _ => RebindKind::Port,
                };
                match &link {
                    Some(l) => l
                        .rebind(rk)
                        .map(Happened::Rebind)
                        .map_err(|e| e.to_string()),
                    None => Err(RebindError::Unsupported("no NAT on this link".into()).to_string()),
                }
            }
        };
        (t, what)
    })
}

/// A confirmed event: (detail, queue at the event, NAT drops after it).
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    pub detail: String,
    pub queue: Option<QueueAtEvent>,
    pub nat_dropped: Option<u64>,
}

/// Whether the event really happened: a rebind must be in the link's log and
/// packets must have been translated after it (else the flow never crossed
/// the new binding); an active migration must have moved the socket.
fn confirm(
    what: &Result<Happened, String>,
    link: Option<&dyn LinkControl>,
) -> Result<Confirmed, String> {
    match what {
        Err(e) => Err(format!("migration event did not happen: {e}")),
        Ok(Happened::Active(a)) => Ok(Confirmed {
            detail: format!("client migrated to {a}"),
            queue: None,
            nat_dropped: None,
        }),
        Ok(Happened::Rebind(r)) => {
            let Some(link) = link else {
                return Err("migration event not confirmed: no link to ask".into());
            };
            if !link.logged(r.generation) {
                return Err(format!(
                    "migration event not confirmed: rebind #{} is not in the link's log",
                    r.generation
                ));
            }
            let after = link.nat_tally();
            let up = after.translated_up.saturating_sub(r.before.translated_up);
            if up == 0 {
                return Err(format!(
                    "migration event not confirmed: the link translated no packet after rebind #{} ({})",
                    r.generation, r.detail
                ));
            }
            let down = after
                .translated_down
                .saturating_sub(r.before.translated_down);
            Ok(Confirmed {
                detail: format!(
                    "{} ({up} packets translated up, {down} down after it)",
                    r.detail
                ),
                queue: r.queue,
                nat_dropped: Some(
                    after
                        .dropped_no_mapping
                        .saturating_sub(r.before.dropped_no_mapping),
                ),
            })
        }
    }
}

/// One new connection after a break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// The connect that succeeded started here...
    pub start_ns: u64,
    /// ...and was ready here.
    pub ready_ns: u64,
}

/// What the reconnect loop saw.
#[derive(Debug, Default)]
struct DriveLog {
    reconnects: Vec<Reconnect>,
    /// When a connection was found broken.
    breaks: Vec<u64>,
}

/// What a batch of records means for the connection that carried them.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Usable for more.
    Ok,
    /// Broken: a new connection must carry the rest.
    Broken,
    /// Nothing more can be done.
    Stop,
}

/// The work of a migration cell, re-issued over new connections until done.
trait Work {
    fn done(&self) -> bool;
    fn next_batch(&mut self, now_ns: u64) -> Vec<Request>;
    fn absorb(&mut self, recs: Vec<RequestRecord>) -> Step;
}

/// The shared reconnect loop: run the work on `conn`; when a connection
/// breaks (TCP after a rebinding), open a new one and go on, until the work is
/// done or the cell's time is up.
async fn drive(
    c: &Client,
    conn: Connection,
    work: &mut dyn Work,
    env: &Env,
    epoch: Epoch,
    out: &mut Output,
) -> DriveLog {
    let mut log = DriveLog::default();
    let deadline = tokio::time::Instant::now() + env.timeout;
    let mut current = Some(conn);
    while !work.done() && tokio::time::Instant::now() < deadline {
        let mut cn = match current.take() {
            Some(cn) => cn,
            None => {
                let start_ns = epoch.now_ns();
                match c.connect().await {
                    Ok(cn) => {
                        log.reconnects.push(Reconnect {
                            start_ns,
                            ready_ns: epoch.now_ns(),
                        });
                        cn
                    }
                    Err(e) => {
                        out.fail(format!("reconnect: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
        };
        let reqs = work.next_batch(epoch.now_ns());
        let recs = cn.run(&reqs).await;
        match work.absorb(recs) {
            Step::Ok => current = Some(cn),
            // A broken TCP connection cannot be reused: drop it, start over.
            Step::Broken => {
                out.keep_transport(&cn);
                log.breaks.push(epoch.now_ns());
            }
            Step::Stop => break,
        }
    }
    if let Some(cn) = current {
        out.keep_transport(&cn);
        cn.close().await;
    }
    log
}

/// Bulk: one object, resumed with a Range request after a break.
struct Bulk {
    size: u64,
    got: u64,
    attempts: Vec<(u64, RequestRecord)>,
}

impl Work for Bulk {
    fn done(&self) -> bool {
        self.got >= self.size
    }
    fn next_batch(&mut self, _now: u64) -> Vec<Request> {
        if self.attempts.is_empty() {
            vec![Request::bytes(self.size)]
        } else {
            vec![Request::bytes(self.size).range_from(self.got)]
        }
    }
    fn absorb(&mut self, recs: Vec<RequestRecord>) -> Step {
        let Some(r) = recs.into_iter().next() else {
            return Step::Stop;
        };
        let ok = r.ok();
        let base = self.got;
        self.got += r.bytes;
        self.attempts.push((base, r));
        if ok && self.done() {
            Step::Ok
        } else {
            Step::Broken
        }
    }
}

/// Paced: small requests at fixed times; broken ones re-issued keep their
/// original scheduled time.
struct Paced {
    size: u64,
    scheduled: Vec<u64>,
    done: Vec<Option<RequestRecord>>,
    pending: Vec<usize>,
}

impl Work for Paced {
    fn done(&self) -> bool {
        self.pending.is_empty()
    }
    fn next_batch(&mut self, now: u64) -> Vec<Request> {
        self.pending
            .iter()
            .map(|&i| {
                Request::bytes(self.size)
                    .at(Duration::from_nanos(self.scheduled[i].saturating_sub(now)))
            })
            .collect()
    }
    fn absorb(&mut self, recs: Vec<RequestRecord>) -> Step {
        if recs.is_empty() {
            return Step::Stop;
        }
        let mut still = Vec::new();
        let mut recs = recs.into_iter();
        // A request without a record is still pending (not silently dropped).
        for &i in &self.pending {
            match recs.next() {
                Some(r) if r.ok() => self.done[i] = Some(r),
                _ => still.push(i),
            }
        }
        let broken = !still.is_empty();
        self.pending = still;
        if broken {
            Step::Broken
        } else {
            Step::Ok
        }
    }
}

/// TCP's recovery in parts (times in ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRecovery {
    /// Event → the client gave up on the connection (a stall: the stall
    /// timeout, a parameter; a reset: about a round trip).
    pub detect_ns: Option<u64>,
    /// Gave up → a new connection ready (failed attempts included).
    pub reconnect_ns: Option<u64>,
    /// New connection ready → first byte of the resumed response.
    pub resume_ns: Option<u64>,
}

/// What the accounting needs, gathered from one cell (pure data: unit-tested).
#[derive(Debug, Clone)]
pub struct Facts {
    /// The event, confirmed by the link, or why not.
    pub event: Result<Confirmed, String>,
    pub ev_ns: u64,
    pub start_ns: u64,
    /// Last byte of the work (or now, if nothing arrived).
    pub end_ns: u64,
    pub complete: bool,
    pub first_conn: u64,
    /// Every successful record, each with its connection.
    pub records: Vec<RequestRecord>,
    pub reconnects: Vec<Reconnect>,
    pub breaks: Vec<u64>,
}

/// The outcome metrics of a migration cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub survived: bool,
    pub new_handshake: bool,
    pub completed: bool,
    pub completion_ns: Option<u64>,
    pub tcp: Option<TcpRecovery>,
    pub confirmed: Confirmed,
}

/// The accounting of a migration cell: Err (the cell fails with this reason,
/// no metric is written) unless the event was confirmed and happened while
/// the work was still running.
pub fn account(f: &Facts) -> Result<Outcome, String> {
    let confirmed = f.event.clone()?;
    if f.ev_ns >= f.end_ns {
        return Err(format!(
            "migration event after the end of the transfer: it ended {:.1} ms after its start, the event came at {:.1} ms; make `size` larger or `at_ms` smaller for this link",
            ms(f.end_ns.saturating_sub(f.start_ns)),
            ms(f.ev_ns.saturating_sub(f.start_ns))
        ));
    }
    let same_conn = f.records.iter().all(|r| r.conn_id == f.first_conn);
    let new_handshake = !f.reconnects.is_empty();
    let tcp = f.reconnects.first().map(|rc| {
        let brk = f.breaks.iter().copied().find(|b| *b >= f.ev_ns);
        let resumed = f
            .records
            .iter()
            .filter_map(|r| r.first_byte_ns)
            .filter(|t| *t >= rc.ready_ns)
            .min();
        TcpRecovery {
            detect_ns: brk.map(|b| b - f.ev_ns),
            reconnect_ns: brk.map(|b| rc.ready_ns.saturating_sub(b)),
            resume_ns: resumed.map(|t| t - rc.ready_ns),
        }
    });
    Ok(Outcome {
        survived: f.complete && same_conn && !new_handshake,
        new_handshake,
        completed: f.complete,
        completion_ns: f.complete.then(|| f.end_ns.saturating_sub(f.start_ns)),
        tcp,
        confirmed,
    })
}

/// Write the outcome (or fail the cell) and the event record: one place for
/// bulk and paced cells.
fn report(out: &mut Output, kind: &str, f: &Facts, stall_timeout_ms: u64) -> Option<Outcome> {
    let t_ms = ms(f.ev_ns.saturating_sub(f.start_ns));
    let o = match account(f) {
        Ok(o) => o,
        Err(reason) => {
            out.extra.insert(
                "event".into(),
                serde_json::json!({"kind": kind, "t_ms": t_ms, "ok": false, "detail": reason}),
            );
            out.fail_cell(reason);
            return None;
        }
    };
    let c = &o.confirmed;
    out.notes
        .push(format!("event at {t_ms:.1} ms: {}", c.detail));
    out.extra.insert(
        "event".into(),
        serde_json::json!({"kind": kind, "t_ms": t_ms, "ok": true, "detail": c.detail,
            "queue": c.queue, "nat_dropped": c.nat_dropped, "stall_timeout_ms": stall_timeout_ms}),
    );
    out.extra
        .insert("event_t_ms".into(), serde_json::json!(t_ms));
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    out.push(n::SURVIVED, "bool", b(o.survived));
    out.push(n::NEW_HANDSHAKE, "bool", b(o.new_handshake));
    out.push(n::COMPLETED, "bool", b(o.completed));
    if let Some(t) = o.completion_ns {
        out.push(n::COMPLETION_MS, "ms", ms(t));
    }
    if let Some(t) = &o.tcp {
        for (name, v) in [
            (n::DETECT_MS, t.detect_ns),
            (n::RECONNECT_MS, t.reconnect_ns),
            (n::RESUME_MS, t.resume_ns),
        ] {
            if let Some(v) = v {
                out.push(name, "ms", ms(v));
            }
        }
    }
    if let Some(q) = &c.queue {
        out.push(n::QUEUE_AT_EVENT_PACKETS, "packets", q.down_packets as f64);
        out.push(n::QUEUE_AT_EVENT_MS, "ms", q.down_wait_ms);
    }
    if let Some(d) = c.nat_dropped {
        out.push(n::NAT_DROPPED_PACKETS, "packets", d as f64);
    }
    Some(o)
}

/// Set up a migration cell: the stall timeout, the client and its first
/// connection, and the event's task.
struct Setup {
    env: Env,
    epoch: Epoch,
    client: Client,
    first_conn: u64,
    start: u64,
    event: tokio::task::JoinHandle<(u64, Result<Happened, String>)>,
}

async fn setup(
    env: &Env,
    p: Protocol,
    kind: &str,
    mp: &MigrationParams,
    progress: bool,
    out: &mut Output,
) -> Option<(Setup, Connection)> {
    let mut env = env.clone();
    env.stall_timeout = Some(Duration::from_millis(mp.stall_timeout_ms.max(1)));
    env.transport_sample = Some(TRANSPORT_SAMPLE);
    let epoch = Epoch::new();
    let (client, conn) = open(&env, p, true, progress, epoch, out).await?;
    let first_conn = conn.info().conn_id;
    out.conn = Some(conn.info().clone());
    let start = epoch.now_ns();
    out.t0_mono_ns = epoch.mono_ns() + start;
    let event = spawn_event(
        &env,
        kind,
        Duration::from_millis(mp.at_ms),
        conn.as_h3().map(|h| h.migrator()),
        epoch,
    );
    Some((
        Setup {
            env,
            epoch,
            client,
            first_conn,
            start,
            event,
        },
        conn,
    ))
}

async fn event_result(
    s: Setup,
    log: DriveLog,
) -> (
    u64,
    Result<Confirmed, String>,
    u64,
    Vec<Reconnect>,
    Vec<u64>,
) {
    let (ev_ns, what) = match s.event.await {
        Ok(v) => v,
        Err(e) => (0, Err(format!("event task: {e}"))),
    };
    let confirmed = confirm(&what, s.env.link.as_deref());
    (ev_ns, confirmed, s.start, log.reconnects, log.breaks)
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

/// Migration during a long transfer (`size`); at `at_ms` the event.
pub async fn migration(env: &Env, p: Protocol, kind: &str, mp: &MigrationParams) -> Output {
    let mut out = Output::default();
    let Some((s, conn)) = setup(env, p, kind, mp, true, &mut out).await else {
        return out;
    };
    let mut work = Bulk {
        size: mp.size,
        got: 0,
        attempts: Vec::new(),
    };
    let log = drive(&s.client, conn, &mut work, &s.env, s.epoch, &mut out).await;
    for (i, (_, r)) in work.attempts.iter().enumerate() {
        if !r.ok() {
            out.notes.push(format!(
                "attempt {i} broke after {} B: {}",
                r.bytes,
                r.error.clone().unwrap_or_default()
            ));
        }
    }
    let (first_conn, epoch) = (s.first_conn, s.epoch);
    let (ev_ns, event, start, reconnects, breaks) = event_result(s, log).await;
    let end_ns = work
        .attempts
        .iter()
        .filter_map(|(_, r)| r.last_byte_ns)
        .max()
        .unwrap_or_else(|| epoch.now_ns());
    let series = merged_progress(&work.attempts);
    out.timelines.insert(
        "bytes_vs_time".into(),
        series
            .iter()
            .map(|(t, b)| (ms(t.saturating_sub(start)), *b as f64))
            .collect(),
    );
    let facts = Facts {
        event,
        ev_ns,
        start_ns: start,
        end_ns,
        complete: work.done(),
        first_conn,
        records: work.attempts.iter().map(|(_, r)| r.clone()).collect(),
        reconnects,
        breaks,
    };
    if report(&mut out, kind, &facts, mp.stall_timeout_ms).is_some() {
        let (gap, recovery) = disruption(&series, ev_ns, end_ns);
        out.push(n::DISRUPTION_MS, "ms", ms(gap));
        if let Some(r) = recovery {
            out.push(n::RECOVERY_MS, "ms", ms(r));
        }
    }
    out.records = work.attempts.into_iter().map(|(_, r)| r).collect();
    out
}

/// Migration during a paced request stream: a small request every interval;
/// at `at_ms` the event. Requests broken by it are re-issued on a new
/// connection (TCP); each request's latency runs from its original scheduled
/// time, so the whole recovery shows up in the latencies around the event.
pub async fn migration_paced(env: &Env, p: Protocol, kind: &str, mp: &MigrationParams) -> Output {
    let mut out = Output::default();
    let Some((s, conn)) = setup(env, p, kind, mp, false, &mut out).await else {
        return out;
    };
    let interval = mp.paced_interval_ms.max(1);
    let count = (mp.paced_duration_ms / interval).max(1) as usize;
    let scheduled: Vec<u64> = (0..count)
        .map(|i| s.start + i as u64 * interval * 1_000_000)
        .collect();
    let mut work = Paced {
        size: 1024,
        scheduled: scheduled.clone(),
        done: vec![None; count],
        pending: (0..count).collect(),
    };
    let log = drive(&s.client, conn, &mut work, &s.env, s.epoch, &mut out).await;
    let (first_conn, epoch) = (s.first_conn, s.epoch);
    let (ev_ns, event, start, reconnects, breaks) = event_result(s, log).await;
    let records: Vec<RequestRecord> = work.done.iter().flatten().cloned().collect();
    let end_ns = records
        .iter()
        .filter_map(|r| r.last_byte_ns)
        .max()
        .unwrap_or_else(|| epoch.now_ns());
    let mut worst = 0f64;
    let mut series = Vec::new();
    let mut latencies = Vec::new();
    for (i, r) in work.done.iter().enumerate() {
        if let Some(lb) = r.as_ref().and_then(|r| r.last_byte_ns) {
            let lat = ms(lb.saturating_sub(scheduled[i]));
            latencies.push(lat);
            series.push((ms(scheduled[i].saturating_sub(start)), lat));
            if scheduled[i] + 2 * interval * 1_000_000 >= ev_ns {
                worst = worst.max(lat);
            }
        }
    }
    out.timelines.insert("latency_vs_time".into(), series);
    let facts = Facts {
        event,
        ev_ns,
        start_ns: start,
        end_ns,
        complete: work.done(),
        first_conn,
        records,
        reconnects,
        breaks,
    };
    if report(&mut out, kind, &facts, mp.stall_timeout_ms).is_some() {
        out.push(n::UNANSWERED, "requests", work.pending.len() as f64);
        for l in latencies {
            out.push(n::LATENCY_MS, "ms", l);
        }
        // Disruption: the worst latency of a request scheduled from shortly before the event on.
        out.push(n::DISRUPTION_MS, "ms", worst);
    }
    out.records = facts.records;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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

    fn rec(conn: u64, first: u64, last: u64, bytes: u64) -> RequestRecord {
        let mut r = RequestRecord::new(0, "/bytes/1", conn, first.saturating_sub(M));
        r.status = Some(200);
        r.first_byte_ns = Some(first);
        r.last_byte_ns = Some(last);
        r.bytes = bytes;
        r
    }

    fn confirmed() -> Result<Confirmed, String> {
        Ok(Confirmed {
            detail: "rebind #1".into(),
            queue: None,
            nat_dropped: Some(0),
        })
    }

    /// One connection, the whole object, the event in the middle.
    fn quic_like(event: Result<Confirmed, String>) -> Facts {
        Facts {
            event,
            ev_ns: 500 * M,
            start_ns: 0,
            end_ns: 1500 * M,
            complete: true,
            first_conn: 0,
            records: vec![rec(0, 20 * M, 1500 * M, 1000)],
            reconnects: vec![],
            breaks: vec![],
        }
    }

    #[test]
    fn a_failed_rebind_is_not_survival_but_a_failed_cell() {
        // Today's code pushed survived = 1 here: one connection, complete.
        let f = quic_like(Err("the link cannot rebind: kernel backend".into()));
        let e = account(&f).unwrap_err();
        assert!(e.contains("cannot rebind"), "{e}");
    }

    #[test]
    fn a_confirmed_event_on_one_connection_survives() {
        let o = account(&quic_like(confirmed())).unwrap();
        assert!(o.survived && o.completed && !o.new_handshake);
        assert_eq!(o.completion_ns, Some(1500 * M));
        assert_eq!(o.tcp, None);
    }

    #[test]
    fn an_event_after_the_transfer_tested_nothing() {
        let mut f = quic_like(confirmed());
        f.ev_ns = 2000 * M;
        assert!(account(&f).unwrap_err().contains("after the end"));
    }

    #[test]
    fn tcp_recovery_in_parts() {
        // Event at 500 ms; the stall timeout fires at 1510 ms; the new
        // connection is ready at 1560 ms; the Range response's first byte at
        // 1585 ms.
        let f = Facts {
            event: confirmed(),
            ev_ns: 500 * M,
            start_ns: 0,
            end_ns: 3000 * M,
            complete: true,
            first_conn: 0,
            records: vec![
                rec(0, 20 * M, 510 * M, 400),
                rec(1, 1585 * M, 3000 * M, 600),
            ],
            reconnects: vec![Reconnect {
                start_ns: 1515 * M,
                ready_ns: 1560 * M,
            }],
            breaks: vec![1510 * M],
        };
        let o = account(&f).unwrap();
        assert!(!o.survived && o.new_handshake && o.completed);
        let t = o.tcp.unwrap();
        assert_eq!(t.detect_ns, Some(1010 * M));
        assert_eq!(t.reconnect_ns, Some(50 * M));
        assert_eq!(t.resume_ns, Some(25 * M));
    }

    #[test]
    fn a_second_connection_without_a_reconnect_is_not_survival() {
        let mut f = quic_like(confirmed());
        f.records.push(rec(7, 600 * M, 700 * M, 10));
        let o = account(&f).unwrap();
        assert!(!o.survived);
    }

    #[test]
    fn paced_work_keeps_broken_and_missing_requests_pending() {
        let mut w = Paced {
            size: 1024,
            scheduled: vec![0, 20 * M, 40 * M],
            done: vec![None; 3],
            pending: vec![0, 1, 2],
        };
        let mut broken = rec(0, 30 * M, 31 * M, 1024);
        broken.error = Some("reset".into());
        // Request 0 answered, 1 broken, 2 has no record at all.
        assert_eq!(
            w.absorb(vec![rec(0, 5 * M, 6 * M, 1024), broken]),
            Step::Broken
        );
        assert_eq!(w.pending, vec![1, 2]);
        // Re-issued at their original times.
        let again = w.next_batch(30 * M);
        assert_eq!(again[0].at, Some(Duration::ZERO));
        assert_eq!(again[1].at, Some(Duration::from_millis(10)));
        assert_eq!(
            w.absorb(vec![rec(1, 45 * M, 46 * M, 1), rec(1, 50 * M, 51 * M, 1)]),
            Step::Ok
        );
        assert!(w.done());
    }

    #[test]
    fn bulk_work_resumes_with_a_range_after_a_break() {
        let mut w = Bulk {
            size: 1000,
            got: 0,
            attempts: Vec::new(),
        };
        assert_eq!(w.next_batch(0)[0].range_from, None);
        let mut cut = rec(0, M, 2 * M, 400);
        cut.error = Some("stalled".into());
        assert_eq!(w.absorb(vec![cut]), Step::Broken);
        assert_eq!(w.next_batch(0)[0].range_from, Some(400));
        assert_eq!(w.absorb(vec![rec(1, 3 * M, 4 * M, 600)]), Step::Ok);
        assert!(w.done());
        assert_eq!(w.absorb(vec![]), Step::Stop);
    }

    struct FakeLink {
        logged: bool,
        tally: Mutex<NatTally>,
    }
    impl LinkControl for FakeLink {
        fn rebind(&self, _k: RebindKind) -> Result<Rebound, RebindError> {
            Err(RebindError::Unsupported("fake".into()))
        }
        fn logged(&self, _g: u32) -> bool {
            self.logged
        }
        fn nat_tally(&self) -> NatTally {
            *self.tally.lock().unwrap()
        }
    }

    fn rebound() -> Result<Happened, String> {
        Ok(Happened::Rebind(Rebound {
            detail: "rebind #1 (port)".into(),
            generation: 1,
            queue: Some(QueueAtEvent {
                down_packets: 1000,
                down_wait_ms: 600.0,
                up_packets: 3,
                up_wait_ms: 0.0,
            }),
            before: NatTally::default(),
        }))
    }

    #[test]
    fn a_rebind_is_confirmed_only_by_the_log_and_translated_packets() {
        let tally = |up, down, drop| {
            Mutex::new(NatTally {
                translated_up: up,
                translated_down: down,
                dropped_no_mapping: drop,
            })
        };
        let l = FakeLink {
            logged: true,
            tally: tally(0, 0, 5),
        };
        let e = confirm(&rebound(), Some(&l)).unwrap_err();
        assert!(e.contains("translated no packet"), "{e}");
        let l = FakeLink {
            logged: false,
            tally: tally(10, 10, 0),
        };
        assert!(confirm(&rebound(), Some(&l)).unwrap_err().contains("log"));
        let l = FakeLink {
            logged: true,
            tally: tally(10, 8, 467),
        };
        let c = confirm(&rebound(), Some(&l)).unwrap();
        assert_eq!(c.nat_dropped, Some(467));
        assert_eq!(c.queue.map(|q| q.down_packets), Some(1000));
        assert!(confirm(&rebound(), None).is_err());
        assert!(confirm(&Err("refused".into()), Some(&l)).is_err());
    }

    #[test]
    fn failed_cell_keeps_no_metric() {
        let mut out = Output::default();
        out.push(n::LATENCY_MS, "ms", 1.0);
        let f = quic_like(Err("the link cannot rebind".into()));
        assert!(report(&mut out, "port", &f, 1000).is_none());
        assert!(out.metrics.is_empty());
        assert_eq!(
            out.notes.first().map(|s| s.as_str()),
            Some("the link cannot rebind")
        );
        assert_eq!(out.failures, 1);
    }
}
