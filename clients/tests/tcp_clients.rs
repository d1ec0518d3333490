//! The TCP clients (HTTP/1.0, HTTP/1.1, pipelining, HTTP/2, cleartext and TLS)
//! against the real quicbench server on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use quicbench_clients::{Client, ClientOptions, Connection, Request, RequestRecord};
use quicbench_servers::{ServerOptions, Servers};
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

async fn server() -> (Servers, Identity) {
    let id = Identity::generate(&[]).unwrap();
    let srv = quicbench_servers::start(ServerOptions::ephemeral(id.clone()))
        .await
        .unwrap();
    (srv, id)
}

fn addr_for(proto: Protocol, srv: &Servers) -> SocketAddr {
    if proto.uses_tls() {
        srv.addrs.tls[0]
    } else {
        srv.addrs.http[0]
    }
}

fn client(proto: Protocol, srv: &Servers, id: &Identity) -> Client {
    let opts = ClientOptions::new(addr_for(proto, srv), id.trust_anchors());
    Client::new(proto, opts).unwrap()
}

fn assert_ok(r: &RequestRecord, want_bytes: u64) {
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.error, None, "{}", r.path);
    assert_eq!(r.status, Some(200), "{}", r.path);
    assert_eq!(r.bytes, want_bytes, "{}", r.path);
    assert_eq!(r.verified, Some(true), "{}", r.path);
    let (s, sent, fb, lb) = (
        r.start_ns,
        r.request_sent_ns.unwrap(),
        r.first_byte_ns.unwrap(),
        r.last_byte_ns.unwrap(),
    );
    assert!(
        s <= sent && sent <= fb && fb <= lb,
        "times out of order: {r:?}"
    );
}

