//! Link-side flow metrics end to end: real TCP and UDP through the user-space
//! link, checked against what the applications sent and the link's delay.
//! Needs root (namespaces, TUN); elsewhere each test prints SKIPPED and passes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{client_udp, skip, tcp_client, tcp_server, udp_roundtrip, userspace, UdpEcho};
use quicbench_netem::flows::{FlowReport, FlowsReport, Handshake, Proto};
use quicbench_netem::{Backend, Link, LinkConfig, LinkSpec, RebindKind};

const MS: u64 = 1_000_000;

/// Tests that check times to ±1 ms hold the machine alone (libtest runs the
/// others in parallel; on 2 cores the endpoints would wait for a core, as
/// impair.rs found for its RTT check); the others share it.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|p| p.into_inner())
}

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|p| p.into_inner())
}

fn spec(s: &str) -> LinkSpec {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The report once the link is quiet: fates are recorded when a packet is
/// written, a moment after the application may already have read it, and
/// closing handshakes are still in flight when a transfer returns.
fn settled(link: &Link) -> FlowsReport {
    std::thread::sleep(Duration::from_millis(150));
    link.flows().expect("the user-space link measures flows")
}

fn flows_to(r: &FlowsReport, proto: Proto, server: SocketAddr) -> Vec<&FlowReport> {
    r.flows
        .iter()
        .filter(|f| f.protocol == proto && f.server == server)
        .collect()
}

/// What the link takes off a round trip as its own path cost, ns (0 when
/// it does not compensate).
fn path_cost_both_ways(link: &quicbench_netem::Link) -> u64 {
    link.path_cost().map_or(0, |c| c.up_ns + c.down_ns)
}

fn near(got: Option<u64>, want: u64, tol: u64, what: &str) {
    let g = got.unwrap_or_else(|| panic!("{what}: missing"));
    assert!(
        g.abs_diff(want) <= tol,
        "{what}: {:.3} ms, expected {:.3} ± {:.3} ms",
        g as f64 / 1e6,
        want as f64 / 1e6,
        tol as f64 / 1e6
    );
}

/// `t` (link clock), an event the application bracketed between the
/// instants `lo` and `hi` (a send: before and after the syscall; a delivery:
/// before the send that caused it and after the receive that saw it). 1 ms of
/// slack each side: the relay stamps a packet a few µs after the syscall that
/// made it, and the other core may run ahead. Milestones that wait for an
/// application thread are checked this way rather than against the link's
/// delay alone: on a loaded 2-core machine an endpoint's turnaround reached
/// 18 ms (three busy loops beside parallel builds), which is the endpoint's
/// time, not the link's.
fn bracketed(link: &Link, t: Option<u64>, lo: Instant, hi: Instant, what: &str) -> u64 {
    let t = t.unwrap_or_else(|| panic!("{what}: missing"));
    let at = |i: Instant| i.saturating_duration_since(link.clock().epoch()).as_nanos() as u64;
    let (lo, hi) = (at(lo).saturating_sub(MS), at(hi) + MS);
    assert!(
        (lo..=hi).contains(&t),
        "{what}: {:.3} ms on the link clock, outside the application's [{:.3}, {:.3}] ms",
        t as f64 / 1e6,
        lo as f64 / 1e6,
        hi as f64 / 1e6
    );
    t
}

/// When the client of [`tcp_client_timed`] did what (instants before/after).
struct TcpTimes {
    connect: (Instant, Instant),
    request: (Instant, Instant),
    /// The first read of the response returned.
    first_read: Instant,
}

/// [`common::tcp_client`], timed: connect, send the 8-byte request for
/// `down` bytes, read them, send `up` bytes, wait for the server's close.
fn tcp_client_timed(link: &Link, to: SocketAddr, down: u64, up: u64) -> TcpTimes {
    let c0 = Instant::now();
    let mut s = link
        .client_ns()
        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap();
    let c1 = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let r0 = Instant::now();
    s.write_all(&down.to_be_bytes()).unwrap();
    let r1 = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut first_read = None;
    while got < down {
        let k = s.read(&mut buf).unwrap();
        first_read.get_or_insert_with(Instant::now);
        assert!(k > 0, "server closed early after {got} of {down} bytes");
        got += k as u64;
    }
    s.write_all(&vec![0xa5u8; up as usize]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = s.read(&mut buf);
    TcpTimes {
        connect: (c0, c1),
        request: (r0, r1),
        first_read: first_read.unwrap_or_else(Instant::now),
    }
}

#[test]
fn tcp_and_udp_through_10ms_each_way() {
    if skip("tcp_and_udp_through_10ms_each_way") {
        return;
    }
    let _alone = alone();
    let link = userspace(LinkConfig::symmetric(spec("delay 10ms")));

    // TCP: the client asks for DOWN bytes (an 8-byte request), then uploads UP.
    const DOWN: u64 = 300_000;
    const UP: u64 = 100_000;
    let (taddr, server) = tcp_server(link.server_ns(), link.server_ip());
    let times = tcp_client_timed(&link, taddr, DOWN, UP);
    assert_eq!(server.join().unwrap(), UP);

    // UDP: ten request/response pairs of known sizes.
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let sock = client_udp(&link, link.client_ip());
    let (mut sent, mut got) = (0u64, 0u64);
    let mut first_exchange = None;
    for i in 0..10usize {
        let msg = vec![b'a' + i as u8; 100 + 10 * i];
        let t0 = Instant::now();
        let (from, body) = udp_roundtrip(&sock, echo.addr, &msg).expect("echo through the link");
        first_exchange.get_or_insert((t0, Instant::now()));
        sent += msg.len() as u64;
        got += (from.len() + 1 + body.len()) as u64;
    }
    let eaddr = echo.addr;
    drop(echo);

    let r = settled(&link);
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(!r.overflowed);
    assert_eq!(
        r.unattributed_packets, 0,
        "an idle link carries nothing else"
    );
    // One flow per 5-tuple: exactly these two.
    assert_eq!(r.flows.len(), 2, "{r:#?}");

    let tcp = flows_to(&r, Proto::Tcp, taddr);
    assert_eq!(tcp.len(), 1);
    let f = tcp[0];
    assert_eq!(f.client.ip(), link.client_ip());
    assert_eq!(f.up.delivered_payload_bytes, 8 + UP);
    assert_eq!(f.down.delivered_payload_bytes, DOWN);
    assert_eq!(f.up.retransmitted_bytes + f.down.retransmitted_bytes, 0);
    assert_eq!(f.up.dropped_loss_packets + f.down.dropped_loss_packets, 0);
    assert_eq!(f.up.offered_packets, f.up.delivered_packets);
    near(
        f.connect_ns(),
        20 * MS,
        MS,
        "TCP connect (SYN → SYN-ACK at the client)",
    );
    let t = f.tcp.as_ref().unwrap();
    let (c0, c1) = times.connect;
    let syn = bracketed(&link, t.syn_ns, c0, c1, "SYN");
    let syn_ack = bracketed(&link, t.syn_ack_ns, c0, c1, "SYN-ACK");
    near(Some(syn_ack - syn), 20 * MS, MS, "SYN → SYN-ACK");
    assert!(t.fin_up_ns.is_some() && t.fin_down_ns.is_some(), "{t:?}");
    let Some(Handshake::Tcp(h)) = f.handshake() else {
        panic!("no TCP handshake: {f:?}")
    };
    assert_eq!(h.syn_ns, syn);
    assert_eq!(h.syn_ack_after_ns, Some(syn_ack - syn));
    // The request leaves when the client writes it; the first response byte
    // reaches the client a round trip later at least, and before its read
    // returns.
    let (r0, r1) = times.request;
    let request = bracketed(
        &link,
        h.request_after_ns.map(|d| syn + d),
        r0,
        r1,
        "request",
    );
    let response = bracketed(
        &link,
        h.response_after_ns.map(|d| syn + d),
        r0,
        times.first_read,
        "first response byte",
    );
    // The link's clock sees a round trip shortened by the path cost it
    // takes off (link/path_cost.rs): the sockets see the full 20 ms.
    let rtt = 20 * MS - path_cost_both_ways(&link);
    assert!(response >= request + rtt, "{h:?}");
    assert!(f.completion_ns().unwrap() >= response - syn);
    assert_eq!(f.goodput_down.total(), DOWN);
    let overhead = f.wire_overhead().unwrap();
    assert!((1.0..1.2).contains(&overhead), "wire overhead {overhead}");

    let udp = flows_to(&r, Proto::Udp, eaddr);
    assert_eq!(udp.len(), 1);
    let u = udp[0];
    assert_eq!(u.client, sock.local_addr().unwrap());
    assert_eq!(u.up.delivered_payload_bytes, sent);
    assert_eq!(u.down.delivered_payload_bytes, got);
    assert_eq!((u.up.delivered_packets, u.down.delivered_packets), (10, 10));
    assert!(u.tcp.is_none());
    let (u0, u1) = first_exchange.unwrap();
    let first = bracketed(&link, u.up.first_offered_ns, u0, u1, "first UDP request");
    let reply = bracketed(&link, u.down.first_delivered_ns, u0, u1, "first UDP reply");
    assert_eq!(u.connect_ns(), Some(reply - first));
    assert!(reply - first >= rtt, "{u:?}");
}

#[test]
fn tcp_bulk_with_5pct_loss_shows_retransmissions() {
    if skip("tcp_bulk_with_5pct_loss_shows_retransmissions") {
        return;
    }
    let _shared = shared();
    let mut cfg = LinkConfig::symmetric(spec("delay 2ms loss 5%"));
    cfg.seed = 7;
    let link = userspace(cfg);
    const DOWN: u64 = 1 << 20;
    let (taddr, server) = tcp_server(link.server_ns(), link.server_ip());
    tcp_client(link.client_ns(), taddr, DOWN, 0);
    assert_eq!(server.join().unwrap(), 0);
    let r = settled(&link);
    let tcp = flows_to(&r, Proto::Tcp, taddr);
    assert_eq!(tcp.len(), 1, "{r:#?}");
    let f = tcp[0];
    let d = &f.down;
    eprintln!(
        "down: offered {} pkts / {} payload B, delivered {} B, lost {} pkts, retransmitted {} pkts / {} B ({:.2}%)",
        d.offered_packets,
        d.offered_payload_bytes,
        d.delivered_payload_bytes,
        d.dropped_loss_packets,
        d.retransmitted_packets,
        d.retransmitted_bytes,
        100.0 * d.retransmitted_share().unwrap()
    );
    assert!(d.dropped_loss_packets > 0);
    assert!(d.retransmitted_bytes > 0, "{d:?}");
    assert!(d.delivered_payload_bytes >= DOWN, "{d:?}");
    assert!(d.offered_payload_bytes >= DOWN + d.retransmitted_bytes);
    // Every byte is sent once as new data; everything else is a retransmission.
    assert_eq!(d.offered_payload_bytes - d.retransmitted_bytes, DOWN);
    assert!(f.retransmitted_share().unwrap() > 0.0);
    // The model's drops are the flow's drops (nothing else crossed the link).
    let k = link.counters();
    assert_eq!(
        d.dropped_loss_packets + f.up.dropped_loss_packets,
        k.down.model.dropped_loss + k.up.model.dropped_loss
    );
}

#[test]
fn quic_shaped_datagrams_counted_by_type() {
    if skip("quic_shaped_datagrams_counted_by_type") {
        return;
    }
    let _alone = alone();
    let link = userspace(LinkConfig::symmetric(spec("delay 10ms")));
    let srv = link
        .server_ns()
        .run(|| UdpSocket::bind(SocketAddr::new(link.server_ip(), 0)))
        .unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let saddr = srv.local_addr().unwrap();
    // A long header: first byte, version 1, empty connection IDs (and an
    // Initial's empty token), a Length covering the rest of the datagram,
    // then filler: one packet, nothing coalesced after it.
    let long = |first: u8, len: usize| {
        let mut d = vec![first, 0, 0, 0, 1, 0, 0];
        if first & 0x30 == 0 {
            d.push(0); // token length
        }
        let rest = len - d.len() - 2;
        d.extend_from_slice(&(0x4000 | rest as u16).to_be_bytes());
        d.resize(len, 0x11);
        d
    };
    let short = |len: usize| {
        let mut d = vec![0x43u8];
        d.resize(len, 0x22);
        d
    };
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Initial in, "Handshake" out; then five 1-RTT in, three 1-RTT out.
        let (_, from) = srv.recv_from(&mut buf).unwrap();
        srv.send_to(&long(0xe0, 600), from).unwrap();
        for i in 0..5 {
            srv.recv_from(&mut buf).unwrap();
            if i < 3 {
                srv.send_to(&short(300), from).unwrap();
            }
        }
    });
    let c = client_udp(&link, link.client_ip());
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    let i0 = Instant::now();
    c.send_to(&long(0xc3, 1200), saddr).unwrap();
    let i1 = Instant::now();
    c.recv_from(&mut buf).unwrap();
    let d0 = Instant::now();
    c.send_to(&short(100), saddr).unwrap();
    let d1 = Instant::now();
    for _ in 0..4 {
        c.send_to(&short(100), saddr).unwrap();
    }
    c.recv_from(&mut buf).unwrap();
    let r1 = Instant::now();
    for _ in 0..2 {
        c.recv_from(&mut buf).unwrap();
    }
    server.join().unwrap();

    let r = settled(&link);
    assert_eq!(r.flows.len(), 1, "{r:#?}");
    let f = &r.flows[0];
    assert_eq!(f.client, c.local_addr().unwrap());
    let q = f
        .quic
        .as_ref()
        .expect("a long header with version 1 makes it QUIC");
    assert_eq!(q.version, Some(1));
    assert_eq!((q.up.initial.offered, q.up.initial.delivered), (1, 1));
    assert_eq!(q.up.one_rtt.delivered, 5);
    assert_eq!(q.down.handshake.delivered, 1);
    assert_eq!(q.down.one_rtt.delivered, 3);
    assert_eq!(q.down.initial.delivered + q.up.handshake.delivered, 0);
    assert_eq!(q.up.zero_rtt.offered + q.up.retry.offered, 0);
    let Some(Handshake::Quic(h)) = f.handshake() else {
        panic!("no QUIC handshake: {f:?}")
    };
    assert!(!h.zero_rtt);
    let initial = bracketed(&link, Some(h.initial_ns), i0, i1, "client Initial");
    // Initial → server "Handshake" back (20 ms at least) → client 1-RTT →
    // server 1-RTT back (20 ms later at least).
    let data = bracketed(
        &link,
        h.client_data_after_ns.map(|d| initial + d),
        d0,
        d1,
        "client 1-RTT",
    );
    let rtt = 20 * MS - path_cost_both_ways(&link);
    assert!(data >= initial + rtt, "{h:?}");
    let one_rtt = bracketed(
        &link,
        h.server_one_rtt_after_ns.map(|d| initial + d),
        d0,
        r1,
        "server 1-RTT at the client",
    );
    assert!(one_rtt >= data + rtt, "{h:?}");
    assert_eq!(f.up.delivered_payload_bytes, 1200 + 5 * 100);
    assert_eq!(f.down.delivered_payload_bytes, 600 + 3 * 300);
}

