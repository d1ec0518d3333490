//! HTTP/1.0 (a new connection per request) and HTTP/1.1 keep-alive (one
//! connection, one request at a time).
//!
//! HTTP/1.0 is written by hand (a request line, Host, `Connection: close`) and
//! read with the same sans-IO response parser as pipelining
//! ([`crate::pipelined::parse`]): hyper's client would need a fresh handshake
//! and a spawned connection task per request to say the same few bytes, and its
//! HTTP/1.0 mode still offers keep-alive. HTTP/1.1 uses hyper's
//! `client::conn::http1`.

pub(crate) mod fastopen;
pub(crate) mod transport;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::{ClientError, ConnInfo, Request, RequestRecord, Shared};
use quicbench_wire::sockinfo::ConnProbe;
use transport::{
    authority, check_target, fill_handshake, keep_probe, open, range_value, request_head, BodySink,
    ResponseReader, Schedule, Stream, TimedIo,
};

/// HTTP/1.0: every request opens its own TCP (+TLS) connection and the server
/// closes it after the response.
#[derive(Debug)]
pub struct H10Conn {
    shared: Arc<Shared>,
    info: ConnInfo,
    /// The connection opened by `connect`, used by the first request.
    first: Option<Stream>,
    /// Transport probes of the connections opened (the first `transport::MAX_PROBES`).
    probes: Vec<Arc<ConnProbe>>,
}

impl H10Conn {
    /// Opens the first connection (its handshake timings are [`Self::info`]);
    /// the first request uses it, later ones open their own.
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let (stream, info) = open(&shared, shared.next_conn_id()).await?;
        Ok(H10Conn {
            shared,
            info,
            probes: vec![stream.probe()],
            first: Some(stream),
        })
    }

    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    pub(crate) fn probes(&self) -> &[Arc<ConnProbe>] {
        &self.probes
    }

    /// Requests one after the other (each at its scheduled time, or when the
    /// previous one is done if later), each on a new connection.
    pub async fn run(&mut self, reqs: &[Request]) -> Vec<RequestRecord> {
        let sched = Schedule::new(reqs);
        let epoch = self.shared.epoch;
        let mut records: Vec<Option<RequestRecord>> = vec![None; reqs.len()];
        for &i in &sched.order {
            let req = &reqs[i];
            let due = sched.due(req);
            crate::wait_until(due).await;
            let start_ns = epoch.ns(due);
            let timeout = self.shared.opts.timeout;
            let mut rec = RequestRecord::new(i, &req.path, 0, start_ns);
            let r = tokio::time::timeout(timeout, self.one(req, &mut rec)).await;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => rec.error = Some(e.to_string()),
                Err(_) => {
                    rec.error = Some(
                        ClientError::Timeout(format!("{} after {timeout:?}", req.path)).to_string(),
                    )
                }
            }
            records[i] = Some(rec);
        }
        records.into_iter().flatten().collect()
    }

    async fn one(&mut self, req: &Request, rec: &mut RequestRecord) -> Result<(), ClientError> {
        let head = request_head(
            req,
            "1.0",
            &authority(&self.shared),
            "Connection: close\r\n",
        )?;
        rec.stream_id = Some(0);
        if let Some(stream) = self.first.take() {
            rec.conn_id = self.info.conn_id;
            match self.exchange(stream, &head, req, rec).await {
                Ok(()) => return Ok(()),
                // The connection `connect()` opened went stale while it waited
                // (the server's idle timeout closed it): nothing was answered,
                // so retry once on a fresh connection, as browsers do with an
                // idempotent request on a kept connection.
                Err(e) if rec.status.is_none() => {
                    tracing::debug!("pre-opened HTTP/1.0 connection unusable ({e}); reconnecting");
                    rec.request_sent_ns = None;
                    rec.first_byte_ns = None;
                }
                Err(e) => return Err(e),
            }
        }
        let conn_id = self.shared.next_conn_id();
        rec.conn_id = conn_id;
        let (stream, info) = open(&self.shared, conn_id).await?;
        keep_probe(&mut self.probes, stream.probe());
        rec.transport_ready_ns = info.transport_ready_ns;
        rec.tls_ready_ns = info.tls_ready_ns;
        self.exchange(stream, &head, req, rec).await
    }

    /// Write the request on `stream` and read the response into `rec`.
    async fn exchange(
        &self,
        mut stream: Stream,
        head: &str,
        req: &Request,
        rec: &mut RequestRecord,
    ) -> Result<(), ClientError> {
        let io = |e: std::io::Error| ClientError::Io(format!("writing the request: {e}"));
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        rec.request_sent_ns = Some(self.shared.epoch.now_ns());
        let mut reader = ResponseReader::new().with_stall(self.shared.opts.stall_timeout);
        reader
            .read_response(
                &mut stream,
                req,
                rec,
                self.shared.epoch,
                self.shared.opts.track_progress,
            )
            .await?;
        // The server closes; close our side without waiting for it.
        drop(stream);
        Ok(())
    }

    pub async fn close(self) {}
}

/// HTTP/1.1 keep-alive on hyper: one connection, one request in flight; a
/// request due while another is in flight waits (its latency counts the wait:
/// head-of-line blocking). After a failed request the connection is not reused
/// and later requests fail (a new connection is the caller's decision).
#[derive(Debug)]
pub struct H11Conn {
    shared: Arc<Shared>,
    info: ConnInfo,
    sender: Option<http1::SendRequest<Empty<Bytes>>>,
    conn_task: Option<JoinHandle<()>>,
    last_write_ns: Arc<AtomicU64>,
    authority: String,
    /// Requests issued on this connection so far (the `stream_id` of records).
    position: u64,
    broken: Option<String>,
    probe: Arc<ConnProbe>,
    /// Fast Open / early data: the first flight and what they did.
    flight: Arc<fastopen::Flight>,
}

