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

/// Our servers with a fresh identity, its trust anchors, and a quinn client
/// configuration (ALPN h3) that trusts it.
async fn server_and_h3_client_config() -> (
    quicbench_servers::Servers,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    quinn::ClientConfig,
) {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let s = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let tls =
        quicbench_wire::tls::client_config(&trust, &[quicbench_wire::tls::ALPN_H3], false).unwrap();
    let qcfg =
        quicbench_wire::tls::quic_client_config(std::sync::Arc::new(tls), Default::default())
            .unwrap();
    (s, trust, qcfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_under_handshake_load() {
    use quicbench_servers::h3::RETRY_ABOVE_HANDSHAKES;
    let (s, trust, qcfg) = server_and_h3_client_config().await;
    let addr = s.addrs.quic[0];
    // Handshakes that never complete: a quinn client's Initial is captured on a
    // plain socket and replayed to the server from there, and the server's
    // answer is never read. Each stays in progress until its idle timeout (30 s).
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

/// The server's connection IDs must not repeat: quinn does not check a Retry's
/// source CID against the CIDs in use, and a client whose Retry CID collides
/// sends its Initials to another connection and never completes its handshake.
/// quinn's default generator (24 random bits) repeats within 200,000 CIDs
/// thousands of times; ours (48 bits) essentially never.
#[test]
fn server_connection_ids_do_not_repeat() {
    use quicbench_servers::h3::ServerCidGenerator;
    use quinn::ConnectionIdGenerator;
    let mut g = ServerCidGenerator::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200_000 {
        let cid = g.generate_cid();
        assert_eq!(cid.len(), g.cid_len());
        assert!(g.validate(&cid).is_ok());
        assert!(seen.insert(cid), "repeated connection ID {cid}");
    }
    // Made-up CIDs are mostly recognised as foreign (16-bit check).
    let foreign = (0u64..1000)
        .filter(|i| {
            let cid =
                quinn::ConnectionId::new(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
            g.validate(&cid).is_err()
        })
        .count();
    assert!(foreign >= 990, "{foreign}");
}

/// Many handshakes at once, well above the Retry threshold: every client gets a
/// Retry or a handshake, and every one completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_above_the_retry_threshold_all_complete() {
    use quicbench_servers::h3::RETRY_ABOVE_HANDSHAKES;
    const CONNS: usize = 600;
    const IN_FLIGHT: usize = RETRY_ABOVE_HANDSHAKES * 3;
    let (s, _, qcfg) = server_and_h3_client_config().await;
    let addr = s.addrs.quic[0];
    let eps: Vec<quinn::Endpoint> = (0..3)
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap())
        .collect();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CONNS {
        let (ep, qcfg, sem) = (eps[i % eps.len()].clone(), qcfg.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let connecting = ep.connect_with(qcfg, addr, "localhost").unwrap();
            tokio::time::timeout(Duration::from_secs(15), connecting)
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        });
    }
    let mut conns = Vec::new();
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(c) => conns.push(c), // held open: their CIDs stay in use
            Err(e) => failures.push(e),
        }
    }
    let st = s.stats();
    assert!(failures.is_empty(), "{failures:?} {st:?}");
    assert!(st.quic_retries > 0, "{st:?}");
    for c in &conns {
        c.close(0u32.into(), b"");
    }
    s.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
