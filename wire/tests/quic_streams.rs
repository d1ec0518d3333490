//! The stream limits each end of a QUIC connection grants, read from what a
//! real quinn connection on loopback lets the other end open: a client lets
//! the server open HTTP/3's unidirectional streams and no bidirectional one
//! (RFC 9114 §6.1); a server lets the client open `MAX_STREAMS` requests.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quicbench_wire::tls::{self, Identity, ALPN_H3};
use quicbench_wire::transport::{self, Transport, MAX_STREAMS, MAX_UNI_STREAMS};
use quicbench_wire::CongestionControl;

/// Long enough for a stream credit on loopback; an open that waits this
/// long is blocked by the limit.
const BLOCKED: Duration = Duration::from_millis(300);

async fn pair() -> (
    quinn::Endpoint,
    quinn::Endpoint,
    quinn::Connection,
    quinn::Connection,
) {
    let id = Identity::generate(&[]).expect("identity");
    let t = Transport::new(CongestionControl::Cubic);
    let scfg = tls::quic_server_config(&id, t).expect("server config");
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("server socket");
    let server = transport::quic_endpoint(quinn::EndpointConfig::default(), Some(scfg), sock)
        .expect("server endpoint");
    let addr: SocketAddr = server.local_addr().expect("server address");
    let ctls = tls::client_config(&id.trust_anchors(), &[ALPN_H3], false).expect("client tls");
    let ccfg = tls::quic_client_config(Arc::new(ctls), t).expect("client config");
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket");
    let client = transport::quic_endpoint(quinn::EndpointConfig::default(), None, sock)
        .expect("client endpoint");
    let connecting = client
        .connect_with(ccfg, addr, "localhost")
        .expect("connect");
    let accept = async {
        let incoming = server.accept().await.expect("incoming");
        incoming.await.expect("server side")
    };
    let (c, s) = tokio::join!(connecting, accept);
    (client, server, c.expect("client side"), s)
}

#[tokio::test]
async fn a_client_grants_the_server_uni_streams_only() {
    let (_c_ep, _s_ep, _client, server) = pair().await;
    for i in 0..MAX_UNI_STREAMS {
        tokio::time::timeout(BLOCKED, server.open_uni())
            .await
            .unwrap_or_else(|_| panic!("unidirectional stream {i} blocked"))
            .expect("open_uni");
    }
    assert!(
        tokio::time::timeout(BLOCKED, server.open_uni())
            .await
            .is_err(),
        "the server opened more than {MAX_UNI_STREAMS} unidirectional streams"
    );
    assert!(
        tokio::time::timeout(BLOCKED, server.open_bi())
            .await
            .is_err(),
        "the server could open a bidirectional stream toward the client"
    );
}

#[tokio::test]
async fn a_server_grants_the_client_max_streams_requests() {
    let (_c_ep, _s_ep, client, _server) = pair().await;
    // quinn counts streams opened, not used: keep every one open.
    let mut open = Vec::new();
    for i in 0..MAX_STREAMS {
        let s = tokio::time::timeout(BLOCKED, client.open_bi())
            .await
            .unwrap_or_else(|_| panic!("bidirectional stream {i} blocked"))
            .expect("open_bi");
        open.push(s);
    }
    assert!(
        tokio::time::timeout(BLOCKED, client.open_bi())
            .await
            .is_err(),
        "the client opened more than {MAX_STREAMS} bidirectional streams"
    );
    for i in 0..MAX_UNI_STREAMS {
        tokio::time::timeout(BLOCKED, client.open_uni())
            .await
            .unwrap_or_else(|_| panic!("unidirectional stream {i} blocked"))
            .expect("open_uni");
    }
}