#[test]
fn nat_rebinding_keeps_one_flow() {
    if skip("nat_rebinding_keeps_one_flow") {
        return;
    }
    let _shared = shared();
    let link = userspace(LinkConfig::default());
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let sock = client_udp(&link, link.client_ip());
    let mut seen = Vec::new();
    for i in 0..6u8 {
        if i == 3 {
            link.rebind_now(RebindKind::Port).unwrap();
        }
        let (from, _) = udp_roundtrip(&sock, echo.addr, &[i; 50]).expect("echo");
        seen.push(from);
    }
    drop(echo);
    // The server saw the client's port change...
    assert_ne!(seen[0], seen[5]);
    // ...the link saw one flow, on the client's own address.
    let r = settled(&link);
    assert_eq!(r.flows.len(), 1, "{r:#?}");
    let f = &r.flows[0];
    assert_eq!(f.client, sock.local_addr().unwrap());
    assert_eq!((f.up.delivered_packets, f.down.delivered_packets), (6, 6));
    assert_eq!(r.unattributed_packets, 0);
}

#[test]
fn reset_starts_a_new_phase() {
    if skip("reset_starts_a_new_phase") {
        return;
    }
    let _shared = shared();
    let link = userspace(LinkConfig::default());
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let sock = client_udp(&link, link.client_ip());
    udp_roundtrip(&sock, echo.addr, b"warm-up").expect("echo");
    std::thread::sleep(Duration::from_millis(20));
    let at = link.reset_flows().expect("user space measures flows");
    assert!(link.flows().unwrap().flows.is_empty());
    udp_roundtrip(&sock, echo.addr, b"measured").expect("echo");
    let r = settled(&link);
    assert_eq!(r.since_ns, at);
    assert_eq!(r.flows.len(), 1);
    assert_eq!(r.flows[0].up.delivered_payload_bytes, 8);
    assert!(r.flows[0].start_ns >= at);
}

#[test]
fn kernel_backend_has_no_flow_metrics() {
    if skip("kernel_backend_has_no_flow_metrics") {
        return;
    }
    // Unimpaired, the kernel backend is a plain veth pair (no netem needed).
    let cfg = LinkConfig {
        backend: Backend::Kernel,
        ..Default::default()
    };
    match Link::build(cfg) {
        Ok(link) => {
            assert!(link.flows().is_none());
            assert!(link.reset_flows().is_none());
        }
        Err(e) => eprintln!("SKIPPED: kernel_backend_has_no_flow_metrics: {e}"),
    }
}

#[test]
fn flows_off_when_max_flows_is_zero() {
    if skip("flows_off_when_max_flows_is_zero") {
        return;
    }
    let mut cfg = LinkConfig::default();
    cfg.flows.max_flows = 0;
    let link = userspace(cfg);
    assert!(link.flows().is_none());
}
