//! The UDP probe server (echo, sink, source). STUB.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::ServerCtx;

/// Bind the probe socket (must be called inside a tokio runtime).
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// Serve the probe protocol on `sock`.
pub fn spawn(sock: UdpSocket, ctx: Arc<ServerCtx>) -> JoinHandle<()> {
    let _ = ctx;
    tokio::spawn(async move {
        let _s = sock;
    })
}
