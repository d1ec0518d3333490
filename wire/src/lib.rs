//! quicbench-wire: what servers and clients must agree on, and nothing else.
//!
//! * [`pattern`]: the deterministic body of `GET /bytes/N`, so a client can verify
//!   every byte it received without the server sending a checksum.
//! * [`resource`]: the resources every HTTP server serves, parsed once for all.
//! * [`probe`]: the UDP probe datagram format (echo, sink, source).
//! * [`tls`]: the one certificate and the TLS 1.3 / QUIC configurations shared
//!   by every protocol, so comparisons are like with like.
//! * [`sockinfo`]: read-only transport facts per connection (`TCP_INFO`,
//!   options read back, quinn's statistics), sampled over time.
//! * [`transport`]: the settings both ends of every transport share (congestion
//!   controller for QUIC *and* TCP, windows, packet size), and their read-back.
//! * [`h3quic`]: HTTP/3's binding to quinn for both ends, which hands quinn
//!   response bodies without a copy.
//! * [`Protocol`] and [`CongestionControl`]: names used on the command line,
//!   in matrices and in results.

pub mod clock;
pub mod h3quic;
pub mod pattern;
pub mod probe;
pub mod resource;
pub mod sockinfo;
pub mod tls;
pub mod transport;

mod names;
pub use names::{CongestionControl, Protocol, UnknownName};

// Unit tests set TCP controllers: as an ordinary user, in a user and network
// namespace of their own (quicbench_netem::test_gate).
#[cfg(test)]
quicbench_netem::test_binary_enters_user_namespace!();
