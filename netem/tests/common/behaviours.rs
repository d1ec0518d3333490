//! One list of link behaviours, each a function of the backend, so the kernel
//! (tc-netem on veth) and user-space (TUN relay) backends are held to the same
//! checks (tests/backends.rs runs each on both). Rates are judged per wire
//! packet against binomial bounds; every probe run is bounded in count and
//! time. Timing precision is not judged here: these also run in an emulated
//! VM (scripts/kernel-netem-vm.sh) where delay carries ~1 ms of overhead.
//!
//! Each check prints one `FIGURE` line (backend, behaviour, configured,
//! measured, bounds) that the VM script collects for docs/kernel-vm.md.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use quicbench_netem::link::kernel_netem_available;
use quicbench_netem::{Backend, Counters, Link, LinkConfig, LinkSpec};

use super::{udp_roundtrip_within, UdpEcho};

/// Set (to 1) inside the VM: a kernel-backend check that would skip fails
/// instead, so the VM run cannot pass by skipping.
pub const REQUIRE_ENV: &str = "QUICBENCH_REQUIRE_KERNEL_NETEM";

/// 4.5 standard deviations: a correct link fails one check in ~150,000.
const Z: f64 = 4.5;

fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

fn skip_or_fail(test: &str, why: &str) -> bool {
    assert!(!required(), "{test}: {REQUIRE_ENV}=1, yet {why}");
    // Past libtest's capture: a skip must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
    false
}

/// True when `backend` can run here; otherwise says loudly why not (and
/// fails under [`REQUIRE_ENV`]).
pub fn ready(backend: Backend, test: &str) -> bool {
    // Namespaces and TUN: the tests' one gate (a failure under
    // QUICBENCH_REQUIRE_NAMESPACES, which the VM sets too).
    if super::skip(test) {
        return skip_or_fail(test, "links cannot be built here (see the line above)");
    }
    if backend == Backend::Kernel {
        let (available, why) = kernel_netem_available();
        if !available {
            return skip_or_fail(test, &format!("kernel backend: {why}"));
        }
    }
    true
}

pub fn name(backend: Backend) -> &'static str {
    match backend {
        Backend::Kernel => "kernel",
        _ => "userspace",
    }
}

fn spec(s: &str) -> LinkSpec {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// A link impaired client → server by `up` only (the echo path back is clean).
/// On the kernel backend the veths' offloads must be off and verified: the
/// qdisc then sees one wire packet per datagram or segment.
pub fn build(backend: Backend, up: &str) -> Link {
    let mut cfg = LinkConfig::new(spec(up), LinkSpec::default());
    cfg.backend = backend;
    cfg.seed = 11;
    let link = Link::build(cfg).unwrap_or_else(|e| panic!("{} link [{up}]: {e}", name(backend)));
    assert_eq!(link.backend(), backend);
    if backend == Backend::Kernel {
        let off = link.offloads().expect("kernel links record their offloads");
        for end in [&off.client, &off.server] {
            assert!(end.verified(), "offloads not all off: {end:?}");
        }
    }
    link
}

/// Bytes a backend's rate accounting charges per IP packet beyond the IP
/// packet itself: netem on a veth sees the 14-byte Ethernet header, the
/// user-space model the bare IP packet (TUN).
pub fn framing(backend: Backend) -> usize {
    match backend {
        Backend::Kernel => 14,
        _ => 0,
    }
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn ns_since_epoch() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// One datagram as the receiver saw it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub seq: u32,
    pub sent_ns: u64,
    pub at_ns: u64,
}

/// The receiving stack's own drop counters (server namespace), to tell the
/// link's drops from the socket's.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snmp {
    pub udp_rcvbuf_errors: u64,
    pub udp_in_errors: u64,
    pub udp_csum_errors: u64,
    pub ip_in_hdr_errors: u64,
}

