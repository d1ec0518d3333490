//! Goodput: the time to complete one object (slow start included), and the
//! steady-state rate of a transfer long enough to have one.

use quicbench_clients::{Epoch, Request, RequestRecord};
use quicbench_wire::Protocol;

use super::names as n;
use super::{ms, open, Env, Output, TRANSPORT_SAMPLE};
use crate::matrix::GoodputParams;

/// The long transfer is never larger than the servers serve (`/bytes/N` cap).
const MAX_LONG_BYTES: u64 = quicbench_wire::resource::DEFAULT_MAX_BYTES;
/// Points kept of the long transfer's bytes-over-time series (a 10 s transfer
/// is sampled every ms: too much to keep per cell).
const MAX_TIMELINE_POINTS: usize = 500;

/// The steady-state rate of one transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SteadyGoodput {
    pub mbps: f64,
    /// The span it was measured over, ns.
    pub window_ns: u64,
    pub bytes: u64,
}

/// Goodput over a transfer's bytes-over-time series (`progress`: ns,
/// cumulative bytes) from `skip_ns` after its first byte to its last sample;
/// None when that leaves less than `min_window_ns`. Pure: unit-tested.
pub fn steady_goodput(
    progress: &[(u64, u64)],
    first_byte_ns: u64,
    skip_ns: u64,
    min_window_ns: u64,
) -> Option<SteadyGoodput> {
    let from = first_byte_ns.saturating_add(skip_ns);
    let &(t1, b1) = progress.last()?;
    let &(t0, b0) = progress.iter().find(|(t, _)| *t >= from)?;
    let window_ns = t1.saturating_sub(t0);
    if window_ns == 0 || window_ns < min_window_ns {
        return None;
    }
    let bytes = b1.saturating_sub(b0);
    Some(SteadyGoodput {
        mbps: bytes as f64 * 8.0 / (window_ns as f64 / 1e9) / 1e6,
        window_ns,
        bytes,
    })
}

/// The object's rate is a low estimate of the steady rate (slow start).
const SLOW_START_ALLOWANCE: f64 = 1.5;

/// The long transfer is at least this (a loss-limited link may make it
/// smaller than the object: its duration is what matters).
const MIN_LONG_BYTES: u64 = 64 * 1024;

/// Twice the Mathis et al. rate of a loss-limited Reno-like flow,
/// 1.22 · MSS / (RTT · √p), bits/s; None without loss or RTT. Only a size
/// estimate for the long transfer: an object finished in slow start, before
/// its first loss, runs 5-20× faster than the flow's steady state, and a
/// transfer sized from it lasted 15-48 s instead of 3 s (Cubic, 0.5-2% loss,
/// 50-150 ms). A controller that ignores loss (BBR) ends such a transfer
/// early, and the next try is sized from the rate it reached.
fn loss_limited_bps(rtt_ms: f64, loss: f64) -> Option<f64> {
    const MSS_BITS: f64 = 1448.0 * 8.0;
    (loss > 0.0 && rtt_ms > 0.0).then(|| 2.0 * 1.22 * MSS_BITS / (rtt_ms / 1e3 * loss.sqrt()))
}

/// Size of the long transfer: `duration_ms` at the lowest of the link's rate,
/// 1.5 × the object's rate and, on a lossy link, twice the loss-limited rate
/// ([`loss_limited_bps`]), between [`MIN_LONG_BYTES`] and what the servers
/// serve.
fn long_size(
    gp: &GoodputParams,
    rate_bps: Option<u64>,
    object_mbps: Option<f64>,
    loss_limit_bps: Option<f64>,
) -> u64 {
    let link = rate_bps.filter(|r| *r > 0).map(|r| r as f64);
    let seen = object_mbps
        .filter(|m| *m > 0.0)
        .map(|m| m * 1e6 * SLOW_START_ALLOWANCE);
    let bps = [link, seen, loss_limit_bps]
        .into_iter()
        .flatten()
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b))))
        .unwrap_or(0.0);
    let bytes = bps / 8.0 * gp.duration_ms as f64 / 1000.0;
    (bytes as u64).clamp(MIN_LONG_BYTES, MAX_LONG_BYTES)
}

/// Most a static server's long transfer is (its file is written once a run).
const MAX_STATIC_LONG_BYTES: u64 = 256 << 20;

