//! The raw-QUIC baseline of the transfer benches: quinn streams, no HTTP/3.
//!
//! Everything but HTTP/3 is the h3 transfer's: the same quinn, the same TLS
//! and transport settings (`wire::tls`, `wire::transport`, called, not
//! copied), the same server endpoint (`servers::h3::bind_with`, with the
//! servers' socket buffer), the same client socket buffers and keep-alive,
//! the same body (`servers::respond::PatternChunks`, 64 KiB chunks) checked
//! as the h3 client checks it (`wire::pattern::Verifier`). What is left is
//! HTTP/3's own cost: h3's framing, QPACK and control streams, and our
//! binding of h3 to quinn (`wire::h3quic`).
//!
//! The exchange: the client opens a bidirectional stream, sends the body size
//! (8 bytes, big-endian) and FIN; the server answers that many pattern bytes
//! and FIN. ALPN is "h3" because the shared TLS configs offer it; nothing
//! here speaks HTTP/3.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use quicbench_clients::ClientOptions;
use quicbench_servers::respond::PatternChunks;
use quicbench_wire::pattern::Verifier;
use quicbench_wire::resource::ByteRange;
use quicbench_wire::tls::{self, Identity, ALPN_H3};
use quicbench_wire::transport::{self, Transport, QUIC_SOCKET_BUFFER};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Start a raw-QUIC server on `ip` (any port) with `transport`; must run in a
/// tokio runtime, which then owns it. Returns its address.
pub fn start(ip: IpAddr, identity: &Identity, t: Transport) -> Result<SocketAddr, BoxError> {
    let cfg = tls::quic_server_config(identity, t)?;
    let (ep, _granted) =
        quicbench_servers::h3::bind_with(SocketAddr::new(ip, 0), cfg, Some(QUIC_SOCKET_BUFFER))?;
    let addr = ep.local_addr()?;
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        if let Err(e) = respond(send, recv).await {
                            eprintln!("raw-QUIC bench server: {e}");
                        }
                    });
                }
            });
        }
    });
    Ok(addr)
}

async fn respond(mut send: quinn::SendStream, mut recv: quinn::RecvStream) -> Result<(), BoxError> {
    let req = recv.read_to_end(8).await?;
    let size: [u8; 8] = req.as_slice().try_into()?;
    let end = u64::from_be_bytes(size);
    for chunk in PatternChunks::new(ByteRange { start: 0, end }) {
        send.write_chunk(chunk).await?;
    }
    send.finish()?;
    Ok(())
}

/// A raw-QUIC client connection, set up as `quicbench_clients::h3` sets up
/// its own from the same options.
pub struct RawConn {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl RawConn {
    pub async fn connect(server: SocketAddr, o: &ClientOptions) -> Result<Self, BoxError> {
        let tls_cfg = tls::client_config(&o.trust, &[ALPN_H3], false)?;
        let t = Transport {
            cc: o.cc,
            link: o.link,
        };
        let cfg = tls::quic_client_config_with_qlog(Arc::new(tls_cfg), t, None, o.stall_timeout)?;
        let ip = o.local_ip.unwrap_or(if server.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        transport::set_socket_buffers(&socket, QUIC_SOCKET_BUFFER);
        let endpoint = transport::quic_endpoint(quinn::EndpointConfig::default(), None, socket)?;
        let conn = endpoint.connect_with(cfg, server, &o.server_name)?.await?;
        Ok(RawConn {
            _endpoint: endpoint,
            conn,
        })
    }

    /// Fetch `size` pattern bytes on a new stream, verifying them on the way.
    pub async fn fetch(&self, size: u64) -> Result<(), BoxError> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_all(&size.to_be_bytes()).await?;
        send.finish()?;
        let mut check = Verifier::new(0);
        while let Some(c) = recv.read_chunk(usize::MAX, true).await? {
            check.update(&c.bytes);
        }
        if let Some(at) = check.first_error() {
            return Err(format!("raw-QUIC body differs from the pattern at byte {at}").into());
        }
        if check.offset() != size {
            return Err(format!(
                "raw-QUIC body has {} bytes, expected {size}",
                check.offset()
            )
            .into());
        }
        Ok(())
    }

    pub fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }
}