/// Body integrity for 0, 1, 1 MiB and 50 MiB, TLS facts, and resumption on a
/// second connection of the same client.
async fn integrity(proto: Protocol) {
    let (srv, id) = server().await;
    let c = client(proto, &srv, &id);
    let mut conn = c.connect().await.unwrap();
    let info = conn.info().clone();
    assert_eq!(info.protocol, proto.name());
    assert!(info.transport_ready_ns.is_some());
    assert_eq!(info.peer, Some(addr_for(proto, &srv)));
    if proto.uses_tls() {
        assert_eq!(info.tls_version.as_deref(), Some("TLSv1_3"), "{info:?}");
        assert_eq!(
            info.cipher.as_deref(),
            Some("TLS13_AES_128_GCM_SHA256"),
            "{info:?}"
        );
        let alpn = if proto == Protocol::H2 {
            "h2"
        } else {
            "http/1.1"
        };
        assert_eq!(info.alpn.as_deref(), Some(alpn));
        assert_eq!(info.resumed, Some(false));
        assert!(info.tls_ready_ns.unwrap() >= info.transport_ready_ns.unwrap());
    } else {
        assert_eq!(
            (info.tls_ready_ns, info.tls_version.as_ref(), info.resumed),
            (None, None, None)
        );
    }
    let sizes = [0, 1, MIB, 50 * MIB];
    let reqs: Vec<Request> = sizes.iter().map(|&n| Request::bytes(n)).collect();
    let recs = conn.run(&reqs).await;
    assert_eq!(recs.len(), sizes.len());
    for (i, (r, &n)) in recs.iter().zip(&sizes).enumerate() {
        assert_eq!(r.index, i);
        assert_ok(r, n);
    }
    // Another batch on the same connection (keep-alive protocols reuse it).
    let again = conn.run(&[Request::bytes(1000)]).await;
    assert_ok(&again[0], 1000);
    conn.close().await;

    if proto.uses_tls() {
        let conn2 = c.connect().await.unwrap();
        assert_eq!(conn2.info().resumed, Some(true), "{:?}", conn2.info());
        assert_ne!(conn2.info().conn_id, info.conn_id);
        conn2.close().await;
    }
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h10_integrity() {
    integrity(Protocol::H10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h10_tls_integrity() {
    integrity(Protocol::H10Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h11_integrity() {
    integrity(Protocol::H11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h11_tls_integrity() {
    integrity(Protocol::H11Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_integrity() {
    integrity(Protocol::H11Pipelined).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_integrity() {
    integrity(Protocol::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h10_opens_a_connection_per_request() {
    for proto in [Protocol::H10, Protocol::H10Tls] {
        let (srv, id) = server().await;
        let c = client(proto, &srv, &id);
        let mut conn = c.connect().await.unwrap();
        let first_id = conn.info().conn_id;
        let recs = conn
            .run(&[Request::bytes(10), Request::bytes(20), Request::bytes(30)])
            .await;
        for r in &recs {
            assert_ok(r, 10 * (r.index as u64 + 1));
        }
        // The first request used connect()'s connection; the others opened theirs.
        assert_eq!(recs[0].conn_id, first_id);
        assert_eq!(recs[0].transport_ready_ns, None);
        let mut ids: Vec<u64> = recs.iter().map(|r| r.conn_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{recs:?}");
        for r in &recs[1..] {
            let t = r.transport_ready_ns.unwrap();
            assert!(r.start_ns <= t && t <= r.request_sent_ns.unwrap());
            if proto == Protocol::H10Tls {
                let tls = r.tls_ready_ns.unwrap();
                assert!(t <= tls && tls <= r.request_sent_ns.unwrap());
            } else {
                assert_eq!(r.tls_ready_ns, None);
            }
        }
        assert_eq!(srv.stats().tcp_accepted, 3);
        srv.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h11_reuses_one_connection_and_queues_requests() {
    let (srv, id) = server().await;
    let c = client(Protocol::H11, &srv, &id);
    let mut conn = c.connect().await.unwrap();
    let reqs: Vec<Request> = (0..5).map(|i| Request::bytes(100_000 * (i + 1))).collect();
    let recs = conn.run(&reqs).await;
    for (i, r) in recs.iter().enumerate() {
        assert_ok(r, 100_000 * (i as u64 + 1));
        assert_eq!(r.conn_id, conn.info().conn_id);
        assert_eq!(r.stream_id, Some(i as u64));
        // All were due at once: each waited for the one before (HOL blocking).
        assert_eq!(r.start_ns, recs[0].start_ns);
        if i > 0 {
            assert!(r.request_sent_ns.unwrap() >= recs[i - 1].last_byte_ns.unwrap());
        }
    }
    assert_eq!(srv.stats().tcp_accepted, 1);
    assert_eq!(srv.stats().requests, 5);
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_go_out_before_responses_come_back() {
    let (srv, id) = server().await;
    let c = client(Protocol::H11Pipelined, &srv, &id);
    let mut conn = c.connect().await.unwrap();
    let sizes = [20 * MIB, 3, 70_000];
    let reqs: Vec<Request> = sizes.iter().map(|&n| Request::bytes(n)).collect();
    let recs = conn.run(&reqs).await;
    for (r, &n) in recs.iter().zip(&sizes) {
        assert_ok(r, n);
        assert_eq!(r.conn_id, conn.info().conn_id);
    }
    // Every request was written before the first (20 MiB) response was done,
    // and responses completed in request order.
    assert!(
        recs[2].request_sent_ns.unwrap() < recs[0].last_byte_ns.unwrap(),
        "{recs:?}"
    );
    assert!(recs[0].last_byte_ns < recs[1].first_byte_ns);
    assert!(recs[1].last_byte_ns <= recs[2].first_byte_ns);
    assert_eq!(srv.stats().tcp_accepted, 1);
    // The connection stays usable.
    let more = conn.run(&[Request::bytes(5), Request::bytes(6)]).await;
    assert_ok(&more[0], 5);
    assert_ok(&more[1], 6);
    assert_eq!(more[1].stream_id, Some(4));
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_are_concurrent_on_one_connection() {
    let (srv, id) = server().await;
    let c = client(Protocol::H2, &srv, &id);
    let mut conn = c.connect().await.unwrap();
    let mut reqs = vec![Request::bytes(30 * MIB)];
    reqs.extend((0..4).map(|i| Request::bytes(1000 + i)));
    let recs = conn.run(&reqs).await;
    assert_ok(&recs[0], 30 * MIB);
    let mut ids = Vec::new();
    for r in &recs {
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.conn_id, conn.info().conn_id);
        ids.push(r.stream_id.unwrap());
    }
    assert_eq!(ids, [1, 3, 5, 7, 9]);
    for r in &recs[1..] {
        assert_ok(r, 1000 + (r.index as u64 - 1));
        // Multiplexed: the small responses do not wait behind the big one.
        assert!(
            r.last_byte_ns < recs[0].last_byte_ns,
            "{r:?} vs {:?}",
            recs[0]
        );
    }
    assert_eq!(srv.stats().tcp_accepted, 1);
    // Stream ids continue on the next batch.
    let more = conn.run(&[Request::bytes(1)]).await;
    assert_eq!(more[0].stream_id, Some(11));
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_errors_progress_and_schedule() {
    let (srv, id) = server().await;
    for proto in [
        Protocol::H10,
        Protocol::H11Tls,
        Protocol::H11Pipelined,
        Protocol::H2,
    ] {
        let mut opts = ClientOptions::new(addr_for(proto, &srv), id.trust_anchors());
        opts.track_progress = true;
        let c = Client::new(proto, opts).unwrap();
        let mut conn = c.connect().await.unwrap();
        let reqs = vec![
            Request::bytes(100_000).range_from(12_345),
            Request::get("/nope"),
            Request::get("/bytes/x"),
            Request::bytes(10 * MIB).at(Duration::from_millis(30)),
            Request::bytes(1).at(Duration::from_millis(60)),
        ];
        let recs = conn.run(&reqs).await;
        let r = &recs[0];
        assert_eq!(
            (r.status, r.bytes, r.verified),
            (Some(206), 100_000 - 12_345, Some(true)),
            "{proto}: {r:?}"
        );
        assert_eq!(
            (recs[1].status, recs[1].verified, recs[1].ok()),
            (Some(404), None, true)
        );
        assert_eq!(recs[2].status, Some(400));
        assert_ok(&recs[3], 10 * MIB);
        // Due 30 ms and 60 ms after the batch start.
        let d = recs[4].start_ns - recs[3].start_ns;
        assert!((29_000_000..=31_000_000).contains(&d), "{proto}: {d}");
        assert!(recs[3].start_ns - recs[0].start_ns >= 29_000_000);
        let p = &recs[3].progress;
        assert!(p.len() >= 2, "{proto}: {p:?}");
        assert_eq!(
            *p.last().unwrap(),
            (recs[3].last_byte_ns.unwrap(), 10 * MIB)
        );
        for w in p.windows(2) {
            assert!(w[0].1 <= w[1].1 && w[0].0 <= w[1].0);
        }
        for w in p[..p.len() - 1].windows(2) {
            assert!(w[1].0 - w[0].0 >= 1_000_000, "more than one sample per ms");
        }
        conn.close().await;
    }
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_to_local_ip() {
    let (srv, id) = server().await;
    let mut opts = ClientOptions::new(srv.addrs.http[0], id.trust_anchors());
    opts.local_ip = Some([127, 0, 0, 2].into());
    let c = Client::new(Protocol::H11, opts).unwrap();
    let mut conn = c.connect().await.unwrap();
    assert_eq!(
        conn.info().local.unwrap().ip(),
        std::net::IpAddr::from([127, 0, 0, 2])
    );
    assert_ok(&conn.run(&[Request::bytes(10)]).await[0], 10);
    srv.shutdown(Duration::from_secs(1)).await;
}

/// A raw server that accepts and answers `reply` to every connection (then
/// closes if `close`), to exercise failure paths.
async fn fake_server(reply: &'static [u8], close: bool) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                if close {
                    drop(s);
                } else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_and_timeouts_are_errors_not_panics() {
    // Body cut short by the close: an error, and the record says how far it got.
    let addr = fake_server(b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nabc", true).await;
    let c = Client::new(Protocol::H10, ClientOptions::new(addr, vec![])).unwrap();
    let mut conn = c.connect().await.unwrap();
    let r = &conn.run(&[Request::bytes(100)]).await[0];
    assert_eq!((r.status, r.bytes, r.verified), (Some(200), 3, Some(false)));
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("97 body bytes still due"),
        "{r:?}"
    );
    assert_eq!(r.last_byte_ns, None);

    // Garbage instead of a response.
    let addr = fake_server(b"SSH-2.0-OpenSSH\r\n\r\n", true).await;
    let c = Client::new(Protocol::H10, ClientOptions::new(addr, vec![])).unwrap();
    let mut conn = c.connect().await.unwrap();
    let r = &conn.run(&[Request::bytes(1)]).await[0];
    assert!(r.error.as_deref().unwrap().contains("malformed"), "{r:?}");

    // A server that never answers: the request times out, later ones fail fast.
    let addr = fake_server(b"", false).await;
    let mut opts = ClientOptions::new(addr, vec![]);
    opts.timeout = Duration::from_millis(200);
    let c = Client::new(Protocol::H11, opts).unwrap();
    let mut conn = c.connect().await.unwrap();
    let t0 = std::time::Instant::now();
    let recs = conn.run(&[Request::bytes(1), Request::bytes(2)]).await;
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        recs[0].error.as_deref().unwrap().contains("timed out"),
        "{recs:?}"
    );
    assert!(
        recs[1].error.as_deref().unwrap().contains("not sent"),
        "{recs:?}"
    );

    // A body that stalls: the timeout keeps how far it got (for a Range resume).
    let addr = fake_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabcd", false).await;
    let mut opts = ClientOptions::new(addr, vec![]);
    opts.timeout = Duration::from_millis(300);
    opts.track_progress = true;
    for proto in [Protocol::H10, Protocol::H11] {
        let c = Client::new(proto, opts.clone()).unwrap();
        let mut conn = c.connect().await.unwrap();
        let r = &conn.run(&[Request::bytes(100)]).await[0];
        assert!(
            r.error.as_deref().unwrap().contains("timed out"),
            "{proto}: {r:?}"
        );
        assert_eq!(
            (r.status, r.bytes, r.verified),
            (Some(200), 4, Some(false)),
            "{proto}"
        );
        assert!(
            r.first_byte_ns.is_some() && r.last_byte_ns.is_none(),
            "{proto}: {r:?}"
        );
        assert_eq!(r.progress.last().map(|p| p.1), Some(4), "{proto}");
    }

    // Nothing listening: connect fails with the address in the error.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let c = Client::new(Protocol::H11, ClientOptions::new(dead, vec![])).unwrap();
    let e = c.connect().await.unwrap_err().to_string();
    assert!(e.contains(&dead.to_string()), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_enum_dispatch_and_close() {
    let (srv, id) = server().await;
    let c = client(Protocol::H2, &srv, &id);
    let mut conn: Connection = c.connect().await.unwrap();
    assert!(conn.as_h3().is_none());
    assert_ok(&conn.run(&[Request::bytes(7)]).await[0], 7);
    conn.close().await;
    srv.shutdown(Duration::from_secs(1)).await;
}

/// A bad request target fails alone: no bytes written, the connection and the
/// other requests of the batch unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_fail_alone() {
    let (srv, id) = server().await;
    let protos = [
        Protocol::H10,
        Protocol::H11,
        Protocol::H11Pipelined,
        Protocol::H2,
    ];
    for proto in protos {
        let c = client(proto, &srv, &id);
        let mut conn = c.connect().await.unwrap();
        let recs = conn
            .run(&[
                Request::bytes(5),
                Request::get("/bytes/1 HTTP/1.1\r\nX-Smuggled: 1\r\n\r\nGET /bytes/2"),
                Request::get("bytes/3"),
                Request::get("/bytes/\u{7f}"),
                Request::bytes(6),
            ])
            .await;
        assert_ok(&recs[0], 5);
        for r in &recs[1..4] {
            let e = r.error.as_deref().unwrap_or_default();
            assert!(e.contains("request target"), "{proto}: {r:?}");
            assert_eq!((r.status, r.request_sent_ns), (None, None));
        }
        assert_ok(&recs[4], 6);
        assert_ok(&conn.run(&[Request::bytes(7)]).await[0], 7);
        conn.close().await;
    }
    assert_eq!(srv.stats().requests, 3 * protos.len() as u64);
    srv.shutdown(Duration::from_secs(1)).await;
}

/// HTTP/1.0's `connect()` opens the first request's connection ahead of time;
/// if the server's idle timeout closes it before the request is due, the
/// request goes out on a fresh connection instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h10_stale_preopened_connection_is_replaced() {
    let id = Identity::generate(&[]).unwrap();
    let mut o = ServerOptions::ephemeral(id.clone());
    o.header_timeout = Duration::from_millis(150);
    let srv = quicbench_servers::start(o).await.unwrap();
    for proto in [Protocol::H10, Protocol::H10Tls] {
        let c = client(proto, &srv, &id);
        let mut conn = c.connect().await.unwrap();
        let first = conn.info().conn_id;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = &conn.run(&[Request::bytes(10)]).await[0];
        assert_ok(r, 10);
        assert_ne!(r.conn_id, first, "{proto}");
        assert!(r.transport_ready_ns.is_some(), "{proto}: {r:?}");
    }
    srv.shutdown(Duration::from_secs(1)).await;
}

/// Every client's futures are Send, so callers can spawn them.
#[allow(dead_code)]
fn futures_are_send(mut conn: Connection, c: Client, reqs: Vec<Request>) {
    fn send<T: Send>(_: T) {}
    send(c.connect());
    send(async move {
        conn.run(&reqs).await;
        conn.close().await;
    });
}

/// IPv6 loopback: bracketed authority, IP server name, every TCP protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback() {
    let id = Identity::generate(&[]).unwrap();
    let mut o = ServerOptions::ephemeral(id.clone());
    o.listen = vec![std::net::Ipv6Addr::LOCALHOST.into()];
    let srv = quicbench_servers::start(o).await.unwrap();
    for proto in [
        Protocol::H10Tls,
        Protocol::H11,
        Protocol::H11Pipelined,
        Protocol::H2,
    ] {
        let c = client(proto, &srv, &id);
        assert_eq!(c.shared().opts.server_name, "::1");
        let mut conn = c.connect().await.unwrap();
        assert!(conn.info().local.unwrap().is_ipv6());
        assert_ok(&conn.run(&[Request::bytes(1000)]).await[0], 1000);
        conn.close().await;
    }
    srv.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
