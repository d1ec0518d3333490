//! The implementations page: the same protocol run by several server ×
//! client pairs (docs/endpoints.md), so a reader can tell a protocol's
//! difference from an implementation's. Built from `RunData::impl_cells` /
//! `impl_rows`; every other page shows our own pair only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Context as _;
use quicbench_results::analysis::{cell_cc, cell_endpoint, headline_metric, OURS};
use quicbench_results::{CellResult, CellStatus, LinkInfo, SummaryRow};

use crate::charts::format_value;
use crate::data::{link_spec, link_words, ours_cell, RunData};
use crate::html::{self, esc, median_ci, num, proto_cell, table, Page};
use crate::impl_charts::{
    pair_heatmap_svg, range_svg, ratio_text, Dot, PairHeat, PairKind, PairSquare, RangeRow,
};
use crate::palette::protocol_rank;

/// The page's file name (linked from the index only when it exists).
pub const FILE: &str = "implementations.html";

/// What one server × client pair did in one group (protocol × workload
/// variant × link × cc), over its repetitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pair {
    /// Cells that finished ok.
    pub ok: usize,
    /// The summary row of the headline metric (over the ok cells), if any.
    pub row: Option<SummaryRow>,
    /// Reasons of failed cells.
    pub failed: Vec<String>,
    /// Reasons of skipped cells ("not applicable: ...").
    pub skipped: Vec<String>,
    /// Migration: (cells with `survived`, cells with the metric) among ok cells.
    pub survived: Option<(u64, u64)>,
}

/// One protocol × workload variant × link × cc and what each pair did.
#[derive(Debug, Clone, PartialEq)]
pub struct PairGroup {
    pub workload: String,
    pub variant: String,
    pub protocol: String,
    pub link: LinkInfo,
    pub cc: String,
    /// [`headline_metric`] of the variant.
    pub metric: Option<&'static str>,
    /// (server, client) → what the pair did.
    pub pairs: BTreeMap<(String, String), Pair>,
}

/// Ours first, then by name.
fn endpoint_order(v: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    v.sort_by_key(|e| (e != OURS, e.clone()));
    v
}

/// Every group of the run's cells (any status), in page order: workload,
/// variant, link, cc, protocol.
pub fn pair_groups(run: &RunData) -> Vec<PairGroup> {
    type Key = (String, String, String, String, String);
    let mut by: BTreeMap<Key, PairGroup> = BTreeMap::new();
    for c in &run.impl_cells {
        let cc = cell_cc(c);
        let g = by
            .entry((
                c.workload.clone(),
                c.variant.clone(),
                c.link.label.clone(),
                cc.clone(),
                c.protocol.clone(),
            ))
            .or_insert_with(|| PairGroup {
                workload: c.workload.clone(),
                variant: c.variant.clone(),
                protocol: c.protocol.clone(),
                link: c.link.clone(),
                cc: cc.clone(),
                metric: headline_metric(&c.workload, &c.variant),
                pairs: BTreeMap::new(),
            });
        let p = g
            .pairs
            .entry((cell_endpoint(c, "server"), cell_endpoint(c, "client")))
            .or_default();
        match &c.status {
            CellStatus::Ok => {
                p.ok += 1;
                if let Some(m) = c.metrics.get("survived") {
                    let e = p.survived.get_or_insert((0, 0));
                    e.0 += m.samples.iter().filter(|v| **v >= 0.5).count() as u64;
                    e.1 += m.samples.len() as u64;
                }
            }
            CellStatus::Failed { reason } => p.failed.push(reason.clone()),
            CellStatus::Skipped { reason } => p.skipped.push(reason.clone()),
        }
    }
    let mut out: Vec<PairGroup> = by.into_values().collect();
    for g in &mut out {
        let Some(metric) = g.metric else { continue };
        for ((server, client), p) in g.pairs.iter_mut() {
            if p.ok == 0 {
                continue;
            }
            p.row = run
                .impl_rows
                .iter()
                .find(|r| {
                    r.protocol == g.protocol
                        && r.workload == g.workload
                        && r.variant == g.variant
                        && r.link == g.link.label
                        && r.cc == g.cc
                        && r.metric == metric
                        && &r.server == server
                        && &r.client == client
                })
                .cloned();
        }
    }
    let links = run.link_order(out.iter().map(|g| &g.link.label));
    let link_rank = |l: &str| links.iter().position(|x| x == l).unwrap_or(links.len());
    out.sort_by_key(|g| {
        (
            crate::workload_rank(&g.workload),
            g.workload.clone(),
            g.variant.clone(),
            link_rank(&g.link.label),
            g.cc.clone(),
            protocol_rank(&g.protocol),
        )
    });
    out
}

