use super::*;
use rand_distr::{Distribution, Exp, Normal, Uniform};

#[test]
fn order_statistic_ranks_match_tables() {
    // (n, j, k) from the binomial tables of the median CI (e.g. Conover,
    // Practical Nonparametric Statistics, table A3) at ≥ 95%.
    let table = [
        (6, 1, 6),
        (7, 1, 7),
        (8, 1, 8),
        (9, 2, 8),
        (10, 2, 9),
        (11, 2, 10),
        (12, 3, 10),
        (15, 4, 12),
        (20, 6, 15),
        (25, 8, 18),
        (30, 10, 21),
        (50, 18, 33),
        (100, 40, 61),
        (1000, 469, 532),
    ];
    for (n, j, k) in table {
        let (gj, gk, conf) = order_statistic_ranks(n, 0.95).unwrap();
        assert_eq!((gj, gk), (j, k), "n = {n}");
        assert!((0.95..1.0).contains(&conf), "n = {n}: {conf}");
    }
    // Exact confidences.
    assert!((order_statistic_ranks(6, 0.95).unwrap().2 - 0.96875).abs() < 1e-12);
    assert!((order_statistic_ranks(10, 0.95).unwrap().2 - 0.978515625).abs() < 1e-12);
    assert!((order_statistic_ranks(20, 0.95).unwrap().2 - 0.9586105346679688).abs() < 1e-12);
    for n in 0..6 {
        assert_eq!(order_statistic_ranks(n, 0.95), None, "n = {n}");
    }
    // Beyond 2^-1074: the log-space pmf still works and stays symmetric.
    let (j, k, c) = order_statistic_ranks(100_000, 0.95).unwrap();
    assert_eq!(j + k, 100_001);
    // Normal approximation: n/2 − 1.96·√n/2 ≈ 49690.
    assert!((49_680..=49_700).contains(&j), "{j}");
    assert!((0.95..0.951).contains(&c));
    assert_eq!(order_statistic_ranks(10, 1.0), None);
    assert_eq!(order_statistic_ranks(10, 0.0), None);
}

#[test]
fn median_ci_uses_the_ranks() {
    let xs: Vec<f64> = (1..=10).rev().map(f64::from).collect();
    let ci = median_ci(&xs).unwrap();
    assert_eq!(ci.median, 5.5);
    assert_eq!((ci.low, ci.high), (2.0, 9.0));
    assert_eq!(ci.n, 10);
    assert_eq!(ci.method, CiMethod::OrderStatistic);
    // Lower level, narrower interval.
    let ci80 = median_ci_level(&xs, 0.8).unwrap();
    assert!(ci80.low >= ci.low && ci80.high <= ci.high);
}

#[test]
fn small_n_gives_the_range_flagged() {
    for n in 1..6usize {
        let xs: Vec<f64> = (0..n).map(|i| (i * 7 % 5) as f64).collect();
        let ci = median_ci(&xs).unwrap();
        assert_eq!(ci.method, CiMethod::RangeSmallN, "n = {n}");
        let s = sorted(&xs).unwrap();
        assert_eq!((ci.low, ci.high), (s[0], s[n - 1]));
        let expect = 1.0 - 2.0 * 0.5f64.powi(n as i32);
        assert!((ci.confidence - expect).abs() < 1e-12);
        assert!(ci.confidence < 0.95);
    }
    let one = median_ci(&[4.2]).unwrap();
    assert_eq!(
        (one.median, one.low, one.high, one.confidence),
        (4.2, 4.2, 4.2, 0.0)
    );
}

