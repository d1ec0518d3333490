//! The TCP server on raw sockets: HTTP/1.0 and keep-alive semantics, pipelining
//! order, the exact header set, every error status, limits (header size,
//! header timeout, max connections), hostile input, and shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quicbench_servers::{ServerOptions, Servers};
use quicbench_wire::pattern;
use quicbench_wire::tls::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(tweak: impl FnOnce(&mut ServerOptions)) -> Servers {
    let mut o = ServerOptions::ephemeral(Identity::generate(&[]).unwrap());
    tweak(&mut o);
    quicbench_servers::start(o).await.unwrap()
}

/// A parsed response read off a raw socket.
#[derive(Debug)]
struct Resp {
    version: u8,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        n.sort();
        n
    }
}

/// A raw HTTP/1.x connection with a read buffer (responses may arrive together).
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Read more; false on EOF or error.
    async fn fill(&mut self) -> bool {
        let mut tmp = vec![0u8; 64 * 1024];
        match tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(_) => panic!("no data from the server in 10 s"),
        }
    }

    /// Read one response (Content-Length framed; `head` = answer to HEAD).
    /// None if the connection closed before a complete head.
    async fn response(&mut self, head: bool) -> Option<Resp> {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let (version, status) = (r.version.unwrap(), r.code.unwrap());
                let mut resp = Resp {
                    version,
                    status,
                    headers,
                    body: Vec::new(),
                };
                let len: usize = if head {
                    0
                } else {
                    resp.header("content-length")
                        .map(|v| v.parse().unwrap())
                        .unwrap_or(0)
                };
                self.buf.drain(..n);
                while self.buf.len() < len {
                    assert!(self.fill().await, "closed inside a body");
                }
                resp.body = self.buf.drain(..len).collect();
                return Some(resp);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// True if the server closes the connection within `within` (reading and
    /// discarding whatever comes first).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut tmp = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline.into(), self.s.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn get(path: &str, version: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/{version}\r\nHost: test\r\n{extra}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_closes_unless_keep_alive() {
    let srv = start(|_| {}).await;
    let addr = srv.addrs.http[0];

    let mut c = Raw::connect(addr).await;
    c.send(&get("/bytes/1000", "1.0", "")).await;
    let r = c.response(false).await.unwrap();
    assert_eq!((r.version, r.status, r.body.len()), (0, 200, 1000));
    assert_eq!(pattern::verify(0, &r.body), Ok(()));
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "HTTP/1.0 without keep-alive must close"
    );

    let mut c = Raw::connect(addr).await;
    c.send(&get("/bytes/10", "1.0", "Connection: keep-alive\r\n"))
        .await;
    let r = c.response(false).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive")
    );
    c.send(&get("/bytes/20", "1.0", "Connection: keep-alive\r\n"))
        .await;
    let r = c.response(false).await.unwrap();
    assert_eq!(r.body.len(), 20);
    // Last one without keep-alive: closed after it.
    c.send(&get("/", "1.0", "")).await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    assert!(c.closed_within(Duration::from_secs(2)).await);

    // HTTP/1.1 keeps the connection until `Connection: close`.
    let mut c = Raw::connect(addr).await;
    c.send(&get("/bytes/1", "1.1", "")).await;
    let r = c.response(false).await.unwrap();
    assert_eq!(
        (r.version, r.status, r.header("connection")),
        (1, 200, None)
    );
    assert!(!c.closed_within(Duration::from_millis(200)).await);
    c.send(&get("/bytes/2", "1.1", "Connection: close\r\n"))
        .await;
    assert_eq!(c.response(false).await.unwrap().body.len(), 2);
    assert!(c.closed_within(Duration::from_secs(2)).await);
    assert_eq!(srv.stats().tcp_accepted, 3);
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_answered_in_order() {
    let srv = start(|_| {}).await;
    let mut c = Raw::connect(srv.addrs.http[0]).await;
    let sizes = [70_000usize, 3, 200_000, 0, 1];
    let mut all = Vec::new();
    for n in sizes {
        all.extend(get(&format!("/bytes/{n}"), "1.1", ""));
    }
    c.send(&all).await; // every request in one write
    for n in sizes {
        let r = c.response(false).await.unwrap();
        assert_eq!((r.status, r.body.len()), (200, n));
        assert_eq!(pattern::verify(0, &r.body), Ok(()));
    }
    assert_eq!(srv.stats().requests, sizes.len() as u64);
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_header_set_and_statuses() {
    let srv = start(|o| o.max_bytes = 1 << 20).await;
    let mut c = Raw::connect(srv.addrs.http[0]).await;
    let base = ["cache-control", "content-length", "content-type", "server"];

    c.send(&get("/bytes/5", "1.1", "")).await;
    let r = c.response(false).await.unwrap();
    let mut want: Vec<&str> = base.to_vec();
    want.push("accept-ranges");
    want.sort();
    assert_eq!(r.names(), want, "{r:?}");
    assert_eq!(r.header("server"), Some("quicbench"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("cache-control"), Some("no-store"));

    c.send(&get("/bytes/5000", "1.1", "Range: bytes=1000-\r\n"))
        .await;
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.body.len()), (206, 4000));
    assert_eq!(r.header("content-range"), Some("bytes 1000-4999/5000"));
    assert_eq!(pattern::verify(1000, &r.body), Ok(()));

    c.send(&get("/bytes/5000", "1.1", "Range: bytes=5000-\r\n"))
        .await;
    let r = c.response(false).await.unwrap();
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */5000"))
    );

    for (path, status) in [
        ("/", 200),
        ("/bytes/abc", 400),
        ("/bytes/2000000", 413),
        ("/nope", 404),
    ] {
        c.send(&get(path, "1.1", "")).await;
        let r = c.response(false).await.unwrap();
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.names(), base, "{path}");
        assert_eq!(
            r.body.len().to_string(),
            r.header("content-length").unwrap()
        );
    }

    c.send(b"POST /bytes/5 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    let r = c.response(false).await.unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));

    c.send(b"HEAD /bytes/123456 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let r = c.response(true).await.unwrap();
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("123456"))
    );
    // No body followed the HEAD response: the next response parses cleanly.
    c.send(&get("/bytes/2", "1.1", "")).await;
    assert_eq!(c.response(false).await.unwrap().body.len(), 2);

    let st = srv.stats();
    assert_eq!(st.bad_requests, 5, "416, 400, 413, 404, 405: {st:?}");
    // Body bytes only: 5 + 4000 + 2 + the small bodies.
    assert!(st.bytes_sent >= 4007, "{st:?}");
    srv.shutdown(Duration::from_secs(1)).await;
}

