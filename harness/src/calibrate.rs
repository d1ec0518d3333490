//! Calibration: drive the UDP probe (and, with a rate, a TCP bulk transfer)
//! across a link and compare what was measured with what was configured.
//! Used by `quicbench calibrate` and recorded in run.json at the start of a run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use quicbench_clients::udp::{ProbeConfig, ProbeMode, ProbeReport, Summary};
use quicbench_netem::link::{Link, LinkConfig};
use quicbench_netem::LinkSpec;
use serde::Serialize;

/// The one-way delay a link must keep, socket to socket, for its verdict:
/// the median within ±10 µs of the configured delay, the 99th percentile
/// within ±100 µs (issue 15's targets; on a noisy VM the p99 is often the
/// host's, and the check then says so).
pub const P50_TARGET_US: f64 = 10.0;
pub const P99_TARGET_US: f64 = 100.0;
/// One check: what was compared and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub detail: String,
    /// None: informative only (e.g. delay with jitter has no single target).
    pub ok: Option<bool>,
}

impl Check {
    /// A check that only informs: nothing to hold.
    fn info(name: &str, detail: String) -> Check {
        Check {
            name: name.into(),
            detail,
            ok: None,
        }
    }
}

/// The calibration of one link.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub backend: String,
    pub backend_reason: String,
    pub up: String,
    pub down: String,
    pub probe: ProbeReport,
    pub tcp_goodput_bps: Option<f64>,
    pub counters: serde_json::Value,
    pub checks: Vec<Check>,
    /// Every check with a target held.
    pub pass: bool,
    /// What a failed verdict most likely means, when the counters tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// One direction of the relay, from the link's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RelayTiming {
    dir: &'static str,
    /// Departure lateness, ns.
    p50: u64,
    p99: u64,
    /// Time spun before deadlines, and deadlines slept up to instead
    /// because the other CPUs were taken.
    spin_ns: u64,
    spin_yielded: u64,
}

/// The relay's timing per direction (user-space backend only).
fn relay_lateness(counters: &serde_json::Value) -> Vec<RelayTiming> {
    ["up", "down"]
        .into_iter()
        .filter_map(|dir| {
            let r = counters.get(dir)?.get("relay")?;
            let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            Some(RelayTiming {
                dir,
                p50: r.get("lateness_p50_ns")?.as_u64()?,
                p99: r.get("lateness_p99_ns")?.as_u64()?,
                spin_ns: n("spin_ns"),
                spin_yielded: n("spin_yielded"),
            })
        })
        .collect()
}

/// The 1-minute load average, for the hint (None where /proc is absent).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A failed delay check while the relay sent every packet on time means the
/// extra delay was spent outside the relay's schedule: the path's fixed cost
/// and the probe's endpoints (ordinary threads, which wait for a core when
/// other work holds it). Say so, instead of blaming the link model.
fn delay_hint(checks: &[Check], lateness: &[RelayTiming], load: Option<f64>) -> Option<String> {
    let delay_failed = checks
        .iter()
        .any(|c| c.name.starts_with("one-way delay") && c.ok == Some(false));
    if !delay_failed || lateness.is_empty() {
        return None;
    }
    let worst_p99 = lateness.iter().map(|l| l.p99).max().unwrap_or(0);
    if worst_p99 > 100_000 {
        return Some(format!(
            "the relay itself sent late (departure lateness p99 {:.0} µs): its threads did not get a core in time",
            worst_p99 as f64 / 1000.0
        ));
    }
    Some(format!(
        "the relay sent on time (departure lateness p99 ≤ {:.0} µs): the extra delay is outside its schedule: the path's \
         own cost (socket → TUN → relay wake-up → TUN → socket) beyond what the link measured at build and takes off \
         (\"path cost\" below), higher at this probe rate than for one flow, and, when other work holds the CPUs{}, \
         the probe's endpoints waiting for a core",
        worst_p99 as f64 / 1000.0,
        load.map(|l| format!(" (load average {l:.2})")).unwrap_or_default()
    ))
}

