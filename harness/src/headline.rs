//! Derived metrics (HOL inflation against the lossless twin cell) and the short
//! table of headline findings printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quicbench_results::stats::{median_ci, quantile};
use quicbench_results::{CellResult, SummaryRow};

use crate::workloads::names as n;

fn pooled(cells: &[CellResult], f: impl Fn(&CellResult) -> bool, metric: &str) -> Vec<f64> {
    cells
        .iter()
        .filter(|c| c.status.is_ok() && f(c))
        .filter_map(|c| c.metrics.get(metric))
        .flat_map(|m| m.samples.iter().copied())
        .collect()
}

/// A derived row of the paced HOL workload.
fn row(
    protocol: &str,
    link: &str,
    metric: &str,
    unit: &str,
    samples: &[f64],
    cells: u64,
) -> Option<SummaryRow> {
    let (workload, variant) = ("hol", "paced");
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

/// HOL rows: for each protocol and lossy link of the paced workload, against
/// the lossless twin link: the lossless service time and queueing, the
/// loss-caused delay (latency quantile under loss − the same quantile without),
/// the queueing under loss, the inflation that delay alone causes
/// (`(lossless service + loss-caused delay) ÷ lossless service`, per quantile;
/// queueing that happens without loss is in neither), and the share of
/// requests slower than the lossless median plus one RTT.
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
        let lossy = pooled(cells, sel(&label), n::LATENCY_MS);
        let base = pooled(cells, sel(&base_label), n::LATENCY_MS);
        if lossy.is_empty() || base.is_empty() {
            continue;
        }
        // Cells from before the split have no service time: their latency is it.
        let mut service = pooled(cells, sel(&base_label), n::SERVICE_MS);
        if service.is_empty() {
            service = base.clone();
        }
        let ncells = cells.iter().filter(|c| sel(&label)(c)).count() as u64;
        let nl = lossy.len() as u64;
        // One value per comparison: n counts the lossy samples behind it.
        let mut one = |metric: &str, unit: &str, v: f64| {
            if let Some(mut r) = row(&proto, &label, metric, unit, &[v], ncells) {
                r.n = nl;
                out.push(r);
            }
        };
        let q = |v: &[f64], p: f64| quantile(v, p).ok();
        if let Some(s50) = q(&service, 0.5) {
            one(n::LOSSLESS_SERVICE_MS, "ms", s50);
        }
        let base_queue = pooled(cells, sel(&base_label), n::QUEUE_MS);
        if let Some(v) = q(&base_queue, 0.5) {
            one(n::LOSSLESS_QUEUE_MS, "ms", v);
        }
        let lossy_queue = pooled(cells, sel(&label), n::QUEUE_MS);
        if let Some(v) = q(&lossy_queue, 0.5) {
            one(n::LOSSY_QUEUE_MS, "ms", v);
        }
        for (name, p) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            let (Some(a), Some(b), Some(s)) = (q(&lossy, p), q(&base, p), q(&service, p)) else {
                continue;
            };
            let delay = a - b;
            match name {
                "p50" => one(n::LOSS_DELAY_P50_MS, "ms", delay),
                "p99" => one(n::LOSS_DELAY_P99_MS, "ms", delay),
                _ => {}
            }
            if s > 0.0 {
                one(
                    &format!("{}_{name}", n::HOL_INFLATION),
                    "ratio",
                    (s + delay) / s,
                );
            }
        }
        let rtt = example.link.rtt_ms;
        if let Some(b50) = q(&base, 0.5) {
            let delayed =
                lossy.iter().filter(|v| **v > b50 + rtt).count() as f64 / lossy.len() as f64;
            one(n::HOL_DELAYED_SHARE, "fraction", delayed);
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
        let _ = writeln!(
            s,
            "HOL blocking (paced requests) on {worst}: lossless service [queueing], loss-caused delay p50 / p99, inflation from it p50 / p99, share delayed > 1 RTT"
        );
        for p in &protos {
            let g = |m: &str| med(rows, p, "hol", "paced", &worst, m);
            let (Some(a), Some(b)) = (
                g(&format!("{}_p50", n::HOL_INFLATION)),
                g(&format!("{}_p99", n::HOL_INFLATION)),
            ) else {
                continue;
            };
            let f = |v: Option<f64>| {
                v.map(|v| format!("{v:6.1}"))
                    .unwrap_or_else(|| "     -".into())
            };
            let d = g(n::HOL_DELAYED_SHARE).unwrap_or(f64::NAN);
            let svc = g(n::LOSSLESS_SERVICE_MS);
            let queue = g(n::LOSSLESS_QUEUE_MS);
            // A baseline that queues is not a baseline: say so.
            let saturated = matches!((svc, queue), (Some(s), Some(q)) if q > 0.05 * s);
            let _ = writeln!(
                s,
                "  {p:<15} {} ms [{}]  {} / {} ms   x{a:5.2} / x{b:6.2}   {:5.1}%{}",
                f(svc),
                f(queue),
                f(g(n::LOSS_DELAY_P50_MS)),
                f(g(n::LOSS_DELAY_P99_MS)),
                d * 100.0,
                if saturated {
                    "  (lossless baseline queues)"
                } else {
                    ""
                }
            );
        }
    }
    migration_lines(&mut s, cells, rows);
    goodput_lines(&mut s, cells, rows);
    let failed = cells.iter().filter(|c| !c.status.is_ok()).count();
    if failed > 0 {
        let _ = writeln!(
            s,
            "{failed} cell(s) failed: see their \"status\" in cells/*.json"
        );
    }
    s
}

