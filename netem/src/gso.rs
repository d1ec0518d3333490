//! Segmentation offload on the TUN devices, sans-IO: the virtio-net header the
//! kernel puts before each packet (`IFF_VNET_HDR`), the split of a TSO/USO
//! super-packet into the wire packets it stands for, and the join of a run of
//! wire packets back into one super-packet for a single write.
//!
//! Why: read one IP packet per syscall and the relay tops out near 2-3 Gbit/s
//! here; with offloads a read or write carries up to 64 KB. The link model
//! must still decide per wire packet, so every super-packet is split into its
//! MTU-sized segments (headers fixed up as the kernel's own GSO would) before
//! the model sees it, and segments are joined again only when they leave
//! together, consecutive, with the same fate (see [`Run`]).
//!
//! Written by hand: the GSO/GRO code that exists lives in kernels and NIC
//! drivers; no crate splits and joins raw IP buffers.
//!
//! Checksums: a segment carries a *partial* checksum (`F_NEEDS_CSUM`: the
//! pseudo-header sum in the field, the rest left to the "hardware"), which a
//! receiving Linux stack accepts without computing it, exactly as it accepts
//! a packet from a veth peer. Whatever must be verifiable by the receiver
//! (a corrupted packet) or readable in a capture is completed first with
//! [`finalize`].

use crate::csum::{fold, ipv4_header, ones_sum};
use crate::ip::{
    PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
};
use crate::nat;

/// Bytes of `struct virtio_net_hdr` (the TUN default, set explicitly).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` is to be done.
pub const F_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the first segment carries CWR.
pub const GSO_ECN: u8 = 0x80;
/// Most segments joined in one write (Linux's default `gso_max_segs` is 64K,
/// GRO stops at 64: a receiver sees nothing bigger from a real NIC).
pub const MAX_RUN: usize = 64;

/// `struct virtio_net_hdr` (legacy layout: native byte order, which is what
/// TUN uses unless told otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn read(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let w = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: w(2),
            gso_size: w(4),
            csum_start: w(6),
            csum_offset: w(8),
        })
    }

    pub fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// A packet with a partial checksum at `l4` (the L4 header's offset).
    fn partial(tcp: bool, l4: usize, gso_type: u8, hdr_len: usize, gso_size: usize) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: hdr_len as u16,
            gso_size: gso_size as u16,
            csum_start: l4 as u16,
            csum_offset: if tcp { 16 } else { 6 },
        }
    }
}

/// Why a super-packet could not be split (counted as `offload_errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// A GSO type this relay does not offer the kernel (UFO, SCTP...).
    GsoType(u8),
    /// Not an unfragmented IPv4/IPv6 TCP/UDP packet matching its GSO type
    /// (IPv6 extension headers included).
    Headers,
    /// `gso_size` 0.
    GsoSize,
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::GsoType(t) => write!(f, "GSO type {t:#x} not offered"),
            SplitError::Headers => f.write_str("headers do not match the GSO type"),
            SplitError::GsoSize => f.write_str("gso_size 0"),
        }
    }
}

/// The offsets of an IP packet's L4 header and payload, and its protocol.
#[derive(Debug, Clone, Copy)]
struct Layout {
    v6: bool,
    tcp: bool,
    /// Offset of the TCP/UDP header.
    l4: usize,
    /// Offset of the payload (IP + L4 headers).
    hl: usize,
}

fn layout(pkt: &[u8]) -> Option<Layout> {
    let h = nat::parse(pkt)?;
    let tcp = h.proto == PROTO_TCP;
    let l4_len = if tcp {
        (pkt[h.l4 + 12] >> 4) as usize * 4
    } else {
        debug_assert_eq!(h.proto, PROTO_UDP);
        8
    };
    if l4_len < if tcp { 20 } else { 8 } || pkt.len() < h.l4 + l4_len {
        return None;
    }
    Some(Layout {
        v6: h.src.is_ipv6(),
        tcp,
        l4: h.l4,
        hl: h.l4 + l4_len,
    })
}

