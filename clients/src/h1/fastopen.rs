//! The client's TCP stream under TLS, for TCP Fast Open and TLS 1.3 early
//! data (`wire::transport::TcpFastStart`).
//!
//! * Fast Open: with `TCP_FASTOPEN_CONNECT` the kernel sends the SYN at the
//!   first write, with that write's bytes when it holds a cookie. Without one
//!   (the warm-up connection asks for it), a non-blocking first write fails
//!   with `EINPROGRESS` having sent a bare SYN; it is retried, which waits for
//!   the connection like any write to a connecting socket.
//! * Early data: the first flight must hold the ClientHello *and* the
//!   request (only the first write rides in the SYN, and a later one waits
//!   for the SYN-ACK). hyper flushes before its request is written (the
//!   HTTP/2 preface, an idle HTTP/1.1 connection), so while the [`Flight`] is
//!   held every write is buffered here and reads wait; the client releases
//!   it just before it hands its first request to hyper, and the write and
//!   flush of that request send everything at once. Releasing wakes nobody
//!   and reads never send: a task woken early would send the flight without
//!   the request.
//!
//! What ran is read back into the [`Flight`]: whether the SYN's data was
//! acknowledged (`TCP_INFO`), and whether the server accepted early data.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Shared between the stream and its connection: the hold on the first
/// flight, and what was read back.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    /// Writes are held (set once the TLS connection sends early data).
    held: AtomicBool,
    /// 0 unknown, 1 no, 2 yes.
    syn_data: AtomicU8,
    /// The TLS handshake as it ended (set once, by the first read after it).
    done: OnceLock<Handshake>,
}

/// A TLS handshake that finished under reads (early data: after the request).
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    pub at: Instant,
    pub early_data_accepted: bool,
    pub resumed: bool,
    pub alpn: Option<String>,
}

fn tri(v: u8) -> Option<bool> {
    match v {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

fn untri(b: bool) -> u8 {
    if b {
        2
    } else {
        1
    }
}

impl Flight {
    /// Hold every write from now until [`Flight::release`].
    pub(crate) fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }
    /// Send what is held with the next write (or flush).
    pub(crate) fn release(&self) {
        self.held.store(false, Ordering::Release);
    }
    /// The SYN's data was acknowledged (Fast Open used), read back; None
    /// before the connection was established.
    pub(crate) fn syn_data(&self) -> Option<bool> {
        tri(self.syn_data.load(Ordering::Relaxed))
    }
    /// The TLS handshake, once it ended.
    pub(crate) fn handshake(&self) -> Option<&Handshake> {
        self.done.get()
    }
    /// Note the handshake of `conn` once it has ended (first call wins).
    pub(crate) fn note_handshake(&self, conn: &rustls::ClientConnection) {
        if self.done.get().is_some() || conn.is_handshaking() {
            return;
        }
        let _ = self.done.set(Handshake {
            at: Instant::now(),
            early_data_accepted: conn.is_early_data_accepted(),
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            alpn: conn
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
        });
    }
}

/// A TCP stream that may hold its first flight (see the module doc).
#[derive(Debug)]
pub(crate) struct TcpIo {
    inner: TcpStream,
    flight: Arc<Flight>,
    out: Vec<u8>,
    /// A read that waited while the flight was held: woken once it is sent.
    parked: Option<Waker>,
}

impl TcpIo {
    /// Writes pass through until [`Flight::hold`].
    pub(crate) fn new(inner: TcpStream) -> Self {
        TcpIo {
            inner,
            flight: Arc::new(Flight::default()),
            out: Vec::new(),
            parked: None,
        }
    }

    pub(crate) fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    fn held(&self) -> bool {
        self.flight.held.load(Ordering::Acquire)
    }

    /// A write to the socket; `EINPROGRESS` (Fast Open's SYN sent without
    /// data) is retried, which then waits for the connection.
    fn poll_write_sock(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }
            r => r,
        }
    }

    /// Send what is held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let r = self.poll_write_sock(cx, &out);
            self.out = out;
            match ready!(r)? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => drop(self.out.drain(..n)),
            }
        }
        if let Some(w) = self.parked.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }

    /// Once data came back, the SYN's fate is known: read it back once.
    fn note_syn(&self) {
        if self.flight.syn_data.load(Ordering::Relaxed) == 0 {
            if let Ok(b) = quicbench_wire::transport::tcp_syn_data(&self.inner) {
                self.flight.syn_data.store(untri(b), Ordering::Relaxed);
            }
        }
    }
}

impl AsFd for TcpIo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsyncRead for TcpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held() {
            // Nothing was sent: nothing can come back. Woken once the
            // flight is sent (by the write of the request, after the release).
            this.parked = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.note_syn();
        }
        r
    }
}

impl AsyncWrite for TcpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held() || !this.out.is_empty() {
            // Held, or releasing: one buffer, so one write carries it all.
            this.out.extend_from_slice(buf);
            if !this.held() {
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_write_sock(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held() {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.flight.release();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_held_flight_goes_out_in_one_piece_when_released() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        let mut io = TcpIo::new(c);
        io.flight().hold();
        io.write_all(b"hello ").await.unwrap();
        io.flush().await.unwrap();
        // Held: nothing reached the peer.
        let mut buf = [0u8; 32];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), s.read(&mut buf));
        assert!(early.await.is_err(), "held bytes were sent");
        io.flight().release();
        io.write_all(b"world").await.unwrap();
        io.flush().await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello world");
        // Data came back: the SYN's fate is read back (no Fast Open here).
        s.write_all(b"x").await.unwrap();
        io.read_exact(&mut buf[..1]).await.unwrap();
        assert_eq!(io.flight().syn_data(), Some(false));
        assert!(io.flight().handshake().is_none());
    }
}
