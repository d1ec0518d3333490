//! The user-space link over real namespaces and TUN devices: UDP and TCP both
//! ways (IPv4 and IPv6), several client addresses, counters, NAT rebinding,
//! pcap capture.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};

use common::{skip, tcp_client, tcp_server, udp_roundtrip, userspace, UdpEcho};
use quicbench_netem::link::addr;
use quicbench_netem::{Link, LinkConfig, RebindKind};

use common::client_udp;

#[test]
fn udp_crosses_both_ways_v4_and_v6() {
    if skip("udp_crosses_both_ways_v4_and_v6") {
        return;
    }
    let link = userspace(LinkConfig::default());
    assert_eq!(link.backend().to_string(), "userspace");
    for (cip, sip) in [
        (link.client_ip(), link.server_ip()),
        (link.client_ip6(), link.server_ip6()),
    ] {
        let echo = UdpEcho::start(link.server_ns(), sip);
        let c = client_udp(&link, cip);
        for i in 0..20u32 {
            let msg = format!("hello {i} over {sip}");
            let (seen, back) = udp_roundtrip(&c, echo.addr, msg.as_bytes()).expect("echo");
            assert_eq!(back, msg.as_bytes());
            let seen: SocketAddr = seen.parse().unwrap();
            assert_eq!(
                seen,
                c.local_addr().unwrap(),
                "the server sees the client as it is"
            );
        }
    }
    // Server-initiated traffic reaches a client socket too.
    let c = client_udp(&link, link.client_ip());
    let s = link
        .server_ns()
        .run(|| UdpSocket::bind(SocketAddr::new(link.server_ip(), 0)))
        .unwrap();
    s.send_to(b"from server", c.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from server");
    assert_eq!(from, s.local_addr().unwrap());

    let k = link.counters();
    assert!(k.up.model.packets_in >= 40, "{k:?}");
    assert!(k.down.model.packets_in >= 41, "{k:?}");
    assert_eq!(k.up.relay.packets_written, k.up.model.delivered, "{k:?}");
    assert_eq!(k.up.relay.write_errors, 0);
    // Every packet was dated when the sender's stack handed it to the
    // device (`tap.rs`), v4 and v6, as root and as an ordinary user.
    for d in [&k.up, &k.down] {
        assert_eq!(d.relay.arrivals_tapped, d.relay.packets_read, "{d:?}");
    }
    let json = serde_json::to_string(&k).unwrap();
    assert!(json.contains("\"up\"") && json.contains("lateness_p99_ns"));
}

#[test]
fn udp_is_isolated_from_the_root_namespace() {
    if skip("udp_is_isolated_from_the_root_namespace") {
        return;
    }
    let link = userspace(LinkConfig::default());
    // The server address exists only inside the server namespace.
    assert!(UdpSocket::bind(SocketAddr::new(link.server_ip(), 0)).is_err());
    let out = link
        .client_ns()
        .exec("ip", &["-o", "addr", "show", "dev", "qbc"])
        .unwrap();
    assert!(
        out.contains("198.18.0.1/32") && out.contains("2001:2::1/128"),
        "{out}"
    );
    let out = link
        .client_ns()
        .exec("ip", &["link", "show", "dev", "qbc"])
        .unwrap();
    assert!(out.contains("mtu 1500"), "{out}");
}

#[test]
fn tcp_bulk_both_ways_v4_and_v6() {
    if skip("tcp_bulk_both_ways_v4_and_v6") {
        return;
    }
    let link = userspace(LinkConfig::default());
    for (cip, sip) in [
        (link.client_ip(), link.server_ip()),
        (link.client_ip6(), link.server_ip6()),
    ] {
        let _ = cip;
        let (addr, server) = tcp_server(link.server_ns(), sip);
        let (d, u) = tcp_client(link.client_ns(), addr, 8 << 20, 8 << 20);
        assert_eq!(server.join().unwrap(), 8 << 20);
        eprintln!("tcp {sip}: 8 MiB down in {d:?}, 8 MiB up in {u:?}");
    }
    let k = link.counters();
    assert!(
        k.up.model.bytes_in > 8 << 20 && k.down.model.bytes_in > 8 << 20,
        "{k:?}"
    );
}

#[test]
fn several_client_addresses_and_custom_mtu() {
    if skip("several_client_addresses_and_custom_mtu") {
        return;
    }
    let link = userspace(LinkConfig {
        client_addrs: 3,
        mtu: 9000,
        ..Default::default()
    });
    assert_eq!(link.client_ips_v4().len(), 3);
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    for ip in link.client_ips_v4() {
        let c = client_udp(&link, IpAddr::V4(ip));
        let (seen, _) = udp_roundtrip(&c, echo.addr, b"which address?").unwrap();
        assert_eq!(seen.parse::<SocketAddr>().unwrap().ip(), IpAddr::V4(ip));
    }
    let echo6 = UdpEcho::start(link.server_ns(), link.server_ip6());
    let c6 = client_udp(&link, IpAddr::V6(link.client_ips_v6()[2]));
    assert!(udp_roundtrip(&c6, echo6.addr, b"v6").is_some());
    // A jumbo datagram crosses whole.
    let c = client_udp(&link, link.client_ip());
    let big = vec![7u8; 8500];
    let (_, back) = udp_roundtrip(&c, echo.addr, &big).unwrap();
    assert_eq!(back.len(), 8500);
    assert!(link.counters().up.model.bytes_in >= 8500 + 28);
    let out = link
        .server_ns()
        .exec("ip", &["link", "show", "dev", "qbs"])
        .unwrap();
    assert!(out.contains("mtu 9000"), "{out}");
}

#[test]
fn bad_configs_are_refused() {
    let cfg = LinkConfig {
        mtu: 1000,
        ..Default::default()
    };
    assert!(quicbench_netem::Link::build(cfg)
        .unwrap_err()
        .to_string()
        .contains("mtu"));
    let cfg = LinkConfig {
        client_addrs: 0,
        ..Default::default()
    };
    assert!(quicbench_netem::Link::build(cfg).is_err());
    let cfg = LinkConfig {
        backend: quicbench_netem::Backend::Kernel,
        pcap_dir: Some("/nonexistent".into()),
        ..Default::default()
    };
    assert!(quicbench_netem::Link::build(cfg)
        .unwrap_err()
        .to_string()
        .contains("user-space"));
}

#[test]
fn nat_port_and_address_rebinding_on_demand() {
    if skip("nat_port_and_address_rebinding_on_demand") {
        return;
    }
    common::nat::rebinding_on_demand(&userspace(LinkConfig::default()), true);
}

#[test]
fn nat_scheduled_rebinds_change_a_live_udp_flow() {
    if skip("nat_scheduled_rebinds_change_a_live_udp_flow") {
        return;
    }
    common::nat::scheduled_rebinds(&userspace(common::nat::schedule_config()));
}

#[test]
fn nat_port_rebind_breaks_a_tcp_connection_like_a_real_nat() {
    if skip("nat_port_rebind_breaks_a_tcp_connection_like_a_real_nat") {
        return;
    }
    common::nat::port_rebind_breaks_tcp(&userspace(LinkConfig::default()));
}

#[test]
fn pcap_captures_both_directions_before_and_after() {
    if skip("pcap_captures_both_directions_before_and_after") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = userspace(LinkConfig {
        pcap_dir: Some(dir.path().join("cap")),
        ..Default::default()
    });
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let c = client_udp(&link, link.client_ip());
    for i in 0..5 {
        udp_roundtrip(&c, echo.addr, format!("cap {i}").as_bytes()).unwrap();
    }
    link.rebind_now(RebindKind::Address).unwrap();
    udp_roundtrip(&c, echo.addr, b"cap nat").unwrap();
    drop(echo);
    drop(link); // joins the relay, which flushes the files
    let read = |n: &str| quicbench_netem::pcap::read_file(&dir.path().join("cap").join(n)).unwrap();
    let (ui, uo, di, dout) = (
        read("up-in.pcap"),
        read("up-out.pcap"),
        read("down-in.pcap"),
        read("down-out.pcap"),
    );
    let udp_from = |recs: &[quicbench_netem::pcap::Record], src: [u8; 4]| {
        recs.iter()
            .filter(|r| r.data[0] >> 4 == 4 && r.data[9] == 17 && r.data[12..16] == src)
            .count()
    };
    assert_eq!(udp_from(&ui, [198, 18, 0, 1]), 6);
    assert_eq!(
        udp_from(&uo, [198, 18, 0, 1]),
        5,
        "the last one left translated"
    );
    assert_eq!(udp_from(&uo, [198, 19, 0, 1]), 1);
    assert_eq!(udp_from(&di, [198, 18, 1, 1]), 6);
    assert_eq!(udp_from(&dout, [198, 18, 1, 1]), 6);
    // The translated packet going down was addressed to the NAT address and
    // left translated back to the client.
    assert!(di
        .iter()
        .any(|r| r.data.len() > 20 && r.data[16..20] == [198, 19, 0, 1]));
    assert!(dout
        .iter()
        .all(|r| r.data[0] >> 4 != 4 || r.data[16..20] == [198, 18, 0, 1]));
    for r in ui.iter().chain(&uo).chain(&di).chain(&dout) {
        if let Some(h) = quicbench_netem::nat::parse(&r.data) {
            let _ = h;
            assert!(
                quicbench_netem::nat::checksums_ok(&r.data),
                "bad checksum in capture"
            );
        }
    }
    // Timestamps are wall-clock ns, increasing within a file.
    assert!(ui.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(ui[0].ts_ns < now && ui[0].ts_ns > now - 60_000_000_000);
    // tshark, when installed, reads the files.
    match std::process::Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join("cap/up-out.pcap"))
        .arg("-T")
        .arg("fields")
        .arg("-e")
        .arg("ip.src")
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("198.19.0.1") && text.contains("198.18.0.1"),
                "{text}"
            );
        }
        _ => eprintln!("tshark not installed: pcap checked with the built-in reader only"),
    }
}