/// TCP's protocols: their migration recovery is a reconnect, in parts.
fn is_tcp(protocol: &str) -> bool {
    !matches!(protocol, "h3" | "udp")
}

fn row_median(
    rows: &[SummaryRow],
    proto: &str,
    workload: &str,
    variant: &str,
    metric: &str,
) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.protocol == proto
                && r.workload == workload
                && r.variant == variant
                && r.metric == metric
        })
        .map(|r| r.median)
}

/// Migration: survival counted only over cells whose event happened (a cell
/// whose event did not happen failed, and is counted apart); TCP's recovery
/// in parts, the stall timeout named as the parameter it is.
fn migration_lines(s: &mut String, cells: &[CellResult], rows: &[SummaryRow]) {
    let mig: Vec<&CellResult> = cells.iter().filter(|c| c.workload == "migration").collect();
    if mig.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "Migration: survived without a new handshake (cells with a confirmed event), median disruption"
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
        let ok: Vec<&&&CellResult> = cs.iter().filter(|c| c.status.is_ok()).collect();
        let surv: f64 = ok
            .iter()
            .filter_map(|c| c.metrics.get(n::SURVIVED))
            .flat_map(|m| m.samples.iter())
            .sum();
        let failed = cs.len() - ok.len();
        let g = |m: &str| row_median(rows, &p, "migration", &v, m);
        let mut line = format!(
            "  {v:<14} {p:<15} {}/{}{}   {}",
            surv as u64,
            ok.len(),
            if failed > 0 {
                format!(" ({failed} failed)")
            } else {
                String::new()
            },
            g(n::DISRUPTION_MS)
                .map(|d| format!("{d:8.1} ms"))
                .unwrap_or_else(|| "       -".into())
        );
        if is_tcp(&p) {
            let stall = ok
                .iter()
                .find_map(|c| c.params.get("stall_timeout_ms").and_then(|x| x.as_u64()));
            if let (Some(st), Some(d)) = (stall, g(n::DETECT_MS)) {
                let f = |m: &str| {
                    g(m).map(|x| format!("{x:.0}"))
                        .unwrap_or_else(|| "-".into())
                };
                line.push_str(&format!(
                    "  after a {st} ms stall timeout: detect {d:.0}, reconnect {}, resume {} ms",
                    f(n::RECONNECT_MS),
                    f(n::RESUME_MS)
                ));
            }
        } else if let (Some(qp), Some(qm)) = (g(n::QUEUE_AT_EVENT_PACKETS), g(n::QUEUE_AT_EVENT_MS))
        {
            line.push_str(&format!(
                "  queue at the event {qp:.0} packets ({qm:.0} ms), {} dropped at the NAT",
                g(n::NAT_DROPPED_PACKETS)
                    .map(|x| format!("{x:.0}"))
                    .unwrap_or_else(|| "-".into())
            ));
        }
        let _ = writeln!(s, "{line}");
    }
}

/// Goodput: steady state (after the stated RTTs) and the object's time to complete.
fn goodput_lines(s: &mut String, cells: &[CellResult], rows: &[SummaryRow]) {
    let gp: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.workload == "goodput" && r.metric == n::STEADY_GOODPUT_MBPS)
        .collect();
    let after = cells
        .iter()
        .filter(|c| c.workload == "goodput")
        .find_map(|c| c.params.get("steady_after_rtts").and_then(|x| x.as_u64()));
    let size = cells
        .iter()
        .filter(|c| c.workload == "goodput")
        .find_map(|c| c.params.get("size").and_then(|x| x.as_u64()));
    if gp.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "Goodput: steady state after {} RTTs, Mbit/s median [95% CI]; time to complete {} KiB (HTTP/1.0: without its connection set-up)",
        after.map(|a| a.to_string()).unwrap_or_else(|| "?".into()),
        size.map(|b| (b / 1024).to_string()).unwrap_or_else(|| "?".into())
    );
    for r in gp {
        let m = |metric: &str| {
            rows.iter()
                .find(|x| {
                    x.protocol == r.protocol
                        && x.workload == "goodput"
                        && x.link == r.link
                        && x.metric == metric
                })
                .map(|x| x.median)
        };
        let obj = m(n::COMPLETION_MS)
            .map(|v| format!("{v:7.1} ms"))
            .unwrap_or_else(|| "      -".into());
        let excl = m(n::COMPLETION_EXCL_SETUP_MS)
            .map(|v| format!(" ({v:.1} ms)"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<15} {:<22} {:8.1} [{:.1}, {:.1}]   {obj}{excl}",
            r.protocol, r.link, r.median, r.ci_low, r.ci_high
        );
    }
}

