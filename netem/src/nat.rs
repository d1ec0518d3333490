//! NAT rebinding: what a NAT in front of the client does to a live flow when its
//! mapping changes (new source port, or new source address).
//!
//! The NAT sits at the client's edge of the link. Until the first rebind it is
//! transparent (the server sees the client's own addresses). After a rebind,
//! every TCP/UDP flow leaving the client gets a *new* external binding (created
//! by its next packet up, endpoint-independent: keyed by the client's
//! protocol, address and port), and all old mappings are forgotten: packets from
//! the server to an old binding are dropped, as a real NAT drops them.
//!
//! * Port rebinding: external port = `1 + (port - 1 + g * 7919) mod 65535` for
//!   the g-th port rebind (a bijection, so flows never collide), address kept.
//! * Address rebinding: external address = the a-th block of [`NAT_V4_BASE`]
//!   (198.19.0.0/16) / [`NAT_V6_BASE`] (2001:2:0:2::/64) addresses, one per
//!   client address; port kept (unless port rebinds happened as well).
//!
//! Only TCP and UDP are translated (IPv4 with options, IPv6 when TCP/UDP is the
//! first next header); fragments, ICMP and anything else pass unchanged.
//! Checksums are fixed incrementally (RFC 1624): the IPv4 header checksum and
//! the TCP/UDP checksums over the pseudo-header; a zero IPv4 UDP checksum
//! ("none") stays zero.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::csum::fold;
pub use crate::csum::{csum_update, ones_sum};
use crate::ip::{PROTO_TCP, PROTO_UDP};

/// First address of the pool external IPv4 bindings come from (RFC 2544 range,
/// outside the client's and server's own addresses).
pub const NAT_V4_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
/// First address of the pool external IPv6 bindings come from (RFC 5180 range).
pub const NAT_V6_BASE: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 0);

const PORT_STEP: u32 = 7919;

/// What changes at a rebind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebindKind {
    /// The client's source port changes (a NAT rebinding).
    Port,
    /// The client's source address changes (a new network, or a NAT with a pool).
    Address,
}

/// When rebinds happen, relative to the link's clock origin (`Link::build`):
/// first at `first_at`, then every `every` (if set), at most `count` times (if
/// set; one event when `every` is not set).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatSchedule {
    pub kind: RebindKind,
    pub first_at: Duration,
    pub every: Option<Duration>,
    pub count: Option<u32>,
}

impl NatSchedule {
    /// One rebind at `at`.
    pub fn once(kind: RebindKind, at: Duration) -> Self {
        NatSchedule {
            kind,
            first_at: at,
            every: None,
            count: None,
        }
    }

    /// Time (ns from the origin) of the `k`-th event (0-based), if there is one.
    pub fn event_ns(&self, k: u32) -> Option<u64> {
        let first = self.first_at.as_nanos() as u64;
        match self.every {
            None => (k == 0).then_some(first),
            Some(every) => {
                if self.count.is_some_and(|c| k >= c) {
                    return None;
                }
                let every = (every.as_nanos() as u64).max(1);
                first.checked_add(every.checked_mul(k as u64)?)
            }
        }
    }
}

/// The external binding of the client's first address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binding {
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    /// Added (mod 65535) to the client's ports; 0 before any port rebind.
    pub port_shift: u16,
}

/// One rebind, as the coordinator needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebindEvent {
    /// Link clock (ns since `Link::build`).
    pub at_ns: u64,
    pub kind: RebindKind,
    /// 1 for the first rebind, 2 for the second...
    pub generation: u32,
    /// Whether it came from the schedule (else from `rebind_now`).
    pub scheduled: bool,
    pub old: Binding,
    pub new: Binding,
    /// Mappings dropped by this rebind (flows seen since the previous one).
    pub flows_forgotten: usize,
}

