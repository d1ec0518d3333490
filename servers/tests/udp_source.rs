//! Source runs: one per session, and stopped promptly by shutdown even between
//! widely spaced datagrams (the run's thread holds a duplicate of the socket).

use std::time::{Duration, Instant};

use quicbench_servers::ServerOptions;
use quicbench_wire::probe::{encode, Header, Kind, SourceRequest, HEADER_LEN};
use quicbench_wire::tls::Identity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_slow_source_run_and_frees_the_port() {
    let s = quicbench_servers::start(ServerOptions::ephemeral(Identity::generate(&[]).unwrap()))
        .await
        .unwrap();
    let udp = s.addrs.udp[0];
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = SourceRequest {
        count: 3,
        size: 100,
        interval_us: 10_000_000,
    };
    let d = encode(
        &Header::new(Kind::SourceRequest, 9, 0, 0),
        &req.to_bytes(),
        HEADER_LEN + 12,
    )
    .unwrap();
    sock.send_to(&d, udp).await.unwrap();
    // A repeated request for the same session does not start a second run.
    sock.send_to(&d, udp).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 100);
    let h = Header::read(&buf[..n]).unwrap();
    assert_eq!(
        (h.kind, h.session, h.seq, h.aux),
        (Kind::SourceData, 9, 0, 3)
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf))
            .await
            .is_err(),
        "only one run, and its next datagram is 10 s away"
    );

    s.shutdown(Duration::from_secs(1)).await;
    // The run's thread notices within ~50 ms and releases its socket.
    let t = Instant::now();
    let mut rebound = false;
    while t.elapsed() < Duration::from_secs(2) {
        if std::net::UdpSocket::bind(udp).is_ok() {
            rebound = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rebound, "port {udp} still held after shutdown");
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
