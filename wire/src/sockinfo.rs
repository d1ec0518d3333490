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
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
pub(crate) fn getsockopt_raw<T: Copy>(
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
pub(crate) fn tcp_congestion_raw(fd: RawFd) -> io::Result<String> {
    // TCP_CA_NAME_MAX is 16.
    let mut buf = [0u8; 16];
    let n = getsockopt_raw(fd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, &mut buf)?;
    cc_name(&buf[..n.min(buf.len())]).ok_or_else(|| io::Error::other("empty TCP_CONGESTION"))
}

/// `setsockopt` of a `c_int` option: every integer socket option the
/// project sets goes through here.
pub fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a c_int option value of the right size, borrowed for the call;
    // a bad `fd` is an error return, not UB.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Option<u32> {
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
    /// Boxed: the TCP struct is more than twice the QUIC one.
    Tcp(Box<TcpInfo>),
    Quic(QuicStats),
}

mod probe;
mod series;
pub use probe::{ConnProbe, Probed, QuicProbeGuard, SenderSummary, Side, TransportRecord};
pub use series::{Sample, Series, MAX_SAMPLES, SAMPLE_PERIOD};

/// A sample at `t_ns` whose cwnd is `t_ns` too (order is visible in it):
/// the series' and the probe's tests share it.
#[cfg(test)]
pub(crate) fn test_sample(t_ns: u64) -> Sample {
    Sample {
        t_ns,
        cwnd: t_ns,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            Sample::of(&Snapshot::Tcp(Box::new(i)), 3).ssthresh,
            Some(20 * 1448)
        );
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
}