/// How hard to probe.
#[derive(Debug, Clone, Copy)]
pub struct CalibrateOptions {
    pub pps: u64,
    pub seconds: f64,
    pub size: usize,
    /// Measure the rate with a TCP bulk transfer (when the spec has a rate).
    pub tcp_seconds: f64,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            pps: 10_000,
            seconds: 2.0,
            size: 200,
            tcp_seconds: 3.0,
        }
    }
}

/// A bounded TCP bulk transfer across the link: goodput in bytes/s.
fn tcp_bulk(link: &Link, seconds: f64) -> anyhow::Result<f64> {
    let ip = link.server_ip();
    let (tx, rx) = std::sync::mpsc::channel();
    let srv =
        link.server_ns()
            .spawn_thread("calib-tcp-server", move || -> std::io::Result<u64> {
                let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
                let _ = tx.send(l.local_addr());
                let (mut s, _) = l.accept()?;
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf)? {
                        0 => return Ok(total),
                        n => total += n as u64,
                    }
                }
            })?;
    let addr = rx.recv_timeout(Duration::from_secs(5))??;
    let dur = Duration::from_secs_f64(seconds);
    let (sent, took) =
        link.client_ns()
            .try_run(move || -> std::io::Result<(u64, Duration)> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                let buf = vec![0x5au8; 64 * 1024];
                let t0 = Instant::now();
                let mut sent = 0u64;
                // Bounded in time: stops by itself.
                while t0.elapsed() < dur {
                    s.write_all(&buf)?;
                    sent += buf.len() as u64;
                }
                s.shutdown(std::net::Shutdown::Write)?;
                let mut sink = [0u8; 1];
                let _ = s.read(&mut sink);
                Ok((sent, t0.elapsed()))
            })??;
    let got = srv
        .join()
        .map_err(|_| anyhow::anyhow!("tcp server thread panicked"))???;
    Ok(got.min(sent) as f64 / took.as_secs_f64())
}

/// Build the link of `cfg`, measure it, and judge it against its spec.
pub fn calibrate(cfg: &LinkConfig, o: CalibrateOptions) -> anyhow::Result<Calibration> {
    anyhow::ensure!(
        o.pps >= 1 && o.seconds > 0.0 && o.seconds <= 600.0,
        "pps must be ≥ 1 and seconds in (0, 600]"
    );
    quicbench_wire::probe::check_size(o.size)?;
    let link = Link::build(cfg.clone()).context("building the link")?;
    let pace = ProbePace::new(cfg, &o);
    let probe = run_probe(&link, cfg, &pace)?;
    let bulk = match cfg.up.rate_bps() {
        Some(_) if o.tcp_seconds > 0.0 => Some(tcp_bulk(&link, o.tcp_seconds)?),
        _ => None,
    };

    let mut checks = Vec::new();
    if pace.pps < o.pps {
        checks.push(Check::info(
            "probe rate",
            format!(
                "{} datagrams/s instead of {}: half of the link's rate",
                pace.pps, o.pps
            ),
        ));
    }
    let owd = [
        ("up", &cfg.up, &probe.owd_up),
        ("down", &cfg.down, &probe.owd_down),
    ];
    for (dir, spec, measured) in owd {
        if let Some(m) = measured {
            checks.push(delay_check(dir, spec, pace.wire_bits, m));
        }
    }
    checks.push(loss_check(cfg, probe.sent, probe.loss_rate));
    if let (Some(r), Some(b)) = (cfg.up.rate_bps(), bulk) {
        checks.push(rate_check(r, cfg.mtu, b));
    }
    let counters = serde_json::to_value(link.counters()).unwrap_or_default();
    let lateness = relay_lateness(&counters);
    if link.backend() == quicbench_netem::Backend::UserSpace {
        checks.extend(relay_checks(&link, &lateness));
    }
    let pass = checks.iter().all(|c| c.ok != Some(false));
    let hint = if pass {
        None
    } else {
        delay_hint(&checks, &lateness, load_average())
    };
    Ok(Calibration {
        backend: link.backend().to_string(),
        backend_reason: link.backend_reason().to_string(),
        up: cfg.up.to_string(),
        down: cfg.down.to_string(),
        probe,
        tcp_goodput_bps: bulk.map(|b| b * 8.0),
        counters,
        checks,
        pass,
        hint,
    })
}

