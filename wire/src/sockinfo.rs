//! Read-only facts about a connection's transport, from both ends: what the
//! transport *did*, beside what the link did. Nothing here sets an option.
//!
//! * [`tcp_info`] / [`TcpInfo`]: `getsockopt(TCP_INFO)`. The kernel's struct is
//!   declared here in full ([`RawTcpInfo`]): libc's glibc `tcp_info` stops at
//!   `tcpi_total_retrans`, before the pacing and delivery rates and the byte
//!   counters. Fields a kernel does not return are `None`.
//! * [`tcp_sockopts`] / [`TcpSockopts`]: the options in force, read back
//!   (`TCP_CONGESTION`, `TCP_NODELAY`, `TCP_MAXSEG`, `SO_RCVBUF`, `SO_SNDBUF`).
//! * [`QuicStats`]: quinn's `Connection::stats()`.
//! * [`Sample`] and [`Series`]: a compact time series common to both
//!   transports, bounded in length (it thins itself out as it fills).
//! * [`ConnProbe`]: one connection's probe, shared by the socket's owner and a
//!   sampler task; [`Probed`] wraps a TCP stream so that the probe can never
//!   read a closed (or reused) descriptor, and takes the final snapshot just
//!   before the socket closes. [`TransportRecord`] is what a probe reports.
//!
//! Times are `CLOCK_MONOTONIC` ns ([`crate::clock::mono_ns`]), shared by every
//! namespace of the host, relative to the record's `origin_mono_ns`: a server's
//! and a client's records can be put on one time axis with
//! [`TransportRecord::rebase`].

use std::io;
use std::mem::{offset_of, size_of};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock::mono_ns;

/// The kernel's `struct tcp_info` (include/uapi/linux/tcp.h, Linux 6.7+). An
/// older kernel fills a prefix and says how much; a newer one truncates to
/// this size.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RawTcpInfo {
    pub state: u8,
    pub ca_state: u8,
    pub retransmits: u8,
    pub probes: u8,
    pub backoff: u8,
    pub options: u8,
    /// `snd_wscale:4, rcv_wscale:4`.
    pub wscale: u8,
    /// `delivery_rate_app_limited:1, fastopen_client_fail:2`.
    pub app_limited: u8,
    pub rto: u32,
    pub ato: u32,
    pub snd_mss: u32,
    pub rcv_mss: u32,
    pub unacked: u32,
    pub sacked: u32,
    pub lost: u32,
    pub retrans: u32,
    pub fackets: u32,
    pub last_data_sent: u32,
    pub last_ack_sent: u32,
    pub last_data_recv: u32,
    pub last_ack_recv: u32,
    pub pmtu: u32,
    pub rcv_ssthresh: u32,
    pub rtt: u32,
    pub rttvar: u32,
    pub snd_ssthresh: u32,
    pub snd_cwnd: u32,
    pub advmss: u32,
    pub reordering: u32,
    pub rcv_rtt: u32,
    pub rcv_space: u32,
    pub total_retrans: u32,
    pub pacing_rate: u64,
    pub max_pacing_rate: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub notsent_bytes: u32,
    pub min_rtt: u32,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub delivery_rate: u64,
    pub busy_time: u64,
    pub rwnd_limited: u64,
    pub sndbuf_limited: u64,
    pub delivered: u32,
    pub delivered_ce: u32,
    pub bytes_sent: u64,
    pub bytes_retrans: u64,
    pub dsack_dups: u32,
    pub reord_seen: u32,
    pub rcv_ooopack: u32,
    pub snd_wnd: u32,
    pub rcv_wnd: u32,
    pub rehash: u32,
    pub total_rto: u16,
    pub total_rto_recoveries: u16,
    pub total_rto_time: u32,
}

/// `tcpi_snd_ssthresh` before the first congestion event (TCP_INFINITE_SSTHRESH).
const INFINITE_SSTHRESH: u32 = 0x7fff_ffff;