/// "median [low, high] 95% method, n = k cells" in plain text (tooltips).
fn row_text(r: &SummaryRow) -> String {
    match (r.ci_low, r.ci_high, r.ci_confidence) {
        (Some(l), Some(h), Some(c)) => format!(
            "{} {} [{}, {}] {}% {}, n = {} cells",
            num(r.median),
            r.unit,
            num(l),
            num(h),
            html::num_short(c * 100.0),
            r.ci_method,
            r.n
        ),
        _ => format!(
            "{} {} (n = {} cells: too few for an interval)",
            num(r.median),
            r.unit,
            r.n
        ),
    }
}

fn reasons(v: &[String]) -> String {
    let set: BTreeSet<&str> = v.iter().map(String::as_str).collect();
    set.into_iter().collect::<Vec<_>>().join(" | ")
}

/// The heatmap of one group: servers × clients seen in `axes` (the pairs
/// of the workload variant × link × cc over every protocol, so a pair that
/// does not speak this protocol stays blank).
pub fn pair_heat(g: &PairGroup, servers: &[String], clients: &[String]) -> PairHeat {
    let metric = g.metric.unwrap_or("");
    let ours = g
        .pairs
        .get(&(OURS.to_string(), OURS.to_string()))
        .and_then(|p| p.row.as_ref())
        .map(|r| r.median)
        .filter(|m| *m != 0.0 && m.is_finite());
    let lowest = g
        .pairs
        .values()
        .filter_map(|p| p.row.as_ref().map(|r| r.median))
        .filter(|m| *m > 0.0 && m.is_finite())
        .fold(None, |a: Option<f64>, m| Some(a.map_or(m, |a| a.min(m))));
    // Colours relative to our own pair; without its median, to the lowest.
    let (reference, ref_text, ref_short) = match (ours, lowest) {
        (Some(o), _) => (
            Some(o),
            format!("ours ({OURS} → {OURS})"),
            "our pair's median",
        ),
        (None, Some(l)) => (
            Some(l),
            "the lowest median".to_string(),
            "the lowest median",
        ),
        (None, None) => (None, "none".to_string(), "(no median)"),
    };
    let mut squares = Vec::new();
    for (si, s) in servers.iter().enumerate() {
        for (ci, c) in clients.iter().enumerate() {
            let Some(p) = g.pairs.get(&(s.clone(), c.clone())) else {
                continue;
            };
            let who = format!("{s} → {c}, {}", g.protocol);
            let not_ok = p.failed.len() + p.skipped.len();
            let (kind, tooltip) = if p.ok > 0 {
                let mut lines = Vec::new();
                let mut tip = format!("{who}: ");
                let ratio = match &p.row {
                    Some(r) => {
                        lines.push(format!("{} {}", format_value(r.median), r.unit));
                        lines.push(match (r.ci_low, r.ci_high) {
                            (Some(l), Some(h)) => {
                                format!("[{}, {}]", format_value(l), format_value(h))
                            }
                            _ => format!("n = {}", r.n),
                        });
                        let _ = write!(tip, "{metric} median {}", row_text(r));
                        let ratio = reference.map(|x| r.median / x);
                        if let Some(x) = ratio {
                            let _ = write!(tip, "; ×{} vs {ref_text}", ratio_text(x));
                        }
                        ratio
                    }
                    None => {
                        lines.push("–".into());
                        let _ = write!(tip, "{} ok cell(s) without {metric}", p.ok);
                        None
                    }
                };
                let mut third = Vec::new();
                if let Some((k, n)) = p.survived {
                    third.push(format!("survived {k}/{n}"));
                    let _ = write!(tip, "; survived {k} of {n}");
                }
                if not_ok > 0 {
                    third.push(format!("+{not_ok} ✗"));
                    let _ = write!(
                        tip,
                        "; {not_ok} more cell(s) not ok: {}",
                        reasons(&[p.failed.clone(), p.skipped.clone()].concat())
                    );
                }
                if !third.is_empty() {
                    lines.push(third.join(" "));
                }
                (PairKind::Value { lines, ratio }, tip)
            } else if !p.failed.is_empty() {
                (
                    PairKind::Failed,
                    format!(
                        "{who}: failed ({} of {} cells): {}",
                        p.failed.len(),
                        not_ok,
                        reasons(&p.failed)
                    ),
                )
            } else {
                let applicable = p.skipped.iter().all(|r| r.starts_with("not applicable"));
                (
                    PairKind::NotApplicable {
                        label: if applicable { "n/a" } else { "skipped" }.into(),
                    },
                    format!("{who}: {}", reasons(&p.skipped)),
                )
            };
            squares.push(PairSquare {
                server: si,
                client: ci,
                kind,
                tooltip,
            });
        }
    }
    let ns: Vec<u64> = g
        .pairs
        .values()
        .filter_map(|p| p.row.as_ref().map(|r| r.n))
        .collect();
    let n_text = n_text(&ns);
    PairHeat {
        title: format!(
            "{}/{} · {} · {}: {metric}",
            g.workload, g.variant, g.protocol, g.link.label
        ),
        note: format!(
            "{}{} · {n_text} · hover: interval or reason",
            link_spec(&g.link),
            if g.cc.is_empty() {
                String::new()
            } else {
                format!(" · cc {}", g.cc)
            }
        ),
        servers: servers.to_vec(),
        clients: clients.to_vec(),
        squares,
        reference: ref_short.to_string(),
    }
}

