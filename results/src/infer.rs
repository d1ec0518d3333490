//! Inference with the cell as the unit of replication.
//!
//! Requests inside a cell share one connection, one loss pattern and one
//! moment of the machine, so they are not independent. Each cell is first
//! reduced to one value per metric (its median, or a derived figure); the
//! interval of a group (protocol × link × workload variant × cc) is over those
//! cell-level values:
//!
//! - n ≥ 6 (at 95%): order statistics, interpolated between adjacent ranks
//!   (Hettmansperger & Sheather 1986) so the confidence is the nominal level
//!   rather than the 97.9% the exact ranks jump to at n = 10;
//! - 3 ≤ n < 6: a seeded two-stage (cluster) bootstrap that resamples cells,
//!   then samples within each resampled cell;
//! - n < 3: no interval ("n too small").
//!
//! Comparisons: ratio of medians with a cluster-bootstrap interval, a
//! Mann-Whitney rank test on cell-level values (exact permutation
//! distribution for small sets), Holm or Benjamini-Hochberg over the run's
//! family, and [`verdict`], the single rule for "distinguishable" that the
//! headline, comparisons.csv and the report all use. See `docs/statistics.md`.

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::stats::{self, order_statistic_ranks, StatsError};

/// Significance level of every test and correction.
pub const ALPHA: f64 = 0.05;
/// Fewer cells than this: no interval, no test.
pub const MIN_CELLS: usize = 3;
/// Bootstrap resamples used by the summary and comparisons.
pub const RESAMPLES: usize = 2000;

/// One cell's contribution to a group: its summary value and, when the cell
/// holds several samples, those samples (for the within-cell stage of the
/// bootstrap).
#[derive(Debug, Clone, PartialEq)]
pub struct CellValue {
    pub value: f64,
    pub within: Vec<f64>,
}

impl CellValue {
    /// A cell reduced to the median of its samples.
    pub fn from_samples(samples: &[f64]) -> Result<CellValue, StatsError> {
        let s = stats::sorted(samples)?;
        Ok(CellValue {
            value: stats::quantile_sorted(&s, 0.5)?,
            within: s,
        })
    }

    /// A cell with one value and no within-cell samples (derived figures,
    /// histograms).
    pub fn single(value: f64) -> CellValue {
        CellValue {
            value,
            within: Vec::new(),
        }
    }
}

/// How an interval was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntervalMethod {
    /// Order statistics of the cell values, Hettmansperger-Sheather
    /// interpolation (n ≥ 6 at 95%).
    OrderStatistic,
    /// Resample cells, then samples within each cell (3 ≤ n < 6).
    ClusterBootstrap,
    /// Resample cells only: the cells carry one value each (3 ≤ n < 6).
    CellBootstrap,
    /// n < 3: no interval.
    NTooSmall,
}

impl IntervalMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalMethod::OrderStatistic => "order-statistic",
            IntervalMethod::ClusterBootstrap => "cluster-bootstrap",
            IntervalMethod::CellBootstrap => "cell-bootstrap",
            IntervalMethod::NTooSmall => "n too small",
        }
    }
}

/// The median of a group's cell values with its interval, if one can be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Median of the cell values.
    pub estimate: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Number of cells.
    pub n: usize,
    /// Confidence the interval has: the nominal level for the interpolated
    /// order statistics; for the bootstraps the nominal level capped by
    /// 1 − 2^(1−n), the coverage of the cells' range, which a bootstrap of
    /// so few cells cannot reliably exceed. `None` without an interval.
    pub confidence: Option<f64>,
    pub method: IntervalMethod,
}

impl Interval {
    /// Half-width relative to the estimate: (high − low) / 2 / |estimate|.
    /// `None` without an interval or with a zero estimate.
    pub fn relative_half_width(&self) -> Option<f64> {
        let (l, h) = (self.low?, self.high?);
        (self.estimate != 0.0).then(|| (h - l) / 2.0 / self.estimate.abs())
    }
}

