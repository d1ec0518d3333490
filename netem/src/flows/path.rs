//! Where a flow's time to its first response byte went, from the link's own
//! timestamps: time on the wire, the server's turns and the client's turns
//! (the critical path of a request/response exchange).
//!
//! The table logs a flow's first packets (when each was offered to the link
//! and delivered out of it) until the first response byte reaches the client.
//! Walking back from that packet: it left the server at `offered`; what the
//! server acted on is the latest client packet delivered to it before then,
//! so the gap between the two is the server's turn; that client packet was
//! in the link from its `offered` to its `delivered`; before it left, the
//! client acted on the latest server packet delivered to it; and so on back
//! to the client's first packet. The pieces add up exactly to the time from
//! the client's first packet to the first response byte.
//!
//! Pure TCP acknowledgements (no payload, no SYN, FIN or RST) are never taken
//! as what an endpoint acted on. QUIC's are encrypted and cannot be told
//! apart: an acknowledgement that reaches the server while it works shifts a
//! few µs from the client's turn to the server's, not a round trip. Meant for
//! lossless links: where a packet of the exchange was lost, the wait for its
//! retransmission counts as the waiting endpoint's turn.

/// Packets logged per flow at most (a handshake and a first response take
/// 5-20; past this the flow has no path).
pub const LOG_MAX: usize = 64;

/// One logged packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogEntry {
    pub from_client: bool,
    pub offered_ns: u64,
    /// First copy out of the link (None: dropped, or not yet).
    pub delivered_ns: Option<u64>,
    /// An endpoint may have acted on it (not a pure TCP acknowledgement).
    pub trigger: bool,
    /// QUIC: a client datagram carrying 0-RTT or 1-RTT (application data may
    /// be in it), or a server datagram carrying 1-RTT.
    pub app: bool,
}

/// A flow's time to its first response byte, split (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResponsePath {
    /// Round trips on the path: the server's turns (a client packet reached
    /// it, then its answer left).
    pub round_trips: u32,
    /// Time the path's packets spent in the link: delay, serialization and
    /// queueing (the configured delay, or a multiple of it, on a quiet link).
    pub wire_ns: u64,
    /// The server's turns: a client packet delivered → its answer offered.
    pub server_ns: u64,
    /// The client's turns: a server packet delivered → its next packet on
    /// the path offered, and its first packet → the path's first.
    pub client_ns: u64,
    /// Packets on the path.
    pub packets: u32,
}

impl ResponsePath {
    /// The whole: the client's first packet → the first response byte.
    pub fn total_ns(&self) -> u64 {
        self.wire_ns + self.server_ns + self.client_ns
    }
}

/// The first response of an encrypted exchange (QUIC, or TLS over TCP),
/// whose request cannot be read: a client packet that may carry the request
/// (QUIC: 0-RTT or 1-RTT; TLS: payload offered at or after `after`, once
/// the server's handshake flight reached the client) reaches the server; the
/// server's answer is every packet that may carry data (QUIC: 1-RTT; TCP:
/// payload) it sends from then until a reaction of the client to anything it
/// sent reaches it (so a HANDSHAKE_DONE or session ticket sent at once and
/// the response a moment later are one answer); the response is the
/// answer's last packet. Returns its delivery time.
pub(super) fn encrypted_response_end(log: &[LogEntry], after: u64) -> Option<u64> {
    // The request may not be in the client's first 0-RTT/1-RTT datagram
    // (some clients wait a round trip more before sending it): the first
    // of them the server answers with 1-RTT is taken.
    log.iter()
        .filter(|e| e.from_client && e.app && e.offered_ns >= after)
        .filter_map(|e| e.delivered_ns)
        .find_map(|req| answer_end(log, req))
}

/// The last datagram of the server's 1-RTT answer to a client datagram
/// delivered at `req` (None: no 1-RTT before the client reacted).
fn answer_end(log: &[LogEntry], req: u64) -> Option<u64> {
    // Anything the server sent after it (a Handshake-space ACK too) can
    // start the client's reaction.
    let first_seen = log
        .iter()
        .filter(|e| !e.from_client && e.offered_ns >= req)
        .filter_map(|e| e.delivered_ns)
        .min()?;
    let reaction = log
        .iter()
        .filter(|e| e.from_client && e.offered_ns >= first_seen)
        .filter_map(|e| e.delivered_ns)
        .min()
        .unwrap_or(u64::MAX);
    log.iter()
        .filter(|e| !e.from_client && e.app && e.offered_ns >= req && e.offered_ns < reaction)
        .filter(|e| e.delivered_ns.is_some())
        .max_by_key(|e| e.offered_ns)
        .and_then(|e| e.delivered_ns)
}

