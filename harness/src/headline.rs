//! Derived metrics (HOL inflation against the lossless twin cell) and the short
//! table of headline findings printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quicbench_results::stats::{median_ci, quantile};
use quicbench_results::{CellResult, SummaryRow};

fn pooled(cells: &[CellResult], f: impl Fn(&CellResult) -> bool, metric: &str) -> Vec<f64> {
    cells
        .iter()
        .filter(|c| c.status.is_ok() && f(c))
        .filter_map(|c| c.metrics.get(metric))
        .flat_map(|m| m.samples.iter().copied())
        .collect()
}

fn row(
    protocol: &str,
    workload: &str,
    variant: &str,
    link: &str,
    metric: &str,
    unit: &str,
    samples: &[f64],
    cells: u64,
) -> Option<SummaryRow> {
    let ci = median_ci(samples).ok()?;
    let d = quicbench_results::stats::describe(samples).ok()?;
    Some(SummaryRow {
        protocol: protocol.into(),
        workload: workload.into(),
        link: link.into(),
        metric: metric.into(),
        unit: unit.into(),
        median: ci.median,
        ci_low: ci.low,
        ci_high: ci.high,
        n: ci.n as u64,
        variant: variant.into(),
        ci_method: ci.method.as_str().into(),
        ci_confidence: ci.confidence,
        mean: d.mean,
        std: d.std,
        min: d.min,
        p90: d.p90,
        p99: d.p99,
        max: d.max,
        cells,
        source: "derived".into(),
    })
}

/// The lossless twin of a link: same RTT and rate, no loss.
fn twin<'a>(cells: &'a [CellResult], c: &CellResult) -> Option<&'a str> {
    cells
        .iter()
        .find(|o| {
            o.link.loss == 0.0
                && (o.link.rtt_ms - c.link.rtt_ms).abs() < 1e-9
                && o.link.rate_bps == c.link.rate_bps
                && !o.link.up.contains("loss")
        })
        .map(|o| o.link.label.as_str())
}

/// HOL inflation rows: for each protocol and lossy link of the paced workload,
/// latency quantiles under loss divided by the same quantiles on the lossless
/// twin link, and the share of requests slower than the lossless median plus one RTT.
pub fn derived_rows(cells: &[CellResult]) -> Vec<SummaryRow> {
    let mut out = Vec::new();
    let mut keys: Vec<(String, String)> = cells
        .iter()
        .filter(|c| c.workload == "hol" && c.variant == "paced" && c.link.loss > 0.0)
        .map(|c| (c.protocol.clone(), c.link.label.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    for (proto, label) in keys {
        let Some(example) = cells
            .iter()
            .find(|c| c.protocol == proto && c.link.label == label)
        else {
            continue;
        };
        let Some(base_label) = twin(cells, example) else {
            continue;
        };
        let base_label = base_label.to_string();
        let sel = |l: &str| {
            let l = l.to_string();
            let p = proto.clone();
            move |c: &CellResult| {
                c.workload == "hol" && c.variant == "paced" && c.protocol == p && c.link.label == l
            }
        };
        let lossy = pooled(cells, sel(&label), "latency_ms");
        let base = pooled(cells, sel(&base_label), "latency_ms");
        if lossy.is_empty() || base.is_empty() {
            continue;
        }
        let ncells = cells.iter().filter(|c| sel(&label)(c)).count() as u64;
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            if let (Ok(a), Ok(b)) = (quantile(&lossy, q), quantile(&base, q)) {
                if b > 0.0 {
                    // One value per comparison: n counts the lossy samples behind it.
                    if let Some(mut r) = row(
                        &proto,
                        "hol",
                        "paced",
                        &label,
                        &format!("hol_inflation_{name}"),
                        "ratio",
                        &[a / b],
                        ncells,
                    ) {
                        r.n = lossy.len() as u64;
                        out.push(r);
                    }
                }
            }
        }
        let rtt = example.link.rtt_ms;
        if let Ok(b50) = quantile(&base, 0.5) {
            let delayed =
                lossy.iter().filter(|v| **v > b50 + rtt).count() as f64 / lossy.len() as f64;
            if let Some(mut r) = row(
                &proto,
                "hol",
                "paced",
                &label,
                "hol_delayed_share",
                "fraction",
                &[delayed],
                ncells,
            ) {
                r.n = lossy.len() as u64;
                out.push(r);
            }
        }
    }
    out
}

fn med(
    rows: &[SummaryRow],
    proto: &str,
    workload: &str,
    variant: &str,
    link: &str,
    metric: &str,
) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.protocol == proto
                && r.workload == workload
                && r.variant == variant
                && r.link == link
                && r.metric == metric
        })
        .map(|r| r.median)
}

