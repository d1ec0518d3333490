//! HTTP/1.1 pipelining over TLS: requests are written back to back as soon as
//! each is due, without waiting for responses; responses come back in request
//! order and are matched FIFO.
//!
//! Hand-written on [`parse`] (httparse for heads) because hyper's client cannot
//! pipeline: its HTTP/1 dispatcher holds one request in flight per connection.

pub mod parse;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::h1::transport::{
    authority, fail_all, open, request_head, ResponseReader, Schedule, Stream,
};
use crate::{ClientError, ConnInfo, Request, RequestRecord, Shared};
use quicbench_wire::sockinfo::ConnProbe;

/// `sent_ns` of a request not written (yet).
const NOT_SENT: u64 = u64::MAX;

#[derive(Debug)]
pub struct PipelinedConn {
    shared: Arc<Shared>,
    info: ConnInfo,
    stream: Option<Stream>,
    reader: ResponseReader,
    authority: String,
    /// Requests written on this connection so far (the `stream_id` of records).
    position: u64,
    /// Why the connection can no longer be used.
    broken: Option<String>,
    probe: Arc<ConnProbe>,
}

impl PipelinedConn {
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let (stream, info) = open(&shared, shared.next_conn_id()).await?;
        let stall = shared.opts.stall_timeout;
        let probe = stream.probe();
        Ok(PipelinedConn {
            authority: authority(&shared),
            shared,
            info,
            stream: Some(stream),
            reader: ResponseReader::new().with_stall(stall),
            position: 0,
            broken: None,
            probe,
        })
    }

    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    pub(crate) fn probes(&self) -> &[Arc<ConnProbe>] {
        std::slice::from_ref(&self.probe)
    }

    /// Write each request when due (in order of due time) while a reader takes
    /// the responses off the connection in the same order. Each response must
    /// complete within `opts.timeout` of its request being due (or of the
    /// previous response, if later); a failure ends the connection and fails
    /// every later request.
    pub async fn run(&mut self, reqs: &[Request]) -> Vec<RequestRecord> {
        let sched = Schedule::new(reqs);
        let epoch = self.shared.epoch;
        let conn_id = self.info.conn_id;
        let stream = match (&mut self.stream, &self.broken) {
            (Some(s), None) => s,
            (_, b) => {
                let why = format!(
                    "not sent: connection unusable after an earlier failure ({})",
                    b.as_deref().unwrap_or("closed")
                );
                return fail_all(reqs, conn_id, &epoch, &sched, &why);
            }
        };
        let n = reqs.len();
        let mut records: Vec<RequestRecord> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| RequestRecord::new(i, &r.path, conn_id, epoch.ns(sched.due(r))))
            .collect();
        // Heads are built (and targets checked) up front: a request that
        // cannot be written is failed here and takes no place in the FIFO.
        let mut heads: Vec<String> = vec![String::new(); n];
        let mut order = Vec::with_capacity(n);
        for &i in &sched.order {
            match request_head(&reqs[i], "1.1", &self.authority, "") {
                Ok(h) => {
                    heads[i] = h;
                    order.push(i);
                }
                Err(e) => records[i].error = Some(e.to_string()),
            }
        }
        for (k, &i) in order.iter().enumerate() {
            records[i].stream_id = Some(self.position + k as u64);
        }
        // Shared by the writer and the reader (two futures of this one task);
        // atomics rather than Cells so that `run` stays Send.
        let sent_ns: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(NOT_SENT)).collect();
        let sent = AtomicUsize::new(0);
        let write_error: Mutex<Option<String>> = Mutex::new(None);
        let writer_done = Notify::new();
        let writer_stopped = AtomicBool::new(false);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let timeout = self.shared.opts.timeout;
        let track = self.shared.opts.track_progress;

        let writer = async {
            for &i in &order {
                crate::wait_until(sched.due(&reqs[i])).await;
                let head = &heads[i];
                let w = async {
                    wr.write_all(head.as_bytes()).await?;
                    wr.flush().await
                };
                if let Err(e) = w.await {
                    if let Ok(mut we) = write_error.lock() {
                        *we = Some(format!("writing request {i}: {e}"));
                    }
                    break;
                }
                sent_ns[i].store(epoch.now_ns(), Ordering::Relaxed);
                sent.fetch_add(1, Ordering::Relaxed);
            }
            writer_stopped.store(true, Ordering::Relaxed);
            writer_done.notify_one();
        };

        let reader = &mut self.reader;
        let records_ref = &mut records;
        let read_all = async {
            // Ok(closing): all read, and whether the server then closes;
            // Err((k, why)): response k (in send order) and later failed.
            for (k, &i) in order.iter().enumerate() {
                let req = &reqs[i];
                let deadline = sched.due(req).max(Instant::now()) + timeout;
                let rec = &mut records_ref[i];
                let not_sent = || {
                    let e = write_error.lock().ok().and_then(|e| e.clone());
                    format!("not sent: {}", e.as_deref().unwrap_or("writer stopped"))
                };
                if writer_stopped.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) <= k {
                    return Err((k, not_sent()));
                }
                let read = tokio::time::timeout_at(
                    deadline.into(),
                    reader.read_response(&mut rd, req, rec, epoch, track),
                );
                tokio::pin!(read);
                let r = loop {
                    tokio::select! {
                        r = &mut read => break r,
                        _ = writer_done.notified() => {
                            // Writer stopped: if this request never went out, stop waiting.
                            if sent.load(Ordering::Relaxed) <= k {
                                return Err((k, not_sent()));
                            }
                        }
                    }
                };
                match r {
                    Ok(Ok(outcome)) if outcome.close => {
                        if k + 1 < order.len() {
                            return Err((k + 1, "not answered: the server closed the connection after an earlier response".to_string()));
                        }
                        return Ok(true);
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err((k, e.to_string())),
                    Err(_) => {
                        return Err((
                            k,
                            ClientError::Timeout(format!("{} after {timeout:?}", req.path))
                                .to_string(),
                        ))
                    }
                }
            }
            Ok(false)
        };

        // The writer is dropped with this block: once the reader is done (or
        // failed), requests not yet written never will be.
        let outcome = {
            tokio::pin!(writer);
            tokio::pin!(read_all);
            let mut writer_finished = false;
            loop {
                tokio::select! {
                    _ = &mut writer, if !writer_finished => writer_finished = true,
                    r = &mut read_all => break r,
                }
            }
        };
        if outcome == Ok(true) {
            self.broken = Some("the server closed the connection (Connection: close)".into());
        }
        if let Err((k, why)) = outcome {
            for (kk, &i) in order.iter().enumerate().skip(k) {
                let rec = &mut records[i];
                if rec.error.is_none() {
                    rec.error = Some(if kk == k {
                        why.clone()
                    } else {
                        format!("not answered: an earlier response failed ({why})")
                    });
                }
            }
            self.broken = Some(why);
        }
        for (i, rec) in records.iter_mut().enumerate() {
            let t = sent_ns[i].load(Ordering::Relaxed);
            rec.request_sent_ns = (t != NOT_SENT).then_some(t);
        }
        self.position += order.len() as u64;
        records
    }

    pub async fn close(mut self) {
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), s.shutdown()).await;
        }
    }
}