/// A TCP connection's state, from `TCP_INFO`, in plain units: bytes, µs,
/// segments. `None`: the kernel did not return that field (too old), or it has
/// no value (no congestion event yet for `snd_ssthresh`, no pacing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpInfo {
    /// Bytes of `struct tcp_info` the kernel returned.
    pub info_len: u32,
    /// TCP state (1 = ESTABLISHED, see `tcp_states.h`).
    pub state: u8,
    /// Congestion-avoidance state: open, disorder, cwr, recovery, loss.
    pub ca_state: String,
    /// Consecutive RTO retransmissions now (not a total).
    pub retransmits: u8,
    pub backoff: u8,
    pub rto_us: u32,
    pub snd_mss: u32,
    pub rcv_mss: u32,
    pub advmss: u32,
    pub pmtu: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    pub sacked: u32,
    /// Segments the kernel considers lost now.
    pub lost: u32,
    /// Retransmitted segments in flight now.
    pub retrans: u32,
    pub srtt_us: u32,
    pub rttvar_us: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// `snd_cwnd × snd_mss`, bytes (comparable with QUIC's window).
    pub cwnd_bytes: u64,
    /// Slow-start threshold, segments; None before the first congestion event.
    pub snd_ssthresh: Option<u32>,
    pub reordering: u32,
    pub rcv_rtt_us: u32,
    pub rcv_space: u32,
    pub rcv_ssthresh: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Bytes/s; None when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing_rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_acked: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segs_out: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segs_in: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notsent_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rtt_us: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_segs_out: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_segs_in: Option<u32>,
    /// Bytes/s, the kernel's latest delivery-rate sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_rate: Option<u64>,
    /// The delivery-rate sample was limited by the application, not the network.
    #[serde(default)]
    pub delivery_rate_app_limited: bool,
    /// µs busy sending, limited by the receive window, by the send buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rwnd_limited_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sndbuf_limited_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_retrans: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsack_dups: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reord_seen: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcv_ooopack: Option<u32>,
    /// The peer's advertised window, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snd_wnd: Option<u32>,
    /// Our advertised window, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcv_wnd: Option<u32>,
    /// RTO timeouts over the connection's life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_rto: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_rto_recoveries: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_rto_time_ms: Option<u32>,
}

/// Name of a `tcpi_ca_state` value (enum tcp_ca_state).
pub fn ca_state_name(s: u8) -> String {
    match s {
        0 => "open".into(),
        1 => "disorder".into(),
        2 => "cwr".into(),
        3 => "recovery".into(),
        4 => "loss".into(),
        n => format!("state-{n}"),
    }
}

impl TcpInfo {
    /// From the kernel's struct, of which `len` bytes were filled.
    pub fn from_raw(r: &RawTcpInfo, len: usize) -> TcpInfo {
        // A field is there if the kernel's struct reaches its end.
        macro_rules! has {
            ($f:ident) => {
                offset_of!(RawTcpInfo, $f) + size_of_val(&r.$f) <= len
            };
        }
        macro_rules! opt {
            ($f:ident) => {
                has!($f).then_some(r.$f)
            };
        }
        TcpInfo {
            info_len: len as u32,
            state: r.state,
            ca_state: ca_state_name(r.ca_state),
            retransmits: r.retransmits,
            backoff: r.backoff,
            rto_us: r.rto,
            snd_mss: r.snd_mss,
            rcv_mss: r.rcv_mss,
            advmss: r.advmss,
            pmtu: r.pmtu,
            unacked: r.unacked,
            sacked: r.sacked,
            lost: r.lost,
            retrans: r.retrans,
            srtt_us: r.rtt,
            rttvar_us: r.rttvar,
            snd_cwnd: r.snd_cwnd,
            cwnd_bytes: u64::from(r.snd_cwnd) * u64::from(r.snd_mss),
            snd_ssthresh: (r.snd_ssthresh < INFINITE_SSTHRESH).then_some(r.snd_ssthresh),
            reordering: r.reordering,
            rcv_rtt_us: r.rcv_rtt,
            rcv_space: r.rcv_space,
            rcv_ssthresh: r.rcv_ssthresh,
            total_retrans: r.total_retrans,
            pacing_rate: opt!(pacing_rate).filter(|&v| v != u64::MAX),
            bytes_acked: opt!(bytes_acked),
            bytes_received: opt!(bytes_received),
            segs_out: opt!(segs_out),
            segs_in: opt!(segs_in),
            notsent_bytes: opt!(notsent_bytes),
            min_rtt_us: opt!(min_rtt),
            data_segs_out: opt!(data_segs_out),
            data_segs_in: opt!(data_segs_in),
            delivery_rate: opt!(delivery_rate),
            delivery_rate_app_limited: has!(delivery_rate) && r.app_limited & 1 == 1,
            busy_us: opt!(busy_time),
            rwnd_limited_us: opt!(rwnd_limited),
            sndbuf_limited_us: opt!(sndbuf_limited),
            delivered: opt!(delivered),
            bytes_sent: opt!(bytes_sent),
            bytes_retrans: opt!(bytes_retrans),
            dsack_dups: opt!(dsack_dups),
            reord_seen: opt!(reord_seen),
            rcv_ooopack: opt!(rcv_ooopack),
            snd_wnd: opt!(snd_wnd),
            rcv_wnd: opt!(rcv_wnd),
            total_rto: opt!(total_rto),
            total_rto_recoveries: opt!(total_rto_recoveries),
            total_rto_time_ms: opt!(total_rto_time),
        }
    }
}

