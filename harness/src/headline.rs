//! Derived metrics (HOL inflation against the lossless twin cell), the run's
//! analysis (summary, corrected comparisons, drift check: computed by
//! `quicbench_results`, written here once for `run` and `merge`) and the short
//! table of headline findings printed at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quicbench_results::analysis::{self, interval_text, ComparisonRow, Derived, DriftCheck};
use quicbench_results::infer;
use quicbench_results::stats::quantile;
use quicbench_results::{CellResult, RunDir, SummaryRow};

use crate::workloads::names as n;

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

/// HOL inflation, one value per lossy cell of the paced workload: the cell's
/// latency quantiles divided by the same quantiles of its lossless twin cell
/// (same protocol, cc and repetition; the median over the twin's cells when
/// that repetition is missing), and the share of the cell's requests slower
/// than the twin's median plus one RTT. One value per cell keeps the cell the
/// unit of replication: the interval of these rows is over cells.
pub fn derived(cells: &[CellResult]) -> Vec<Derived> {
    let ok: Vec<&CellResult> = cells
        .iter()
        .filter(|c| c.status.is_ok() && c.workload == "hol" && c.variant == "paced")
        .collect();
    let lat = |c: &CellResult| c.metrics.get("latency_ms").map(|m| m.samples.clone());
    let mut out = Vec::new();
    for c in ok.iter().filter(|c| c.link.loss > 0.0) {
        let Some(base_label) = twin(cells, c) else {
            continue;
        };
        let Some(lossy) = lat(c).filter(|v| !v.is_empty()) else {
            continue;
        };
        let twins: Vec<&&CellResult> = ok
            .iter()
            .filter(|o| {
                o.protocol == c.protocol
                    && o.link.label == base_label
                    && analysis::cell_cc(o) == analysis::cell_cc(c)
                    && analysis::Group::of(o).server == analysis::Group::of(c).server
                    && analysis::Group::of(o).client == analysis::Group::of(c).client
            })
            .collect();
        let same_rep = twins.iter().find(|o| o.repetition == c.repetition);
        // The twin's quantile q: of the same repetition, else the median over twins.
        let base_q = |q: f64| -> Option<f64> {
            match same_rep {
                Some(t) => quantile(&lat(t)?, q).ok(),
                None => {
                    let qs: Vec<f64> = twins
                        .iter()
                        .filter_map(|t| quantile(&lat(t)?, q).ok())
                        .collect();
                    quicbench_results::stats::median(&qs).ok()
                }
            }
        };
        let mut push = |metric: &str, unit: &str, value: f64| {
            out.push(Derived {
                cell_id: c.cell_id.clone(),
                metric: metric.into(),
                unit: unit.into(),
                value,
            })
        };
        // The twin's service time (cells from before the split: its latency),
        // so queueing that happens without loss is in neither term.
        let svc = |t: &CellResult| {
            t.metrics
                .get(n::SERVICE_MS)
                .or_else(|| t.metrics.get(n::LATENCY_MS))
                .map(|m| m.samples.clone())
        };
        let base_svc = |q: f64| -> Option<f64> {
            let qs: Vec<f64> = match same_rep {
                Some(t) => vec![quantile(&svc(t)?, q).ok()?],
                None => twins
                    .iter()
                    .filter_map(|t| quantile(&svc(t)?, q).ok())
                    .collect(),
            };
            quicbench_results::stats::median(&qs).ok()
        };
        let queue_med = |t: &CellResult| {
            quicbench_results::stats::median(&t.metrics.get(n::QUEUE_MS)?.samples).ok()
        };
        if let Some(v) = base_svc(0.5) {
            push(n::LOSSLESS_SERVICE_MS, "ms", v);
        }
        if let Some(v) = same_rep.and_then(|t| queue_med(t)) {
            push(n::LOSSLESS_QUEUE_MS, "ms", v);
        }
        if let Some(v) = queue_med(c) {
            push(n::LOSSY_QUEUE_MS, "ms", v);
        }
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            if let (Ok(a), Some(b), Some(sv)) = (quantile(&lossy, q), base_q(q), base_svc(q)) {
                // Loss-caused delay: the latency quantile under loss minus the same without.
                let delay = a - b;
                match name {
                    "p50" => push(n::LOSS_DELAY_P50_MS, "ms", delay),
                    "p99" => push(n::LOSS_DELAY_P99_MS, "ms", delay),
                    _ => {}
                }
                if sv > 0.0 {
                    push(
                        &format!("{}_{name}", n::HOL_INFLATION),
                        "ratio",
                        (sv + delay) / sv,
                    );
                }
            }
        }
        if let Some(b50) = base_q(0.5) {
            let late = lossy.iter().filter(|v| **v > b50 + c.link.rtt_ms).count();
            push(
                "hol_delayed_share",
                "fraction",
                late as f64 / lossy.len() as f64,
            );
        }
    }
    out
}

