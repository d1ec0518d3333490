//! HTTP/1.0 + HTTP/1.1 cleartext and HTTP/1.1 + HTTP/2 over TLS 1.3. STUB.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::ServerCtx;

/// Bind a listener (SO_REUSEADDR, large backlog) from a sync context.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

/// Serve HTTP on `listener`; with `tls`, TLS 1.3 with ALPN h2/http/1.1.
pub fn spawn(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, ctx: Arc<ServerCtx>) -> JoinHandle<()> {
    let _ = (tls, ctx);
    tokio::spawn(async move {
        let _l = listener;
    })
}