/// `getsockopt(fd, level, name)` into a `T`; returns the bytes filled.
///
/// Only for plain-data `T` (integers, `#[repr(C)]` structs of integers), for
/// which any bytes the kernel writes are a valid value.
fn getsockopt_raw<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    out: &mut T,
) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `out` is a valid, writable `T` of `len` bytes, and the kernel
    // writes at most `len` bytes into it; `T` is plain data, so any bytes it
    // writes make a valid `T`. A bad `fd` is an error return, not UB.
    let rc = unsafe { libc::getsockopt(fd, level, name, (out as *mut T).cast(), &mut len) };
    if rc == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn tcp_info_raw(fd: RawFd) -> io::Result<TcpInfo> {
    let mut raw = RawTcpInfo::default();
    let len = getsockopt_raw(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut raw)?;
    Ok(TcpInfo::from_raw(&raw, len))
}

/// `TCP_INFO` of a TCP socket.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    tcp_info_raw(fd.as_raw_fd())
}

/// Socket options in force on a TCP socket, read back from the kernel (what
/// was granted, not what was asked: `SO_RCVBUF` is doubled and capped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSockopts {
    /// `TCP_CONGESTION`, e.g. "cubic".
    pub congestion: Option<String>,
    pub nodelay: Option<bool>,
    /// `TCP_MAXSEG`: the MSS in use, bytes.
    pub maxseg: Option<u32>,
    pub rcvbuf: Option<u32>,
    pub sndbuf: Option<u32>,
}

/// The controller name of `TCP_CONGESTION` (NUL-padded, at most 16 bytes).
fn cc_name(buf: &[u8]) -> Option<String> {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = std::str::from_utf8(&buf[..end]).ok()?;
    (!s.is_empty()).then(|| s.to_string())
}

// `crate::transport::tcp_congestion` is the public form (of an `AsFd`); the
// probe holds a raw descriptor.
fn tcp_congestion_raw(fd: RawFd) -> io::Result<String> {
    // TCP_CA_NAME_MAX is 16.
    let mut buf = [0u8; 16];
    let n = getsockopt_raw(fd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, &mut buf)?;
    cc_name(&buf[..n.min(buf.len())]).ok_or_else(|| io::Error::other("empty TCP_CONGESTION"))
}

fn int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Option<u32> {
    let mut v: libc::c_int = 0;
    getsockopt_raw(fd, level, name, &mut v).ok()?;
    u32::try_from(v).ok()
}

fn tcp_sockopts_raw(fd: RawFd) -> TcpSockopts {
    TcpSockopts {
        congestion: tcp_congestion_raw(fd).ok(),
        nodelay: int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY).map(|v| v != 0),
        maxseg: int_opt(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG),
        rcvbuf: int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF),
        sndbuf: int_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF),
    }
}