/// What a run's cells support: summary rows (derived HOL rows included),
/// comparisons corrected over the run's family, and the drift check.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub rows: Vec<SummaryRow>,
    pub comparisons: Vec<ComparisonRow>,
    pub drift: Vec<DriftCheck>,
    /// Adaptive repetitions per group, from run.json (empty otherwise).
    pub adaptive: Vec<quicbench_results::AdaptiveGroup>,
}

pub fn analyze(cells: &[CellResult]) -> Analysis {
    let d = derived(cells);
    Analysis {
        rows: analysis::summarize_with(cells, &d),
        comparisons: analysis::comparisons(cells, &d, infer::RUN_CORRECTION),
        drift: analysis::drift(cells),
        adaptive: Vec::new(),
    }
}

/// Analyzes the run directory's cells and writes summary.csv/json,
/// comparisons.csv and the drift check into run.json: the one place both
/// `quicbench run` and `quicbench merge` write them.
pub fn write_analysis(dir: &RunDir) -> anyhow::Result<(Vec<CellResult>, Analysis)> {
    let cells = dir.read_cells()?;
    let mut a = analyze(&cells);
    dir.write_summary(&a.rows)?;
    dir.write_comparisons(&a.comparisons)?;
    if let Ok(mut meta) = dir.read_meta() {
        meta.drift = a.drift.clone();
        a.adaptive = meta.adaptive.clone();
        dir.write_meta(&meta)?;
    }
    Ok((cells, a))
}

/// The row of one group (protocol and cc) and metric.
fn row<'a>(
    rows: &'a [SummaryRow],
    (proto, cc): (&str, &str),
    workload: &str,
    variant: &str,
    link: &str,
    metric: &str,
) -> Option<&'a SummaryRow> {
    rows.iter().find(|r| {
        r.protocol == proto
            && r.cc == cc
            && r.workload == workload
            && r.variant == variant
            && r.link == link
            && r.metric == metric
    })
}

/// "h3/cubic": the protocol and the controller both its ends ran ("h3"
/// for the UDP probe and old runs without one).
fn who(r: &SummaryRow, several: bool) -> String {
    if several && !r.cc.is_empty() {
        format!("{}/{}", r.protocol, r.cc)
    } else {
        r.protocol.clone()
    }
}

/// Both ends of the cell are ours.
fn ours_cell(c: &CellResult) -> bool {
    analysis::Group::of(c).ours()
}

/// A short plain-text table of the headline findings: the protocols as our
/// own endpoints run them, then (when the run pairs other implementations)
/// each pair's headline figures and the not-applicable and failed pairs.
pub fn headline(cells: &[CellResult], a: &Analysis) -> String {
    let ours: Vec<CellResult> = cells.iter().filter(|c| ours_cell(c)).cloned().collect();
    if ours.len() == cells.len() {
        return protocols_headline(cells, a);
    }
    let is_ours = |s: &str, c: &str| s == analysis::OURS && c == analysis::OURS;
    let mine = Analysis {
        rows: a
            .rows
            .iter()
            .filter(|r| is_ours(&r.server, &r.client))
            .cloned()
            .collect(),
        comparisons: a
            .comparisons
            .iter()
            .filter(|r| is_ours(&r.server_a, &r.client_a) && is_ours(&r.server_b, &r.client_b))
            .cloned()
            .collect(),
        drift: a.drift.clone(),
        adaptive: a.adaptive.clone(),
    };
    let mut s = protocols_headline(&ours, &mine);
    s.push_str(&implementations_headline(cells, a));
    s
}

