//! Head-of-line blocking: paced small requests (latency under loss against a
//! lossless baseline that never queues) and K objects at once (a page).

use std::time::Duration;

use quicbench_clients::{Connection, Epoch, Request, RequestRecord};
use quicbench_wire::Protocol;

use super::names as n;
use super::{client, ms, Env, Output};
use crate::matrix::HolParams;

/// Browser-style HTTP/1.x: this many parallel connections.
pub const H1_PARALLEL_CONNECTIONS: usize = 6;

/// Each connection of a one-request-at-a-time protocol is kept at most this
/// busy (its lossless service time ÷ the time between its requests): a
/// lossless run then never queues, so the loss-free baseline is the service
/// time itself, and under loss there is room to catch up.
pub const MAX_LANE_LOAD: f64 = 0.5;

/// HTTP/1.0 and HTTP/1.1 keep-alive carry one request at a time per
/// connection: a request due while another is in flight waits.
fn sequential(p: Protocol) -> bool {
    matches!(
        p,
        Protocol::H10 | Protocol::H10Tls | Protocol::H11 | Protocol::H11Tls
    )
}

/// Round trips one small request costs on an idle connection, without loss:
/// HTTP/1.0 opens its own connection (TCP, then TLS 1.3: a resumed session
/// saves no round trip without early data).
fn service_rtts(p: Protocol) -> f64 {
    match p {
        Protocol::H10 => 2.0,
        Protocol::H10Tls => 3.0,
        _ => 1.0,
    }
}

/// How a paced cell runs for one protocol on one link (kept in the cell's
/// `extra.hol_plan`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PacedPlan {
    /// Parallel connections (6 for HTTP/1.0 and HTTP/1.1 keep-alive, 1 otherwise).
    pub connections: usize,
    /// Time between requests (over all connections), ms.
    pub interval_ms: u64,
    /// Estimated lossless service time of one request, ms.
    pub service_est_ms: f64,
    /// Estimated busy share of each connection (sequential protocols; a
    /// multiplexed connection has no such limit: requests in flight on it).
    pub lane_load: f64,
}

/// The plan: `interval_ms` as configured, raised where a sequential protocol's
/// connections would be more than [`MAX_LANE_LOAD`] busy on this link (long
/// RTTs, slow rates). Pure: unit-tested.
pub fn paced_plan(
    p: Protocol,
    rtt_ms: f64,
    rate_bps: Option<u64>,
    size: u64,
    interval_ms: u64,
) -> PacedPlan {
    let seq = sequential(p);
    let connections = if seq { H1_PARALLEL_CONNECTIONS } else { 1 };
    // The response on the wire at the link's rate (~5% framing, a header block).
    let wire_ms = rate_bps
        .filter(|r| *r > 0)
        .map(|r| (size as f64 * 1.05 + 300.0) * 8.0 / r as f64 * 1000.0)
        .unwrap_or(0.0);
    let service = service_rtts(p) * rtt_ms.max(0.0) + wire_ms;
    let mut interval = interval_ms.max(1);
    if seq {
        let min = (service / (MAX_LANE_LOAD * connections as f64)).ceil() as u64;
        interval = interval.max(min);
    }
    PacedPlan {
        connections,
        interval_ms: interval,
        service_est_ms: service,
        lane_load: service / (interval as f64 * connections as f64),
    }
}

/// Split each request of one connection's records (in the order issued) into
/// (queueing, service) ns: on a sequential connection a request starts when
/// it is due or when the one before it ended, whichever is later; on a
/// multiplexed one it starts when due. None for a failed request. Pure.
pub fn split_latency(lane: &[RequestRecord], sequential: bool) -> Vec<Option<(u64, u64)>> {
    let mut prev_end: Option<u64> = None;
    lane.iter()
        .map(|r| {
            let issue = match prev_end {
                Some(e) if sequential => e.max(r.start_ns),
                _ => r.start_ns,
            };
            if let Some(lb) = r.last_byte_ns {
                prev_end = Some(lb);
            }
            match (r.ok(), r.last_byte_ns) {
                (true, Some(lb)) => Some((issue - r.start_ns, lb.saturating_sub(issue))),
                _ => None,
            }
        })
        .collect()
}

/// Open `k` connections of one client, each warmed up with `warm` requests
/// of `size`; failures are recorded in `out`.
async fn connections(
    c: &quicbench_clients::Client,
    k: usize,
    warm: u32,
    size: u64,
    out: &mut Output,
) -> Vec<Connection> {
    let mut conns = Vec::new();
    for _ in 0..k {
        match c.connect().await {
            Ok(mut conn) => {
                for _ in 0..warm {
                    let _ = conn.run(&[Request::bytes(size)]).await;
                }
                conns.push(conn)
            }
            Err(e) => out.fail(format!("connect: {e}")),
        }
    }
    conns
}

/// Warm-up requests per connection: HTTP/1.0 needs one even when none is
/// asked for, so every measured request opens its own connection (the first
/// one would reuse the connection `connect` opened).
fn warmups(env: &Env, p: Protocol) -> u32 {
    if matches!(p, Protocol::H10 | Protocol::H10Tls) {
        env.warmup.max(1)
    } else {
        env.warmup
    }
}