/// Hostile input never crashes or wedges the server: after each, a normal
/// request on a new connection still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_or_closed_and_server_keeps_serving() {
    let srv = start(|o| {
        o.header_timeout = Duration::from_millis(400);
        o.max_header_bytes = 4096;
    })
    .await;
    let addr = srv.addrs.http[0];
    let still_serving = || async move {
        let mut c = Raw::connect(addr).await;
        c.send(&get("/bytes/100", "1.1", "")).await;
        let r = c.response(false).await.unwrap();
        assert_eq!((r.status, r.body.len()), (200, 100));
    };

    // Expected statuses (None: any 4xx, or a close without an answer).
    type Case = (&'static str, Vec<u8>, Option<&'static [u16]>);
    let cases: Vec<Case> = vec![
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec(), Some(&[400])),
        ("bad version", b"GET / HTTP/9.9\r\n\r\n".to_vec(), Some(&[400])),
        ("oversized headers", {
            let mut v = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
            v.extend(std::iter::repeat_n(b'a', 8000));
            v.extend(b"\r\n\r\n");
            v
        }, Some(&[431])),
        (
            "conflicting Content-Length and Transfer-Encoding",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            // RFC 9112 §6.1: reject, or let Transfer-Encoding win and close after
            // the response (hyper does the latter; the close is checked below).
            Some(&[400, 200]),
        ),
        (
            "two different Content-Lengths",
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec(),
            Some(&[400]),
        ),
        ("binary garbage", (0..2000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(), None),
        ("TLS hello on the cleartext port", vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03], None),
    ];
    for (what, bytes, want) in cases {
        let mut c = Raw::connect(addr).await;
        c.send(&bytes).await;
        match (c.response(false).await, want) {
            (Some(r), Some(s)) => assert!(s.contains(&r.status), "{what}: {r:?}"),
            (None, Some(s)) => panic!("{what}: closed without the expected {s:?}"),
            (r, None) => assert!(r.as_ref().is_none_or(|r| r.status >= 400), "{what}: {r:?}"),
        }
        assert!(
            c.closed_within(Duration::from_secs(2)).await,
            "{what}: not closed"
        );
        still_serving().await;
    }

    // Slowloris: a head trickled a byte at a time is cut at the header timeout.
    let mut c = Raw::connect(addr).await;
    let t0 = Instant::now();
    let trickle = b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_at = None;
    for b in trickle {
        if c.s.write_all(&[*b]).await.is_err() {
            closed_at = Some(t0.elapsed());
            break;
        }
        if c.closed_within(Duration::from_millis(100)).await {
            closed_at = Some(t0.elapsed());
            break;
        }
    }
    let at = closed_at.expect("slowloris connection never closed");
    assert!(
        at >= Duration::from_millis(350) && at < Duration::from_secs(2),
        "closed after {at:?}"
    );

    // An idle keep-alive connection is closed after the header timeout too.
    let mut c = Raw::connect(addr).await;
    c.send(&get("/bytes/1", "1.1", "")).await;
    assert_eq!(c.response(false).await.unwrap().status, 200);
    let t0 = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "idle keep-alive kept open"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "closed too early: {:?}",
        t0.elapsed()
    );

    // Half-open: connect and say nothing (cleartext and TLS): closed too.
    let mut c = Raw::connect(addr).await;
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "silent cleartext connection kept open"
    );
    let mut c = Raw::connect(srv.addrs.tls[0]).await;
    assert!(
        c.closed_within(Duration::from_secs(2)).await,
        "silent TLS connection kept open"
    );
    // Half-closed after a partial head: closed, no response.
    let mut c = Raw::connect(addr).await;
    c.send(b"GET / HTTP/1.1\r\nHo").await;
    c.s.shutdown().await.unwrap();
    assert!(c.closed_within(Duration::from_secs(2)).await);
    // Garbage instead of a TLS ClientHello.
    let mut c = Raw::connect(srv.addrs.tls[0]).await;
    c.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(c.closed_within(Duration::from_secs(2)).await);

    still_serving().await;
    let st = srv.stats();
    assert!(st.tls_failures >= 2, "{st:?}");
    assert!(st.bad_requests >= 5, "{st:?}");
    // Every connection of this test has been closed by now (give tasks a moment).
    let deadline = Instant::now() + Duration::from_secs(2);
    while srv.stats().open_connections > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.stats().open_connections, 0);
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_503_and_close() {
    let srv = start(|o| o.max_connections = 2).await;
    let addr = srv.addrs.http[0];
    let mut a = Raw::connect(addr).await;
    let mut b = Raw::connect(addr).await;
    for c in [&mut a, &mut b] {
        c.send(&get("/bytes/1", "1.1", "")).await;
        assert_eq!(c.response(false).await.unwrap().status, 200);
    }
    let mut third = Raw::connect(addr).await;
    third.send(&get("/bytes/1", "1.1", "")).await;
    let r = third.response(false).await.unwrap();
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    assert!(third.closed_within(Duration::from_secs(2)).await);
    assert_eq!(srv.stats().tcp_refused, 1);
    // The kept-alive ones still work; closing one frees a slot.
    a.send(&get("/bytes/3", "1.1", "")).await;
    assert_eq!(a.response(false).await.unwrap().body.len(), 3);
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut c = Raw::connect(addr).await;
        c.send(&get("/bytes/4", "1.1", "")).await;
        let r = c.response(false).await.unwrap();
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_closes_idle_connections() {
    let srv = start(|_| {}).await;
    let addr = srv.addrs.http[0];
    let mut idle = Raw::connect(addr).await;
    idle.send(&get("/", "1.1", "")).await;
    assert_eq!(idle.response(false).await.unwrap().status, 200);
    srv.shutdown(Duration::from_secs(1)).await;
    assert!(
        idle.closed_within(Duration::from_secs(2)).await,
        "idle keep-alive connection survived shutdown"
    );
    // The listener is gone (dropped with its task): connecting fails or is closed at once.
    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
    {
        let mut c = Raw { s, buf: Vec::new() };
        assert!(c.closed_within(Duration::from_secs(1)).await);
    }
}

/// Over TLS the refusal comes after the handshake, in the negotiated protocol:
/// HTTP/2 gets a 503 stream then GOAWAY, HTTP/1.1 a 503 with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_beyond_the_limit_get_503() {
    use quicbench_clients::{Client, ClientOptions, Request};
    use quicbench_wire::Protocol;
    let id = Identity::generate(&[]).unwrap();
    let mut o = ServerOptions::ephemeral(id.clone());
    o.max_connections = 1;
    let srv = quicbench_servers::start(o).await.unwrap();
    let opts = ClientOptions::new(srv.addrs.tls[0], id.trust_anchors());
    let c = Client::new(Protocol::H2, opts.clone()).unwrap();
    let mut first = c.connect().await.unwrap();
    assert_eq!(first.run(&[Request::bytes(1)]).await[0].status, Some(200));
    for proto in [Protocol::H2, Protocol::H11Tls] {
        let c = Client::new(proto, opts.clone()).unwrap();
        let mut over = c.connect().await.unwrap();
        let r = &over.run(&[Request::bytes(1)]).await[0];
        assert_eq!(r.status, Some(503), "{proto}: {r:?}");
        over.close().await;
    }
    // Pipelined: the first request gets the 503, the ones behind it learn that
    // the server closed after it.
    let c = Client::new(Protocol::H11Pipelined, opts.clone()).unwrap();
    let mut over = c.connect().await.unwrap();
    let recs = over
        .run(&[Request::bytes(1), Request::bytes(2), Request::bytes(3)])
        .await;
    assert_eq!(recs[0].status, Some(503), "{recs:?}");
    for r in &recs[1..] {
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .contains("closed the connection"),
            "{r:?}"
        );
    }
    let again = over.run(&[Request::bytes(1)]).await;
    assert!(
        again[0].error.as_deref().unwrap().contains("not sent"),
        "{again:?}"
    );
    // A batch whose last response closes leaves the connection marked closed.
    let mut over = c.connect().await.unwrap();
    assert_eq!(over.run(&[Request::bytes(1)]).await[0].status, Some(503));
    let again = over.run(&[Request::bytes(1)]).await;
    assert!(
        again[0]
            .error
            .as_deref()
            .unwrap()
            .contains("Connection: close"),
        "{again:?}"
    );
    assert_eq!(srv.stats().tcp_refused, 4);
    // The first connection is unaffected.
    assert_eq!(first.run(&[Request::bytes(2)]).await[0].bytes, 2);
    srv.shutdown(Duration::from_secs(1)).await;
}

