//! The fairness figures from per-flow bytes over time. Pure (no I/O, no
//! clock): unit-tested with hand-made series. Definitions in
//! docs/methodology.md, "Fairness".

/// A flow's bytes over time on the cell's clock (ns), cumulative.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// When the flow began downloading (its request was sent).
    pub start_ns: u64,
    /// When it stopped (its download time was up, or the object ended).
    pub end_ns: u64,
    /// (t_ns, cumulative bytes), t non-decreasing.
    pub points: Vec<(u64, u64)>,
}

impl Series {
    /// Cumulative bytes at `t`, interpolated linearly between samples (the
    /// samples are arrivals of reads: bytes between two arrived evenly).
    pub fn bytes_at(&self, t: u64) -> f64 {
        let p = &self.points;
        match p.iter().position(|(ti, _)| *ti >= t) {
            None => p.last().map_or(0.0, |x| x.1 as f64),
            Some(0) => {
                // Before the first sample: from 0 at the start.
                let (t1, b1) = p[0];
                if t1 <= self.start_ns || t <= self.start_ns {
                    return if t >= t1 { b1 as f64 } else { 0.0 };
                }
                b1 as f64 * (t - self.start_ns) as f64 / (t1 - self.start_ns) as f64
            }
            Some(i) => {
                let (t0, b0) = p[i - 1];
                let (t1, b1) = p[i];
                if t1 == t0 {
                    return b1 as f64;
                }
                b0 as f64 + (b1 - b0) as f64 * (t - t0) as f64 / (t1 - t0) as f64
            }
        }
    }

    /// Bytes in `[a, b)`.
    pub fn bytes_in(&self, a: u64, b: u64) -> f64 {
        (self.bytes_at(b) - self.bytes_at(a)).max(0.0)
    }
}

/// A link-side curve: bytes per bin from `start_ns` (the link flow table's
/// goodput curve), on the cell's clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Binned {
    pub start_ns: u64,
    pub bin_ns: u64,
    pub bytes: Vec<u64>,
}

impl Binned {
    /// As a cumulative series (each bin's bytes at its end).
    pub fn series(&self, end_ns: u64) -> Series {
        let mut acc = 0;
        let mut points = vec![(self.start_ns, 0)];
        for (i, b) in self.bytes.iter().enumerate() {
            acc += b;
            points.push((self.start_ns + self.bin_ns * (i as u64 + 1), acc));
        }
        Series {
            start_ns: self.start_ns,
            end_ns,
            points,
        }
    }
}

/// Jain's fairness index, (Σx)² / (n·Σx²): 1 when all are equal, 1/n when
/// one has everything. None for no flows or no bytes at all.
pub fn jain(x: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let s: f64 = x.iter().sum();
    let s2: f64 = x.iter().map(|v| v * v).sum();
    (n > 0.0 && s2 > 0.0).then(|| s * s / (n * s2))
}

/// The span every flow was downloading: from the last start to the first end.
pub fn common_span(flows: &[Series]) -> Option<(u64, u64)> {
    let a = flows.iter().map(|f| f.start_ns).max()?;
    let b = flows.iter().map(|f| f.end_ns).min()?;
    (b > a).then_some((a, b))
}

/// Each flow's mean rate over `[a, b)`, Mbit/s.
pub fn rates_mbps(flows: &[Series], a: u64, b: u64) -> Vec<f64> {
    let secs = (b - a) as f64 / 1e9;
    flows
        .iter()
        .map(|f| f.bytes_in(a, b) * 8.0 / secs / 1e6)
        .collect()
}

/// Windows of `w` ns from `origin` to `end` (the last one whole).
pub fn windows(origin: u64, end: u64, w: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut t = origin;
    while w > 0 && t + w <= end {
        out.push((t, t + w));
        t += w;
    }
    out
}

/// Every flow within `tolerance` (0.1 = ±10%) of the fair share of a
/// window: its aggregate over the flows.
pub fn window_is_fair(rates: &[f64], tolerance: f64) -> bool {
    let n = rates.len() as f64;
    let fair = rates.iter().sum::<f64>() / n;
    fair > 0.0 && rates.iter().all(|r| (r - fair).abs() <= tolerance * fair)
}