/// One protocol pair compared on one metric (a row of `comparisons.csv`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComparisonRow {
    pub workload: String,
    pub variant: String,
    pub link: String,
    pub metric: String,
    pub unit: String,
    pub protocol_a: String,
    pub protocol_b: String,
    pub median_a: f64,
    pub median_b: f64,
    /// median_a − median_b.
    pub diff: f64,
    /// median_a / median_b (empty when median_b is 0).
    pub ratio: Option<f64>,
    /// The 95% CIs of the two medians do not overlap.
    pub distinguishable: bool,
    /// Two-sided Mann-Whitney U p-value (second opinion).
    pub mann_whitney_p: f64,
    pub n_a: u64,
    pub n_b: u64,
}

/// Every protocol pair on every metric of every (workload, variant, link),
/// from the pooled samples of the Ok cells; pairs whose 95% CIs overlap are
/// marked not distinguishable.
pub fn comparisons(cells: &[CellResult]) -> Vec<ComparisonRow> {
    type Key = (String, String, String, String, String);
    let mut pools: BTreeMap<Key, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.status.is_ok()) {
        for (name, m) in &c.metrics {
            if name == "failures" {
                continue;
            }
            let key = (
                c.workload.clone(),
                c.variant.clone(),
                c.link.label.clone(),
                name.clone(),
                m.unit.clone(),
            );
            pools
                .entry(key)
                .or_default()
                .entry(c.protocol.clone())
                .or_default()
                .extend(m.samples.iter().copied().filter(|v| v.is_finite()));
        }
    }
    let mut out = Vec::new();
    for ((workload, variant, link, metric, unit), by_proto) in pools {
        let protos: Vec<(&String, &Vec<f64>)> =
            by_proto.iter().filter(|(_, v)| !v.is_empty()).collect();
        for (i, (pa, a)) in protos.iter().enumerate() {
            for (pb, b) in protos.iter().skip(i + 1) {
                let Ok(cmp) = quicbench_results::compare(a, b) else {
                    continue;
                };
                out.push(ComparisonRow {
                    workload: workload.clone(),
                    variant: variant.clone(),
                    link: link.clone(),
                    metric: metric.clone(),
                    unit: unit.clone(),
                    protocol_a: (*pa).clone(),
                    protocol_b: (*pb).clone(),
                    median_a: cmp.a.median,
                    median_b: cmp.b.median,
                    diff: cmp.diff_median,
                    ratio: cmp.ratio,
                    distinguishable: cmp.distinguishable,
                    mann_whitney_p: cmp.mann_whitney_p,
                    n_a: a.len() as u64,
                    n_b: b.len() as u64,
                });
            }
        }
    }
    out
}

