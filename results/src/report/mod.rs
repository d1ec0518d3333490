//! `quicbench report`: SVG charts and a static HTML site from run directories.
//!
//! Layout of the site:
//!
//! ```text
//! <out>/index.html            one section per run (the first is the main one)
//! <out>/charts/<run>-*.svg    one chart per (workload, variant, metric), and
//!                             bytes-vs-time timelines
//! <out>/data/<run>/           copies of run.json, summary.csv, summary.json
//! ```
//!
//! Colours are fixed per protocol ([`palette`]); bars are medians, whiskers
//! their 95% CIs (grey when fewer than 6 samples made it a [min, max] range),
//! black ticks theoretical values (e.g. handshake round trips).

pub mod charts;
pub mod palette;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::ResultsError;
use crate::schema::{CellResult, LinkInfo, RunMeta, SummaryRow};
use crate::store::{self, RunDir};
use charts::{Bar, Group, Series};
use palette::{hex, protocol_color, protocol_rank};

/// Everything the report needs of one run directory.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub meta: RunMeta,
    /// Valid cells, sorted by id.
    pub cells: Vec<CellResult>,
    /// `summary.json` if present (it may hold harness-derived rows), else
    /// [`crate::summarize`] of the cells.
    pub rows: Vec<SummaryRow>,
    /// Cell files that could not be read, with the reason.
    pub invalid: Vec<(PathBuf, String)>,
}

/// Loads a run directory for reporting: unreadable cell files are listed in
/// `invalid` rather than failing the whole report.
pub fn load_run(dir: &Path) -> Result<RunData, ResultsError> {
    let rd = RunDir::open(dir)?;
    let meta = rd.read_meta()?;
    let scan = rd.scan_cells()?;
    let mut cells = Vec::new();
    for id in &scan.finished {
        cells.push(store::read_cell_file(&rd.cell_path(id))?);
    }
    let rows = if rd.path().join(store::SUMMARY_JSON).exists() {
        rd.read_summary()?
    } else {
        crate::summarize(&cells)
    };
    Ok(RunData {
        dir: dir.to_path_buf(),
        meta,
        cells,
        rows,
        invalid: scan.invalid,
    })
}

/// Workloads in the order the site shows them, with their metrics in order of
/// interest (metrics not listed follow, by name).
const WORKLOADS: [(&str, &str, &[&str]); 5] = [
    (
        "handshake",
        "Handshake cost",
        &["ttfb_rtt", "ttfb_ms", "connect_ms", "tls_ms", "total_ms"],
    ),
    (
        "hol",
        "Head-of-line blocking under loss",
        &[
            "latency_ms",
            "hol_inflation_p99",
            "hol_delayed_share",
            "hol_inflation_p50",
            "page_ms",
            "object_ms",
        ],
    ),
    (
        "migration",
        "Connection migration",
        &[
            "survived",
            "disruption_ms",
            "recovery_ms",
            "completion_ms",
            "new_handshake",
            "completed",
        ],
    ),
    (
        "goodput",
        "Goodput",
        &["goodput_mbps", "page_ms", "completion_ms", "object_ms"],
    ),
    (
        "udp",
        "Raw UDP baseline",
        &[
            "loss_rate",
            "rtt_ms",
            "jitter_ms",
            "reordered",
            "duplicates",
            "owd_up_p50_ms",
            "owd_down_p50_ms",
        ],
    ),
];

fn workload_rank(w: &str) -> usize {
    WORKLOADS
        .iter()
        .position(|(n, _, _)| *n == w)
        .unwrap_or(WORKLOADS.len())
}

fn metric_rank(w: &str, m: &str) -> (usize, String) {
    let pref = WORKLOADS
        .iter()
        .find(|(n, _, _)| *n == w)
        .map(|(_, _, p)| *p)
        .unwrap_or(&[]);
    (
        pref.iter().position(|x| *x == m).unwrap_or(pref.len()),
        m.to_string(),
    )
}