/// "n = 3 cells per pair", or its range when pairs differ.
fn n_text(ns: &[u64]) -> String {
    match (ns.iter().min(), ns.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("n = {a} cells per pair"),
        (Some(a), Some(b)) => format!("n = {a}–{b} cells per pair"),
        _ => "no ok cells".into(),
    }
}

/// A pair's median on the range plot and in the spread text.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub server: String,
    pub client: String,
    pub row: SummaryRow,
}

impl Arm {
    pub fn ours(&self) -> bool {
        self.server == OURS && self.client == OURS
    }
}

/// The one-line reading of a range plot: per protocol with two or more
/// pairs, the spread of its pairs' medians and its own-pair gap to each
/// other protocol, e.g. "h3: implementation spread 12.1–30.4 ms (2.5×);
/// h3 vs h2 (ours): 1.4×". Protocols in the order given.
pub fn spread_text(rows: &[(String, Vec<Arm>)], unit: &str) -> String {
    let ours = |arms: &[Arm]| arms.iter().find(|a| a.ours()).map(|a| a.row.median);
    let mut parts = Vec::new();
    for (p, arms) in rows {
        if arms.len() < 2 {
            continue;
        }
        let lo = arms
            .iter()
            .map(|a| a.row.median)
            .fold(f64::INFINITY, f64::min);
        let hi = arms
            .iter()
            .map(|a| a.row.median)
            .fold(f64::NEG_INFINITY, f64::max);
        let mut s = format!(
            "{p}: implementation spread {}–{} {unit}",
            format_value(lo),
            format_value(hi)
        );
        if lo > 0.0 {
            let _ = write!(s, " ({}×)", ratio_text(hi / lo));
        }
        if let Some(op) = ours(arms) {
            for (q, qarms) in rows {
                if q == p {
                    continue;
                }
                if let Some(oq) = ours(qarms).filter(|v| *v != 0.0) {
                    let _ = write!(s, "; {p} vs {q} (ours): {}×", ratio_text(op / oq));
                }
            }
        }
        parts.push(s);
    }
    parts.join(". ")
}

/// `charts/r<i>-<kind>-<parts joined by ->.svg`, empty parts (no cc) left out.
fn chart_file(ri: usize, kind: &str, parts: &[&str]) -> String {
    let parts: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    format!("charts/r{ri}-{kind}-{}.svg", html::slug(&parts.join("-")))
}

/// Writes the chart under charts/ and inlines it in the page (tooltips
/// work only in an inline SVG or the file opened alone, not in an `<img>`).
fn inline_fig(
    out: &Path,
    file: &str,
    svg: &str,
    caption: &str,
    h: &mut String,
) -> anyhow::Result<()> {
    let path = out.join(file);
    fs::write(&path, svg).with_context(|| format!("writing chart {}", path.display()))?;
    let _ = writeln!(
        h,
        "<figure><div class=\"svg\">{svg}</div><figcaption>{} · <a href=\"{}\">SVG file</a></figcaption></figure>",
        esc(caption),
        esc(file)
    );
    Ok(())
}

