//! The fairness page: K flows of a mix sharing one rate-limited link
//! (harness/src/fairness). Per mix × link × controller: the flows' stacked
//! throughput over time in one representative cell, both views (the
//! clients', the link's), the queue under it; the shares table; the
//! headline finding.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use quicbench_results::analysis::cell_cc;
use quicbench_results::{CellResult, LinkInfo, SummaryRow};

use crate::charts::{self, Frame, LowerPanel, StackLayer, StackedChart};
use crate::data::{link_spec, link_words, pooled, RunData};
use crate::html::{esc, median_ci, num, num_short, proto_cell, table, Fig};
use crate::palette::{protocol_color, shade};
use crate::workloads::write_fig;

pub const WORKLOAD: &str = "fairness";

/// The workload's throughput windows when a cell does not say
/// (`extra.fairness.window_ms`; the harness's default).
const DEFAULT_WINDOW_MS: f64 = 500.0;

/// One flow of a fairness cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub protocol: String,
    /// The controller it ran ("" when unknown).
    pub cc: String,
    /// Its group: the protocol, or `protocol@cc` when the mix runs several
    /// controllers (the `share_<group>` metrics).
    pub group: String,
}

impl Flow {
    /// `flow 0 h3@bbr` (the controller when known).
    pub fn legend(&self, i: usize) -> String {
        if self.cc.is_empty() {
            format!("flow {i} {}", self.protocol)
        } else {
            format!("flow {i} {}@{}", self.protocol, self.cc)
        }
    }
}

/// The flows of a cell, in order: `extra.flows` as the harness writes it,
/// else parsed from the mix (`2xh3+h2@bbr`) with the cell's controller.
pub fn flows(c: &CellResult) -> Vec<Flow> {
    if let Some(a) = c.extra.get("flows").and_then(|f| f.as_array()) {
        let s = |v: &serde_json::Value, k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let v: Vec<Flow> = a
            .iter()
            .map(|f| Flow {
                protocol: s(f, "protocol"),
                cc: s(f, "cc"),
                group: s(f, "label"),
            })
            .filter(|f| !f.protocol.is_empty())
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    let cell_cc = cell_cc(c);
    let mut out = Vec::new();
    for part in c.variant.split('+') {
        let (count, rest) = match part.split_once('x') {
            Some((n, r)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (n.parse::<usize>().unwrap_or(1).min(64), r)
            }
            _ => (1, part),
        };
        let (protocol, cc, group) = match rest.split_once('@') {
            Some((p, cc)) => (p.to_string(), cc.to_string(), rest.to_string()),
            None => (rest.to_string(), cell_cc.clone(), rest.to_string()),
        };
        for _ in 0..count {
            out.push(Flow {
                protocol: protocol.clone(),
                cc: cc.clone(),
                group: group.clone(),
            });
        }
    }
    out
}

/// The groups of a set of cells in the order of the mix (first flow's
/// group first), else the order of the summary's `share_<group>` metrics.
fn group_order(cells: &[&CellResult], rows: &[&SummaryRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in cells.iter().flat_map(|c| flows(c)) {
        if !out.contains(&f.group) {
            out.push(f.group);
        }
    }
    for r in rows {
        if let Some(g) = r.metric.strip_prefix("share_") {
            if !out.iter().any(|x| x == g) {
                out.push(g.to_string());
            }
        }
    }
    out
}

/// The protocol of a group (`h3@bbr` → `h3`), for its colour.
fn group_protocol(g: &str) -> &str {
    g.split('@').next().unwrap_or(g)
}

/// One mix on one link with one controller (the matrix's, for mixes that
/// name none; "" for mixes that name theirs).
pub struct MixGroup<'a> {
    pub variant: String,
    pub link: LinkInfo,
    pub cc: String,
    /// Its ok cells (repetitions).
    pub cells: Vec<&'a CellResult>,
}

/// Every mix × link × controller of a run's ok fairness cells, in report
/// order (mix, link order, controller).
pub fn mix_groups(run: &RunData) -> Vec<MixGroup<'_>> {
    let mut out = Vec::new();
    for (variant, link, cells) in run.by_variant_and_link(WORKLOAD) {
        let ccs: BTreeSet<String> = cells.iter().map(|c| cell_cc(c)).collect();
        for cc in ccs {
            out.push(MixGroup {
                variant: variant.clone(),
                link: link.clone(),
                cc: cc.clone(),
                cells: cells.iter().copied().filter(|c| cell_cc(c) == cc).collect(),
            });
        }
    }
    out
}

