//! The transport settings both ends of every protocol share, in one place:
//! the congestion controller (QUIC's *and* TCP's), flow-control windows,
//! idle timeout, and the packet size a link's MTU allows.
//!
//! A comparison is only like with like when these match, so servers, clients,
//! the harness and `conns` all take them from here, and what actually ran is
//! read back from the sockets and connections ([`tcp_congestion`],
//! [`quic_controller`]) rather than assumed.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use crate::CongestionControl;

/// Per-stream receive window (QUIC stream, HTTP/2 stream): Linux TCP's
/// autotuning ceiling (`tcp_rmem` max, 6 MiB), so neither transport is
/// window-limited where the other is not.
pub const STREAM_WINDOW: u32 = 6 << 20;
/// Per-connection receive window (QUIC connection, HTTP/2 connection).
pub const CONN_WINDOW: u32 = 24 << 20;
/// QUIC send buffer per connection.
pub const SEND_WINDOW: u64 = 24 << 20;
/// Concurrent bidirectional streams a client may open (QUIC, HTTP/2).
pub const MAX_STREAMS: u32 = 1024;
/// Concurrent unidirectional streams either end may open (QUIC). HTTP/3 opens
/// three (control, QPACK encoder and decoder), h3 one more to grease; no push.
pub const MAX_UNI_STREAMS: u32 = 16;
/// QUIC idle timeout (both ends advertise it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// IPv4 + UDP header bytes: a QUIC datagram's payload is the MTU less these.
pub const UDP4_OVERHEAD: u32 = 20 + 8;
/// IPv6 + UDP header bytes.
pub const UDP6_OVERHEAD: u32 = 40 + 8;
/// Smallest UDP payload QUIC allows (RFC 9000 §14).
pub const QUIC_MIN_PAYLOAD: u16 = 1200;
/// Receive and send buffers requested for every QUIC socket, client and
/// server. A TCP socket's receive queue grows with its window (tcp_rmem);
/// a UDP socket's does not, and the kernel default (rmem_default, ~208 KiB)
/// overflowed at 60 Mbit/s bursts here: drops outside the link model. 16 MiB
/// holds 100 ms at 1 Gbit/s.
pub const QUIC_SOCKET_BUFFER: usize = 16 << 20;
/// quinn's initial RTT estimate before any sample (set explicitly in
/// [`Transport::quic`]; RFC 9002's recommended 333 ms, quinn's default).
pub const QUIC_INITIAL_RTT: Duration = Duration::from_millis(333);
/// quinn's timer granularity (quinn-proto's `TIMER_GRANULARITY`).
pub const QUIC_TIMER_GRANULARITY: Duration = Duration::from_millis(1);

/// The first probe timeout of a QUIC handshake with no RTT sample yet, as
/// quinn-proto 0.11 computes it: `RttEstimator::pto_base` = smoothed RTT (the
/// initial RTT until a sample) + max(4 × rttvar, granularity) with rttvar =
/// initial RTT / 2 (`RttEstimator::new`), and no `max_ack_delay` in the
/// Initial and Handshake spaces (`Connection::pto`): 3 × the initial RTT,
/// 999 ms with [`QUIC_INITIAL_RTT`].
pub fn quic_first_pto(initial_rtt: Duration) -> Duration {
    initial_rtt + (initial_rtt * 2).max(QUIC_TIMER_GRANULARITY)
}

/// Linux's initial retransmission timeout of a SYN and a SYN-ACK
/// (`TCP_TIMEOUT_INIT`, RFC 6298's 1 s).
pub const TCP_INITIAL_RTO: Duration = Duration::from_secs(1);

/// What a cell's endpoints share: the congestion controller of both
/// transports, and what they must know of the link when the harness built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transport {
    /// QUIC's controller, and `TCP_CONGESTION` on every TCP socket.
    pub cc: CongestionControl,
    /// The emulated link both ends run over (None: loopback or a network
    /// quicbench did not build; quinn's defaults for packet size and
    /// batching).
    pub link: Option<LinkShape>,
}

