//! Nanosecond pcap files (magic `0xa1b23c4d`, `LINKTYPE_RAW` = 101: each record
//! is a bare IPv4 or IPv6 packet).
//!
//! Written by hand: the format is a 24-byte file header and a 16-byte record
//! header per packet; a crate would add more than it saves.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

/// Nanosecond-resolution pcap magic.
pub const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_RAW: the packet starts with the IP header (v4 or v6).
pub const LINKTYPE_RAW: u32 = 101;
/// Largest packet recorded in full.
pub const SNAPLEN: u32 = 65_535;

/// Appends packets to a pcap file (buffered; flushed on [`PcapWriter::flush`]
/// and on drop).
#[derive(Debug)]
pub struct PcapWriter {
    out: BufWriter<File>,
    packets: u64,
}

impl PcapWriter {
    /// Create (truncate) `path` and write the file header.
    pub fn create(path: &Path) -> io::Result<PcapWriter> {
        let f = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        let mut out = BufWriter::with_capacity(1 << 16, f);
        out.write_all(&file_header())?;
        Ok(PcapWriter { out, packets: 0 })
    }

    /// Record `pkt` seen at `ts_ns` (ns since the Unix epoch).
    pub fn write(&mut self, ts_ns: u64, pkt: &[u8]) -> io::Result<()> {
        let incl = pkt.len().min(SNAPLEN as usize);
        self.out
            .write_all(&record_header(ts_ns, incl as u32, pkt.len() as u32))?;
        self.out.write_all(&pkt[..incl])?;
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The 24-byte global header (native byte order, as readers expect from the magic).
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC_NS.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes()); // version 2.4
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone and sigfigs: 0
    h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_RAW.to_ne_bytes());
    h
}

fn record_header(ts_ns: u64, incl: u32, orig: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_ne_bytes());
    h[8..12].copy_from_slice(&incl.to_ne_bytes());
    h[12..16].copy_from_slice(&orig.to_ne_bytes());
    h
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Read a file written by [`PcapWriter`] (native byte order, ns magic, RAW):
/// used by tests and by anyone checking a capture without tshark.
pub fn read_file(path: &Path) -> io::Result<Vec<Record>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
    parse(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Parse pcap bytes (native byte order, ns magic, RAW).
pub fn parse(bytes: &[u8]) -> Result<Vec<Record>, String> {
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if bytes.len() < 24 {
        return Err(format!(
            "{} bytes, shorter than the 24-byte header",
            bytes.len()
        ));
    }
    if u32_at(bytes, 0) != MAGIC_NS {
        return Err(format!(
            "magic {:#x}, expected {MAGIC_NS:#x}",
            u32_at(bytes, 0)
        ));
    }
    if u32_at(bytes, 20) != LINKTYPE_RAW {
        return Err(format!(
            "link type {}, expected {LINKTYPE_RAW}",
            u32_at(bytes, 20)
        ));
    }
    let mut out = Vec::new();
    let mut i = 24;
    while i < bytes.len() {
        if bytes.len() - i < 16 {
            return Err(format!("truncated record header at offset {i}"));
        }
        let sec = u32_at(bytes, i) as u64;
        let nsec = u32_at(bytes, i + 4) as u64;
        let incl = u32_at(bytes, i + 8) as usize;
        let orig = u32_at(bytes, i + 12);
        if nsec >= 1_000_000_000 {
            return Err(format!("record at offset {i}: {nsec} ns is not below 1 s"));
        }
        i += 16;
        if bytes.len() - i < incl {
            return Err(format!("truncated record data at offset {i}"));
        }
        out.push(Record {
            ts_ns: sec * 1_000_000_000 + nsec,
            orig_len: orig,
            data: bytes[i..i + incl].to_vec(),
        });
        i += incl;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let h = file_header();
        assert_eq!(&h[0..4], &MAGIC_NS.to_ne_bytes());
        assert_eq!(u16::from_ne_bytes([h[4], h[5]]), 2);
        assert_eq!(u16::from_ne_bytes([h[6], h[7]]), 4);
        assert_eq!(&h[8..16], &[0u8; 8]);
        assert_eq!(u32::from_ne_bytes([h[16], h[17], h[18], h[19]]), 65_535);
        assert_eq!(u32::from_ne_bytes([h[20], h[21], h[22], h[23]]), 101);
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pcap");
        let mut w = PcapWriter::create(&p).unwrap();
        w.write(1_700_000_000_123_456_789, &[0x45, 0, 0, 20])
            .unwrap();
        w.write(1_700_000_001_000_000_000, &[0x60; 40]).unwrap();
        assert_eq!(w.packets(), 2);
        drop(w);
        let r = read_file(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].ts_ns, 1_700_000_000_123_456_789);
        assert_eq!(r[0].data, vec![0x45, 0, 0, 20]);
        assert_eq!(r[1].orig_len, 40);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 4 + 16 + 40);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(&[0u8; 10]).is_err());
        let mut b = file_header().to_vec();
        b[0] ^= 1;
        assert!(parse(&b).is_err());
        let mut b = file_header().to_vec();
        b.extend_from_slice(&[1, 0, 0, 0]);
        assert!(parse(&b).is_err());
    }
}