/// "h3+h2, cubic" or "h3@bbr+h2@cubic".
fn mix_title(g: &MixGroup) -> String {
    if g.cc.is_empty() {
        g.variant.clone()
    } else {
        format!("{}, {}", g.variant, g.cc)
    }
}

/// The first sample of a metric in a cell.
fn value(c: &CellResult, metric: &str) -> Option<f64> {
    c.metrics
        .get(metric)
        .and_then(|m| m.samples.first().copied())
        .filter(|v| v.is_finite())
}

/// The representative cell: the repetition whose Jain's index is the median
/// (the lower one of an even count); without indexes, the first repetition.
pub fn median_cell<'a>(cells: &[&'a CellResult]) -> Option<&'a CellResult> {
    let mut with: Vec<(f64, &CellResult)> = cells
        .iter()
        .filter_map(|c| Some((value(c, "jain_index")?, *c)))
        .collect();
    if with.is_empty() {
        return cells.iter().copied().min_by_key(|c| c.repetition);
    }
    with.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.1.repetition.cmp(&b.1.repetition))
    });
    Some(with[(with.len() - 1) / 2].1)
}

/// A rate timeline (`(window start, mean rate)`, each window running to the
/// next point but at most `w`) averaged over each window of `edges`: the
/// means, and the share of each window the timeline covers.
pub fn resample(points: &[(f64, f64)], w: f64, edges: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = edges.len().saturating_sub(1);
    let (mut vals, mut cover) = (vec![0.0; n], vec![0.0; n]);
    for (j, &(t, r)) in points.iter().enumerate() {
        if !(t.is_finite() && r.is_finite()) {
            continue;
        }
        let end = match points.get(j + 1) {
            Some(&(next, _)) if next > t => next.min(t + w),
            _ => t + w,
        };
        for i in 0..n {
            let (a, b) = (edges[i], edges[i + 1]);
            let overlap = end.min(b) - t.max(a);
            if overlap > 0.0 && b > a {
                vals[i] += r * overlap / (b - a);
                cover[i] += overlap / (b - a);
            }
        }
    }
    (vals, cover)
}

/// Windows of `w` from 0 over every timeline; trailing windows less than
/// half covered by any of them are dropped (a flow's last partial window).
fn common_edges(timelines: &[&[(f64, f64)]], w: f64) -> Vec<f64> {
    let end = timelines
        .iter()
        .flat_map(|t| t.iter().map(|p| p.0 + w))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    if w <= 0.0 || end <= 0.0 {
        return Vec::new();
    }
    let n = (end / w).ceil() as usize;
    let mut edges: Vec<f64> = (0..=n).map(|i| i as f64 * w).collect();
    while edges.len() > 2 {
        let last = [edges[edges.len() - 2], edges[edges.len() - 1]];
        let covered = timelines
            .iter()
            .map(|t| resample(t, w, &last).1[0])
            .fold(0.0_f64, f64::max);
        if covered >= 0.5 {
            break;
        }
        edges.pop();
    }
    edges
}

