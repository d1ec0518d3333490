use super::*;
use rand_distr::{Distribution, Normal};

/// A hierarchical experiment: `n` cells, each with its own offset
/// u ~ N(0, σ_b), and `m` samples exp(μ + u + e), e ~ N(0, σ_w). With m odd
/// and symmetric u, e the median of the cell medians, and of all samples,
/// is exp(μ).
fn experiment(rng: &mut ChaCha8Rng, n: usize, m: usize, sb: f64, sw: f64) -> Vec<CellValue> {
    let between = Normal::new(0.0, sb).unwrap();
    let within = Normal::new(0.0, sw).unwrap();
    (0..n)
        .map(|_| {
            let u = between.sample(rng);
            let xs: Vec<f64> = (0..m)
                .map(|_| (3.0 + u + within.sample(rng)).exp())
                .collect();
            CellValue::from_samples(&xs).unwrap()
        })
        .collect()
}

const TRUE_MEDIAN: f64 = 20.085_536_923_187_668; // e³

/// Share of `trials` experiments whose interval covers the true median: the
/// cell-level method, and the per-sample order-statistic interval over the
/// pooled samples that it replaces.
fn coverage(n: usize, trials: usize, seed: u64) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut cell_hits, mut pooled_hits) = (0usize, 0usize);
    for t in 0..trials {
        let cells = experiment(&mut rng, n, 11, 0.25, 0.3);
        let iv = cell_interval(&cells, 0.95, seed ^ t as u64).unwrap();
        if iv.low.unwrap() <= TRUE_MEDIAN && TRUE_MEDIAN <= iv.high.unwrap() {
            cell_hits += 1;
        }
        let pooled: Vec<f64> = cells.iter().flat_map(|c| c.within.clone()).collect();
        let old = stats::median_ci(&pooled).unwrap();
        if old.low <= TRUE_MEDIAN && TRUE_MEDIAN <= old.high {
            pooled_hits += 1;
        }
    }
    (
        cell_hits as f64 / trials as f64,
        pooled_hits as f64 / trials as f64,
    )
}

/// The acceptance check: 2,000 simulated experiments per n, nominal
/// 95% intervals cover the true median in 93-97% of them; the per-sample
/// method under-covers on the same data.
#[test]
fn cell_level_intervals_cover_the_true_median() {
    for (n, seed) in [(5usize, 11u64), (10, 12), (30, 13)] {
        let (cell, pooled) = coverage(n, 2000, seed);
        eprintln!("coverage n={n:2}: cell-level {cell:.4}, per-sample (old) {pooled:.4}");
        assert!((0.93..=0.97).contains(&cell), "n={n}: coverage {cell}");
        assert!(pooled < 0.85, "n={n}: per-sample coverage {pooled}");
    }
}

#[test]
fn methods_by_n() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let cells = experiment(&mut rng, 2, 5, 0.1, 0.1);
    let iv = cell_interval(&cells, 0.95, 1).unwrap();
    assert_eq!(iv.method, IntervalMethod::NTooSmall);
    assert_eq!((iv.low, iv.high, iv.confidence), (None, None, None));
    let cells = experiment(&mut rng, 4, 5, 0.1, 0.1);
    let iv = cell_interval(&cells, 0.95, 1).unwrap();
    assert_eq!(iv.method, IntervalMethod::ClusterBootstrap);
    assert_eq!(iv.confidence, Some(0.875));
    // Same input, same seed, same interval.
    assert_eq!(iv, cell_interval(&cells, 0.95, 1).unwrap());
    let singles: Vec<CellValue> = [1.0, 2.0, 3.0].map(CellValue::single).to_vec();
    let iv = cell_interval(&singles, 0.95, 1).unwrap();
    assert_eq!(iv.method, IntervalMethod::CellBootstrap);
    assert!(iv.low.unwrap() >= 1.0 && iv.high.unwrap() <= 3.0);
    let cells = experiment(&mut rng, 6, 5, 0.1, 0.1);
    let iv = cell_interval(&cells, 0.95, 1).unwrap();
    assert_eq!(iv.method, IntervalMethod::OrderStatistic);
    assert_eq!(iv.confidence, Some(0.95));
    assert!(cell_interval(&[], 0.95, 1).is_err());
    assert!(cell_interval(&[CellValue::single(f64::NAN)], 0.95, 1).is_err());
}