/// NAT counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatCounters {
    pub translated_up: u64,
    pub translated_down: u64,
    /// Packets from the server to a binding that no longer (or not yet) exists.
    pub dropped_no_mapping: u64,
    pub rebinds: u64,
}

/// What to do with a packet going down after NAT lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownAction {
    /// Unchanged (NAT transparent, or not TCP/UDP).
    Pass,
    Translated,
    /// No mapping: a real NAT drops it.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Endpoint {
    proto: u8,
    addr: IpAddr,
    port: u16,
}

/// NAT state (pure: no I/O, no clock).
#[derive(Debug, Clone)]
pub struct Nat {
    client_v4: Vec<Ipv4Addr>,
    client_v6: Vec<Ipv6Addr>,
    addr_gen: u32,
    port_gen: u32,
    generation: u32,
    /// internal -> external
    map: HashMap<Endpoint, Endpoint>,
    /// external -> internal
    rev: HashMap<Endpoint, Endpoint>,
    events: Vec<RebindEvent>,
    counters: NatCounters,
}

impl Nat {
    /// A transparent NAT for a client owning these addresses (index i of each
    /// list is "client address i").
    pub fn new(client_v4: Vec<Ipv4Addr>, client_v6: Vec<Ipv6Addr>) -> Nat {
        Nat {
            client_v4,
            client_v6,
            addr_gen: 0,
            port_gen: 0,
            generation: 0,
            map: HashMap::new(),
            rev: HashMap::new(),
            events: Vec::new(),
            counters: NatCounters::default(),
        }
    }

    pub fn events(&self) -> &[RebindEvent] {
        &self.events
    }

    pub fn counters(&self) -> &NatCounters {
        &self.counters
    }

    /// Current binding of client address 0.
    pub fn binding(&self) -> Binding {
        Binding {
            v4: self.v4_for(0).unwrap_or(Ipv4Addr::UNSPECIFIED),
            v6: self.v6_for(0).unwrap_or(Ipv6Addr::UNSPECIFIED),
            port_shift: port_shift(self.port_gen),
        }
    }

    /// Change the binding now (`at_ns` on the link clock): all flows get new
    /// external endpoints with their next packet up; old ones are forgotten.
    pub fn rebind(&mut self, kind: RebindKind, at_ns: u64, scheduled: bool) -> RebindEvent {
        let old = self.binding();
        match kind {
            RebindKind::Port => self.port_gen += 1,
            RebindKind::Address => self.addr_gen += 1,
        }
        self.generation += 1;
        let flows_forgotten = self.map.len();
        self.map.clear();
        self.rev.clear();
        let ev = RebindEvent {
            at_ns,
            kind,
            generation: self.generation,
            scheduled,
            old,
            new: self.binding(),
            flows_forgotten,
        };
        self.counters.rebinds += 1;
        self.events.push(ev.clone());
        ev
    }

    /// Port rebinds so far.
    pub(crate) fn port_generation(&self) -> u32 {
        self.port_gen
    }

    /// How many addresses of each family the client has.
    pub(crate) fn client_addr_count(&self) -> (usize, usize) {
        (self.client_v4.len(), self.client_v6.len())
    }

    /// Client address i and its current external address (IPv4).
    pub(crate) fn v4_binding(&self, i: usize) -> Option<(Ipv4Addr, Ipv4Addr)> {
        Some((*self.client_v4.get(i)?, self.v4_for(i)?))
    }

    /// Client address i and its current external address (IPv6).
    pub(crate) fn v6_binding(&self, i: usize) -> Option<(Ipv6Addr, Ipv6Addr)> {
        Some((*self.client_v6.get(i)?, self.v6_for(i)?))
    }

    /// Where the flow state lives outside this struct (the kernel backend's
    /// conntrack): the number of flows the last rebind forgot.
    pub(crate) fn set_last_flows_forgotten(&mut self, n: usize) {
        if let Some(ev) = self.events.last_mut() {
            ev.flows_forgotten = n;
        }
    }