/// The versions table: every endpoint of the run's cells (`extra.endpoints`),
/// with the role, version and notes it reported.
fn versions(run: &RunData, h: &mut String) {
    type Key = (String, String, String);
    let mut seen: BTreeMap<Key, (String, String, String, usize)> = BTreeMap::new();
    for c in &run.impl_cells {
        let Some(ends) = c.extra.get("endpoints") else {
            continue;
        };
        for role in ["server", "client"] {
            let Some(e) = ends.get(role) else { continue };
            let field = |k: &str| {
                e.get(k)
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default()
            };
            let name = field("name");
            if name.is_empty() {
                continue;
            }
            let version = if name == OURS && field("version").is_empty() {
                format!("{} (this build)", run.meta.quicbench_version)
            } else {
                field("version")
            };
            let tcp_cc = field("namespace_tcp_cc");
            let mut notes = field("notes");
            if !tcp_cc.is_empty() {
                if !notes.is_empty() {
                    notes.push_str("; ");
                }
                let _ = write!(notes, "namespace TCP controller: {tcp_cc}");
            }
            let e = seen
                .entry((name, role.to_string(), version))
                .or_insert_with(|| (notes, field("command"), String::new(), 0));
            e.3 += 1;
        }
    }
    if seen.is_empty() {
        h.push_str("<p>No cell recorded its endpoints (<code>extra.endpoints</code>).</p>\n");
        return;
    }
    let rows: Vec<Vec<String>> = seen
        .into_iter()
        .map(|((name, role, version), (notes, command, _, n))| {
            vec![
                esc(&name),
                esc(&role),
                esc(&version),
                esc(&notes),
                if command.is_empty() {
                    String::new()
                } else {
                    format!("<code>{}</code>", esc(&command))
                },
                n.to_string(),
            ]
        })
        .collect();
    table(
        &["endpoint", "role", "version", "notes", "command", "cells"],
        &rows,
        h,
    );
}

/// The cells of other pairs that did not finish ok.
fn not_ok(run: &RunData, ri: usize, copied: bool, h: &mut String) {
    let bad: Vec<&CellResult> = run
        .impl_cells
        .iter()
        .filter(|c| !ours_cell(c) && !c.status.is_ok())
        .collect();
    if bad.is_empty() {
        h.push_str("<p>Every cell of the other pairs finished ok.</p>\n");
        return;
    }
    let rows: Vec<Vec<String>> = bad
        .iter()
        .take(300)
        .map(|c| {
            let (kind, reason) = match &c.status {
                CellStatus::Failed { reason } => ("failed", reason.as_str()),
                CellStatus::Skipped { reason } => ("skipped", reason.as_str()),
                CellStatus::Ok => ("ok", ""),
            };
            vec![
                if copied {
                    format!(
                        "<a href=\"data/r{ri}/cells/{0}.json\"><code>{0}</code></a>",
                        esc(&c.cell_id)
                    )
                } else {
                    format!("<code>{}</code>", esc(&c.cell_id))
                },
                esc(&format!(
                    "{} → {}",
                    cell_endpoint(c, "server"),
                    cell_endpoint(c, "client")
                )),
                format!("<span class=\"fail\">{kind}</span>"),
                esc(reason),
            ]
        })
        .collect();
    table(&["cell", "server → client", "status", "reason"], &rows, h);
    if bad.len() > 300 {
        let _ = writeln!(h, "<p>… and {} more.</p>", bad.len() - 300);
    }
}