/// How fast the probe goes. A probe faster than the link's rate would
/// measure its own queue: it is kept to half of the slower direction's rate
/// (IP + UDP headers included).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProbePace {
    pps: u64,
    count: u64,
    interval: Duration,
    size: usize,
    /// Bits one probe datagram takes on the wire.
    wire_bits: f64,
}

impl ProbePace {
    fn new(cfg: &LinkConfig, o: &CalibrateOptions) -> ProbePace {
        let wire_bits = ((o.size + 28) * 8) as f64;
        let slowest = [cfg.up.rate_bps(), cfg.down.rate_bps()]
            .into_iter()
            .flatten()
            .min();
        let pps = match slowest {
            Some(r) => o.pps.min(((r as f64 * 0.5) / wire_bits).max(1.0) as u64),
            None => o.pps,
        };
        ProbePace {
            pps,
            count: ((pps as f64 * o.seconds) as u64).max(1),
            interval: Duration::from_nanos(1_000_000_000 / pps),
            size: o.size,
            wire_bits,
        }
    }
}

/// Start the project's servers in the link's server namespace, run the UDP
/// echo probe from its client namespace, and stop the servers again.
fn run_probe(link: &Link, cfg: &LinkConfig, pace: &ProbePace) -> anyhow::Result<ProbeReport> {
    let ip = link.server_ip();
    let (ptx, prx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let identity = quicbench_wire::tls::Identity::generate(&[ip.to_string()])?;
    let srv = link
        .server_ns()
        .spawn_thread("calib-servers", move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut so = quicbench_servers::ServerOptions::ephemeral(identity);
                so.listen = vec![ip];
                let s = quicbench_servers::start(so).await?;
                let _ = ptx.send(s.addrs.udp.first().copied());
                let _ = stop_rx.await;
                s.shutdown(Duration::from_millis(200)).await;
                Ok(())
            })
        })?;
    let udp = prx
        .recv_timeout(Duration::from_secs(10))
        .context("the probe server did not start")?
        .context("the probe server has no address")?;
    let rtt_ms = (cfg.up.base_delay_ns() + cfg.down.base_delay_ns()) as f64 / 1e6;
    let pace = *pace;
    let probe = link
        .client_ns()
        .try_run(move || -> anyhow::Result<ProbeReport> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut pc = ProbeConfig::new(udp, ProbeMode::Echo);
            pc.count = pace.count;
            pc.interval = pace.interval;
            pc.size = pace.size;
            pc.timeout = Duration::from_millis((rtt_ms * 3.0) as u64 + 1000);
            Ok(rt.block_on(quicbench_clients::udp::probe(pc))?)
        });
    let _ = stop_tx.send(());
    let _ = srv.join();
    probe?
}

/// One direction's one-way delay against its spec: the base delay plus the
/// probe datagram's serialisation time at the direction's rate. With jitter
/// there is no single target, so the check only informs.
fn delay_check(dir: &str, spec: &LinkSpec, wire_bits: f64, measured: &Summary) -> Check {
    let ser_ms = spec
        .rate_bps()
        .map(|r| wire_bits / r as f64 * 1000.0)
        .unwrap_or(0.0);
    let want_ms = spec.base_delay_ns() as f64 / 1e6 + ser_ms;
    let (p50_ms, p99_ms) = (measured.p50_us / 1000.0, measured.p99_us / 1000.0);
    let (e50_us, e99_us) = ((p50_ms - want_ms) * 1000.0, (p99_ms - want_ms) * 1000.0);
    let name = format!("one-way delay ({dir})");
    if spec.jitter_ns() > 0 {
        return Check::info(
            &name,
            format!(
                "configured base {want_ms:.3} ms with jitter; measured p50 {p50_ms:.3} ms, p99 {p99_ms:.3} ms"
            ),
        );
    }
    Check {
        name,
        detail: format!(
            "configured {want_ms:.3} ms; measured p50 {p50_ms:.3} ms (error {e50_us:+.0} µs, target ±{P50_TARGET_US} µs), \
             p99 {p99_ms:.3} ms (error {e99_us:+.0} µs, target ±{P99_TARGET_US} µs)"
        ),
        ok: Some(e50_us.abs() <= P50_TARGET_US && e99_us.abs() <= P99_TARGET_US),
    }
}