    /// The kernel backend counts in nftables: its figures replace these.
    pub(crate) fn set_counters(&mut self, c: NatCounters) {
        self.counters = c;
    }

    fn v4_for(&self, i: usize) -> Option<Ipv4Addr> {
        let own = *self.client_v4.get(i)?;
        if self.addr_gen == 0 {
            return Some(own);
        }
        let n = self.client_v4.len() as u64;
        let k = ((self.addr_gen as u64 - 1) * n + i as u64) % 65_534 + 1;
        Some(Ipv4Addr::from(u32::from(NAT_V4_BASE) + k as u32))
    }

    fn v6_for(&self, i: usize) -> Option<Ipv6Addr> {
        let own = *self.client_v6.get(i)?;
        if self.addr_gen == 0 {
            return Some(own);
        }
        let n = self.client_v6.len() as u128;
        let k = ((self.addr_gen as u128 - 1) * n + i as u128) % (1 << 32) + 1;
        Some(Ipv6Addr::from(u128::from(NAT_V6_BASE) + k))
    }

    fn external(&self, int: Endpoint) -> Option<Endpoint> {
        let addr = match int.addr {
            IpAddr::V4(a) => IpAddr::V4(self.v4_for(self.client_v4.iter().position(|c| *c == a)?)?),
            IpAddr::V6(a) => IpAddr::V6(self.v6_for(self.client_v6.iter().position(|c| *c == a)?)?),
        };
        let port = if self.port_gen == 0 || int.port == 0 {
            int.port
        } else {
            (1 + (int.port as u32 - 1 + port_shift(self.port_gen) as u32) % 65_535) as u16
        };
        Some(Endpoint {
            proto: int.proto,
            addr,
            port,
        })
    }

    /// Translate a packet going up (client -> server) in place. Returns whether
    /// it was rewritten.
    pub fn translate_up(&mut self, pkt: &mut [u8]) -> bool {
        if self.generation == 0 {
            return false;
        }
        let Some(h) = parse(pkt) else { return false };
        let int = Endpoint {
            proto: h.proto,
            addr: h.src,
            port: h.sport,
        };
        let ext = match self.map.get(&int) {
            Some(e) => *e,
            None => {
                let Some(e) = self.external(int) else {
                    return false;
                };
                self.map.insert(int, e);
                self.rev.insert(e, int);
                e
            }
        };
        rewrite(pkt, &h, Side::Src, ext.addr, ext.port);
        self.counters.translated_up += 1;
        true
    }

    /// The client-side endpoint the NAT maps the external `ext` of protocol
    /// `proto` (6 TCP, 17 UDP) back to: itself while the NAT is transparent,
    /// None when a rebind forgot it (a packet to it will be dropped). Read
    /// only: for observers such as the flow table.
    pub fn internal_of(&self, proto: u8, ext: SocketAddr) -> Option<SocketAddr> {
        if self.generation == 0 {
            return Some(ext);
        }
        let int = self.rev.get(&Endpoint {
            proto,
            addr: ext.ip(),
            port: ext.port(),
        })?;
        Some(SocketAddr::new(int.addr, int.port))
    }

    /// Translate a packet going down (server -> client) in place.
    pub fn translate_down(&mut self, pkt: &mut [u8]) -> DownAction {
        if self.generation == 0 {
            return DownAction::Pass;
        }
        let Some(h) = parse(pkt) else {
            return DownAction::Pass;
        };
        let ext = Endpoint {
            proto: h.proto,
            addr: h.dst,
            port: h.dport,
        };
        match self.rev.get(&ext) {
            Some(int) => {
                let int = *int;
                rewrite(pkt, &h, Side::Dst, int.addr, int.port);
                self.counters.translated_down += 1;
                DownAction::Translated
            }
            None => {
                self.counters.dropped_no_mapping += 1;
                DownAction::Drop
            }
        }
    }
}

