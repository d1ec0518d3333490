//! The user-space path's fixed cost, measured when a link is built and taken
//! off every departure, so a packet's socket-to-socket delay is the delay
//! configured (docs/link.md, "Delay precision").
//!
//! Crossing the link costs more than the model's schedule: the sender's
//! syscall and routing into the TUN device, the relay's wake-up and read, and
//! its write into the other TUN device, up to the receiving socket's queue
//! (tens of µs per direction on the project's 2-core machine, with the
//! relay's own lateness against its schedule). tc-netem on a veth pays only a
//! little of this. The relay first runs a `delay 1ms` model each way while one
//! thread sends UDP probes across (paced, several in flight) and another
//! echoes them; per direction, cost = median one-way time (the sender's clock
//! reading before `send` to the kernel's stamp of the datagram entering the
//! receiver's socket, [`crate::stamp`]) minus 1 ms. The receiver's wake-up
//! is not part of it: an endpoint pays that on any network, tc-netem's too.
//! Then the real models are installed and the relay schedules
//! each departure `cost` earlier, never before its arrival: a delay shorter
//! than the cost cannot be compensated in full (docs/link.md).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ns::NetNs;
use crate::relay::{Clock, DirShared};

/// Probes measured (after [`WARM_UP`] unmeasured ones), one every
/// [`SPACING`] each way through [`PROBE_DELAY_NS`]: ~20 ms in all.
const PROBES: usize = 64;
const WARM_UP: usize = 8;
const SPACING: Duration = Duration::from_micros(250);
/// The probes' link: a delay, so the relay schedules and waits as it does for
/// a real link, and its own lateness is part of what is measured.
pub(crate) const PROBE_DELAY_NS: u64 = 1_000_000;
pub(crate) const PROBE_SPEC: &str = "delay 1ms";
/// One probe's answer is awaited at most this long; the whole measurement at
/// most [`BUDGET`].
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
const BUDGET: Duration = Duration::from_secs(2);
/// A cost above this is not the path's own (a machine too busy to measure):
/// it is not applied.
pub const MAX_COST_NS: u64 = 1_000_000;
const PROBE_LEN: usize = 100;

/// What the probes measured, per direction (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathCost {
    pub up_ns: u64,
    pub down_ns: u64,
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Both directions' counts of written packets have caught up with the reads
/// (the relay flushes its counters after writing: wait, bounded, so the
/// restart that follows drops no late flush into the real counters).
fn settle(dirs: [&Arc<Mutex<DirShared>>; 2]) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(200) {
        let done = dirs.iter().all(|d| {
            let g = d.lock().unwrap_or_else(|p| p.into_inner());
            g.relay.packets_written + g.relay.write_errors >= g.relay.packets_read
        });
        if done {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Measure with the relay running [`PROBE_DELAY_NS`] models. Err: why not
/// (the link then runs uncompensated and says so).
pub(crate) fn measure(
    client_ns: &NetNs,
    server_ns: &NetNs,
    client_ip: IpAddr,
    server_ip: IpAddr,
    clock: Clock,
    up: &Arc<Mutex<DirShared>>,
    down: &Arc<Mutex<DirShared>>,
) -> Result<PathCost, String> {
    let bind = |ns: &NetNs, ip: IpAddr| {
        ns.try_run(move || UdpSocket::bind(SocketAddr::new(ip, 0)))
            .map_err(|e| format!("entering namespace {}: {e}", ns.label()))?
            .map_err(|e| format!("binding a probe socket on {ip}: {e}"))
    };
    let server = bind(server_ns, server_ip)?;
    let client = bind(client_ns, client_ip)?;
    let to = server.local_addr().map_err(|e| e.to_string())?;
    for s in [&server, &client] {
        s.set_read_timeout(Some(PROBE_TIMEOUT))
            .map_err(|e| e.to_string())?;
        // Arrival is when the kernel queued the datagram: the reader's
        // wake-up is the endpoint's cost on any network, not the path's.
        crate::stamp::enable(s).map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
    }
    let total = PROBES + WARM_UP;
    // The echo: stamps arrival and departure, bounded by count and time.
    let echo = std::thread::Builder::new()
        .name("path-cost-echo".into())
        .spawn(move || {
            let t0 = Instant::now();
            let mut buf = [0u8; PROBE_LEN];
            let mut answered = 0;
            while answered < total && t0.elapsed() < BUDGET {
                let Ok(got) = crate::stamp::recv(&server, &mut buf, false) else {
                    continue;
                };
                let arrived = got.arrival_on(clock.now_ns());
                let (n, Some(from)) = (got.len, got.from) else {
                    continue;
                };
                if n < 24 {
                    continue;
                }
                buf[8..16].copy_from_slice(&arrived.to_le_bytes());
                buf[16..24].copy_from_slice(&clock.now_ns().to_le_bytes());
                let _ = server.send_to(&buf[..n], from);
                answered += 1;
            }
        })
        .map_err(|e| format!("starting the probe echo: {e}"))?;
    // Paced, several in flight: the relay, the echo and this thread wake
    // and sleep as they do under a real flow (cross-core wake-ups included),
    // not in the lock-step of a ping-pong.
    let sender = client.try_clone().map_err(|e| e.to_string())?;
    let send = std::thread::Builder::new()
        .name("path-cost-send".into())
        .spawn(move || {
            let t0 = Instant::now();
            for i in 0..total {
                let due = SPACING * i as u32;
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                let mut probe = [0u8; PROBE_LEN];
                probe[..8].copy_from_slice(&clock.now_ns().to_le_bytes());
                probe[24..32].copy_from_slice(&(i as u64).to_le_bytes());
                let _ = sender.send_to(&probe, to);
            }
        })
        .map_err(|e| format!("starting the probe sender: {e}"))?;
    let (mut ups, mut downs) = (Vec::with_capacity(PROBES), Vec::with_capacity(PROBES));
    let t0 = Instant::now();
    let mut buf = [0u8; PROBE_LEN];
    let mut seen = 0;
    while seen < total && t0.elapsed() < BUDGET {
        let Ok(got) = crate::stamp::recv(&client, &mut buf, false) else {
            break; // nothing for PROBE_TIMEOUT: the rest are lost
        };
        let (n, back) = (got.len, got.arrival_on(clock.now_ns()));
        seen += 1;
        let word = |k: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[8 * k..8 * k + 8]);
            u64::from_le_bytes(w)
        };
        if n < 32 || word(3) < WARM_UP as u64 {
            continue;
        }
        let one_way = |from: u64, to: u64| to.saturating_sub(from).saturating_sub(PROBE_DELAY_NS);
        ups.push(one_way(word(0), word(1)));
        downs.push(one_way(word(2), back));
    }
    let _ = send.join();
    let _ = echo.join();
    if ups.len() < PROBES / 2 {
        return Err(format!(
            "{} of {PROBES} probes came back within {} ms",
            ups.len(),
            PROBE_TIMEOUT.as_millis()
        ));
    }
    settle([up, down]);
    let cost = PathCost {
        up_ns: median(&mut ups),
        down_ns: median(&mut downs),
    };
    if cost.up_ns.max(cost.down_ns) > MAX_COST_NS {
        return Err(format!(
            "measured {} µs up, {} µs down: above {} µs, the machine was too busy to measure the path",
            cost.up_ns / 1000,
            cost.down_ns / 1000,
            MAX_COST_NS / 1000
        ));
    }
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 2]), 3);
        assert_eq!(median(&mut []), 0);
    }
}