/// A client that completes TLS and then says nothing is closed after the header
/// timeout, whatever protocol ALPN chose (HTTP/2 has a preface deadline: hyper's
/// own server would wait forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_after_tls_handshake_is_closed() {
    use quicbench_wire::tls::{client_config, ALPN_H1, ALPN_H2};
    let id = Identity::generate(&[]).unwrap();
    let mut o = ServerOptions::ephemeral(id.clone());
    o.header_timeout = Duration::from_millis(300);
    let srv = quicbench_servers::start(o).await.unwrap();
    for alpn in [ALPN_H2, ALPN_H1] {
        let cfg = client_config(&id.trust_anchors(), &[alpn], false).unwrap();
        let tcp = TcpStream::connect(srv.addrs.tls[0]).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let t0 = Instant::now();
        let mut buf = [0u8; 1024];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue, // session tickets, h2 SETTINGS
                Err(_) => break false,
            }
        };
        assert!(
            closed,
            "{:?}: silent connection kept open",
            String::from_utf8_lossy(alpn)
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "closed too early"
        );
    }
    // And a real client is still served.
    let mut c = Raw::connect(srv.addrs.http[0]).await;
    c.send(&get("/bytes/3", "1.1", "")).await;
    assert_eq!(c.response(false).await.unwrap().body.len(), 3);
    srv.shutdown(Duration::from_secs(1)).await;
}

