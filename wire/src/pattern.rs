//! The body of `GET /bytes/N`: byte `i` of every response is a pure function of
//! `i`, so any slice (a Range response, a chunk) can be checked on its own.
//!
//! Each aligned 8-byte word `w` is `splitmix64(w)` in little-endian order: cheap
//! to generate (~1 ns per word), and a shifted, duplicated or reordered chunk
//! fails verification (a short-period pattern would not catch shifts by its period).

#[inline]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte at absolute `offset` of the pattern.
#[inline]
pub fn byte_at(offset: u64) -> u8 {
    splitmix64(offset / 8).to_le_bytes()[(offset % 8) as usize]
}

/// Fill `buf` with the pattern starting at absolute `offset`.
pub fn fill(offset: u64, buf: &mut [u8]) {
    let mut i = 0usize;
    let mut off = offset;
    // Unaligned head.
    while i < buf.len() && off % 8 != 0 {
        buf[i] = byte_at(off);
        i += 1;
        off += 1;
    }
    // Whole words.
    while i + 8 <= buf.len() {
        buf[i..i + 8].copy_from_slice(&splitmix64(off / 8).to_le_bytes());
        i += 8;
        off += 8;
    }
    // Tail.
    while i < buf.len() {
        buf[i] = byte_at(off);
        i += 1;
        off += 1;
    }
}

/// A freshly allocated chunk of the pattern.
pub fn chunk(offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(offset, &mut v);
    v
}

/// Check `buf` against the pattern at `offset`; `Err(i)` is the index of the
/// first wrong byte in `buf`.
pub fn verify(offset: u64, buf: &[u8]) -> Result<(), usize> {
    let mut i = 0usize;
    let mut off = offset;
    while i < buf.len() && off % 8 != 0 {
        if buf[i] != byte_at(off) {
            return Err(i);
        }
        i += 1;
        off += 1;
    }
    while i + 8 <= buf.len() {
        if buf[i..i + 8] != splitmix64(off / 8).to_le_bytes() {
            for k in 0..8 {
                if buf[i + k] != byte_at(off + k as u64) {
                    return Err(i + k);
                }
            }
        }
        i += 8;
        off += 8;
    }
    while i < buf.len() {
        if buf[i] != byte_at(off) {
            return Err(i);
        }
        i += 1;
        off += 1;
    }
    Ok(())
}

/// Incremental verifier for a body that arrives in chunks.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    offset: u64,
    first_error: Option<u64>,
}

impl Verifier {
    /// Verify a body whose first byte is pattern byte `start` (0, or a Range start).
    pub fn new(start: u64) -> Self {
        Verifier {
            offset: start,
            first_error: None,
        }
    }
    /// Feed the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        if self.first_error.is_none() {
            if let Err(i) = verify(self.offset, chunk) {
                self.first_error = Some(self.offset + i as u64);
            }
        }
        self.offset += chunk.len() as u64;
    }
    /// Absolute offset of the first wrong byte, if any.
    pub fn first_error(&self) -> Option<u64> {
        self.first_error
    }
    /// Next expected absolute offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_for_every_alignment() {
        for start in 0..20u64 {
            for len in 0..40usize {
                let c = chunk(start, len);
                for (i, b) in c.iter().enumerate() {
                    assert_eq!(*b, byte_at(start + i as u64));
                }
                assert_eq!(verify(start, &c), Ok(()));
            }
        }
    }

    #[test]
    fn verify_finds_first_wrong_byte() {
        let mut c = chunk(3, 100);
        c[57] ^= 1;
        assert_eq!(verify(3, &c), Err(57));
    }

    #[test]
    fn shifted_chunk_fails() {
        let c = chunk(8, 64);
        assert!(verify(0, &c).is_err());
        assert!(verify(16, &c).is_err());
    }

    #[test]
    fn incremental_verifier_over_chunks() {
        let body = chunk(0, 10_000);
        let mut v = Verifier::new(0);
        for part in body.chunks(333) {
            v.update(part);
        }
        assert_eq!(v.first_error(), None);
        assert_eq!(v.offset(), 10_000);
        let mut bad = body.clone();
        bad[5_000] ^= 0x80;
        let mut v = Verifier::new(0);
        for part in bad.chunks(777) {
            v.update(part);
        }
        assert_eq!(v.first_error(), Some(5_000));
    }
}
