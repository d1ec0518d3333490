//! Chosen drops (`drop-nth`): drop the N-th packet of every flow, deterministically.
//!
//! Sans-IO like [`crate::model`], which owns one [`ChosenDrops`] per direction and asks
//! it first: a packet dropped here never reaches the random impairments (it draws
//! nothing from their RNG and is counted `dropped_chosen`, not `dropped_loss`).
//!
//! **Flows.** A flow is a TCP or UDP 5-tuple as the packet carries it: protocol, source
//! address:port, destination address:port ([`crate::flows::parse`] reads them). One
//! direction's model sees one side's packets, so the index is "the N-th packet this
//! side sent in this flow": `drop-nth 1` on the up spec drops each client's SYN or
//! first QUIC datagram (an Initial, maybe coalesced), on the down spec each server's
//! SYN-ACK or first datagram. Indices count every packet offered, dropped ones
//! included: a retransmission is a later index and passes unless chosen too.
//! Packets that are not TCP/UDP (ICMP, neighbour discovery), IP fragments and
//! malformed packets are neither counted nor dropped.
//!
//! **Arming.** Counting always runs; dropping only while armed (the default). A
//! harness disarms around packets it does not want hit (a cell's warm-up
//! connections): a flow first seen while disarmed keeps its true indices, so
//! arming later never drops its "first" packet by mistake.
//!
//! **Bounds.** At most [`MAX_FLOWS`] flows are remembered; packets of newer flows are
//! counted in [`ChosenDrops::untracked`] and never dropped (forgetting a flow would
//! drop its next packet again).

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::flows::{self, Proto};

/// Flows remembered per direction at most.
pub const MAX_FLOWS: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
}

/// One direction's chosen drops (see the module doc).
#[derive(Debug, Clone)]
pub struct ChosenDrops {
    /// Sorted, distinct, from 1.
    indices: Vec<u32>,
    last: u32,
    seen: HashMap<Key, u32>,
    armed: bool,
    untracked: u64,
}

impl ChosenDrops {
    /// Chosen drops for `indices` (1-based; any order, repeats ignored, 0 never
    /// matches). None for an empty list: nothing to decide.
    pub fn new(indices: &[u32]) -> Option<ChosenDrops> {
        let mut v: Vec<u32> = indices.iter().copied().filter(|n| *n > 0).collect();
        v.sort_unstable();
        v.dedup();
        let last = *v.last()?;
        Some(ChosenDrops {
            indices: v,
            last,
            seen: HashMap::new(),
            armed: true,
            untracked: 0,
        })
    }

    /// Count `pkt` in its flow; true when it is to be dropped.
    pub fn decide(&mut self, pkt: &[u8]) -> bool {
        let Some(m) = flows::parse(pkt) else {
            return false;
        };
        let key = Key {
            proto: m.proto,
            src: m.src,
            dst: m.dst,
        };
        let room = self.seen.len() < MAX_FLOWS;
        let n = match self.seen.get_mut(&key) {
            Some(n) => n,
            None if room => self.seen.entry(key).or_insert(0),
            None => {
                self.untracked += 1;
                return false;
            }
        };
        // Past the last index the count stops: nothing more can match.
        if *n > self.last {
            return false;
        }
        *n += 1;
        self.armed && self.indices.binary_search(n).is_ok()
    }

    /// Drop (true) or only count (false) from now on.
    pub fn set_armed(&mut self, armed: bool) {
        self.armed = armed;
    }

    pub fn armed(&self) -> bool {
        self.armed
    }

    /// The indices, sorted.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// Flows seen so far (at most [`MAX_FLOWS`]).
    pub fn flows(&self) -> usize {
        self.seen.len()
    }

    /// Packets of flows beyond [`MAX_FLOWS`] (counted, never dropped).
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{c6, l4, s6, v4, v6, C4, S4};

    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;

    /// A client's TCP segment (v4) from `port` to the server's 443.
    fn tcp_up(port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        v4(TCP, C4, S4, l4(TCP, port, 443, seq, flags, payload))
    }
    /// The server's answer on the same flow.
    fn tcp_down(port: u16, seq: u32, flags: u8) -> Vec<u8> {
        v4(TCP, S4, C4, l4(TCP, 443, port, seq, flags, &[]))
    }
    /// A QUIC Initial (long header, v1) from the client, v6.
    fn quic_initial(port: u16) -> Vec<u8> {
        let mut p = vec![0xc0, 0, 0, 0, 1, 8];
        p.extend_from_slice(&[7; 8]);
        p.resize(1200, 0);
        v6(UDP, c6(), s6(), l4(UDP, port, 443, 0, 0, &p))
    }
    fn quic_short(port: u16) -> Vec<u8> {
        v6(UDP, c6(), s6(), l4(UDP, port, 443, 0, 0, &[0x40, 1, 2, 3]))
    }

    fn verdicts(c: &mut ChosenDrops, pkts: &[Vec<u8>]) -> Vec<bool> {
        pkts.iter().map(|p| c.decide(p)).collect()
    }

