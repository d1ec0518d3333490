//! The UDP probe datagram format (documented in docs/udp-probe.md).
//!
//! Every datagram starts with a 48-byte header, big-endian:
//!
//! ```text
//!  0..4   magic "QBP1"
//!  4      kind (see [`Kind`])
//!  5      flags (0; reserved)
//!  6..8   reserved (0)
//!  8..12  session id (chosen by the client; sink counters are per session)
//! 12..16  aux (kind-specific; 0 otherwise)
//! 16..24  sequence number
//! 24..32  client send time, ns, CLOCK_MONOTONIC of the client
//! 32..40  server receive time, ns, CLOCK_MONOTONIC of the server (0 if unset)
//! 40..48  server send time, ns (0 if unset)
//! 48..    kind-specific body, then zero padding up to the datagram size
//! ```
//!
//! Timestamps share one clock only when both ends run on one host (namespaces
//! on one machine do): then one-way delays are meaningful. RTT never needs it.

use std::fmt;

pub const MAGIC: [u8; 4] = *b"QBP1";
pub const HEADER_LEN: usize = 48;
/// Largest datagram the probe sends or accepts (fits an IPv4 UDP payload).
pub const MAX_DATAGRAM: usize = 65_507;

/// Most datagrams one [`Kind::SourceRequest`] may ask for.
pub const SOURCE_MAX_COUNT: u32 = 1_000_000;
/// Longest a source run may last (`count × interval_us`), µs: 120 s.
pub const SOURCE_MAX_DURATION_US: u64 = 120_000_000;

/// Datagram kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → server: echo me (server answers [`Kind::EchoReply`], same size).
    EchoRequest = 1,
    /// Server → client: the request's header with the server timestamps filled.
    EchoReply = 2,
    /// Client → server: count me, do not answer.
    SinkData = 3,
    /// Client → server: how many of my sink datagrams arrived? (answered by SinkReport)
    SinkReportRequest = 4,
    /// Server → client: body = received u64, bytes u64, distinct max seq + 1 u64.
    SinkReport = 5,
    /// Client → server: send me `count` datagrams of `size` bytes every `interval_us`.
    /// Body = count u32, size u32, interval_us u32.
    SourceRequest = 6,
    /// Server → client: one source datagram (seq, server send time set).
    SourceData = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::EchoRequest,
            2 => Kind::EchoReply,
            3 => Kind::SinkData,
            4 => Kind::SinkReportRequest,
            5 => Kind::SinkReport,
            6 => Kind::SourceRequest,
            7 => Kind::SourceData,
            _ => return None,
        })
    }
}

/// Why a datagram is not a probe datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("probe datagram too short: {0} bytes, the header alone is 48")]
    TooShort(usize),
    #[error("not a quicbench probe datagram (magic {0:02x?}, expected \"QBP1\")")]
    BadMagic([u8; 4]),
    #[error("unknown probe datagram kind {0}")]
    UnknownKind(u8),
    #[error("probe {kind:?} body too short: {len} bytes")]
    ShortBody { kind: Kind, len: usize },
    #[error("requested datagram size {0} outside 48..=65507")]
    BadSize(usize),
}

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub session: u32,
    pub aux: u32,
    pub seq: u64,
    pub client_send_ns: u64,
    pub server_recv_ns: u64,
    pub server_send_ns: u64,
}

impl Header {
    pub fn new(kind: Kind, session: u32, seq: u64, client_send_ns: u64) -> Self {
        Header {
            kind,
            session,
            aux: 0,
            seq,
            client_send_ns,
            server_recv_ns: 0,
            server_send_ns: 0,
        }
    }