#[test]
fn bad_input_is_an_error() {
    assert_eq!(median_ci(&[]), Err(StatsError::Empty));
    assert_eq!(
        median_ci(&[1.0, f64::NAN]).unwrap_err().to_string(),
        "sample 1 is NaN: samples must be finite"
    );
    assert!(matches!(
        mean(&[f64::INFINITY]),
        Err(StatsError::NonFinite { index: 0, .. })
    ));
    assert!(median(&[]).is_err());
    assert!(std_dev(&[]).is_err());
    assert!(describe(&[1.0, f64::NEG_INFINITY]).is_err());
    assert_eq!(quantile(&[1.0], 1.5), Err(StatsError::BadQuantile(1.5)));
    assert!(matches!(
        quantile(&[1.0], f64::NAN),
        Err(StatsError::BadQuantile(_))
    ));
    assert_eq!(median_ci_level(&[1.0], 1.0), Err(StatsError::BadLevel(1.0)));
    assert!(bootstrap_median_ci(&[], 0.95, 10, 1).is_err());
    assert_eq!(
        bootstrap_median_ci(&[1.0], 0.95, 0, 1),
        Err(StatsError::NoResamples)
    );
    assert!(bootstrap_median_ci(&[f64::NAN], 0.95, 10, 1).is_err());
    assert!(compare(&[], &[1.0]).is_err());
    assert!(compare(&[1.0], &[f64::NAN]).is_err());
    assert!(mann_whitney_u(&[], &[1.0]).is_err());
}

#[test]
fn quantiles_type7() {
    let xs = [4.0, 1.0, 3.0, 2.0];
    assert_eq!(quantile(&xs, 0.0).unwrap(), 1.0);
    assert_eq!(quantile(&xs, 1.0).unwrap(), 4.0);
    assert_eq!(quantile(&xs, 0.5).unwrap(), 2.5);
    // R: quantile(c(1,2,3,4), 0.9, type = 7) = 3.7
    assert!((quantile(&xs, 0.9).unwrap() - 3.7).abs() < 1e-12);
    assert!((quantile(&xs, 0.25).unwrap() - 1.75).abs() < 1e-12);
    assert_eq!(quantile(&[7.0], 0.99).unwrap(), 7.0);
    let xs: Vec<f64> = (0..=100).map(f64::from).collect();
    assert!((quantile(&xs, 0.99).unwrap() - 99.0).abs() < 1e-9);
    assert_eq!(median(&[3.0, 1.0, 2.0]).unwrap(), 2.0);
}

#[test]
fn mean_std_describe() {
    let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
    assert_eq!(mean(&xs).unwrap(), 5.0);
    // Sample std: sqrt(32 / 7).
    assert!((std_dev(&xs).unwrap().unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    assert_eq!(std_dev(&[1.0]).unwrap(), None);
    let d = describe(&xs).unwrap();
    assert_eq!((d.n, d.min, d.max, d.p50), (8, 2.0, 9.0, 4.5));
}

/// Fraction of `trials` CIs (from `ci`) that contain `truth`, samples of size
/// `n` drawn from `dist`.
fn coverage<D: Distribution<f64>>(
    dist: &D,
    truth: f64,
    n: usize,
    trials: usize,
    seed: u64,
    ci: impl Fn(&[f64], u64) -> MedianCi,
) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hit = 0;
    for t in 0..trials {
        let xs: Vec<f64> = (0..n).map(|_| dist.sample(&mut rng)).collect();
        let c = ci(&xs, t as u64);
        if c.low <= truth && truth <= c.high {
            hit += 1;
        }
    }
    hit as f64 / trials as f64
}

#[test]
fn order_statistic_ci_covers_the_true_median() {
    let trials = 4000;
    for n in [6usize, 10, 25, 101] {
        let conf = order_statistic_ranks(n, 0.95).unwrap().2;
        // 4 standard errors of a binomial proportion over `trials`.
        let tol = 4.0 * (conf * (1.0 - conf) / trials as f64).sqrt();
        let os = |xs: &[f64], _| median_ci(xs).unwrap();
        let u = coverage(&Uniform::new(0.0, 1.0).unwrap(), 0.5, n, trials, 1, os);
        let g = coverage(&Normal::new(10.0, 2.0).unwrap(), 10.0, n, trials, 2, os);
        let e = coverage(
            &Exp::new(1.0).unwrap(),
            std::f64::consts::LN_2,
            n,
            trials,
            3,
            os,
        );
        for (name, c) in [("uniform", u), ("normal", g), ("exponential", e)] {
            eprintln!("order-statistic CI coverage: {name:11} n={n:3}: {c:.4} (exact {conf:.4})");
            assert!(
                (c - conf).abs() <= tol,
                "{name} n={n}: coverage {c}, expected {conf} ± {tol}"
            );
        }
    }
}

#[test]
fn bootstrap_is_deterministic_and_roughly_covers() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let xs: Vec<f64> = (0..40)
        .map(|_| Exp::new(2.0).unwrap().sample(&mut rng))
        .collect();
    let a = bootstrap_median_ci(&xs, 0.95, 1000, 42).unwrap();
    let b = bootstrap_median_ci(&xs, 0.95, 1000, 42).unwrap();
    assert_eq!(a, b);
    let c = bootstrap_median_ci(&xs, 0.95, 1000, 43).unwrap();
    assert_ne!((a.low, a.high), (c.low, c.high));
    assert_eq!(a.method, CiMethod::Bootstrap);
    assert!(a.low <= a.median && a.median <= a.high);
    // The percentile bootstrap of a median is approximate: coverage near, not
    // exactly at, the nominal level.
    let boot = |xs: &[f64], t: u64| bootstrap_median_ci(xs, 0.95, 400, t).unwrap();
    let cov = coverage(&Normal::new(0.0, 1.0).unwrap(), 0.0, 50, 600, 5, boot);
    eprintln!("bootstrap CI coverage: normal n=50: {cov:.4} (nominal 0.95)");
    assert!((0.91..=0.99).contains(&cov), "bootstrap coverage {cov}");
    // A single sample: a degenerate interval, not an error.
    let one = bootstrap_median_ci(&[3.0], 0.95, 10, 0).unwrap();
    assert_eq!((one.low, one.high), (3.0, 3.0));
}