/// What a transport must know of the link it runs over, read from the link
/// itself ([`LinkShape::of`]): client and server take it from there, so
/// both ends of a connection send alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkShape {
    /// The link's MTU, bytes: QUIC sends datagrams of the size TCP's
    /// segments have on it from the first packet (initial MTU = MTU −
    /// IP/UDP headers, no discovery), where unknown it starts at quinn's
    /// 1200 bytes and discovers the path MTU.
    pub mtu: u32,
    /// Whether senders may hand the link batches (TCP's segmentation
    /// offload, QUIC's UDP GSO) that it still emulates per wire packet. The
    /// user-space link splits every batch before its model (`netem::gso`),
    /// so there TCP's TSO and QUIC's GSO are both on; a tc-netem qdisc on a
    /// veth would drop or delay a batch as one packet, so that backend turns
    /// TCP's offloads off on its devices and QUIC sends one datagram a call.
    pub batches: bool,
}

impl LinkShape {
    pub fn of(link: &quicbench_netem::link::Link) -> LinkShape {
        LinkShape {
            mtu: link.mtu(),
            batches: link.backend() != quicbench_netem::link::Backend::Kernel,
        }
    }
}

impl Transport {
    pub fn new(cc: CongestionControl) -> Self {
        Transport { cc, link: None }
    }

    /// The UDP payload QUIC uses on this link, if the MTU is known
    /// (IPv4 headers assumed: the benchmark hosts speak IPv4 first).
    pub fn quic_udp_payload(&self) -> Option<u16> {
        self.link.map(|l| udp_payload_for_mtu(l.mtu))
    }

    /// Whether QUIC hands the kernel batches of datagrams (UDP GSO).
    pub fn quic_gso(&self) -> bool {
        self.link.is_none_or(|l| l.batches)
    }

    /// quinn's transport parameters for these settings, as a client's:
    /// the server's, except that it lets the server open no bidirectional
    /// stream. HTTP/3 forbids them (RFC 9114 §6.1; quic-go's HTTP/3 client
    /// allows none either), and quinn sets up every stream a peer may open
    /// when a connection starts: 1024 of them cost each cold client
    /// connection ~1024 hash-map inserts (docs/h3.md).
    pub fn quic_client(&self) -> quinn::TransportConfig {
        let mut t = self.quic();
        t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
        t
    }

    /// quinn's transport parameters for these settings (a server's; a client
    /// takes [`Transport::quic_client`]).
    pub fn quic(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        match self.cc {
            CongestionControl::Cubic => {
                t.congestion_controller_factory(std::sync::Arc::new(
                    quinn::congestion::CubicConfig::default(),
                ));
            }
            CongestionControl::NewReno => {
                t.congestion_controller_factory(std::sync::Arc::new(
                    quinn::congestion::NewRenoConfig::default(),
                ));
            }
            CongestionControl::Bbr => {
                t.congestion_controller_factory(std::sync::Arc::new(
                    quinn::congestion::BbrConfig::default(),
                ));
            }
        }
        t.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
        t.receive_window(quinn::VarInt::from_u32(CONN_WINDOW));
        t.send_window(SEND_WINDOW);
        t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS));
        t.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_UNI_STREAMS));
        t.initial_rtt(QUIC_INITIAL_RTT);
        if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
            t.max_idle_timeout(Some(idle));
        }
        if let Some(p) = self.quic_udp_payload() {
            // The path's size is known: start there, as TCP's MSS does, and
            // do not spend probes discovering it.
            t.initial_mtu(p);
            t.mtu_discovery_config(None);
        }
        if !self.quic_gso() {
            // One datagram per send where the link cannot split batches
            // (`LinkShape::batches`), as TCP's offloads are off there.
            t.enable_segmentation_offload(false);
        }
        t
    }

    /// Set this controller on a TCP socket (before `connect`, or on a
    /// listener: accepted sockets inherit it). Fails when the kernel lacks it.
    pub fn apply_tcp<S: AsFd>(&self, sock: &S) -> Result<(), CcError> {
        set_tcp_congestion(sock, self.cc)
    }
}

/// Pending TCP Fast Open requests a listener queues (`TCP_FASTOPEN`'s value).
pub const TFO_QUEUE: libc::c_int = 256;
/// Most TLS 1.3 early-data bytes a TCP server accepts (and advertises in its
/// tickets): room for any of our GET requests with HTTP/2's preface.
pub const TCP_EARLY_DATA_SIZE: u32 = 16 << 10;
/// The namespace sysctl TCP Fast Open needs, and the value both ends set:
/// bit 1 client, bit 2 server.
pub const TFO_SYSCTL: (&str, &str) = ("net/ipv4/tcp_fastopen", "3");
/// `tcpi_options` bit: the SYN's data was acknowledged (client: the cookie
/// was accepted; server: the connection was opened by a Fast Open SYN).
pub const TCPI_OPT_SYN_DATA: u8 = 32;

