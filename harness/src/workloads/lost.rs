//! The handshake's lost-flight modes: the same fresh connections as `cold`,
//! on a link whose `drop-nth 1` (see `quicbench_netem::chosen`) drops one
//! chosen packet of each measured connection:
//!
//! * `first-flight-lost`: the client's first packet (TCP SYN; QUIC the first
//!   datagram, the Initial with whatever is coalesced with it) — `drop-nth 1`
//!   on the up direction;
//! * `server-flight-lost`: the server's first packet (SYN-ACK; the first
//!   datagram of the server's Initial/Handshake flight) — on the down direction.
//!
//! Theory: the sender's first retransmission timer plus the protocol's cold
//! round trips (docs/methodology.md, "Handshake with a lost flight").

use std::time::Duration;

use quicbench_netem::LinkSpec;
use quicbench_wire::transport::{quic_first_pto, QUIC_INITIAL_RTT, TCP_INITIAL_RTO};
use quicbench_wire::Protocol;

/// The client's first packet of each measured connection is dropped.
pub const FIRST_FLIGHT_LOST: &str = "first-flight-lost";
/// The server's first packet of each measured connection is dropped.
pub const SERVER_FLIGHT_LOST: &str = "server-flight-lost";

/// Theory keys these modes add to `out.theory`.
pub const THEORY_TTFB_MS: &str = "ttfb_ms";
pub const THEORY_TIMER_MS: &str = "retransmit_timer_ms";

/// Which side's first packet a mode drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    Client,
    Server,
}

impl Lost {
    /// The lost-flight mode `mode` names (None: `cold`, `resumed`, anything else).
    pub fn of(mode: &str) -> Option<Lost> {
        match mode {
            FIRST_FLIGHT_LOST => Some(Lost::Client),
            SERVER_FLIGHT_LOST => Some(Lost::Server),
            _ => None,
        }
    }

    /// The cell's link for this mode: `drop-nth 1` added on the side whose
    /// first packet is lost (up: client → server). A direction that has its
    /// own `drop-nth` already keeps it (the matrix's link then decides).
    pub fn link(self, up: &LinkSpec, down: &LinkSpec) -> (LinkSpec, LinkSpec) {
        let (mut up, mut down) = (up.clone(), down.clone());
        let spec = match self {
            Lost::Client => &mut up,
            Lost::Server => &mut down,
        };
        if spec.drop_nth.is_empty() {
            spec.drop_nth = vec![1];
        }
        (up, down)
    }
}

/// The timer that resends the lost packet: TCP's initial RTO (SYN or
/// SYN-ACK, the same 1 s either way: whichever end's timer fires first, the
/// client's SYN retransmission also makes the server resend its SYN-ACK), or
/// quinn's first PTO from its configured initial RTT (client or server: each
/// has no RTT sample yet).
pub fn timer(p: Protocol) -> Option<Duration> {
    match p {
        Protocol::Udp => None,
        Protocol::H3 => Some(quic_first_pto(QUIC_INITIAL_RTT)),
        _ => Some(TCP_INITIAL_RTO),
    }
}

/// Round trips after the timer: the protocol's cold round trips (the lost
/// packet costs the timer, and its retransmission makes the round trip it
/// would have made), plus one when the server's flight is lost, for QUIC and
/// for TLS over TCP.
///
/// TCP: both ends' 1 s timers fire, the client's SYN retransmission makes
/// the server send its SYN-ACK a third time, and Linux starts a connection
/// whose SYN-ACK went more than once with a congestion window of one segment
/// (`tcp_init_transfer`, RFC 5681 §3.1; the server's TCP_INFO reads
/// `total_retrans` 2): the TLS server flight, two segments or more, takes two
/// round trips. A cleartext response of one segment does not notice.
///
/// QUIC: the server's flight spans several datagrams; the client discards
/// the Handshake packets that reach it before the Initial they follow (no
/// Handshake keys yet: quinn-proto `unprotect_header`), and the server's PTO probe resends only the oldest in-flight
/// packet's data, the Initial (quinn-proto `PacketSpace::maybe_queue_probe`).
/// The Handshake data go again when the client's ACK of the probe gives the
/// server its first RTT sample: the Handshake space's PTO, now a few RTTs
/// from the original send, has expired — one round trip after the probe.
pub fn round_trips(lost: Lost, p: Protocol) -> Option<f64> {
    let k = p.theory_ttfb_rtt(false)?;
    Some(match lost {
        Lost::Server if p == Protocol::H3 || p.uses_tls() => k + 1.0,
        _ => k,
    })
}

/// Theory of a lost-flight connection: (ttfb_ms, timer_ms) = (timer + k ×
/// RTT, timer), k from [`round_trips`].
pub fn theory(lost: Lost, p: Protocol, rtt_ms: f64) -> Option<(f64, f64)> {
    let t = timer(p)?.as_secs_f64() * 1e3;
    let k = round_trips(lost, p)?;
    Some((t + k * rtt_ms, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_links() {
        assert_eq!(Lost::of("first-flight-lost"), Some(Lost::Client));
        assert_eq!(Lost::of("server-flight-lost"), Some(Lost::Server));
        assert_eq!(Lost::of("cold"), None);
        let l: LinkSpec = "delay 10ms".parse().unwrap();
        let (up, down) = Lost::Client.link(&l, &l);
        assert_eq!(
            (up.to_string().as_str(), down.to_string().as_str()),
            ("delay 10ms drop-nth 1", "delay 10ms")
        );
        let (up, down) = Lost::Server.link(&l, &l);
        assert_eq!(
            (up.to_string().as_str(), down.to_string().as_str()),
            ("delay 10ms", "delay 10ms drop-nth 1")
        );
        let own: LinkSpec = "delay 10ms drop-nth 2".parse().unwrap();
        assert_eq!(Lost::Client.link(&own, &l).0.drop_nth, vec![2]);
    }

    #[test]
    fn theory_is_the_timer_plus_the_cold_round_trips() {
        let (c, s) = (Lost::Client, Lost::Server);
        assert_eq!(theory(c, Protocol::H2, 20.0), Some((1060.0, 1000.0)));
        assert_eq!(theory(s, Protocol::H2, 20.0), Some((1080.0, 1000.0)));
        assert_eq!(theory(s, Protocol::H11, 20.0), Some((1040.0, 1000.0)));
        assert_eq!(theory(c, Protocol::H11, 20.0), Some((1040.0, 1000.0)));
        assert_eq!(theory(c, Protocol::H3, 20.0), Some((1039.0, 999.0)));
        assert_eq!(theory(s, Protocol::H3, 20.0), Some((1059.0, 999.0)));
        assert_eq!(theory(c, Protocol::Udp, 20.0), None);
    }
}