/// Read back the options of a TCP socket; an option that cannot be read is None.
pub fn tcp_sockopts(fd: BorrowedFd<'_>) -> TcpSockopts {
    tcp_sockopts_raw(fd.as_raw_fd())
}

/// A QUIC connection's state, from quinn's `Connection::stats()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuicStats {
    /// Congestion window, bytes.
    pub cwnd: u64,
    pub congestion_events: u64,
    /// Packets and bytes declared lost (their data is re-sent in new packets).
    pub lost_packets: u64,
    pub lost_bytes: u64,
    pub sent_packets: u64,
    /// quinn's smoothed RTT (its latest sample before the first).
    pub srtt_us: u64,
    pub min_rtt_us: u64,
    /// Largest UDP payload the path takes now (PLPMTUD's result).
    pub current_mtu: u16,
    pub sent_plpmtud_probes: u64,
    pub lost_plpmtud_probes: u64,
    pub black_holes_detected: u64,
    pub udp_tx_datagrams: u64,
    pub udp_tx_bytes: u64,
    /// Send system calls (GSO batches several datagrams into one).
    pub udp_tx_ios: u64,
    pub udp_rx_datagrams: u64,
    pub udp_rx_bytes: u64,
    pub udp_rx_ios: u64,
    pub acks_tx: u64,
    pub acks_rx: u64,
}

impl From<&quinn::ConnectionStats> for QuicStats {
    fn from(s: &quinn::ConnectionStats) -> Self {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        QuicStats {
            cwnd: s.path.cwnd,
            congestion_events: s.path.congestion_events,
            lost_packets: s.path.lost_packets,
            lost_bytes: s.path.lost_bytes,
            sent_packets: s.path.sent_packets,
            srtt_us: us(s.path.rtt),
            min_rtt_us: us(s.path.min_rtt),
            current_mtu: s.path.current_mtu,
            sent_plpmtud_probes: s.path.sent_plpmtud_probes,
            lost_plpmtud_probes: s.path.lost_plpmtud_probes,
            black_holes_detected: s.path.black_holes_detected,
            udp_tx_datagrams: s.udp_tx.datagrams,
            udp_tx_bytes: s.udp_tx.bytes,
            udp_tx_ios: s.udp_tx.ios,
            udp_rx_datagrams: s.udp_rx.datagrams,
            udp_rx_bytes: s.udp_rx.bytes,
            udp_rx_ios: s.udp_rx.ios,
            acks_tx: s.frame_tx.acks,
            acks_rx: s.frame_rx.acks,
        }
    }
}

/// One full snapshot of either transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Snapshot {
    Tcp(TcpInfo),
    Quic(QuicStats),
}

/// One point of a connection's time series: the few figures charted over
/// time, named alike for both transports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// ns after the record's `origin_mono_ns`.
    pub t_ns: u64,
    /// Congestion window, bytes (TCP: `snd_cwnd × snd_mss`).
    pub cwnd: u64,
    /// TCP's slow-start threshold, bytes, once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssthresh: Option<u64>,
    pub srtt_us: u64,
    /// Bytes put on the wire (TCP: `bytes_sent`, retransmissions included;
    /// QUIC: UDP payload bytes).
    pub sent_bytes: u64,
    /// TCP: bytes retransmitted; QUIC: bytes in packets declared lost (their
    /// data goes again in new packets).
    pub retrans_bytes: u64,
    /// TCP: segments retransmitted (`total_retrans`); QUIC: packets lost.
    pub retrans_packets: u64,
    /// QUIC's congestion events (TCP_INFO has no such count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub congestion_events: Option<u64>,
    /// Bytes acknowledged by the peer (TCP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_bytes: Option<u64>,
    /// Bytes/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing_rate: Option<u64>,
    /// Bytes/s (TCP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_rate: Option<u64>,
}

