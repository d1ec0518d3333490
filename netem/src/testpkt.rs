//! Hand-built IPv4/IPv6 TCP and UDP packets for the unit tests of the
//! packet parsers (flows, NAT): one builder, the benchmarking addresses.

use std::net::Ipv6Addr;

/// IP protocol number of TCP (`l4` builds a TCP header for it, else UDP's).
const PROTO_TCP: u8 = 6;

pub const C4: [u8; 4] = [198, 18, 0, 1];
pub const S4: [u8; 4] = [198, 18, 1, 1];

pub fn c6() -> Ipv6Addr {
    "2001:2::1".parse().unwrap()
}
pub fn s6() -> Ipv6Addr {
    "2001:2:0:1::1".parse().unwrap()
}

/// The transport header (TCP: seq, flags, no options; UDP: length) and payload.
pub fn l4(proto: u8, sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; if proto == PROTO_TCP { 20 } else { 8 }];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    if proto == PROTO_TCP {
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[12] = 0x50;
        t[13] = flags;
    } else {
        t[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    }
    t.extend_from_slice(payload);
    t
}

pub fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], l4b: Vec<u8>) -> Vec<u8> {
    let total = 20 + l4b.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p.extend_from_slice(&l4b);
    p
}

pub fn v6(proto: u8, src: Ipv6Addr, dst: Ipv6Addr, l4b: Vec<u8>) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(l4b.len() as u16).to_be_bytes());
    p[6] = proto;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(&l4b);
    p
}
