//! HTTP/3's QUIC binding: h3's `quic` traits over quinn, for both ends.
//!
//! Written here rather than taken from h3-quinn (0.0.10) for one reason:
//! h3-quinn hands quinn every frame as a slice (`poll_write(buf.chunk())`) and
//! quinn copies a slice into its send buffer, so each 64 KiB chunk of a
//! response body was copied once more than raw QUIC's `write_chunk(Bytes)`
//! (3.4-4.8% of the h3 server's CPU, docs/h3.md). Here frames go to quinn's
//! `write_chunks` as [`Bytes`], the body itself included.
//!
//! h3 wraps a body chunk in its `WriteBuf`, which only lends it out as
//! `&[u8]`. A body sent as [`Body`] leaves, when its `chunk()` is read, a
//! reference to its own `Bytes` in a thread-local slot; [`SendStream`] takes
//! it when, and only when, it is the very slice `WriteBuf` lent (same address,
//! same length, kept alive by that reference: so the same bytes). Any other
//! chunk (frame headers, HEADERS blocks, a plain `Bytes` body) is copied as
//! before; nothing else depends on the slot.

use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h3::error::Code;
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;

/// A response or request body chunk that reaches quinn without a copy (see
/// the module's notes). Behaves as the `Bytes` it wraps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body(Bytes);

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body(b)
    }
}

thread_local! {
    /// The `Bytes` behind the last [`Body::chunk`] read on this thread.
    static LENT: Cell<Option<Bytes>> = const { Cell::new(None) };
}

impl Buf for Body {
    fn remaining(&self) -> usize {
        self.0.len()
    }

    fn chunk(&self) -> &[u8] {
        // A reference count, not a copy; replaced by the next read.
        LENT.with(|l| l.set(Some(self.0.clone())));
        &self.0
    }

    fn advance(&mut self, n: usize) {
        self.0.advance(n)
    }

    fn copy_to_bytes(&mut self, n: usize) -> Bytes {
        self.0.split_to(n)
    }
}

/// Cut `buf` into owned chunks for quinn: each [`Body`] chunk by reference,
/// anything else copied.
fn own_chunks(mut buf: impl Buf, out: &mut Vec<Bytes>) {
    while buf.has_remaining() {
        LENT.with(|l| l.set(None));
        let c = buf.chunk();
        let n = c.len();
        if n == 0 {
            break; // a Buf that claims more than it shows; nothing to send
        }
        let owned = match LENT.with(|l| l.take()) {
            Some(b) if b.as_ptr() == c.as_ptr() && b.len() == n => b,
            _ => Bytes::copy_from_slice(c),
        };
        out.push(owned);
        buf.advance(n);
    }
}

type Pending<T> = Pin<Box<dyn Future<Output = T> + Send + Sync>>;
type Bi = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>;
type Uni<S> = Result<S, quinn::ConnectionError>;

/// A quinn connection as h3 sees it.
///
/// quinn's accept and open futures wait on a `Notify`, which forgets a waiter
/// whose future is dropped, so each pending one is kept until it resolves.
pub struct Connection {
    accepting_bi: Option<Pending<Bi>>,
    accepting_uni: Option<Pending<Uni<quinn::RecvStream>>>,
    opener: OpenStreams,
}

impl Connection {
    pub fn new(conn: quinn::Connection) -> Self {
        Connection {
            opener: OpenStreams::new(conn),
            accepting_bi: None,
            accepting_uni: None,
        }
    }
}

/// Poll the future in `slot`, started as `op(conn)` when there is none; the
/// slot is emptied when it resolves.
fn poll_slot<T, F>(
    slot: &mut Option<Pending<T>>,
    conn: &quinn::Connection,
    cx: &mut Context<'_>,
    op: impl FnOnce(quinn::Connection) -> F,
) -> Poll<T>
where
    F: Future<Output = T> + Send + Sync + 'static,
{
    let fut = slot.get_or_insert_with(|| Box::pin(op(conn.clone())));
    let out = ready!(fut.as_mut().poll(cx));
    *slot = None;
    Poll::Ready(out)
}