impl Sample {
    /// The charted figures of a snapshot, at `t_ns`.
    pub fn of(snap: &Snapshot, t_ns: u64) -> Sample {
        match snap {
            Snapshot::Tcp(i) => Sample {
                t_ns,
                cwnd: i.cwnd_bytes,
                ssthresh: i.snd_ssthresh.map(|s| u64::from(s) * u64::from(i.snd_mss)),
                srtt_us: u64::from(i.srtt_us),
                sent_bytes: i.bytes_sent.unwrap_or(0),
                retrans_bytes: i.bytes_retrans.unwrap_or(0),
                retrans_packets: u64::from(i.total_retrans),
                congestion_events: None,
                acked_bytes: i.bytes_acked,
                pacing_rate: i.pacing_rate,
                delivery_rate: i.delivery_rate,
            },
            Snapshot::Quic(q) => Sample {
                t_ns,
                cwnd: q.cwnd,
                ssthresh: None,
                srtt_us: q.srtt_us,
                sent_bytes: q.udp_tx_bytes,
                retrans_bytes: q.lost_bytes,
                retrans_packets: q.lost_packets,
                congestion_events: Some(q.congestion_events),
                acked_bytes: None,
                pacing_rate: None,
                delivery_rate: None,
            },
        }
    }
}

/// Default sampling period: fine enough to see a window halve on a 10 ms RTT.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(10);
/// Most samples kept per connection; beyond, the series thins itself.
pub const MAX_SAMPLES: usize = 400;

/// A time series bounded in length: when full, every other sample is dropped
/// and the period doubles, so a long transfer keeps an even, coarser series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    period_ns: u64,
    max: usize,
    samples: Vec<Sample>,
}

impl Series {
    /// A series sampled every `period` (at least 1 ms), at most `max` long (at least 2).
    pub fn new(period: Duration, max: usize) -> Series {
        Series {
            period_ns: u64::try_from(period.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1_000_000),
            max: max.max(2),
            samples: Vec::new(),
        }
    }

    /// The current period (it doubles each time the series is thinned).
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    /// Add a sample, unless it comes before the next point due at the current
    /// period (the sampler ticks late or early; thinning coarsens the grid).
    /// Samples must come in time order; an earlier one is dropped.
    pub fn push(&mut self, s: Sample) {
        if let Some(last) = self.samples.last() {
            // Half a period of slack: a timer that fires a little early still counts.
            if s.t_ns < last.t_ns.saturating_add(self.period_ns / 2) {
                return;
            }
        }
        if self.samples.len() >= self.max {
            self.thin();
        }
        self.samples.push(s);
    }