/// Time from `a` to the first window start `x` at which every flow's rate
/// over `[x, x + k·w)` is within `tolerance` of the fair share of that span
/// ([`window_is_fair`]); None when no such span fits in `[a, b)`.
pub fn convergence_ns(
    flows: &[Series],
    a: u64,
    b: u64,
    w: u64,
    k: u64,
    tolerance: f64,
) -> Option<u64> {
    let span = w.checked_mul(k.max(1))?;
    windows(a, b, w)
        .into_iter()
        .take_while(|(x, _)| x + span <= b)
        .find(|&(x, _)| window_is_fair(&rates_mbps(flows, x, x + span), tolerance))
        .map(|(x, _)| x - a)
}

/// The shares of a set of flows labelled by group (protocol, or protocol
/// and controller): each group's part of all bytes over `[a, b)`, and that
/// part over its fair part (its flow count over all flows: 1 = fair).
pub fn group_shares(
    flows: &[Series],
    labels: &[String],
    a: u64,
    b: u64,
) -> Vec<(String, f64, f64)> {
    let bytes: Vec<f64> = flows.iter().map(|f| f.bytes_in(a, b)).collect();
    let total: f64 = bytes.iter().sum();
    let n = flows.len() as f64;
    let mut groups: Vec<String> = Vec::new();
    for l in labels {
        if !groups.contains(l) {
            groups.push(l.clone());
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let mine: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == g).collect();
            let got: f64 = mine.iter().map(|&i| bytes[i]).sum();
            let share = if total > 0.0 { got / total } else { 0.0 };
            let fair = mine.len() as f64 / n;
            (g, share, share / fair)
        })
        .collect()
}

/// A flow's rate per window, (window start − origin in ms, Mbit/s): its
/// chart line.
pub fn rate_timeline(f: &Series, origin: u64, w: u64) -> Vec<(f64, f64)> {
    windows(f.start_ns, f.end_ns, w)
        .into_iter()
        .map(|(x, y)| {
            let mbps = f.bytes_in(x, y) * 8.0 / ((y - x) as f64 / 1e9) / 1e6;
            ((x.saturating_sub(origin)) as f64 / 1e6, mbps)
        })
        .collect()
}