#[test]
fn interpolated_interval_matches_hettmansperger_sheather() {
    // n = 10: γ₂ = 0.978515625, γ₃ = 0.890625, I = 0.32444, λ = 0.65766.
    let xs: Vec<f64> = (1..=10).map(f64::from).collect();
    let (lo, hi) = interpolated_median_ci(&xs, 0.95).unwrap();
    assert!((lo - 2.657_66).abs() < 1e-4, "{lo}");
    assert!((hi - 8.342_34).abs() < 1e-4, "{hi}");
    // Inside the exact (2, 9), outside the next pair in (3, 8).
    assert!(interpolated_median_ci(&xs[..5], 0.95).is_none());
}

#[test]
fn rank_test_exact_values() {
    // Complete separation of 3 vs 3: 2 of C(6,3) = 20 arrangements as extreme.
    let (p, m) = rank_test(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
    assert_eq!(m, TestMethod::MannWhitneyExact);
    assert!((p - 0.1).abs() < 1e-12, "{p}");
    let (p, _) = rank_test(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
    assert!((p - 2.0 / 252.0).abs() < 1e-12, "{p}");
    // Two against two can never reach 0.05.
    let (p, _) = rank_test(&[1.0, 2.0], &[3.0, 4.0]).unwrap();
    assert!((p - 1.0 / 3.0).abs() < 1e-12);
    // All tied: no evidence.
    let (p, _) = rank_test(&[1.0; 4], &[1.0; 4]).unwrap();
    assert_eq!(p, 1.0);
    // Large sets: the normal approximation, close to exact at the boundary.
    let a: Vec<f64> = (0..40).map(|i| i as f64).collect();
    let b: Vec<f64> = (0..40).map(|i| i as f64 + 12.5).collect();
    let (pe, me) = rank_test(&a, &b).unwrap();
    assert_eq!(me, TestMethod::MannWhitneyExact);
    let (pn, mn) = rank_test(&a, &[b.clone(), vec![100.0]].concat()).unwrap();
    assert_eq!(mn, TestMethod::MannWhitneyNormal);
    assert!((pe.ln() - pn.ln()).abs() < 0.5, "{pe} {pn}");
}

#[test]
fn corrections_known_values() {
    let p = [0.01, 0.04, 0.03, 0.005];
    let holm = adjust(&p, Correction::Holm);
    // Sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1, cumulative max.
    assert_eq!(holm, vec![0.03, 0.06, 0.06, 0.02]);
    let bh = adjust(&p, Correction::BenjaminiHochberg);
    // ×4/1, ×4/2, ×4/3, ×4/4, cumulative min from the top.
    let want = [0.02, 0.04, 0.04, 0.02];
    for (a, b) in bh.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{bh:?}");
    }
    assert!(adjust(&[], Correction::Holm).is_empty());
}

/// 1,000 families of 20 comparisons of cell-level values (6 cells a side,
/// hierarchical data). Under the complete null Holm holds the family-wise
/// error rate at 5% and BH (FDR = FWER there) too; uncorrected tests do not.
/// With 10 real effects among the 20, BH keeps the false discovery rate at
/// or below 5% · 10/20.
#[test]
fn corrections_control_error_rates_under_the_null() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let families = 1000;
    let (m, n) = (20usize, 6usize);
    let (mut any_raw, mut any_holm, mut any_bh) = (0usize, 0usize, 0usize);
    let mut fdp_sum = 0.0;
    let mut power_hits = 0usize;
    for _ in 0..families {
        let values = |rng: &mut ChaCha8Rng, shift: f64| -> Vec<f64> {
            experiment(rng, n, 5, 0.25, 0.3)
                .iter()
                .map(|c| c.value * shift)
                .collect()
        };
        let mut ps = Vec::new();
        for _ in 0..m {
            let (a, b) = (values(&mut rng, 1.0), values(&mut rng, 1.0));
            ps.push(rank_test(&a, &b).unwrap().0);
        }
        any_raw += ps.iter().any(|p| *p < ALPHA) as usize;
        any_holm += adjust(&ps, Correction::Holm).iter().any(|p| *p < ALPHA) as usize;
        any_bh += adjust(&ps, Correction::BenjaminiHochberg)
            .iter()
            .any(|p| *p < ALPHA) as usize;
        // Partial null: the first 10 differ by a factor 3.
        let mut ps = Vec::new();
        for i in 0..m {
            let shift = if i < 10 { 3.0 } else { 1.0 };
            let (a, b) = (values(&mut rng, shift), values(&mut rng, 1.0));
            ps.push(rank_test(&a, &b).unwrap().0);
        }
        let adj = adjust(&ps, Correction::BenjaminiHochberg);
        let rejected: Vec<usize> = (0..m).filter(|&i| adj[i] < ALPHA).collect();
        let false_ = rejected.iter().filter(|&&i| i >= 10).count();
        power_hits += rejected.iter().filter(|&&i| i < 10).count();
        if !rejected.is_empty() {
            fdp_sum += false_ as f64 / rejected.len() as f64;
        }
    }
    let f = families as f64;
    let (raw, holm, bh, fdr) = (
        any_raw as f64 / f,
        any_holm as f64 / f,
        any_bh as f64 / f,
        fdp_sum / f,
    );
    let power = power_hits as f64 / (f * 10.0);
    eprintln!(
        "null families of {m}: FWER uncorrected {raw:.3}, Holm {holm:.3}, BH {bh:.3}; \
         10/20 real effects: BH FDR {fdr:.4}, power {power:.3}"
    );
    // 5% plus three Monte Carlo standard errors (√(0.05·0.95/1000) ≈ 0.007).
    assert!(holm <= 0.071, "Holm FWER {holm}");
    assert!(bh <= 0.071, "BH FWER under the complete null {bh}");
    assert!(raw > 0.3, "uncorrected FWER {raw}");
    assert!(fdr <= 0.035, "BH FDR {fdr}");
}