/// Per pair that is not ours on both ends: the headline metric's median
/// (with its interval where there is one) per workload variant, link and
/// protocol; then how many pairs were not applicable, and which failed.
/// Fairness: per mix, link and controller, each group's share of the
/// bottleneck and Jain's index (docs/methodology.md, fairness).
fn fairness_headline(s: &mut String, rows: &[SummaryRow]) {
    let jain: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.workload == "fairness" && r.metric == "jain_index")
        .collect();
    if jain.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "Sharing a bottleneck: each group's share of the bytes while all flows ran (median [interval]), Jain's index"
    );
    for j in jain {
        let same = |r: &&SummaryRow| {
            r.workload == "fairness"
                && r.variant == j.variant
                && r.link == j.link
                && r.cc == j.cc
                && r.metric.starts_with("share_")
        };
        let shares: Vec<String> = rows
            .iter()
            .filter(same)
            .map(|r| format!("{} {}", &r.metric["share_".len()..], short(r)))
            .collect();
        let cc = if j.cc.is_empty() {
            String::new()
        } else {
            format!(" ({})", j.cc)
        };
        let _ = writeln!(
            s,
            "  {:<24} {:<22} {}; Jain {}",
            format!("{}{cc}", j.variant),
            j.link,
            shares.join(", "),
            short(j)
        );
    }
}

/// A median with its interval where it has one (the footnote on intervals
/// says why most quick-preset rows have none).
fn short(r: &SummaryRow) -> String {
    if r.has_interval() {
        interval_text(r, 2)
    } else {
        format!("{:.2}", r.median)
    }
}

fn implementations_headline(cells: &[CellResult], a: &Analysis) -> String {
    let mut s =
        String::from("\nImplementations (server -> client), headline metric median [interval]:\n");
    let mut rows: Vec<&SummaryRow> = a
        .rows
        .iter()
        .filter(|r| {
            !(r.server == analysis::OURS && r.client == analysis::OURS)
                && analysis::headline_metric(&r.workload, &r.variant) == Some(r.metric.as_str())
        })
        .collect();
    rows.sort_by(|x, y| {
        (
            &x.workload,
            &x.variant,
            &x.link,
            &x.protocol,
            &x.server,
            &x.client,
        )
            .cmp(&(
                &y.workload,
                &y.variant,
                &y.link,
                &y.protocol,
                &y.server,
                &y.client,
            ))
    });
    for r in rows {
        let iv = match (r.ci_low, r.ci_high) {
            (Some(l), Some(h)) => format!(" [{l:.3}, {h:.3}]"),
            _ => format!(" (n={}, no interval)", r.n),
        };
        let _ = writeln!(
            s,
            "  {}-{} {} {} {}->{}: {} {:.3} {}{iv}",
            r.workload,
            r.variant,
            r.link,
            r.protocol,
            r.server,
            r.client,
            r.metric,
            r.median,
            r.unit
        );
    }
    let na = cells
        .iter()
        .filter(|c| matches!(&c.status, quicbench_results::CellStatus::Skipped { reason } if reason.starts_with("not applicable")))
        .count();
    if na > 0 {
        let _ = writeln!(
            s,
            "  {na} cell(s) not applicable to their pair (the reason is in each cell's status)"
        );
    }
    let mut failed: Vec<String> = cells
        .iter()
        .filter(|c| !ours_cell(c))
        .filter_map(|c| match &c.status {
            quicbench_results::CellStatus::Failed { reason } => {
                let g = analysis::Group::of(c);
                Some(format!(
                    "{} {}->{}: {}",
                    c.cell_id, g.server, g.client, reason
                ))
            }
            _ => None,
        })
        .collect();
    failed.truncate(10);
    for f in failed {
        let _ = writeln!(s, "  failed: {f}");
    }
    s
}