/// P(B ≤ k) for B ~ Binomial(n, ½), in log space (no underflow for large n).
fn binom_half_cdf(n: usize, k: usize) -> f64 {
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_choose = 0.0_f64;
    let mut cdf = 0.0;
    for i in 0..=k.min(n) {
        cdf += (ln_choose - ln2n).exp();
        ln_choose += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    cdf.min(1.0)
}

/// Hettmansperger-Sheather interval of the median of `sorted` at `level`:
/// interpolates between the exact order-statistic pair (j, n+1−j), whose
/// confidence γ_j ≥ level, and the next one in, γ_{j+1} < level. `None` when
/// n is too small for `level`.
pub fn interpolated_median_ci(sorted: &[f64], level: f64) -> Option<(f64, f64)> {
    let n = sorted.len();
    let (j, k, g_j) = order_statistic_ranks(n, level)?;
    if j + 1 > k - 1 {
        // The next pair in would cross: keep the exact one.
        return Some((sorted[j - 1], sorted[k - 1]));
    }
    let g_next = 1.0 - 2.0 * binom_half_cdf(n, j);
    if g_j - g_next <= 0.0 {
        return Some((sorted[j - 1], sorted[k - 1]));
    }
    let i = ((g_j - level) / (g_j - g_next)).clamp(0.0, 1.0);
    let (nf, jf) = (n as f64, j as f64);
    let lambda = (nf - jf) * i / (jf + (nf - 2.0 * jf) * i);
    let low = (1.0 - lambda) * sorted[j - 1] + lambda * sorted[j];
    let high = (1.0 - lambda) * sorted[k - 1] + lambda * sorted[k - 2];
    Some((low, high))
}

fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        // The largest of the lower half.
        let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + m) / 2.0
    }
}

/// One bootstrap draw of a group's median: `n` cells drawn with replacement,
/// each cell's samples drawn again with replacement when `within` (cells with
/// fewer than two samples keep their value).
fn draw_median(
    cells: &[CellValue],
    within: bool,
    rng: &mut ChaCha8Rng,
    buf: &mut Vec<f64>,
    vals: &mut [f64],
) {
    let n = cells.len();
    for v in vals.iter_mut() {
        let c = &cells[rng.random_range(0..n)];
        *v = if within && c.within.len() >= 2 {
            buf.clear();
            let m = c.within.len();
            buf.extend((0..m).map(|_| c.within[rng.random_range(0..m)]));
            median_in_place(buf)
        } else {
            c.value
        };
    }
}

fn check_cells(cells: &[CellValue]) -> Result<(), StatsError> {
    if cells.is_empty() {
        return Err(StatsError::Empty);
    }
    for (index, c) in cells.iter().enumerate() {
        if !c.value.is_finite() {
            return Err(StatsError::NonFinite {
                index,
                value: c.value,
            });
        }
        if let Some(v) = c.within.iter().find(|v| !v.is_finite()) {
            return Err(StatsError::NonFinite { index, value: *v });
        }
    }
    Ok(())
}

/// Percentile interval of the bootstrapped group median (see [`draw_median`]).
pub fn cluster_bootstrap_ci(
    cells: &[CellValue],
    level: f64,
    resamples: usize,
    seed: u64,
) -> Result<(f64, f64), StatsError> {
    check_cells(cells)?;
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::BadLevel(level));
    }
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = Vec::new();
    let mut vals = vec![0.0; cells.len()];
    let mut meds = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        draw_median(cells, true, &mut rng, &mut buf, &mut vals);
        meds.push(median_in_place(&mut vals));
    }
    meds.sort_by(f64::total_cmp);
    Ok((
        stats::quantile_sorted(&meds, (1.0 - level) / 2.0)?,
        stats::quantile_sorted(&meds, (1.0 + level) / 2.0)?,
    ))
}

/// The interval of a group's median over its cells (method chosen by n; see
/// the module docs). `seed` makes the bootstrap reproducible.
pub fn cell_interval(cells: &[CellValue], level: f64, seed: u64) -> Result<Interval, StatsError> {
    check_cells(cells)?;
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::BadLevel(level));
    }
    let values: Vec<f64> = cells.iter().map(|c| c.value).collect();
    let s = stats::sorted(&values)?;
    let n = s.len();
    let estimate = stats::quantile_sorted(&s, 0.5)?;
    let none = Interval {
        estimate,
        low: None,
        high: None,
        n,
        confidence: None,
        method: IntervalMethod::NTooSmall,
    };
    if n < MIN_CELLS {
        return Ok(none);
    }
    if let Some((low, high)) = interpolated_median_ci(&s, level) {
        return Ok(Interval {
            low: Some(low),
            high: Some(high),
            confidence: Some(level),
            method: IntervalMethod::OrderStatistic,
            ..none
        });
    }
    let (low, high) = cluster_bootstrap_ci(cells, level, RESAMPLES, seed)?;
    let method = if cells.iter().any(|c| c.within.len() >= 2) {
        IntervalMethod::ClusterBootstrap
    } else {
        IntervalMethod::CellBootstrap
    };
    Ok(Interval {
        low: Some(low),
        high: Some(high),
        confidence: Some(level.min(1.0 - 0.5_f64.powi(n as i32 - 1))),
        method,
        ..none
    })
}