fn port_shift(port_gen: u32) -> u16 {
    ((port_gen as u64 * PORT_STEP as u64) % 65_535) as u16
}

/// The parts of a TCP/UDP packet the NAT looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Header {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
}

/// Parse an IPv4/IPv6 TCP/UDP packet (not a fragment); `None` for anything else.
pub fn parse(pkt: &[u8]) -> Option<L4Header> {
    let v = pkt.first()? >> 4;
    let (proto, src, dst, l4) = match v {
        4 => {
            if pkt.len() < 20 {
                return None;
            }
            let ihl = (pkt[0] & 0x0f) as usize * 4;
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
            // MF set or a non-zero offset: ports are not (all) here.
            if ihl < 20 || frag & 0x3fff != 0 {
                return None;
            }
            let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            (pkt[9], IpAddr::V4(src), IpAddr::V4(dst), ihl)
        }
        6 => {
            if pkt.len() < 40 {
                return None;
            }
            let src: [u8; 16] = pkt[8..24].try_into().ok()?;
            let dst: [u8; 16] = pkt[24..40].try_into().ok()?;
            (pkt[6], IpAddr::V6(src.into()), IpAddr::V6(dst.into()), 40)
        }
        _ => return None,
    };
    let min = match proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => return None,
    };
    if pkt.len() < l4 + min {
        return None;
    }
    Some(L4Header {
        proto,
        src,
        dst,
        sport: u16::from_be_bytes([pkt[l4], pkt[l4 + 1]]),
        dport: u16::from_be_bytes([pkt[l4 + 2], pkt[l4 + 3]]),
        l4,
    })
}

#[derive(Clone, Copy)]
enum Side {
    Src,
    Dst,
}

