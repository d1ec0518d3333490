//! A packet dropped anywhere but in the link model is counted and flagged:
//! a UDP socket with a tiny receive buffer in the server namespace overflows,
//! and the cell's transport record names the counter. Real namespaces and TUN
//! devices; needs root (or user namespaces), else says what was skipped.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use quicbench_harness::profile;
use quicbench_harness::transport::{read_drops_both, CellTransport};
use quicbench_netem::link::{Link, LinkConfig};
use quicbench_netem::LinkSpec;
use quicbench_results::{CellResult, LinkInfo};
use quicbench_wire::{CongestionControl, Protocol};

fn can_run() -> bool {
    quicbench_netem::test_gate::links("unaccounted-drops test")
}

#[test]
fn a_receive_buffer_overflow_is_counted_and_flagged() {
    if !can_run() {
        return;
    }
    let link = Link::build(LinkConfig::new(LinkSpec::default(), LinkSpec::default())).unwrap();
    let server_ip = link.server_ip();
    let before = read_drops_both(&link);
    assert!(before.0.is_ok() && before.1.is_ok(), "{before:?}");
    // A socket that never reads, with the smallest buffer the kernel gives.
    let sink = link
        .server_ns()
        .run(move || {
            let s = UdpSocket::bind(SocketAddr::new(server_ip, 0))?;
            quicbench_wire::transport::set_socket_buffers(&s, 1);
            Ok::<_, std::io::Error>(s)
        })
        .unwrap();
    let dst = sink.local_addr().unwrap();
    link.client_ns().run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        let payload = [0u8; 1200];
        for _ in 0..500 {
            let _ = s.send_to(&payload, dst);
        }
    });
    // Let the relay deliver what it holds.
    std::thread::sleep(Duration::from_millis(300));
    let after = read_drops_both(&link);
    let server = after.1.as_ref().unwrap().since(before.1.as_ref().unwrap());
    let rcvbuf = server.get("Udp.RcvbufErrors").copied().unwrap_or(0);
    assert!(
        rcvbuf > 100,
        "expected receive-buffer drops, got {server:?}"
    );

    let rec = CellTransport::collect(
        &link,
        Some(CongestionControl::Cubic),
        Protocol::H3,
        None,
        None,
        &before,
        &after,
    );
    assert!(rec.unaccounted_total() >= rcvbuf);
    let mut res = CellResult::new("t", "h3", "goodput", "bulk", LinkInfo::default(), 0, 0);
    rec.apply(&mut res);
    let m = &res.metrics["unaccounted_drops"].samples;
    assert_eq!(m.len(), 1);
    assert!(m[0] >= rcvbuf as f64);
    assert!(
        res.notes
            .iter()
            .any(|n| n.contains("outside the link model") && n.contains("server Udp.RcvbufErrors")),
        "{:?}",
        res.notes
    );
    drop(sink);
    // Profiles of both ends were read in their own namespaces.
    let p = profile::read_profile(link.server_ns());
    assert!(p.devices.iter().any(|d| d.name != "lo"), "{p:?}");
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