/// Many clients at once (bounded: 64 connections × 5 requests): every body
/// arrives intact, and every connection is accounted for and released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    use quicbench_clients::{Client, ClientOptions, Request};
    use quicbench_wire::Protocol;
    let id = Identity::generate(&[]).unwrap();
    let srv = quicbench_servers::start(ServerOptions::ephemeral(id.clone()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let proto = [
            Protocol::H11,
            Protocol::H11Tls,
            Protocol::H2,
            Protocol::H11Pipelined,
        ][i as usize % 4];
        let addr = if proto.uses_tls() {
            srv.addrs.tls[0]
        } else {
            srv.addrs.http[0]
        };
        let c = Client::new(proto, ClientOptions::new(addr, id.trust_anchors())).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await.unwrap();
            let reqs: Vec<Request> = (0..5)
                .map(|k| Request::bytes(100_000 + i * 10 + k))
                .collect();
            let recs = conn.run(&reqs).await;
            conn.close().await;
            for (k, r) in recs.iter().enumerate() {
                assert!(r.ok() && r.verified == Some(true), "{proto}: {r:?}");
                assert_eq!(r.bytes, 100_000 + i * 10 + k as u64);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let st = srv.stats();
    assert_eq!((st.tcp_accepted, st.requests, st.tcp_refused), (64, 320, 0));
    let deadline = Instant::now() + Duration::from_secs(3);
    while srv.stats().open_connections > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(srv.stats().open_connections, 0);
    srv.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