/// TCP's answer to QUIC's 0-RTT, as both ends of a cell set it: TCP Fast
/// Open (the request's first bytes in the SYN, with a cookie from an earlier
/// connection) and TLS 1.3 early data (the request in the first flight, with
/// a ticket from an earlier connection). Default: both off, as TCP runs in
/// most of the world. The one place these settings are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TcpFastStart {
    /// Server: `TCP_FASTOPEN` on the listener; client: `TCP_FASTOPEN_CONNECT`.
    pub fast_open: bool,
    /// TLS 1.3 early data over TCP: the bytes a server accepts (0: off); a
    /// client sends its request as early data when > 0.
    pub early_data: u32,
}

impl TcpFastStart {
    /// Fast Open on or off, early data on ([`TCP_EARLY_DATA_SIZE`]) or off.
    pub fn new(fast_open: bool, early_data: bool) -> Self {
        TcpFastStart {
            fast_open,
            early_data: if early_data { TCP_EARLY_DATA_SIZE } else { 0 },
        }
    }

    /// On a listener (before `listen`): accept Fast Open SYNs when on.
    pub fn apply_listener<S: AsFd>(&self, sock: &S) -> std::io::Result<()> {
        if !self.fast_open {
            return Ok(());
        }
        set_int(sock, libc::TCP_FASTOPEN, TFO_QUEUE)
    }

    /// On a client socket (before `connect`): the first write goes in the
    /// SYN once a cookie is cached (the first connection asks for one).
    pub fn apply_connect<S: AsFd>(&self, sock: &S) -> std::io::Result<()> {
        if !self.fast_open {
            return Ok(());
        }
        set_int(sock, libc::TCP_FASTOPEN_CONNECT, 1)
    }
}

fn set_int<S: AsFd>(sock: &S, opt: libc::c_int, v: libc::c_int) -> std::io::Result<()> {
    crate::sockinfo::set_int_opt(sock.as_fd().as_raw_fd(), libc::IPPROTO_TCP, opt, v)
}

/// `getsockopt(TCP_FASTOPEN)` (a listener's Fast Open queue, 0 off) and
/// `getsockopt(TCP_FASTOPEN_CONNECT)` (0/1), read back (None: unreadable).
pub fn tcp_fast_open<S: AsFd>(sock: &S) -> (Option<u32>, Option<u32>) {
    let fd = sock.as_fd().as_raw_fd();
    let get = |opt| crate::sockinfo::int_opt(fd, libc::IPPROTO_TCP, opt);
    (get(libc::TCP_FASTOPEN), get(libc::TCP_FASTOPEN_CONNECT))
}

/// Whether a connected socket's SYN carried data that was acknowledged
/// (`TCP_INFO`'s `tcpi_options & TCPI_OPT_SYN_DATA`), read back.
pub fn tcp_syn_data<S: AsFd>(sock: &S) -> std::io::Result<bool> {
    let fd = sock.as_fd().as_raw_fd();
    let mut raw = crate::sockinfo::RawTcpInfo::default();
    crate::sockinfo::getsockopt_raw(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut raw)?;
    Ok(raw.options & TCPI_OPT_SYN_DATA != 0)
}

/// Ask for socket buffers of `bytes` (receive and send): `SO_*BUFFORCE`
/// (privileged: not capped by `net.core.rmem_max`/`wmem_max`), else
/// `SO_RCVBUF`/`SO_SNDBUF` (capped). Returns what the kernel granted, read
/// back ([`socket_buffers`]); the kernel doubles the request for its own
/// bookkeeping, so a granted value is about twice the payload it holds.
pub fn set_socket_buffers<S: AsFd>(sock: &S, bytes: usize) -> (u64, u64) {
    let fd = sock.as_fd().as_raw_fd();
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| crate::sockinfo::set_int_opt(fd, libc::SOL_SOCKET, opt, v).is_ok();
    if !set(libc::SO_RCVBUFFORCE) {
        set(libc::SO_RCVBUF);
    }
    if !set(libc::SO_SNDBUFFORCE) {
        set(libc::SO_SNDBUF);
    }
    socket_buffers(sock)
}

