//! HTTP/3 over QUIC (quinn + h3). STUB.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::ServerCtx;

/// Bind a QUIC endpoint (must be called inside a tokio runtime).
pub fn bind(addr: SocketAddr, cfg: quinn::ServerConfig) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::server(cfg, addr)
}

/// Accept connections on `ep` and serve HTTP/3.
pub fn spawn(ep: quinn::Endpoint, ctx: Arc<ServerCtx>) -> JoinHandle<()> {
    let _ = ctx;
    tokio::spawn(async move {
        let _ep = ep;
    })
}