#[test]
fn addresses_are_in_benchmarking_ranges() {
    for i in 0..addr::MAX_CLIENT_ADDRS {
        let a = addr::client_v4(i).octets();
        assert_eq!(a[..3], [198, 18, 0]);
        assert_eq!(addr::client_v6(i).segments()[..4], [0x2001, 2, 0, 0]);
    }
}

#[test]
fn kernel_backend_without_netem_fails_clearly() {
    let (available, why) = quicbench_netem::link::kernel_netem_available();
    if available {
        eprintln!(
            "SKIPPED: kernel_backend_without_netem_fails_clearly: this kernel has netem ({why})"
        );
        return;
    }
    if skip("kernel_backend_without_netem_fails_clearly") {
        return;
    }
    // An impaired link needs sch_netem: a clear error naming it.
    let spec: quicbench_netem::LinkSpec = "delay 10ms".parse().unwrap();
    let mut cfg = LinkConfig::new(spec.clone(), spec);
    cfg.backend = quicbench_netem::Backend::Kernel;
    let e = quicbench_netem::Link::build(cfg).unwrap_err().to_string();
    assert!(e.contains("netem"), "{e}");
    // Without impairment the kernel backend is a plain veth pair (no qdisc),
    // which works on any kernel: the reference the relay bench compares with.
    let cfg = LinkConfig {
        backend: quicbench_netem::Backend::Kernel,
        ..Default::default()
    };
    let plain = quicbench_netem::Link::build(cfg).expect("a plain veth link builds without netem");
    drop(plain);
    // Auto picks user space here and says why.
    let link = userspace(LinkConfig::default());
    let (b, reason) = quicbench_netem::link::choose_backend(quicbench_netem::Backend::Auto);
    assert_eq!(b, quicbench_netem::Backend::UserSpace);
    assert!(reason.contains("netem"), "{reason}");
    drop(link);
}