/// The folded pseudo-header sum for an L4 length: what a partial checksum's
/// field holds (Linux: `~tcp_v4_check(len, saddr, daddr, 0)`).
fn pseudo(pkt: &[u8], lay: &Layout, l4_len: usize) -> u16 {
    let proto = if lay.tcp { PROTO_TCP } else { PROTO_UDP } as u64;
    let addrs = if lay.v6 { &pkt[8..40] } else { &pkt[12..20] };
    fold(ones_sum(addrs) + proto + l4_len as u64)
}

/// Set the length fields (IP, and UDP's) of a header block whose packet has
/// `payload` bytes after `lay.hl`, and its partial L4 checksum.
fn fix_lengths(h: &mut [u8], lay: &Layout, payload: usize) {
    let l4_len = lay.hl - lay.l4 + payload;
    if lay.v6 {
        h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    } else {
        h[2..4].copy_from_slice(&((lay.hl + payload) as u16).to_be_bytes());
        let c = ipv4_header(&h[..lay.l4]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let csum = if lay.tcp {
        lay.l4 + 16
    } else {
        h[lay.l4 + 4..lay.l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        lay.l4 + 6
    };
    let p = pseudo(h, lay, l4_len);
    h[csum..csum + 2].copy_from_slice(&p.to_be_bytes());
}

/// A super-packet read from a TUN device, seen as the wire packets it stands
/// for: what the kernel's own segmentation would have sent.
#[derive(Debug)]
pub struct Split<'a> {
    pkt: &'a [u8],
    lay: Layout,
    gso: usize,
    payload: usize,
}

impl<'a> Split<'a> {
    /// `pkt` is the IP packet after the header `h` (whose `gso_type` is not
    /// [`GSO_NONE`]).
    pub fn new(h: &VnetHdr, pkt: &'a [u8]) -> Result<Split<'a>, SplitError> {
        let want_tcp = match h.gso_type & !GSO_ECN {
            GSO_TCPV4 | GSO_TCPV6 => true,
            GSO_UDP_L4 => false,
            t => return Err(SplitError::GsoType(t)),
        };
        let lay = layout(pkt).ok_or(SplitError::Headers)?;
        let v6_type = h.gso_type & !GSO_ECN == GSO_TCPV6;
        if lay.tcp != want_tcp || (want_tcp && lay.v6 != v6_type) {
            return Err(SplitError::Headers);
        }
        if h.gso_size == 0 {
            return Err(SplitError::GsoSize);
        }
        Ok(Split {
            pkt,
            lay,
            gso: h.gso_size as usize,
            payload: pkt.len() - lay.hl,
        })
    }

    /// How many wire packets (at least 1, for a header-only packet).
    pub fn count(&self) -> usize {
        self.payload.div_ceil(self.gso).max(1)
    }

    /// IP length of segment `i`.
    pub fn segment_len(&self, i: usize) -> usize {
        self.lay.hl + self.gso.min(self.payload.saturating_sub(i * self.gso))
    }

    /// Write segment `i` (a virtio-net header, then the IP packet) into
    /// `out`, which holds at least `VNET_HDR_LEN + segment_len(i)` bytes;
    /// returns the IP length.
    pub fn write(&self, i: usize, out: &mut [u8]) -> usize {
        let lay = &self.lay;
        let start = i * self.gso;
        let len = self.gso.min(self.payload.saturating_sub(start));
        let last = i + 1 >= self.count();
        VnetHdr::partial(lay.tcp, lay.l4, GSO_NONE, lay.hl, 0).write(out);
        let h = &mut out[VNET_HDR_LEN..VNET_HDR_LEN + lay.hl];
        h.copy_from_slice(&self.pkt[..lay.hl]);
        if !lay.v6 {
            // Consecutive IDs, as Linux's inet_gso_segment gives them.
            let id = u16::from_be_bytes([h[4], h[5]]).wrapping_add(i as u16);
            h[4..6].copy_from_slice(&id.to_be_bytes());
        }
        if lay.tcp {
            let t = lay.l4;
            let seq = u32::from_be_bytes([h[t + 4], h[t + 5], h[t + 6], h[t + 7]])
                .wrapping_add(start as u32);
            h[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
            // CWR on the first segment only, FIN and PSH on the last only.
            if i > 0 {
                h[t + 13] &= !TCP_CWR;
            }
            if !last {
                h[t + 13] &= !(TCP_FIN | TCP_PSH);
            }
        }
        fix_lengths(h, lay, len);
        let body = lay.hl + start;
        out[VNET_HDR_LEN + lay.hl..VNET_HDR_LEN + lay.hl + len]
            .copy_from_slice(&self.pkt[body..body + len]);
        lay.hl + len
    }
}

/// Complete a partial checksum in place, as the NIC would have: `buf` is a
/// virtio-net header and its packet. Afterwards the header says nothing is
/// left to do, so the receiving stack verifies the checksum. Returns false
/// (and changes nothing) when the header's offsets do not fit the packet.
pub fn finalize(buf: &mut [u8]) -> bool {
    let Some(h) = VnetHdr::read(buf) else {
        return false;
    };
    if h.flags & F_NEEDS_CSUM == 0 {
        return true;
    }
    let start = VNET_HDR_LEN + h.csum_start as usize;
    let at = start + h.csum_offset as usize;
    if at + 2 > buf.len() {
        return false;
    }
    // The field holds the pseudo-header sum, so summing over it includes it.
    let mut c = !fold(ones_sum(&buf[start..]));
    if h.csum_offset == 6 && c == 0 {
        c = 0xffff; // UDP: 0 would mean "no checksum"
    }
    buf[at..at + 2].copy_from_slice(&c.to_be_bytes());
    buf[0] &= !F_NEEDS_CSUM;
    true
}

/// A run of wire packets that leave together and can be written as one
/// super-packet: the same flow and headers (all but lengths, IDs, checksums
/// and TCP sequence numbers), consecutive TCP sequence numbers, every payload
/// `gso_size` long but the last, which may be shorter and ends the run (so
/// does PSH). No SYN, FIN, RST, URG or CWR: those go alone, as GRO would
/// leave them.
#[derive(Debug, Clone)]
pub struct Run {
    lay: Layout,
    gso: usize,
    segs: usize,
    payload: usize,
    next_seq: u32,
    push: bool,
    closed: bool,
}

impl Run {
    /// A run headed by `first` (an IP packet), or None when it cannot head one.
    pub fn start(first: &[u8]) -> Option<Run> {
        let lay = layout(first)?;
        let gso = first.len() - lay.hl;
        if gso == 0 {
            return None;
        }
        let (mut next_seq, mut push) = (0, false);
        if lay.tcp {
            let t = lay.l4;
            let flags = first[t + 13];
            if flags & TCP_ACK == 0
                || flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_CWR) != 0
            {
                return None;
            }
            push = flags & TCP_PSH != 0;
            next_seq = u32::from_be_bytes([first[t + 4], first[t + 5], first[t + 6], first[t + 7]])
                .wrapping_add(gso as u32);
        }
        Some(Run {
            lay,
            gso,
            segs: 1,
            payload: gso,
            next_seq,
            push,
            closed: push,
        })
    }

    /// Segments in the run.
    pub fn segments(&self) -> usize {
        self.segs
    }

    /// Offset of the payload in each segment.
    pub fn header_len(&self) -> usize {
        self.lay.hl
    }

    /// Add `next` when it continues the run headed by `first`; false (and
    /// nothing changes) when it does not.
    pub fn push(&mut self, first: &[u8], next: &[u8]) -> bool {
        let lay = &self.lay;
        let hl = lay.hl;
        if self.closed || self.segs >= MAX_RUN || next.len() <= hl {
            return false;
        }
        let len = next.len() - hl;
        if len > self.gso || hl + self.payload + len > 65_535 {
            return false;
        }
        // Same headers apart from the fields a split changes.
        let same = |a: usize, b: usize| first[a..b] == next[a..b];
        let (l4, t) = (lay.l4, lay.tcp);
        let ip_same = if lay.v6 {
            same(0, 4) && same(6, l4)
        } else {
            same(0, 2) && same(6, 10) && same(12, l4)
        };
        // TCP: ports, ack, offset, window, urgent pointer, options (not seq,
        // flags or checksum); UDP: ports (not length or checksum).
        let l4_same = if t {
            same(l4, l4 + 4) && same(l4 + 8, l4 + 13) && same(l4 + 14, l4 + 16) && same(l4 + 18, hl)
        } else {
            same(l4, l4 + 4)
        };
        if !(ip_same && l4_same) {
            return false;
        }
        let mut push = false;
        if lay.tcp {
            let t = lay.l4;
            let seq = u32::from_be_bytes([next[t + 4], next[t + 5], next[t + 6], next[t + 7]]);
            let (f0, f1) = (first[t + 13], next[t + 13]);
            if seq != self.next_seq || (f0 | TCP_PSH) != (f1 | TCP_PSH) {
                return false;
            }
            push = f1 & TCP_PSH != 0;
            self.next_seq = seq.wrapping_add(len as u32);
        }
        self.segs += 1;
        self.payload += len;
        self.push |= push;
        self.closed = push || len < self.gso;
        true
    }

    /// Write the super-packet's virtio-net header and IP/L4 headers (taken
    /// from `first`) into `out`; the segments' payloads follow it on the
    /// wire, in order. Returns the bytes written.
    pub fn header(&self, first: &[u8], out: &mut [u8]) -> usize {
        let lay = &self.lay;
        let gso_type = match (lay.tcp, lay.v6) {
            (true, false) => GSO_TCPV4,
            (true, true) => GSO_TCPV6,
            (false, _) => GSO_UDP_L4,
        };
        VnetHdr::partial(lay.tcp, lay.l4, gso_type, lay.hl, self.gso).write(out);
        let h = &mut out[VNET_HDR_LEN..VNET_HDR_LEN + lay.hl];
        h.copy_from_slice(&first[..lay.hl]);
        if self.push {
            h[lay.l4 + 13] |= TCP_PSH;
        }
        fix_lengths(h, lay, self.payload);
        VNET_HDR_LEN + lay.hl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{self, C4, S4};

    const MSS: usize = 1448;

    /// A TCP header with 12 bytes of options (timestamps), as Linux sends.
    fn tcp_with_ts(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = testpkt::l4(PROTO_TCP, 40000, 443, seq, flags, &[]);
        t[12] = 0x80; // 32-byte header
        t[8..12].copy_from_slice(&77u32.to_be_bytes()); // ack
        t[14..16].copy_from_slice(&501u16.to_be_bytes()); // window
        t.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        t.extend_from_slice(payload);
        t
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// The super-packet a TSO sender hands the TUN device.
    fn tso(v6: bool, payload: &[u8], flags: u8) -> (VnetHdr, Vec<u8>) {
        let l4 = tcp_with_ts(1000, flags, payload);
        let pkt = if v6 {
            testpkt::v6(PROTO_TCP, testpkt::c6(), testpkt::s6(), l4)
        } else {
            testpkt::v4(PROTO_TCP, C4, S4, l4)
        };
        let ip = if v6 { 40 } else { 20 };
        let h = VnetHdr::partial(
            true,
            ip,
            if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            ip + 32,
            MSS,
        );
        (h, pkt)
    }

    fn segments(h: &VnetHdr, pkt: &[u8]) -> Vec<Vec<u8>> {
        let s = Split::new(h, pkt).unwrap();
        (0..s.count())
            .map(|i| {
                let mut out = vec![0u8; VNET_HDR_LEN + s.segment_len(i)];
                let n = s.write(i, &mut out);
                assert_eq!(n, s.segment_len(i));
                out
            })
            .collect()
    }

    #[test]
    fn vnet_header_round_trips() {
        let h = VnetHdr {
            flags: 1,
            gso_type: GSO_TCPV6 | GSO_ECN,
            hdr_len: 72,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.write(&mut b);
        assert_eq!(VnetHdr::read(&b), Some(h));
        assert_eq!(VnetHdr::read(&b[..9]), None);
    }

    #[test]
    fn tcp_split_gives_the_wire_segments_with_valid_checksums() {
        for v6 in [false, true] {
            let data = body(10 * MSS + 100);
            let (h, pkt) = tso(v6, &data, TCP_ACK | TCP_PSH | TCP_CWR);
            let segs = segments(&h, &pkt);
            assert_eq!(segs.len(), 11);
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                let mut s = s.clone();
                assert!(finalize(&mut s));
                assert_eq!(VnetHdr::read(&s).unwrap().flags & F_NEEDS_CSUM, 0);
                let ip = &s[VNET_HDR_LEN..];
                assert!(nat::checksums_ok(ip), "v6 {v6} segment {i}");
                let lay = layout(ip).unwrap();
                let seq = u32::from_be_bytes(ip[lay.l4 + 4..lay.l4 + 8].try_into().unwrap());
                assert_eq!(seq as usize, 1000 + i * MSS);
                let flags = ip[lay.l4 + 13];
                assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR on the first only");
                assert_eq!(flags & TCP_PSH != 0, i == 10, "PSH on the last only");
                assert_eq!(ip.len() - lay.hl, if i == 10 { 100 } else { MSS });
                if !v6 {
                    assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), i as u16, "IDs count up");
                }
                joined.extend_from_slice(&ip[lay.hl..]);
            }
            assert_eq!(joined, data);
        }
    }

    #[test]
    fn udp_split_gives_one_datagram_per_segment() {
        for v6 in [false, true] {
            let data = body(3 * 1200 + 7);
            let l4 = testpkt::l4(PROTO_UDP, 5000, 443, 0, 0, &data);
            let pkt = if v6 {
                testpkt::v6(PROTO_UDP, testpkt::c6(), testpkt::s6(), l4)
            } else {
                testpkt::v4(PROTO_UDP, C4, S4, l4)
            };
            let ip = if v6 { 40 } else { 20 };
            let h = VnetHdr::partial(false, ip, GSO_UDP_L4, ip + 8, 1200);
            let segs = segments(&h, &pkt);
            assert_eq!(segs.len(), 4);
            for (i, s) in segs.iter().enumerate() {
                let mut s = s.clone();
                assert!(finalize(&mut s));
                let ipk = &s[VNET_HDR_LEN..];
                assert!(nat::checksums_ok(ipk));
                let ulen = u16::from_be_bytes([ipk[ip + 4], ipk[ip + 5]]) as usize;
                assert_eq!(ulen, 8 + if i == 3 { 7 } else { 1200 });
                assert_eq!(&ipk[ip + 8..], &data[i * 1200..(i * 1200 + ulen - 8)]);
            }
        }
    }

    #[test]
    fn split_refuses_what_it_cannot_segment() {
        let (mut h, pkt) = tso(false, &body(3000), TCP_ACK);
        h.gso_type = 3; // UFO
        assert_eq!(Split::new(&h, &pkt).unwrap_err(), SplitError::GsoType(3));
        h.gso_type = GSO_TCPV6; // the packet is IPv4
        assert_eq!(Split::new(&h, &pkt).unwrap_err(), SplitError::Headers);
        h.gso_type = GSO_UDP_L4; // the packet is TCP
        assert_eq!(Split::new(&h, &pkt).unwrap_err(), SplitError::Headers);
        h.gso_type = GSO_TCPV4;
        h.gso_size = 0;
        assert_eq!(Split::new(&h, &pkt).unwrap_err(), SplitError::GsoSize);
        h.gso_size = MSS as u16;
        assert!(Split::new(&h, &pkt[..30]).is_err(), "truncated TCP header");
        let mut frag = pkt.clone();
        frag[6] |= 0x20; // more fragments
        assert!(Split::new(&h, &frag).is_err());
    }

    #[test]
    fn finalize_makes_the_checksum_verifiable_and_corruption_visible() {
        let (h, pkt) = tso(false, &body(2 * MSS), TCP_ACK);
        let mut s = segments(&h, &pkt).remove(1);
        let mut bad = s.clone();
        assert!(finalize(&mut s));
        assert!(nat::checksums_ok(&s[VNET_HDR_LEN..]));
        // Finalized, then one bit flipped (what the relay's corrupt does).
        assert!(finalize(&mut bad));
        bad[VNET_HDR_LEN + 100] ^= 4;
        assert!(!nat::checksums_ok(&bad[VNET_HDR_LEN..]));
        // A full checksum is left alone; offsets past the end are refused.
        let copy = s.clone();
        assert!(finalize(&mut s));
        assert_eq!(s, copy);
        let mut short = copy.clone();
        short[0] |= F_NEEDS_CSUM;
        short.truncate(VNET_HDR_LEN + 30);
        assert!(!finalize(&mut short));
    }

    /// Join split segments back: the super-packet is the original one.
    fn join(segs: &[Vec<u8>]) -> Option<(VnetHdr, Vec<u8>, usize)> {
        let first = &segs[0][VNET_HDR_LEN..];
        let mut run = Run::start(first)?;
        for s in &segs[1..] {
            if !run.push(first, &s[VNET_HDR_LEN..]) {
                break;
            }
        }
        let mut out = vec![0u8; 128];
        let n = run.header(first, &mut out);
        out.truncate(n);
        for s in &segs[..run.segments()] {
            out.extend_from_slice(&s[VNET_HDR_LEN + run.header_len()..]);
        }
        Some((
            VnetHdr::read(&out)?,
            out[VNET_HDR_LEN..].to_vec(),
            run.segments(),
        ))
    }

    #[test]
    fn a_run_of_split_segments_joins_into_the_original() {
        for v6 in [false, true] {
            let (h, pkt) = tso(v6, &body(20 * MSS + 5), TCP_ACK | TCP_PSH);
            let segs = segments(&h, &pkt);
            let (jh, joined, n) = join(&segs).unwrap();
            assert_eq!(n, 21);
            assert_eq!(jh.gso_type, h.gso_type);
            assert_eq!(jh.gso_size as usize, MSS);
            assert_eq!(jh.hdr_len, h.hdr_len);
            assert_eq!(
                (jh.csum_start, jh.csum_offset),
                (h.csum_start, h.csum_offset)
            );
            // The IPv4 ID is the first segment's; everything else is the
            // original super-packet's, partial checksum included.
            let mut want = pkt.clone();
            let lay = layout(&want).unwrap();
            fix_lengths(&mut want[..lay.hl], &lay, 20 * MSS + 5);
            assert_eq!(joined, want, "v6 {v6}");
            // And splitting the joined packet gives the same segments.
            assert_eq!(segments(&jh, &joined), segs);
        }
    }

    #[test]
    fn runs_stop_where_gro_would() {
        let (h, pkt) = tso(false, &body(6 * MSS), TCP_ACK);
        let segs: Vec<Vec<u8>> = segments(&h, &pkt);
        let ip = |s: &Vec<u8>| s[VNET_HDR_LEN..].to_vec();
        let first = ip(&segs[0]);
        let mut run = Run::start(&first).unwrap();
        // A gap in the sequence space (segment 1 lost) ends the run.
        assert!(!run.push(&first, &ip(&segs[2])));
        assert!(run.push(&first, &ip(&segs[1])));
        // A different ACK number, window or timestamp: another run.
        let t = 20;
        for (off, what) in [(8, "ack"), (14, "window"), (24, "tsval")] {
            let mut o = ip(&segs[2]);
            o[t + off] ^= 1;
            assert!(!run.push(&first, &o), "{what}");
        }
        // A different TTL or destination: another run.
        let mut o = ip(&segs[2]);
        o[8] -= 1;
        assert!(!run.push(&first, &o));
        // A longer payload cannot follow; a shorter one closes the run.
        let mut short = ip(&segs[2]);
        short.truncate(short.len() - 10);
        assert!(run.push(&first, &short));
        assert!(
            !run.push(&first, &ip(&segs[3])),
            "closed by a short segment"
        );
        assert_eq!(run.segments(), 3);
        // FIN, SYN, RST go alone; PSH closes the run after it.
        for f in [TCP_FIN, TCP_SYN, TCP_RST, TCP_URG, TCP_CWR] {
            let (h, pkt) = tso(false, &body(2 * MSS), TCP_ACK | f);
            let s = segments(&h, &pkt);
            let head = if f == TCP_CWR { &s[0] } else { &s[1] };
            assert!(Run::start(&head[VNET_HDR_LEN..]).is_none(), "flag {f:#x}");
        }
        let mut psh = ip(&segs[1]);
        psh[t + 13] |= TCP_PSH;
        let mut run = Run::start(&first).unwrap();
        assert!(run.push(&first, &psh));
        assert!(!run.push(&first, &ip(&segs[2])));
        // At most MAX_RUN segments.
        let (h, pkt) = tso(false, &body(44 * MSS), TCP_ACK);
        let many = segments(&h, &pkt);
        let mut many2 = many.clone();
        for (k, s) in many2.iter_mut().enumerate() {
            // Renumber a second batch to follow the first.
            let p = &mut s[VNET_HDR_LEN..];
            let seq = 1000 + (44 + k) as u32 * MSS as u32;
            p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        }
        let all: Vec<Vec<u8>> = many.into_iter().chain(many2).collect();
        let (_, _, n) = join(&all).unwrap();
        assert_eq!(n, (65_535 - 52) / MSS, "64 KB of IP length at most");
        let small: Vec<Vec<u8>> = (0..80u32)
            .map(|k| {
                let l4 = tcp_with_ts(1000 + k * 100, TCP_ACK, &body(100));
                let mut v = vec![0u8; VNET_HDR_LEN];
                v.extend(testpkt::v4(PROTO_TCP, C4, S4, l4));
                v
            })
            .collect();
        assert_eq!(join(&small).unwrap().2, MAX_RUN);
    }

    #[test]
    fn udp_runs_need_the_same_flow_and_full_datagrams() {
        let dgram = |sport: u16, n: usize| {
            testpkt::v4(
                PROTO_UDP,
                C4,
                S4,
                testpkt::l4(PROTO_UDP, sport, 443, 0, 0, &body(n)),
            )
        };
        let first = dgram(5000, 1200);
        let mut run = Run::start(&first).unwrap();
        assert!(!run.push(&first, &dgram(5001, 1200)), "another flow");
        assert!(!run.push(&first, &dgram(5000, 1201)), "longer");
        assert!(run.push(&first, &dgram(5000, 1200)));
        assert!(run.push(&first, &dgram(5000, 300)));
        assert!(!run.push(&first, &dgram(5000, 1200)), "closed");
        let mut out = vec![0u8; 64];
        let n = run.header(&first, &mut out);
        let h = VnetHdr::read(&out).unwrap();
        assert_eq!(
            (h.gso_type, h.gso_size, n),
            (GSO_UDP_L4, 1200, VNET_HDR_LEN + 28)
        );
        assert_eq!(
            u16::from_be_bytes([out[VNET_HDR_LEN + 24], out[VNET_HDR_LEN + 25]]),
            8 + 2700
        );
        assert!(Run::start(&dgram(5000, 0)).is_none(), "empty datagram");
    }
}