/// Link labels in a natural order: by RTT, loss, rate, then label.
fn link_order(cells: &[CellResult], labels: &BTreeSet<String>) -> Vec<String> {
    let info: BTreeMap<&str, &LinkInfo> = cells
        .iter()
        .map(|c| (c.link.label.as_str(), &c.link))
        .collect();
    let mut v: Vec<String> = labels.iter().cloned().collect();
    v.sort_by(|a, b| {
        let key = |l: &str| {
            info.get(l)
                .map(|i| (i.rtt_ms, i.loss, i.rate_bps.unwrap_or(u64::MAX)))
        };
        match (key(a), key(b)) {
            (Some(x), Some(y)) => {
                x.0.total_cmp(&y.0)
                    .then(x.1.total_cmp(&y.1))
                    .then(x.2.cmp(&y.2))
                    .then(a.cmp(b))
            }
            _ => a.cmp(b),
        }
    });
    v
}

/// The theoretical value of `metric` for a cell group, if its cells agree on one.
fn theory_of(
    cells: &[CellResult],
    protocol: &str,
    workload: &str,
    variant: &str,
    link: &str,
    metric: &str,
) -> Option<f64> {
    let mut vals = cells
        .iter()
        .filter(|c| {
            c.status.is_ok()
                && c.protocol == protocol
                && c.workload == workload
                && c.variant == variant
                && c.link.label == link
        })
        .filter_map(|c| c.theory.get(metric).copied());
    let first = vals.next()?;
    vals.all(|v| (v - first).abs() < 1e-9).then_some(first)
}

/// Bars of `metric` for one workload variant: groups are links, bars
/// protocols. Fractions (unit `bool`) show the mean without whiskers.
/// Returns the protocols (display order), the groups and the unit.
pub fn bar_groups(
    cells: &[CellResult],
    rows: &[SummaryRow],
    workload: &str,
    variant: &str,
    metric: &str,
) -> (Vec<String>, Vec<Group>, String) {
    let sel: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.workload == workload && r.variant == variant && r.metric == metric)
        .collect();
    let Some(unit) = sel.first().map(|r| r.unit.clone()) else {
        return (Vec::new(), Vec::new(), String::new());
    };
    let sel: Vec<&SummaryRow> = sel.into_iter().filter(|r| r.unit == unit).collect();
    let mut protocols: Vec<String> = sel
        .iter()
        .map(|r| r.protocol.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    protocols.sort_by_key(|p| protocol_rank(p));
    let labels: BTreeSet<String> = sel.iter().map(|r| r.link.clone()).collect();
    let groups = link_order(cells, &labels)
        .into_iter()
        .map(|link| {
            let bars = protocols
                .iter()
                .filter_map(|p| {
                    let r = sel.iter().find(|r| &r.protocol == p && r.link == link)?;
                    let fraction = unit == "bool";
                    Some(Bar {
                        protocol: p.clone(),
                        value: if fraction { r.mean } else { r.median },
                        ci: (!fraction).then_some((r.ci_low, r.ci_high)),
                        ci_exact: r.ci_method != "range-small-n",
                        theory: theory_of(cells, p, workload, variant, &link, metric),
                    })
                })
                .collect();
            Group { label: link, bars }
        })
        .collect();
    (protocols, groups, unit)
}

/// The handshake chart: time to first byte of `variant` (e.g. "cold",
/// "resumed") in round trips of each link, per protocol, with the
/// theoretical round-trip count marked. `None` when the run has no such data.
pub fn handshake_ttfb_rtt_svg(
    cells: &[CellResult],
    rows: &[SummaryRow],
    variant: &str,
) -> Result<Option<String>, ResultsError> {
    let (protocols, groups, _) = bar_groups(cells, rows, "handshake", variant, "ttfb_rtt");
    if groups.is_empty() {
        return Ok(None);
    }
    charts::grouped_bars_svg(&ttfb_rtt_title(variant), TTFB_RTT_Y, &protocols, &groups).map(Some)
}

const TTFB_RTT_Y: &str = "TTFB / RTT (median, 95% CI)";

fn ttfb_rtt_title(variant: &str) -> String {
    format!("Time to first byte, {variant} connection, in round trips")
}

fn y_desc(metric: &str, unit: &str) -> String {
    if unit == "bool" {
        format!("{metric}: fraction of runs")
    } else {
        format!("{metric} [{unit}] (median, 95% CI)")
    }
}

/// File-name safe form.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Four significant digits, no exponent for everyday magnitudes.
fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

struct Chart {
    file: String,
    title: String,
    /// Shown open; the others go under "more charts".
    primary: bool,
}