#[test]
fn link_is_send_and_sync() {
    // The coordinator shares a Link between threads (Arc<Link>).
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<quicbench_netem::Link>();
    assert_send_sync::<quicbench_netem::NetNs>();
}

/// Each direction records the sojourn and the queueing its packets met: a
/// burst up a 10 Mbit/s link queues there; the echoes come back spaced by the
/// bottleneck and do not queue down.
#[test]
fn relay_records_sojourn_and_queueing_per_direction() {
    if skip("relay_records_sojourn_and_queueing_per_direction") {
        return;
    }
    let spec: quicbench_netem::LinkSpec = "delay 5ms rate 10mbit".parse().unwrap();
    let link = userspace(LinkConfig::symmetric(spec));
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let c = client_udp(&link, link.client_ip());
    let msg = vec![1u8; 1200];
    for _ in 0..40 {
        c.send_to(&msg, echo.addr).unwrap();
    }
    let mut buf = vec![0u8; 2048];
    let mut got = 0;
    while got < 40 && c.recv_from(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, 40);
    let k = link.counters();
    let (up, down) = (&k.up.relay, &k.down.relay);
    eprintln!("up {up:?}\ndown {down:?}");
    // 1228-byte IP packets at 10 Mbit/s: ~0.98 ms each; the last of 40 waits ~38 ms.
    assert!(up.sojourn_p50_ns >= 5_000_000, "{up:?}");
    assert!(up.queueing_max_ns > 30_000_000, "{up:?}");
    assert!(
        up.sojourn_max_ns >= up.queueing_max_ns + 5_000_000,
        "{up:?}"
    );
    assert!(down.sojourn_p50_ns >= 5_000_000, "{down:?}");
    assert!(down.queueing_p99_ns < 5_000_000, "{down:?}");
    assert_eq!(up.queued, 0, "nothing left in the queue: {up:?}");
}

