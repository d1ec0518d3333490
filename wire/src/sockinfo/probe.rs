//! One connection's probe: the source it reads (a TCP descriptor, a quinn
//! connection), its series, its final snapshot, and what it reports.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    tcp_info_raw, tcp_sockopts_raw, QuicStats, Sample, Series, Snapshot, TcpSockopts, MAX_SAMPLES,
};
use crate::clock::mono_ns;

/// Which end of the connection a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

/// One connection's transport, seen from one end: options read back, the
/// final (or latest) snapshot and the sampled series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportRecord {
    pub side: Side,
    /// "tcp" or "quic".
    pub transport: String,
    /// The client's connection id (client records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// The congestion controller read back, in our names (cubic, newreno,
    /// bbr): TCP's `TCP_CONGESTION`, QUIC's from quinn's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// TCP: options read back when the probe started (`congestion` as the
    /// kernel names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockopts: Option<TcpSockopts>,
    /// `CLOCK_MONOTONIC` ns that `t_ns` values count from.
    pub origin_mono_ns: u64,
    /// When the probe started (connection established), ns after the origin.
    pub start_ns: u64,
    /// When `end` was taken, ns after the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<u64>,
    /// `end` was taken as the connection closed (else: when asked, still open).
    pub closed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Snapshot>,
    /// Sampling period at the end (it doubles as the series thins), ms; 0: not sampled.
    pub sample_period_ms: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
}

impl TransportRecord {
    /// Count times from `origin_mono_ns` instead (an origin later than a time
    /// clamps that time to 0).
    pub fn rebase(&mut self, origin_mono_ns: u64) {
        let shift = |t: u64| (self.origin_mono_ns + t).saturating_sub(origin_mono_ns);
        self.start_ns = shift(self.start_ns);
        self.end_ns = self.end_ns.map(shift);
        for s in &mut self.samples {
            s.t_ns = shift(s.t_ns);
        }
        self.origin_mono_ns = origin_mono_ns;
    }

    /// The charted figures of the end snapshot.
    pub fn end_sample(&self) -> Option<Sample> {
        self.end
            .as_ref()
            .map(|s| Sample::of(s, self.end_ns.unwrap_or(0)))
    }

    /// Congestion controller in force, when read back, in our names.
    pub fn congestion(&self) -> Option<&str> {
        self.controller.as_deref()
    }
}

/// What a probe reads from.
enum Source {
    /// The descriptor of a socket owned by a [`Probed`], which clears this
    /// before the socket closes.
    Tcp(RawFd),
    /// A handle on the connection (released by [`QuicProbeGuard`]).
    Quic(quinn::Connection),
}

impl Source {
    fn snapshot(&self) -> Option<Snapshot> {
        match self {
            Source::Tcp(fd) => tcp_info_raw(*fd).ok().map(|i| Snapshot::Tcp(Box::new(i))),
            Source::Quic(c) => Some(Snapshot::Quic(QuicStats::from(&c.stats()))),
        }
    }
}

struct ProbeState {
    source: Option<Source>,
    series: Option<Series>,
    end: Option<(u64, Snapshot)>,
}

/// One connection's transport probe, shared by whoever owns the connection
/// and its sampler task. Cheap: a snapshot is one `getsockopt` or one quinn
/// lock, taken on a timer (never per read or write).
pub struct ConnProbe {
    side: Side,
    transport: &'static str,
    conn_id: Option<u64>,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    controller: Option<String>,
    sockopts: Option<TcpSockopts>,
    origin_mono_ns: u64,
    start_ns: u64,
    state: Mutex<ProbeState>,
}

