//! Sans-IO link model: one direction of the emulated link, faithful to Linux `sch_netem`.
//!
//! [`LinkModel::enqueue`] takes `(now, packet length)` and answers, at once, whether the
//! packet is dropped and otherwise when each copy leaves. It owns no clock and does no I/O:
//! the caller (the relay) sends each [`Departure`] at its `at_ns`, copies with equal times in
//! the order they were returned and returned earlier. Same seed and same inputs give the
//! same verdicts.
//!
//! The per-packet steps follow `netem_enqueue()` in `net/sched/sch_netem.c` in order:
//! duplicate draw, loss draw (`loss_event`: random, 4-state or Gilbert-Elliott), corruption
//! of the original, the `limit` check, the duplicate's own pass through the qdisc (loss,
//! corruption, limit, timing but no further duplication), then the original's timing: either
//! netem's reorder branch (sent at once, `counter`/`gap`) or `tabledist()` delay with
//! `get_crandom()` correlation, plus, with `rate`, serialisation behind the last queued
//! packet (`packet_time_ns`). Packets stay "in the queue" (for `limit`) until they depart.
//! Where the model differs from the kernel, and why, is in docs/link-model.md.
//!
//! Cost per packet: a handful of ChaCha8 draws and one binary-heap push/pop (O(log n) in
//! the packets in flight); the only allocation is the returned `Vec` of one or two
//! departures.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::OnceLock;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::chosen::ChosenDrops;
use crate::spec::{Distribution, LinkSpec, Loss, SlotDelay};

/// Why a packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DropReason {
    /// The loss model (random, 4-state, Gilbert-Elliott) dropped it.
    Loss,
    /// The queue held `limit` packets already (tail drop).
    QueueFull,
    /// `drop-nth` chose it (its index in its flow): see [`crate::chosen`].
    Chosen,
}

/// One copy of a packet leaving the link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Departure {
    /// Absolute departure time, ns on the caller's clock.
    pub at_ns: u64,
    /// Flip bit `bit` (0..8) of byte `byte` (< packet len) before sending.
    pub corrupt: Option<(usize, u8)>,
    /// This copy was sent ahead of packets that arrived before it (netem reorder).
    pub reordered: bool,
    /// Time this copy waits behind other packets (rate serialisation, slots): its time
    /// in the link minus its own delay and its own transmission time.
    pub queued_ns: u64,
}

/// What the link does with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Drop(DropReason),
    /// One departure, or two when netem's `duplicate` fired (the duplicate first: netem
    /// enqueues it before the original).
    Deliver(Departures),
}

/// The departures of one packet: one, or two with a duplicate. Held inline
/// (the model is asked once per wire packet: no allocation each time); reads
/// as a slice.
#[derive(Debug, Clone, Copy, Default)]
pub struct Departures {
    len: u8,
    items: [Departure; 2],
}

impl Departures {
    /// Add one; a third is refused (false): a packet leaves at most twice.
    pub fn push(&mut self, d: Departure) -> bool {
        match self.items.get_mut(self.len as usize) {
            Some(slot) => {
                *slot = d;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub fn as_slice(&self) -> &[Departure] {
        &self.items[..self.len as usize]
    }
}

impl std::ops::Deref for Departures {
    type Target = [Departure];
    fn deref(&self) -> &[Departure] {
        self.as_slice()
    }
}

impl PartialEq for Departures {
    fn eq(&self, o: &Self) -> bool {
        self.as_slice() == o.as_slice()
    }
}
impl Eq for Departures {}

impl From<&[Departure]> for Departures {
    /// The first two of `ds`.
    fn from(ds: &[Departure]) -> Self {
        let mut out = Departures::default();
        for d in ds {
            out.push(*d);
        }
        out
    }
}

impl IntoIterator for Departures {
    type Item = Departure;
    type IntoIter = std::iter::Take<std::array::IntoIter<Departure, 2>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len as usize)
    }
}

impl<'a> IntoIterator for &'a Departures {
    type Item = &'a Departure;
    type IntoIter = std::slice::Iter<'a, Departure>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl Verdict {
    /// The departures (empty for a drop).
    pub fn departures(&self) -> &[Departure] {
        match self {
            Verdict::Drop(_) => &[],
            Verdict::Deliver(d) => d,
        }
    }
}

/// Per-direction counters: ground truth of what the link did.
///
/// Counted per copy, so that `packets_in + duplicated == delivered + dropped_loss +
/// dropped_queue + dropped_chosen` always holds (a packet whose duplicate draw and loss draw both fired
/// counts one duplicate, one loss and one delivery, as in netem where the two cancel).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Copies that left (originals and duplicates).
    pub delivered: u64,
    pub bytes_delivered: u64,
    /// Copies dropped by the loss model.
    pub dropped_loss: u64,
    /// Copies dropped because the queue held `limit` packets.
    pub dropped_queue: u64,
    /// Kernel backend only (0 in the model): drops tc counts in one figure
    /// that could be either loss or queue drops (see `kernel_backend.rs`).
    #[serde(default)]
    pub dropped_unattributed: u64,
    /// Extra copies made by `duplicate`.
    pub duplicated: u64,
    /// Delivered copies with a flipped bit.
    pub corrupted: u64,
    /// Delivered copies sent at once by netem's reorder branch.
    pub reordered: u64,
    /// Delivered copies that leave before a copy that arrived earlier: any
    /// reordering the link makes (the reorder branch, or jitter through the
    /// time-sorted queue). Each counts once, however many it overtakes.
    #[serde(default)]
    pub overtaking: u64,
    /// Packets dropped by `drop-nth` (their index in their flow), apart from
    /// `dropped_loss`: see [`crate::chosen`].
    #[serde(default)]
    pub dropped_chosen: u64,
}

/// netem's `NETEM_DIST_SCALE`: table entries are in units of sigma / 8192.
const DIST_SCALE: i64 = 8192;
/// Entries per distribution table (iproute2's tables have 4096).
const TABLE_SIZE: usize = 4096;

/// `prandom`-style probability: percent -> u32 compared against a uniform u32, as tc's
/// `set_percent` (rint(p * UINT32_MAX)).
fn prob_u32(percent: f64) -> u32 {
    let v = (percent / 100.0 * u32::MAX as f64).round_ties_even();
    v.clamp(0.0, u32::MAX as f64) as u32
}

/// netem's `crndstate` / `get_crandom()`: each value is a weighted mix of a fresh uniform
/// u32 and the previous value, `rho` scaled to 2^32.
#[derive(Debug, Clone, Copy)]
struct Crnd {
    last: u32,
    rho: u32,
}

impl Crnd {
    fn new(correlation_percent: f64, rng: &mut ChaCha8Rng) -> Self {
        Crnd {
            last: rng.next_u32(),
            rho: prob_u32(correlation_percent),
        }
    }

    fn next(&mut self, rng: &mut ChaCha8Rng) -> u32 {
        let value = rng.next_u32() as u64;
        if self.rho == 0 {
            return value as u32;
        }
        let rho = self.rho as u64 + 1;
        // Cannot overflow: at most (2^32 - 1) * 2^32.
        let answer = ((value * ((1u64 << 32) - rho) + self.last as u64 * rho) >> 32) as u32;
        self.last = answer;
        answer
    }
}

/// Hand-written inverse normal CDF (P. J. Acklam's rational approximation, relative error
/// < 1.2e-9): neither std nor rand_distr offers a quantile function, and the tables need
/// quantiles (a correlated uniform picks the table entry, as in netem).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// iproute2's normal.c, computed directly: entry k is the standard normal quantile at
/// (4k + 0.5) / 16384 (what its grid search converges to), scaled by 8192, clipped to s16.
fn normal_raw(k: usize) -> f64 {
    inverse_normal_cdf((4.0 * k as f64 + 0.5) / 16384.0) * DIST_SCALE as f64
}

