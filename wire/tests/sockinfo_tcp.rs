//! `TCP_INFO`, options read back and the sampled series, over real loopback
//! sockets.

use std::ffi::OsString;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use quicbench_wire::clock::mono_ns;
use quicbench_wire::sockinfo::{self, Probed, Side, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SIZE: usize = 4 << 20;
const CHUNK: usize = 64 << 10;

fn tcp(s: &Snapshot) -> &sockinfo::TcpInfo {
    match s {
        Snapshot::Tcp(i) => i,
        Snapshot::Quic(_) => panic!("a QUIC snapshot of a TCP socket"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_4_mib_transfer_is_seen_by_both_ends() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let origin = mono_ns();
    let server = tokio::spawn(async move {
        let (s, peer) = l.accept().await.expect("accept");
        // Set a controller other than the host default, then read it back.
        setsockopt(&s, sockopt::TcpCongestion, &OsString::from("reno")).expect("reno");
        s.set_nodelay(true).expect("nodelay");
        let local = s.local_addr().ok();
        let mut p = Probed::new(s, Side::Server, None, (local, Some(peer)), origin);
        let probe = p.probe().clone();
        probe.start_sampling(Duration::from_millis(10));
        let buf = vec![7u8; CHUNK];
        // Paced, so the transfer lasts long enough (~130 ms) to be sampled.
        for _ in 0..SIZE / CHUNK {
            p.write_all(&buf).await.expect("write");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        p.shutdown().await.expect("shutdown");
        let live = probe.record();
        // Wait for the client's close: everything sent is acknowledged by then.
        let mut rest = Vec::new();
        let _ = p.read_to_end(&mut rest).await;
        drop(p);
        (live, probe.record())
    });
    let c = TcpStream::connect(addr).await.expect("connect");
    let local = c.local_addr().ok();
    let mut c = Probed::new(c, Side::Client, Some(1), (local, Some(addr)), origin);
    let mut got = 0usize;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = c.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, SIZE);
    let client = c.probe().record();
    drop(c);
    let (live, done) = server.await.expect("server task");

    // The server sent: its view has the bytes acknowledged and the window.
    assert!(!live.closed);
    assert!(done.closed);
    let end = tcp(done.end.as_ref().expect("end snapshot"));
    assert!(end.bytes_acked.unwrap_or(0) >= SIZE as u64, "{end:?}");
    assert!(end.bytes_sent.unwrap_or(0) >= SIZE as u64, "{end:?}");
    assert!(end.segs_out.unwrap_or(0) > 0);
    assert!(end.snd_cwnd > 0 && end.cwnd_bytes > 0);
    assert!(end.snd_mss > 0);
    assert!(end.srtt_us > 0);
    let opts = done.sockopts.as_ref().expect("sockopts");
    assert_eq!(opts.congestion.as_deref(), Some("reno"));
    // In our names: the kernel's reno is NewReno.
    assert_eq!(done.congestion(), Some("newreno"));
    assert_eq!(opts.nodelay, Some(true));
    assert!(opts.maxseg.unwrap_or(0) > 0);
    assert!(opts.rcvbuf.unwrap_or(0) > 0 && opts.sndbuf.unwrap_or(0) > 0);

    // Sampled every 10 ms: several samples, in time order, windows open.
    let n = done.samples.len();
    assert!(n >= 5, "{n} samples over ~130 ms");
    assert!(done.samples.windows(2).all(|w| w[0].t_ns < w[1].t_ns));
    assert!(done.samples.iter().all(|s| s.cwnd > 0));
    // Cumulative counters never go back.
    assert!(done
        .samples
        .windows(2)
        .all(|w| w[0].sent_bytes <= w[1].sent_bytes && w[0].acked_bytes <= w[1].acked_bytes));
    assert_eq!(done.sample_period_ms, 10.0);
    assert!(done.end_ns >= done.samples.last().map(|s| s.t_ns));

    // The client received: its view has the bytes received, and the host's
    // default controller (nothing was set on it).
    let cend = tcp(client.end.as_ref().expect("client end"));
    assert!(cend.bytes_received.unwrap_or(0) >= SIZE as u64, "{cend:?}");
    assert_eq!(client.conn_id, Some(1));
    assert!(client.congestion().is_some());
    assert!(client.samples.is_empty(), "the client was not sampled");

    // The record round-trips through JSON.
    let json = serde_json::to_string(&done).expect("json");
    let back: sockinfo::TransportRecord = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, done);
}

#[tokio::test]
async fn tcp_info_of_a_borrowed_socket() {
    use std::os::fd::AsFd;
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let c = TcpStream::connect(addr).await.expect("connect");
    let i = sockinfo::tcp_info(c.as_fd()).expect("TCP_INFO");
    assert_eq!(i.state, 1, "established");
    assert_eq!(
        i.info_len as usize,
        std::mem::size_of::<sockinfo::RawTcpInfo>()
    );
    let cc = quicbench_wire::transport::tcp_congestion(&c.as_fd()).expect("TCP_CONGESTION");
    let host =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").expect("sysctl");
    assert_eq!(cc, host.trim());
}