impl H11Conn {
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let (stream, info) = open(&shared, shared.next_conn_id()).await?;
        let probe = stream.probe();
        let flight = stream.flight();
        let (io, last_write_ns) = TimedIo::new(stream, shared.epoch);
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Protocol(format!("HTTP/1.1 handshake: {e}")))?;
        let conn_task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/1.1 connection ended: {e}");
            }
        });
        Ok(H11Conn {
            authority: authority(&shared),
            shared,
            info,
            sender: Some(sender),
            conn_task: Some(conn_task),
            last_write_ns,
            position: 0,
            broken: None,
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

    pub async fn run(&mut self, reqs: &[Request]) -> Vec<RequestRecord> {
        let sched = Schedule::new(reqs);
        let epoch = self.shared.epoch;
        let conn_id = self.info.conn_id;
        let mut records: Vec<Option<RequestRecord>> = vec![None; reqs.len()];
        for &i in &sched.order {
            let req = &reqs[i];
            let due = sched.due(req);
            crate::wait_until(due).await;
            let mut rec = RequestRecord::new(i, &req.path, conn_id, epoch.ns(due));
            rec.stream_id = Some(self.position);
            self.position += 1;
            if let Some(why) = &self.broken {
                rec.error = Some(format!(
                    "not sent: connection unusable after an earlier failure ({why})"
                ));
                records[i] = Some(rec);
                continue;
            }
            if let Err(e) = check_target(req) {
                // Not sent: the connection stays usable.
                rec.error = Some(e.to_string());
                records[i] = Some(rec);
                continue;
            }
            let timeout = self.shared.opts.timeout;
            let r = tokio::time::timeout(timeout, self.one(req, &mut rec)).await;
            let err = match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(
                    ClientError::Timeout(format!("{} after {timeout:?}", req.path)).to_string(),
                ),
            };
            if let Some(e) = err {
                self.broken = Some(e.clone());
                rec.error = Some(e);
            }
            records[i] = Some(rec);
        }
        fill_handshake(&mut self.info, &self.flight, &epoch);
        records.into_iter().flatten().collect()
    }

    async fn one(&mut self, req: &Request, rec: &mut RequestRecord) -> Result<(), ClientError> {
        let epoch = self.shared.epoch;
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("connection closed".into()))?;
        sender
            .ready()
            .await
            .map_err(|e| ClientError::Protocol(format!("connection not ready: {e}")))?;
        let mut b = http::Request::get(req.path.as_str())
            .header(http::header::HOST, self.authority.as_str());
        if let Some(r) = range_value(req) {
            b = b.header(http::header::RANGE, r);
        }
        let hreq = b
            .body(Empty::<Bytes>::new())
            .map_err(|e| ClientError::Setup(format!("request for {:?}: {e}", req.path)))?;
        let issued_ns = epoch.now_ns();
        // Early data: the request's write releases the held first flight.
        self.flight.arm(false);
        let resp = sender
            .send_request(hreq)
            .await
            .map_err(|e| ClientError::Protocol(format!("HTTP/1.1 request: {e}")))?;
        let now = epoch.now_ns();
        rec.first_byte_ns = Some(now);
        // The only write since we issued it was this request.
        let sent = self.last_write_ns.load(Ordering::Relaxed);
        rec.request_sent_ns = Some(if sent >= issued_ns { sent } else { issued_ns });
        read_hyper_body(
            resp,
            req,
            rec,
            epoch,
            self.shared.opts.track_progress,
            self.shared.opts.stall_timeout,
        )
        .await
    }

    pub async fn close(mut self) {
        self.sender = None;
        if let Some(t) = self.conn_task.take() {
            // The connection task ends once the sender is gone; do not hang on it.
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

impl Drop for H11Conn {
    fn drop(&mut self) {
        if let Some(t) = self.conn_task.take() {
            t.abort();
        }
    }
}

/// Stream a hyper response body into `rec` (status, bytes, verification,
/// progress, last byte). Shared by HTTP/1.1 and HTTP/2.
pub(crate) async fn read_hyper_body(
    resp: http::Response<hyper::body::Incoming>,
    req: &Request,
    rec: &mut RequestRecord,
    epoch: crate::Epoch,
    track: bool,
    stall: Option<Duration>,
) -> Result<(), ClientError> {
    let status = resp.status().as_u16();
    rec.status = Some(status);
    let range_start = resp
        .headers()
        .get(http::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, _)| a.trim().parse().ok());
    let mut sink = BodySink::new(epoch, req, status, range_start, track, rec);
    let mut body = resp.into_body();
    let r = loop {
        let frame = match stall {
            Some(d) => match tokio::time::timeout(d, body.frame()).await {
                Ok(f) => f,
                Err(_) => {
                    break Err(ClientError::Timeout(format!(
                        "response stalled: no byte for {d:?} (after {} body bytes)",
                        rec.bytes
                    )))
                }
            },
            None => body.frame().await,
        };
        match frame {
            None => break Ok(()),
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    sink.data(rec, d);
                }
            }
            Some(Err(e)) => {
                break Err(ClientError::Protocol(format!(
                    "response body cut after {} bytes: {e}",
                    rec.bytes
                )))
            }
        }
    };
    sink.finish(rec, epoch.now_ns(), r.is_ok());
    r
}