/// iproute2's pareto.c: alpha = 3, shifted by its mean 1.5 and scaled by 4/3.
fn pareto_entry(k: usize) -> i64 {
    let u = (65536 - 16 * k) as f64 / 65536.0;
    let v = (1.0 / u.powf(1.0 / 3.0) - 1.5) * (4.0 / 3.0) * DIST_SCALE as f64;
    v.min(32767.0).round_ties_even() as i64
}

fn clip_s16(v: i64) -> i16 {
    v.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// The tables tc would load from /usr/lib/tc/{normal,pareto,paretonormal}.dist, generated
/// once per process with the formulas of iproute2's generators.
fn dist_table(d: Distribution) -> Option<&'static [i16]> {
    static NORMAL: OnceLock<Vec<i16>> = OnceLock::new();
    static PARETO: OnceLock<Vec<i16>> = OnceLock::new();
    static PARETONORMAL: OnceLock<Vec<i16>> = OnceLock::new();
    match d {
        Distribution::Uniform => None,
        Distribution::Normal => Some(NORMAL.get_or_init(|| {
            (0..TABLE_SIZE)
                .map(|k| clip_s16(normal_raw(k).round_ties_even() as i64))
                .collect()
        })),
        Distribution::Pareto => Some(
            PARETO.get_or_init(|| (0..TABLE_SIZE).map(|k| clip_s16(pareto_entry(k))).collect()),
        ),
        Distribution::ParetoNormal => Some(PARETONORMAL.get_or_init(|| {
            (0..TABLE_SIZE)
                .map(|k| {
                    let norm = normal_raw(k).round_ties_even() as i64;
                    // C integer division truncates toward zero, as Rust's does.
                    clip_s16((norm + 3 * pareto_entry(k)) / 4)
                })
                .collect()
        })),
    }
}

/// netem's `tabledist()`: `mu` plus a `sigma`-scaled sample; uniform in [mu - sigma,
/// mu + sigma) without a table. No random draw at all when sigma is 0.
fn tabledist(
    mu: i64,
    sigma: i64,
    crnd: Option<&mut Crnd>,
    rng: &mut ChaCha8Rng,
    table: Option<&[i16]>,
) -> i64 {
    if sigma == 0 {
        return mu;
    }
    let rnd = match crnd {
        Some(c) => c.next(rng),
        None => rng.next_u32(),
    };
    match table {
        None => (rnd % (2 * sigma as u32)) as i64 + mu - sigma,
        Some(t) => {
            let t = t[rnd as usize % t.len()] as i64;
            let mut x = (sigma % DIST_SCALE) * t;
            if x >= 0 {
                x += DIST_SCALE / 2;
            } else {
                x -= DIST_SCALE / 2;
            }
            x / DIST_SCALE + (sigma / DIST_SCALE) * t + mu
        }
    }
}