/// Cells a side from which the ratio's bootstrap resamples cells only: the
/// spread of that many cell values already carries the within-cell noise, and
/// resampling every request of every cell of hundreds of pairs would cost
/// hours on a full run.
pub const RATIO_CELLS_ONLY_FROM: usize = 6;

/// Ratio of the groups' medians, median(a) / median(b), with a percentile
/// interval from a bootstrap applied to each side independently: two-stage
/// (cells, then samples within cells) while a side has fewer than
/// [`RATIO_CELLS_ONLY_FROM`] cells, cells only from there. Returns (ratio,
/// low, high, method); `None` when median(b) is 0, or when more than 5% of
/// the resampled denominators are 0 (the ratio is then not a stable figure).
pub fn ratio_interval(
    a: &[CellValue],
    b: &[CellValue],
    level: f64,
    resamples: usize,
    seed: u64,
) -> Result<Option<(f64, f64, f64, IntervalMethod)>, StatsError> {
    check_cells(a)?;
    check_cells(b)?;
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::BadLevel(level));
    }
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let med = |c: &[CellValue]| {
        let v: Vec<f64> = c.iter().map(|x| x.value).collect();
        stats::median(&v)
    };
    let (ma, mb) = (med(a)?, med(b)?);
    if mb == 0.0 {
        return Ok(None);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = Vec::new();
    let (mut va, mut vb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    let mut ratios = Vec::with_capacity(resamples);
    let mut zero = 0usize;
    let within = a.len().min(b.len()) < RATIO_CELLS_ONLY_FROM;
    let has_within = a.iter().chain(b).any(|c| c.within.len() >= 2);
    let method = if within && has_within {
        IntervalMethod::ClusterBootstrap
    } else {
        IntervalMethod::CellBootstrap
    };
    for _ in 0..resamples {
        draw_median(a, within, &mut rng, &mut buf, &mut va);
        draw_median(b, within, &mut rng, &mut buf, &mut vb);
        let (x, y) = (median_in_place(&mut va), median_in_place(&mut vb));
        if y == 0.0 {
            zero += 1;
        } else {
            ratios.push(x / y);
        }
    }
    if ratios.is_empty() || zero * 20 > resamples {
        return Ok(None);
    }
    ratios.sort_by(f64::total_cmp);
    Ok(Some((
        ma / mb,
        stats::quantile_sorted(&ratios, (1.0 - level) / 2.0)?,
        stats::quantile_sorted(&ratios, (1.0 + level) / 2.0)?,
        method,
    )))
}

/// How a rank test's p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestMethod {
    /// The exact permutation distribution of the rank sum (mid-ranks for ties).
    MannWhitneyExact,
    /// Normal approximation with tie and continuity corrections (large sets).
    MannWhitneyNormal,
}

impl TestMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TestMethod::MannWhitneyExact => "mann-whitney-exact",
            TestMethod::MannWhitneyNormal => "mann-whitney-normal",
        }
    }
}

/// Above this many values in all, the normal approximation is used (it is
/// accurate by then and the exact count grows as N³).
pub const EXACT_MAX_TOTAL: usize = 80;

