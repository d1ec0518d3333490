//! NAT rebinding checks run on both backends (tests/link.rs: user space,
//! tests/kernel.rs: kernel with nftables).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use quicbench_netem::{Link, LinkConfig, NatSchedule, RebindKind};

use super::{client_udp, udp_roundtrip, UdpEcho};

/// Port then address rebinds on demand, v4 and v6: what the server sees,
/// the old mapping dropped, the events and counters. `port_kept`: an address
/// rebind after port rebinds keeps each flow's port (the user-space NAT's
/// shift does; the kernel's picks a new one from the same range).
pub fn rebinding_on_demand(link: &Link, port_kept: bool) {
    for (cip, sip) in [
        (link.client_ip(), link.server_ip()),
        (link.client_ip6(), link.server_ip6()),
    ] {
        let echo = UdpEcho::start(link.server_ns(), sip);
        let c = client_udp(link, cip);
        let (seen0, _) = udp_roundtrip(&c, echo.addr, b"before").unwrap_or_else(|| {
            panic!(
                "no reply from {} to {} before this family's first rebind (events so far: {:?})",
                echo.addr,
                c.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                link.rebind_events()
            )
        });
        let seen0: SocketAddr = seen0.parse().unwrap();
        if link.rebind_events().is_empty() {
            assert_eq!(
                seen0,
                c.local_addr().unwrap(),
                "transparent before the first rebind"
            );
        }

        let ev = link.rebind_now(RebindKind::Port).unwrap();
        let (seen1, _) =
            udp_roundtrip(&c, echo.addr, b"after port").expect("reply after port rebind");
        let seen1: SocketAddr = seen1.parse().unwrap();
        assert_eq!(seen1.ip(), seen0.ip(), "port rebind keeps the address");
        assert_ne!(seen1.port(), seen0.port(), "port rebind changes the port");
        assert!(ev.to_string().contains("port"));

        // The old mapping is gone: the server's packet to it is dropped.
        let before = link.counters().nat.dropped_no_mapping;
        let srv = link
            .server_ns()
            .run(|| UdpSocket::bind(SocketAddr::new(sip, 0)))
            .unwrap();
        srv.send_to(b"stale", seen0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while link.counters().nat.dropped_no_mapping == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(link.counters().nat.dropped_no_mapping, before + 1);

        link.rebind_now(RebindKind::Address).unwrap();
        let (seen2, _) =
            udp_roundtrip(&c, echo.addr, b"after address").expect("reply after address rebind");
        let seen2: SocketAddr = seen2.parse().unwrap();
        assert_ne!(seen2.ip(), seen1.ip(), "address rebind changes the address");
        match seen2.ip() {
            IpAddr::V4(a) => assert_eq!(a.octets()[..2], [198, 19]),
            IpAddr::V6(a) => assert_eq!(a.segments()[..4], [0x2001, 2, 0, 2]),
        }
        if port_kept {
            assert_eq!(
                seen2.port(),
                seen1.port(),
                "address rebind keeps the (already shifted) port"
            );
        }
    }
    let ev = link.rebind_events();
    assert_eq!(ev.len(), 4);
    assert_eq!(
        ev.iter().map(|e| e.generation).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(ev.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
    assert!(!ev[0].scheduled);
    assert!(link.counters().nat.translated_up > 0 && link.counters().nat.translated_down > 0);
}

/// Two port rebinds, at 300 and 600 ms.
pub fn schedule_config() -> LinkConfig {
    schedule_config_at(300)
}

/// Two port rebinds, at `ms` and 2 × `ms` after the link is built.
pub fn schedule_config_at(ms: u64) -> LinkConfig {
    LinkConfig {
        nat: Some(NatSchedule {
            kind: RebindKind::Port,
            first_at: Duration::from_millis(ms),
            every: Some(Duration::from_millis(ms)),
            count: Some(2),
        }),
        ..Default::default()
    }
}

/// A link built from [`schedule_config`]: a live UDP flow sees three ports.
pub fn scheduled_rebinds(link: &Link) {
    scheduled_rebinds_at(link, 300, 20);
}

/// A link built from [`schedule_config_at`]`(ms)`: a live UDP flow sees three
/// ports, the rebinds fired within `tolerance_ms` of their times.
pub fn scheduled_rebinds_at(link: &Link, ms: u64, tolerance_ms: i64) {
    let echo = UdpEcho::start(link.server_ns(), link.server_ip());
    let c = client_udp(link, link.client_ip());
    let mut ports = Vec::new();
    let t0 = Instant::now();
    let watch = 2 * ms + tolerance_ms.unsigned_abs() + 500;
    while t0.elapsed() < Duration::from_millis(watch)
        && (ports.len() < 3 || link.rebind_events().len() < 2)
    {
        // A reply in flight at a rebind is dropped (old mapping): short timeout.
        if let Some((seen, _)) =
            super::udp_roundtrip_within(&c, echo.addr, b"tick", Duration::from_millis(100))
        {
            let p = seen.parse::<SocketAddr>().unwrap().port();
            if ports.last() != Some(&p) {
                ports.push(p);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        ports.len(),
        3,
        "two scheduled rebinds, three ports seen: {ports:?}"
    );
    let ev = link.rebind_events();
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.scheduled));
    // Fired on time (the relay's timer, not a millisecond tick).
    for (e, k) in ev.iter().zip([1, 2]) {
        let want = (k * ms * 1_000_000) as i64;
        assert!(
            (e.at_ns as i64 - want).abs() < tolerance_ms * 1_000_000,
            "{ev:?}"
        );
    }
}

/// TCP cannot migrate: after a port rebind the server resets the flow.
pub fn port_rebind_breaks_tcp(link: &Link) {
    let l = link
        .server_ns()
        .run(|| std::net::TcpListener::bind((link.server_ip(), 0)))
        .unwrap();
    let to = l.local_addr().unwrap();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => {
                    total += n;
                    if s.write_all(&buf[..n]).is_err() {
                        return total;
                    }
                }
            }
        }
    });
    let mut c = link
        .client_ns()
        .run(|| std::net::TcpStream::connect(to))
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4];
    c.write_all(b"ping").unwrap();
    c.read_exact(&mut buf).unwrap();
    link.rebind_now(RebindKind::Port).unwrap();
    // The server sees an unknown 4-tuple and resets it; the client's
    // connection dies (TCP cannot migrate).
    let r = c.write_all(b"ping").and_then(|_| c.read_exact(&mut buf));
    assert!(r.is_err(), "TCP survived a port rebind?");
    drop(c);
    assert_eq!(srv.join().unwrap(), 4);
}
