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
//!   held every write is buffered here and reads wait. The client arms the
//!   flight just before it hands its first request to hyper; hyper's next
//!   write into TLS (the request: its bytes become early data) releases it,
//!   and the next socket write (rustls writes all its queued records in one
//!   vectored write) sends everything at once. Neither reads nor flushes
//!   send the flight before that write: a task woken early would send it
//!   without the request. (Were nothing written after the release, the
//!   flight would stay held: every caller writes its request right after.)
//!
//! What ran is read back into the [`Flight`]: whether the SYN's data was
//! acknowledged (`TCP_INFO`), and whether the server accepted early data.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Shared between the stream and its connection: the hold on the first
/// flight, and what was read back.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    /// [`PASS`], [`HELD`] or [`ARMED`].
    state: AtomicU8,
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

/// Writes go to the socket.
const PASS: u8 = 0;
/// Writes are held (the TLS connection sends early data).
const HELD: u8 = 1;
/// Held until the next write above TLS (the request), then released.
const ARMED: u8 = 2;
/// Held until a write above TLS carries an HTTP/2 HEADERS frame.
const ARMED_H2: u8 = 3;

/// HTTP/2's client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 frame type HEADERS.
const H2_HEADERS: u8 = 0x1;

/// Whether `buf`, a run of whole HTTP/2 frames (maybe after the preface),
/// holds a HEADERS frame. hyper writes its SETTINGS and its first HEADERS
/// in separate writes; only the HEADERS make the flight complete.
fn has_h2_headers(buf: &[u8]) -> bool {
    let mut off = if buf.starts_with(H2_PREFACE) {
        H2_PREFACE.len()
    } else {
        0
    };
    while let Some(h) = buf.get(off..off + 9) {
        if h[3] == H2_HEADERS {
            return true;
        }
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        off += 9 + len;
    }
    false
}

impl Flight {
    /// Hold every write from now on.
    pub(crate) fn hold(&self) {
        self.state.store(HELD, Ordering::Release);
    }
    /// The request is about to be handed over: release the flight once its
    /// bytes were written into TLS ([`Flight::wrote_above`]), so the first
    /// socket write after that carries all of it. `h2`: the request is the
    /// write with a HEADERS frame.
    pub(crate) fn arm(&self, h2: bool) {
        let to = if h2 { ARMED_H2 } else { ARMED };
        let _ = self
            .state
            .compare_exchange(HELD, to, Ordering::AcqRel, Ordering::Acquire);
    }
    /// `buf` was written into TLS (above it): an armed flight is released
    /// if that was the request.
    pub(crate) fn wrote_above(&self, buf: &[u8]) {
        let s = self.state.load(Ordering::Acquire);
        if s == ARMED || (s == ARMED_H2 && has_h2_headers(buf)) {
            let _ = self
                .state
                .compare_exchange(s, PASS, Ordering::AcqRel, Ordering::Acquire);
        }
    }
    fn release(&self) {
        self.state.store(PASS, Ordering::Release);
    }
    fn held(&self) -> bool {
        self.state.load(Ordering::Acquire) != PASS
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
    /// A write came after the release: the flight may go.
    written_after_release: bool,
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
            written_after_release: false,
            parked: None,
        }
    }

    pub(crate) fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    fn held(&self) -> bool {
        self.flight.held()
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
                this.written_after_release = true;
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Ok(buf.len()));
        }
        this.poll_write_sock(cx, buf)
    }

    /// rustls writes every queued record in one vectored write: with Fast
    /// Open, one `sendmsg` whose data all rides in the SYN.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held() || !this.out.is_empty() {
            let n = bufs.iter().map(|b| b.len()).sum();
            for b in bufs {
                this.out.extend_from_slice(b);
            }
            if !this.held() {
                this.written_after_release = true;
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Ok(n));
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
            }
            r => r,
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A flush alone never sends the flight: one re-polled after the
        // release but before the request was written (HTTP/2 flushes its
        // pending frames before encoding new ones) would send it without
        // the request, which would then wait for the SYN-ACK.
        if this.held() || (!this.out.is_empty() && !this.written_after_release) {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.flight.release();
        this.written_after_release = true;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn an_h2_flight_is_complete_with_its_headers() {
        let settings = [0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 4, 0, 0x60, 0, 0];
        let headers = [0, 0, 2, 0x1, 0x4, 0, 0, 0, 1, 0x82, 0x84];
        let mut preface_settings = H2_PREFACE.to_vec();
        preface_settings.extend_from_slice(&settings);
        assert!(!has_h2_headers(&preface_settings));
        assert!(!has_h2_headers(&settings));
        assert!(has_h2_headers(&headers));
        let mut both = settings.to_vec();
        both.extend_from_slice(&headers);
        assert!(has_h2_headers(&both));
        let f = Flight::default();
        f.hold();
        f.arm(true);
        f.wrote_above(&settings);
        assert!(f.held());
        f.wrote_above(&both);
        assert!(!f.held());
    }

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
        io.flight().arm(false);
        // Armed, not yet written above TLS: still held.
        io.flush().await.unwrap();
        io.flight().wrote_above(b"GET");
        // A flush alone (before the request is written) sends nothing.
        io.flush().await.unwrap();
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), s.read(&mut buf));
        assert!(early.await.is_err(), "a flush sent the flight");
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