fn write_chart(
    out: &Path,
    file: String,
    title: String,
    primary: bool,
    svg: &str,
) -> Result<Chart, ResultsError> {
    let path = out.join("charts").join(&file);
    fs::write(&path, svg).map_err(|e| ResultsError::io(&path, e))?;
    Ok(Chart {
        file,
        title,
        primary,
    })
}

/// Charts of one run: per workload, the list of (heading, charts).
fn run_charts(
    run: &RunData,
    idx: usize,
    out: &Path,
) -> Result<Vec<(String, Vec<Chart>)>, ResultsError> {
    let prefix = format!("r{idx}");
    let mut wv: BTreeSet<(usize, String, String)> = BTreeSet::new();
    for r in &run.rows {
        wv.insert((
            workload_rank(&r.workload),
            r.workload.clone(),
            r.variant.clone(),
        ));
    }
    let mut sections: Vec<(String, Vec<Chart>)> = Vec::new();
    for (_, workload, variant) in &wv {
        let heading = WORKLOADS
            .iter()
            .find(|(n, _, _)| n == workload)
            .map(|(_, h, _)| h.to_string())
            .unwrap_or_else(|| workload.clone());
        let mut list = Vec::new();
        let mut metrics: Vec<String> = run
            .rows
            .iter()
            .filter(|r| &r.workload == workload && &r.variant == variant)
            .map(|r| r.metric.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        metrics.sort_by_key(|m| metric_rank(workload, m));
        for metric in &metrics {
            let (protocols, groups, unit) =
                bar_groups(&run.cells, &run.rows, workload, variant, metric);
            // Nothing to see (e.g. zero failures everywhere): the table has it.
            let all_zero = run
                .rows
                .iter()
                .filter(|r| &r.workload == workload && &r.variant == variant && &r.metric == metric)
                .all(|r| r.min == 0.0 && r.max == 0.0);
            if groups.is_empty() || all_zero {
                continue;
            }
            let primary = metric_rank(workload, metric).0 < 3;
            let (title, y) = if workload == "handshake" && metric == "ttfb_rtt" {
                (ttfb_rtt_title(variant), TTFB_RTT_Y.to_string())
            } else {
                (
                    format!("{workload} / {variant}: {metric}"),
                    y_desc(metric, &unit),
                )
            };
            let svg = charts::grouped_bars_svg(&title, &y, &protocols, &groups)?;
            let file = slug(&format!("{prefix}-{workload}-{variant}-{metric}.svg"));
            list.push(write_chart(out, file, title, primary, &svg)?);
        }
        // Bytes against time, first repetition of each protocol, per link.
        let mut by_link: BTreeMap<String, Vec<&CellResult>> = BTreeMap::new();
        for c in run.cells.iter().filter(|c| {
            c.status.is_ok()
                && &c.workload == workload
                && &c.variant == variant
                && c.timelines.contains_key("bytes_vs_time")
        }) {
            by_link.entry(c.link.label.clone()).or_default().push(c);
        }
        let labels: BTreeSet<String> = by_link.keys().cloned().collect();
        for link in link_order(&run.cells, &labels) {
            let cs = &by_link[&link];
            let mut protos: Vec<&str> = cs
                .iter()
                .map(|c| c.protocol.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            protos.sort_by_key(|p| protocol_rank(p));
            let series: Vec<Series> = protos
                .iter()
                .filter_map(|p| {
                    let c = cs
                        .iter()
                        .filter(|c| c.protocol == *p)
                        .min_by_key(|c| c.repetition)?;
                    Some(Series {
                        protocol: p.to_string(),
                        points: c.timelines["bytes_vs_time"].clone(),
                    })
                })
                .collect();
            let title =
                format!("{workload} / {variant} on {link}: bytes received (first repetition)");
            let svg =
                charts::lines_svg(&title, "time since start [ms]", "bytes received", &series)?;
            let file = slug(&format!(
                "{prefix}-{workload}-{variant}-{link}-bytes_vs_time.svg"
            ));
            list.push(write_chart(out, file, title, true, &svg)?);
        }
        if !list.is_empty() {
            sections.push((format!("{heading}: {variant}"), list));
        }
    }
    Ok(sections)
}

/// Summary table rows with a comparison against HTTP/3 in the same group.
fn summary_table(rows: &[SummaryRow], html: &mut String) {
    let key = |r: &SummaryRow| {
        (
            r.workload.clone(),
            r.variant.clone(),
            r.link.clone(),
            r.metric.clone(),
            r.unit.clone(),
        )
    };
    let h3: BTreeMap<_, &SummaryRow> = rows
        .iter()
        .filter(|r| r.protocol == "h3")
        .map(|r| (key(r), r))
        .collect();
    let mut sorted: Vec<&SummaryRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        (
            workload_rank(&a.workload),
            &a.workload,
            &a.variant,
            &a.link,
            metric_rank(&a.workload, &a.metric),
            protocol_rank(&a.protocol),
        )
            .cmp(&(
                workload_rank(&b.workload),
                &b.workload,
                &b.variant,
                &b.link,
                metric_rank(&b.workload, &b.metric),
                protocol_rank(&b.protocol),
            ))
    });
    html.push_str("<table><thead><tr><th>workload</th><th>variant</th><th>link</th><th>metric</th><th>protocol</th><th>median</th><th>95% CI</th><th>n</th><th>vs h3</th></tr></thead><tbody>\n");
    for r in sorted {
        let vs = match h3.get(&key(r)) {
            Some(h) if r.protocol != "h3" => {
                if r.ci_overlaps(h) {
                    "not distinguishable".to_string()
                } else if h.median != 0.0 {
                    format!("×{} of h3", num(r.median / h.median))
                } else {
                    "differs".to_string()
                }
            }
            _ => String::new(),
        };
        let flag = if r.ci_method == "range-small-n" {
            " <span class=\"warn\" title=\"fewer than 6 samples: [min, max], confidence below 95%\">*</span>"
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class=\"sw\" style=\"background:{}\"></span>{}</td><td>{} {}</td><td>[{}, {}]{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.workload),
            esc(&r.variant),
            esc(&r.link),
            esc(&r.metric),
            hex(protocol_color(&r.protocol)),
            esc(&r.protocol),
            num(r.median),
            esc(&r.unit),
            num(r.ci_low),
            num(r.ci_high),
            flag,
            r.n,
            esc(&vs),
        );
    }
    html.push_str("</tbody></table>\n");
}

