//! Sans-IO link model. (API skeleton: to be implemented.)

use crate::spec::LinkSpec;

/// Why a packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DropReason {
    /// The loss model (random, 4-state, Gilbert-Elliott) dropped it.
    Loss,
    /// The queue held `limit` packets already (tail drop).
    QueueFull,
}

/// One copy of a packet leaving the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    /// Absolute departure time, ns on the caller's clock.
    pub at_ns: u64,
    /// Flip bit `bit` (0..8) of byte `byte` (< packet len) before sending.
    pub corrupt: Option<(usize, u8)>,
    /// This copy was sent ahead of packets that arrived before it (netem reorder).
    pub reordered: bool,
}

/// What the link does with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Drop(DropReason),
    /// One departure, or two when netem's `duplicate` fired.
    Deliver(Vec<Departure>),
}

/// Per-direction counters: ground truth of what the link did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub delivered: u64,
    pub bytes_delivered: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
}

/// The model of one direction of the link.
#[derive(Debug)]
pub struct LinkModel {
    counters: Counters,
}

impl LinkModel {
    pub fn new(_spec: &LinkSpec, _seed: u64) -> Self {
        LinkModel { counters: Counters::default() }
    }

    /// Offer one packet of `len` bytes arriving at `now_ns`.
    pub fn enqueue(&mut self, now_ns: u64, len: usize) -> Verdict {
        self.counters.packets_in += 1;
        self.counters.bytes_in += len as u64;
        self.counters.delivered += 1;
        self.counters.bytes_delivered += len as u64;
        Verdict::Deliver(vec![Departure { at_ns: now_ns, corrupt: None, reordered: false }])
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}