    /// Write the header into the first 48 bytes of `buf` (which must be ≥ 48).
    pub fn write(&self, buf: &mut [u8]) -> Result<(), ProbeError> {
        if buf.len() < HEADER_LEN {
            return Err(ProbeError::TooShort(buf.len()));
        }
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4] = self.kind as u8;
        buf[5] = 0;
        buf[6..8].copy_from_slice(&[0, 0]);
        buf[8..12].copy_from_slice(&self.session.to_be_bytes());
        buf[12..16].copy_from_slice(&self.aux.to_be_bytes());
        buf[16..24].copy_from_slice(&self.seq.to_be_bytes());
        buf[24..32].copy_from_slice(&self.client_send_ns.to_be_bytes());
        buf[32..40].copy_from_slice(&self.server_recv_ns.to_be_bytes());
        buf[40..48].copy_from_slice(&self.server_send_ns.to_be_bytes());
        Ok(())
    }

    /// Parse the header of a datagram. Never panics, whatever the input.
    pub fn read(buf: &[u8]) -> Result<Header, ProbeError> {
        if buf.len() < HEADER_LEN {
            return Err(ProbeError::TooShort(buf.len()));
        }
        let magic = [buf[0], buf[1], buf[2], buf[3]];
        if magic != MAGIC {
            return Err(ProbeError::BadMagic(magic));
        }
        let kind = Kind::from_u8(buf[4]).ok_or(ProbeError::UnknownKind(buf[4]))?;
        let u32_at = |o: usize| u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[o..o + 8]);
            u64::from_be_bytes(b)
        };
        Ok(Header {
            kind,
            session: u32_at(8),
            aux: u32_at(12),
            seq: u64_at(16),
            client_send_ns: u64_at(24),
            server_recv_ns: u64_at(32),
            server_send_ns: u64_at(40),
        })
    }
}

/// Body of [`Kind::SourceRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRequest {
    pub count: u32,
    pub size: u32,
    pub interval_us: u32,
}

/// Body of [`Kind::SinkReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SinkReport {
    pub received: u64,
    pub bytes: u64,
    /// Highest sequence number seen + 1 (0 if none).
    pub max_seq_plus_one: u64,
}

/// Socket buffer size the probe asks for on both ends.
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Give a probe socket large send and receive buffers, so that a burst of
/// datagrams (a busy machine delays the reader by milliseconds) is not dropped
/// by the endpoint and counted as link loss. Tries SO_RCVBUFFORCE (root, above
/// net.core.rmem_max) first, then SO_RCVBUF; failure is not an error.
pub fn enlarge_buffers(sock: &impl std::os::fd::AsFd, bytes: usize) {
    crate::transport::set_socket_buffers(sock, bytes);
}

/// Check a datagram size the probe may use.
pub fn check_size(size: usize) -> Result<usize, ProbeError> {
    if (HEADER_LEN..=MAX_DATAGRAM).contains(&size) {
        Ok(size)
    } else {
        Err(ProbeError::BadSize(size))
    }
}

