//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624):
//! one place for the NAT's rewrites and the offload path's segments.

/// Fold a one's-complement sum to 16 bits.
pub fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// One's-complement sum of `data` as big-endian 16-bit words (odd length
/// padded with a zero byte). Summed 32 bits at a time: 2^16 ≡ 1 mod 0xffff,
/// so the folded result is the same as word by word, at half the additions.
pub fn ones_sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    let mut sum: u64 = chunks
        .by_ref()
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64)
        .sum();
    let rest = chunks.remainder();
    for w in rest.chunks(2) {
        sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u64;
    }
    sum
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')` over 16-bit words (`old` and
/// `new` have the same even length).
pub fn csum_update(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut sum: u64 = (!hc) as u64;
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let ow = u16::from_be_bytes([o[0], *o.get(1).unwrap_or(&0)]);
        let nw = u16::from_be_bytes([n[0], *n.get(1).unwrap_or(&0)]);
        sum += (!ow) as u64 + nw as u64;
    }
    !fold(sum)
}

/// The IPv4 header checksum of `hdr` (its checksum field taken as zero).
pub fn ipv4_header(hdr: &[u8]) -> u16 {
    let field = u16::from_be_bytes([hdr[10], hdr[11]]) as u64;
    // Take the field out of the sum: adding its complement cancels it.
    !fold(ones_sum(hdr) + (!field as u16) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_by_word(data: &[u8]) -> u16 {
        fold(
            data.chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64)
                .sum(),
        )
    }

    #[test]
    fn ones_sum_by_32_bits_folds_like_by_16() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    // xorshift: a seeded, reproducible byte stream
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(fold(ones_sum(&data)), word_by_word(&data), "len {len}");
        }
        assert_eq!(fold(ones_sum(&[0xff; 4096])), 0xffff);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
        assert_eq!(
            fold(ones_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_checksum_ignores_the_old_field() {
        let mut h = [
            0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8,
            0, 0xc7,
        ];
        // A well-known captured header: its checksum is b861.
        assert_eq!(ipv4_header(&h), 0xb861);
        h[10] = 0x12;
        h[11] = 0x34;
        assert_eq!(ipv4_header(&h), 0xb861);
    }
}
