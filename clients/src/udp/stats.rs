//! Pure statistics of the UDP probe: sequence accounting (loss, duplicates,
//! reordering), the RFC 3550 interarrival jitter estimator, and delay summaries.
//! No sockets, no clock: fed with sequence numbers and timestamps.

use hdrhistogram::Histogram;

/// Counts what arrived of datagrams numbered `0..expected`.
///
/// * duplicate: a sequence number seen before;
/// * reordered (RFC 4737 §3, "reordered" packets): a new sequence number lower
///   than the highest one already seen;
/// * out of range: a number ≥ `expected` (not ours; ignored).
#[derive(Debug, Clone)]
pub struct SeqTracker {
    expected: u64,
    seen: Vec<u64>,
    max_seen: Option<u64>,
    received: u64,
    duplicates: u64,
    reordered: u64,
    out_of_range: u64,
}

/// What [`SeqTracker::observe`] made of one sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First arrival, in order.
    New,
    /// First arrival, after a higher number.
    Reordered,
    Duplicate,
    OutOfRange,
}

impl SeqTracker {
    pub fn new(expected: u64) -> Self {
        SeqTracker {
            expected,
            seen: vec![0; expected.div_ceil(64) as usize],
            max_seen: None,
            received: 0,
            duplicates: 0,
            reordered: 0,
            out_of_range: 0,
        }
    }

    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq >= self.expected {
            self.out_of_range += 1;
            return Seen::OutOfRange;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.seen[word] |= bit;
        self.received += 1;
        let late = self.max_seen.is_some_and(|m| seq < m);
        self.max_seen = Some(self.max_seen.map_or(seq, |m| m.max(seq)));
        if late {
            self.reordered += 1;
            Seen::Reordered
        } else {
            Seen::New
        }
    }

    /// Distinct datagrams received.
    pub fn received(&self) -> u64 {
        self.received
    }
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
    pub fn reordered(&self) -> u64 {
        self.reordered
    }
    pub fn out_of_range(&self) -> u64 {
        self.out_of_range
    }
    /// Of `sent` datagrams (≤ expected), how many never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }
}

/// RFC 3550 §6.4.1 interarrival jitter: for consecutive arrivals i-1, i with
/// transit times T = R - S, D = |T(i) - T(i-1)| and J += (D - J) / 16.
/// Written by hand: a few lines, and no crate implements it outside an RTP stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    prev_transit_ns: Option<i128>,
    j_ns: f64,
}

impl Jitter {
    /// Feed one arrival (in arrival order): its send and receive times, ns.
    pub fn update(&mut self, send_ns: u64, recv_ns: u64) {
        let transit = i128::from(recv_ns) - i128::from(send_ns);
        if let Some(prev) = self.prev_transit_ns {
            let d = (transit - prev).abs() as f64;
            self.j_ns += (d - self.j_ns) / 16.0;
        }
        self.prev_transit_ns = Some(transit);
    }
    /// Current estimate, µs (0 before two arrivals).
    pub fn us(&self) -> f64 {
        self.j_ns / 1000.0
    }
}

/// Distribution summary of a delay, µs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub count: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// Delays recorded in ns: a histogram (3 significant digits: 0.1 %
/// resolution, i.e. 8 µs buckets around 10 ms, 16 µs around 20 ms) and, up to
/// [`Delays::EXACT_UP_TO`] of them, the values themselves. A summary's
/// quantiles are exact while every value is kept: `calibrate` judges a 20 ms
/// link to ±10 µs, which the histogram's buckets alone cannot (and its
/// `value_at_quantile` reports a bucket's top: up to one bucket high).
#[derive(Debug, Clone)]
pub struct Delays {
    hist: Histogram<u64>,
    exact: Vec<u64>,
}

impl Default for Delays {
    fn default() -> Self {
        Self::new()
    }
}

impl Delays {
    pub fn new() -> Self {
        // 1 ns .. 1 h; `new_with_bounds` fails only on invalid constant bounds.
        let hist = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .expect("valid constant histogram bounds");
        Delays {
            hist,
            exact: Vec::new(),
        }
    }

    /// Values kept exactly (8 bytes each: 1.6 MB at most per direction).
    pub const EXACT_UP_TO: usize = 200_000;