impl std::fmt::Debug for ConnProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnProbe")
            .field("side", &self.side)
            .field("transport", &self.transport)
            .field("conn_id", &self.conn_id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ConnProbe {
    fn new(
        side: Side,
        transport: &'static str,
        source: Source,
        origin_mono_ns: u64,
        sockopts: Option<TcpSockopts>,
        addrs: (Option<SocketAddr>, Option<SocketAddr>),
    ) -> ConnProbe {
        let controller = match &source {
            Source::Tcp(_) => sockopts
                .as_ref()
                .and_then(|o| o.congestion.as_deref())
                .map(crate::transport::normalize_cc_name),
            Source::Quic(c) => Some(crate::transport::quic_controller(c)),
        };
        ConnProbe {
            side,
            transport,
            conn_id: None,
            local: addrs.0,
            peer: addrs.1,
            controller,
            sockopts,
            origin_mono_ns,
            start_ns: mono_ns().saturating_sub(origin_mono_ns),
            state: Mutex::new(ProbeState {
                source: Some(source),
                series: None,
                end: None,
            }),
        }
    }

    /// A probe on a QUIC connection. It holds a handle on the connection until
    /// the returned guard is dropped (a live handle keeps quinn from closing an
    /// abandoned connection implicitly): keep the guard beside the connection.
    pub fn quic(
        conn: &quinn::Connection,
        side: Side,
        conn_id: Option<u64>,
        origin_mono_ns: u64,
    ) -> (Arc<ConnProbe>, QuicProbeGuard) {
        let addrs = (None, Some(conn.remote_address()));
        let mut p = ConnProbe::new(
            side,
            "quic",
            Source::Quic(conn.clone()),
            origin_mono_ns,
            None,
            addrs,
        );
        p.conn_id = conn_id;
        let p = Arc::new(p);
        (p.clone(), QuicProbeGuard(p))
    }

    fn lock(&self) -> MutexGuard<'_, ProbeState> {
        // A panic while holding the lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ns(&self) -> u64 {
        mono_ns().saturating_sub(self.origin_mono_ns)
    }

    /// A snapshot now (None once closed, or if the kernel refused).
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.lock().source.as_ref()?.snapshot()
    }

    /// Take one sample into the series; false once the connection is closed.
    pub fn sample(&self) -> bool {
        let t = self.now_ns();
        let mut st = self.lock();
        let Some(snap) = st.source.as_ref().map(Source::snapshot) else {
            return false;
        };
        if let (Some(snap), Some(series)) = (snap, st.series.as_mut()) {
            series.push(Sample::of(&snap, t));
        }
        true
    }

    /// The connection is closing: take the final snapshot and let go of the
    /// source. Later calls do nothing.
    pub fn close(&self) {
        let t = self.now_ns();
        let mut st = self.lock();
        if let Some(src) = st.source.take() {
            if let Some(snap) = src.snapshot() {
                if let Some(series) = st.series.as_mut() {
                    series.push(Sample::of(&snap, t));
                }
                st.end = Some((t, snap));
            }
        }
    }

    /// Sample every `period` (see [`Series`]) on a tokio task until the
    /// connection closes or the probe is dropped. Outside a tokio runtime,
    /// or if already sampling, nothing happens.
    pub fn start_sampling(self: &Arc<Self>, period: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut st = self.lock();
            if st.series.is_some() || st.source.is_none() {
                return;
            }
            st.series = Some(Series::new(period, MAX_SAMPLES));
        }
        // The first sample now: the state the transfer starts from.
        self.sample();
        let weak: Weak<ConnProbe> = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                let period = match weak.upgrade() {
                    Some(p) => p.lock().series.as_ref().map(Series::period),
                    None => None,
                };
                let Some(period) = period else { break };
                tokio::time::sleep(period).await;
                match weak.upgrade() {
                    Some(p) if p.sample() => {}
                    _ => break,
                }
            }
        });
    }

    /// The record so far: the final snapshot if closed, else one taken now.
    pub fn record(&self) -> TransportRecord {
        let t = self.now_ns();
        let st = self.lock();
        let (end_ns, end, closed) = match (&st.end, &st.source) {
            (Some((t, s)), _) => (Some(*t), Some(s.clone()), true),
            (None, Some(src)) => (Some(t), src.snapshot(), false),
            (None, None) => (None, None, true),
        };
        TransportRecord {
            side: self.side,
            transport: self.transport.to_string(),
            conn_id: self.conn_id,
            local: self.local,
            peer: self.peer,
            controller: self.controller.clone(),
            sockopts: self.sockopts.clone(),
            origin_mono_ns: self.origin_mono_ns,
            start_ns: self.start_ns,
            end_ns: end.as_ref().and(end_ns),
            closed,
            end,
            sample_period_ms: st
                .series
                .as_ref()
                .map_or(0.0, |s| s.period().as_secs_f64() * 1e3),
            samples: st
                .series
                .as_ref()
                .map(|s| s.samples().to_vec())
                .unwrap_or_default(),
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn sockopts(&self) -> Option<&TcpSockopts> {
        self.sockopts.as_ref()
    }
}

/// Releases a QUIC probe's handle on its connection (after a final snapshot)
/// when dropped.
#[derive(Debug)]
pub struct QuicProbeGuard(Arc<ConnProbe>);

impl Drop for QuicProbeGuard {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A TCP stream with a probe on it. The probe reads the stream's descriptor
/// only while this owns the stream: dropping it takes the final snapshot and
/// detaches the probe *before* the socket closes. Reads and writes pass
/// straight through.
#[derive(Debug)]
pub struct Probed<S: AsFd> {
    inner: S,
    probe: Arc<ConnProbe>,
}

impl<S: AsFd> Probed<S> {
    /// Probe `stream` (a connected TCP socket): reads its options back now.
    /// `conn_id`: the client's id of the connection, if any; times count from
    /// `origin_mono_ns`.
    pub fn new(
        stream: S,
        side: Side,
        conn_id: Option<u64>,
        addrs: (Option<SocketAddr>, Option<SocketAddr>),
        origin_mono_ns: u64,
    ) -> Probed<S> {
        let fd = stream.as_fd().as_raw_fd();
        let mut p = ConnProbe::new(
            side,
            "tcp",
            Source::Tcp(fd),
            origin_mono_ns,
            Some(tcp_sockopts_raw(fd)),
            addrs,
        );
        p.conn_id = conn_id;
        Probed {
            inner: stream,
            probe: Arc::new(p),
        }
    }

    pub fn probe(&self) -> &Arc<ConnProbe> {
        &self.probe
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsFd> Drop for Probed<S> {
    fn drop(&mut self) {
        // Runs before `inner` is dropped (and its descriptor closed).
        self.probe.close();
    }
}

impl<S: AsFd + AsyncRead + Unpin> AsyncRead for Probed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsFd + AsyncWrite + Unpin> AsyncWrite for Probed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Summary figures of one record for a cell's metrics: what the sender did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SenderSummary {
    pub sent_bytes: u64,
    pub retrans_bytes: u64,
    pub retrans_packets: u64,
    pub congestion_events: Option<u64>,
    /// Largest window seen (samples and end), bytes.
    pub max_cwnd: u64,
    pub end_srtt_us: u64,
}

impl SenderSummary {
    /// Of one record (None without an end snapshot).
    pub fn of(r: &TransportRecord) -> Option<SenderSummary> {
        let end = r.end_sample()?;
        let max_cwnd = r
            .samples
            .iter()
            .map(|s| s.cwnd)
            .chain([end.cwnd])
            .max()
            .unwrap_or(0);
        Some(SenderSummary {
            sent_bytes: end.sent_bytes,
            retrans_bytes: end.retrans_bytes,
            retrans_packets: end.retrans_packets,
            congestion_events: end.congestion_events,
            max_cwnd,
            end_srtt_us: end.srtt_us,
        })
    }

    /// Sum over connections (window and RTT: the largest).
    pub fn combine(self, o: SenderSummary) -> SenderSummary {
        SenderSummary {
            sent_bytes: self.sent_bytes + o.sent_bytes,
            retrans_bytes: self.retrans_bytes + o.retrans_bytes,
            retrans_packets: self.retrans_packets + o.retrans_packets,
            congestion_events: match (self.congestion_events, o.congestion_events) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            },
            max_cwnd: self.max_cwnd.max(o.max_cwnd),
            end_srtt_us: self.end_srtt_us.max(o.end_srtt_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sockinfo::test_sample as s;

    #[test]
    fn rebase_moves_every_time() {
        let mut r = TransportRecord {
            side: Side::Server,
            transport: "tcp".into(),
            conn_id: None,
            local: None,
            peer: None,
            controller: None,
            sockopts: None,
            origin_mono_ns: 1_000,
            start_ns: 10,
            end_ns: Some(500),
            closed: true,
            end: None,
            sample_period_ms: 10.0,
            samples: vec![s(20), s(400)],
        };
        r.rebase(1_100);
        assert_eq!(r.start_ns, 0);
        assert_eq!(r.end_ns, Some(400));
        assert_eq!(r.samples[0].t_ns, 0);
        assert_eq!(r.samples[1].t_ns, 300);
        assert_eq!(r.origin_mono_ns, 1_100);
    }

    #[test]
    fn summaries_add_up() {
        let a = SenderSummary {
            sent_bytes: 10,
            retrans_bytes: 1,
            retrans_packets: 1,
            congestion_events: None,
            max_cwnd: 5,
            end_srtt_us: 3,
        };
        let b = SenderSummary {
            congestion_events: Some(2),
            max_cwnd: 7,
            ..a
        };
        let c = a.combine(b);
        assert_eq!(c.sent_bytes, 20);
        assert_eq!(c.congestion_events, Some(2));
        assert_eq!(c.max_cwnd, 7);
    }
}