    /// Keep every other sample (the first, the third...), double the period.
    fn thin(&mut self) {
        let mut i = 0;
        self.samples.retain(|_| {
            i += 1;
            i % 2 == 1
        });
        self.period_ns = self.period_ns.saturating_mul(2);
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

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
            Source::Tcp(fd) => tcp_info_raw(*fd).ok().map(Snapshot::Tcp),
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
    pub fn add(self, o: SenderSummary) -> SenderSummary {
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

    fn s(t_ns: u64) -> Sample {
        Sample {
            t_ns,
            cwnd: t_ns,
            ..Default::default()
        }
    }

    #[test]
    fn layout_matches_the_kernel() {
        // The prefix glibc declares sits where libc says it does.
        assert_eq!(
            offset_of!(RawTcpInfo, total_retrans),
            offset_of!(libc::tcp_info, tcpi_total_retrans)
        );
        assert_eq!(
            offset_of!(RawTcpInfo, snd_cwnd),
            offset_of!(libc::tcp_info, tcpi_snd_cwnd)
        );
        assert_eq!(offset_of!(RawTcpInfo, rto), 8);
        // Offsets of later fields, from include/uapi/linux/tcp.h.
        assert_eq!(offset_of!(RawTcpInfo, pacing_rate), 104);
        assert_eq!(offset_of!(RawTcpInfo, delivery_rate), 160);
        assert_eq!(offset_of!(RawTcpInfo, bytes_retrans), 208);
        assert_eq!(size_of::<RawTcpInfo>(), 248);
    }

    #[test]
    fn fields_past_the_kernels_struct_are_none() {
        let r = RawTcpInfo {
            snd_cwnd: 10,
            snd_mss: 1448,
            snd_ssthresh: INFINITE_SSTHRESH,
            pacing_rate: 5,
            bytes_retrans: 7,
            ca_state: 4,
            ..Default::default()
        };
        // A 4.9-era kernel: up to and including delivery_rate.
        let len = offset_of!(RawTcpInfo, delivery_rate) + 8;
        let i = TcpInfo::from_raw(&r, len);
        assert_eq!(i.cwnd_bytes, 14480);
        assert_eq!(i.snd_ssthresh, None);
        assert_eq!(i.pacing_rate, Some(5));
        assert_eq!(i.delivery_rate, Some(0));
        assert_eq!(i.bytes_retrans, None);
        assert_eq!(i.ca_state, "loss");
        let full = TcpInfo::from_raw(&r, size_of::<RawTcpInfo>());
        assert_eq!(full.bytes_retrans, Some(7));
        // Unlimited pacing reads as none.
        let r = RawTcpInfo {
            pacing_rate: u64::MAX,
            snd_ssthresh: 20,
            ..r
        };
        let i = TcpInfo::from_raw(&r, size_of::<RawTcpInfo>());
        assert_eq!(i.pacing_rate, None);
        assert_eq!(i.snd_ssthresh, Some(20));
        assert_eq!(Sample::of(&Snapshot::Tcp(i), 3).ssthresh, Some(20 * 1448));
    }

    #[test]
    fn controller_names() {
        assert_eq!(
            cc_name(b"cubic\0\0\0\0\0\0\0\0\0\0\0").as_deref(),
            Some("cubic")
        );
        assert_eq!(cc_name(b"bbr").as_deref(), Some("bbr"));
        assert_eq!(cc_name(b"\0\0"), None);
        assert_eq!(cc_name(&[0xff, 0]), None);
    }

    #[test]
    fn series_keeps_the_period_and_order() {
        let mut sr = Series::new(Duration::from_millis(10), 100);
        sr.push(s(0));
        sr.push(s(2_000_000)); // too soon
        sr.push(s(9_000_000)); // a little early: kept
        sr.push(s(5_000_000)); // out of order
        let t: Vec<u64> = sr.samples().iter().map(|x| x.t_ns).collect();
        assert_eq!(t, vec![0, 9_000_000]);
    }

    #[test]
    fn series_thins_when_full() {
        let mut sr = Series::new(Duration::from_millis(1), 8);
        for i in 0..100u64 {
            sr.push(s(i * 1_000_000));
        }
        assert!(sr.len() <= 8);
        assert!(sr.period() >= Duration::from_millis(8));
        let t: Vec<u64> = sr.samples().iter().map(|x| x.t_ns).collect();
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(t[0], 0);
        // Even spacing after thinning.
        let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g >= 8_000_000 / 2), "{gaps:?}");
        // The latest point is within one (final) period of the last push.
        let period = sr.period().as_nanos() as u64;
        assert!(*t.last().unwrap_or(&0) + period >= 99_000_000, "{t:?}");
    }

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
    fn quic_stats_convert() {
        let mut st = quinn::ConnectionStats::default();
        st.path.cwnd = 12_000;
        st.path.congestion_events = 3;
        st.path.lost_bytes = 2_400;
        st.path.lost_packets = 2;
        st.path.rtt = Duration::from_micros(20_500);
        st.path.current_mtu = 1452;
        st.udp_tx.bytes = 1_000_000;
        let q = QuicStats::from(&st);
        assert_eq!(q.srtt_us, 20_500);
        let smp = Sample::of(&Snapshot::Quic(q), 7);
        assert_eq!(smp.cwnd, 12_000);
        assert_eq!(smp.retrans_bytes, 2_400);
        assert_eq!(smp.congestion_events, Some(3));
        assert_eq!(smp.sent_bytes, 1_000_000);
        let json = serde_json::to_string(&Snapshot::Quic(QuicStats::from(&st))).unwrap_or_default();
        assert!(json.starts_with("{\"quic\":"), "{json}");
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
        let c = a.add(b);
        assert_eq!(c.sent_bytes, 20);
        assert_eq!(c.congestion_events, Some(2));
        assert_eq!(c.max_cwnd, 7);
    }
}