/// Replace the source or destination address and port, fixing checksums.
fn rewrite(pkt: &mut [u8], h: &L4Header, side: Side, addr: IpAddr, port: u16) {
    let l4 = h.l4;
    let csum_off = l4 + if h.proto == PROTO_TCP { 16 } else { 6 };
    let (addr_off, port_off) = match (side, addr) {
        (Side::Src, IpAddr::V4(_)) => (12, l4),
        (Side::Dst, IpAddr::V4(_)) => (16, l4 + 2),
        (Side::Src, IpAddr::V6(_)) => (8, l4),
        (Side::Dst, IpAddr::V6(_)) => (24, l4 + 2),
    };
    let new_addr: Vec<u8> = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let alen = new_addr.len();
    let old_addr = pkt[addr_off..addr_off + alen].to_vec();
    let old_port = [pkt[port_off], pkt[port_off + 1]];
    let new_port = port.to_be_bytes();

    // The L4 checksum covers the pseudo-header (addresses) and the ports.
    let old_l4 = u16::from_be_bytes([pkt[csum_off], pkt[csum_off + 1]]);
    let udp_v4_none = h.proto == PROTO_UDP && matches!(addr, IpAddr::V4(_)) && old_l4 == 0;
    if !udp_v4_none {
        let mut c = csum_update(old_l4, &old_addr, &new_addr);
        c = csum_update(c, &old_port, &new_port);
        if h.proto == PROTO_UDP && c == 0 {
            c = 0xffff; // 0 means "no checksum" in UDP
        }
        pkt[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
    }
    if addr.is_ipv4() {
        let old_ip = u16::from_be_bytes([pkt[10], pkt[11]]);
        let c = csum_update(old_ip, &old_addr, &new_addr);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    pkt[addr_off..addr_off + alen].copy_from_slice(&new_addr);
    pkt[port_off..port_off + 2].copy_from_slice(&new_port);
}

/// Whether the IPv4 header checksum and the TCP/UDP checksum of `pkt` verify
/// (computed from scratch; for tests and debugging).
pub fn checksums_ok(pkt: &[u8]) -> bool {
    let Some(h) = parse(pkt) else { return false };
    let l4 = &pkt[h.l4..];
    let mut sum = match (h.src, h.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ihl = h.l4;
            if fold(ones_sum(&pkt[..ihl])) != 0xffff {
                return false;
            }
            let total = u16::from_be_bytes([pkt[2], pkt[3]]) as usize;
            let l4len = total.saturating_sub(ihl).min(l4.len());
            if h.proto == PROTO_UDP && u16::from_be_bytes([l4[6], l4[7]]) == 0 {
                return true;
            }
            ones_sum(&s.octets())
                + ones_sum(&d.octets())
                + h.proto as u64
                + l4len as u64
                + ones_sum(&l4[..l4len])
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = u16::from_be_bytes([pkt[4], pkt[5]]) as usize;
            let l4len = plen.min(l4.len());
            ones_sum(&s.octets())
                + ones_sum(&d.octets())
                + h.proto as u64
                + l4len as u64
                + ones_sum(&l4[..l4len])
        }
        _ => return false,
    };
    sum = fold(sum) as u64;
    sum == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_checksums(pkt: &mut [u8]) {
        let h = parse(pkt).unwrap();
        let csum_off = h.l4 + if h.proto == PROTO_TCP { 16 } else { 6 };
        pkt[csum_off] = 0;
        pkt[csum_off + 1] = 0;
        let (pseudo, l4len) = match (h.src, h.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pkt[10] = 0;
                pkt[11] = 0;
                let c = !fold(ones_sum(&pkt[..h.l4]));
                pkt[10..12].copy_from_slice(&c.to_be_bytes());
                (
                    ones_sum(&s.octets()) + ones_sum(&d.octets()),
                    pkt.len() - h.l4,
                )
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                ones_sum(&s.octets()) + ones_sum(&d.octets()),
                pkt.len() - 40,
            ),
            _ => unreachable!(),
        };
        let sum = pseudo + h.proto as u64 + l4len as u64 + ones_sum(&pkt[h.l4..]);
        let mut c = !fold(sum);
        if h.proto == PROTO_UDP && c == 0 {
            c = 0xffff;
        }
        pkt[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
    }

    /// A packet with valid checksums (the NAT rewrites them incrementally).
    fn v4_packet(
        proto: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4b = testpkt::l4(proto, sport, dport, 0xdeadbeef, 0x18, payload);
        let mut p = testpkt::v4(proto, src, dst, l4b);
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        fill_checksums(&mut p);
        p
    }

    fn v6_packet(
        proto: u8,
        src: Ipv6Addr,
        sport: u16,
        dst: Ipv6Addr,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4b = testpkt::l4(proto, sport, dport, 0, 0, payload);
        let mut p = testpkt::v6(proto, src, dst, l4b);
        fill_checksums(&mut p);
        p
    }

    use crate::testpkt::{self, c6, s6, C4, S4};
    fn nat() -> Nat {
        Nat::new(
            vec![C4.into(), [198, 18, 0, 2].into()],
            vec![c6(), "2001:2::2".parse().unwrap()],
        )
    }

    #[test]
    fn helpers_build_valid_packets() {
        for proto in [PROTO_TCP, PROTO_UDP] {
            assert!(checksums_ok(&v4_packet(
                proto, C4, 40000, S4, 443, b"hello"
            )));
            assert!(checksums_ok(&v6_packet(
                proto,
                c6(),
                40000,
                s6(),
                443,
                b"hello!"
            )));
        }
        let mut p = v4_packet(PROTO_UDP, C4, 1, S4, 2, b"x");
        p[28] ^= 1; // the payload byte
        assert!(!checksums_ok(&p));
    }

    #[test]
    fn csum_update_matches_recompute_exhaustively_on_ports() {
        // Every source port for a fixed packet: the incremental result verifies.
        let base = v4_packet(PROTO_UDP, C4, 1000, S4, 53, b"abcdefg");
        for port in (0u16..=65535).step_by(7) {
            let mut p = base.clone();
            let h = parse(&p).unwrap();
            rewrite(&mut p, &h, Side::Src, IpAddr::V4(C4.into()), port);
            assert!(checksums_ok(&p), "port {port}");
            assert_eq!(parse(&p).unwrap().sport, port);
        }
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285, HC' = 0x0000.
        assert_eq!(csum_update(0xdd2f, &[0x55, 0x55], &[0x32, 0x85]), 0x0000);
    }

    #[test]
    fn transparent_until_first_rebind() {
        let mut n = nat();
        let orig = v4_packet(PROTO_TCP, C4, 40000, S4, 80, b"GET");
        let mut p = orig.clone();
        assert!(!n.translate_up(&mut p));
        assert_eq!(p, orig);
        let mut d = v4_packet(PROTO_TCP, S4, 80, C4, 40000, b"OK");
        assert_eq!(n.translate_down(&mut d), DownAction::Pass);
    }

    #[test]
    fn port_rebind_v4_tcp_and_udp_round_trip() {
        for proto in [PROTO_TCP, PROTO_UDP] {
            let mut n = nat();
            let ev = n.rebind(RebindKind::Port, 5, false);
            assert_eq!(ev.generation, 1);
            assert_eq!(ev.old.port_shift, 0);
            assert_eq!(ev.new.port_shift, 7919);
            let mut up = v4_packet(proto, C4, 40000, S4, 443, b"payload");
            assert!(n.translate_up(&mut up));
            assert!(checksums_ok(&up));
            let h = parse(&up).unwrap();
            assert_eq!(h.src, IpAddr::V4(C4.into()));
            assert_eq!(h.sport, 40000 + 7919);
            // The reply to the new binding comes back to the client's own port.
            let mut down = v4_packet(proto, S4, 443, C4, 40000 + 7919, b"reply");
            assert_eq!(n.translate_down(&mut down), DownAction::Translated);
            assert!(checksums_ok(&down));
            assert_eq!(parse(&down).unwrap().dport, 40000);
            // After the next rebind the old binding is gone.
            n.rebind(RebindKind::Port, 6, true);
            let mut stale = v4_packet(proto, S4, 443, C4, 40000 + 7919, b"late");
            assert_eq!(n.translate_down(&mut stale), DownAction::Drop);
            assert_eq!(n.counters().dropped_no_mapping, 1);
        }
    }

    #[test]
    fn internal_of_maps_back_without_counting() {
        let mut n = nat();
        let ext = SocketAddr::new(IpAddr::V4(C4.into()), 40000 + 7919);
        let int = SocketAddr::new(IpAddr::V4(C4.into()), 40000);
        assert_eq!(n.internal_of(PROTO_UDP, int), Some(int), "transparent");
        n.rebind(RebindKind::Port, 5, false);
        assert_eq!(n.internal_of(PROTO_UDP, ext), None, "no mapping yet");
        let mut up = v4_packet(PROTO_UDP, C4, 40000, S4, 443, b"payload");
        assert!(n.translate_up(&mut up));
        assert_eq!(n.internal_of(PROTO_UDP, ext), Some(int));
        assert_eq!(n.internal_of(PROTO_TCP, ext), None, "per protocol");
        assert_eq!(n.counters().translated_down, 0);
        assert_eq!(n.counters().dropped_no_mapping, 0);
    }

    #[test]
    fn address_rebind_v4_and_v6() {
        let mut n = nat();
        n.rebind(RebindKind::Address, 1, true);
        let mut up = v4_packet(PROTO_UDP, [198, 18, 0, 2], 5000, S4, 443, b"q");
        assert!(n.translate_up(&mut up));
        assert!(checksums_ok(&up));
        let h = parse(&up).unwrap();
        assert_eq!(h.src, IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)));
        assert_eq!(h.sport, 5000);
        let mut up6 = v6_packet(PROTO_TCP, c6(), 5000, s6(), 443, b"q6");
        assert!(n.translate_up(&mut up6));
        assert!(checksums_ok(&up6));
        let h6 = parse(&up6).unwrap();
        assert_eq!(h6.src, IpAddr::V6("2001:2:0:2::1".parse().unwrap()));
        let mut down6 = v6_packet(
            PROTO_TCP,
            s6(),
            443,
            "2001:2:0:2::1".parse().unwrap(),
            5000,
            b"r",
        );
        assert_eq!(n.translate_down(&mut down6), DownAction::Translated);
        assert!(checksums_ok(&down6));
        assert_eq!(parse(&down6).unwrap().dst, IpAddr::V6(c6()));
        // Second address rebind: a fresh address, the old one is forgotten.
        let ev = n.rebind(RebindKind::Address, 2, true);
        assert_eq!(ev.old.v4, Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(ev.new.v4, Ipv4Addr::new(198, 19, 0, 3));
        assert_eq!(ev.flows_forgotten, 2);
        let mut stale = v4_packet(PROTO_UDP, S4, 443, [198, 19, 0, 2], 5000, b"x");
        assert_eq!(n.translate_down(&mut stale), DownAction::Drop);
        // Traffic to the client's own address is also stale after a rebind.
        let mut own = v4_packet(PROTO_UDP, S4, 443, C4, 5000, b"x");
        assert_eq!(n.translate_down(&mut own), DownAction::Drop);
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut n = nat();
        n.rebind(RebindKind::Address, 0, false);
        let mut p = v4_packet(PROTO_UDP, C4, 7, S4, 9, b"nochk");
        p[26] = 0;
        p[27] = 0;
        assert!(n.translate_up(&mut p));
        assert_eq!(&p[26..28], &[0, 0]);
        assert!(checksums_ok(&p));
    }

    #[test]
    fn non_l4_and_fragments_pass() {
        let mut n = nat();
        n.rebind(RebindKind::Port, 0, false);
        let mut icmp = v4_packet(PROTO_UDP, C4, 7, S4, 9, b"x");
        icmp[9] = 1;
        let before = icmp.clone();
        assert!(!n.translate_up(&mut icmp));
        assert_eq!(icmp, before);
        let mut frag = v4_packet(PROTO_UDP, C4, 7, S4, 9, b"x");
        frag[6] = 0x20; // MF
        assert!(!n.translate_up(&mut frag));
        assert!(parse(&[0x45]).is_none());
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x60; 39]).is_none());
    }

    #[test]
    fn many_flows_never_collide() {
        let mut n = nat();
        n.rebind(RebindKind::Port, 0, false);
        let mut seen = std::collections::HashSet::new();
        for port in 1..=65535u16 {
            let int = Endpoint {
                proto: PROTO_UDP,
                addr: IpAddr::V4(C4.into()),
                port,
            };
            let e = n.external(int).unwrap();
            assert_ne!(e.port, 0);
            assert!(seen.insert(e.port), "port {port} collides");
        }
    }

    #[test]
    fn schedule_times() {
        let s = NatSchedule::once(RebindKind::Port, Duration::from_millis(5));
        assert_eq!(s.event_ns(0), Some(5_000_000));
        assert_eq!(s.event_ns(1), None);
        let s = NatSchedule {
            kind: RebindKind::Address,
            first_at: Duration::from_secs(1),
            every: Some(Duration::from_millis(500)),
            count: Some(3),
        };
        assert_eq!(s.event_ns(0), Some(1_000_000_000));
        assert_eq!(s.event_ns(2), Some(2_000_000_000));
        assert_eq!(s.event_ns(3), None);
        let s = NatSchedule { count: None, ..s };
        assert_eq!(s.event_ns(100), Some(51_000_000_000));
    }
}