/// The path's fixed cost is measured when the link is built, leaves nothing in
/// the counters, flows or captures, and is taken off each departure: in the
/// capture, a packet leaves the relay `delay − cost` after it came in (plus
/// the relay's own lateness), never earlier.
#[test]
fn the_path_cost_is_measured_at_build_and_taken_off_departures() {
    if skip("the_path_cost_is_measured_at_build_and_taken_off_departures") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec: quicbench_netem::LinkSpec = "delay 5ms".parse().unwrap();
    let link = userspace(LinkConfig {
        pcap_dir: Some(dir.path().join("cap")),
        ..LinkConfig::symmetric(spec)
    });
    let cost = link.path_cost().expect("the path cost is measured");
    eprintln!("path cost {cost:?}");
    let max = quicbench_netem::link::path_cost::MAX_COST_NS;
    assert!(cost.up_ns > 0 && cost.up_ns <= max, "{cost:?}");
    assert!(cost.down_ns > 0 && cost.down_ns <= max, "{cost:?}");
    let k = link.counters();
    for (d, c) in [(&k.up, cost.up_ns), (&k.down, cost.down_ns)] {
        assert_eq!(d.relay.path_compensation_ns, c);
        assert_eq!((d.relay.packets_read, d.model.packets_in), (0, 0), "{d:?}");
    }
    let flows = link.flows().expect("flow metrics are on");
    assert!(
        flows.flows.is_empty() && flows.flows_known == 0,
        "{flows:?}"
    );

    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let c = client_udp(&link, link.client_ip());
    for i in 0..40 {
        udp_roundtrip(&c, echo.addr, format!("probe {i}").as_bytes()).unwrap();
    }
    drop(echo);
    drop(link); // flushes the captures
    let read = |n: &str| quicbench_netem::pcap::read_file(&dir.path().join("cap").join(n)).unwrap();
    let (inp, out) = (read("up-in.pcap"), read("up-out.pcap"));
    assert_eq!((inp.len(), out.len()), (40, 40), "only the test's packets");
    let held: Vec<i64> = inp
        .iter()
        .zip(&out)
        .map(|(a, b)| b.ts_ns as i64 - a.ts_ns as i64)
        .collect();
    let min = *held.iter().min().unwrap();
    let target = 5_000_000 - cost.up_ns as i64;
    eprintln!("held up: min {min} ns, scheduled {target} ns");
    assert!(min >= target, "a packet left before delay − cost: {held:?}");
    if cost.up_ns > 50_000 {
        assert!(
            min < 5_000_000,
            "no packet left earlier than the uncompensated delay: {held:?}"
        );
    }
}

