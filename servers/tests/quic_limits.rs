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
