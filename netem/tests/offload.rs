//! Segmentation offload on the user-space link (`gso`, `relay`): super-packets
//! go through, yet the model still decides per wire packet. Judged from the
//! relay's own captures (before and after impairment), which show wire packets.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::behaviours::binomial;
use common::{skip, tcp_client, tcp_server, userspace};
use quicbench_netem::pcap::{read_file, Record};
use quicbench_netem::{Backend, Link, LinkConfig, LinkSpec};

const MTU: usize = 1500;

fn captured(dir: &std::path::Path, name: &str) -> Vec<Record> {
    read_file(&dir.join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

type Seg = (u16, u32, usize);

/// IPv4 TCP data segments as (IP ID, sequence number, payload length), with
/// their capture times.
fn tcp_segments(recs: &[Record]) -> Vec<(Seg, u64)> {
    recs.iter()
        .filter(|r| r.data[0] >> 4 == 4 && r.data[9] == 6)
        .filter_map(|r| {
            let d = &r.data;
            let ihl = (d[0] & 0xf) as usize * 4;
            let thl = (d[ihl + 12] >> 4) as usize * 4;
            let len = d.len() - ihl - thl;
            (len > 0).then(|| {
                let id = u16::from_be_bytes([d[4], d[5]]);
                let seq = u32::from_be_bytes([d[ihl + 4], d[ihl + 5], d[ihl + 6], d[ihl + 7]]);
                ((id, seq, len), r.ts_ns)
            })
        })
        .collect()
}

fn offloading(link: &Link) -> bool {
    let k = link.counters();
    assert_eq!(k.up.relay.offload, k.down.relay.offload);
    k.up.relay.offload != "off"
}

/// Every read of `d` (a super-packet is one read) was dated by the device's
/// tap, when its sender's stack handed it over (`tap.rs`), not by the read.
fn every_read_dated_by_the_tap(name: &str, d: &quicbench_netem::link::DirCounters) {
    let reads = d.relay.reads();
    assert!(reads > 0, "{name}: nothing read");
    assert_eq!(
        d.relay.arrivals_tapped, reads,
        "{name}: reads dated by the tap"
    );
    assert!(d.relay.read_wait_p50_ns > 0, "{name}: {:?}", d.relay);
}

#[test]
fn bulk_tcp_under_loss_loses_single_wire_segments() {
    if skip("bulk_tcp_under_loss_loses_single_wire_segments") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec: LinkSpec = "loss 1%".parse().unwrap();
    let link = userspace(LinkConfig {
        pcap_dir: Some(dir.path().to_path_buf()),
        seed: 7,
        ..LinkConfig::symmetric(spec)
    });
    assert!(
        offloading(&link),
        "this kernel offers TUN offloads (Linux ≥ 2.6.27)"
    );
    let (addr, server) = tcp_server(link.server_ns(), link.server_ip());
    let (d, u) = tcp_client(link.client_ns(), addr, 24 << 20, 4 << 20);
    assert_eq!(server.join().unwrap(), 4 << 20);
    eprintln!("24 MiB down in {d:?}, 4 MiB up in {u:?} through loss 1%");
    let k = link.counters();
    drop(link); // flushes the captures

    let down = &k.down;
    eprintln!(
        "down: {} super-packets read = {} wire packets; {} joined writes = {} wire packets; {} of {} lost",
        down.relay.gso_reads,
        down.relay.gso_read_segments,
        down.relay.gso_writes,
        down.relay.gso_write_segments,
        down.model.dropped_loss,
        down.model.packets_in
    );
    assert!(
        down.relay.gso_reads > 0,
        "the server's TCP sent super-packets: {down:?}"
    );
    assert!(
        down.relay.gso_writes > 0,
        "runs were joined on write: {down:?}"
    );
    assert_eq!(down.relay.offload_errors, 0);
    // Every counter is per wire packet.
    assert_eq!(down.relay.packets_read, down.model.packets_in);
    assert_eq!(
        down.model.packets_in - down.model.dropped_loss,
        down.relay.packets_written,
        "{down:?}"
    );

    let (inp, out) = (
        captured(dir.path(), "down-in.pcap"),
        captured(dir.path(), "down-out.pcap"),
    );
    assert_eq!(inp.len() as u64, down.model.packets_in);
    assert_eq!(out.len() as u64, down.relay.packets_written);
    for r in inp.iter().chain(&out) {
        assert!(
            r.data.len() <= MTU,
            "a {}-byte packet in a capture",
            r.data.len()
        );
        assert!(
            quicbench_netem::nat::checksums_ok(&r.data),
            "captured packets carry complete checksums"
        );
    }
    // Which input segments never left: single segments, never a super-packet's
    // worth of consecutive ones (44 × 1448 B).
    let mut left: HashMap<Seg, u32> = HashMap::new();
    for (s, _) in tcp_segments(&out) {
        *left.entry(s).or_default() += 1;
    }
    let (mut lost, mut run, mut longest) = (0u64, 0u32, 0u32);
    for (s, _) in tcp_segments(&inp) {
        match left.get_mut(&s) {
            Some(n) if *n > 0 => {
                *n -= 1;
                run = 0;
            }
            _ => {
                assert!(s.2 <= MTU - 40, "lost segment of {} bytes", s.2);
                lost += 1;
                run += 1;
                longest = longest.max(run);
            }
        }
    }
    eprintln!("lost data segments {lost}, longest run of consecutive losses {longest}");
    assert!(lost > 0);
    // Five consecutive losses at 1% each: 1e-10 per position.
    assert!(
        longest <= 4,
        "{longest} consecutive segments lost: a super-packet was dropped whole"
    );
    binomial(
        Backend::UserSpace,
        "loss per wire packet, bulk TCP with offloads",
        "loss 1%",
        down.model.dropped_loss,
        down.model.packets_in,
        0.01,
        0.01,
    );
}

/// Byte `i` of a stream: changes every byte and does not repeat within a
/// segment or a super-packet, so a payload moved, repeated or swapped
/// between wire packets is caught.
fn pattern(i: u64) -> u8 {
    (i ^ (i >> 8) ^ (i >> 16).wrapping_mul(31)) as u8
}

/// Send `n` pattern bytes from `s` (in uneven writes), as a thread.
fn send_pattern(mut s: TcpStream, n: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 200_003];
        let mut at = 0u64;
        while at < n {
            let k = (n - at).min(buf.len() as u64) as usize;
            for (j, b) in buf[..k].iter_mut().enumerate() {
                *b = pattern(at + j as u64);
            }
            s.write_all(&buf[..k]).unwrap();
            at += k as u64;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
    })
}