/// The stacked chart of one cell: the clients' view filled, the link's view
/// dashed, the link's rate, the queue below. None without flow timelines.
pub fn cell_chart(c: &CellResult) -> Option<StackedChart> {
    let flows = flows(c);
    let client: Vec<&[(f64, f64)]> = (0..flows.len())
        .map(|i| c.timelines.get(&format!("flow{i}_mbps")).map(Vec::as_slice))
        .collect::<Option<_>>()?;
    let link: Option<Vec<&[(f64, f64)]>> = (0..flows.len())
        .map(|i| {
            c.timelines
                .get(&format!("link_flow{i}_mbps"))
                .map(Vec::as_slice)
        })
        .collect();
    let w = c
        .extra
        .get("fairness")
        .and_then(|f| f.get("window_ms"))
        .and_then(|v| v.as_f64())
        .filter(|v| *v > 0.0)
        .unwrap_or(DEFAULT_WINDOW_MS);
    let edges = common_edges(&client, w);
    if edges.len() < 2 {
        return None;
    }
    let mut layers = Vec::new();
    for (i, (f, tl)) in flows.iter().zip(&client).enumerate() {
        let same: Vec<usize> = (0..flows.len())
            .filter(|&j| flows[j].protocol == f.protocol)
            .collect();
        let k = same.iter().position(|&j| j == i).unwrap_or(0);
        layers.push(StackLayer {
            label: f.legend(i),
            color: shade(protocol_color(&f.protocol), k, same.len()),
            values: resample(tl, w, &edges).0,
        });
    }
    let outline = link
        .map(|l| l.iter().map(|tl| resample(tl, w, &edges).0).collect())
        .unwrap_or_default();
    let s = |ms: &f64| ms / 1000.0;
    Some(StackedChart {
        x_desc: "time since the first flow started [s]".into(),
        y_desc: "throughput [Mbit/s], flows stacked".into(),
        edges: edges.iter().map(s).collect(),
        layers,
        outline,
        outline_label: "the link's view".into(),
        hline: c
            .link
            .rate_bps
            .map(|r| (r as f64 / 1e6, format!("link rate {}", mbit(r)))),
        lower: c.timelines.get("queue_delay_ms").map(|q| LowerPanel {
            y_desc: "queue [ms]".into(),
            label: "queueing delay (down)".into(),
            points: q.iter().map(|&(t, d)| (t / 1000.0, d)).collect(),
        }),
    })
}

fn mbit(bps: u64) -> String {
    format!("{} Mbit/s", num_short(bps as f64 / 1e6))
}

/// Per mix × link × controller: the representative cell's stacked chart.
pub fn charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let mut figs = Vec::new();
    for g in mix_groups(run) {
        let Some(c) = median_cell(&g.cells) else {
            continue;
        };
        let Some(spec) = cell_chart(c) else {
            continue;
        };
        let title = format!(
            "{}: throughput per flow, {}",
            mix_title(&g),
            link_words(&g.link)
        );
        let jain = |m: &str| value(c, m).map(num).unwrap_or_else(|| "–".into());
        let note = format!(
            "link: {} · r{} of {} cells: the median Jain's index ({}; link {}) · per {} ms window",
            link_spec(&g.link),
            c.repetition,
            g.cells.len(),
            jain("jain_index"),
            jain("link_jain_index"),
            num_short(
                spec.edges
                    .get(1)
                    .zip(spec.edges.first())
                    .map(|(b, a)| (b - a) * 1000.0)
                    .unwrap_or(DEFAULT_WINDOW_MS)
            ),
        );
        let svg = charts::stacked_svg(
            Frame {
                title: &title,
                note: &note,
            },
            &spec,
        )?;
        let key = if g.cc.is_empty() {
            format!("fairness-{}-{}", g.variant, g.link.label)
        } else {
            format!("fairness-{}-{}-{}", g.variant, g.cc, g.link.label)
        };
        figs.push(write_fig(out, ri, &key, &title, true, &svg)?);
    }
    Ok(figs)
}

/// The summary row of one mix × link × controller and metric.
fn row<'a>(run: &'a RunData, g: &MixGroup, metric: &str) -> Option<&'a SummaryRow> {
    run.rows.iter().find(|r| {
        r.workload == WORKLOAD
            && r.variant == g.variant
            && r.link == g.link.label
            && r.cc == g.cc
            && r.metric == metric
    })
}