/// Two-sided Mann-Whitney test of `a` against `b` (cell-level values): exact
/// permutation p-value when both sides together hold at most
/// [`EXACT_MAX_TOTAL`] values, else the normal approximation.
pub fn rank_test(a: &[f64], b: &[f64]) -> Result<(f64, TestMethod), StatsError> {
    stats::sorted(a)?;
    stats::sorted(b)?;
    let total = a.len() + b.len();
    if total > EXACT_MAX_TOTAL {
        let (_, p) = stats::mann_whitney_u(a, b)?;
        return Ok((p, TestMethod::MannWhitneyNormal));
    }
    // Doubled mid-ranks are integers: count, by dynamic programming over the
    // values, the subsets of size |a| with each doubled rank sum.
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut ranks2 = vec![0usize; total];
    let mut i = 0;
    while i < total {
        let mut j = i;
        while j + 1 < total && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Mid-rank (i + j)/2 + 1, doubled.
        for r in ranks2.iter_mut().take(j + 1).skip(i) {
            *r = i + j + 2;
        }
        i = j + 1;
    }
    let observed: usize = ranks2
        .iter()
        .zip(&all)
        .filter(|(_, x)| x.1)
        .map(|(r, _)| *r)
        .sum();
    let na = a.len();
    let max_sum = total * (total + 1);
    // dp[k][s]: subsets of k values with doubled rank sum s (f64: C(80, 40) ≈ 1e23).
    let mut dp = vec![vec![0.0_f64; max_sum + 1]; na + 1];
    dp[0][0] = 1.0;
    for &r in &ranks2 {
        for k in (1..=na).rev() {
            let (lo, hi) = dp.split_at_mut(k);
            for s in (r..=max_sum).rev() {
                let add = lo[k - 1][s - r];
                if add != 0.0 {
                    hi[0][s] += add;
                }
            }
        }
    }
    let centre2 = na as f64 * (total as f64 + 1.0); // doubled expected rank sum
    let dev = (observed as f64 - centre2).abs();
    let (mut extreme, mut all_count) = (0.0, 0.0);
    for (s, c) in dp[na].iter().enumerate() {
        all_count += c;
        if (s as f64 - centre2).abs() >= dev - 1e-9 {
            extreme += c;
        }
    }
    Ok(((extreme / all_count).min(1.0), TestMethod::MannWhitneyExact))
}

/// A multiple-comparison correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Correction {
    /// Holm's step-down: controls the family-wise error rate.
    Holm,
    /// Benjamini-Hochberg step-up: controls the false discovery rate.
    BenjaminiHochberg,
}

impl Correction {
    pub fn as_str(self) -> &'static str {
        match self {
            Correction::Holm => "holm",
            Correction::BenjaminiHochberg => "benjamini-hochberg",
        }
    }
}

/// The correction quicbench applies to a run's family of comparisons: the
/// family holds hundreds of pairs, most of them expected to differ; the false
/// discovery rate is the error a reader of such a table cares about.
pub const RUN_CORRECTION: Correction = Correction::BenjaminiHochberg;

/// Adjusted p-values, in the order of `p` (each in [0, 1]).
pub fn adjust(p: &[f64], c: Correction) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut out = vec![1.0; m];
    match c {
        Correction::Holm => {
            let mut running = 0.0_f64;
            for (rank, &i) in order.iter().enumerate() {
                running = running.max(((m - rank) as f64 * p[i]).min(1.0));
                out[i] = running;
            }
        }
        Correction::BenjaminiHochberg => {
            let mut running = 1.0_f64;
            for (rank, &i) in order.iter().enumerate().rev() {
                running = running.min((m as f64 / (rank + 1) as f64 * p[i]).min(1.0));
                out[i] = running;
            }
        }
    }
    out
}

/// Why two groups are not called different.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Fewer than [`MIN_CELLS`] cells on a side.
    #[serde(rename = "n too small")]
    NTooSmall,
    /// The corrected p-value is not below [`ALPHA`].
    #[serde(rename = "not significant after correction")]
    NotSignificant,
    /// The ratio's interval contains 1.
    #[serde(rename = "overlap")]
    Overlap,
    /// No ratio (a zero median).
    #[serde(rename = "ratio undefined")]
    RatioUndefined,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NTooSmall => "n too small",
            Reason::NotSignificant => "not significant after correction",
            Reason::Overlap => "overlap",
            Reason::RatioUndefined => "ratio undefined",
        }
    }
}

/// The rule, in one place: two groups are distinguishable only when each has
/// at least [`MIN_CELLS`] cells, the corrected p-value is below [`ALPHA`] and
/// the interval of the ratio of medians excludes 1. `Ok(())` when they are.
pub fn verdict(
    n_a: usize,
    n_b: usize,
    p_adjusted: Option<f64>,
    ratio_ci: Option<(f64, f64)>,
) -> Result<(), Reason> {
    if n_a.min(n_b) < MIN_CELLS {
        return Err(Reason::NTooSmall);
    }
    match p_adjusted {
        Some(p) if p < ALPHA => {}
        _ => return Err(Reason::NotSignificant),
    }
    match ratio_ci {
        None => Err(Reason::RatioUndefined),
        Some((lo, hi)) if lo <= 1.0 && 1.0 <= hi => Err(Reason::Overlap),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