fn meta_table(run: &RunData, html: &mut String) {
    let m = &run.meta;
    let failed = run.cells.iter().filter(|c| !c.status.is_ok()).count();
    let mut rows: Vec<(&str, String)> = vec![
        ("directory", run.dir.display().to_string()),
        ("started", m.started.clone()),
        (
            "finished",
            m.finished.clone().unwrap_or_else(|| "(unfinished)".into()),
        ),
        (
            "quicbench",
            format!(
                "{} {}",
                m.quicbench_version,
                m.git_commit.clone().unwrap_or_default()
            ),
        ),
        (
            "host",
            format!(
                "{} — {} ({} cores, {:.1} GiB), kernel {}",
                m.host.hostname,
                m.host.cpu_model,
                m.host.cores,
                m.host.memory_bytes as f64 / (1u64 << 30) as f64,
                m.host.kernel
            ),
        ),
        (
            "link emulation",
            format!("{} ({})", m.backend, m.backend_reason),
        ),
        (
            "cells",
            format!(
                "{} present of {} planned here ({} in the whole plan), {failed} not ok",
                run.cells.len(),
                m.cell_ids.len(),
                m.planned_cells
            ),
        ),
        ("seed", m.seed.to_string()),
        (
            "stacks",
            m.crate_versions
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    if let Some((i, n)) = m.shard {
        rows.push(("shard", format!("{i} of {n}")));
    }
    html.push_str("<table class=\"meta\">\n");
    for (k, v) in rows {
        let _ = writeln!(html, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    html.push_str("</table>\n");
    if !run.invalid.is_empty() {
        html.push_str("<p class=\"warn\">Unreadable cell files (left out):</p><ul>\n");
        for (p, e) in &run.invalid {
            let _ = writeln!(
                html,
                "<li><code>{}</code>: {}</li>",
                esc(&p.display().to_string()),
                esc(e)
            );
        }
        html.push_str("</ul>\n");
    }
}

const CSS: &str = "body{font-family:sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{border-bottom:2px solid #0072B2;padding-bottom:.2em;margin-top:2em}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts figure{margin:0;flex:1 1 680px;max-width:900px}\
.charts img{width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}\
table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}\
table.meta th{background:#f4f4f4}.sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}\
.warn{color:#D55E00}details{margin:1em 0}";

fn figures(charts: &[&Chart], html: &mut String) {
    html.push_str("<div class=\"charts\">\n");
    for c in charts {
        let _ = writeln!(
            html,
            "<figure><img src=\"charts/{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
            esc(&c.file),
            esc(&c.title),
            esc(&c.title)
        );
    }
    html.push_str("</div>\n");
}

/// Builds the site for `runs` (the first is the main run, the others are shown
/// after it for comparison) into `out`; returns the path of `index.html`.
pub fn build_site(runs: &[PathBuf], out: &Path) -> Result<PathBuf, ResultsError> {
    if runs.is_empty() {
        return Err(ResultsError::invalid("report", "no run directory given"));
    }
    let charts_dir = out.join("charts");
    fs::create_dir_all(&charts_dir).map_err(|e| ResultsError::io(&charts_dir, e))?;
    let mut html = String::new();
    html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let first = load_run(&runs[0])?;
    let _ = writeln!(
        html,
        "<title>quicbench: {}</title>\n<style>{CSS}</style></head><body>",
        esc(&first.meta.name)
    );
    let _ = writeln!(
        html,
        "<h1>quicbench results: {}</h1>",
        esc(&first.meta.name)
    );
    html.push_str("<p>Bars: medians over all repetitions; whiskers: 95% confidence intervals of the median (order statistics, distribution-free; grey when fewer than 6 samples, then [min, max]); black ticks: theoretical values. Two protocols are called <em>not distinguishable</em> when their intervals overlap. Colours are fixed per protocol (Okabe-Ito palette).</p>\n<p>");
    for (p, c) in palette::PROTOCOLS {
        let _ = write!(
            html,
            "<span class=\"sw\" style=\"background:{}\"></span>{} &nbsp; ",
            hex(c),
            esc(p)
        );
    }
    html.push_str("</p>\n");
    let mut loaded = vec![first];
    for r in &runs[1..] {
        loaded.push(load_run(r)?);
    }
    for (i, run) in loaded.iter().enumerate() {
        let _ = writeln!(
            html,
            "<h2 id=\"run{i}\">Run {}: {}</h2>",
            i + 1,
            esc(&run.meta.name)
        );
        meta_table(run, &mut html);
        // Raw data next to the charts.
        let data = out.join("data").join(format!("r{i}"));
        fs::create_dir_all(&data).map_err(|e| ResultsError::io(&data, e))?;
        let mut links = Vec::new();
        for f in [store::META_FILE, store::SUMMARY_CSV, store::SUMMARY_JSON] {
            let src = run.dir.join(f);
            if src.exists() {
                let dst = data.join(f);
                fs::copy(&src, &dst).map_err(|e| ResultsError::io(&dst, e))?;
                links.push(format!("<a href=\"data/r{i}/{f}\">{f}</a>"));
            }
        }
        let _ = writeln!(html, "<p>Data: {}</p>", links.join(" · "));
        for (heading, charts) in run_charts(run, i, out)? {
            let _ = writeln!(html, "<h3>{}</h3>", esc(&heading));
            let (primary, more): (Vec<&Chart>, Vec<&Chart>) =
                charts.iter().partition(|c| c.primary);
            // A section without a headline metric shows its first chart open.
            let (primary, more) = if primary.is_empty() {
                (more[..1].to_vec(), more[1..].to_vec())
            } else {
                (primary, more)
            };
            figures(&primary, &mut html);
            if !more.is_empty() {
                let _ = writeln!(
                    html,
                    "<details><summary>{} more chart(s)</summary>",
                    more.len()
                );
                figures(&more, &mut html);
                html.push_str("</details>\n");
            }
        }
        html.push_str("<details><summary>Summary table</summary>\n");
        summary_table(&run.rows, &mut html);
        html.push_str("</details>\n");
    }
    html.push_str("</body></html>\n");
    let index = out.join("index.html");
    store::write_atomic(&index, html.as_bytes())?;
    Ok(index)
}

#[cfg(test)]
mod tests;