/// The headline of cells whose ends are all ours.
fn protocols_headline(cells: &[CellResult], a: &Analysis) -> String {
    let rows = a.rows.as_slice();
    let mut s = String::new();
    // Groups as (protocol, cc): a cc axis gives each controller its own line.
    let mut protos: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.protocol.clone(), r.cc.clone()))
        .collect();
    protos.sort();
    protos.dedup();
    let several_cc = {
        let mut ccs: Vec<&str> = rows
            .iter()
            .map(|r| r.cc.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        ccs.sort();
        ccs.dedup();
        // Every row names its controller (a comparison is only within one).
        !ccs.is_empty()
    };
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
            "Handshake: time to first byte in RTTs on {l} (median of cells, interval over cells; theory)"
        );
        for (p, cc) in &protos {
            for &mode in crate::matrix::HANDSHAKE_MODES {
                let Some(r) = row(rows, (p, cc), "handshake", mode, l, "ttfb_rtt") else {
                    continue;
                };
                let t = theory
                    .get(&(p.clone(), mode.to_string()))
                    .map(|t| format!("; theory {t}"))
                    .unwrap_or_default();
                let name = who(r, several_cc);
                // Where the time went, from the link's own timestamps: whole
                // round trips on the wire, and the endpoints' turns.
                let at = |m: &str| row(rows, (p, cc), "handshake", mode, l, m).map(|r| r.median);
                // Lost-flight modes wait for a retransmission timer, which
                // the path counts as the waiting endpoint's turn: no split.
                let lossless_mode = !mode.contains("lost");
                let split = match (
                    at(n::LINK_ROUND_TRIPS),
                    at(n::LINK_WIRE_RTTS),
                    at(n::LINK_CLIENT_MS),
                    at(n::LINK_SERVER_MS),
                ) {
                    (Some(k), Some(w), Some(c), Some(sv)) if lossless_mode => {
                        // What the link cannot see: the client's work before
                        // its first packet and after the response arrived.
                        // Medians of parts need not add up: shown when
                        // they leave a positive rest.
                        let off_link = match (at("ttfb_ms"), at(n::LINK_WIRE_MS)) {
                            (Some(t), Some(wm)) if t - wm - c - sv >= 0.0 => {
                                format!(" + {:.2} ms off the link", t - wm - c - sv)
                            }
                            _ => String::new(),
                        };
                        let trips = if k == 1.0 {
                            "round trip"
                        } else {
                            "round trips"
                        };
                        format!(
                            " = {k:.0} {trips} ({w:.2} RTT on the wire) + client {c:.2} ms + server {sv:.2} ms{off_link}"
                        )
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "  {name:<21} {mode:<16} {}{t}{split}",
                    interval_text(r, 2)
                );
            }
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
        let _ = writeln!(s, "HOL blocking (paced requests) on {worst}: p99 latency inflation vs the lossless twin (median of cells, interval over cells), p50 inflation, share delayed > 1 RTT");
        for (p, cc) in &protos {
            let g = |m: &str| row(rows, (p, cc), "hol", "paced", &worst, m);
            if let (Some(a), Some(b)) = (g("hol_inflation_p50"), g("hol_inflation_p99")) {
                let d = g("hol_delayed_share").map_or(f64::NAN, |r| r.median);
                let name = who(b, several_cc);
                let _ = writeln!(
                    s,
                    "  {name:<21} x{}   p50 x{:.2}   {:5.1}%",
                    interval_text(b, 2),
                    a.median,
                    d * 100.0
                );
            }
        }
    }
    let mig: Vec<&CellResult> = cells.iter().filter(|c| c.workload == "migration").collect();
    if !mig.is_empty() {
        let _ = writeln!(
            s,
            "Migration: survived without a new handshake (cells with a confirmed event), median disruption"
        );
        let mut keys: Vec<(String, String, String)> = mig
            .iter()
            .map(|c| (c.variant.clone(), c.protocol.clone(), analysis::cell_cc(c)))
            .collect();
        keys.sort();
        keys.dedup();
        for (v, p, cc) in keys {
            // Survival is counted over cells; the disruption is a median of cells.
            let cs: Vec<&&CellResult> = mig
                .iter()
                .filter(|c| c.variant == v && c.protocol == p && analysis::cell_cc(c) == cc)
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
                        && r.cc == cc
                        && r.workload == "migration"
                        && r.variant == v
                        && r.metric == "disruption_ms"
                })
                .map(|r| r.median);
            let name = if several_cc && !cc.is_empty() {
                format!("{p}/{cc}")
            } else {
                p.clone()
            };
            // Cells whose event did not happen failed: counted apart.
            let failed = cs.iter().filter(|c| !c.status.is_ok()).count();
            let med = |m: &str| {
                rows.iter()
                    .find(|r| {
                        r.protocol == p
                            && r.cc == cc
                            && r.workload == "migration"
                            && r.variant == v
                            && r.metric == m
                    })
                    .map(|r| r.median)
            };
            let mut tail = String::new();
            let stall = cs
                .iter()
                .find_map(|c| c.params.get("stall_timeout_ms").and_then(|x| x.as_u64()));
            if let (Some(st), Some(d)) = (stall, med(n::DETECT_MS)) {
                let f = |m: &str| {
                    med(m)
                        .map(|x| format!("{x:.0}"))
                        .unwrap_or_else(|| "-".into())
                };
                tail = format!(
                    "  after a {st} ms stall timeout: detect {d:.0}, reconnect {}, resume {} ms",
                    f(n::RECONNECT_MS),
                    f(n::RESUME_MS)
                );
            } else if let (Some(qp), Some(qm)) =
                (med(n::QUEUE_AT_EVENT_PACKETS), med(n::QUEUE_AT_EVENT_MS))
            {
                tail = format!("  queue at the event {qp:.0} packets ({qm:.0} ms)");
            }
            let _ = writeln!(
                s,
                "  {v:<14} {name:<21} {}/{}{}   {}{tail}",
                surv as u64,
                cs.len() - failed,
                if failed > 0 {
                    format!(" ({failed} failed)")
                } else {
                    String::new()
                },
                dis.map(|d| format!("{d:8.1} ms"))
                    .unwrap_or_else(|| "       -".into())
            );
        }
    }
    let gp: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.workload == "goodput" && r.metric == n::STEADY_GOODPUT_MBPS)
        .collect();
    if !gp.is_empty() {
        let after = cells
            .iter()
            .filter(|c| c.workload == "goodput")
            .find_map(|c| c.params.get("steady_after_rtts").and_then(|x| x.as_u64()))
            .unwrap_or(0);
        let _ = writeln!(
            s,
            "Goodput: steady state after {after} RTTs (Mbit/s, median of cells [interval over cells])"
        );
        for r in gp {
            let _ = writeln!(
                s,
                "  {:<21} {:<22} {}",
                who(r, several_cc),
                r.link,
                interval_text(r, 1)
            );
        }
    }
    fairness_headline(&mut s, rows);
    let no_ci = rows.iter().filter(|r| !r.has_interval()).count();
    if no_ci > 0 {
        let _ = writeln!(
            s,
            "Intervals: {no_ci} of {} summary rows have fewer than {} cells and no interval (\"n too small\"): their medians are single measurements of a protocol, not estimates with an error bar. An interval needs ≥ {} cells per group, a 95% one ≥ 6 (--repetitions 6, or adaptive repetitions as in the full preset).",
            rows.len(),
            infer::MIN_CELLS,
            infer::MIN_CELLS
        );
    }
    if !a.comparisons.is_empty() {
        let mut why: BTreeMap<&str, usize> = BTreeMap::new();
        for c in a.comparisons.iter().filter(|c| !c.distinguishable) {
            *why.entry(c.reason.as_str()).or_default() += 1;
        }
        let yes = a.comparisons.iter().filter(|c| c.distinguishable).count();
        let family = a.comparisons.first().map_or(0, |c| c.family);
        let _ = writeln!(
            s,
            "Comparisons (comparisons.csv): {yes} of {} protocol pairs distinguishable (Mann-Whitney on cell values, {} over the {family} pairs with ≥ 3 cells a side; corrected p < 0.05 and ratio interval excluding 1); not: {}",
            a.comparisons.len(),
            infer::RUN_CORRECTION.as_str(),
            if why.is_empty() {
                "none".to_string()
            } else {
                why.iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    if !a.adaptive.is_empty() {
        let met = a.adaptive.iter().filter(|g| g.met_target).count();
        let reps: Vec<u32> = a.adaptive.iter().map(|g| g.repetitions).collect();
        let _ = writeln!(
            s,
            "Adaptive repetitions: {met} of {} groups met their target (run.json \"adaptive\"); {}–{} repetitions per group; the others stopped at the maximum, their intervals wider than asked.",
            a.adaptive.len(),
            reps.iter().min().copied().unwrap_or(0),
            reps.iter().max().copied().unwrap_or(0)
        );
    }
    if !a.drift.is_empty() {
        let drifting: Vec<String> = a
            .drift
            .iter()
            .filter(|d| d.drifting)
            .map(|d| {
                format!(
                    "{} {} ({})",
                    d.workload,
                    d.metric,
                    d.median_change
                        .map(|c| format!("{:+.1}%", c * 100.0))
                        .unwrap_or_else(|| "-".into())
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "Order/drift check (last vs first cell of each group, sign test): {}",
            if drifting.is_empty() {
                "no systematic drift".to_string()
            } else {
                format!(
                    "later cells measure systematically differently in {}",
                    drifting.join(", ")
                )
            }
        );
        s.push_str(&analysis::drift_text(&a.drift));
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
    fn inflation_counts_loss_caused_delay_only() {
        // A lossless twin that queues 100 ms behind a 20 ms service, and the
        // same plus 20 ms of loss-caused delay under loss: the ratio of
        // latencies said x1.17; the inflation loss alone causes is x2.
        let mut base = cell("h1.1", "clean", 0.0, "latency_ms", vec![120.0; 20]);
        for (m, v) in [("service_ms", 20.0), ("queue_ms", 100.0)] {
            base.metrics.insert(
                m.into(),
                Metric {
                    unit: "ms".into(),
                    samples: vec![v; 20],
                },
            );
        }
        let lossy = cell("h1.1", "lossy", 0.02, "latency_ms", vec![140.0; 20]);
        let d = derived(&[base, lossy]);
        let get = |m: &str| d.iter().find(|r| r.metric == m).map(|r| r.value);
        assert_eq!(get("hol_inflation_p50"), Some(2.0));
        assert_eq!(get("loss_delay_p50_ms"), Some(20.0));
        assert_eq!(get("lossless_service_ms"), Some(20.0));
        assert_eq!(get("lossless_queue_ms"), Some(100.0));
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
        let rows = derived(&cells);
        assert!(rows.iter().all(|d| d.cell_id == cells[1].cell_id));
        let get = |m: &str| {
            rows.iter()
                .find(|r| r.metric == m)
                .map(|r| r.value)
                .unwrap()
        };
        assert!((get("hol_inflation_p50") - 1.0).abs() < 0.01);
        assert!((get("hol_inflation_max") - 80.0 / 20.4).abs() < 0.01);
        // 5 of 50 requests are slower than the lossless median + 1 RTT.
        assert!((get("hol_delayed_share") - 0.1).abs() < 1e-9);
    }

    /// One cell per protocol, however many requests it holds, is one
    /// measurement: no interval, and no pair called distinguishable (the old
    /// per-sample rule called h1.1 vs h2 distinguishable here).
    #[test]
    fn one_cell_is_not_enough_to_distinguish() {
        let a: Vec<f64> = (0..40).map(|i| 10.0 + (i % 7) as f64).collect();
        let b = a.clone();
        let c: Vec<f64> = a.iter().map(|v| v + 100.0).collect();
        let cells = vec![
            cell("h2", "l", 0.0, "latency_ms", a),
            cell("h3", "l", 0.0, "latency_ms", b),
            cell("h1.1", "l", 0.0, "latency_ms", c),
        ];
        let an = analyze(&cells);
        assert_eq!(an.comparisons.len(), 3);
        assert!(an
            .comparisons
            .iter()
            .all(|r| !r.distinguishable && r.reason == "n too small"));
        assert!(an.rows.iter().all(|r| r.ci_low.is_none()));
        let text = headline(&cells, &an);
        assert!(text.contains("no interval"), "{text}");
        assert!(
            text.contains("0 of 3 protocol pairs distinguishable"),
            "{text}"
        );
        assert!(text.contains("3 n too small"), "{text}");
    }
}