/// Write `comparisons.csv` into a run directory.
pub fn write_comparisons(dir: &std::path::Path, rows: &[ComparisonRow]) -> anyhow::Result<()> {
    let path = dir.join("comparisons.csv");
    let tmp = dir.join(".comparisons.csv.tmp");
    let mut w = csv::Writer::from_path(&tmp)?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicbench_results::{LinkInfo, Metric};

    fn cell(proto: &str, link: &str, loss: f64, metric: &str, samples: Vec<f64>) -> CellResult {
        let mut c = CellResult::new(
            format!("hol-paced__{proto}__{link}__r0"),
            proto,
            "hol",
            "paced",
            LinkInfo {
                label: link.into(),
                up: if loss > 0.0 {
                    "delay 10ms loss 2%".into()
                } else {
                    "delay 10ms".into()
                },
                down: String::new(),
                rtt_ms: 20.0,
                loss,
                rate_bps: None,
            },
            0,
            1,
        );
        c.metrics.insert(
            metric.into(),
            Metric {
                unit: "ms".into(),
                samples,
            },
        );
        c
    }

    #[test]
    fn inflation_against_the_lossless_twin() {
        let base: Vec<f64> = (0..50).map(|i| 20.0 + (i % 5) as f64 * 0.1).collect();
        let lossy: Vec<f64> = (0..50)
            .map(|i| {
                if i % 10 == 0 {
                    80.0
                } else {
                    20.0 + (i % 5) as f64 * 0.1
                }
            })
            .collect();
        let cells = vec![
            cell("h3", "clean", 0.0, "latency_ms", base),
            cell("h3", "lossy", 0.02, "latency_ms", lossy),
        ];
        let rows = derived_rows(&cells);
        let get = |m: &str| {
            rows.iter()
                .find(|r| r.metric == m)
                .map(|r| r.median)
                .unwrap()
        };
        assert!((get("hol_inflation_p50") - 1.0).abs() < 0.01);
        assert!((get("hol_inflation_max") - 80.0 / 20.4).abs() < 0.01);
        // 5 of 50 requests are slower than the lossless median + 1 RTT.
        assert!((get("hol_delayed_share") - 0.1).abs() < 1e-9);
    }

    #[test]
    fn inflation_counts_loss_caused_delay_only() {
        // A lossless baseline that queues 100 ms behind a 20 ms service, and
        // the same plus 20 ms of loss-caused delay under loss: the old
        // ratio of latencies said x1.17; the loss-caused inflation is x2.
        let mut base = cell("h1.1", "clean", 0.0, "latency_ms", vec![120.0; 20]);
        base.metrics.insert(
            "service_ms".into(),
            Metric {
                unit: "ms".into(),
                samples: vec![20.0; 20],
            },
        );
        base.metrics.insert(
            "queue_ms".into(),
            Metric {
                unit: "ms".into(),
                samples: vec![100.0; 20],
            },
        );
        let lossy = cell("h1.1", "lossy", 0.02, "latency_ms", vec![140.0; 20]);
        let rows = derived_rows(&[base, lossy]);
        let get = |m: &str| rows.iter().find(|r| r.metric == m).map(|r| r.median);
        assert_eq!(get("hol_inflation_p50"), Some(2.0));
        assert_eq!(get("loss_delay_p50_ms"), Some(20.0));
        assert_eq!(get("lossless_service_ms"), Some(20.0));
        assert_eq!(get("lossless_queue_ms"), Some(100.0));
        let h = headline(&[], &rows);
        assert!(h.is_empty() || !h.contains("NaN"), "{h}");
    }

    #[test]
    fn migration_headline_names_the_stall_timeout_and_counts_failed_events_apart() {
        let mk = |proto: &str, ok: bool, survived: f64| {
            let mut c = CellResult::new(
                format!("migration-port__{proto}"),
                proto,
                "migration",
                "port",
                LinkInfo {
                    label: "l".into(),
                    up: "delay 10ms rate 20mbit".into(),
                    down: String::new(),
                    rtt_ms: 20.0,
                    loss: 0.0,
                    rate_bps: Some(20_000_000),
                },
                0,
                1,
            );
            c.params = serde_json::json!({"stall_timeout_ms": 1000});
            if ok {
                for (m, v) in [
                    ("survived", survived),
                    ("detect_ms", 1010.0),
                    ("reconnect_ms", 45.0),
                    ("resume_ms", 25.0),
                ] {
                    c.metrics.insert(
                        m.into(),
                        Metric {
                            unit: "ms".into(),
                            samples: vec![v],
                        },
                    );
                }
            } else {
                c.status = quicbench_results::CellStatus::Failed {
                    reason: "migration event did not happen".into(),
                };
            }
            c
        };
        let cells = vec![mk("h2", true, 0.0), mk("h2", false, 0.0)];
        let rows: Vec<SummaryRow> = ["detect_ms", "reconnect_ms", "resume_ms"]
            .iter()
            .filter_map(|m| {
                let mut r = row("h2", "l", m, "ms", &[10.0], 1)?;
                r.workload = "migration".into();
                r.variant = "port".into();
                Some(r)
            })
            .collect();
        let h = headline(&cells, &rows);
        assert!(h.contains("0/1 (1 failed)"), "{h}");
        assert!(h.contains("after a 1000 ms stall timeout"), "{h}");
    }

    #[test]
    fn comparisons_mark_indistinguishable_pairs() {
        let a: Vec<f64> = (0..40).map(|i| 10.0 + (i % 7) as f64).collect();
        let b = a.clone();
        let c: Vec<f64> = a.iter().map(|v| v + 100.0).collect();
        let cells = vec![
            cell("h2", "l", 0.0, "latency_ms", a),
            cell("h3", "l", 0.0, "latency_ms", b),
            cell("h1.1", "l", 0.0, "latency_ms", c),
        ];
        let rows = comparisons(&cells);
        assert_eq!(rows.len(), 3);
        let find = |x: &str, y: &str| {
            rows.iter()
                .find(|r| r.protocol_a == x && r.protocol_b == y)
                .unwrap()
        };
        assert!(!find("h2", "h3").distinguishable);
        assert!(find("h1.1", "h2").distinguishable);
        assert!(find("h1.1", "h3").diff > 99.0);
    }
}