#[test]
fn compare_says_when_distinguishable() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = Normal::new(100.0, 5.0).unwrap();
    let a: Vec<f64> = (0..50).map(|_| n.sample(&mut rng)).collect();
    let b: Vec<f64> = (0..50).map(|_| n.sample(&mut rng)).collect();
    let far: Vec<f64> = a.iter().map(|x| x + 30.0).collect();
    let same = compare(&a, &b).unwrap();
    assert!(!same.distinguishable);
    assert!(same.mann_whitney_p > 0.05, "{}", same.mann_whitney_p);
    let diff = compare(&far, &a).unwrap();
    assert!(diff.distinguishable);
    assert!((diff.diff_median - 30.0).abs() < 1e-9);
    assert!((diff.ratio.unwrap() - far_median(&far, &a)).abs() < 1e-12);
    assert!(diff.mann_whitney_p < 1e-6);
    let zero = compare(&[1.0], &[0.0]).unwrap();
    assert_eq!(zero.ratio, None);
}

fn far_median(a: &[f64], b: &[f64]) -> f64 {
    median(a).unwrap() / median(b).unwrap()
}

#[test]
fn mann_whitney_known_values() {
    // scipy.stats.mannwhitneyu([1,2,3], [4,5,6], use_continuity=True,
    // method="asymptotic"): U = 0, p = 0.08085559.
    let (u, p) = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
    assert_eq!(u, 0.0);
    assert!((p - 0.080_855_6).abs() < 1e-5, "{p}");
    let (u, _) = mann_whitney_u(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(u, 9.0);
    // Ties: all equal → p = 1.
    assert_eq!(
        mann_whitney_u(&[1.0, 1.0], &[1.0, 1.0]).unwrap(),
        (2.0, 1.0)
    );
    // With ties, by hand: U = 2.5 (pairs a > b, ties ½); tie term Σ(t³−t) = 30,
    // var = 4·3/12·(8 − 30/42), z = (|2.5 − 6| − ½)/√var, p = erfc(z/√2).
    let (u, p) = mann_whitney_u(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 4.0]).unwrap();
    assert_eq!(u, 2.5);
    assert!((p - 0.266_379_9).abs() < 1e-5, "{p}");
}

#[test]
fn erfc_accuracy() {
    // Reference values of erfc.
    for (x, want) in [
        (0.0, 1.0),
        (0.5, 0.479_500_122_186_953_5),
        (1.0, 0.157_299_207_050_285_13),
        (2.0, 0.004_677_734_981_047_266),
        (-1.0, 1.842_700_792_949_715),
        (4.0, 1.541_725_790_028_002e-8),
    ] {
        let got = erfc(x);
        assert!(
            ((got - want) / want).abs() < 2e-7,
            "erfc({x}) = {got}, want {want}"
        );
    }
}