/// A quinn endpoint on `socket` (a server's when `server` is set), on the
/// current tokio runtime: every QUIC endpoint of the project is made here.
pub fn quic_endpoint(
    config: quinn::EndpointConfig,
    server: Option<quinn::ServerConfig>,
    socket: std::net::UdpSocket,
) -> std::io::Result<quinn::Endpoint> {
    hold_udp6_gro_key();
    fix_mmap_threshold();
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the QUIC endpoint"))?;
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// Keep the kernel's IPv6 UDP GRO static key on for the life of the process.
///
/// quinn-udp (0.5) probes GRO for every socket it wraps with a throwaway
/// IPv6 socket on which it sets `UDP_GRO`. The first IPv6 socket with GRO
/// turns a kernel static key on and closing it turns it off again, and each
/// turn patches kernel text with an IPI to every CPU: in a profile of cold
/// h3 connections (a client endpoint per connection) the two turns were 5%
/// of both ends' CPU. One IPv6 socket with `UDP_GRO` held open keeps the key
/// on, so a probe costs a socket and a close. Nothing is ever sent on it.
/// Without IPv6 (or GRO) it does nothing. True when the socket is held.
pub fn hold_udp6_gro_key() -> bool {
    static HELD: std::sync::OnceLock<Option<std::net::UdpSocket>> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let s = std::net::UdpSocket::bind((std::net::Ipv6Addr::LOCALHOST, 0))
            .or_else(|_| std::net::UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, 0)))
            .ok()?;
        crate::sockinfo::set_int_opt(s.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
            .ok()
            .map(|()| s)
    })
    .as_ref()
    .is_some_and(|s| {
        crate::sockinfo::int_opt(s.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO) == Some(1)
    })
}

/// Blocks of at least this size are always mapped afresh (see [`fix_mmap_threshold`]).
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// Fix glibc's mmap threshold at [`MMAP_THRESHOLD`] for the life of the
/// process, so what a large allocation costs does not depend on what the
/// process did before.
///
/// glibc raises its threshold to the size of any mapped block that is freed
/// (up to 32 MiB). Once a goodput cell had freed a few MiB, each new quinn
/// endpoint's 3 MB receive buffer (1472 B × 64 GRO segments × 32
/// datagrams) came from the heap, and `calloc` zeroed all of it: an h3
/// client's set-up before its first Initial grew from 0.1 ms to 0.7-1.8 ms
/// with the cells that had run before it in the process, an order effect on
/// every h3 handshake time. Above a fixed threshold a block is a fresh
/// mapping, whose zero pages are touched only as they are used. True when
/// glibc took the setting (elsewhere there is nothing to fix: false).
pub fn fix_mmap_threshold() -> bool {
    static FIXED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FIXED.get_or_init(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only sets an allocator parameter; glibc
            // serialises it with allocations.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1 }
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        {
            false
        }
    })
}

/// `SO_RCVBUF` and `SO_SNDBUF` as the kernel reports them (0 if unreadable).
pub fn socket_buffers<S: AsFd>(sock: &S) -> (u64, u64) {
    let fd = sock.as_fd().as_raw_fd();
    let get = |opt| crate::sockinfo::int_opt(fd, libc::SOL_SOCKET, opt).unwrap_or(0) as u64;
    (get(libc::SO_RCVBUF), get(libc::SO_SNDBUF))
}

/// The largest UDP payload an IPv4 datagram carries on a link of this MTU,
/// clamped to what QUIC accepts.
pub fn udp_payload_for_mtu(mtu: u32) -> u16 {
    let p = mtu.saturating_sub(UDP4_OVERHEAD).min(u16::MAX as u32) as u16;
    p.max(QUIC_MIN_PAYLOAD)
}

/// Linux's name of a controller (`tcp_available_congestion_control`).
pub fn tcp_name(cc: CongestionControl) -> &'static str {
    match cc {
        CongestionControl::Cubic => "cubic",
        CongestionControl::NewReno => "reno",
        CongestionControl::Bbr => "bbr",
    }
}

