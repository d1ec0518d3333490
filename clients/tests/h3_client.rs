//! HTTP/3 client against our HTTP/3 server over real sockets on 127.0.0.1.

use std::time::Duration;

use quicbench_clients::{Client, ClientOptions, Connection, Request};
use quicbench_servers::{ServerOptions, Servers};
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;

async fn server() -> (Servers, ClientOptions) {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let s = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let mut o = ClientOptions::new(s.addrs.quic[0], trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(30);
    (s, o)
}

fn h3(c: &Connection) -> &quicbench_clients::h3::H3Conn {
    c.as_h3().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_arrive_intact() {
    let (s, o) = server().await;
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let info = c.info().clone();
    assert_eq!(info.alpn.as_deref(), Some("h3"));
    assert_eq!(info.early_data_accepted, Some(false));
    assert!(!h3(&c).attempted_0rtt());
    assert!(info.transport_ready_ns.is_some());
    for n in [0u64, 1, 1 << 20, 50 << 20] {
        let recs = c.run(&[Request::bytes(n)]).await;
        let r = &recs[0];
        assert!(r.ok(), "{n}: {r:?}");
        assert_eq!(
            (r.bytes, r.status, r.verified),
            (n, Some(200), Some(true)),
            "{n}"
        );
        assert!(
            r.first_byte_ns.unwrap() >= r.start_ns
                && r.last_byte_ns.unwrap() >= r.first_byte_ns.unwrap()
        );
    }
    // Range, health and errors.
    let recs = c
        .run(&[
            Request::bytes(1000).range_from(999),
            Request::get("/"),
            Request::get("/bytes/x"),
            Request::get("/nope"),
            Request::bytes(100).range_from(100),
        ])
        .await;
    assert_eq!(
        (recs[0].status, recs[0].bytes, recs[0].verified),
        (Some(206), 1, Some(true))
    );
    assert_eq!((recs[1].status, recs[1].bytes), (Some(200), 13));
    assert_eq!(recs[2].status, Some(400));
    assert_eq!(recs[3].status, Some(404));
    assert_eq!(recs[4].status, Some(416));
    // Learnt from the session tickets this connection received.
    assert_eq!(c.info().cipher.as_deref(), Some("TLS13_AES_128_GCM_SHA256"));
    c.close().await;
    let st = s.stats();
    assert_eq!(st.quic_accepted, 1);
    assert_eq!(st.requests, 9);
    assert_eq!(st.bad_requests, 3);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_share_one_connection() {
    let (s, mut o) = server().await;
    o.track_progress = true;
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let reqs: Vec<Request> = (0..8).map(|i| Request::bytes(100_000 + i * 1000)).collect();
    let recs = c.run(&reqs).await;
    let mut ids: Vec<u64> = recs.iter().map(|r| r.stream_id.unwrap()).collect();
    for (i, r) in recs.iter().enumerate() {
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.index, i);
        assert_eq!(r.bytes, 100_000 + i as u64 * 1000);
        assert_eq!(r.conn_id, c.info().conn_id);
        assert_eq!(r.progress.last().map(|p| p.1), Some(r.bytes));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "distinct stream ids");
    // Paced requests start at their offsets.
    let recs = c
        .run(&[
            Request::bytes(10),
            Request::bytes(10).at(Duration::from_millis(50)),
        ])
        .await;
    assert!(recs[1].start_ns >= recs[0].start_ns + 50_000_000);
    assert!(recs[1].request_sent_ns.unwrap() >= recs[1].start_ns);
    c.close().await;
    assert_eq!(s.stats().quic_accepted, 1);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_connection_uses_0rtt() {
    let (s, o) = server().await;
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut first = client.connect().await.unwrap();
    assert!(first.run(&[Request::bytes(10)]).await[0].ok());
    // Give the server's session tickets time to arrive before closing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.close().await;

    let mut second = client.connect().await.unwrap();
    // Not known before the handshake completes.
    assert_eq!(second.info().early_data_accepted, None);
    let recs = second
        .run(&[Request::bytes(1 << 20), Request::get("/")])
        .await;
    assert!(recs.iter().all(|r| r.ok()), "{recs:?}");
    let info = second.info().clone();
    assert!(h3(&second).attempted_0rtt());
    assert_eq!(info.early_data_accepted, Some(true), "{info:?}");
    assert_eq!(info.resumed, Some(true));
    assert_eq!(info.alpn.as_deref(), Some("h3"));
    // (No ordering check between request_sent and transport_ready: on loopback
    // the handshake completes within microseconds, often before the request.)
    assert_eq!(recs[0].transport_ready_ns, info.transport_ready_ns);
    second.close().await;
    assert_eq!(s.stats().quic_accepted, 2);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_0rtt_is_recovered() {
    // The server restarts on the same port with a new ticket key: the client's
    // ticket is useless, the early data is rejected, and the client must re-issue.
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let a = quicbench_servers::start(ServerOptions::ephemeral(id.clone()))
        .await
        .unwrap();
    let addr = a.addrs.quic[0];
    let mut o = ClientOptions::new(addr, trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(20);
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    assert!(c.run(&[Request::bytes(10)]).await[0].ok());
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.close().await;
    a.shutdown(Duration::from_secs(1)).await;

    let mut b = None;
    for _ in 0..50 {
        let mut so = ServerOptions::ephemeral(id.clone());
        so.quic_port = addr.port();
        match quicbench_servers::start(so).await {
            Ok(s) => {
                b = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let b = b.expect("restart on the same UDP port");
    let mut c = client.connect().await.unwrap();
    let recs = c.run(&[Request::bytes(100_000), Request::get("/")]).await;
    assert!(recs.iter().all(|r| r.ok()), "{recs:?}");
    assert!(h3(&c).attempted_0rtt());
    assert_eq!(c.info().early_data_accepted, Some(false));
    c.close().await;
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_migration_mid_transfer() {
    let (s, mut o) = server().await;
    o.local_ip = Some("127.0.0.1".parse().unwrap());
    o.track_progress = true;
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let m = h3(&c).migrator();
    let before = m.local_addr().unwrap();
    let epoch = *client.epoch();
    let quic = h3(&c).quic().clone();
    let migrate = tokio::spawn(async move {
        // Migrate once 5 MiB have arrived: mid-transfer whatever the machine's speed.
        let t = std::time::Instant::now();
        while quic.stats().udp_rx.bytes < 5 << 20 && t.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let at = epoch.now_ns();
        let after = m.migrate().unwrap();
        (at, after, m.local_addr().unwrap())
    });
    let recs = c.run(&[Request::bytes(50 << 20)]).await;
    let (at, after, now) = migrate.await.unwrap();
    let r = &recs[0];
    assert!(r.ok(), "{:?}", r.error);
    assert_eq!((r.bytes, r.verified), (50 << 20, Some(true)));
    assert_ne!(before, after);
    assert_eq!(after, now);
    assert_eq!(before.ip(), after.ip());
    // The migration happened during the transfer: body bytes arrived before and after it.
    let before_bytes = r
        .progress
        .iter()
        .filter(|p| p.0 <= at)
        .map(|p| p.1)
        .max()
        .unwrap_or(0);
    assert!(
        r.first_byte_ns.unwrap() < at && at < r.last_byte_ns.unwrap(),
        "migrated at {at}, transfer {:?}..{:?}",
        r.first_byte_ns,
        r.last_byte_ns
    );
    assert!(before_bytes < 50 << 20, "{before_bytes}");
    // The connection keeps working on the new path.
    let again = c.run(&[Request::bytes(1000)]).await;
    assert!(again[0].ok(), "{again:?}");
    c.close().await;
    assert_eq!(s.stats().quic_accepted, 1);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_ipv6_loopback() {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let mut so = ServerOptions::ephemeral(id);
    so.listen = vec!["::1".parse().unwrap()];
    let s = quicbench_servers::start(so).await.unwrap();
    let mut o = ClientOptions::new(s.addrs.quic[0], trust);
    o.timeout = Duration::from_secs(20);
    // server_name "::1": the certificate has the IP SAN, the authority is bracketed.
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let recs = c.run(&[Request::bytes(300_000)]).await;
    assert!(recs[0].ok(), "{recs:?}");
    assert!(c.info().peer.unwrap().is_ipv6());
    let after = h3(&c).migrate().unwrap();
    assert!(after.is_ipv6());
    assert!(c.run(&[Request::bytes(1000)]).await[0].ok());
    c.close().await;
    s.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();

/// A connection's endpoint goes back to its client once it has drained, and
/// the next connection takes it onto a socket of its own: a new local port
/// (its own flow), the same endpoint (no new 3 MB receive buffer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_endpoints_are_reused_on_fresh_sockets() {
    let (s, o) = server().await;
    let client = Client::new(Protocol::H3, o).unwrap();
    let pool = &client.shared().h3_endpoints;
    let mut ports = Vec::new();
    for i in 0..3 {
        let mut c = client.connect().await.unwrap();
        let port = c.info().local.expect("local address").port();
        let r = c.run(&[Request::bytes(1000)]).await.remove(0);
        assert!(r.ok() && r.verified == Some(true), "{i}: {r:?}");
        ports.push(port);
        c.close().await;
        // The draining period (3 PTO: ~85 ms on loopback), bounded.
        let t0 = std::time::Instant::now();
        while pool.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pool.len(), 1, "{i}: the drained endpoint is back");
    }
    ports.dedup();
    assert_eq!(ports.len(), 3, "a fresh socket per connection: {ports:?}");
    assert_eq!(s.stats().quic_accepted, 3);
    s.shutdown(Duration::from_secs(1)).await;
}

/// The server's counters against what happened: resumed connections that
/// send their request in 0-RTT, get the answer and close at once (Finished
/// and CONNECTION_CLOSE in one flight) are accepted connections, and a client
/// that rejects the server's certificate is a TLS failure. The first were
/// counted as failures in 1 of 3 resumed connections, by a race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_counts_accepted_and_failed_handshakes() {
    let (s, o) = server().await;
    let client = Client::new(Protocol::H3, o.clone()).unwrap();
    let n = 12;
    for i in 0..n {
        let mut c = client.connect().await.unwrap();
        let r = c.run(&[Request::bytes(1)]).await.remove(0);
        assert!(r.ok(), "{i}: {r:?}");
        c.close().await;
    }
    let mut stranger = o;
    stranger.trust = Identity::generate(&[]).unwrap().trust_anchors();
    let refused = Client::new(Protocol::H3, stranger).unwrap();
    assert!(
        refused.connect().await.is_err(),
        "an unknown issuer is refused"
    );
    // The server counts when its side of each handshake ends: bounded wait.
    let t0 = std::time::Instant::now();
    let mut st = s.stats();
    while (st.quic_accepted + st.tls_failures < n + 1) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        st = s.stats();
    }
    assert_eq!((st.quic_accepted, st.tls_failures), (n, 1), "{st:?}");
    s.shutdown(Duration::from_secs(1)).await;
}