/// A short plain-text table of the headline findings.
pub fn headline(cells: &[CellResult], rows: &[SummaryRow]) -> String {
    let mut s = String::new();
    let mut protos: Vec<String> = rows.iter().map(|r| r.protocol.clone()).collect();
    protos.sort();
    protos.dedup();
    let mut links: Vec<(f64, f64, String)> = cells
        .iter()
        .map(|c| (c.link.rtt_ms, c.link.loss, c.link.label.clone()))
        .collect();
    links.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    links.dedup_by(|a, b| a.2 == b.2);
    let theory: BTreeMap<(String, String), f64> = cells
        .iter()
        .filter(|c| c.workload == "handshake")
        .filter_map(|c| {
            c.theory
                .get("ttfb_rtt")
                .map(|t| ((c.protocol.clone(), c.variant.clone()), *t))
        })
        .collect();
    if let Some((_, _, l)) = links.iter().find(|(rtt, loss, label)| {
        *loss == 0.0
            && *rtt > 0.0
            && rows
                .iter()
                .any(|r| r.workload == "handshake" && &r.link == label)
    }) {
        let _ = writeln!(
            s,
            "Handshake: time to first byte in RTTs on {l} (median [theory])"
        );
        for p in &protos {
            let c = med(rows, p, "handshake", "cold", l, "ttfb_rtt");
            let r = med(rows, p, "handshake", "resumed", l, "ttfb_rtt");
            if c.is_none() && r.is_none() {
                continue;
            }
            let f = |v: Option<f64>, mode: &str| match (
                v,
                theory.get(&(p.clone(), mode.to_string())),
            ) {
                (Some(v), Some(t)) => format!("{v:5.2} [{t}]"),
                (Some(v), None) => format!("{v:5.2}"),
                _ => "    -".into(),
            };
            let _ = writeln!(
                s,
                "  {p:<15} cold {}   resumed {}",
                f(c, "cold"),
                f(r, "resumed")
            );
        }
    }
    let derived: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.metric == "hol_inflation_p99")
        .collect();
    if let Some(worst) = derived.iter().map(|r| r.link.clone()).max_by(|a, b| {
        let la = cells
            .iter()
            .find(|c| &c.link.label == a)
            .map(|c| c.link.loss)
            .unwrap_or(0.0);
        let lb = cells
            .iter()
            .find(|c| &c.link.label == b)
            .map(|c| c.link.loss)
            .unwrap_or(0.0);
        la.partial_cmp(&lb).unwrap_or(std::cmp::Ordering::Equal)
    }) {
        let _ = writeln!(s, "HOL blocking (paced requests) on {worst}: latency inflation vs lossless, p50 / p99, share delayed > 1 RTT");
        for p in &protos {
            let g = |m: &str| med(rows, p, "hol", "paced", &worst, m);
            if let (Some(a), Some(b)) = (g("hol_inflation_p50"), g("hol_inflation_p99")) {
                let d = g("hol_delayed_share").unwrap_or(f64::NAN);
                let _ = writeln!(s, "  {p:<15} x{a:5.2} / x{b:6.2}   {:5.1}%", d * 100.0);
            }
        }
    }
    let mig: Vec<&CellResult> = cells.iter().filter(|c| c.workload == "migration").collect();
    if !mig.is_empty() {
        let _ = writeln!(
            s,
            "Migration: survived without a new handshake (cells), median disruption"
        );
        let mut keys: Vec<(String, String)> = mig
            .iter()
            .map(|c| (c.variant.clone(), c.protocol.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        for (v, p) in keys {
            let cs: Vec<&&CellResult> = mig
                .iter()
                .filter(|c| c.variant == v && c.protocol == p)
                .collect();
            let surv: f64 = cs
                .iter()
                .filter_map(|c| c.metrics.get("survived"))
                .flat_map(|m| m.samples.iter())
                .sum();
            let dis = rows
                .iter()
                .find(|r| {
                    r.protocol == p
                        && r.workload == "migration"
                        && r.variant == v
                        && r.metric == "disruption_ms"
                })
                .map(|r| r.median);
            let _ = writeln!(
                s,
                "  {v:<8} {p:<15} {}/{}   {}",
                surv as u64,
                cs.len(),
                dis.map(|d| format!("{d:8.1} ms"))
                    .unwrap_or_else(|| "       -".into())
            );
        }
    }
    let gp: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.workload == "goodput" && r.metric == "goodput_mbps")
        .collect();
    if !gp.is_empty() {
        let _ = writeln!(s, "Goodput (Mbit/s, median [95% CI])");
        for r in gp {
            let _ = writeln!(
                s,
                "  {:<15} {:<22} {:8.1} [{:.1}, {:.1}]",
                r.protocol, r.link, r.median, r.ci_low, r.ci_high
            );
        }
    }
    let failed = cells.iter().filter(|c| !c.status.is_ok()).count();
    if failed > 0 {
        let _ = writeln!(
            s,
            "{failed} cell(s) failed: see their \"status\" in cells/*.json"
        );
    }
    s
}