/// The sections of one run: versions, heatmaps, protocol or implementation,
/// cells not ok. `d`: 1 when runs are compared (headings one level down).
fn run_sections(
    run: &RunData,
    ri: usize,
    out: &Path,
    copied: bool,
    d: usize,
    h: &mut String,
) -> anyhow::Result<()> {
    let (h2, h3) = (2 + d, 3 + d);
    let groups = pair_groups(run);
    let _ = writeln!(h, "<h{h2}>Versions</h{h2}>");
    versions(run, h);

    // Axes per workload variant × link × cc: every pair seen there.
    type AxisKey = (String, String, String, String);
    let mut axes: BTreeMap<AxisKey, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for g in &groups {
        let e = axes
            .entry((
                g.workload.clone(),
                g.variant.clone(),
                g.link.label.clone(),
                g.cc.clone(),
            ))
            .or_default();
        for (s, c) in g.pairs.keys() {
            e.0.insert(s.clone());
            e.1.insert(c.clone());
        }
    }
    let _ = writeln!(
        h,
        "<h{h2} id=\"heatmaps\">Server × client</h{h2}>\n<p>One heatmap per workload variant × protocol × link (× controller) run by more than one pair: servers down, clients across. A square shows the median over the pair's cells of the variant's headline metric with its interval (hover for the method, confidence and n), coloured by its ratio to our own pair's median (blue: lower, vermillion: higher; white: equal). Hatched grey <em>n/a</em>: the pair cannot run this variant (hover for why); red ✗: every cell of the pair failed (hover for the reason); blank: the pair is not in the run (e.g. one end does not speak the protocol). Migration squares add the share of cells that kept their connection.</p>"
    );
    let mut last_workload = String::new();
    let mut any = false;
    for g in groups
        .iter()
        .filter(|g| g.pairs.len() > 1 && g.metric.is_some())
    {
        if g.workload != last_workload {
            if !last_workload.is_empty() {
                h.push_str("</div>\n");
            }
            let _ = writeln!(
                h,
                "<h{h3}>{}</h{h3}>\n<div class=\"charts\">",
                esc(&crate::workload_title(&g.workload))
            );
            last_workload = g.workload.clone();
        }
        any = true;
        let (servers, clients) = axes
            .get(&(
                g.workload.clone(),
                g.variant.clone(),
                g.link.label.clone(),
                g.cc.clone(),
            ))
            .map(|(s, c)| {
                (
                    endpoint_order(s.iter().cloned()),
                    endpoint_order(c.iter().cloned()),
                )
            })
            .unwrap_or_default();
        let heat = pair_heat(g, &servers, &clients);
        let file = chart_file(
            ri,
            "impl",
            &[&g.workload, &g.variant, &g.protocol, &g.link.label, &g.cc],
        );
        let caption = format!(
            "{}/{} · {} · {}",
            g.workload,
            g.variant,
            g.protocol,
            link_words(&g.link)
        );
        inline_fig(out, &file, &pair_heatmap_svg(&heat), &caption, h)?;
    }
    if any {
        h.push_str("</div>\n");
    } else {
        h.push_str("<p>No protocol was run by more than one pair.</p>\n");
    }

    let _ = writeln!(
        h,
        "<h{h2} id=\"spread\">Protocol or implementation</h{h2}>\n<p>Per workload variant × link (× controller), one row per protocol: a dot per server × client pair at its median of the headline metric, a line for its interval (none: fewer than 3 cells), the band from the lowest to the highest median of that protocol's pairs (the <em>implementation spread</em>, its ratio on the right). Our own pair is the diamond, and its median is dashed across every row: the distance between two dashed lines is the protocol gap as our own implementation measures it. A gap smaller than a protocol's spread says the choice of implementation matters as much as the protocol. The medians of different pairs are compared by eye only: no test is corrected for these comparisons (see docs/report.md).</p>"
    );
    let mut spread_groups: BTreeMap<AxisKey, Vec<&PairGroup>> = BTreeMap::new();
    for g in groups.iter().filter(|g| g.metric.is_some()) {
        spread_groups
            .entry((
                g.workload.clone(),
                g.variant.clone(),
                g.link.label.clone(),
                g.cc.clone(),
            ))
            .or_default()
            .push(g);
    }
    // BTreeMap order is by name: show them in page order (pair_groups').
    let mut keys: Vec<&AxisKey> = spread_groups.keys().collect();
    let pos = |k: &AxisKey| {
        groups
            .iter()
            .position(|g| {
                g.workload == k.0 && g.variant == k.1 && g.link.label == k.2 && g.cc == k.3
            })
            .unwrap_or(usize::MAX)
    };
    keys.sort_by_key(|k| pos(k));
    let mut any = false;
    for k in keys {
        let gs = &spread_groups[k];
        let mut rows: Vec<(String, Vec<Arm>)> = gs
            .iter()
            .map(|g| {
                let arms: Vec<Arm> = g
                    .pairs
                    .iter()
                    .filter_map(|((s, c), p)| {
                        Some(Arm {
                            server: s.clone(),
                            client: c.clone(),
                            row: p.row.clone()?,
                        })
                    })
                    .collect();
                (g.protocol.clone(), arms)
            })
            .filter(|(_, a)| !a.is_empty())
            .collect();
        if !rows.iter().any(|(_, a)| a.len() > 1) {
            continue;
        }
        rows.sort_by_key(|(p, _)| protocol_rank(p));
        any = true;
        let g0 = gs[0];
        let metric = g0.metric.unwrap_or("");
        let unit = rows
            .iter()
            .flat_map(|(_, a)| a.iter().map(|a| a.row.unit.clone()))
            .next()
            .unwrap_or_default();
        let cc = if g0.cc.is_empty() {
            String::new()
        } else {
            format!(" · cc {}", g0.cc)
        };
        let _ = writeln!(
            h,
            "<h{h3}>{}/{} · {}{}</h{h3}>",
            esc(&g0.workload),
            esc(&g0.variant),
            esc(&link_words(&g0.link)),
            esc(&cc)
        );
        let range_rows: Vec<RangeRow> = rows
            .iter()
            .map(|(p, arms)| RangeRow {
                protocol: p.clone(),
                dots: arms
                    .iter()
                    .map(|a| Dot {
                        median: a.row.median,
                        ci: a.row.ci_low.zip(a.row.ci_high),
                        ours: a.ours(),
                        tooltip: format!("{} → {}, {p}: {}", a.server, a.client, row_text(&a.row)),
                    })
                    .collect(),
            })
            .collect();
        let ns: Vec<u64> = rows
            .iter()
            .flat_map(|(_, a)| a.iter().map(|a| a.row.n))
            .collect();
        let title = format!(
            "{}/{} · {}: {metric} per pair",
            g0.workload, g0.variant, g0.link.label
        );
        let note = format!(
            "{}{cc} · {} · hover a dot for its interval",
            link_spec(&g0.link),
            n_text(&ns)
        );
        let svg = range_svg(&title, &note, &format!("{metric} [{unit}]"), &range_rows);
        let file = chart_file(ri, "impl-range", &[&k.0, &k.1, &k.2, &k.3]);
        h.push_str("<div class=\"charts\">\n");
        inline_fig(out, &file, &svg, &title, h)?;
        h.push_str("</div>\n");
        let _ = writeln!(
            h,
            "<div class=\"finding\">{}</div>",
            esc(&spread_text(&rows, &unit))
        );
        let trows: Vec<Vec<String>> = rows
            .iter()
            .flat_map(|(p, arms)| {
                arms.iter().map(move |a| {
                    vec![
                        proto_cell(p),
                        esc(&format!("{} → {}", a.server, a.client)),
                        median_ci(&a.row),
                        a.row.n.to_string(),
                    ]
                })
            })
            .collect();
        h.push_str("<details><summary>Every pair's median</summary>\n");
        table(
            &[
                "protocol",
                "server → client",
                &format!("{metric} [{unit}]"),
                "n (cells)",
            ],
            &trows,
            h,
        );
        h.push_str("</details>\n");
    }
    if !any {
        h.push_str("<p>No protocol has medians from more than one pair.</p>\n");
    }
    let _ = writeln!(
        h,
        "<h{h2} id=\"not-ok\">Cells of other pairs not ok</h{h2}>"
    );
    not_ok(run, ri, copied, h);
    Ok(())
}