impl<B: Buf> quic::Connection<B> for Connection {
    type RecvStream = RecvStream;
    type OpenStreams = OpenStreams;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RecvStream, ConnectionErrorIncoming>> {
        poll_slot(
            &mut self.accepting_uni,
            &self.opener.conn,
            cx,
            |c| async move { c.accept_uni().await },
        )
        .map(|r| r.map(RecvStream::new).map_err(connection_error))
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, ConnectionErrorIncoming>> {
        poll_slot(
            &mut self.accepting_bi,
            &self.opener.conn,
            cx,
            |c| async move { c.accept_bi().await },
        )
        .map(|r| r.map(BidiStream::new).map_err(connection_error))
    }

    fn opener(&self) -> OpenStreams {
        self.opener.clone()
    }
}

impl<B: Buf> quic::OpenStreams<B> for Connection {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_bidi(&mut self.opener, cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        quic::OpenStreams::<B>::poll_open_send(&mut self.opener, cx)
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        quic::OpenStreams::<B>::close(&mut self.opener, code, reason)
    }
}

/// Opens streams on a quinn connection (h3 keeps one per request sender).
pub struct OpenStreams {
    conn: quinn::Connection,
    opening_bi: Option<Pending<Bi>>,
    opening_uni: Option<Pending<Uni<quinn::SendStream>>>,
}

impl OpenStreams {
    fn new(conn: quinn::Connection) -> Self {
        OpenStreams {
            conn,
            opening_bi: None,
            opening_uni: None,
        }
    }
}

impl Clone for OpenStreams {
    fn clone(&self) -> Self {
        OpenStreams::new(self.conn.clone())
    }
}

impl<B: Buf> quic::OpenStreams<B> for OpenStreams {
    type BidiStream = BidiStream<B>;
    type SendStream = SendStream<B>;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream<B>, StreamErrorIncoming>> {
        poll_slot(&mut self.opening_bi, &self.conn, cx, |c| async move {
            c.open_bi().await
        })
        .map(|r| r.map(BidiStream::new).map_err(stream_connection_error))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream<B>, StreamErrorIncoming>> {
        poll_slot(&mut self.opening_uni, &self.conn, cx, |c| async move {
            c.open_uni().await
        })
        .map(|r| r.map(SendStream::new).map_err(stream_connection_error))
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        // h3's codes are all below 2^62; the largest VarInt stands in otherwise.
        let code = VarInt::from_u64(code.value()).unwrap_or(VarInt::MAX);
        self.conn.close(code, reason);
    }
}

/// Both halves of a bidirectional stream.
pub struct BidiStream<B> {
    send: SendStream<B>,
    recv: RecvStream,
}

impl<B> BidiStream<B> {
    fn new((send, recv): (quinn::SendStream, quinn::RecvStream)) -> Self {
        BidiStream {
            send: SendStream::new(send),
            recv: RecvStream::new(recv),
        }
    }
}

impl<B: Buf> quic::BidiStream<B> for BidiStream<B> {
    type SendStream = SendStream<B>;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream<B>, RecvStream) {
        (self.send, self.recv)
    }
}

impl<B> quic::RecvStream for BidiStream<B> {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code)
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

impl<B: Buf> quic::SendStream<B> for BidiStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code)
    }

    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

/// The receiving half of a stream: quinn's chunks as they come, uncopied.
pub struct RecvStream {
    stream: quinn::RecvStream,
}

impl RecvStream {
    fn new(stream: quinn::RecvStream) -> Self {
        RecvStream { stream }
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        // `read_chunk` is cancel-safe and waits on a waker, not a Notify: a
        // fresh future per poll loses nothing.
        let r = ready!(pin!(self.stream.read_chunk(usize::MAX, true)).poll(cx));
        Poll::Ready(r.map(|c| c.map(|c| c.bytes)).map_err(read_error))
    }