/// Read the stream to its end from `s`, checking every byte.
fn check_pattern(mut s: TcpStream, n: u64, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0u64;
    loop {
        let k = s.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        for (j, b) in buf[..k].iter().enumerate() {
            let i = at + j as u64;
            assert_eq!(*b, pattern(i), "{what}: byte {i} of {n} damaged");
        }
        at += k as u64;
    }
    assert_eq!(at, n, "{what}: stream length");
}

/// Without captures the relay never completes a checksum except for a
/// corrupted packet, so a payload misplaced by the split or the join would
/// reach the receiving stack unnoticed (it trusts a partial checksum, as
/// from a veth peer). Every byte of a position-dependent stream must still
/// arrive where it belongs, through loss, duplication and corruption (a
/// corrupted segment gets its checksum completed, so the receiver drops it
/// and TCP resends it), and the model, the relay and the flow table must
/// count the same wire packets.
#[test]
fn bulk_tcp_payload_arrives_intact_without_captures() {
    if skip("bulk_tcp_payload_arrives_intact_without_captures") {
        return;
    }
    let spec: LinkSpec = "loss 0.5% duplicate 1% corrupt 0.2%".parse().unwrap();
    let link = userspace(LinkConfig {
        seed: 11,
        ..LinkConfig::symmetric(spec)
    });
    assert!(offloading(&link));
    let l = link
        .server_ns()
        .run(|| TcpListener::bind(SocketAddr::new(link.server_ip(), 0)))
        .unwrap();
    let addr = l.local_addr().unwrap();
    const DOWN: u64 = 48 << 20;
    const UP: u64 = 8 << 20;
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let tx = send_pattern(s.try_clone().unwrap(), DOWN);
        check_pattern(s, UP, "up");
        tx.join().unwrap();
    });
    let c = link
        .client_ns()
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap();
    let tx = send_pattern(c.try_clone().unwrap(), UP);
    check_pattern(c, DOWN, "down");
    tx.join().unwrap();
    server.join().unwrap();
    let k = link.counters();
    for (name, d) in [("up", &k.up), ("down", &k.down)] {
        eprintln!(
            "{name}: {} super-packets = {} wire packets read; {} joined writes = {} wire packets; \
             {} in, {} lost, {} duplicated, {} corrupted",
            d.relay.gso_reads,
            d.relay.gso_read_segments,
            d.relay.gso_writes,
            d.relay.gso_write_segments,
            d.model.packets_in,
            d.model.dropped_loss,
            d.model.duplicated,
            d.model.corrupted
        );
        assert_eq!(d.relay.offload_errors, 0, "{name}");
        assert_eq!(d.relay.packets_read, d.model.packets_in, "{name}");
        assert_eq!(d.relay.packets_written, d.model.delivered, "{name}");
        every_read_dated_by_the_tap(name, d);
    }
    let down = &k.down;
    assert!(
        down.relay.gso_reads > 0 && down.relay.gso_writes > 0,
        "{down:?}"
    );
    assert!(
        down.model.duplicated > 0 && down.model.corrupted > 0,
        "{down:?}"
    );
    // The flow table saw each wire packet once, and each delivered copy.
    let flows = link.flows().expect("flow metrics are on by default");
    let f = flows
        .flows
        .iter()
        .find(|f| f.server == addr)
        .expect("the bulk flow");
    assert_eq!(f.down.offered_packets, down.model.packets_in);
    assert_eq!(f.down.delivered_packets, down.model.delivered);
    // (The model also counts as lost the lost copy of a duplicated packet,
    // whose other copy the flow sees delivered.)
    assert!(f.down.dropped_loss_packets > 0);
    assert!(f.down.dropped_loss_packets <= down.model.dropped_loss);
    assert!(f.down.offered_payload_bytes >= DOWN);
}