/// The `q`-quantile (0..=1) of `v` by nearest rank; None if empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    Some(s[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// A flow at `mbps` from `start` to `end`, sampled every 10 ms.
    fn steady(start: u64, end: u64, mbps: f64) -> Series {
        let per_ns = mbps * 1e6 / 8.0 / 1e9;
        let points = (0..)
            .map(|i| start + i * 10_000_000)
            .take_while(|t| *t <= end)
            .map(|t| (t, ((t - start) as f64 * per_ns) as u64))
            .collect();
        Series {
            start_ns: start,
            end_ns: end,
            points,
        }
    }

    #[test]
    fn jain_index_bounds() {
        assert_eq!(jain(&[5.0, 5.0]), Some(1.0));
        assert_eq!(jain(&[10.0, 0.0]), Some(0.5));
        assert!((jain(&[10.0, 0.0, 0.0, 0.0]).unwrap() - 0.25).abs() < 1e-12);
        // 3:1 split: 16 / (2 · 10) = 0.8.
        assert!((jain(&[3.0, 1.0]).unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(jain(&[]), None);
        assert_eq!(jain(&[0.0, 0.0]), None);
    }

    #[test]
    fn interpolation_and_spans() {
        let f = steady(S, 3 * S, 8.0); // 1 MB/s
        assert!((f.bytes_in(S, 2 * S) - 1e6).abs() < 1.0);
        assert!((f.bytes_at(S + S / 2) - 0.5e6).abs() < 1.0);
        assert_eq!(f.bytes_at(0), 0.0);
        assert!((f.bytes_at(10 * S) - 2e6).abs() < 1.0);
        let g = steady(2 * S, 5 * S, 8.0);
        assert_eq!(common_span(&[f.clone(), g.clone()]), Some((2 * S, 3 * S)));
        assert_eq!(
            common_span(&[steady(0, S, 1.0), steady(2 * S, 3 * S, 1.0)]),
            None
        );
        let r = rates_mbps(&[f, g], 2 * S, 3 * S);
        assert!(r.iter().all(|x| (x - 8.0).abs() < 0.01), "{r:?}");
    }

    #[test]
    fn shares_by_group_and_normalised() {
        // One h3 at 12 Mbit/s, two h2 at 4 each: h3 has 60% against a fair 1/3.
        let flows = [
            steady(0, 10 * S, 12.0),
            steady(0, 10 * S, 4.0),
            steady(0, 10 * S, 4.0),
        ];
        let labels = ["h3".to_string(), "h2".into(), "h2".into()];
        let s = group_shares(&flows, &labels, S, 9 * S);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "h3");
        assert!(
            (s[0].1 - 0.6).abs() < 1e-3 && (s[0].2 - 1.8).abs() < 1e-2,
            "{s:?}"
        );
        assert!(
            (s[1].1 - 0.4).abs() < 1e-3 && (s[1].2 - 0.6).abs() < 1e-2,
            "{s:?}"
        );
    }

    /// Two flows that trade places, then settle: convergence is the first
    /// window from which the next k windows are fair together.
    #[test]
    fn convergence_is_the_start_of_the_fair_tail() {
        let w = S / 2;
        // Flow A: 15 Mbit/s for 2 s, then 10; flow B: 5 then 10.
        let mut a = steady(0, 2 * S, 15.0);
        let a2 = steady(2 * S, 10 * S, 10.0);
        let base = a.points.last().unwrap().1;
        a.points
            .extend(a2.points.iter().skip(1).map(|(t, b)| (*t, b + base)));
        a.end_ns = 10 * S;
        let mut b = steady(0, 2 * S, 5.0);
        let b2 = steady(2 * S, 10 * S, 10.0);
        let base = b.points.last().unwrap().1;
        b.points
            .extend(b2.points.iter().skip(1).map(|(t, x)| (*t, x + base)));
        b.end_ns = 10 * S;
        let flows = [a, b];
        assert_eq!(convergence_ns(&flows, 0, 10 * S, w, 1, 0.1), Some(2 * S));
        // Over 4 windows (2 s): from 1.5 s, 15+10·3 vs 5+10·3 = 45:35, ±12.5%;
        // from 2 s on, even.
        assert_eq!(convergence_ns(&flows, 0, 10 * S, w, 4, 0.1), Some(2 * S));
        assert_eq!(
            convergence_ns(&flows, 0, 10 * S, w, 8, 0.1),
            Some(3 * S / 2)
        );
        // Fair from the start.
        let even = [steady(0, 4 * S, 5.0), steady(0, 4 * S, 5.0)];
        assert_eq!(convergence_ns(&even, 0, 4 * S, w, 4, 0.1), Some(0));
        // Never fair: None.
        let uneven = [steady(0, 4 * S, 9.0), steady(0, 4 * S, 1.0)];
        assert_eq!(convergence_ns(&uneven, 0, 4 * S, w, 4, 0.1), None);
        // A span longer than the common one: None.
        assert_eq!(convergence_ns(&even, 0, 4 * S, w, 9, 0.1), None);
        // Within tolerance: 10.5 vs 9.5 is ±5%.
        let close = [steady(0, 4 * S, 10.5), steady(0, 4 * S, 9.5)];
        assert_eq!(convergence_ns(&close, 0, 4 * S, w, 4, 0.1), Some(0));
    }

    #[test]
    fn link_bins_become_a_series_and_timelines_have_windows() {
        let b = Binned {
            start_ns: S,
            bin_ns: S / 100,
            bytes: vec![12_500; 200], // 10 Mbit/s for 2 s
        };
        let s = b.series(3 * S);
        assert!((s.bytes_in(S, 2 * S) - 1.25e6).abs() < 1.0);
        let tl = rate_timeline(&steady(S, 3 * S, 10.0), 0, S / 2);
        assert_eq!(tl.len(), 4);
        assert_eq!(tl[0].0, 1000.0);
        assert!(tl.iter().all(|(_, m)| (m - 10.0).abs() < 0.1), "{tl:?}");
        assert_eq!(windows(0, 10, 3), vec![(0, 3), (3, 6), (6, 9)]);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
