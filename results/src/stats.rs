//! Statistics for benchmark samples: median with a distribution-free 95%
//! confidence interval, a seeded percentile bootstrap, quantiles, mean/std and
//! the comparison of two sample sets. Method and rationale: `docs/statistics.md`.
//!
//! Written here rather than taken from a crate: the order-statistic CI of the
//! median, the Mann-Whitney U normal approximation and `erfc` are a few dozen
//! lines, and no dependency already in the workspace provides them.
//!
//! Every function rejects empty input and non-finite samples with a
//! [`StatsError`]; none panics on data.

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Confidence level used throughout the reports.
pub const LEVEL: f64 = 0.95;

/// Default number of bootstrap resamples.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("no samples")]
    Empty,
    #[error("sample {index} is {value}: samples must be finite")]
    NonFinite { index: usize, value: f64 },
    #[error("quantile {0} is outside [0, 1]")]
    BadQuantile(f64),
    #[error("confidence level {0} is outside (0, 1)")]
    BadLevel(f64),
    #[error("bootstrap needs at least one resample")]
    NoResamples,
}

/// The samples, checked finite, sorted ascending.
pub fn sorted(samples: &[f64]) -> Result<Vec<f64>, StatsError> {
    if samples.is_empty() {
        return Err(StatsError::Empty);
    }
    if let Some((index, &value)) = samples.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StatsError::NonFinite { index, value });
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    Ok(v)
}

/// Quantile `p` of already sorted, finite, non-empty samples, by linear
/// interpolation between closest ranks (Hyndman & Fan type 7, the default of R
/// and NumPy): with h = (n − 1)·p, x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> Result<f64, StatsError> {
    if sorted.is_empty() {
        return Err(StatsError::Empty);
    }
    if !(0.0..=1.0).contains(&p) {
        return Err(StatsError::BadQuantile(p));
    }
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Ok(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Quantile `p` (type 7, see [`quantile_sorted`]).
pub fn quantile(samples: &[f64], p: f64) -> Result<f64, StatsError> {
    quantile_sorted(&sorted(samples)?, p)
}

/// The median (mean of the two middle values for even n).
pub fn median(samples: &[f64]) -> Result<f64, StatsError> {
    quantile(samples, 0.5)
}

pub fn mean(samples: &[f64]) -> Result<f64, StatsError> {
    let s = sorted(samples)?;
    Ok(mean_of(&s))
}

fn mean_of(s: &[f64]) -> f64 {
    s.iter().sum::<f64>() / s.len() as f64
}

/// Sample standard deviation (n − 1 denominator); `None` for a single sample.
pub fn std_dev(samples: &[f64]) -> Result<Option<f64>, StatsError> {
    let s = sorted(samples)?;
    Ok(std_of(&s))
}

fn std_of(s: &[f64]) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let m = mean_of(s);
    let ss: f64 = s.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (s.len() - 1) as f64).sqrt())
}

/// Descriptive statistics of one sample set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Describe {
    pub n: usize,
    pub mean: f64,
    pub std: Option<f64>,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn describe(samples: &[f64]) -> Result<Describe, StatsError> {
    let s = sorted(samples)?;
    Ok(Describe {
        n: s.len(),
        mean: mean_of(&s),
        std: std_of(&s),
        min: s[0],
        p50: quantile_sorted(&s, 0.5)?,
        p90: quantile_sorted(&s, 0.9)?,
        p99: quantile_sorted(&s, 0.99)?,
        max: s[s.len() - 1],
    })
}

/// How a confidence interval was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CiMethod {
    /// Exact, distribution-free: order statistics of a Binomial(n, ½).
    OrderStatistic,
    /// Too few samples for the requested level: the interval is [min, max]
    /// and its confidence (1 − 2^(1−n)) is below the level.
    RangeSmallN,
    /// Seeded percentile bootstrap (approximate).
    Bootstrap,
}

impl CiMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CiMethod::OrderStatistic => "order-statistic",
            CiMethod::RangeSmallN => "range-small-n",
            CiMethod::Bootstrap => "bootstrap",
        }
    }
}

/// A median with its confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MedianCi {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    pub n: usize,
    /// Confidence the interval actually has (exact for the order-statistic
    /// and range methods, nominal for the bootstrap).
    pub confidence: f64,
    pub method: CiMethod,
}

impl MedianCi {
    /// True when the two intervals share at least one point.
    pub fn overlaps(&self, other: &MedianCi) -> bool {
        self.low <= other.high && other.low <= self.high
    }
}

/// 1-based ranks (j, k) of the order statistics bounding a confidence interval
/// of the median at `level`, and the confidence they achieve: the largest j with
/// P(B ≤ j − 1) ≤ (1 − level)/2 for B ~ Binomial(n, ½), k = n + 1 − j.
/// `None` when even [min, max] falls short of `level` (n < 6 at 95%).
pub fn order_statistic_ranks(n: usize, level: f64) -> Option<(usize, usize, f64)> {
    if n == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let tail = (1.0 - level) / 2.0;
    // The binomial pmf in log space: 2^-n underflows beyond n ≈ 1074. Terms
    // that underflow to 0 are below 1e-308 and do not move the sum.
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_choose = 0.0_f64; // ln C(n, k)
    let mut cdf = 0.0_f64; // P(B ≤ k)
    let mut j = 0usize;
    let mut cdf_below_j = 0.0_f64; // P(B ≤ j − 1)
    for k in 0..n {
        cdf += (ln_choose - ln2n).exp();
        if cdf > tail {
            break;
        }
        j = k + 1;
        cdf_below_j = cdf;
        ln_choose += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
    }
    if j == 0 {
        return None;
    }
    Some((j, n + 1 - j, 1.0 - 2.0 * cdf_below_j))
}

