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
use std::collections::BinaryHeap;
use std::sync::OnceLock;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::spec::{Distribution, LinkSpec, Loss, SlotDelay};

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
    /// One departure, or two when netem's `duplicate` fired (the duplicate first: netem
    /// enqueues it before the original).
    Deliver(Vec<Departure>),
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
/// dropped_queue` always holds (a packet whose duplicate draw and loss draw both fired
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
    /// Extra copies made by `duplicate`.
    pub duplicated: u64,
    /// Delivered copies with a flipped bit.
    pub corrupted: u64,
    /// Delivered copies sent at once by netem's reorder branch.
    pub reordered: u64,
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
        Crnd { last: rng.next_u32(), rho: prob_u32(correlation_percent) }
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
        1.383577518672690e+02,
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
    const D: [f64; 4] =
        [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
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
            (0..TABLE_SIZE).map(|k| clip_s16(normal_raw(k).round_ties_even() as i64)).collect()
        })),
        Distribution::Pareto => {
            Some(PARETO.get_or_init(|| (0..TABLE_SIZE).map(|k| clip_s16(pareto_entry(k))).collect()))
        }
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
fn tabledist(mu: i64, sigma: i64, crnd: Option<&mut Crnd>, rng: &mut ChaCha8Rng, table: Option<&[i16]>) -> i64 {
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
    Random { p: u32, cor: Crnd },
    /// `loss_4state`: a1 = p13, a2 = p31, a3 = p32, a4 = p14, a5 = p23.
    FourState { state: FourState, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64 },
    /// `loss_gilb_ell`: a1 = p, a2 = r, a3 = h, a4 = 1-k.
    Gilbert { bad: bool, a1: u32, a2: u32, a3: u32, a4: u32 },
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
        if self.cell_size != 0 {
            let mut cells = len / self.cell_size;
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
            SlotDelay::Distribution { delay_ns, jitter_ns, .. } => {
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
    /// Departure times of the copies still in the emulator (min-heap).
    queue: BinaryHeap<Reverse<u64>>,
    /// Largest time_to_send handed out so far: netem's "last packet in the queue" for rate.
    last_tts: i64,
    counters: Counters,
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
        let loss = match spec.loss {
            None => LossModel::None,
            Some(Loss::Random(c)) => {
                LossModel::Random { p: prob_u32(c.percent), cor: Crnd::new(c.correlation, &mut rng) }
            }
            Some(Loss::State { p13, p31, p32, p23, p14 }) => LossModel::FourState {
                state: FourState::TxInGap,
                a1: prob_u32(p13) as u64,
                a2: prob_u32(p31) as u64,
                a3: prob_u32(p32) as u64,
                a4: prob_u32(p14) as u64,
                a5: prob_u32(p23) as u64,
            },
            Some(Loss::GilbertElliott { p, r, one_minus_h, one_minus_k }) => LossModel::Gilbert {
                bad: false,
                a1: prob_u32(p),
                a2: prob_u32(r),
                // tc sends h = UINT32_MAX - (1-h)
                a3: u32::MAX - prob_u32(one_minus_h),
                a4: prob_u32(one_minus_k),
            },
        };
        let dup = spec.duplicate.map_or((0, 0.0), |c| (prob_u32(c.percent), c.correlation));
        let dup_cor = Crnd::new(dup.1, &mut rng);
        let cor = spec.corrupt.map_or((0, 0.0), |c| (prob_u32(c.percent), c.correlation));
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
            let max_packets = if s.max_packets == 0 { i32::MAX as i64 } else { s.max_packets as i64 };
            let max_bytes = if s.max_bytes == 0 { i32::MAX as i64 } else { s.max_bytes as i64 };
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
            queue: BinaryHeap::with_capacity(limit.min(4096)),
            last_tts: i64::MIN,
            counters: Counters::default(),
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
        let mut out = Vec::with_capacity(count);
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
        }
        Verdict::Deliver(out)
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

    fn expire(&mut self, now: u64) {
        while let Some(Reverse(t)) = self.queue.peek() {
            if *t > now {
                break;
            }
            self.queue.pop();
        }
    }

    /// netem's `loss_event()`.
    fn loss_event(&mut self) -> bool {
        let rng = &mut self.rng;
        match &mut self.loss {
            LossModel::None => false,
            LossModel::Random { p, cor } => *p != 0 && *p >= cor.next(rng),
            LossModel::FourState { state, a1, a2, a3, a4, a5 } => {
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
            LossModel::Gilbert { bad, a1, a2, a3, a4 } => {
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
        let at_ns = if delayed {
            let mut delay =
                tabledist(self.latency, self.jitter, Some(&mut self.delay_cor), &mut self.rng, self.table);
            let mut base = now;
            if let Some(rate) = &self.rate {
                // Serialise behind the last packet still queued: its send time becomes the
                // reference and the delay is reduced by the time it already waits.
                if self.last_tts > now {
                    delay = (delay - (self.last_tts - now)).max(0);
                    base = self.last_tts;
                }
                delay = delay.saturating_add(rate.packet_time_ns(len));
            }
            let tts = base.saturating_add(delay);
            self.last_tts = self.last_tts.max(tts);
            self.counter = self.counter.wrapping_add(1);
            // A negative delay (jitter larger than the delay) means "now".
            let ready = tts.max(now) as u64;
            match &mut self.slot {
                Some(slot) => slot.gate(now_ns, ready, len, &mut self.rng),
                None => ready,
            }
        } else {
            // netem puts the packet at the head of the queue, to leave at once.
            self.counter = 0;
            now_ns
        };
        self.queue.push(Reverse(at_ns));
        Departure { at_ns, corrupt, reordered: !delayed }
    }
}