#[derive(Debug)]
enum LossModel {
    None,
    Random {
        p: u32,
        cor: Crnd,
    },
    /// `loss_4state`: a1 = p13, a2 = p31, a3 = p32, a4 = p14, a5 = p23.
    FourState {
        state: FourState,
        a1: u64,
        a2: u64,
        a3: u64,
        a4: u64,
        a5: u64,
    },
    /// `loss_gilb_ell`: a1 = p, a2 = r, a3 = h, a4 = 1-k.
    Gilbert {
        bad: bool,
        a1: u32,
        a2: u32,
        a3: u32,
        a4: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FourState {
    TxInGap,
    TxInBurst,
    LostInBurst,
    LostInGap,
}

#[derive(Debug)]
struct RateCfg {
    bits_per_sec: u64,
    packet_overhead: i64,
    cell_size: u64,
    cell_overhead: i64,
}

impl RateCfg {
    /// netem's `packet_time_ns()`, in bits/s rather than the kernel's bytes/s (tc truncates
    /// the rate to whole bytes/s; we keep the exact bit rate).
    fn packet_time_ns(&self, len: usize) -> i64 {
        let mut len = (len as i64 + self.packet_overhead).max(0) as u64;
        if let Some(mut cells) = len.checked_div(self.cell_size) {
            if len > cells * self.cell_size {
                cells += 1;
            }
            len = (cells as i64 * (self.cell_size as i64 + self.cell_overhead)).max(0) as u64;
        }
        (len as u128 * 8 * 1_000_000_000 / self.bits_per_sec as u128).min(i64::MAX as u128) as i64
    }
}

#[derive(Debug)]
struct SlotState {
    delay: SlotDelay,
    table: Option<&'static [i16]>,
    max_packets: i64,
    max_bytes: i64,
    /// netem's `slot_next`: when the current (or next) slot opens.
    next: u64,
    packets_left: i64,
    bytes_left: i64,
}

impl SlotState {
    /// netem's `get_slot_next()` delay draw.
    fn draw(&self, rng: &mut ChaCha8Rng) -> u64 {
        match self.delay {
            SlotDelay::Range { min_ns, max_ns } => {
                min_ns + (((max_ns - min_ns) as u128 * rng.next_u32() as u128) >> 32) as u64
            }
            SlotDelay::Distribution {
                delay_ns,
                jitter_ns,
                ..
            } => {
                let sigma = jitter_ns.min(i32::MAX as u64) as i64;
                tabledist(delay_ns as i64, sigma, None, rng, self.table).max(0) as u64
            }
        }
    }

    fn open_next(&mut self, at: u64, rng: &mut ChaCha8Rng) {
        self.next = at.saturating_add(self.draw(rng));
        self.packets_left = self.max_packets;
        self.bytes_left = self.max_bytes;
    }

    /// When a packet that arrived at `now` and is due at `ready` really leaves. netem gates
    /// dequeue at run time; here the slots are assigned at enqueue, in arrival order: a
    /// packet due by the pending slot leaves in it; one due later re-arms the slot the way
    /// netem's dequeue would (from the later of `now` and the old slot, and if that slot
    /// still opens too early, from `ready`); a slot whose packet or byte budget runs out
    /// arms the next one from its own opening time.
    fn gate(&mut self, now: u64, ready: u64, len: usize, rng: &mut ChaCha8Rng) -> u64 {
        if ready > self.next {
            self.open_next(now.max(self.next), rng);
            if self.next < ready {
                self.open_next(ready, rng);
            }
        }
        let at = self.next;
        self.packets_left -= 1;
        self.bytes_left -= len as i64;
        if self.packets_left <= 0 || self.bytes_left <= 0 {
            self.open_next(at, rng);
        }
        at
    }
}

/// The loss model of a spec's `loss` option (netem's `get_loss_clg`); a
/// random loss with correlation draws its generator's start from `rng`.
fn loss_model(loss: Option<Loss>, rng: &mut ChaCha8Rng) -> LossModel {
    match loss {
        None => LossModel::None,
        Some(Loss::Random(c)) => LossModel::Random {
            p: prob_u32(c.percent),
            cor: Crnd::new(c.correlation, rng),
        },
        Some(Loss::State {
            p13,
            p31,
            p32,
            p23,
            p14,
        }) => LossModel::FourState {
            state: FourState::TxInGap,
            a1: prob_u32(p13) as u64,
            a2: prob_u32(p31) as u64,
            a3: prob_u32(p32) as u64,
            a4: prob_u32(p14) as u64,
            a5: prob_u32(p23) as u64,
        },
        Some(Loss::GilbertElliott {
            p,
            r,
            one_minus_h,
            one_minus_k,
        }) => LossModel::Gilbert {
            bad: false,
            a1: prob_u32(p),
            a2: prob_u32(r),
            // tc sends h = UINT32_MAX - (1-h)
            a3: u32::MAX - prob_u32(one_minus_h),
            a4: prob_u32(one_minus_k),
        },
    }
}

/// The departure times of the copies still in the emulator, as a multiset:
/// how many there are (what `limit` is compared with) and which have left.
///
/// Times handed out in order (no jitter, no reordering: the common case)
/// go into a FIFO, O(1) each; one earlier than the FIFO's tail goes into a
/// min-heap. Both stay sorted, so expiring from the front of each removes
/// exactly the copies a single heap would.
#[derive(Debug, Default)]
struct InFlight {
    fifo: VecDeque<u64>,
    heap: BinaryHeap<Reverse<u64>>,
}

impl InFlight {
    fn with_capacity(n: usize) -> Self {
        InFlight {
            fifo: VecDeque::with_capacity(n),
            heap: BinaryHeap::new(),
        }
    }

    fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    fn push(&mut self, at_ns: u64) {
        match self.fifo.back() {
            Some(&b) if b > at_ns => self.heap.push(Reverse(at_ns)),
            _ => self.fifo.push_back(at_ns),
        }
    }

    /// Forget the copies that left at or before `now`.
    fn expire(&mut self, now: u64) {
        while self.fifo.front().is_some_and(|&t| t <= now) {
            self.fifo.pop_front();
        }
        while self.heap.peek().is_some_and(|Reverse(t)| *t <= now) {
            self.heap.pop();
        }
    }
}

/// The model of one direction of the link.
#[derive(Debug)]
pub struct LinkModel {
    rng: ChaCha8Rng,
    latency: i64,
    jitter: i64,
    table: Option<&'static [i16]>,
    delay_cor: Crnd,
    loss: LossModel,
    duplicate: u32,
    dup_cor: Crnd,
    corrupt: u32,
    corrupt_cor: Crnd,
    reorder: u32,
    reorder_cor: Crnd,
    gap: u32,
    counter: u32,
    rate: Option<RateCfg>,
    slot: Option<SlotState>,
    limit: usize,
    /// Departure times of the copies still in the emulator.
    queue: InFlight,
    /// Largest time_to_send handed out so far: netem's "last packet in the queue" for rate.
    last_tts: i64,
    /// Latest departure handed out so far (for `Counters::overtaking`).
    latest_departure_ns: u64,
    counters: Counters,
    /// `drop-nth`, asked before everything else by [`LinkModel::enqueue_packet`].
    chosen: Option<ChosenDrops>,
}

impl LinkModel {
    /// A model for `spec`, its randomness seeded from `seed` (or from the spec's own
    /// `seed` option when it has one).
    pub fn new(spec: &LinkSpec, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.unwrap_or(seed));
        let delay = spec.delay.unwrap_or(crate::spec::Delay {
            latency_ns: 0,
            jitter_ns: 0,
            correlation: 0.0,
            distribution: Distribution::Uniform,
        });
        // The correlated generators start from a random value, as netem's init_crandom.
        let delay_cor = Crnd::new(delay.correlation, &mut rng);
        let loss = loss_model(spec.loss, &mut rng);
        let dup = spec
            .duplicate
            .map_or((0, 0.0), |c| (prob_u32(c.percent), c.correlation));
        let dup_cor = Crnd::new(dup.1, &mut rng);
        let cor = spec
            .corrupt
            .map_or((0, 0.0), |c| (prob_u32(c.percent), c.correlation));
        let corrupt_cor = Crnd::new(cor.1, &mut rng);
        // tc leaves gap 0 (no reordering) unless the reorder probability is non-zero.
        let (reorder, reorder_corr, gap) = match spec.reorder {
            Some(r) if r.percent > 0.0 => (prob_u32(r.percent), r.correlation, r.gap.max(1)),
            _ => (0, 0.0, 0),
        };
        let reorder_cor = Crnd::new(reorder_corr, &mut rng);
        let rate = spec.rate.map(|r| RateCfg {
            bits_per_sec: r.bits_per_sec.max(1),
            packet_overhead: r.packet_overhead as i64,
            cell_size: r.cell_size as u64,
            cell_overhead: r.cell_overhead as i64,
        });
        let slot = spec.slot.map(|s| {
            let max_packets = if s.max_packets == 0 {
                i32::MAX as i64
            } else {
                s.max_packets as i64
            };
            let max_bytes = if s.max_bytes == 0 {
                i32::MAX as i64
            } else {
                s.max_bytes as i64
            };
            SlotState {
                delay: s.delay,
                table: match s.delay {
                    SlotDelay::Distribution { distribution, .. } => dist_table(distribution),
                    SlotDelay::Range { .. } => None,
                },
                max_packets,
                max_bytes,
                next: 0,
                packets_left: max_packets,
                bytes_left: max_bytes,
            }
        });
        let limit = spec.limit.max(1) as usize;
        LinkModel {
            rng,
            latency: delay.latency_ns.min(i64::MAX as u64) as i64,
            // netem caps jitter to what tabledist() accepts.
            jitter: delay.jitter_ns.min(i32::MAX as u64) as i64,
            table: dist_table(delay.distribution),
            delay_cor,
            loss,
            duplicate: dup.0,
            dup_cor,
            corrupt: cor.0,
            corrupt_cor,
            reorder,
            reorder_cor,
            gap,
            counter: 0,
            rate,
            slot,
            limit,
            queue: InFlight::with_capacity(limit.min(4096)),
            last_tts: i64::MIN,
            latest_departure_ns: 0,
            counters: Counters::default(),
            chosen: ChosenDrops::new(&spec.drop_nth),
        }
    }

    /// Offer one packet of `len` bytes arriving at `now_ns`. Calls must come with
    /// non-decreasing `now_ns`.
    pub fn enqueue(&mut self, now_ns: u64, len: usize) -> Verdict {
        self.counters.packets_in += 1;
        self.counters.bytes_in += len as u64;
        self.expire(now_ns);

        let mut count = 1;
        if self.duplicate != 0 && self.duplicate >= self.dup_cor.next(&mut self.rng) {
            count += 1;
            self.counters.duplicated += 1;
        }
        // The user-space model cannot mark ECN (it never sees the header bits): with `ecn`
        // it drops, as netem does for packets that are not ECN-capable.
        if self.loss_event() {
            count -= 1;
            self.counters.dropped_loss += 1;
        }
        if count == 0 {
            return Verdict::Drop(DropReason::Loss);
        }
        let corrupt = self.corrupt_draw(len);
        if self.queue.len() >= self.limit {
            self.counters.dropped_queue += count as u64;
            return Verdict::Drop(DropReason::QueueFull);
        }
        let mut out = Departures::default();
        if count > 1 {
            // netem re-enqueues the clone at the root qdisc (itself) before queueing the
            // original: a full pass of its own, without a second duplication.
            if self.loss_event() {
                self.counters.dropped_loss += 1;
            } else {
                let dup_corrupt = self.corrupt_draw(len);
                if self.queue.len() >= self.limit {
                    self.counters.dropped_queue += 1;
                } else {
                    out.push(self.schedule(now_ns, len, dup_corrupt));
                }
            }
        }
        out.push(self.schedule(now_ns, len, corrupt));
        for d in &out {
            self.counters.delivered += 1;
            self.counters.bytes_delivered += len as u64;
            self.counters.corrupted += d.corrupt.is_some() as u64;
            self.counters.reordered += d.reordered as u64;
            self.counters.overtaking += (d.at_ns < self.latest_departure_ns) as u64;
            self.latest_departure_ns = self.latest_departure_ns.max(d.at_ns);
        }
        Verdict::Deliver(out)
    }

    /// Offer one whole IP packet arriving at `now_ns`: `drop-nth` decides first (a
    /// chosen packet is counted `dropped_chosen` and draws nothing from the random
    /// impairments), then [`LinkModel::enqueue`] with its length.
    pub fn enqueue_packet(&mut self, now_ns: u64, pkt: &[u8]) -> Verdict {
        if let Some(c) = self.chosen.as_mut() {
            if c.decide(pkt) {
                self.counters.packets_in += 1;
                self.counters.bytes_in += pkt.len() as u64;
                self.counters.dropped_chosen += 1;
                return Verdict::Drop(DropReason::Chosen);
            }
        }
        self.enqueue(now_ns, pkt.len())
    }

    /// Arm (drop) or disarm (only count) `drop-nth`; false when the spec has none.
    pub fn set_chosen_armed(&mut self, armed: bool) -> bool {
        match self.chosen.as_mut() {
            Some(c) => {
                c.set_armed(armed);
                true
            }
            None => false,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Copies still inside the emulator at `now_ns` (departure time later than `now_ns`):
    /// what `limit` is compared with.
    pub fn in_flight(&mut self, now_ns: u64) -> usize {
        self.expire(now_ns);
        self.queue.len()
    }

    /// The standing queue at `now_ns`: copies still inside, and how much longer
    /// than the base delay a copy arriving now would wait behind them (0 without
    /// a backlog). Read-only apart from expiring departed copies.
    pub fn standing_queue(&mut self, now_ns: u64) -> (usize, u64) {
        let n = self.in_flight(now_ns);
        let now = now_ns.min(i64::MAX as u64) as i64;
        let wait = self
            .last_tts
            .saturating_sub(now)
            .saturating_sub(self.latency);
        (n, wait.max(0) as u64)
    }

    fn expire(&mut self, now: u64) {
        self.queue.expire(now);
    }

    /// netem's `loss_event()`.
    fn loss_event(&mut self) -> bool {
        let rng = &mut self.rng;
        match &mut self.loss {
            LossModel::None => false,
            LossModel::Random { p, cor } => *p != 0 && *p >= cor.next(rng),
            LossModel::FourState {
                state,
                a1,
                a2,
                a3,
                a4,
                a5,
            } => {
                let rnd = rng.next_u32() as u64;
                match *state {
                    FourState::TxInGap => {
                        if rnd < *a4 {
                            *state = FourState::LostInGap;
                            true
                        } else if rnd < *a1 + *a4 {
                            *state = FourState::LostInBurst;
                            true
                        } else {
                            false
                        }
                    }
                    FourState::TxInBurst => {
                        if rnd < *a5 {
                            *state = FourState::LostInBurst;
                            true
                        } else {
                            false
                        }
                    }
                    FourState::LostInBurst => {
                        if rnd < *a3 {
                            *state = FourState::TxInBurst;
                            false
                        } else if rnd < *a2 + *a3 {
                            *state = FourState::TxInGap;
                            false
                        } else {
                            true
                        }
                    }
                    FourState::LostInGap => {
                        *state = FourState::TxInGap;
                        false
                    }
                }
            }
            // The loss draw uses the state the packet found, the transition happens first
            // (as in the kernel).
            LossModel::Gilbert {
                bad,
                a1,
                a2,
                a3,
                a4,
            } => {
                if !*bad {
                    if rng.next_u32() < *a1 {
                        *bad = true;
                    }
                    rng.next_u32() < *a4
                } else {
                    if rng.next_u32() < *a2 {
                        *bad = false;
                    }
                    rng.next_u32() > *a3
                }
            }
        }
    }

    /// netem's corruption: one random bit of one random byte (none for an empty packet).
    fn corrupt_draw(&mut self, len: usize) -> Option<(usize, u8)> {
        if self.corrupt != 0 && self.corrupt >= self.corrupt_cor.next(&mut self.rng) && len > 0 {
            let byte = self.rng.random_range(0..len);
            let bit = self.rng.random_range(0..8u8);
            Some((byte, bit))
        } else {
            None
        }
    }

    /// The tail of netem_enqueue(): reorder branch or delay (+ rate), then slots; the copy
    /// joins the queue until it departs.
    fn schedule(&mut self, now_ns: u64, len: usize, corrupt: Option<(usize, u8)>) -> Departure {
        let now = now_ns.min(i64::MAX as u64) as i64;
        let delayed = self.gap == 0
            || self.counter < self.gap - 1
            || self.reorder < self.reorder_cor.next(&mut self.rng);
        let mut queued_ns = 0;
        let at_ns = if delayed {
            let mut delay = tabledist(
                self.latency,
                self.jitter,
                Some(&mut self.delay_cor),
                &mut self.rng,
                self.table,
            );
            let mut base = now;
            // What this packet alone would take: its delay and its transmission.
            let mut alone = delay.max(0);
            if let Some(rate) = &self.rate {
                // Serialise behind the last packet still queued: its send time becomes the
                // reference and the delay is reduced by the time it already waits.
                if self.last_tts > now {
                    delay = (delay - (self.last_tts - now)).max(0);
                    base = self.last_tts;
                }
                delay = delay.saturating_add(rate.packet_time_ns(len));
                alone = alone.saturating_add(rate.packet_time_ns(len));
            }
            let tts = base.saturating_add(delay);
            self.last_tts = self.last_tts.max(tts);
            self.counter = self.counter.wrapping_add(1);
            // A negative delay (jitter larger than the delay) means "now".
            let ready = tts.max(now) as u64;
            let at = match &mut self.slot {
                Some(slot) => slot.gate(now_ns, ready, len, &mut self.rng),
                None => ready,
            };
            queued_ns = at.saturating_sub(now_ns.saturating_add(alone as u64));
            at
        } else {
            // netem puts the packet at the head of the queue, to leave at once.
            self.counter = 0;
            now_ns
        };
        self.queue.push(at_ns);
        Departure {
            at_ns,
            corrupt,
            reordered: !delayed,
            queued_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const US: u64 = 1_000;

    fn spec(s: &str) -> LinkSpec {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    /// The in-flight set with its FIFO fast path counts exactly what one
    /// min-heap would, in order and out of order.
    #[test]
    fn in_flight_counts_like_a_heap() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for shuffle in [0u32, 1, 20, 100] {
            let (mut q, mut h) = (InFlight::default(), BinaryHeap::new());
            let mut now = 0u64;
            for _ in 0..20_000 {
                now += rng.random_range(0..5);
                let mut at = now + 30;
                if rng.random_range(0..100) < shuffle {
                    at = now + rng.random_range(0..60);
                }
                q.push(at);
                h.push(Reverse(at));
                if rng.random_range(0..4) == 0 {
                    q.expire(now);
                    while h.peek().is_some_and(|Reverse(t)| *t <= now) {
                        h.pop();
                    }
                    assert_eq!(q.len(), h.len(), "shuffle {shuffle}%");
                }
            }
        }
    }

    /// `n` packets of `len` bytes, one every `every_ns`, starting at 0.
    fn run(s: &str, seed: u64, n: usize, every_ns: u64, len: usize) -> (Vec<Verdict>, LinkModel) {
        let mut m = LinkModel::new(&spec(s), seed);
        let v = (0..n)
            .map(|i| m.enqueue(i as u64 * every_ns, len))
            .collect();
        (v, m)
    }

    /// |k - n p| within the two-sided 99.9 % normal interval of a binomial.
    fn assert_binomial(k: usize, n: usize, p: f64, what: &str) {
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (k as f64 - mean).abs() <= 3.2905 * sd + 1.0,
            "{what}: {k} of {n}, expected {mean:.1} ± {:.1}",
            3.2905 * sd
        );
    }

    fn mean_sd(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    fn lag1_autocorrelation(x: &[f64]) -> f64 {
        let (mean, sd) = mean_sd(x);
        let cov = x
            .windows(2)
            .map(|w| (w[0] - mean) * (w[1] - mean))
            .sum::<f64>()
            / (x.len() - 1) as f64;
        cov / (sd * sd)
    }

    /// Delay of every single delivered copy (ns), from a run of evenly spaced packets.
    fn delays(s: &str, n: usize, every_ns: u64) -> Vec<f64> {
        let (v, _) = run(s, 1, n, every_ns, 100);
        v.iter()
            .enumerate()
            .map(|(i, v)| match v {
                Verdict::Deliver(d) if d.len() == 1 => (d[0].at_ns - i as u64 * every_ns) as f64,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn losses(v: &[Verdict]) -> Vec<bool> {
        v.iter()
            .map(|v| matches!(v, Verdict::Drop(DropReason::Loss)))
            .collect()
    }

    /// Mean length of runs of consecutive `true`.
    fn mean_run(x: &[bool]) -> f64 {
        let (mut runs, mut total, mut cur) = (0usize, 0usize, 0usize);
        for &b in x.iter().chain([false].iter()) {
            if b {
                cur += 1;
            } else if cur > 0 {
                runs += 1;
                total += cur;
                cur = 0;
            }
        }
        total as f64 / runs as f64
    }

    /// The queueing a departure reports is its wait behind others: none below the
    /// rate, the backlog beyond the delay above it.
    #[test]
    fn departures_report_their_queueing() {
        let (v, _) = run("delay 10ms rate 10mbit", 1, 100, MS, 1250);
        assert!(v.iter().all(|v| v.departures()[0].queued_ns == 0));
        // 1250 bytes at 10 Mbit/s = 1 ms each; 40 at once: the k-th (0-based)
        // waits k ms behind the others.
        let mut m = LinkModel::new(&spec("delay 10ms rate 10mbit"), 1);
        let q: Vec<u64> = (0..40)
            .map(|_| m.enqueue(0, 1250).departures()[0].queued_ns)
            .collect();
        assert_eq!((q[0], q[10], q[39]), (0, 10 * MS, 39 * MS), "{q:?}");
    }

    fn assert_invariant(c: &Counters) {
        assert_eq!(
            c.packets_in + c.duplicated,
            c.delivered + c.dropped_loss + c.dropped_queue + c.dropped_chosen,
            "{c:?}"
        );
    }

    /// `drop-nth` drops the chosen index of each flow before the random impairments,
    /// counts it apart, and leaves the random streams as they would be without the
    /// dropped packet.
    #[test]
    fn chosen_drops_come_first_and_are_counted_apart() {
        use crate::testpkt::{l4, v4, C4, S4};
        let syn = |port: u16| v4(6, C4, S4, l4(6, port, 443, 1, 0x02, &[]));
        let mut m = LinkModel::new(&spec("delay 10ms loss 30% drop-nth 1"), 5);
        let mut plain = LinkModel::new(&spec("delay 10ms loss 30%"), 5);
        let mut chosen = 0;
        for i in 0..2000u64 {
            let p = syn(1000 + (i % 100) as u16);
            let v = m.enqueue_packet(i * US, &p);
            if i < 100 {
                // Each of the 100 flows' first packet.
                assert_eq!(v, Verdict::Drop(DropReason::Chosen), "packet {i}");
                chosen += 1;
            } else {
                // Same random draws as a model that never saw the chosen packets.
                assert_eq!(v, plain.enqueue_packet(i * US, &p), "packet {i}");
            }
            assert_invariant(m.counters());
        }
        let c = m.counters();
        assert_eq!((c.dropped_chosen, c.packets_in), (chosen, 2000));
        assert_eq!(c.dropped_loss, plain.counters().dropped_loss);
        // A spec without drop-nth has nothing to arm.
        assert!(!plain.set_chosen_armed(true));
        assert!(m.set_chosen_armed(false));
        assert!(matches!(
            m.enqueue_packet(1_000_000 * US, &syn(9)),
            Verdict::Deliver(_) | Verdict::Drop(DropReason::Loss)
        ));
        assert_eq!(m.counters().dropped_chosen, chosen);
    }

    #[test]
    fn no_impairment_delivers_at_once() {
        let (v, m) = run("", 1, 1000, US, 1200);
        for (i, v) in v.iter().enumerate() {
            assert_eq!(
                v,
                &Verdict::Deliver(Departures::from(
                    &[Departure {
                        at_ns: i as u64 * US,
                        corrupt: None,
                        reordered: false,
                        queued_ns: 0,
                    }][..]
                ))
            );
        }
        let c = m.counters();
        assert_eq!(
            (c.packets_in, c.delivered, c.bytes_in, c.bytes_delivered),
            (1000, 1000, 1_200_000, 1_200_000)
        );
    }

    #[test]
    fn random_loss_rate_is_binomial() {
        let n = 100_000;
        for (s, p) in [
            ("loss 0.1%", 0.001),
            ("loss 1%", 0.01),
            ("loss 5%", 0.05),
            ("loss 20%", 0.2),
            ("loss 50%", 0.5),
        ] {
            let (v, m) = run(s, 11, n, US, 100);
            let k = losses(&v).iter().filter(|&&l| l).count();
            assert_binomial(k, n, p, s);
            assert_eq!(m.counters().dropped_loss, k as u64);
            assert_invariant(m.counters());
        }
        let (v, _) = run("loss 0%", 1, 10_000, US, 100);
        assert!(!losses(&v).contains(&true));
        let (v, _) = run("loss 100%", 1, 10_000, US, 100);
        assert!(!losses(&v).contains(&false));
    }

    #[test]
    fn gilbert_elliott_mean_loss_and_burst_length() {
        let n = 1_000_000;
        // Simple Gilbert: bad state always loses, good never: loss p/(p+r), bursts 1/r.
        let (v, m) = run("loss gemodel 1% 10%", 3, n, US, 100);
        let l = losses(&v);
        let rate = l.iter().filter(|&&x| x).count() as f64 / n as f64;
        let want = 0.01 / 0.11;
        assert!((rate / want - 1.0).abs() < 0.06, "loss {rate} vs {want}");
        let burst = mean_run(&l);
        assert!((burst / 10.0 - 1.0).abs() < 0.05, "burst {burst} vs 10");
        assert_invariant(m.counters());
        // Full Gilbert-Elliott: lossy in both states.
        let s = "loss gemodel 2% 20% 60% 1%";
        let (v, _) = run(s, 4, n, US, 100);
        let rate = losses(&v).iter().filter(|&&x| x).count() as f64 / n as f64;
        let want = spec(s).loss_probability();
        assert!((rate / want - 1.0).abs() < 0.05, "loss {rate} vs {want}");
    }

    #[test]
    fn four_state_mean_loss_and_burst_length() {
        let n = 1_000_000;
        // With tc's defaults for p32/p23/p14 it is the 2-state Gilbert chain.
        let (v, _) = run("loss state 1% 10%", 5, n, US, 100);
        let l = losses(&v);
        let rate = l.iter().filter(|&&x| x).count() as f64 / n as f64;
        let want = 0.01 / 0.11;
        assert!((rate / want - 1.0).abs() < 0.06, "loss {rate} vs {want}");
        let burst = mean_run(&l);
        assert!((burst / 10.0 - 1.0).abs() < 0.05, "burst {burst} vs 10");
        // All four states in play: compare with the chain's stationary loss.
        let s = "loss state 2% 30% 20% 40% 1%";
        let (v, _) = run(s, 6, n, US, 100);
        let rate = losses(&v).iter().filter(|&&x| x).count() as f64 / n as f64;
        let want = spec(s).loss_probability();
        assert!((rate / want - 1.0).abs() < 0.05, "loss {rate} vs {want}");
        // Only isolated losses (p14): never two in a row.
        let (v, _) = run("loss state 0% 100% 0% 100% 10%", 7, 100_000, US, 100);
        let l = losses(&v);
        assert!(l.windows(2).all(|w| !(w[0] && w[1])));
        let k = l.iter().filter(|&&x| x).count();
        assert!((k as f64 / 100_000.0 - 0.1 / 1.1).abs() < 0.005, "{k}");
    }

    #[test]
    fn constant_delay_without_jitter() {
        let d = delays("delay 20ms", 10_000, 137 * US);
        assert!(d.iter().all(|&x| x == 20.0 * MS as f64));
    }

    #[test]
    fn uniform_jitter_mean_and_spread() {
        let d = delays("delay 50ms 10ms", 100_000, 100 * US);
        let (mean, sd) = mean_sd(&d);
        assert!((mean - 50e6).abs() < 100e3, "mean {mean}");
        let want_sd = 10e6 / 3f64.sqrt();
        assert!((sd / want_sd - 1.0).abs() < 0.01, "sd {sd} vs {want_sd}");
        assert!(d.iter().all(|&x| (40e6..60e6).contains(&x)));
    }

    #[test]
    fn normal_jitter_mean_and_spread() {
        let d = delays("delay 50ms 10ms distribution normal", 100_000, 100 * US);
        let (mean, sd) = mean_sd(&d);
        assert!((mean - 50e6).abs() < 150e3, "mean {mean}");
        assert!((sd / 10e6 - 1.0).abs() < 0.02, "sd {sd}");
        // about 95.4 % within two sigma
        let within = d.iter().filter(|&&x| (x - 50e6).abs() < 20e6).count() as f64 / d.len() as f64;
        assert!((within - 0.9545).abs() < 0.005, "{within}");
    }

    #[test]
    fn pareto_tails_are_heavier() {
        let tail = |s: &str| {
            let d = delays(s, 100_000, 100 * US);
            let beyond =
                d.iter().filter(|&&x| x > 50e6 + 2.0 * 10e6).count() as f64 / d.len() as f64;
            let (mean, sd) = mean_sd(&d);
            let skew = d.iter().map(|x| ((x - mean) / sd).powi(3)).sum::<f64>() / d.len() as f64;
            let min = d.iter().cloned().fold(f64::INFINITY, f64::min);
            (beyond, skew, min)
        };
        let (normal, normal_skew, _) = tail("delay 50ms 10ms distribution normal");
        let (pareto, pareto_skew, pareto_min) = tail("delay 50ms 10ms distribution pareto");
        let (pn, pn_skew, _) = tail("delay 50ms 10ms distribution paretonormal");
        assert!(pareto > 1.4 * normal, "pareto {pareto} vs normal {normal}");
        assert!(pn > normal, "paretonormal {pn} vs normal {normal}");
        assert!(normal_skew.abs() < 0.05, "{normal_skew}");
        assert!(
            pareto_skew > 1.0 && pn_skew > 0.5,
            "{pareto_skew} {pn_skew}"
        );
        // iproute2's pareto table starts at (1 - 1.5) * 4/3 sigma
        assert!(pareto_min >= 50e6 - 0.667 * 10e6, "{pareto_min}");
    }

    #[test]
    fn jitter_reorders_unless_rate_serialises() {
        let inversions = |s: &str| {
            let (v, _) = run(s, 9, 10_000, MS, 100);
            let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
            t.windows(2).filter(|w| w[1] < w[0]).count()
        };
        assert!(
            inversions("delay 50ms 10ms") > 1000,
            "jitter through the time-sorted queue reorders"
        );
        assert_eq!(
            inversions("delay 50ms 10ms rate 100mbit"),
            0,
            "rate bases each packet on the last"
        );
    }

    /// `overtaking` counts every copy that leaves before one that arrived
    /// earlier, whatever the cause; `reordered` only the reorder branch's.
    #[test]
    fn overtaking_counts_jitter_and_the_reorder_branch() {
        let count = |s: &str| {
            let mut m = LinkModel::new(&s.parse::<LinkSpec>().unwrap(), 9);
            let mut latest = 0;
            let mut by_hand = 0;
            for i in 0..10_000u64 {
                if let Verdict::Deliver(d) = m.enqueue(i * MS, 100) {
                    for d in d {
                        by_hand += (d.at_ns < latest) as u64;
                        latest = latest.max(d.at_ns);
                    }
                }
            }
            let c = m.counters().clone();
            assert_eq!(c.overtaking, by_hand, "{s}");
            c
        };
        let c = count("delay 50ms 10ms");
        assert!(c.overtaking > 1000 && c.reordered == 0, "{c:?}");
        let c = count("delay 10ms reorder 25% gap 5");
        // Every packet sent at once overtakes the ones in their 10 ms delay.
        assert_eq!(c.overtaking, c.reordered, "{c:?}");
        assert!(c.reordered > 1000, "{c:?}");
        let c = count("delay 10ms rate 100mbit");
        assert_eq!(c.overtaking, 0, "{c:?}");
    }

    #[test]
    fn correlation_raises_lag1_autocorrelation() {
        let n = 200_000;
        let ac = |s: &str| {
            let (v, _) = run(s, 13, n, US, 100);
            let x: Vec<f64> = losses(&v).iter().map(|&l| l as u8 as f64).collect();
            lag1_autocorrelation(&x)
        };
        let plain = ac("loss 50%");
        let correlated = ac("loss 50% 50%");
        assert!(plain.abs() < 0.015, "{plain}");
        assert!(correlated > 0.2, "{correlated}");
        // Duplicates too.
        let dup_ac = |s: &str| {
            let (v, _) = run(s, 14, n, US, 100);
            let x: Vec<f64> = v
                .iter()
                .map(|v| (v.departures().len() == 2) as u8 as f64)
                .collect();
            lag1_autocorrelation(&x)
        };
        assert!(dup_ac("duplicate 50%").abs() < 0.015);
        assert!(dup_ac("duplicate 50% 50%") > 0.2);
    }

    /// netem's correlated generator narrows the distribution of its output around 2^31,
    /// so a correlated loss below 50 % loses far less than asked (the reason the man page
    /// deprecates loss correlation). Faithfully reproduced.
    #[test]
    fn loss_correlation_biases_the_rate_like_netem() {
        let n = 200_000;
        let rate = |s: &str| {
            let (v, _) = run(s, 21, n, US, 100);
            losses(&v).iter().filter(|&&l| l).count() as f64 / n as f64
        };
        assert!((rate("loss 10%") - 0.1).abs() < 0.005);
        assert!(rate("loss 10% 25%") < 0.09);
        assert!(rate("loss 10% 75%") < 0.001);
        assert!(
            (rate("loss 50% 75%") - 0.5).abs() < 0.02,
            "symmetric around 50 %"
        );
    }

    /// netem picks the jitter with `rnd % (2 * jitter)`, which keeps the correlation only
    /// when the jitter is comparable to 2^32 ns: a faithful quirk (docs/link-model.md).
    #[test]
    fn delay_correlation_is_as_weak_as_netems() {
        let small = lag1_autocorrelation(&delays("delay 100ms 10ms 90% limit 100000", 50_000, MS));
        let huge = lag1_autocorrelation(&delays("delay 2s 1s 90% limit 100000", 50_000, MS));
        assert!(small.abs() < 0.03, "{small}");
        assert!(huge > 0.5, "{huge}");
    }

    #[test]
    fn reorder_fraction_and_gap() {
        let n = 100_000;
        let (v, m) = run("delay 10ms reorder 25% limit 100000", 15, n, US, 100);
        let mut k = 0;
        for (i, v) in v.iter().enumerate() {
            let d = v.departures()[0];
            let now = i as u64 * US;
            if d.reordered {
                k += 1;
                assert_eq!(d.at_ns, now, "reordered packets go out at once");
            } else {
                assert_eq!(d.at_ns, now + 10 * MS);
            }
        }
        assert_binomial(k, n, 0.25, "reorder 25%");
        assert_eq!(m.counters().reordered, k as u64);

        // gap 5 with 100 %: exactly every 5th packet goes out at once.
        let (v, _) = run("delay 10ms reorder 100% gap 5", 1, 100, US, 100);
        for (i, v) in v.iter().enumerate() {
            assert_eq!(v.departures()[0].reordered, i % 5 == 4, "packet {i}");
        }
        // gap 3 with 50 %: two delayed packets after each reordered one, then a coin flip
        // per packet: cycles of 2 + 2 packets on average, so a quarter reordered.
        let (v, _) = run("delay 10ms reorder 50% gap 3 limit 100000", 2, n, US, 100);
        let r: Vec<bool> = v.iter().map(|v| v.departures()[0].reordered).collect();
        let positions: Vec<usize> = r.iter().enumerate().filter(|x| *x.1).map(|x| x.0).collect();
        assert!(positions[0] >= 2);
        assert!(positions.windows(2).all(|w| w[1] - w[0] >= 3));
        let frac = positions.len() as f64 / n as f64;
        assert!((frac - 0.25).abs() < 0.01, "{frac}");
        // reorder 0 % never reorders
        let (v, _) = run("delay 10ms reorder 0% limit 100000", 2, 10_000, US, 100);
        assert!(v.iter().all(|v| !v.departures()[0].reordered));
    }

    #[test]
    fn duplicate_rate_and_copies() {
        let n = 100_000;
        let (v, m) = run("delay 5ms duplicate 5% limit 100000", 17, n, US, 700);
        let k = v.iter().filter(|v| v.departures().len() == 2).count();
        assert_binomial(k, n, 0.05, "duplicate 5%");
        for (i, v) in v.iter().enumerate() {
            for d in v.departures() {
                assert_eq!(d.at_ns, i as u64 * US + 5 * MS);
            }
        }
        let c = m.counters();
        assert_eq!(c.duplicated, k as u64);
        assert_eq!(c.delivered, (n + k) as u64);
        assert_eq!(c.bytes_delivered, (n + k) as u64 * 700);
        assert_invariant(c);
        // A duplicate draw and a loss draw on the same packet cancel: one copy leaves.
        let (v, m) = run("duplicate 100% loss 100%", 1, 1000, US, 100);
        assert!(v.iter().all(|v| v.departures().len() == 1));
        let c = m.counters();
        assert_eq!(
            (c.duplicated, c.dropped_loss, c.delivered),
            (1000, 1000, 1000)
        );
        assert_invariant(c);
        // Otherwise the duplicate has its own loss draw.
        let (_, m) = run("duplicate 100% loss 30%", 1, 100_000, US, 100);
        let c = m.counters();
        assert_invariant(c);
        // The original's loss draw cancels the duplicate (1 copy, p 0.3); otherwise the
        // clone's own draw: 1 copy (0.7 * 0.3) or 2 (0.7 * 0.7). Mean 1.49 copies.
        let mean = c.delivered as f64 / 100_000.0;
        assert!((mean - 1.49).abs() < 0.01, "{mean}");
    }

    #[test]
    fn corrupt_rate_and_positions() {
        let n = 100_000;
        let (v, m) = run("corrupt 10%", 19, n, US, 100);
        let flips: Vec<(usize, u8)> = v.iter().filter_map(|v| v.departures()[0].corrupt).collect();
        assert_binomial(flips.len(), n, 0.1, "corrupt 10%");
        assert!(flips.iter().all(|&(byte, bit)| byte < 100 && bit < 8));
        assert_eq!(flips.iter().map(|f| f.0).min(), Some(0));
        assert_eq!(flips.iter().map(|f| f.0).max(), Some(99));
        assert_eq!(flips.iter().map(|f| f.1).max(), Some(7));
        assert_eq!(m.counters().corrupted, flips.len() as u64);
        let (v, m) = run("corrupt 100%", 1, 100, US, 0);
        assert!(
            v.iter().all(|v| v.departures()[0].corrupt.is_none()),
            "nothing to flip in 0 bytes"
        );
        assert_eq!(m.counters().corrupted, 0);
        let (v, _) = run("corrupt 100%", 1, 100, US, 1);
        assert!(v
            .iter()
            .all(|v| matches!(v.departures()[0].corrupt, Some((0, _)))));
    }

    #[test]
    fn rate_spacing_is_exact() {
        // 1500 bytes at 10 Mbit/s take 1.2 ms; a burst leaves back to back.
        let (v, _) = run("rate 10mbit", 1, 10, 0, 1500);
        let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
        assert_eq!(t, (1..=10).map(|k| k * 1_200_000).collect::<Vec<_>>());
        // Behind a delay: the first waits delay + 1.2 ms, the next ones 1.2 ms after it.
        let (v, _) = run("delay 10ms rate 10mbit", 1, 3, 0, 1500);
        let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
        assert_eq!(t, vec![11_200_000, 12_400_000, 13_600_000]);
        // Below the rate nothing queues.
        let (v, _) = run("rate 10mbit", 1, 100, 2 * MS, 1500);
        for (i, v) in v.iter().enumerate() {
            assert_eq!(v.departures()[0].at_ns, i as u64 * 2 * MS + 1_200_000);
        }
        // Overhead and cells (the man page's ATM example: 50 bytes = 2 cells of 48 + 5).
        let one = |s: &str, len: usize| run(s, 1, 1, 0, len).0[0].departures()[0].at_ns;
        assert_eq!(one("rate 1mbit 0 48 5", 50), 106 * 8 * 1000);
        assert_eq!(one("rate 1mbit 14", 100), 114 * 8 * 1000);
        assert_eq!(one("rate 1mbit -14", 100), 86 * 8 * 1000);
        assert_eq!(one("rate 1mbit 0 48", 96), 96 * 8 * 1000);
        assert_eq!(one("rate 1mbit 0 48", 97), 144 * 8 * 1000);
    }

    #[test]
    fn long_run_throughput_equals_rate() {
        // Offered 24 Mbit/s into a 10 Mbit/s link with room to queue everything.
        let n = 2000;
        let (v, m) = run("rate 10mbit limit 100000", 1, n, 500 * US, 1500);
        let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
        let bits = ((n - 1) * 1500 * 8) as f64;
        let secs = (t[n - 1] - t[0]) as f64 / 1e9;
        assert!((bits / secs - 10e6).abs() < 1.0, "{}", bits / secs);
        assert_eq!(m.counters().dropped_queue, 0);
    }

    #[test]
    fn standing_queue_is_the_backlog_beyond_the_base_delay() {
        let mut m = LinkModel::new(&spec("delay 10ms rate 1mbit limit 100"), 1);
        assert_eq!(m.standing_queue(0), (0, 0));
        // 20 packets of 1000 B at once: 8 ms each on the wire at 1 Mbit/s.
        for _ in 0..20 {
            m.enqueue(0, 1000);
        }
        let (n, wait) = m.standing_queue(0);
        assert_eq!(n, 20);
        assert!((159 * MS..=161 * MS).contains(&wait), "{wait}");
        // Once everything left, nothing stands.
        assert_eq!(m.standing_queue(200 * MS), (0, 0));
        // A delay alone is no queue.
        let mut d = LinkModel::new(&spec("delay 50ms"), 1);
        d.enqueue(0, 1000);
        assert_eq!(d.standing_queue(MS), (1, 0));
    }

    #[test]
    fn queue_limit_tail_drops() {
        let mut m = LinkModel::new(&spec("delay 100ms limit 10"), 1);
        let v: Vec<Verdict> = (0..20).map(|i| m.enqueue(i * US, 100)).collect();
        assert!(v[..10].iter().all(|v| v.departures().len() == 1));
        assert!(v[10..]
            .iter()
            .all(|v| *v == Verdict::Drop(DropReason::QueueFull)));
        assert_eq!(m.counters().dropped_queue, 10);
        assert_eq!(m.in_flight(50 * MS), 10);
        // The first ones have left at 100 ms + 0..9 us.
        assert_eq!(m.in_flight(100 * MS + 4 * US), 5);
        assert!(!m.enqueue(100 * MS + 4 * US, 100).departures().is_empty());
        assert_eq!(m.in_flight(100 * MS + 20 * US), 1);
        assert_invariant(m.counters());
        // A rate-limited burst fills the queue too.
        let (v, m) = run("rate 1mbit limit 5", 1, 20, 0, 1000);
        assert_eq!(v.iter().filter(|v| !v.departures().is_empty()).count(), 5);
        assert_eq!(m.counters().dropped_queue, 15);
        // A duplicate dropped for the limit counts as a queue drop.
        let (v, m) = run("delay 1s duplicate 100% limit 3", 1, 3, US, 100);
        assert_eq!(v[0].departures().len(), 2);
        // As in netem: the original passes the check at 2 < 3, then its duplicate (2 < 3)
        // and the original are both queued: one over the limit.
        assert_eq!(v[1].departures().len(), 2);
        assert_eq!(v[2], Verdict::Drop(DropReason::QueueFull));
        assert_eq!(
            m.counters().dropped_queue,
            2,
            "the original and its duplicate"
        );
        assert_invariant(m.counters());
    }

    fn rich(seed: u64) -> Vec<Verdict> {
        let s = spec(
            "delay 20ms 5ms 25% distribution normal loss gemodel 1% 30% duplicate 1% \
             corrupt 1% reorder 5% 10% rate 50mbit limit 200",
        );
        let mut m = LinkModel::new(&s, seed);
        let mut arrivals = ChaCha8Rng::seed_from_u64(99);
        let mut now = 0;
        let v = (0..50_000)
            .map(|_| {
                now += arrivals.random_range(0..200 * US);
                m.enqueue(now, arrivals.random_range(40..1500))
            })
            .collect();
        assert_invariant(m.counters());
        v
    }

    #[test]
    fn same_seed_same_verdicts_different_seed_differs() {
        let a = rich(42);
        assert_eq!(a, rich(42));
        assert_ne!(a, rich(43));
        // Every kind of outcome occurred in this run.
        assert!(a
            .iter()
            .any(|v| matches!(v, Verdict::Drop(DropReason::Loss))));
        assert!(a.iter().any(|v| v.departures().len() == 2));
        assert!(a
            .iter()
            .any(|v| v.departures().iter().any(|d| d.corrupt.is_some())));
        assert!(a.iter().any(|v| v.departures().iter().any(|d| d.reordered)));
        // A seed in the spec wins over the caller's.
        let s = spec("delay 10ms 5ms loss 10% seed 5");
        let mut x = LinkModel::new(&s, 1);
        let mut y = LinkModel::new(&s, 2);
        for i in 0..1000 {
            assert_eq!(x.enqueue(i * US, 100), y.enqueue(i * US, 100));
        }
    }

    #[test]
    fn slots_release_in_bursts() {
        // Fixed 5 ms slots, at most 2 packets each: 1 ms arrivals leave in pairs.
        let (v, _) = run("slot 5ms packets 2", 1, 200, MS, 100);
        let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
        for (i, &at) in t.iter().enumerate() {
            assert!(at >= i as u64 * MS);
        }
        assert!(t.windows(2).all(|w| w[1] >= w[0]));
        let mut per_slot = std::collections::BTreeMap::new();
        for &at in &t {
            *per_slot.entry(at).or_insert(0) += 1;
        }
        assert!(per_slot.values().all(|&c| c <= 2));
        let times: Vec<u64> = per_slot.keys().copied().collect();
        assert!(
            times.windows(2).skip(1).all(|w| w[1] - w[0] == 5 * MS),
            "{times:?}"
        );
        // Byte budget: two 1500-byte packets per slot.
        let (v, _) = run("slot 1ms bytes 3000", 1, 100, 0, 1500);
        let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
        assert!(t.chunks(2).skip(1).all(|c| c[0] == c[1]));
        // Random slot spacing within [min, max).
        let (v, _) = run("slot 2ms 6ms packets 1 limit 10000", 3, 2000, 0, 100);
        let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
        let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| (2 * MS..6 * MS).contains(&g)));
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
        assert!((mean - 4e6).abs() < 0.1e6, "{mean}");
        // Uniform slot distribution: delay ± jitter.
        let (v, _) = run(
            "slot distribution uniform 10ms 2ms packets 1 limit 10000",
            3,
            2000,
            0,
            100,
        );
        let t: Vec<u64> = v.iter().map(|v| v.departures()[0].at_ns).collect();
        assert!(t
            .windows(2)
            .all(|w| (8 * MS..12 * MS).contains(&(w[1] - w[0]))));
    }

    /// Whatever the spec: no departure before its arrival, corruption inside the packet,
    /// the queue never beyond limit + 1, counters consistent.
    #[test]
    fn invariants_hold_for_random_specs() {
        let groups: &[&[&str]] = &[
            &[
                "delay 5ms",
                "delay 5ms 3ms",
                "delay 5ms 8ms 30%",
                "delay 5ms 2ms distribution normal",
                "delay 5ms 4ms distribution pareto",
                "delay 1ms 1ms distribution paretonormal",
            ],
            &[
                "loss 3%",
                "loss 30% 50%",
                "loss state 5% 40% 10% 50% 2%",
                "loss gemodel 3% 30% 80% 1%",
            ],
            &["duplicate 10%", "duplicate 20% 40%"],
            &["corrupt 10%", "corrupt 5% 50%"],
            &["rate 20mbit", "rate 5mbit 20 48 5"],
            &[
                "slot 1ms 3ms packets 4",
                "slot distribution normal 2ms 1ms bytes 6000",
            ],
            &["limit 20", "limit 3"],
            &["reorder 10% gap 2", "reorder 30% 20%"],
        ];
        let mut g = ChaCha8Rng::seed_from_u64(2024);
        for round in 0..300 {
            let mut parts = Vec::new();
            for group in groups {
                if g.random_bool(0.5) {
                    parts.push(group[g.random_range(0..group.len())]);
                }
            }
            if !parts.iter().any(|p| p.starts_with("delay")) {
                parts.retain(|p| !p.starts_with("reorder"));
            }
            let text = parts.join(" ");
            let s: LinkSpec = text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let mut m = LinkModel::new(&s, round);
            let mut now = 0u64;
            for _ in 0..2000 {
                now += g.random_range(0..300 * US);
                let len = g.random_range(0..1500);
                let v = m.enqueue(now, len);
                for d in v.departures() {
                    assert!(d.at_ns >= now, "{text:?}: departure before arrival");
                    if let Some((byte, bit)) = d.corrupt {
                        assert!(byte < len && bit < 8, "{text:?}");
                    }
                }
                assert!(m.in_flight(now) <= s.limit as usize + 1, "{text:?}");
            }
            assert_invariant(m.counters());
        }
    }

    #[test]
    fn inverse_normal_cdf_is_accurate() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.001, -3.090232306167813),
            (0.8413447460685429, 1.0),
            (1e-6, -4.753424308822899),
        ] {
            assert!((inverse_normal_cdf(p) - z).abs() < 1e-8, "{p}");
            assert!((inverse_normal_cdf(1.0 - p) + z).abs() < 1e-7, "{p}");
        }
    }

    #[test]
    fn tables_have_iproute2_shape() {
        for d in [
            Distribution::Normal,
            Distribution::Pareto,
            Distribution::ParetoNormal,
        ] {
            let t = dist_table(d).unwrap();
            assert_eq!(t.len(), 4096);
            assert!(
                t.windows(2).all(|w| w[0] <= w[1]),
                "{d:?} is a quantile table"
            );
        }
        let n = dist_table(Distribution::Normal).unwrap();
        assert_eq!(n[0], i16::MIN, "4 sigma below, clipped as iproute2 does");
        // quantiles at (4k + 0.5) / 16384: entries 2047 and 2048 straddle the median
        assert_eq!((n[2047], n[2048]), (-4, 1));
        let p = dist_table(Distribution::Pareto).unwrap();
        assert_eq!(p[0], -5461);
        assert_eq!(p[4095], 32767);
        assert!(dist_table(Distribution::Uniform).is_none());
    }

    #[test]
    fn crandom_without_correlation_is_the_plain_stream() {
        let mut a = ChaCha8Rng::seed_from_u64(1);
        let mut b = ChaCha8Rng::seed_from_u64(1);
        let mut c = Crnd { last: 123, rho: 0 };
        for _ in 0..100 {
            assert_eq!(c.next(&mut a), b.next_u32());
        }
        let mut full = Crnd {
            last: 77,
            rho: u32::MAX,
        };
        assert_eq!(
            full.next(&mut a),
            77,
            "100 % correlation repeats the last value"
        );
        assert_eq!(prob_u32(100.0), u32::MAX);
        assert_eq!(prob_u32(0.0), 0);
        assert_eq!(prob_u32(50.0), 2_147_483_648);
    }

    #[test]
    fn enqueue_is_cheap() {
        // Not a benchmark: a guard against accidental O(n) work per packet. 200k packets
        // with a deep queue (2 s delay at 1 us spacing keeps all of them in flight).
        let s = spec("delay 2s 10ms loss 1% duplicate 1% corrupt 1% reorder 1% limit 1000000");
        let mut m = LinkModel::new(&s, 1);
        let start = std::time::Instant::now();
        for i in 0..200_000u64 {
            m.enqueue(i * US, 1200);
        }
        let per_packet = start.elapsed().as_nanos() as f64 / 200_000.0;
        assert!(m.in_flight(200_000 * US) > 190_000);
        eprintln!("enqueue: {per_packet:.0} ns per packet (dev profile, 200k in flight)");
        assert!(per_packet < 5_000.0, "{per_packet} ns per packet");
    }
}