/// How many of the cells converged, and the median time of those that did.
fn convergence(run: &RunData, g: &MixGroup) -> String {
    let flags = pooled(g.cells.iter().copied(), "converged");
    let k = flags.iter().filter(|v| **v >= 0.5).count();
    let count = format!("{k} of {} cells converged", flags.len());
    match row(run, g, "convergence_ms") {
        Some(r) if k > 0 => format!("{}<br><small>{count}</small>", median_ci(r)),
        _ if flags.is_empty() => "–".into(),
        _ => format!("<span class=\"warn\">never</span><br><small>{count}</small>"),
    }
}

/// The shares table: per mix × link × controller, each group's share of
/// the bytes (clients' and link's view) and its normalised share, Jain's
/// index, convergence, utilisation and the queue, medians of cells with
/// their intervals (the summary rows).
pub fn shares_table(runs: &[RunData], html: &mut String) {
    let mut rows_out = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        for g in mix_groups(run) {
            let rows: Vec<&SummaryRow> = run
                .rows
                .iter()
                .filter(|r| {
                    r.workload == WORKLOAD
                        && r.variant == g.variant
                        && r.link == g.link.label
                        && r.cc == g.cc
                })
                .collect();
            let groups = group_order(&g.cells, &rows);
            let per_group = |prefix: &str| {
                groups
                    .iter()
                    .map(|grp| {
                        let v = row(run, &g, &format!("{prefix}{grp}"))
                            .map(median_ci)
                            .unwrap_or_else(|| "–".into());
                        format!("{} {v}", proto_cell_named(grp))
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let m = |metric: &str| {
                row(run, &g, metric)
                    .map(median_ci)
                    .unwrap_or_else(|| "–".into())
            };
            let mut r = Vec::new();
            if runs.len() > 1 {
                r.push(format!("{}", ri + 1));
            }
            r.extend([
                format!("<code>{}</code>", esc(&g.variant)),
                esc(&g.link.label),
                if g.cc.is_empty() {
                    "per flow".into()
                } else {
                    esc(&g.cc)
                },
                per_group("share_"),
                per_group("norm_share_"),
                per_group("link_share_"),
                format!(
                    "{}<br><small>link:</small> {}",
                    m("jain_index"),
                    m("link_jain_index")
                ),
                convergence(run, &g),
                m("utilisation"),
                format!("{}<br>{}", m("queue_delay_p50_ms"), m("queue_delay_p99_ms")),
                g.cells.len().to_string(),
            ]);
            rows_out.push(r);
        }
    }
    if rows_out.is_empty() {
        return;
    }
    let mut head = vec![];
    if runs.len() > 1 {
        head.push("run");
    }
    head.extend([
        "mix",
        "link",
        "controller",
        "share of the bytes (clients)",
        "normalised share (1 = fair)",
        "share of the bytes (link)",
        "Jain's index (clients; link)",
        "convergence [ms]",
        "utilisation",
        "queue delay p50; p99 [ms]",
        "cells",
    ]);
    table(&head, &rows_out, html);
}

/// A group's swatch (its protocol's colour) and name.
fn proto_cell_named(group: &str) -> String {
    let sw = proto_cell(group_protocol(group));
    // proto_cell names the protocol: name the whole group instead.
    match sw.rfind("</span>") {
        Some(i) => format!("{}{}:", &sw[..i + 7], esc(group)),
        None => esc(group),
    }
}

/// The headline finding: per mix and controller on the first link with
/// fairness cells, what the first flow's group got of the bottleneck
/// against the fair part, and Jain's index. None without fairness rows.
pub fn finding(run: &RunData) -> Option<(String, String)> {
    let groups = mix_groups(run);
    let first = groups.first()?.link.label.clone();
    let link = groups.first()?.link.clone();
    let mut parts = Vec::new();
    for g in groups.iter().filter(|g| g.link.label == first) {
        let Some(c) = median_cell(&g.cells) else {
            continue;
        };
        let fl = flows(c);
        let Some(lead) = fl.first() else { continue };
        let Some(share) = row(run, g, &format!("share_{}", lead.group)) else {
            continue;
        };
        let fair = fl.iter().filter(|f| f.group == lead.group).count() as f64 / fl.len() as f64;
        let others: Vec<String> = fl
            .iter()
            .map(|f| f.group.clone())
            .filter(|x| *x != lead.group)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let cc = if g.cc.is_empty() {
            String::new()
        } else {
            format!(", {} for all", esc(&g.cc))
        };
        let jain = row(run, g, "jain_index")
            .map(|r| format!("; Jain {}", num_short((r.median * 100.0).round() / 100.0)))
            .unwrap_or_default();
        parts.push(format!(
            "{} got {} of the bottleneck against {} (fair: {}{cc}{jain})",
            proto_cell_named(&lead.group).trim_end_matches(':'),
            num_short((share.median * 100.0).round() / 100.0),
            esc(&others.join(" + ")),
            num_short((fair * 100.0).round() / 100.0),
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some((
        format!("Sharing a bottleneck ({}):", link_words(&link)),
        format!("{}. <a href=\"fairness.html\">more</a>", parts.join(" · ")),
    ))
}

/// The page's words on method, before the charts.
pub fn intro(html: &mut String, docs: &str) {
    let _ = writeln!(
        html,
        "<p>K flows of a <em>mix</em> (e.g. <code>h3+h2</code>, <code>2xh3+2xh2</code>, <code>h3@bbr+h2@cubic</code>) download at once through one rate-limited link. A mix that names no controller runs every flow with the matrix's controller (one set of cells per controller); a mix may name one per flow. Shares are counted over the span during which every flow was downloading; the fair share is the aggregate over the number of flows, so a group's <strong>normalised share</strong> is its share over its flows' fair part: <strong>1 = fair</strong>, above 1 it took more. Jain's index is (Σx)² / (n·Σx²) over the flows' rates: 1 when equal, 1/n when one flow has everything. Both are measured twice: from the clients (bytes received over time) and from the link (bytes it delivered per flow, framing included). Convergence: the time from the common start to the first moment from which every flow is within ±10% of the fair share over the next 2 s. Full definitions: <a href=\"{docs}/methodology.md#fairness-sharing-a-bottleneck\">docs/methodology.md, fairness</a>.</p>"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_averages_over_common_windows() {
        // A flow that starts 100 ms late with 500 ms windows.
        let tl = [(100.0, 10.0), (600.0, 20.0)];
        let edges = [0.0, 500.0, 1000.0, 1500.0];
        let (v, cover) = resample(&tl, 500.0, &edges);
        assert_eq!(cover, vec![0.8, 1.0, 0.2]);
        assert!((v[0] - 8.0).abs() < 1e-9, "{v:?}");
        assert!((v[1] - (10.0 * 0.2 + 20.0 * 0.8)).abs() < 1e-9, "{v:?}");
        assert!((v[2] - 4.0).abs() < 1e-9, "{v:?}");
        // The last, barely covered window is dropped from the common grid.
        let other = [(0.0, 5.0), (500.0, 5.0)];
        assert_eq!(
            common_edges(&[&tl, &other], 500.0),
            vec![0.0, 500.0, 1000.0]
        );
        assert!(common_edges(&[], 500.0).is_empty());
    }

    #[test]
    fn flows_from_the_mix_when_the_cell_lists_none() {
        let mut c = CellResult::new("x", "h3", WORKLOAD, "2xh3+h2", LinkInfo::default(), 0, 1);
        c.params = serde_json::json!({ "cc": "cubic" });
        let f = flows(&c);
        assert_eq!(f.len(), 3);
        assert_eq!(f[1].legend(1), "flow 1 h3@cubic");
        assert_eq!(f[2].group, "h2");
        c.variant = "h3@bbr+h2@cubic".into();
        let f = flows(&c);
        assert_eq!(f[0].group, "h3@bbr");
        assert_eq!(f[1].cc, "cubic");
    }
}