/// The implementations page, or `None` when no run has a cell with another
/// implementation at one end (then the page is neither built nor linked).
pub fn page(
    runs: &[RunData],
    labels: &[String],
    out: &Path,
    copied: bool,
) -> anyhow::Result<Option<Page>> {
    if !runs.iter().any(RunData::has_other_endpoints) {
        return Ok(None);
    }
    let mut h = String::new();
    h.push_str("<h1>Implementations</h1>\n<p>The same protocol run by different server × client pairs (docs/endpoints.md): our own endpoint <code>quicbench</code> (quinn + h3, hyper, the hand-written HTTP/1.x clients) and third-party servers and clients, on the same links with the same statistics. Every other page of this site shows only cells where both ends are ours; this page shows every pair, so a protocol's difference can be told from an implementation's. Third-party clients that write no timings have only link-side metrics: their squares show “–”.</p>\n");
    let multi = runs.len() > 1;
    for (i, r) in runs.iter().enumerate() {
        if !r.has_other_endpoints() {
            continue;
        }
        if multi {
            let _ = writeln!(h, "<h2>{}</h2>", esc(&labels[i]));
        }
        run_sections(r, i, out, copied, usize::from(multi), &mut h)?;
    }
    Ok(Some(Page {
        file: FILE.into(),
        nav_title: "Implementations".into(),
        title: "quicbench: implementations".into(),
        body: h,
    }))
}
