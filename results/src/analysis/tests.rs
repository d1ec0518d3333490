use super::*;
use crate::schema::LinkInfo;

fn cell(proto: &str, rep: u32, cc: &str, samples: &[f64]) -> CellResult {
    let mut c = CellResult::new(
        format!("handshake-cold__{proto}__l__{cc}__r{rep}"),
        proto,
        "handshake",
        "cold",
        LinkInfo {
            label: "l".into(),
            ..LinkInfo::default()
        },
        rep,
        1,
    );
    c.started = format!("2026-12-03T06:{:02}:00Z", rep);
    if !cc.is_empty() {
        c.params = serde_json::json!({ "cc": cc });
    }
    for s in samples {
        c.push_sample("ttfb_ms", "ms", *s).unwrap();
    }
    c
}

fn reps(proto: &str, n: u32, cc: &str, base: f64) -> Vec<CellResult> {
    (0..n)
        .map(|r| {
            let b = base + r as f64 * 0.1;
            cell(proto, r, cc, &[b, b + 1.0, b + 2.0])
        })
        .collect()
}

#[test]
fn summary_is_over_cells_and_groups_by_cc() {
    let mut cells = reps("h3", 6, "cubic", 10.0);
    cells.extend(reps("h3", 2, "bbr", 10.0));
    let rows = summarize_with(&cells, &[]);
    assert_eq!(rows.len(), 2);
    let bbr = &rows[0];
    assert_eq!((bbr.cc.as_str(), bbr.n, bbr.samples), ("bbr", 2, 6));
    assert_eq!(bbr.ci_method, "n too small");
    let cubic = &rows[1];
    assert_eq!(
        (cubic.cc.as_str(), cubic.n, cubic.samples),
        ("cubic", 6, 18)
    );
    assert_eq!(cubic.ci_method, "order-statistic");
    assert_eq!(cubic.ci_confidence, Some(0.95));
    // Cell medians 11.0 .. 11.5: the interval lies within them.
    let (lo, hi) = (cubic.ci_low.unwrap(), cubic.ci_high.unwrap());
    assert!(11.0 <= lo && lo <= cubic.median && cubic.median <= hi && hi <= 11.5);
    assert!(interval_text(cubic, 1).contains("95% order-statistic, n = 6"));
    assert!(interval_text(bbr, 1).contains("too few for an interval"));
}

#[test]
fn derived_values_are_one_per_cell() {
    let cells = reps("h3", 4, "", 10.0);
    let derived: Vec<Derived> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| Derived {
            cell_id: c.cell_id.clone(),
            metric: "hol_inflation_p99".into(),
            unit: "ratio".into(),
            value: 2.0 + i as f64 * 0.1,
        })
        .collect();
    let rows = summarize_with(&cells, &derived);
    let d = rows
        .iter()
        .find(|r| r.metric == "hol_inflation_p99")
        .unwrap();
    assert_eq!((d.n, d.samples, d.source.as_str()), (4, 4, "derived"));
    assert_eq!(d.ci_method, "cell-bootstrap");
    assert!(d.ci_low.unwrap() < d.ci_high.unwrap());
}

#[test]
fn comparisons_follow_the_rule() {
    let mut cells = reps("h3", 6, "", 10.0);
    cells.extend(reps("h2", 6, "", 20.0));
    cells.extend(reps("h1.1", 6, "", 10.05));
    cells.extend(reps("udp", 2, "", 50.0));
    let rows = comparisons(&cells, &[], Correction::Holm);
    let find = |a: &str, b: &str| {
        rows.iter()
            .find(|r| r.protocol_a == a && r.protocol_b == b)
            .unwrap()
    };
    let d = find("h2", "h3");
    assert!(d.distinguishable, "{d:?}");
    assert_eq!(d.test, "mann-whitney-exact");
    assert!(d.ratio_low.unwrap() > 1.5);
    let same = find("h1.1", "h3");
    assert!(!same.distinguishable);
    assert_eq!(same.reason, "not significant after correction");
    let small = find("h3", "udp");
    assert_eq!(small.reason, "n too small");
    assert_eq!(small.p_adjusted, None);
    // Three pairs of 6 against 6 form the family; the udp pairs cannot.
    assert!(rows.iter().all(|r| r.family == 3));
    assert!(rows.iter().all(|r| r.correction == "holm"));
    for r in &rows {
        if r.distinguishable {
            assert!(r.p_adjusted.unwrap() < 0.05);
        }
    }
}

#[test]
fn drift_sees_a_run_that_slows_down() {
    // 12 groups; in each the later cells are slower.
    let mut cells = Vec::new();
    for g in 0..12 {
        for r in 0..3u32 {
            let mut c = cell(&format!("p{g}"), r, "", &[10.0 + r as f64]);
            c.duration_s = 1.0 + r as f64;
            cells.push(c);
        }
    }
    let checks = drift(&cells);
    let ttfb = checks.iter().find(|d| d.metric == "ttfb_ms").unwrap();
    assert_eq!((ttfb.groups, ttfb.up, ttfb.down), (12, 12, 0));
    assert!(ttfb.drifting && ttfb.p < 0.001);
    assert!(drift_text(&checks).contains("DRIFT"));
    // A steady run does not.
    let steady: Vec<CellResult> = (0..12)
        .flat_map(|g| {
            (0..3u32).map(move |r| {
                let v = if (g + r) % 2 == 0 { 10.0 } else { 11.0 };
                cell(&format!("p{g}"), r, "", &[v])
            })
        })
        .collect();
    assert!(drift(&steady).iter().all(|d| !d.drifting));
}