/// The probe's round-trip loss against both directions' nominal loss, with
/// a 99% binomial interval for the number of echoes sent.
fn loss_check(cfg: &LinkConfig, sent: u64, loss_rate: f64) -> Check {
    let p = 1.0 - (1.0 - cfg.up.loss_probability()) * (1.0 - cfg.down.loss_probability());
    let n = sent.max(1) as f64;
    let sd = (p * (1.0 - p) / n).sqrt();
    let (lo, hi) = ((p - 2.576 * sd).max(0.0), (p + 2.576 * sd).min(1.0));
    Check {
        name: "round-trip loss".into(),
        detail: format!(
            "configured {:.3}%; measured {:.3}% of {} (99% binomial interval [{:.3}%, {:.3}%])",
            p * 100.0,
            loss_rate * 100.0,
            sent,
            lo * 100.0,
            hi * 100.0
        ),
        ok: Some(loss_rate >= lo - 1e-12 && loss_rate <= hi + 1e-12),
    }
}

/// A TCP bulk transfer's goodput (bytes/s) against the configured rate
/// (bit/s): the payload share of each packet at this MTU (IPv4 20 B + TCP
/// 32 B with timestamps), within 2%.
fn rate_check(rate_bps: u64, mtu: u32, goodput_bytes_per_s: f64) -> Check {
    let eff = (mtu as f64 - 52.0) / mtu as f64;
    let expect = rate_bps as f64 * eff;
    let ratio = goodput_bytes_per_s * 8.0 / expect;
    Check {
        name: "rate".into(),
        detail: format!(
            "configured {:.3} Mbit/s; TCP goodput {:.3} Mbit/s = {:.1}% of the payload rate at MTU {} ({:.3} Mbit/s), target within 2%",
            rate_bps as f64 / 1e6,
            goodput_bytes_per_s * 8.0 / 1e6,
            ratio * 100.0,
            mtu,
            expect / 1e6
        ),
        ok: Some((ratio - 1.0).abs() <= 0.02),
    }
}