    #[test]
    fn empty_or_zero_lists_decide_nothing() {
        assert!(ChosenDrops::new(&[]).is_none());
        assert!(ChosenDrops::new(&[0]).is_none());
        let c = ChosenDrops::new(&[3, 1, 3, 0]).unwrap();
        assert_eq!(c.indices(), &[1, 3]);
    }

    #[test]
    fn the_first_syn_of_each_flow_and_not_its_retransmission() {
        let mut c = ChosenDrops::new(&[1]).unwrap();
        let pkts = [
            tcp_up(40000, 100, SYN, &[]),      // flow A: SYN, dropped
            tcp_up(40000, 100, SYN, &[]),      // flow A: the SYN again (after 1 s): passes
            tcp_up(40000, 101, ACK, &[]),      // flow A: ACK
            tcp_up(40000, 101, ACK, b"GET /"), // flow A: request
            tcp_up(40001, 500, SYN, &[]),      // flow B: its own first packet
            tcp_up(40000, 106, ACK, &[]),      // flow A again
        ];
        assert_eq!(
            verdicts(&mut c, &pkts),
            [true, false, false, false, true, false]
        );
        assert_eq!(c.flows(), 2);
    }

    #[test]
    fn directions_are_separate_flows() {
        // One model per direction in the link; here one table sees both to show that
        // the reverse tuple is another flow: the SYN-ACK is the server's first packet.
        let mut c = ChosenDrops::new(&[1]).unwrap();
        assert!(c.decide(&tcp_up(40000, 100, SYN, &[])));
        assert!(c.decide(&tcp_down(40000, 9000, SYN | ACK)));
        assert!(!c.decide(&tcp_down(40000, 9000, SYN | ACK)));
        assert!(!c.decide(&tcp_up(40000, 100, SYN, &[])));
    }

    #[test]
    fn second_and_later_indices() {
        let mut c = ChosenDrops::new(&[2, 4]).unwrap();
        let syn = tcp_up(40000, 100, SYN, &[]);
        let ack = tcp_up(40000, 101, ACK, &[]);
        let pkts = [
            syn.clone(),
            ack.clone(),
            ack.clone(),
            ack.clone(),
            ack.clone(),
        ];
        assert_eq!(verdicts(&mut c, &pkts), [false, true, false, true, false]);
        // Indices count the dropped packets too: 1,2 dropped, the retransmission
        // of the first (index 3) passes.
        let mut c = ChosenDrops::new(&[1, 2]).unwrap();
        assert_eq!(
            verdicts(&mut c, &[syn.clone(), syn.clone(), syn.clone(), ack]),
            [true, true, false, false]
        );
    }

    #[test]
    fn quic_first_datagram_of_each_flow_v6() {
        let mut c = ChosenDrops::new(&[1]).unwrap();
        let pkts = [
            quic_initial(50000), // the client's first flight: dropped
            quic_initial(50000), // its PTO retransmission: passes
            quic_short(50000),
            quic_initial(50001), // a second connection (new socket): dropped
            quic_short(50001),
        ];
        assert_eq!(verdicts(&mut c, &pkts), [true, false, false, true, false]);
    }

    #[test]
    fn non_flows_are_neither_counted_nor_dropped() {
        let mut c = ChosenDrops::new(&[1]).unwrap();
        let icmp = v4(1, C4, S4, vec![8, 0, 0, 0, 0, 0, 0, 0]);
        let mut fragment = tcp_up(40000, 1, SYN, &[]);
        fragment[6] = 0x20; // more fragments
        for p in [icmp, fragment, vec![], vec![0x45, 0, 0]] {
            assert!(!c.decide(&p));
        }
        assert_eq!(c.flows(), 0);
        // The flow's real first packet is still its first.
        assert!(c.decide(&tcp_up(40000, 100, SYN, &[])));
    }

    #[test]
    fn disarmed_counts_without_dropping() {
        let mut c = ChosenDrops::new(&[1]).unwrap();
        c.set_armed(false);
        assert!(!c.decide(&tcp_up(40000, 100, SYN, &[]))); // warm-up flow
        c.set_armed(true);
        assert!(c.armed());
        // The warm-up flow's later packets are not its first: they pass.
        assert!(!c.decide(&tcp_up(40000, 101, ACK, &[])));
        // A flow opened after arming loses its first packet.
        assert!(c.decide(&tcp_up(40001, 100, SYN, &[])));
    }

    #[test]
    fn flows_beyond_the_bound_pass_and_are_counted() {
        let mut c = ChosenDrops::new(&[1]).unwrap();
        for i in 0..MAX_FLOWS {
            let port = 1024 + (i % 60_000) as u16;
            let dport = 1 + (i / 60_000) as u16;
            let p = v4(UDP, C4, S4, l4(UDP, port, dport, 0, 0, b"x"));
            assert!(c.decide(&p));
        }
        let p = v4(UDP, C4, S4, l4(UDP, 9, 9, 0, 0, b"x"));
        assert!(!c.decide(&p));
        assert_eq!((c.flows(), c.untracked()), (MAX_FLOWS, 1));
    }
}
