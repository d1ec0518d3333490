//! TLS 1.3 early data over TCP on 127.0.0.1 (no Fast Open: the host's
//! namespace is left as it is): the request rides in the first flight, the
//! server reads it before the handshake ends and says so in its counters,
//! and bodies after the handshake (through the server's early-data TLS
//! stream) arrive intact. The real-link round-trip counts are in
//! harness/tests/tcp_zero_rtt.rs.

use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::transport::TcpFastStart;
use quicbench_wire::Protocol;

async fn early_data(proto: Protocol) {
    let id = Identity::generate(&[]).unwrap();
    let early = TcpFastStart::new(false, true);
    let mut so = ServerOptions::ephemeral(id.clone());
    so.tcp_fast_start = early;
    let srv = quicbench_servers::start(so).await.unwrap();
    let mut o = ClientOptions::new(srv.addrs.tls[0], id.trust_anchors());
    o.fast_start = early;
    let c = Client::new(proto, o).unwrap();
    // The first connection obtains the ticket: no early data yet.
    let mut first = c.connect().await.unwrap();
    let r = first.run(&[Request::bytes(1024)]).await;
    assert!(r[0].ok(), "{:?}", r[0]);
    assert_eq!(
        first.info().early_data_accepted,
        Some(false),
        "{:?}",
        first.info()
    );
    first.close().await;
    for _ in 0..2 {
        let mut conn = c.connect().await.unwrap();
        let r = conn.run(&[Request::bytes(1024)]).await;
        assert!(r[0].ok() && r[0].verified == Some(true), "{:?}", r[0]);
        let info = conn.info().clone();
        assert_eq!(info.early_data_accepted, Some(true), "{info:?}");
        assert_eq!(info.resumed, Some(true), "{info:?}");
        let alpn = if proto == Protocol::H2 {
            "h2"
        } else {
            "http/1.1"
        };
        assert_eq!(info.alpn.as_deref(), Some(alpn));
        assert!(info.tls_ready_ns.is_some());
        // A large body after the handshake, through the same stream.
        let r = conn.run(&[Request::bytes(8 << 20)]).await;
        assert!(r[0].ok() && r[0].verified == Some(true), "{:?}", r[0]);
        assert_eq!(r[0].bytes, 8 << 20);
        conn.close().await;
    }
    let s = srv.stats();
    assert_eq!(s.tls_early_data, 2, "{s:?}");
    assert_eq!(s.tls_failures, 0, "{s:?}");
    assert_eq!(s.tcp_fast_open_queue, 0, "Fast Open stays off here");
    srv.shutdown(std::time::Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_request_rides_in_early_data() {
    early_data(Protocol::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h11_tls_request_rides_in_early_data() {
    early_data(Protocol::H11Tls).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
