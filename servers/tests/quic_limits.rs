//! HTTP/3 server limits and behaviour over real sockets.

use std::time::Duration;

use quicbench_clients::{Client, ClientError, ClientOptions, Request};
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused() {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let mut so = ServerOptions::ephemeral(id);
    so.max_connections = 1;
    let s = quicbench_servers::start(so).await.unwrap();
    let mut o = ClientOptions::new(s.addrs.quic[0], trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(5);
    o.resume = false;
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut first = client.connect().await.unwrap();
    assert!(first.run(&[Request::bytes(10)]).await[0].ok());
    let second = client.connect().await;
    assert!(
        matches!(second, Err(ClientError::Connect { .. })),
        "{second:?}"
    );
    assert_eq!(s.stats().quic_refused, 1);
    assert_eq!(s.stats().open_connections, 1);
    first.close().await;
    // The slot frees up once the first connection is gone (the server notices
    // the close asynchronously: retry, bounded).
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(mut c) = client.connect().await {
            ok = c.run(&[Request::get("/")]).await[0].ok();
            c.close().await;
            if ok {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_methods_match_the_shared_builder() {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let s = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let mut o = ClientOptions::new(s.addrs.quic[0], trust);
    o.server_name = "localhost".into();
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let recs = c
        .run(&[
            Request::bytes(5000).range_from(4000),
            Request::get("/bytes/99999999999999999999"),
            Request::get("/bytes/-1"),
        ])
        .await;
    assert_eq!(
        (recs[0].status, recs[0].bytes, recs[0].verified),
        (Some(206), 1000, Some(true))
    );
    assert_eq!(recs[1].status, Some(413));
    assert_eq!(recs[2].status, Some(400));
    c.close().await;
    let st = s.stats();
    assert_eq!((st.requests, st.bad_requests), (3, 2));
    assert!(st.bytes_sent >= 1000);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_under_handshake_load() {
    use quicbench_servers::h3::RETRY_ABOVE_HANDSHAKES;
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let s = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let addr = s.addrs.quic[0];
    // Handshakes that never complete: a quinn client's Initial is captured on a
    // plain socket and replayed to the server from there, and the server's
    // answer is never read. Each stays in progress until its idle timeout (30 s).
    let tls =
        quicbench_wire::tls::client_config(&trust, &[quicbench_wire::tls::ALPN_H3], false).unwrap();
    let qcfg =
        quicbench_wire::tls::quic_client_config(std::sync::Arc::new(tls), Default::default())
            .unwrap();
    let mut captures = Vec::new();
    for _ in 0..RETRY_ABOVE_HANDSHAKES + 4 {
        let capture = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connecting = ep
            .connect_with(qcfg.clone(), capture.local_addr().unwrap(), "localhost")
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), capture.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        drop(connecting);
        ep.close(0u32.into(), b"");
        capture.send_to(&buf[..n], addr).await.unwrap();
        captures.push(capture);
    }
    // Let the server take them all in.
    let t = std::time::Instant::now();
    while s.stats().quic_retries == 0 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = s.stats().quic_retries;
    assert!(before >= 1, "{:?}", s.stats());
    // A real client now gets a Retry, answers it, and is served.
    let mut o = ClientOptions::new(addr, trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(10);
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    assert!(c.run(&[Request::bytes(1000)]).await[0].ok());
    c.close().await;
    assert!(s.stats().quic_retries > before, "{:?}", s.stats());
    s.shutdown(Duration::from_secs(1)).await;
}