/// Encode a datagram of `size` bytes (≥ 48): header, optional body, zero padding.
pub fn encode(header: &Header, body: &[u8], size: usize) -> Result<Vec<u8>, ProbeError> {
    let size = check_size(size.max(HEADER_LEN + body.len()))?;
    let mut buf = vec![0u8; size];
    header.write(&mut buf)?;
    buf[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
    Ok(buf)
}

impl SourceRequest {
    /// Check the request against the server's bounds ([`SOURCE_MAX_COUNT`],
    /// [`SOURCE_MAX_DURATION_US`], sizes 48..=65507); the reason if out of bounds.
    pub fn check(&self) -> Result<(), String> {
        if self.count == 0 || self.count > SOURCE_MAX_COUNT {
            return Err(format!(
                "source count {} outside 1..={SOURCE_MAX_COUNT}",
                self.count
            ));
        }
        check_size(self.size as usize).map_err(|e| e.to_string())?;
        let total = u64::from(self.count).saturating_sub(1) * u64::from(self.interval_us);
        if total > SOURCE_MAX_DURATION_US {
            return Err(format!(
                "source run of {} datagrams every {} µs lasts {} s, more than {} s",
                self.count,
                self.interval_us,
                total / 1_000_000,
                SOURCE_MAX_DURATION_US / 1_000_000
            ));
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.count.to_be_bytes());
        b[4..8].copy_from_slice(&self.size.to_be_bytes());
        b[8..12].copy_from_slice(&self.interval_us.to_be_bytes());
        b
    }
    /// Parse from a whole datagram (header included).
    pub fn from_datagram(buf: &[u8]) -> Result<Self, ProbeError> {
        let body = buf
            .get(HEADER_LEN..HEADER_LEN + 12)
            .ok_or(ProbeError::ShortBody {
                kind: Kind::SourceRequest,
                len: buf.len().saturating_sub(HEADER_LEN),
            })?;
        let u = |o: usize| u32::from_be_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
        Ok(SourceRequest {
            count: u(0),
            size: u(4),
            interval_us: u(8),
        })
    }
}

impl SinkReport {
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.received.to_be_bytes());
        b[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        b[16..24].copy_from_slice(&self.max_seq_plus_one.to_be_bytes());
        b
    }
    pub fn from_datagram(buf: &[u8]) -> Result<Self, ProbeError> {
        let body = buf
            .get(HEADER_LEN..HEADER_LEN + 24)
            .ok_or(ProbeError::ShortBody {
                kind: Kind::SinkReport,
                len: buf.len().saturating_sub(HEADER_LEN),
            })?;
        let u = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[o..o + 8]);
            u64::from_be_bytes(b)
        };
        Ok(SinkReport {
            received: u(0),
            bytes: u(8),
            max_seq_plus_one: u(16),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut h = Header::new(Kind::EchoRequest, 7, 42, 123_456_789);
        h.server_recv_ns = 5;
        h.server_send_ns = 6;
        h.aux = 9;
        let d = encode(&h, &[], 100).unwrap();
        assert_eq!(d.len(), 100);
        assert_eq!(Header::read(&d).unwrap(), h);
    }

    #[test]
    fn bodies_round_trip() {
        let r = SourceRequest {
            count: 1000,
            size: 1200,
            interval_us: 100,
        };
        let d = encode(
            &Header::new(Kind::SourceRequest, 1, 0, 0),
            &r.to_bytes(),
            48,
        )
        .unwrap();
        assert_eq!(SourceRequest::from_datagram(&d).unwrap(), r);
        assert_eq!(r.check(), Ok(()));
        assert!(SourceRequest { count: 0, ..r }.check().is_err());
        assert!(SourceRequest {
            count: SOURCE_MAX_COUNT + 1,
            interval_us: 0,
            ..r
        }
        .check()
        .is_err());
        assert!(SourceRequest { size: 47, ..r }.check().is_err());
        assert!(SourceRequest {
            count: 1_000_000,
            interval_us: 121,
            ..r
        }
        .check()
        .is_err());
        assert_eq!(
            SourceRequest {
                count: 1_000_001 - 1,
                interval_us: 120,
                ..r
            }
            .check(),
            Ok(())
        );
        let s = SinkReport {
            received: 3,
            bytes: 4,
            max_seq_plus_one: 5,
        };
        let d = encode(&Header::new(Kind::SinkReport, 1, 0, 0), &s.to_bytes(), 48).unwrap();
        assert_eq!(d.len(), 72);
        assert_eq!(SinkReport::from_datagram(&d).unwrap(), s);
        assert!(SinkReport::from_datagram(&d[..60]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(Header::read(&[]), Err(ProbeError::TooShort(0)));
        assert!(matches!(
            Header::read(&[0u8; 48]),
            Err(ProbeError::BadMagic(_))
        ));
        let mut d = encode(&Header::new(Kind::EchoRequest, 1, 1, 1), &[], 48).unwrap();
        d[4] = 99;
        assert_eq!(Header::read(&d), Err(ProbeError::UnknownKind(99)));
        // Every prefix of a valid datagram and a few random-ish ones.
        let d = encode(&Header::new(Kind::SourceRequest, 1, 1, 1), &[1; 12], 60).unwrap();
        for n in 0..d.len() {
            let _ = Header::read(&d[..n]);
            let _ = SourceRequest::from_datagram(&d[..n]);
            let _ = SinkReport::from_datagram(&d[..n]);
        }
        assert!(check_size(47).is_err() && check_size(65_508).is_err() && check_size(48).is_ok());
    }
}
