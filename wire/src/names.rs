//! Names of protocols and congestion controllers, as users type them.

use std::fmt;
use std::str::FromStr;

/// An unknown name, with the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}: expected one of {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub got: String,
    pub expected: String,
}

/// A protocol quicbench compares.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Protocol {
    /// HTTP/1.0 cleartext: a new TCP connection per request.
    H10,
    /// HTTP/1.0 over TLS 1.3.
    H10Tls,
    /// HTTP/1.1 cleartext, one kept-alive connection, sequential requests.
    H11,
    /// HTTP/1.1 over TLS 1.3, one kept-alive connection.
    H11Tls,
    /// HTTP/1.1 over TLS 1.3 with pipelining (requests written back to back).
    H11Pipelined,
    /// HTTP/2 over TLS 1.3, requests multiplexed on one connection.
    H2,
    /// HTTP/3 over QUIC.
    H3,
    /// The raw UDP probe: the link as the application sees it.
    Udp,
}

impl Protocol {
    pub const ALL: [Protocol; 8] = [
        Protocol::H10,
        Protocol::H10Tls,
        Protocol::H11,
        Protocol::H11Tls,
        Protocol::H11Pipelined,
        Protocol::H2,
        Protocol::H3,
        Protocol::Udp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::H10 => "h1.0",
            Protocol::H10Tls => "h1.0-tls",
            Protocol::H11 => "h1.1",
            Protocol::H11Tls => "h1.1-tls",
            Protocol::H11Pipelined => "h1.1-pipelined",
            Protocol::H2 => "h2",
            Protocol::H3 => "h3",
            Protocol::Udp => "udp",
        }
    }

    /// Runs over TLS (TCP+TLS 1.3 or QUIC).
    pub fn uses_tls(self) -> bool {
        matches!(
            self,
            Protocol::H10Tls
                | Protocol::H11Tls
                | Protocol::H11Pipelined
                | Protocol::H2
                | Protocol::H3
        )
    }

    /// An HTTP protocol (everything but the UDP probe).
    pub fn is_http(self) -> bool {
        self != Protocol::Udp
    }

    /// Round trips before the first response byte of a fresh connection, in theory
    /// (no loss, negligible serialisation): TCP handshake 1 RTT, TLS 1.3 1 RTT,
    /// the request 1 RTT; QUIC merges transport and TLS into 1 RTT.
    pub fn theory_ttfb_rtt(self, resumed_0rtt: bool) -> Option<f64> {
        match self {
            Protocol::H10 | Protocol::H11 => Some(2.0),
            Protocol::H10Tls | Protocol::H11Tls | Protocol::H11Pipelined | Protocol::H2 => {
                Some(3.0)
            }
            Protocol::H3 => Some(if resumed_0rtt { 1.0 } else { 2.0 }),
            Protocol::Udp => None,
        }
    }

    /// As [`Protocol::theory_ttfb_rtt`] for a resumed TCP connection with TCP
    /// Fast Open (the first flight rides in the SYN: one round trip less) and
    /// TLS 1.3 early data (the request rides in the first flight: one less
    /// again). TLS over TCP: 3, 2 with either, 1 with both (QUIC 0-RTT's).
    pub fn theory_ttfb_rtt_tcp(self, fast_open: bool, early_data: bool) -> Option<f64> {
        let base = self.theory_ttfb_rtt(false)?;
        if matches!(self, Protocol::H3 | Protocol::Udp) {
            return Some(base);
        }
        let early = early_data && self.uses_tls();
        Some(base - f64::from(u8::from(fast_open)) - f64::from(u8::from(early)))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let alias = match t.as_str() {
            "h1" | "http/1.1" => "h1.1",
            "http/1.0" => "h1.0",
            "http/2" | "h2-tls" => "h2",
            "http/3" | "quic" => "h3",
            "h1.1-pipeline" | "pipelined" => "h1.1-pipelined",
            other => other,
        };
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == alias)
            .ok_or_else(|| UnknownName {
                what: "protocol",
                got: s.to_string(),
                expected: Protocol::ALL.map(|p| p.name()).join(", "),
            })
    }
}

impl TryFrom<String> for Protocol {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Protocol> for String {
    fn from(p: Protocol) -> String {
        p.name().to_string()
    }
}

/// Congestion controller of both transports of a cell: QUIC's, and the TCP
/// socket's `TCP_CONGESTION` (`wire::transport`). Cubic by default, the common
/// default of Linux TCP and quinn; never the host's default, which may be BBR.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum CongestionControl {
    #[default]
    Cubic,
    NewReno,
    Bbr,
}

impl CongestionControl {
    pub fn name(self) -> &'static str {
        match self {
            CongestionControl::Cubic => "cubic",
            CongestionControl::NewReno => "newreno",
            CongestionControl::Bbr => "bbr",
        }
    }
}

impl fmt::Display for CongestionControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CongestionControl {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cubic" => Ok(CongestionControl::Cubic),
            "newreno" | "reno" | "new-reno" => Ok(CongestionControl::NewReno),
            "bbr" => Ok(CongestionControl::Bbr),
            _ => Err(UnknownName {
                what: "congestion controller",
                got: s.to_string(),
                expected: "cubic, newreno, bbr".into(),
            }),
        }
    }
}

impl TryFrom<String> for CongestionControl {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CongestionControl> for String {
    fn from(c: CongestionControl) -> String {
        c.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_fast_start_theory() {
        let t = |p: Protocol, f, e| p.theory_ttfb_rtt_tcp(f, e);
        assert_eq!(t(Protocol::H2, false, false), Some(3.0));
        assert_eq!(t(Protocol::H2, true, false), Some(2.0));
        assert_eq!(t(Protocol::H11Tls, true, true), Some(1.0));
        assert_eq!(t(Protocol::H11, true, true), Some(1.0));
        assert_eq!(t(Protocol::H3, true, true), Some(2.0));
        assert_eq!(t(Protocol::Udp, true, true), None);
    }

    #[test]
    fn names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
            let j = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Protocol>(&j).unwrap(), p);
        }
        let e = "h4".parse::<Protocol>().unwrap_err();
        assert!(e.to_string().contains("\"h4\"") && e.to_string().contains("h1.1-pipelined"));
        assert_eq!(
            "BBR".parse::<CongestionControl>(),
            Ok(CongestionControl::Bbr)
        );
        assert!("vegas".parse::<CongestionControl>().is_err());
    }

    #[test]
    fn theory() {
        assert_eq!(Protocol::H10.theory_ttfb_rtt(false), Some(2.0));
        assert_eq!(Protocol::H2.theory_ttfb_rtt(false), Some(3.0));
        assert_eq!(Protocol::H3.theory_ttfb_rtt(false), Some(2.0));
        assert_eq!(Protocol::H3.theory_ttfb_rtt(true), Some(1.0));
    }
}