/// A controller the kernel cannot give a socket.
#[derive(Debug, thiserror::Error)]
pub enum CcError {
    #[error("TCP congestion controller {wanted:?} is not available in this kernel (available: {available}); load its module (e.g. modprobe tcp_{wanted}) or choose another")]
    Unavailable { wanted: String, available: String },
    #[error("setting TCP congestion controller {wanted:?}: {source}")]
    Set {
        wanted: String,
        source: std::io::Error,
    },
}

/// The controllers this kernel has (`net.ipv4.tcp_available_congestion_control`;
/// global, not per namespace).
pub fn available_tcp_congestion() -> std::io::Result<Vec<String>> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")?;
    Ok(s.split_whitespace().map(str::to_string).collect())
}

/// `Ok` when the kernel has `cc`'s TCP counterpart; the error names what it has.
pub fn check_tcp_congestion(cc: CongestionControl) -> Result<(), CcError> {
    match available_tcp_congestion() {
        Ok(list) => check_against(cc, &list),
        // No /proc: let the setsockopt say what is wrong.
        Err(_) => Ok(()),
    }
}

/// `Ok` when `available` (the kernel's list) has `cc`'s TCP counterpart.
pub fn check_against(cc: CongestionControl, available: &[String]) -> Result<(), CcError> {
    let name = tcp_name(cc);
    if available.iter().any(|a| a == name) {
        Ok(())
    } else {
        Err(CcError::Unavailable {
            wanted: name.into(),
            available: available.join(" "),
        })
    }
}

/// `setsockopt(TCP_CONGESTION)`.
pub fn set_tcp_congestion<S: AsFd>(sock: &S, cc: CongestionControl) -> Result<(), CcError> {
    let name = tcp_name(cc);
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: a valid fd borrowed for the call; the value pointer and length
    // describe `name`'s bytes, which outlive the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        return Err(CcError::Unavailable {
            wanted: name.into(),
            available: available_tcp_congestion()
                .map(|l| l.join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        });
    }
    Err(CcError::Set {
        wanted: name.into(),
        source: e,
    })
}

/// `getsockopt(TCP_CONGESTION)`: the controller a TCP socket really runs.
pub fn tcp_congestion<S: AsFd>(sock: &S) -> std::io::Result<String> {
    crate::sockinfo::tcp_congestion_raw(sock.as_fd().as_raw_fd())
}

/// The controller a QUIC connection really runs, read from quinn's state
/// (a name in our vocabulary: cubic, newreno, bbr).
pub fn quic_controller(c: &quinn::Connection) -> String {
    let any = c.congestion_state().into_any();
    if any.is::<quinn::congestion::Cubic>() {
        "cubic".into()
    } else if any.is::<quinn::congestion::NewReno>() {
        "newreno".into()
    } else if any.is::<quinn::congestion::Bbr>() {
        "bbr".into()
    } else {
        "unknown".into()
    }
}