/// The long transfer's size when the server is a static file server
/// (docs/endpoints.md): fixed before the cell, so from the link alone
/// (its rate, else 1 Gbit/s, and the loss model), never resized.
pub fn static_long_size(gp: &GoodputParams, rate_bps: Option<u64>, rtt_ms: f64, loss: f64) -> u64 {
    let rate = rate_bps.filter(|r| *r > 0).unwrap_or(1_000_000_000);
    long_size(gp, Some(rate), None, loss_limited_bps(rtt_ms, loss)).min(MAX_STATIC_LONG_BYTES)
}

/// Every `k`-th point, so at most [`MAX_TIMELINE_POINTS`] remain (the last one kept).
fn thin(series: &[(u64, u64)], origin: u64) -> Vec<(f64, f64)> {
    let k = series.len().div_ceil(MAX_TIMELINE_POINTS).max(1);
    let mut v: Vec<(f64, f64)> = series
        .iter()
        .step_by(k)
        .map(|(t, b)| (ms(t.saturating_sub(origin)), *b as f64))
        .collect();
    if let Some(&(t, b)) = series.last() {
        if (series.len() - 1) % k != 0 {
            v.push((ms(t.saturating_sub(origin)), b as f64));
        }
    }
    v
}

fn failure(r: &RequestRecord) -> String {
    r.error.clone().unwrap_or_else(|| "incomplete".into())
}

/// The object: completion and its mean rate; HTTP/1.0 also without its own
/// connection's set-up. Returns the rate, Mbit/s.
fn object(out: &mut Output, env: &Env, r: &RequestRecord) -> Option<f64> {
    let t = match (r.ok(), r.total_ns()) {
        (true, Some(t)) if t > 0 => t,
        _ => {
            out.fail(format!("object: {}", failure(r)));
            return None;
        }
    };
    let mbps = r.bytes as f64 * 8.0 / (t as f64 / 1e9) / 1e6;
    out.push(n::GOODPUT_MBPS, "Mbit/s", mbps);
    out.push(n::COMPLETION_MS, "ms", ms(t));
    if let Some(rate) = env.rate_bps {
        out.push(n::RATE_RATIO, "fraction", mbps * 1e6 / rate as f64);
    }
    // Only a request that opened its own connection (HTTP/1.0) has set-up.
    if let Some(ready) = r.tls_ready_ns.or(r.transport_ready_ns) {
        let setup = ready.saturating_sub(r.start_ns);
        let rest = t.saturating_sub(setup);
        out.push(n::SETUP_MS, "ms", ms(setup));
        out.push(n::COMPLETION_EXCL_SETUP_MS, "ms", ms(rest));
        if rest > 0 {
            out.push(
                n::GOODPUT_EXCL_SETUP_MBPS,
                "Mbit/s",
                r.bytes as f64 * 8.0 / (rest as f64 / 1e9) / 1e6,
            );
        }
    }
    Some(mbps)
}

/// Tries at the long transfer: a first size estimated from the object often
/// ends far too soon (an unlimited link, or a controller that ignores loss).
const LONG_TRIES: usize = 3;

/// The size for another try after a transfer of `bytes` took `took_ns`: the
/// rate it reached, for `duration_ms`, with 10% to spare. None when the last
/// one lasted at least 80% of the duration (or reached the cap).
fn resize(bytes: u64, took_ns: u64, duration_ms: u64) -> Option<u64> {
    let want_ns = duration_ms.saturating_mul(1_000_000);
    if took_ns.saturating_mul(5) >= want_ns.saturating_mul(4) || bytes >= MAX_LONG_BYTES {
        return None;
    }
    let scaled = bytes as f64 * want_ns as f64 / took_ns.max(1) as f64 * 1.1;
    Some((scaled as u64).clamp(bytes, MAX_LONG_BYTES))
}

/// The long transfer: `size` first, then (at most [`LONG_TRIES`] in all)
/// resized from the rate the previous one reached until one lasts at least
/// 80% of `duration_ms`. Returns the records of the last try (earlier ones
/// in a note).
async fn long_transfer(
    conn: &mut quicbench_clients::Connection,
    mut size: u64,
    duration_ms: u64,
    fixed: bool,
    out: &mut Output,
) -> Vec<RequestRecord> {
    let mut tries = 0;
    let max_tries = if fixed { 1 } else { LONG_TRIES };
    loop {
        tries += 1;
        let recs = conn.run(&[Request::bytes(size)]).await;
        let took = recs
            .first()
            .filter(|r| r.ok())
            .and_then(|r| Some(r.last_byte_ns?.saturating_sub(r.first_byte_ns?)));
        let next = took.and_then(|t| resize(size, t, duration_ms));
        match next {
            Some(bigger) if tries < max_tries => {
                out.notes.push(format!(
                    "long transfer of {size} B took {:.0} ms: again with {bigger} B",
                    ms(took.unwrap_or(0))
                ));
                size = bigger;
            }
            _ => return recs,
        }
    }
}

