//! HTTP/2 over TLS 1.3 on hyper's `client::conn::http2`: one connection, every
//! request of a batch a concurrent stream (each opened when due).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::task::JoinHandle;

use crate::h1::fastopen::Flight;
use crate::h1::read_hyper_body;
use crate::h1::transport::{authority, check_target, fill_handshake, open, range_value, Schedule};
use crate::{ClientError, ConnInfo, Request, RequestRecord, Shared};
use quicbench_wire::sockinfo::ConnProbe;

/// Receive windows, QUIC's from one place (`wire::transport`: 6 MiB per
/// stream, 24 MiB per connection) so neither is window-limited where the
/// other is not.
pub const STREAM_WINDOW: u32 = quicbench_wire::transport::STREAM_WINDOW;
pub const CONN_WINDOW: u32 = quicbench_wire::transport::CONN_WINDOW;

#[derive(Debug)]
pub struct H2Conn {
    shared: Arc<Shared>,
    info: ConnInfo,
    sender: Option<http2::SendRequest<Empty<Bytes>>>,
    conn_task: Option<JoinHandle<()>>,
    authority: String,
    /// Requests submitted so far. Client stream ids are 1, 3, 5... in the order
    /// streams are opened (RFC 9113 §5.1.1), and hyper opens them in submission
    /// order, so request k's stream id is 2k+1 (hyper does not expose it).
    submitted: u64,
    probe: Arc<ConnProbe>,
    /// Fast Open / early data: the first flight and what they did.
    flight: Arc<Flight>,
}

impl H2Conn {
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        if shared.tls.is_none() {
            return Err(ClientError::Setup(
                "HTTP/2 is only offered over TLS (ALPN h2)".into(),
            ));
        }
        let (stream, info) = open(&shared, shared.next_conn_id()).await?;
        let probe = stream.probe();
        let flight = stream.flight();
        // With early data the handshake (and ALPN) ends after the request;
        // only h2 was offered, and the ticket is h2's.
        let pending = info.tls_ready_ns.is_none();
        if !pending && info.alpn.as_deref() != Some("h2") {
            return Err(ClientError::Protocol(format!(
                "server did not negotiate h2 by ALPN (got {:?})",
                info.alpn
            )));
        }
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Protocol(format!("HTTP/2 handshake: {e}")))?;
        let conn_task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        Ok(H2Conn {
            authority: authority(&shared),
            shared,
            info,
            sender: Some(sender),
            conn_task: Some(conn_task),
            submitted: 0,
            probe,
            flight,
        })
    }

    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    pub(crate) fn probes(&self) -> &[Arc<ConnProbe>] {
        std::slice::from_ref(&self.probe)
    }

    /// Every request is its own stream, opened when due; they proceed
    /// concurrently on the one connection (HTTP/2's head-of-line blocking is
    /// TCP's, below the streams).
    pub async fn run(&mut self, reqs: &[Request]) -> Vec<RequestRecord> {
        let sched = Schedule::new(reqs);
        let epoch = self.shared.epoch;
        let conn_id = self.info.conn_id;
        let timeout = self.shared.opts.timeout;
        let track = self.shared.opts.track_progress;
        let stall = self.shared.opts.stall_timeout;
        let Some(sender) = self.sender.clone() else {
            return crate::h1::transport::fail_all(
                reqs,
                conn_id,
                &epoch,
                &sched,
                "connection closed",
            );
        };
        // Stream ids follow the order of submission, which is due order (ties
        // broken by index: the futures are polled in this order).
        let submitted = AtomicU64::new(self.submitted);
        let authority = &self.authority;
        let flight = &self.flight;
        let futs = sched.order.iter().map(|&i| {
            let mut sender = sender.clone();
            let req = &reqs[i];
            let due = sched.due(req);
            let submitted = &submitted;
            async move {
                crate::wait_until(due).await;
                let mut rec = RequestRecord::new(i, &req.path, conn_id, epoch.ns(due));
                let one = async {
                    check_target(req)?;
                    sender
                        .ready()
                        .await
                        .map_err(|e| ClientError::Protocol(format!("connection not ready: {e}")))?;
                    let uri = format!("https://{authority}{}", req.path);
                    let mut b = http::Request::get(uri.as_str());
                    if let Some(r) = range_value(req) {
                        b = b.header(http::header::RANGE, r);
                    }
                    let hreq = b.body(Empty::<Bytes>::new()).map_err(|e| {
                        ClientError::Setup(format!("request for {:?}: {e}", req.path))
                    })?;
                    let k = submitted.fetch_add(1, Ordering::Relaxed);
                    // Early data: these HEADERS' write releases the held flight.
                    flight.arm(true);
                    let resp_fut = sender.send_request(hreq);
                    // hyper has queued the HEADERS for its connection task, which
                    // writes them at once (HEADERS are not flow-controlled).
                    rec.request_sent_ns = Some(epoch.now_ns());
                    rec.stream_id = Some(2 * k + 1);
                    let resp = resp_fut
                        .await
                        .map_err(|e| ClientError::Protocol(format!("HTTP/2 request: {e}")))?;
                    rec.first_byte_ns = Some(epoch.now_ns());
                    read_hyper_body(resp, req, &mut rec, epoch, track, stall).await
                };
                match tokio::time::timeout(timeout, one).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => rec.error = Some(e.to_string()),
                    Err(_) => {
                        rec.error = Some(
                            ClientError::Timeout(format!("{} after {timeout:?}", req.path))
                                .to_string(),
                        )
                    }
                }
                rec
            }
        });
        let done = futures::future::join_all(futs).await;
        self.submitted = submitted.load(Ordering::Relaxed);
        fill_handshake(&mut self.info, &self.flight, &epoch);
        let mut out: Vec<Option<RequestRecord>> = vec![None; reqs.len()];
        for rec in done {
            let i = rec.index;
            out[i] = Some(rec);
        }
        out.into_iter().flatten().collect()
    }

    pub async fn close(mut self) {
        self.sender = None;
        if let Some(t) = self.conn_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        if let Some(t) = self.conn_task.take() {
            t.abort();
        }
    }
}