#[test]
fn the_path_cost_can_be_turned_off() {
    if skip("the_path_cost_can_be_turned_off") {
        return;
    }
    let link = userspace(LinkConfig {
        compensate_path: false,
        ..Default::default()
    });
    let why = link.path_cost().expect_err("not measured");
    assert!(why.contains("compensate_path"), "{why}");
    assert_eq!(link.counters().up.relay.path_compensation_ns, 0);
}

#[test]
fn the_relay_can_be_pinned_to_a_cpu() {
    if skip("the_relay_can_be_pinned_to_a_cpu") {
        return;
    }
    let cpus = quicbench_netem::cpu::allowed_cpus();
    let last = *cpus.last().expect("at least one CPU");
    let link = userspace(LinkConfig {
        relay_cpu: Some(last),
        ..Default::default()
    });
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let c = client_udp(&link, link.client_ip());
    udp_roundtrip(&c, echo.addr, b"pinned").expect("a round trip");
    let k = link.counters();
    assert_eq!(k.up.relay.pinned_cpu, Some(last as u32), "{:?}", k.up.relay);
    assert_eq!(k.down.relay.pinned_cpu, Some(last as u32));
    // Each relay thread may run on that CPU only (its affinity, read back).
    let mut seen = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "relay-up" || comm.trim() == "relay-down" {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap();
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(str::trim)
                .unwrap_or_default()
                .to_string();
            // Other tests' links run beside this one, unpinned.
            if allowed == last.to_string() {
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 2,
        "both relay threads pinned to CPU {last} ({seen} found)"
    );
    let err = Link::build(LinkConfig {
        backend: quicbench_netem::Backend::UserSpace,
        relay_cpu: Some(100_000),
        ..Default::default()
    })
    .expect_err("a CPU the process cannot use is refused");
    assert!(err.to_string().contains("relay CPU 100000"), "{err}");
}

/// While a user-space link is up the CPUs are held out of deep idle states
/// (a PM QoS request of 0 µs, read back from the device), recorded in the
/// counters; `idle_poll: false` leaves them alone and says so.
#[test]
fn idle_cpus_poll_while_the_link_is_up() {
    if skip("idle_cpus_poll_while_the_link_is_up") {
        return;
    }
    let link = userspace(LinkConfig::default());
    match link.idle_poll() {
        Ok(()) => {
            // The kernel's aggregate request, µs: the smallest holder's.
            let now = std::fs::read(quicbench_netem::cpu::IdlePoll::DEVICE).unwrap();
            let us = i32::from_ne_bytes(now[..4].try_into().unwrap());
            assert_eq!(us, 0, "the request is in force");
            assert!(link.counters().up.relay.idle_poll);
            assert!(link.counters().down.relay.idle_poll);
        }
        Err(why) => {
            // An ordinary user may not write the device: said, not hidden.
            eprintln!("SKIPPED part of idle_cpus_poll_while_the_link_is_up: {why}");
            assert!(why.contains("cpu_dma_latency"), "{why}");
            assert!(!link.counters().up.relay.idle_poll);
        }
    }
    drop(link);
    let off = userspace(LinkConfig {
        idle_poll: false,
        ..Default::default()
    });
    let why = off.idle_poll().expect_err("not held");
    assert!(why.contains("idle_poll"), "{why}");
    assert!(!off.counters().up.relay.idle_poll);
}
