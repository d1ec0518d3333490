//! A TLS 1.3 server stream that reads early data (0-RTT over TCP).
//!
//! tokio-rustls's server finishes the whole handshake (the client's Finished,
//! one round trip after its ClientHello) before the first plaintext byte, so a
//! request sent as early data would be answered a round trip late. This
//! stream instead returns as soon as the server's flight is written; its
//! reads give the early data first (rustls's `ServerConnection::early_data`),
//! then the ordinary stream, and its writes go out as 0.5-RTT data
//! (`send_half_rtt_data`, set by `wire::tls::tcp_server_config`). Used only
//! when the server accepts early data; every other TLS connection keeps
//! tokio-rustls.
//!
//! Replay: the tickets are single use (rustls's stateful cache), and only
//! idempotent GETs are ever served here.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::{ServerConfig, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A server-side TLS stream over `S` (see the module doc).
pub(crate) struct EarlyTls<S> {
    io: S,
    conn: ServerConnection,
    /// The peer closed the TCP stream.
    eof: bool,
}

/// Sync `Read` over an async reader: `WouldBlock` when not ready.
struct SyncRead<'a, 'b, S>(&'a mut S, &'a mut Context<'b>);

impl<S: AsyncRead + Unpin> Read for SyncRead<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.0).poll_read(self.1, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Sync `Write` over an async writer: `WouldBlock` when not ready.
struct SyncWrite<'a, 'b, S>(&'a mut S, &'a mut Context<'b>);

impl<S: AsyncWrite + Unpin> Write for SyncWrite<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.0).poll_write(self.1, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.0).poll_write_vectored(self.1, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.0).poll_flush(self.1) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> EarlyTls<S> {
    /// Read the ClientHello (and whatever early data came with it) and write
    /// the server's flight; the handshake finishes later, under reads.
    pub(crate) async fn accept(io: S, cfg: Arc<ServerConfig>) -> io::Result<EarlyTls<S>> {
        let conn = ServerConnection::new(cfg).map_err(io::Error::other)?;
        let mut s = EarlyTls {
            io,
            conn,
            eof: false,
        };
        std::future::poll_fn(|cx| s.poll_first_flight(cx)).await?;
        Ok(s)
    }

    fn poll_first_flight(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_flush_tls(cx))?;
            // The server's flight is out once the hello has been answered.
            if !self.conn.is_handshaking() || self.conn.handshake_kind().is_some() {
                return Poll::Ready(Ok(()));
            }
            if ready!(self.poll_read_tls(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Whether the client's early data was accepted.
    pub(crate) fn early_data_accepted(&mut self) -> bool {
        self.conn.early_data().is_some()
    }

    /// The connection (ALPN, resumption).
    pub(crate) fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// Write out what rustls has queued (handshake, alerts, records).
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SyncWrite(&mut self.io, cx)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Read ciphertext and process it; 0 at the peer's end of stream.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = match self.conn.read_tls(&mut SyncRead(&mut self.io, cx)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if n == 0 {
            self.eof = true;
        }
        if let Err(e) = self.conn.process_new_packets() {
            // Send the alert, if we can, before failing.
            let _ = self.poll_flush_tls(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }

    /// Plaintext already decrypted: early data first, then the stream.
    /// None: none yet.
    fn read_plain(&mut self, dst: &mut [u8]) -> io::Result<Option<usize>> {
        if let Some(mut early) = self.conn.early_data() {
            let n = early.read(dst)?;
            if n > 0 {
                return Ok(Some(n));
            }
        }
        match self.conn.reader().read(dst) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(self.eof.then_some(0)),
            Err(e) => Err(e),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for EarlyTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(n) = this.read_plain(buf.initialize_unfilled())? {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            // Tickets, key updates: whatever rustls owes the peer.
            if let Poll::Ready(Err(e)) = this.poll_flush_tls(cx) {
                return Poll::Ready(Err(e));
            }
            ready!(this.poll_read_tls(cx))?;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for EarlyTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut pos = 0;
        loop {
            let n = this.conn.writer().write(&buf[pos..])?;
            pos += n;
            if n == 0 && !this.conn.wants_write() {
                // Nothing may be sent before the handshake goes further.
                if ready!(this.poll_read_tls(cx))? == 0 {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
                continue;
            }
            match this.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) if pos == buf.len() => return Poll::Ready(Ok(pos)),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if pos == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(pos)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flush_tls(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.send_close_notify();
        ready!(this.poll_flush_tls(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