#[test]
fn rate_and_delay_hold_for_joined_writes() {
    if skip("rate_and_delay_hold_for_joined_writes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec: LinkSpec = "delay 5ms rate 200mbit".parse().unwrap();
    let link = userspace(LinkConfig {
        pcap_dir: Some(dir.path().to_path_buf()),
        ..LinkConfig::symmetric(spec)
    });
    assert!(offloading(&link));
    let cost = link.path_cost().map(|c| c.down_ns).unwrap_or(0);
    let (addr, server) = tcp_server(link.server_ns(), link.server_ip());
    let (d, _) = tcp_client(link.client_ns(), addr, 16 << 20, 0);
    assert_eq!(server.join().unwrap(), 0);
    let k = link.counters();
    drop(link);
    assert!(k.down.relay.gso_reads > 0, "{:?}", k.down);

    let (inp, out) = (
        captured(dir.path(), "down-in.pcap"),
        captured(dir.path(), "down-out.pcap"),
    );
    // Wire rate over the transfer, from the departures: never above the rate
    // (joined writes carry only packets already due).
    let data: Vec<&Record> = out.iter().filter(|r| r.data.len() > 1000).collect();
    let (first, last) = (data[0], data[data.len() - 1]);
    let bits: u64 = data[1..].iter().map(|r| r.data.len() as u64 * 8).sum();
    let secs = (last.ts_ns - first.ts_ns) as f64 / 1e9;
    let mbit = bits as f64 / secs / 1e6;
    eprintln!("16 MiB down in {d:?}; wire rate {mbit:.1} Mbit/s over {secs:.3} s (rate 200mbit)");
    assert!(
        mbit <= 200.0 * 1.01,
        "{mbit:.1} Mbit/s through a 200 Mbit/s link"
    );
    assert!(
        mbit >= 100.0,
        "{mbit:.1} Mbit/s: the link was not kept busy"
    );
    // Delay per wire packet: none leaves before delay − path cost.
    let mut arrived: HashMap<Seg, u64> = HashMap::new();
    for (s, t) in tcp_segments(&inp) {
        arrived.entry(s).or_insert(t);
    }
    let held: Vec<i64> = tcp_segments(&out)
        .iter()
        .filter_map(|(s, t)| arrived.get(s).map(|t0| *t as i64 - *t0 as i64))
        .collect();
    let min = *held.iter().min().expect("matched segments");
    eprintln!(
        "held down: min {min} ns over {} segments (delay 5 ms, path cost {cost} ns)",
        held.len()
    );
    assert!(
        min >= 5_000_000 - cost as i64,
        "a segment left early: {min} ns"
    );
}

/// `UDP_SEGMENT` from linux/udp.h.
const UDP_SEGMENT: libc::c_int = 103;

#[test]
fn udp_gso_batches_arrive_as_datagrams() {
    if skip("udp_gso_batches_arrive_as_datagrams") {
        return;
    }
    let link = userspace(LinkConfig::default());
    if link.counters().up.relay.offload != "tso+uso" {
        eprintln!(
            "SKIPPED: udp_gso_batches_arrive_as_datagrams: the kernel has no TUN USO (Linux < 6.2)"
        );
        return;
    }
    let server = link
        .server_ns()
        .run(|| UdpSocket::bind(SocketAddr::new(link.server_ip(), 0)))
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let to = server.local_addr().unwrap();
    let client = link
        .client_ns()
        .run(|| UdpSocket::bind(SocketAddr::new(link.client_ip(), 0)))
        .unwrap();
    let seg: libc::c_int = 1200;
    // SAFETY: setsockopt with a valid int option value.
    let r = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&seg as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    // Three batches of 20 datagrams (the last of each 77 bytes), bounded.
    let batch: Vec<u8> = (0..19 * 1200 + 77).map(|i| (i % 251) as u8).collect();
    let mut sizes = Vec::new();
    for _ in 0..3 {
        client.send_to(&batch, to).unwrap();
        for _ in 0..20 {
            let mut buf = [0u8; 2000];
            let (n, _) = server
                .recv_from(&mut buf)
                .expect("datagram through the link");
            assert_eq!(buf[..n], batch[sizes.len() % 20 * 1200..][..n]);
            sizes.push(n);
        }
    }
    let k = link.counters();
    eprintln!(
        "up: {} super-packets read = {} datagrams, {} joined writes",
        k.up.relay.gso_reads, k.up.relay.gso_read_segments, k.up.relay.gso_writes
    );
    assert_eq!(sizes.iter().filter(|n| **n == 1200).count(), 57);
    assert_eq!(sizes.iter().filter(|n| **n == 77).count(), 3);
    assert_eq!(k.up.relay.gso_reads, 3, "{:?}", k.up);
    assert_eq!(k.up.relay.gso_read_segments, 60);
    assert_eq!(k.up.model.packets_in, 60, "the model saw each datagram");
    every_read_dated_by_the_tap("up", &k.up);
}

#[test]
fn offload_can_be_turned_off() {
    if skip("offload_can_be_turned_off") {
        return;
    }
    let link = userspace(LinkConfig {
        offload: false,
        ..LinkConfig::default()
    });
    let (addr, server) = tcp_server(link.server_ns(), link.server_ip());
    tcp_client(link.client_ns(), addr, 4 << 20, 1 << 20);
    assert_eq!(server.join().unwrap(), 1 << 20);
    let k = link.counters();
    for (name, d) in [("up", &k.up), ("down", &k.down)] {
        assert_eq!(d.relay.offload, "off");
        assert_eq!((d.relay.gso_reads, d.relay.gso_writes), (0, 0));
        every_read_dated_by_the_tap(name, d);
    }
}