    pub fn record(&mut self, ns: u64) {
        let ns = ns.max(1);
        let _ = self.hist.record(ns);
        if self.exact.len() < Self::EXACT_UP_TO {
            self.exact.push(ns);
        }
    }
    pub fn len(&self) -> u64 {
        self.hist.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }
    pub fn summary(&self) -> Option<Summary> {
        if self.hist.is_empty() {
            return None;
        }
        let us = |v: u64| v as f64 / 1000.0;
        let all_kept = self.exact.len() as u64 == self.hist.len();
        let mut sorted = if all_kept {
            self.exact.clone()
        } else {
            Vec::new()
        };
        sorted.sort_unstable();
        let quantile = |q: f64| -> u64 {
            if all_kept {
                // Nearest rank: the smallest value with a share ≥ q at or below it.
                let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[rank - 1]
            } else {
                // The bucket's middle, not its top: off by half a bucket at most.
                self.hist.median_equivalent(self.hist.value_at_quantile(q))
            }
        };
        let (min, max, mean) = if all_kept {
            let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
            (
                sorted[0],
                sorted[sorted.len() - 1],
                sum as f64 / sorted.len() as f64,
            )
        } else {
            (self.hist.min(), self.hist.max(), self.hist.mean())
        };
        Some(Summary {
            count: self.hist.len(),
            min_us: us(min),
            p50_us: us(quantile(0.50)),
            p90_us: us(quantile(0.90)),
            p99_us: us(quantile(0.99)),
            max_us: us(max),
            mean_us: mean / 1000.0,
        })
    }
    /// The histogram in HdrHistogram's V2 compressed format, hex-encoded (so it
    /// merges with any HdrHistogram implementation).
    pub fn to_v2_hex(&self) -> Option<String> {
        use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
        let mut out = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut out)
            .ok()?;
        Some(out.iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(expected: u64, seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::new(expected);
        for &s in seqs {
            t.observe(s);
        }
        t
    }

    #[test]
    fn in_order_no_loss() {
        let t = track(5, &[0, 1, 2, 3, 4]);
        assert_eq!(
            (t.received(), t.lost(5), t.duplicates(), t.reordered()),
            (5, 0, 0, 0)
        );
    }

    #[test]
    fn loss_duplicates_reordering() {
        // 2 lost, 1 duplicated twice, 3 arrives after 4, 99 is not ours.
        let mut t = SeqTracker::new(6);
        let got: Vec<Seen> = [0, 1, 1, 4, 3, 5, 1, 99]
            .iter()
            .map(|&s| t.observe(s))
            .collect();
        use Seen::*;
        assert_eq!(
            got,
            [New, New, Duplicate, New, Reordered, New, Duplicate, OutOfRange]
        );
        assert_eq!(t.received(), 5);
        assert_eq!(t.lost(6), 1);
        assert_eq!(t.duplicates(), 2);
        assert_eq!(t.reordered(), 1);
        assert_eq!(t.out_of_range(), 1);
        // Fewer sent than expected (a run cut short): loss counts what was sent.
        assert_eq!(t.lost(3), 0);
    }

    #[test]
    fn fully_reversed_sequence() {
        // Every packet after the first arrives below the max: n-1 reordered (RFC 4737).
        let seqs: Vec<u64> = (0..100).rev().collect();
        let t = track(100, &seqs);
        assert_eq!((t.received(), t.reordered(), t.duplicates()), (100, 99, 0));
    }

    #[test]
    fn bitset_word_edges() {
        let t = track(130, &[63, 64, 127, 128, 129, 0, 64]);
        assert_eq!((t.received(), t.duplicates(), t.reordered()), (6, 1, 1));
    }

    #[test]
    fn jitter_constant_transit_is_zero() {
        let mut j = Jitter::default();
        for i in 0..100u64 {
            j.update(i * 1_000_000, i * 1_000_000 + 5_000);
        }
        assert_eq!(j.us(), 0.0);
    }

    #[test]
    fn jitter_matches_rfc3550_recursion() {
        // Transits alternate 1 ms and 3 ms: D = 2 ms every step, J → 2 ms.
        let mut j = Jitter::default();
        let mut expect = 0.0f64;
        for i in 0..400u64 {
            let transit = if i % 2 == 0 { 1_000_000 } else { 3_000_000 };
            j.update(i * 10_000_000, i * 10_000_000 + transit);
            if i > 0 {
                expect += (2_000_000.0 - expect) / 16.0;
            }
        }
        assert!((j.us() - expect / 1000.0).abs() < 1e-9);
        assert!((j.us() - 2000.0).abs() < 1.0, "{}", j.us());
        // First step exactly: J1 = D/16.
        let mut j = Jitter::default();
        j.update(0, 1_000);
        j.update(10_000, 11_000 + 1_600);
        assert!((j.us() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn summaries() {
        let mut d = Delays::new();
        assert!(d.summary().is_none());
        for us in 1..=1000u64 {
            d.record(us * 1000);
        }
        let s = d.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert!((s.min_us - 1.0).abs() < 0.01);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.5, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0);
        assert!((s.mean_us - 500.5).abs() < 1.0);
        let hex = d.to_v2_hex().unwrap();
        assert!(hex.len() > 20 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    /// Around 20 ms the histogram's buckets are 16 µs wide: the summary's
    /// quantiles are the exact values while all are kept, and within half a
    /// bucket once they are not.
    #[test]
    fn quantiles_are_exact_to_the_ns_around_20_ms() {
        let mut d = Delays::new();
        // 20.003000 .. 20.003999 ms, 1 ns apart, shuffled by a fixed stride.
        for i in 0..1000u64 {
            d.record(20_003_000 + (i * 617) % 1000);
        }
        let s = d.summary().unwrap();
        assert_eq!(s.p50_us, 20_003.499);
        assert_eq!(s.p90_us, 20_003.899);
        assert_eq!(s.p99_us, 20_003.989);
        assert_eq!((s.min_us, s.max_us), (20_003.0, 20_003.999));
        assert!((s.mean_us - 20_003.499_5).abs() < 1e-9, "{s:?}");
        // Past the cap: the histogram, within half a 16 µs bucket.
        let mut big = Delays::new();
        for i in 0..(Delays::EXACT_UP_TO as u64 + 10) {
            big.record(20_003_000 + i % 1000);
        }
        let s = big.summary().unwrap();
        assert!((s.p50_us - 20_003.5).abs() <= 8.2, "{s:?}");
    }
}