/// Median with a distribution-free 95% CI (see [`median_ci_level`]).
pub fn median_ci(samples: &[f64]) -> Result<MedianCi, StatsError> {
    median_ci_level(samples, LEVEL)
}

/// Median with a confidence interval at `level` from order statistics: exact
/// for any continuous distribution, assumes only independent samples. With
/// too few samples for `level` (n < 6 at 95%) the interval is [min, max],
/// flagged [`CiMethod::RangeSmallN`] with its true, lower confidence.
pub fn median_ci_level(samples: &[f64], level: f64) -> Result<MedianCi, StatsError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::BadLevel(level));
    }
    let s = sorted(samples)?;
    let n = s.len();
    let median = quantile_sorted(&s, 0.5)?;
    Ok(match order_statistic_ranks(n, level) {
        Some((j, k, confidence)) => MedianCi {
            median,
            low: s[j - 1],
            high: s[k - 1],
            n,
            confidence,
            method: CiMethod::OrderStatistic,
        },
        None => MedianCi {
            median,
            low: s[0],
            high: s[n - 1],
            n,
            // P(min ≤ m ≤ max) = 1 − 2·(½)^n.
            confidence: 1.0 - 2.0 * 0.5_f64.powi(n.min(2000) as i32),
            method: CiMethod::RangeSmallN,
        },
    })
}

/// Percentile bootstrap CI of the median: `resamples` resamples with
/// replacement drawn from ChaCha8 seeded with `seed` (so the same input and seed
/// give the same interval everywhere), bounds = type-7 quantiles (1 − level)/2
/// and (1 + level)/2 of the resampled medians.
pub fn bootstrap_median_ci(
    samples: &[f64],
    level: f64,
    resamples: usize,
    seed: u64,
) -> Result<MedianCi, StatsError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::BadLevel(level));
    }
    if resamples == 0 {
        return Err(StatsError::NoResamples);
    }
    let s = sorted(samples)?;
    let n = s.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0.0; n];
    let mut medians = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in buf.iter_mut() {
            *x = s[rng.random_range(0..n)];
        }
        buf.sort_by(f64::total_cmp);
        medians.push(quantile_sorted(&buf, 0.5)?);
    }
    medians.sort_by(f64::total_cmp);
    Ok(MedianCi {
        median: quantile_sorted(&s, 0.5)?,
        low: quantile_sorted(&medians, (1.0 - level) / 2.0)?,
        high: quantile_sorted(&medians, (1.0 + level) / 2.0)?,
        n,
        confidence: level,
        method: CiMethod::Bootstrap,
    })
}

/// Two sample sets side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: MedianCi,
    pub b: MedianCi,
    /// median(a) − median(b).
    pub diff_median: f64,
    /// median(a) / median(b); `None` when median(b) is 0.
    pub ratio: Option<f64>,
    /// The 95% CIs of the medians do not overlap. Conservative: overlapping
    /// intervals do not prove equality, they mean "not shown different".
    pub distinguishable: bool,
    /// Two-sided p-value of the Mann-Whitney U test (second opinion).
    pub mann_whitney_p: f64,
}

/// Compares `a` with `b`: medians, their 95% CIs, whether those are disjoint,
/// and a Mann-Whitney U p-value.
pub fn compare(a: &[f64], b: &[f64]) -> Result<Comparison, StatsError> {
    let ca = median_ci(a)?;
    let cb = median_ci(b)?;
    let (_, p) = mann_whitney_u(a, b)?;
    Ok(Comparison {
        diff_median: ca.median - cb.median,
        ratio: (cb.median != 0.0).then(|| ca.median / cb.median),
        distinguishable: !ca.overlaps(&cb),
        mann_whitney_p: p,
        a: ca,
        b: cb,
    })
}

/// Mann-Whitney U of `a` against `b` and its two-sided p-value by the normal
/// approximation with tie correction and continuity correction (adequate from
/// about 8 samples per side; smaller sets give a rough p-value).
/// Returns (U_a, p); U_a counts pairs where a > b (ties count ½).
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Result<(f64, f64), StatsError> {
    sorted(a)?;
    sorted(b)?;
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Mid-ranks for ties, and Σ(t³ − t) for the variance correction.
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_a += mid_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let mean_u = n1 * n2 / 2.0;
    let var_u = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var_u <= 0.0 {
        // Every value tied: no evidence of a difference.
        return Ok((u, 1.0));
    }
    let dist = ((u - mean_u).abs() - 0.5).max(0.0);
    let z = dist / var_u.sqrt();
    Ok((u, erfc(z / std::f64::consts::SQRT_2).min(1.0)))
}

/// Complementary error function, Chebyshev approximation with fractional error
/// below 1.2e-7 everywhere (Press et al., Numerical Recipes, §6.2 "erfcc").
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests;