/// Property: whatever the p-values, cell counts and ratio intervals,
/// `verdict` never calls a pair distinguishable with a corrected p ≥ 0.05,
/// with a ratio interval containing 1, or with fewer than 3 cells.
#[test]
fn distinguishable_never_without_significance() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..2000 {
        let m = rng.random_range(1..40usize);
        let ps: Vec<f64> = (0..m)
            .map(|_| {
                if rng.random_bool(0.3) {
                    rng.random_range(0.0..0.01)
                } else {
                    rng.random::<f64>()
                }
            })
            .collect();
        for c in [Correction::Holm, Correction::BenjaminiHochberg] {
            let adj = adjust(&ps, c);
            for (raw, p) in ps.iter().zip(&adj) {
                assert!(p >= raw, "adjusted below raw");
                let (na, nb) = (rng.random_range(0..10usize), rng.random_range(0..10usize));
                let lo = rng.random_range(0.2..1.5);
                let ci = rng
                    .random_bool(0.9)
                    .then(|| (lo, lo + rng.random_range(0.0..1.0)));
                if verdict(na, nb, Some(*p), ci).is_ok() {
                    assert!(*p < ALPHA);
                    assert!(na.min(nb) >= MIN_CELLS);
                    let (l, h) = ci.unwrap();
                    assert!(!(l <= 1.0 && 1.0 <= h));
                }
            }
        }
    }
    assert_eq!(
        verdict(2, 10, Some(0.0), Some((2.0, 3.0))),
        Err(Reason::NTooSmall)
    );
    assert_eq!(
        verdict(5, 5, Some(0.06), Some((2.0, 3.0))),
        Err(Reason::NotSignificant)
    );
    assert_eq!(
        verdict(5, 5, None, Some((2.0, 3.0))),
        Err(Reason::NotSignificant)
    );
    assert_eq!(
        verdict(5, 5, Some(0.01), Some((0.9, 3.0))),
        Err(Reason::Overlap)
    );
    assert_eq!(verdict(5, 5, Some(0.01), None), Err(Reason::RatioUndefined));
    assert_eq!(verdict(5, 5, Some(0.01), Some((1.1, 3.0))), Ok(()));
}

#[test]
fn ratio_interval_brackets_the_ratio() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a = experiment(&mut rng, 8, 11, 0.1, 0.2);
    let b: Vec<CellValue> = experiment(&mut rng, 8, 11, 0.1, 0.2)
        .into_iter()
        .map(|c| CellValue {
            value: c.value * 2.0,
            within: c.within.iter().map(|v| v * 2.0).collect(),
        })
        .collect();
    let (r, lo, hi, m) = ratio_interval(&a, &b, 0.95, 1000, 9).unwrap().unwrap();
    assert!(lo <= r && r <= hi);
    assert!(hi < 1.0 && lo > 0.25, "{lo} {hi}");
    assert_eq!(
        m,
        IntervalMethod::CellBootstrap,
        "8 cells a side: cells only"
    );
    let (_, lo4, hi4, m4) = ratio_interval(&a[..4], &b[..4], 0.95, 1000, 9)
        .unwrap()
        .unwrap();
    assert_eq!(m4, IntervalMethod::ClusterBootstrap);
    assert!(lo4 <= hi4);
    let zeros = [0.0, 0.0, 0.0].map(CellValue::single).to_vec();
    assert_eq!(ratio_interval(&a, &zeros, 0.95, 100, 1).unwrap(), None);
}