    fn stop_sending(&mut self, error_code: u64) {
        // Already stopped or finished: nothing left to stop.
        let _ = self
            .stream
            .stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

/// The sending half of a stream. h3 hands it one frame at a time
/// (`send_data`), then polls `poll_ready` until quinn has taken all of it.
pub struct SendStream<B> {
    stream: quinn::SendStream,
    /// The frame being written; `queued[next..]` is what quinn has not taken.
    queued: Vec<Bytes>,
    next: usize,
    _body: std::marker::PhantomData<fn(B)>,
}

impl<B> SendStream<B> {
    fn new(stream: quinn::SendStream) -> Self {
        SendStream {
            stream,
            queued: Vec::new(),
            next: 0,
            _body: std::marker::PhantomData,
        }
    }
}

impl<B: Buf> quic::SendStream<B> for SendStream<B> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        while self.next < self.queued.len() {
            // `write_chunks` is cancel-safe (nothing written unless it
            // resolves) and registers the waker itself.
            let rest = &mut self.queued[self.next..];
            let written =
                ready!(pin!(self.stream.write_chunks(rest)).poll(cx)).map_err(write_error)?;
            // A partly written chunk was cut to its unwritten tail in place.
            self.next += written.chunks;
        }
        self.queued.clear();
        self.next = 0;
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<B>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        if self.next < self.queued.len() {
            // h3 sends the next frame only after poll_ready: this is a bug in h3.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError(
                    "a frame was sent before the previous one was written".into(),
                ),
            });
        }
        self.queued.clear();
        self.next = 0;
        own_chunks(data.into(), &mut self.queued);
        Ok(())
    }

    fn poll_finish(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        Poll::Ready(
            self.stream
                .finish()
                .map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))),
        )
    }

    fn reset(&mut self, reset_code: u64) {
        // Already reset or finished and acknowledged: nothing left to reset.
        let _ = self
            .stream
            .reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

fn stream_id(id: quinn::StreamId) -> StreamId {
    // quinn's stream ids are VarInts, as h3's: always in range.
    StreamId::try_from(u64::from(id)).unwrap_or_else(|_| unreachable!("quinn stream id {id}"))
}

fn connection_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => ConnectionErrorIncoming::ApplicationClose {
            error_code: c.error_code.into_inner(),
        },
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        other => ConnectionErrorIncoming::Undefined(Arc::new(other)),
    }
}

fn stream_connection_error(e: quinn::ConnectionError) -> StreamErrorIncoming {
    StreamErrorIncoming::ConnectionErrorIncoming {
        connection_error: connection_error(e),
    }
}

fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
    match e {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::ReadError::ConnectionLost(e) => stream_connection_error(e),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
    match e {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(e) => stream_connection_error(e),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: &'static [u8], body: impl Buf) -> impl Buf {
        Bytes::from_static(header).chain(body)
    }

    #[test]
    fn a_body_chunk_is_passed_by_reference() {
        let body = Bytes::from(vec![7u8; 65536]);
        let mut out = Vec::new();
        own_chunks(
            frame(b"\x00\x80\x01\x00\x00", Body::from(body.clone())),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0][..], b"\x00\x80\x01\x00\x00");
        assert_eq!(out[1].as_ptr(), body.as_ptr(), "the body was copied");
        assert_eq!(out[1].len(), body.len());
    }

    #[test]
    fn a_partly_read_body_passes_its_rest() {
        let body = Bytes::from((0..=255u8).collect::<Vec<u8>>());
        let mut b = Body::from(body.clone());
        b.advance(100);
        let mut out = Vec::new();
        own_chunks(b, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ptr(), body[100..].as_ptr());
        assert_eq!(&out[0][..], &body[100..]);
    }

    #[test]
    fn other_chunks_are_copied() {
        let body = Bytes::from(vec![1u8; 1000]);
        let mut out = Vec::new();
        own_chunks(frame(b"\x00\x43\xe8", body.clone()), &mut out);
        assert_eq!(out.len(), 2);
        assert_ne!(out[1].as_ptr(), body.as_ptr());
        assert_eq!(out[1], body);
    }

    #[test]
    fn a_stale_loan_is_never_taken_for_another_chunk() {
        // A Body read elsewhere on this thread leaves its loan; a chunk from
        // other memory, even of the same length, must not get it.
        let lent = Body::from(Bytes::from(vec![9u8; 3]));
        let _ = lent.chunk();
        let mut out = Vec::new();
        own_chunks(Bytes::from_static(b"abc"), &mut out);
        assert_eq!(&out[0][..], b"abc");
        // And a plain slice of the same Bytes (not a Body) is copied too.
        let inner = Bytes::from(vec![5u8; 8]);
        let _ = Body::from(inner.clone()).chunk();
        let mut out = Vec::new();
        own_chunks(inner.clone(), &mut out);
        // The same memory, the same bytes: taking the loan would be correct,
        // but the slot is cleared before each chunk so it is not.
        assert_ne!(out[0].as_ptr(), inner.as_ptr());
        assert_eq!(out[0], inner);
    }

    #[test]
    fn the_body_behaves_as_its_bytes() {
        let mut b = Body::from(Bytes::from_static(b"hello world"));
        assert_eq!(b.remaining(), 11);
        assert_eq!(b.copy_to_bytes(6), Bytes::from_static(b"hello "));
        assert_eq!(b.chunk(), b"world");
        b.advance(5);
        assert!(!b.has_remaining());
    }
}