/// HOL (a): a small request every interval, round-robin over the plan's
/// connections; per-request latency, split into queueing and service.
pub async fn hol_paced(env: &Env, p: Protocol, hp: &HolParams) -> Output {
    let mut out = Output::default();
    let plan = paced_plan(p, env.rtt_ms, env.rate_bps, hp.size, hp.interval_ms);
    let epoch = Epoch::new();
    let c = match client(env, p, true, false, epoch) {
        Ok(c) => c,
        Err(e) => {
            out.fail(e);
            return out;
        }
    };
    let mut conns = connections(&c, plan.connections, warmups(env, p), hp.size, &mut out).await;
    if conns.is_empty() {
        return out;
    }
    out.notes.push(format!(
        "a request every {} ms over {} connection(s); est. lossless service {:.1} ms, each connection {:.0}% busy",
        plan.interval_ms,
        conns.len(),
        plan.service_est_ms,
        plan.lane_load * 100.0
    ));
    out.extra.insert(
        "hol_plan".into(),
        serde_json::to_value(plan).unwrap_or_default(),
    );
    let count = (hp.duration_ms / plan.interval_ms).max(1);
    let lanes = conns.len() as u64;
    let futs = conns.iter_mut().enumerate().map(|(li, conn)| {
        let reqs: Vec<Request> = (0..count)
            .filter(|i| i % lanes == li as u64)
            .map(|i| Request::bytes(hp.size).at(Duration::from_millis(i * plan.interval_ms)))
            .collect();
        async move { conn.run(&reqs).await }
    });
    let results = futures::future::join_all(futs).await;
    out.conn = conns.first().map(|c| c.info().clone());
    out.t0_mono_ns = epoch.mono_ns();
    for conn in conns {
        out.keep_transport(&conn);
        conn.close().await;
    }
    let mut all = Vec::new();
    for recs in results {
        let split = split_latency(&recs, sequential(p));
        for (r, s) in recs.into_iter().zip(split) {
            match s {
                Some((q, sv)) => {
                    out.push(n::LATENCY_MS, "ms", ms(q + sv));
                    out.push(n::QUEUE_MS, "ms", ms(q));
                    out.push(n::SERVICE_MS, "ms", ms(sv));
                }
                None => out.fail(format!(
                    "request at {:.0} ms: {}",
                    ms(r.start_ns),
                    r.error.clone().unwrap_or_else(|| "incomplete".into())
                )),
            }
            all.push(r);
        }
    }
    all.sort_by_key(|r| r.start_ns);
    out.records = all;
    out
}

/// HOL (b): K objects requested at once; per-object completion and progress.
/// HTTP/1.0 and HTTP/1.1 keep-alive spread them over 6 connections.
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
    let nconn = if sequential(p) {
        H1_PARALLEL_CONNECTIONS.min(k.max(1))
    } else {
        1
    };
    let mut conns = connections(&c, nconn, warmups(env, p), 1, &mut out).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    fn rec(start: u64, last: u64) -> RequestRecord {
        let mut r = RequestRecord::new(0, "/bytes/1024", 0, start);
        r.status = Some(200);
        r.last_byte_ns = Some(last);
        r
    }

    #[test]
    fn the_quick_link_keeps_20_ms_and_every_connection_half_busy_at_most() {
        for p in [
            Protocol::H10,
            Protocol::H10Tls,
            Protocol::H11,
            Protocol::H11Tls,
            Protocol::H11Pipelined,
            Protocol::H2,
            Protocol::H3,
        ] {
            let plan = paced_plan(p, 20.0, None, 1024, 20);
            assert_eq!(plan.interval_ms, 20, "{p:?}");
            if sequential(p) {
                assert_eq!(plan.connections, 6);
                assert!(plan.lane_load <= MAX_LANE_LOAD + 1e-9, "{p:?} {plan:?}");
            } else {
                assert_eq!(plan.connections, 1);
            }
        }
    }

    #[test]
    fn long_rtts_stretch_the_interval_of_sequential_protocols_only() {
        // h1.0-tls at 150 ms RTT: 3 RTT = 450 ms a request; 6 connections at
        // half load need a request every 150 ms at most.
        let plan = paced_plan(Protocol::H10Tls, 150.0, None, 1024, 20);
        assert_eq!(plan.interval_ms, 150);
        assert!((plan.lane_load - 0.5).abs() < 1e-9);
        assert_eq!(
            paced_plan(Protocol::H3, 150.0, None, 1024, 20).interval_ms,
            20
        );
        // A slow link adds the response's time on the wire.
        let slow = paced_plan(Protocol::H11, 20.0, Some(100_000), 1024, 20);
        assert!(
            slow.service_est_ms > 100.0 && slow.interval_ms > 20,
            "{slow:?}"
        );
    }

    #[test]
    fn sequential_requests_queue_behind_the_one_in_flight() {
        // Due every 20 ms, each takes 30 ms: the second waits 10 ms, the third 20.
        let lane = vec![rec(0, 30 * M), rec(20 * M, 60 * M), rec(40 * M, 90 * M)];
        let s = split_latency(&lane, true);
        assert_eq!(
            s,
            vec![
                Some((0, 30 * M)),
                Some((10 * M, 30 * M)),
                Some((20 * M, 30 * M))
            ]
        );
        // Multiplexed: no client-side queue, the wait is service.
        let m = split_latency(&lane, false);
        assert_eq!(m[1], Some((0, 40 * M)));
    }

    #[test]
    fn an_unsaturated_lane_has_no_queueing_and_failures_are_skipped() {
        let mut bad = rec(40 * M, 0);
        bad.last_byte_ns = None;
        bad.error = Some("reset".into());
        let lane = vec![
            rec(0, 21 * M),
            rec(120 * M, 141 * M),
            bad,
            rec(360 * M, 381 * M),
        ];
        let s = split_latency(&lane, true);
        assert_eq!(s[0], Some((0, 21 * M)));
        assert_eq!(s[1], Some((0, 21 * M)));
        assert_eq!(s[2], None);
        assert_eq!(s[3], Some((0, 21 * M)));
    }
}