/// The path to the packet delivered to the client at `end_ns` (the first
/// response byte), over `log` in offer order. None when the log does not
/// reach it or the server spoke first.
pub(super) fn response_path(log: &[LogEntry], end_ns: u64) -> Option<ResponsePath> {
    let first = log.first().filter(|e| e.from_client)?;
    let t0 = first.offered_ns;
    let mut e = log
        .iter()
        .find(|e| !e.from_client && e.delivered_ns == Some(end_ns))?;
    let mut p = ResponsePath::default();
    // Each step goes to a packet delivered before the current one left:
    // strictly back in time, so at most log.len() steps.
    for _ in 0..=log.len() {
        let delivered = e.delivered_ns?;
        p.wire_ns += delivered.checked_sub(e.offered_ns)?;
        p.packets += 1;
        let acted_on = log
            .iter()
            .filter(|x| x.from_client != e.from_client && x.trigger)
            .filter(|x| x.delivered_ns.is_some_and(|d| d <= e.offered_ns))
            .max_by_key(|x| x.delivered_ns);
        match acted_on {
            Some(x) => {
                let turn = e.offered_ns - x.delivered_ns?;
                if e.from_client {
                    p.client_ns += turn;
                } else {
                    p.server_ns += turn;
                    p.round_trips += 1;
                }
                e = x;
            }
            None if e.from_client => {
                p.client_ns += e.offered_ns.checked_sub(t0)?;
                return Some(p);
            }
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn up(offered: u64, delivered: u64) -> LogEntry {
        LogEntry {
            from_client: true,
            offered_ns: offered,
            delivered_ns: Some(delivered),
            trigger: true,
            app: false,
        }
    }

    fn app(mut e: LogEntry) -> LogEntry {
        e.app = true;
        e
    }

    fn down(offered: u64, delivered: u64) -> LogEntry {
        LogEntry {
            from_client: false,
            ..up(offered, delivered)
        }
    }

    fn ack(mut e: LogEntry) -> LogEntry {
        e.trigger = false;
        e
    }

    #[test]
    fn tcp_request_after_the_handshake_is_two_round_trips() {
        // delay 10 ms each way; the server turns in 0.1 ms, then 2 ms; the
        // client acks the SYN-ACK at once and requests 0.3 ms later.
        let log = [
            up(0, 10 * MS),                             // SYN
            down(10 * MS + 100_000, 20 * MS + 100_000), // SYN-ACK
            ack(up(20 * MS + 110_000, 30 * MS + 110_000)),
            up(20 * MS + 400_000, 30 * MS + 400_000), // request
            ack(down(30 * MS + 500_000, 40 * MS + 500_000)),
            down(32 * MS + 400_000, 42 * MS + 400_000), // response
        ];
        let p = response_path(&log, 42 * MS + 400_000).unwrap();
        assert_eq!(p.round_trips, 2);
        assert_eq!(p.wire_ns, 40 * MS);
        assert_eq!(p.server_ns, 100_000 + 2 * MS);
        assert_eq!(p.client_ns, 300_000);
        assert_eq!(p.packets, 4);
        assert_eq!(p.total_ns(), 42 * MS + 400_000);
    }

    #[test]
    fn zero_rtt_is_one_round_trip_and_the_clients_own_start() {
        // Initial, then the 0-RTT request 0.2 ms later; the server answers
        // the request 1.5 ms after it arrives.
        let log = [
            up(0, 10 * MS),
            up(200_000, 10 * MS + 200_000),
            down(10 * MS + 300_000, 20 * MS + 300_000), // server's handshake
            down(11 * MS + 700_000, 21 * MS + 700_000), // response
        ];
        let p = response_path(&log, 21 * MS + 700_000).unwrap();
        assert_eq!(p.round_trips, 1);
        assert_eq!(p.wire_ns, 20 * MS);
        assert_eq!(p.server_ns, 1_500_000);
        assert_eq!(p.client_ns, 200_000);
        assert_eq!(p.total_ns(), 21 * MS + 700_000);
    }

    #[test]
    fn no_path_without_the_end_or_the_clients_first_packet() {
        let log = [up(0, 10 * MS), down(11 * MS, 21 * MS)];
        assert!(
            response_path(&log, 22 * MS).is_none(),
            "no packet delivered then"
        );
        assert!(
            response_path(&log[1..], 21 * MS).is_none(),
            "the server spoke first"
        );
        assert!(response_path(&[], 1).is_none());
        // A server packet sent before anything reached the server.
        let log = [up(0, 10 * MS), down(5 * MS, 15 * MS)];
        assert!(response_path(&log, 15 * MS).is_none());
    }

    #[test]
    fn a_lost_packet_is_never_on_the_path() {
        // The first request is lost; the client resends it after 200 ms.
        let mut lost = up(20 * MS, 0);
        lost.delivered_ns = None;
        let log = [
            up(0, 10 * MS),
            down(10 * MS, 20 * MS),
            lost,
            up(220 * MS, 230 * MS),
            down(231 * MS, 241 * MS),
        ];
        let p = response_path(&log, 241 * MS).unwrap();
        assert_eq!(p.round_trips, 2);
        assert_eq!(p.wire_ns, 40 * MS);
        assert_eq!(
            p.client_ns,
            200 * MS,
            "the wait for the resend is the client's"
        );
        assert_eq!(p.total_ns(), 241 * MS);
    }

    #[test]
    fn quic_response_is_the_servers_answer_to_the_request() {
        // Cold: Initial; the server's Initial+Handshake (and 0.5-RTT 1-RTT);
        // the client's Finished + request (1-RTT); the server's
        // HANDSHAKE_DONE at once and the response 1.2 ms later; then the
        // client's ACK and more from the server.
        let log = [
            up(0, 10 * MS),
            app(down(10 * MS + 500_000, 20 * MS + 500_000)), // server flight with 0.5-RTT
            app(up(21 * MS, 31 * MS)),                       // Finished + request
            app(down(31 * MS + 100_000, 41 * MS + 100_000)), // HANDSHAKE_DONE
            app(down(32 * MS + 300_000, 42 * MS + 300_000)), // response
            app(up(41 * MS + 200_000, 51 * MS + 200_000)),   // ACK of HANDSHAKE_DONE
            app(down(52 * MS, 62 * MS)),                     // later
        ];
        let end = encrypted_response_end(&log, 0).unwrap();
        assert_eq!(end, 42 * MS + 300_000);
        let p = response_path(&log, end).unwrap();
        assert_eq!(p.round_trips, 2);
        assert_eq!(p.wire_ns, 40 * MS);
        assert_eq!(p.server_ns, 500_000 + 1_300_000);
        assert_eq!(p.client_ns, 500_000);
        // 0-RTT: the request leaves with the Initial.
        let log = [
            up(0, 10 * MS),
            app(up(100_000, 10 * MS + 100_000)),
            app(down(11 * MS, 21 * MS)),
        ];
        let end = encrypted_response_end(&log, 0).unwrap();
        assert_eq!(response_path(&log, end).unwrap().round_trips, 1);
        // No request yet, or no answer: no end.
        assert!(encrypted_response_end(&log[..1], 0).is_none());
        assert!(encrypted_response_end(&log[..2], 0).is_none());
    }

    #[test]
    fn a_request_held_a_round_trip_more_is_found() {
        // The client's first 1-RTT datagram carries no request; the server
        // answers it in the Handshake space only; the request leaves after
        // that answer arrives, and the response follows it.
        let log = [
            up(0, 10 * MS),
            app(down(10 * MS + 400_000, 20 * MS + 400_000)),
            app(up(20 * MS + 900_000, 30 * MS + 800_000)),
            down(31 * MS + 600_000, 41 * MS + 600_000), // Handshake ACK
            app(up(42 * MS, 52 * MS)),                  // the request
            app(down(54 * MS, 64 * MS)),                // the response
        ];
        let end = encrypted_response_end(&log, 0).unwrap();
        assert_eq!(end, 64 * MS);
        let p = response_path(&log, end).unwrap();
        assert_eq!(p.round_trips, 3);
        assert_eq!(p.total_ns(), 64 * MS);
    }
}