/// Goodput: one object of `size` on an established connection (HTTP/1.0: its
/// own), then a transfer of about `duration_ms` for the steady-state rate.
pub async fn goodput(env: &Env, p: Protocol, gp: &GoodputParams) -> Output {
    let mut env = env.clone();
    env.transport_sample = Some(TRANSPORT_SAMPLE);
    let env = &env;
    let mut out = Output::default();
    let epoch = Epoch::new();
    let Some((_client, mut conn)) = open(env, p, true, true, epoch, &mut out).await else {
        return out;
    };
    // HTTP/1.0: the measured requests open their own connections (the first
    // request would reuse the one `open` made).
    let warm = if matches!(p, Protocol::H10 | Protocol::H10Tls) {
        env.warmup.max(1)
    } else {
        env.warmup
    };
    for _ in 0..warm {
        let _ = conn.run(&[Request::bytes(1024)]).await;
    }
    let recs = conn.run(&[Request::bytes(gp.size)]).await;
    // The transfer's time zero: when its request was due.
    out.t0_mono_ns = epoch.mono_ns() + recs.first().map_or(0, |r| r.start_ns);
    let object_mbps = recs.first().and_then(|r| object(&mut out, env, r));
    let mut records = recs;
    if gp.duration_ms > 0 && object_mbps.is_some() {
        // A static server holds only the sizes fixed before the cell.
        let size = if env.static_server {
            static_long_size(gp, env.rate_bps, env.rtt_ms, env.loss)
        } else {
            long_size(
                gp,
                env.rate_bps,
                object_mbps,
                loss_limited_bps(env.rtt_ms, env.loss),
            )
        };
        let skip_ns = (gp.steady_after_rtts as f64 * env.rtt_ms * 1e6) as u64;
        // At least 10 RTTs and 250 ms of steady state, or no figure.
        let min_window = ((10.0 * env.rtt_ms * 1e6) as u64).max(250_000_000);
        let long =
            long_transfer(&mut conn, size, gp.duration_ms, env.static_server, &mut out).await;
        out.extra.insert(
            "goodput".into(),
            serde_json::json!({"object_bytes": gp.size,
                "long_bytes": long.first().map(|r| r.bytes),
                "steady_after_rtts": gp.steady_after_rtts, "skip_ms": ms(skip_ns),
                "min_window_ms": ms(min_window)}),
        );
        for r in &long {
            let steady = match (r.ok(), r.first_byte_ns) {
                (true, Some(fb)) => steady_goodput(&r.progress, fb, skip_ns, min_window),
                _ => {
                    out.fail(format!("long transfer: {}", failure(r)));
                    continue;
                }
            };
            out.timelines
                .insert("bytes_vs_time".into(), thin(&r.progress, r.start_ns));
            match steady {
                Some(s) => {
                    out.push(n::STEADY_GOODPUT_MBPS, "Mbit/s", s.mbps);
                    out.push(n::STEADY_WINDOW_MS, "ms", ms(s.window_ns));
                }
                None => out.notes.push(format!(
                    "no steady-state figure: {} B left less than {:.0} ms after the first {} RTTs",
                    r.bytes,
                    ms(min_window),
                    gp.steady_after_rtts
                )),
            }
        }
        records.extend(long);
    }
    out.conn = Some(conn.info().clone());
    // Right after the transfers: the connection's state at their end.
    out.keep_transport(&conn);
    conn.close().await;
    out.records = records;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    /// Slow start for 200 ms (doubling every 20 ms), then 2.5 MB/s (20 Mbit/s).
    fn series() -> Vec<(u64, u64)> {
        let mut s = Vec::new();
        let mut b = 0u64;
        for i in 0..10u64 {
            b += 1460 * 10 * (1 << i);
            s.push(((i + 1) * 20 * M, b));
        }
        for i in 1..=1800u64 {
            s.push((200 * M + i * M, b + i * 2500));
        }
        s
    }

    #[test]
    fn steady_state_skips_slow_start() {
        let s = series();
        let whole = *s.last().unwrap();
        let mean = whole.1 as f64 * 8.0 / (whole.0 as f64 / 1e9) / 1e6;
        let g = steady_goodput(&s, 20 * M, 10 * 20 * M, 250 * M).unwrap();
        assert!((g.mbps - 20.0).abs() < 0.01, "{g:?}");
        assert_eq!(g.window_ns, 1780 * M);
        // The whole transfer's mean is far from the link's rate: slow start's burst.
        assert!((mean - 20.0).abs() > 5.0, "{mean}");
    }

    #[test]
    fn too_short_a_transfer_has_no_steady_state() {
        let s = series();
        assert_eq!(steady_goodput(&s, 20 * M, 10 * 20 * M, 5000 * M), None);
        assert_eq!(steady_goodput(&s[..5], 20 * M, 200 * M, 0), None);
        assert_eq!(steady_goodput(&[], 0, 0, 0), None);
    }

    fn params(size: u64, duration_ms: u64) -> GoodputParams {
        toml::from_str(&format!("size = {size}\nduration_ms = {duration_ms}\n")).unwrap()
    }

    #[test]
    fn the_long_transfer_lasts_the_duration_at_the_rate() {
        // 20 Mbit/s for 10 s: 25 MB (the object reached 18 Mbit/s).
        let p = params(1 << 20, 10_000);
        assert_eq!(
            long_size(&p, Some(20_000_000), Some(18.0), None),
            25_000_000
        );
        // Loss-limited: 1.5 × the object's 2 Mbit/s, not the link's 20.
        assert_eq!(long_size(&p, Some(20_000_000), Some(2.0), None), 3_750_000);
        // No rate: the object's; never above the cap.
        assert_eq!(
            long_size(&params(1 << 20, 2000), None, Some(80.0), None),
            30_000_000
        );
        // A slow (loss-limited) link: shorter than the object, not longer.
        assert_eq!(
            long_size(&params(1 << 20, 1000), None, Some(2.0), None),
            375_000
        );
        assert_eq!(
            long_size(&params(1 << 20, 10), None, Some(1.0), None),
            MIN_LONG_BYTES
        );
        assert_eq!(
            long_size(&params(1, 100_000), None, Some(1e5), None),
            MAX_LONG_BYTES
        );
        // Cubic's object at 150 ms, 0.5% loss: 6.8 Mbit/s in slow start; the
        // flow's steady state is ~1.3-1.5 Mbit/s (Mathis). Sized from the
        // object, "3 s" was 3.85 MB, ended in its own slow start (1.3 s),
        // grew to 10 MB and took ~45 s; from the loss model, ~1 MB.
        let p = params(1 << 20, 3000);
        let model = loss_limited_bps(150.0, 0.005).unwrap();
        assert!((model / 2.0 - 1.333e6).abs() < 0.01e6, "{model}");
        assert_eq!(
            long_size(&p, Some(100_000_000), Some(6.8), Some(model)),
            (model / 8.0 * 3.0) as u64
        );
        assert_eq!(loss_limited_bps(150.0, 0.0), None);
        assert_eq!(loss_limited_bps(0.0, 0.01), None);
    }

    #[test]
    fn a_transfer_that_ended_too_soon_is_resized_from_its_rate() {
        // 20 MB in 400 ms (400 Mbit/s) for a 2 s target: 110 MB next.
        assert_eq!(resize(20_000_000, 400 * M, 2000), Some(110_000_000));
        // 80% of the target or more: done; less: again.
        assert_eq!(resize(20_000_000, 1600 * M, 2000), None);
        assert!(resize(20_000_000, 1500 * M, 2000).is_some());
        assert_eq!(resize(MAX_LONG_BYTES, M, 2000), None);
        assert_eq!(resize(900_000_000, 100 * M, 2000), Some(MAX_LONG_BYTES));
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let s: Vec<(u64, u64)> = (0..2001).map(|i| (i * M, i)).collect();
        let t = thin(&s, 0);
        assert!(t.len() <= MAX_TIMELINE_POINTS + 1, "{}", t.len());
        assert_eq!(t.first(), Some(&(0.0, 0.0)));
        assert_eq!(t.last(), Some(&(2000.0, 2000.0)));
    }
}