fn snmp(link: &Link) -> Snmp {
    let text = link
        .server_ns()
        .exec("cat", &["/proc/net/snmp"])
        .unwrap_or_default();
    let field = |proto: &str, f: &str| -> u64 {
        let mut rows = text.lines().filter(|l| l.starts_with(&format!("{proto}:")));
        let (Some(h), Some(v)) = (rows.next(), rows.next()) else {
            return 0;
        };
        h.split_whitespace()
            .zip(v.split_whitespace())
            .find(|(k, _)| *k == f)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    Snmp {
        udp_rcvbuf_errors: field("Udp", "RcvbufErrors"),
        udp_in_errors: field("Udp", "InErrors"),
        udp_csum_errors: field("Udp", "InCsumErrors"),
        ip_in_hdr_errors: field("Ip", "InHdrErrors"),
    }
}

/// Resolve the neighbours (ARP) and prove the path works before counting:
/// an ARP request lost to the link's own loss would otherwise hold or drop
/// the first probes. Bounded: 50 tries.
fn warm(link: &Link) {
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let c = super::client_udp(link, link.client_ip());
    for _ in 0..50 {
        if udp_roundtrip_within(&c, echo.addr, b"warm", Duration::from_millis(300)).is_some() {
            return;
        }
    }
    panic!(
        "no echo through the link in 50 tries: {:?}",
        link.counters()
    );
}

/// Send `n` datagrams of `payload` bytes client → server in bursts of
/// `burst` with `pause` between, and collect what arrives (until 1 s of
/// quiet, 60 s at most). Asserts the receiving socket dropped nothing, so
/// every missing datagram was dropped by the link. Returns the arrivals,
/// the up direction's counters over the run, and the receiver's stack drops.
pub fn probe(
    link: &Link,
    n: u32,
    payload: usize,
    burst: u32,
    pause: Duration,
) -> (Vec<Arrival>, Counters, Snmp) {
    assert!(payload >= 12);
    warm(link);
    let sink = link
        .server_ns()
        .run(|| UdpSocket::bind(SocketAddr::new(link.server_ip(), 0)))
        .expect("sink socket");
    // Room for every probe: the socket must not be what drops them.
    nix::sys::socket::setsockopt(
        &sink.as_fd(),
        nix::sys::socket::sockopt::RcvBufForce,
        &(8 << 20),
    )
    .expect("SO_RCVBUFFORCE (root)");
    sink.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let to = sink.local_addr().expect("sink address");
    let snmp0 = snmp(link);
    let before = link.counters().up.model;
    let _ = epoch();
    let recv = std::thread::spawn(move || {
        let limit = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < limit {
            let Ok((k, _)) = sink.recv_from(&mut buf) else {
                break;
            };
            let at_ns = ns_since_epoch();
            if k >= 12 {
                got.push(Arrival {
                    seq: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
                    sent_ns: u64::from_be_bytes(buf[4..12].try_into().unwrap_or([0; 8])),
                    at_ns,
                });
            }
        }
        got
    });
    let c = super::client_udp(link, link.client_ip());
    let mut msg = vec![0u8; payload];
    for i in 0..n {
        msg[..4].copy_from_slice(&i.to_be_bytes());
        msg[4..12].copy_from_slice(&ns_since_epoch().to_be_bytes());
        c.send_to(&msg, to).expect("send a probe");
        if burst > 0 && (i + 1) % burst == 0 && !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let arrivals = recv.join().expect("receiver thread");
    let after = link.counters().up.model;
    let snmp1 = snmp(link);
    let stack = Snmp {
        udp_rcvbuf_errors: snmp1.udp_rcvbuf_errors - snmp0.udp_rcvbuf_errors,
        udp_in_errors: snmp1.udp_in_errors - snmp0.udp_in_errors,
        udp_csum_errors: snmp1.udp_csum_errors - snmp0.udp_csum_errors,
        ip_in_hdr_errors: snmp1.ip_in_hdr_errors - snmp0.ip_in_hdr_errors,
    };
    assert_eq!(
        stack.udp_rcvbuf_errors, 0,
        "the receiving socket overflowed: the count would blame the link"
    );
    let d = Counters {
        packets_in: after.packets_in - before.packets_in,
        delivered: after.delivered - before.delivered,
        dropped_loss: after.dropped_loss - before.dropped_loss,
        dropped_queue: after.dropped_queue - before.dropped_queue,
        dropped_unattributed: after.dropped_unattributed - before.dropped_unattributed,
        duplicated: after.duplicated - before.duplicated,
        corrupted: after.corrupted - before.corrupted,
        reordered: after.reordered - before.reordered,
        ..Counters::default()
    };
    (arrivals, d, stack)
}

/// `k` of `n` within `Z` standard deviations of a binomial with a rate in
/// `[p_lo, p_hi]`; prints the FIGURE line.
pub fn binomial(
    backend: Backend,
    what: &str,
    configured: &str,
    k: u64,
    n: u64,
    p_lo: f64,
    p_hi: f64,
) {
    let nf = n as f64;
    let lo = nf * p_lo - Z * (nf * p_lo * (1.0 - p_lo)).sqrt();
    let hi = nf * p_hi + Z * (nf * p_hi * (1.0 - p_hi)).sqrt();
    eprintln!(
        "FIGURE {} {what}: configured {configured}, measured {k}/{n} = {:.2}%, bounds [{:.2}%, {:.2}%] ({Z} sd)",
        name(backend),
        100.0 * k as f64 / nf,
        100.0 * lo.max(0.0) / nf,
        100.0 * hi / nf
    );
    let kf = k as f64;
    assert!(
        lo <= kf && kf <= hi,
        "{} {what}: {k} of {n} outside [{lo:.1}, {hi:.1}]",
        name(backend)
    );
}

/// How many of each sequence number arrived.
fn tally(arrivals: &[Arrival]) -> HashMap<u32, u32> {
    let mut m = HashMap::new();
    for a in arrivals {
        *m.entry(a.seq).or_insert(0) += 1;
    }
    m
}

/// Kernel counters also see what the kernel sends itself (an ARP refresh):
/// allow that many extra packets on the kernel backend.
const KERNEL_EXTRA: u64 = 3;

fn close(backend: Backend, got: u64, want: u64) -> bool {
    match backend {
        Backend::Kernel => (want..=want + KERNEL_EXTRA).contains(&got),
        _ => got == want,
    }
}

// ---------------------------------------------------------------- behaviours

/// `loss 10%`: the fraction of probes lost; the counters see every probe and
/// attribute the drops (user space: loss; kernel: tc's one `dropped`
/// figure, unattributed, since the spec has a loss model).
pub fn loss_rate(backend: Backend) {
    let link = build(backend, "loss 10%");
    let n = 3000;
    let (arr, c, _) = probe(&link, n, 100, 20, Duration::from_millis(10));
    let t = tally(&arr);
    assert!(t.values().all(|&k| k == 1), "loss duplicated a probe");
    let lost = u64::from(n) - t.len() as u64;
    binomial(backend, "loss", "10%", lost, n.into(), 0.10, 0.10);
    assert!(close(backend, c.packets_in, n.into()), "{c:?}");
    match backend {
        Backend::Kernel => {
            assert_eq!(c.dropped_loss, 0, "kernel: tc cannot split drops: {c:?}");
            assert!(close(backend, c.dropped_unattributed, lost), "{c:?}");
        }
        _ => {
            assert_eq!(c.dropped_loss, lost, "{c:?}");
            assert_eq!(c.dropped_queue + c.dropped_unattributed, 0, "{c:?}");
        }
    }
}

/// `duplicate 10%`: the fraction of probes that arrive twice, none lost.
pub fn duplicate_rate(backend: Backend) {
    let link = build(backend, "duplicate 10%");
    let n = 3000;
    let (arr, c, _) = probe(&link, n, 100, 20, Duration::from_millis(10));
    let t = tally(&arr);
    assert_eq!(t.len(), n as usize, "duplication lost probes: {c:?}");
    assert!(t.values().all(|&k| k <= 2), "a probe arrived 3 times");
    let dups = (arr.len() - t.len()) as u64;
    binomial(backend, "duplicate", "10%", dups, n.into(), 0.10, 0.10);
    if backend != Backend::Kernel {
        assert_eq!(c.duplicated, dups, "{c:?}");
    }
}

/// `corrupt 10%`: a corrupted probe fails its checksum at the receiver, so
/// the fraction not delivered is the corruption rate. netem flips a bit of
/// the Ethernet frame: a flip in the 14-byte header may not be caught (a
/// changed source MAC is delivered), so the kernel's lower bound allows it.
pub fn corrupt_rate(backend: Backend) {
    let link = build(backend, "corrupt 10%");
    let n = 3000;
    let payload = 1000;
    let (arr, c, stack) = probe(&link, n, payload, 20, Duration::from_millis(10));
    let t = tally(&arr);
    assert!(t.values().all(|&k| k == 1));
    let bad = u64::from(n) - t.len() as u64;
    let ip_len = (20 + 8 + payload) as f64;
    let p_lo = 0.10 * (1.0 - framing(backend) as f64 / (ip_len + framing(backend) as f64));
    binomial(backend, "corrupt", "10%", bad, n.into(), p_lo, 0.10);
    eprintln!(
        "{} corrupt: receiver stack counted udp csum errors {}, ip header errors {}; link counters {c:?}",
        name(backend),
        stack.udp_csum_errors,
        stack.ip_in_hdr_errors
    );
    // The receiving stack, not the link, dropped them: checksums failed.
    assert!(
        stack.udp_csum_errors + stack.ip_in_hdr_errors + stack.udp_in_errors > 0,
        "{stack:?}"
    );
    if backend != Backend::Kernel {
        assert!(c.corrupted >= bad, "{c:?}");
    }
}

/// `delay 50ms reorder 25%`: a quarter of the probes skip the delay (netem's
/// reordering, gap 1) and overtake the delayed ones; none is lost. A probe
/// counts as reordered when an earlier-sent probe arrives after it: with ~1
/// probe a ms, ~50 delayed ones are always in flight, so this misses none and
/// needs no clock (the VM's delays carry milliseconds of overhead).
pub fn reorder_rate(backend: Backend) {
    let link = build(backend, "delay 50ms reorder 25%");
    let n = 1500;
    let (arr, c, _) = probe(&link, n, 100, 5, Duration::from_millis(5));
    let t = tally(&arr);
    assert_eq!(t.len(), n as usize, "reordering lost probes: {c:?}");
    // Smallest sequence number arriving at or after each position.
    let mut later_min = vec![u32::MAX; arr.len() + 1];
    for i in (0..arr.len()).rev() {
        later_min[i] = later_min[i + 1].min(arr[i].seq);
    }
    let overtook = (0..arr.len())
        .filter(|&i| later_min[i + 1] < arr[i].seq)
        .count() as u64;
    let fast = arr
        .iter()
        .filter(|a| a.at_ns.saturating_sub(a.sent_ns) < 25_000_000)
        .count();
    eprintln!(
        "{} reorder: {overtook} probes overtook an earlier one, {fast} took under 25 ms",
        name(backend)
    );
    binomial(backend, "reorder", "25%", overtook, n.into(), 0.25, 0.25);
    if backend != Backend::Kernel {
        // A reordered probe with no delayed one in flight (the first, or
        // after the sender stalled 50 ms in an emulated VM: seen once) cannot
        // overtake: allow 1%.
        assert!(
            c.reordered >= overtook && c.reordered - overtook <= u64::from(n) / 100,
            "model reordered {}, {overtook} overtook: {c:?}",
            c.reordered
        );
    }
}

/// `rate 10mbit`: a standing queue (900 probes of 1200 bytes offered at
/// ~2000 a second, twice the link's ~1000, peaking near 450, under the
/// 1000-packet limit) drains at the configured rate within 2%, in the bytes
/// the backend charges per packet ([`framing`]). Not all at once: in the
/// emulated VM the user-space relay could not empty its TUN device's queue
/// (500) fast enough, which dropped 142 of 900 before the link.
pub fn rate_10mbit(backend: Backend) {
    let link = build(backend, "rate 10mbit");
    let n = 900;
    let payload = 1200;
    let (arr, c, _) = probe(&link, n, payload, 40, Duration::from_millis(20));
    assert_eq!(arr.len(), n as usize, "the queue dropped probes: {c:?}");
    // The departure spacing: the least-squares slope of arrival time over
    // arrival index, from the 100th on (the queue standing by then). A slope,
    // not first-to-last: in an emulated VM a relay that starts late writes
    // a catch-up batch, which would shorten a first-to-last span.
    let pts: Vec<(f64, f64)> = arr[100..]
        .iter()
        .enumerate()
        .map(|(i, a)| (i as f64, a.at_ns as f64 / 1e9))
        .collect();
    let m = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
    let (mx, my) = (sx / m, sy / m);
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |(a, b), p| {
        (a + (p.0 - mx) * (p.1 - my), b + (p.0 - mx) * (p.0 - mx))
    });
    let spacing_s = sxy / sxx;
    let wire = (20 + 8 + payload + framing(backend)) as f64;
    let mbps = wire * 8.0 / spacing_s / 1e6;
    let ip_mbps = (wire - framing(backend) as f64) * 8.0 / spacing_s / 1e6;
    eprintln!(
        "FIGURE {} rate: configured 10 Mbit/s, measured {mbps:.3} Mbit/s on the wire ({} B charged a packet), {ip_mbps:.3} Mbit/s of IP packets, bounds [9.8, 10.2]",
        name(backend),
        wire
    );
    assert!((9.8..=10.2).contains(&mbps), "{mbps} Mbit/s");
}

/// 200 probes at once into `spec`: how many never arrived, and the up
/// direction's counters (one FIGURE line).
fn burst(backend: Backend, spec: &str, what: &str) -> (u64, Counters) {
    let n = 200;
    let link = build(backend, spec);
    let (arr, c, _) = probe(&link, n, 1200, 0, Duration::ZERO);
    let missing = u64::from(n) - arr.len() as u64;
    eprintln!(
        "FIGURE {} {what}, 200-probe burst at 1 Mbit/s: {missing} missing, counters queue {} loss {} unattributed {}",
        name(backend),
        c.dropped_queue,
        c.dropped_loss,
        c.dropped_unattributed
    );
    (missing, c)
}

/// A burst into a short rate-limited queue: the overflow is counted as queue
/// drops, not link loss, and the receiver misses exactly those. With a loss
/// model as well, user space splits the two; tc has one `dropped` figure,
/// which the kernel backend leaves unattributed (never loss).
pub fn queue_drops_are_not_loss(backend: Backend) {
    let (missing, c) = burst(backend, "delay 5ms rate 1mbit limit 20", "queue: limit 20");
    assert!(missing > 100, "a 20-packet queue held 200? {c:?}");
    // tc's counters also see what the kernel sends itself during the burst
    // (in CI's VM once, a 201st packet dropped as well): `close` allows it.
    assert!(close(backend, c.dropped_queue, missing), "{c:?}");
    assert_eq!(c.dropped_loss + c.dropped_unattributed, 0, "{c:?}");

    let (missing, c) = burst(
        backend,
        "loss 20% delay 5ms rate 1mbit limit 20",
        "queue+loss: loss 20% limit 20",
    );
    match backend {
        Backend::Kernel => {
            assert_eq!(c.dropped_loss + c.dropped_queue, 0, "{c:?}");
            assert!(close(backend, c.dropped_unattributed, missing), "{c:?}");
        }
        _ => {
            assert!(c.dropped_loss > 0 && c.dropped_queue > 0, "{c:?}");
            assert_eq!(c.dropped_loss + c.dropped_queue, missing, "{c:?}");
        }
    }
}

/// The NAT checks of tests/common/nat.rs on a delayed link (on the kernel
/// backend: nftables SNAT and the netem qdisc together).
pub fn nat_rebinding(backend: Backend) {
    // Rebinds at 6 and 12 s: the link clock starts before the link is set
    // up, and in the emulated VM a kernel link took up to 4.1 s to set up
    // (ip, tc, ethtool, each an exec). That they fire on time is a host-only
    // check (netem/tests/link.rs, kernel.rs: within 20 ms); in the VM a
    // kernel rebind runs `nft` (~0.4-1.4 s there) and one fired 805 ms late.
    // Here: they fire, in order, within 2 s, and a live UDP flow sees each.
    let mut cfg = super::nat::schedule_config_at(6000);
    cfg.up = spec("delay 5ms");
    cfg.down = spec("delay 5ms");
    cfg.backend = backend;
    let link = Link::build(cfg).expect("link with a NAT schedule");
    let ready_ms = link.now_ns() / 1_000_000;
    super::nat::scheduled_rebinds_at(&link, 6000, 2000);
    let ev = link.rebind_events();
    eprintln!(
        "FIGURE {} nat-schedule: link ready at {ready_ms} ms; rebinds due at 6000 and 12000 ms fired at {:?} ms",
        name(backend),
        ev.iter().map(|e| e.at_ns / 1_000_000).collect::<Vec<_>>()
    );
    drop(link);
    let link = build(backend, "delay 5ms");
    super::nat::rebinding_on_demand(&link, backend != Backend::Kernel);
    drop(link);
    let link = build(backend, "delay 5ms");
    super::nat::port_rebind_breaks_tcp(&link);
    eprintln!(
        "FIGURE {} nat: port/address rebinds v4+v6 on demand, 2 scheduled rebinds seen by a live UDP flow, TCP broken by a port rebind",
        name(backend)
    );
}
