//! QUIC side of the `conns` workload: quinn client endpoints (a few UDP sockets
//! per client address), each carrying thousands of connections to the server's
//! one UDP port. The server tells them apart by connection ID, not by 4-tuple.
//!
//! Client transport parameters are smaller than the benchmark's (the point here
//! is how many connections fit, not how fast one goes): 64 KiB stream and
//! 256 KiB connection receive windows, 256 KiB send window, 8 streams each way,
//! and TLS session resumption off, so every handshake is a full one. The server
//! keeps its normal configuration (`quicbench_wire::tls::transport_config`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicbench_wire::tls::{self, ALPN_H3};
use rustls_pki_types::CertificateDer;

/// The client config of every connection.
pub fn client_config(
    trust: &[CertificateDer<'static>],
    keep_alive: Option<Duration>,
    cc: quicbench_wire::CongestionControl,
) -> anyhow::Result<quinn::ClientConfig> {
    let mut t = tls::client_config(trust, &[ALPN_H3], false)?;
    t.resumption = rustls::client::Resumption::disabled();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(t))
        .map_err(|e| anyhow::anyhow!("QUIC client TLS: {e}"))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    // The cell's controller (wire::transport), with small windows: thousands
    // of idle connections, not throughput.
    // Stream limits are every client's (`quic_client`: none from the server
    // but HTTP/3's unidirectional ones).
    let mut tr = quicbench_wire::transport::Transport::new(cc).quic_client();
    tr.stream_receive_window(quinn::VarInt::from_u32(64 << 10));
    tr.receive_window(quinn::VarInt::from_u32(256 << 10));
    tr.send_window(256 << 10);
    tr.keep_alive_interval(keep_alive);
    cfg.transport_config(Arc::new(tr));
    Ok(cfg)
}

/// A client endpoint on `bind` with a [`super::UDP_RECV_BUFFER`] receive buffer.
pub fn endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    quicbench_servers::h3::set_recv_buffer(&socket, super::UDP_RECV_BUFFER);
    quicbench_wire::transport::quic_endpoint(quinn::EndpointConfig::default(), None, socket)
}

/// One connection on `ep`.
pub async fn establish(
    ep: &quinn::Endpoint,
    cfg: &quinn::ClientConfig,
    server: SocketAddr,
    limit: Duration,
) -> Result<(quinn::Connection, Duration), String> {
    let t0 = Instant::now();
    let name = server.ip().to_string();
    let connecting = ep
        .connect_with(cfg.clone(), server, &name)
        .map_err(|e| format!("connect: {e}"))?;
    match tokio::time::timeout(limit, connecting).await {
        Ok(Ok(c)) => Ok((c, t0.elapsed())),
        Ok(Err(e)) => Err(format!("handshake: {}", short(&e))),
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}

/// Liveness: open a unidirectional stream of a reserved HTTP/3 type (0x21, to
/// be ignored by the peer, RFC 9114 §6.2.3) and wait until the server's QUIC
/// stack has acknowledged it or its HTTP/3 layer stopped it (STOP_SENDING):
/// either way a round trip with the server on this very connection.
pub async fn check(conn: &quinn::Connection, limit: Duration) -> Result<(), String> {
    if let Some(r) = conn.close_reason() {
        return Err(format!("closed: {}", short(&r)));
    }
    let work = async {
        let mut s = conn
            .open_uni()
            .await
            .map_err(|e| format!("open_uni: {}", short(&e)))?;
        s.write_all(&[0x21])
            .await
            .map_err(|e| format!("write: {e}"))?;
        let _ = s.finish();
        s.stopped().await.map_err(|e| format!("stopped: {e}"))?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}

/// The variant of a connection error, without per-connection detail (so that
/// failures group by kind).
fn short(e: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError as E;
    match e {
        E::VersionMismatch => "version mismatch".into(),
        E::TransportError(t) => format!("transport error {}", t.code),
        E::ConnectionClosed(c) => format!("closed by peer ({})", c.error_code),
        E::ApplicationClosed(c) => format!("closed by application ({})", c.error_code),
        E::Reset => "reset".into(),
        E::TimedOut => "timed out (idle)".into(),
        E::LocallyClosed => "locally closed".into(),
        E::CidsExhausted => "connection IDs exhausted".into(),
    }
}