/// Our vocabulary for a kernel controller name (reno → newreno), so TCP and
/// QUIC read-backs compare as equal strings.
pub fn normalize_cc_name(kernel: &str) -> String {
    match kernel {
        "reno" => "newreno".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The held IPv6 socket has GRO on, read back (where the kernel has IPv6
    /// and UDP GRO, as every kernel since 5.0 built with IPv6 does).
    #[test]
    fn the_udp6_gro_key_is_held() {
        if std::net::UdpSocket::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_err() {
            eprintln!("SKIPPED: the_udp6_gro_key_is_held: no IPv6 here");
            return;
        }
        assert!(hold_udp6_gro_key());
        assert!(hold_udp6_gro_key(), "held once, for the process");
    }

    /// The handshake's first PTO is 3 × the initial RTT, and the transport
    /// config carries the initial RTT the theory uses (read back from quinn's
    /// own Debug output: it has no getter).
    #[test]
    fn quic_first_pto_is_three_initial_rtts() {
        assert_eq!(quic_first_pto(QUIC_INITIAL_RTT), Duration::from_millis(999));
        assert_eq!(
            quic_first_pto(Duration::from_micros(100)),
            Duration::from_micros(1100)
        );
        let t = Transport::new(CongestionControl::Cubic).quic();
        assert!(format!("{t:?}").contains("initial_rtt: 333ms"), "{t:?}");
    }

    #[test]
    fn payload_for_mtu() {
        assert_eq!(udp_payload_for_mtu(1500), 1472);
        assert_eq!(udp_payload_for_mtu(9000), 8972);
        // Below QUIC's minimum the minimum wins (such a link fails QUIC anyway).
        assert_eq!(udp_payload_for_mtu(1000), QUIC_MIN_PAYLOAD);
        assert_eq!(udp_payload_for_mtu(u32::MAX), u16::MAX);
    }

    #[test]
    fn names() {
        assert_eq!(tcp_name(CongestionControl::NewReno), "reno");
        assert_eq!(normalize_cc_name("reno"), "newreno");
        assert_eq!(normalize_cc_name("cubic"), "cubic");
    }

    #[test]
    fn tcp_socket_takes_and_reports_the_controller() {
        let available = available_tcp_congestion().unwrap_or_default();
        for cc in [CongestionControl::Cubic, CongestionControl::NewReno] {
            if !available.iter().any(|a| a == tcp_name(cc)) {
                eprintln!(
                    "SKIPPED: {} not in this kernel ({available:?})",
                    tcp_name(cc)
                );
                continue;
            }
            let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            set_tcp_congestion(&s, cc).unwrap();
            assert_eq!(tcp_congestion(&s).unwrap(), tcp_name(cc));
        }
    }

    #[test]
    fn a_controller_the_kernel_lacks_is_refused_with_the_list() {
        let have = vec!["reno".to_string(), "cubic".to_string()];
        assert!(check_against(CongestionControl::Cubic, &have).is_ok());
        assert!(check_against(CongestionControl::NewReno, &have).is_ok());
        let e = check_against(CongestionControl::Bbr, &have).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"bbr\"") && msg.contains("reno cubic"),
            "{msg}"
        );
        assert!(check_against(CongestionControl::Cubic, &[]).is_err());
    }

    #[test]
    fn unknown_controller_is_named() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = s.as_fd().as_raw_fd();
        let bogus = "qb-no-such-cc";
        // SAFETY: as in set_tcp_congestion.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                bogus.as_ptr().cast(),
                bogus.len() as libc::socklen_t,
            )
        };
        assert_eq!(rc, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOENT)
        );
    }

    #[test]
    fn socket_buffers_are_granted_and_read_back() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (r0, _) = socket_buffers(&s);
        let (r, w) = set_socket_buffers(&s, 4 << 20);
        assert!(r > 0 && w > 0);
        // As root the FORCE options pass rmem_max; otherwise the cap applies.
        if nix_is_root() {
            assert!(r >= 4 << 20, "granted {r}, before {r0}");
        }
    }

    fn nix_is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn fast_start_sets_and_reads_back_the_options() {
        let off = TcpFastStart::default();
        assert_eq!(off, TcpFastStart::new(false, false));
        assert_eq!(
            TcpFastStart::new(true, true).early_data,
            TCP_EARLY_DATA_SIZE
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        off.apply_listener(&l).unwrap();
        assert_eq!(tcp_fast_open(&l).0, Some(0));
        TcpFastStart::new(true, false).apply_listener(&l).unwrap();
        assert_eq!(tcp_fast_open(&l).0, Some(TFO_QUEUE as u32));
        let c = socket2_free_tcp();
        TcpFastStart::new(true, false).apply_connect(&c).unwrap();
        assert_eq!(tcp_fast_open(&c).1, Some(1));
        // A loopback connection without Fast Open: no SYN data.
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(!tcp_syn_data(&s).unwrap());
    }

    /// An unconnected TCP socket (std has none): a raw fd owned here.
    fn socket2_free_tcp() -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) returns a new fd we own, checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    }

    #[test]
    fn known_mtu_fixes_quic_packet_size() {
        let shape = |batches| LinkShape { mtu: 1500, batches };
        let t = Transport {
            cc: CongestionControl::Cubic,
            link: Some(shape(true)),
        };
        assert_eq!(t.quic_udp_payload(), Some(1472));
        assert!(t.quic_gso(), "the user-space link splits batches");
        let kernel = Transport {
            link: Some(shape(false)),
            ..t
        };
        assert_eq!(kernel.quic_udp_payload(), Some(1472));
        assert!(
            !kernel.quic_gso(),
            "a netem qdisc would take a batch as one packet"
        );
        assert_eq!(Transport::default().quic_udp_payload(), None);
        assert!(Transport::default().quic_gso());
    }
}