/// What the user-space relay says about itself: its departures against the
/// model's schedule, the path cost it takes off, where arrivals were dated,
/// and whether the CPUs were kept from sleeping deeply. Informative only.
fn relay_checks(link: &Link, lateness: &[RelayTiming]) -> Vec<Check> {
    let mut checks = Vec::new();
    if !lateness.is_empty() {
        checks.push(Check::info(
            "relay departures",
            lateness
                .iter()
                .map(|t| {
                    format!(
                        "{}: p50 {:.0} µs, p99 {:.0} µs late against the model's schedule \
                         (spun {:.0} ms; slept to {} deadlines while a task waited for a CPU)",
                        t.dir,
                        t.p50 as f64 / 1000.0,
                        t.p99 as f64 / 1000.0,
                        t.spin_ns as f64 / 1e6,
                        t.spin_yielded
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    checks.push(Check::info(
        "path cost",
        match link.path_cost() {
            Ok(c) => format!(
                "measured at build: up {:.0} µs, down {:.0} µs, taken off every departure \
                 (--no-path-compensation keeps it)",
                c.up_ns as f64 / 1000.0,
                c.down_ns as f64 / 1000.0
            ),
            Err(why) => format!("not compensated: {why}"),
        },
    ));
    let k = link.counters();
    checks.push(Check::info(
        "arrivals",
        [("up", &k.up.relay), ("down", &k.down.relay)]
            .iter()
            .map(|(dir, r)| {
                format!(
                    "{dir}: {} of {} reads dated at the device, where they waited \
                     p50 {:.0} µs, p99 {:.0} µs for the relay (not part of their delay)",
                    r.arrivals_tapped,
                    r.reads(),
                    r.read_wait_p50_ns as f64 / 1000.0,
                    r.read_wait_p99_ns as f64 / 1000.0
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    ));
    checks.push(Check::info(
        "idle CPUs",
        match link.idle_poll() {
            Ok(()) => "kept polling while the link was up, so the relay's wake-ups cost the same each time (--no-idle-poll lets them sleep)"
                .into(),
            Err(why) => format!("may sleep deeply, the relay's wake-ups vary: {why}"),
        },
    ));
    checks
}

impl std::fmt::Display for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backend {} ({})", self.backend, self.backend_reason)?;
        writeln!(f, "  up [{}]  down [{}]", self.up, self.down)?;
        if let Some(r) = &self.probe.rtt {
            writeln!(
                f,
                "  RTT: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} echoes",
                r.p50_us / 1000.0,
                r.p99_us / 1000.0,
                r.max_us / 1000.0,
                r.count
            )?;
        }
        for c in &self.checks {
            let tag = match c.ok {
                Some(true) => "ok",
                Some(false) => "OFF",
                None => "--",
            };
            writeln!(f, "  [{tag}] {}: {}", c.name, c.detail)?;
        }
        write!(
            f,
            "verdict: {}",
            if self.pass {
                "the link matches its spec"
            } else {
                "the link does NOT match its spec on this machine (see [OFF] lines)"
            }
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: Option<bool>) -> Check {
        Check {
            name: name.into(),
            detail: String::new(),
            ok,
        }
    }

    #[test]
    fn lateness_is_read_from_the_counters() {
        let c = serde_json::json!({
            "up": {"relay": {"lateness_p50_ns": 4000, "lateness_p99_ns": 42000,
                             "spin_ns": 7_000_000, "spin_yielded": 12}},
            "down": {"relay": {"lateness_p50_ns": 5000, "lateness_p99_ns": 54000}},
        });
        let mut up = timing("up", 4000, 42000);
        (up.spin_ns, up.spin_yielded) = (7_000_000, 12);
        assert_eq!(relay_lateness(&c), vec![up, timing("down", 5000, 54000)]);
        // Kernel backend: no relay, no lateness.
        assert!(relay_lateness(&serde_json::json!({"up": {}})).is_empty());
    }

    fn timing(dir: &'static str, p50: u64, p99: u64) -> RelayTiming {
        RelayTiming {
            dir,
            p50,
            p99,
            spin_ns: 0,
            spin_yielded: 0,
        }
    }

    #[test]
    fn hint_blames_the_machine_only_when_the_relay_was_on_time() {
        let failed = [check("one-way delay (up)", Some(false))];
        let on_time = [timing("up", 4000, 42000), timing("down", 5000, 54000)];
        let h = delay_hint(&failed, &on_time, Some(3.5)).unwrap();
        assert!(h.contains("endpoints") && h.contains("3.50"), "{h}");
        let late = [timing("up", 4000, 900_000)];
        let h = delay_hint(&failed, &late, None).unwrap();
        assert!(
            h.contains("relay itself sent late") && h.contains("900"),
            "{h}"
        );
        // Nothing to explain: delay held, or no relay (kernel backend).
        let held = [
            check("one-way delay (up)", Some(true)),
            check("round-trip loss", Some(false)),
        ];
        assert!(delay_hint(&held, &on_time, None).is_none());
        assert!(delay_hint(&failed, &[], None).is_none());
    }

    fn spec(s: &str) -> LinkSpec {
        s.parse().expect("a valid spec")
    }

    fn owd(p50_us: f64, p99_us: f64) -> Summary {
        Summary {
            count: 1000,
            min_us: p50_us,
            p50_us,
            p90_us: p50_us,
            p99_us,
            max_us: p99_us,
            mean_us: p50_us,
        }
    }

    #[test]
    fn the_probe_keeps_to_half_the_slower_direction_s_rate() {
        let o = CalibrateOptions::default();
        let fast = ProbePace::new(&LinkConfig::symmetric(spec("delay 5ms")), &o);
        assert_eq!((fast.pps, fast.count), (10_000, 20_000));
        assert_eq!(fast.interval, Duration::from_micros(100));
        assert_eq!(fast.wire_bits, 228.0 * 8.0);
        // 1 Mbit/s down: half of it is 274 datagrams of 228 wire bytes a second.
        let cfg = LinkConfig::new(spec("delay 5ms"), spec("delay 5ms rate 1mbit"));
        let slow = ProbePace::new(&cfg, &o);
        assert_eq!((slow.pps, slow.count), (274, 548));
        // Never below one datagram a second, never zero datagrams.
        let o = CalibrateOptions {
            pps: 1,
            seconds: 0.1,
            ..o
        };
        let p = ProbePace::new(&LinkConfig::symmetric(spec("delay 5ms rate 1kbit")), &o);
        assert_eq!((p.pps, p.count), (1, 1));
    }

    #[test]
    fn each_direction_s_delay_is_judged_against_its_own_spec() {
        let bits = 228.0 * 8.0;
        // 20 ms plus 1824 bits at 10 Mbit/s = 182.4 µs of serialisation.
        let s = spec("delay 20ms rate 10mbit");
        let want = 20_182.4;
        let c = delay_check("down", &s, bits, &owd(want + 9.0, want + 99.0));
        assert_eq!(
            (c.name.as_str(), c.ok),
            ("one-way delay (down)", Some(true))
        );
        assert!(c.detail.contains("configured 20.182 ms"), "{}", c.detail);
        for (p50, p99) in [(11.0, 20.0), (-11.0, 20.0), (0.0, 101.0), (0.0, -101.0)] {
            let c = delay_check("up", &s, bits, &owd(want + p50, want + p99));
            assert_eq!(c.ok, Some(false), "p50 {p50:+} µs, p99 {p99:+} µs");
        }
        // Without a rate nothing is added for serialisation.
        let c = delay_check("up", &spec("delay 20ms"), bits, &owd(20_005.0, 20_050.0));
        assert_eq!(c.ok, Some(true), "{}", c.detail);
        // With jitter there is no single target: informative only.
        let c = delay_check(
            "up",
            &spec("delay 20ms 5ms"),
            bits,
            &owd(25_000.0, 29_000.0),
        );
        assert_eq!(c.ok, None);
        assert!(c.detail.contains("with jitter"), "{}", c.detail);
    }

    #[test]
    fn round_trip_loss_holds_within_its_binomial_interval() {
        // 1% each way: 1.99% of round trips; 99% interval for 20,000 echoes
        // is about [1.74%, 2.24%].
        let lossy = LinkConfig::symmetric(spec("delay 5ms loss 1%"));
        assert_eq!(loss_check(&lossy, 20_000, 0.0199).ok, Some(true));
        assert_eq!(loss_check(&lossy, 20_000, 0.0175).ok, Some(true));
        assert_eq!(loss_check(&lossy, 20_000, 0.0170).ok, Some(false));
        assert_eq!(loss_check(&lossy, 20_000, 0.0230).ok, Some(false));
        // A lossless link must lose nothing; nothing sent reads as one echo.
        let clean = LinkConfig::symmetric(spec("delay 5ms"));
        assert_eq!(loss_check(&clean, 20_000, 0.0).ok, Some(true));
        assert_eq!(loss_check(&clean, 20_000, 0.00005).ok, Some(false));
        assert_eq!(loss_check(&clean, 0, 0.0).ok, Some(true));
    }

    #[test]
    fn rate_is_judged_on_tcp_payload_within_two_percent() {
        // At MTU 1500 a TCP packet carries 1448 payload bytes: 10 Mbit/s of
        // packets is 9.653 Mbit/s of goodput.
        let payload = 10e6 * 1448.0 / 1500.0 / 8.0;
        assert_eq!(rate_check(10_000_000, 1500, payload).ok, Some(true));
        assert_eq!(rate_check(10_000_000, 1500, payload * 0.981).ok, Some(true));
        assert_eq!(
            rate_check(10_000_000, 1500, payload * 0.979).ok,
            Some(false)
        );
        assert_eq!(
            rate_check(10_000_000, 1500, payload * 1.021).ok,
            Some(false)
        );
        let c = rate_check(10_000_000, 1500, payload);
        assert!(c.detail.contains("9.653 Mbit/s"), "{}", c.detail);
    }
}
