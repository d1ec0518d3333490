//! quicbench-netem: the emulated link.
//!
//! * [`spec`]: the tc-netem option language (parse and print back).
//! * [`model`]: a sans-IO per-direction link model: `(now, packet) -> verdict`,
//!   seeded RNG, simulated clock, no I/O; [`chosen`]: its `drop-nth` part (drop the
//!   N-th packet of every flow).
//! * [`flows`]: sans-IO per-flow metrics on the link (5-tuple table, TCP and
//!   QUIC milestones, goodput curves), fed by the user-space relay.
//! * [`kernel`]: the kernel tc-netem backend (qdisc construction, detection).
//! * [`ns`], [`tun`], [`relay`], [`pcap`], [`link`]: the user-space backend shell
//!   (namespaces held by file descriptors, TUN devices, the timed relay and NAT)
//!   and the `Link` that joins a client and a server namespace.
//!
//! * [`privileges`]: root, or a user namespace entered at start (no sudo);
//!   [`test_gate`]: the one gate of every test that builds links.
//!
//! netem knows nothing of HTTP.

pub mod chosen;
pub mod cpu;
pub mod csum;
pub mod flows;
pub mod gso;
pub mod ip;
pub mod kernel;
pub mod link;
pub mod model;
pub mod nat;
pub mod ns;
pub mod pcap;
pub mod privileges;
pub mod relay;
pub mod spec;
pub mod stamp;
pub mod tap;
pub mod test_gate;
#[cfg(test)]
mod testpkt;
pub mod tools;
pub mod tun;

pub use flows::{FlowReport, FlowTable, FlowsConfig, FlowsReport, Handshake};
pub use kernel::{NetemProbe, TcError};
pub use link::{Backend, Link, LinkConfig, LinkCounters, LinkError};
pub use model::{Counters, Departure, Departures, DropReason, LinkModel, Verdict};
pub use nat::{NatSchedule, RebindEvent, RebindKind};
pub use ns::NetNs;
pub use spec::{
    describe_path, sets_limit, Buffer, Chance, Delay, Distribution, LinkSpec, Loss, Rate, Reorder,
    RoundTrip, Slot, SlotDelay, SpecError, MIN_BUFFER_PACKETS,
};
