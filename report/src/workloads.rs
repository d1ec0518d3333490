//! The charts and tables of each workload page.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use quicbench_results::stats::{median_ci as stats_median_ci, quantile_sorted};
use quicbench_results::{CellResult, LinkInfo, SummaryRow};

use crate::charts::{self, Bar, Frame, Group, HeatCell, LineChart, Series, Stream};
use crate::data::{self, link_spec, link_words, pooled, pooled_or_hist, sort_protocols, RunData};
use crate::html::{esc, median_ci, num, num_short, proto_cell, slug, table, Fig};
use crate::palette::{protocol_color, protocol_rank};

/// Writes one chart of run `ri` and describes it.
pub fn write_fig(
    out: &Path,
    ri: usize,
    key: &str,
    title: &str,
    primary: bool,
    svg: &str,
) -> anyhow::Result<Fig> {
    let file = format!("charts/r{ri}-{}.svg", slug(key));
    let path = out.join(&file);
    std::fs::write(&path, svg).with_context(|| format!("writing chart {}", path.display()))?;
    Ok(Fig {
        key: key.to_string(),
        title: title.to_string(),
        file,
        primary,
    })
}

/// "n = 12" or "n = 10–14 per bar".
fn n_range(ns: impl Iterator<Item = u64>) -> String {
    let v: Vec<u64> = ns.collect();
    match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("n = {a} cells per {}", "protocol"),
        (Some(a), Some(b)) => format!("n = {a}–{b} cells per protocol"),
        _ => "n = 0".into(),
    }
}

/// Specs of several links for a chart note (shortened when many).
fn specs_note(links: &[&LinkInfo]) -> String {
    let mut specs: Vec<String> = links.iter().map(|l| link_spec(l)).collect();
    specs.dedup();
    if specs.len() > 3 {
        let n = specs.len();
        specs.truncate(2);
        specs.push(format!("… ({n} links)"));
    }
    format!("link: {}", specs.join("; "))
}

/// Rows of a workload's summary as a table (run column when compared).
pub fn summary_table(
    runs: &[RunData],
    workload: &str,
    metrics: Option<&[&str]>,
    html: &mut String,
) {
    let mut rows_out = Vec::new();
    // A controller column only where some row names one (a matrix with a
    // `cc` axis, fairness mixes): rows that differ only by it stay apart.
    let with_cc = runs.iter().any(|run| {
        run.rows
            .iter()
            .any(|r| r.workload == workload && !r.cc.is_empty())
    });
    for (ri, run) in runs.iter().enumerate() {
        let h3: BTreeMap<(&str, &str, &str), &SummaryRow> = run
            .rows
            .iter()
            .filter(|r| r.workload == workload && r.protocol == "h3")
            .map(|r| ((r.variant.as_str(), r.link.as_str(), r.metric.as_str()), r))
            .collect();
        let order = run.link_order(run.rows.iter().map(|r| &r.link));
        let mut sel: Vec<&SummaryRow> = run
            .rows
            .iter()
            .filter(|r| r.workload == workload)
            .filter(|r| metrics.is_none_or(|m| m.contains(&r.metric.as_str())))
            .collect();
        sel.sort_by_key(|r| {
            (
                r.variant.clone(),
                r.cc.clone(),
                order.iter().position(|l| *l == r.link),
                crate::metric_rank(workload, &r.metric),
                protocol_rank(&r.protocol),
            )
        });
        for r in sel {
            let vs = match h3.get(&(r.variant.as_str(), r.link.as_str(), r.metric.as_str())) {
                Some(_) if r.protocol != "h3" => {
                    match run.comparison(
                        workload,
                        &r.variant,
                        &r.link,
                        &r.metric,
                        &r.protocol,
                        "h3",
                    ) {
                        Some((Some(ratio), c)) if c.distinguishable => {
                            format!("×{} of h3", num(ratio))
                        }
                        Some((_, c)) if c.distinguishable => "differs".to_string(),
                        Some((_, c)) => format!("not distinguishable ({})", c.reason),
                        None => "not compared".to_string(),
                    }
                }
                _ => String::new(),
            };
            let mut row = Vec::new();
            if runs.len() > 1 {
                row.push(format!("{}", ri + 1));
            }
            row.push(esc(&r.variant));
            if with_cc {
                row.push(esc(&r.cc));
            }
            row.extend([
                esc(&r.link),
                esc(&r.metric),
                proto_cell(&r.protocol),
                median_ci(r),
                esc(&r.unit),
                r.n.to_string(),
                r.samples.to_string(),
                esc(&vs),
            ]);
            rows_out.push(row);
        }
    }
    if rows_out.is_empty() {
        return;
    }
    let mut head = vec![];
    if runs.len() > 1 {
        head.push("run");
    }
    head.push("variant");
    if with_cc {
        head.push("controller");
    }
    head.extend([
        "link",
        "metric",
        "protocol",
        "median [interval over cells]",
        "unit",
        "n (cells)",
        "samples",
        "vs h3",
    ]);
    let _ = writeln!(
        html,
        "<details><summary>Summary table: {} row(s), median with 95% CI</summary>",
        rows_out.len()
    );
    table(&head, &rows_out, html);
    html.push_str("</details>\n");
}

// ---------------------------------------------------------------- handshake

/// Handshake: per RTT (and rate), bars of TTFB in RTTs for each mode and loss,
/// theory marked on each bar. The lost-flight modes (a retransmission timer
/// of about 1 s on top: tens of RTTs) get a chart of their own, so the
/// round trips of the others stay readable.
pub fn handshake_charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let hs: Vec<&CellResult> = run
        .ok_cells()
        .filter(|c| c.workload == "handshake")
        .collect();
    // (rtt, rate) → links
    let mut by_rtt: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
    for c in &hs {
        by_rtt
            .entry((
                (c.link.rtt_ms * 1000.0) as u64,
                c.link.rate_bps.unwrap_or(0),
            ))
            .or_default()
            .insert(c.link.label.clone());
    }
    let (lost, plain): (Vec<String>, Vec<String>) = run
        .variants("handshake")
        .into_iter()
        .partition(|v| v.ends_with("-flight-lost"));
    let mut figs = Vec::new();
    for ((rtt_us, rate), labels) in by_rtt {
        let labels = run.link_order(labels.iter());
        for (variants, suffix) in [(&plain, ""), (&lost, "-lost")] {
            let key = format!("handshake-rtt{rtt_us}-rate{rate}{suffix}");
            let at = HandshakeChart {
                rtt_us,
                rate,
                labels: &labels,
                variants,
                lost: !suffix.is_empty(),
            };
            if let Some(svg) = handshake_svg(run, &hs, &at)? {
                figs.push(write_fig(out, ri, &key, &svg.0, true, &svg.1)?);
            }
        }
    }
    Ok(figs)
}

/// One handshake chart: an RTT (and rate), its links, the modes it shows.
struct HandshakeChart<'a> {
    rtt_us: u64,
    rate: u64,
    labels: &'a [String],
    variants: &'a [String],
    /// The lost-flight modes (titled as such).
    lost: bool,
}

/// (title, SVG) of one handshake chart; None when it has no bars.
fn handshake_svg(
    run: &RunData,
    hs: &[&CellResult],
    at: &HandshakeChart<'_>,
) -> anyhow::Result<Option<(String, String)>> {
    let links = run.links();
    let mut protocols = Vec::new();
    let mut groups = Vec::new();
    let mut ns = Vec::new();
    for link in at.labels {
        let loss = links.get(link).map(|l| l.loss).unwrap_or(0.0);
        for v in at.variants {
            let mut bars = Vec::new();
            for r in run.rows.iter().filter(|r| {
                r.workload == "handshake"
                    && &r.variant == v
                    && &r.link == link
                    && r.metric == "ttfb_rtt"
            }) {
                protocols.push(r.protocol.clone());
                ns.push(r.n);
                bars.push(Bar {
                    protocol: r.protocol.clone(),
                    value: r.median,
                    ci: r.ci_low.zip(r.ci_high),
                    ci_exact: r.ci_method == "order-statistic",
                    theory: theory_of(hs, &r.protocol, v, link, "ttfb_rtt"),
                });
            }
            if bars.is_empty() {
                continue;
            }
            bars.sort_by_key(|b| protocol_rank(&b.protocol));
            let label = if loss > 0.0 {
                format!("{v}, loss {}%", num_short(loss * 100.0))
            } else {
                v.clone()
            };
            groups.push(Group { label, bars });
        }
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let protocols = sort_protocols(protocols);
    let rate_s = if at.rate > 0 {
        format!(", {} Mbit/s", num_short(at.rate as f64 / 1e6))
    } else {
        String::new()
    };
    let title = format!(
        "Time to first byte in round trips{}, {} ms RTT{rate_s}",
        if at.lost { ", first flight lost" } else { "" },
        num_short(at.rtt_us as f64 / 1000.0)
    );
    let infos: Vec<&LinkInfo> = at.labels.iter().filter_map(|l| links.get(l)).collect();
    let note = format!(
        "{} · {} per bar ({})",
        specs_note(&infos),
        n_range(ns.into_iter())
            .trim_start_matches("n = ")
            .replace(" per protocol", ""),
        "median of cells; whisker: interval over cells, grey when approximate, none when n < 3"
    );
    let svg = charts::grouped_bars_svg(
        Frame {
            title: &title,
            note: &note,
        },
        "connection mode (and link loss)",
        "time to first byte [RTT]",
        &protocols,
        &groups,
    )?;
    Ok(Some((title, svg)))
}

/// The theoretical value of `metric` for a cell group, if its cells agree on one.
fn theory_of(
    cells: &[&CellResult],
    protocol: &str,
    variant: &str,
    link: &str,
    metric: &str,
) -> Option<f64> {
    let mut vals = cells
        .iter()
        .filter(|c| c.protocol == protocol && c.variant == variant && c.link.label == link)
        .filter_map(|c| c.theory.get(metric).copied());
    let first = vals.next()?;
    vals.all(|v| (v - first).abs() < 1e-9).then_some(first)
}

// ---------------------------------------------------------------- HOL

/// Empirical CDF points of sorted samples, thinned to at most ~400 points.
fn cdf_points(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(400).max(1);
    let mut pts: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    if pts.last().map(|p| p.1) != Some(1.0) {
        pts.push((sorted[n - 1], 1.0));
    }
    pts
}

/// Latency CDFs of the paced HOL workload, one chart per link.
pub fn hol_cdf_charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let mut figs = Vec::new();
    let links = run.links();
    let labels: BTreeSet<String> = run
        .select("hol", "paced")
        .map(|c| c.link.label.clone())
        .collect();
    for link in run.link_order(labels.iter()) {
        let Some(info) = links.get(&link) else {
            continue;
        };
        let protos = sort_protocols(
            run.select("hol", "paced")
                .filter(|c| c.link.label == link)
                .map(|c| c.protocol.clone())
                .collect(),
        );
        let mut series = Vec::new();
        let mut ns = Vec::new();
        for p in &protos {
            let mut s = pooled_or_hist(
                run.select("hol", "paced")
                    .filter(|c| c.link.label == link && &c.protocol == p),
                "latency_ms",
            );
            if s.is_empty() {
                continue;
            }
            s.sort_by(f64::total_cmp);
            ns.push(format!("{p} {}", s.len()));
            series.push(Series::protocol(p, cdf_points(&s)));
        }
        if series.is_empty() {
            continue;
        }
        let title = format!("Request latency CDF, paced requests, {}", link_words(info));
        let note = format!("link: {} · n requests: {}", link_spec(info), ns.join(", "));
        let svg = charts::lines_svg(
            Frame {
                title: &title,
                note: &note,
            },
            &LineChart {
                x_desc: "request latency [ms] (log scale)".into(),
                y_desc: "fraction of requests ≤ x".into(),
                series,
                x_log: true,
                y_range: Some((0.0, 1.0)),
                ..Default::default()
            },
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("hol-cdf-{link}"),
            &title,
            info.loss > 0.0,
            &svg,
        )?);
    }
    Ok(figs)
}

/// SplitMix64: a tiny seeded generator for the bootstrap (deterministic output).
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// p99 of a resample of `s` (with replacement), using `buf`.
fn resampled_p99(s: &[f64], rng: &mut SplitMix, buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend((0..s.len()).map(|_| s[rng.below(s.len())]));
    let k = ((buf.len() - 1) as f64 * 0.99).round() as usize;
    let (_, v, _) = buf.select_nth_unstable_by(k, f64::total_cmp);
    *v
}

/// Number of bootstrap resamples of the HOL heatmap.
pub const HEAT_RESAMPLES: usize = 400;

/// HOL inflation of protocol A relative to B on one lossy link: the ratio
/// I_A / I_B, I = p99 latency on the lossy link / p99 on its lossless twin,
/// and whether a 95% percentile bootstrap interval of that ratio excludes 1
/// (requests resampled within each of the four pools; seeded, deterministic).
pub fn inflation_ratio(
    a_lossy: &[f64],
    a_base: &[f64],
    b_lossy: &[f64],
    b_base: &[f64],
    seed: u64,
) -> Option<(f64, bool, (f64, f64))> {
    let pools = [a_lossy, a_base, b_lossy, b_base];
    if pools.iter().any(|p| p.is_empty()) {
        return None;
    }
    let p99 = |s: &[f64]| {
        let mut v = s.to_vec();
        v.sort_by(f64::total_cmp);
        quantile_sorted(&v, 0.99).ok()
    };
    let (ia, ib) = (p99(a_lossy)? / p99(a_base)?, p99(b_lossy)? / p99(b_base)?);
    let ratio = ia / ib;
    if !ratio.is_finite() {
        return None;
    }
    let mut rng = SplitMix(seed);
    let mut buf = Vec::new();
    let mut rs: Vec<f64> = (0..HEAT_RESAMPLES)
        .map(|_| {
            let q: Vec<f64> = pools
                .iter()
                .map(|p| resampled_p99(p, &mut rng, &mut buf))
                .collect();
            (q[0] / q[1]) / (q[2] / q[3])
        })
        .filter(|v| v.is_finite())
        .collect();
    if rs.len() < HEAT_RESAMPLES / 2 {
        return Some((ratio, false, (f64::NAN, f64::NAN)));
    }
    rs.sort_by(f64::total_cmp);
    let lo = quantile_sorted(&rs, 0.025).ok()?;
    let hi = quantile_sorted(&rs, 0.975).ok()?;
    Some((ratio, !(lo <= 1.0 && 1.0 <= hi), (lo, hi)))
}

/// The protocol pairs of the heatmaps: h3 against h2, h1.1-pipelined and
/// h1.1-tls when present; otherwise the first two protocols of the run.
fn heat_pairs(protos: &[String]) -> Vec<(String, String)> {
    let has = |p: &str| protos.iter().any(|x| x == p);
    let mut v: Vec<(String, String)> = ["h2", "h1.1-pipelined", "h1.1-tls"]
        .iter()
        .filter(|b| has("h3") && has(b))
        .map(|b| ("h3".to_string(), b.to_string()))
        .collect();
    if v.is_empty() && protos.len() >= 2 {
        v.push((protos[0].clone(), protos[1].clone()));
    }
    v
}

/// Heatmaps of HOL inflation ratios over RTT × loss, one per protocol pair.
pub fn hol_heatmaps(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let paced: Vec<&CellResult> = run.select("hol", "paced").collect();
    let protos = sort_protocols(paced.iter().map(|c| c.protocol.clone()).collect());
    let key = |l: &LinkInfo| ((l.rtt_ms * 1000.0) as u64, l.rate_bps.unwrap_or(0));
    // Lossy links and their lossless twins (same RTT and rate).
    let mut lossy: BTreeMap<(u64, u64, u64), String> = BTreeMap::new();
    let mut base: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for c in &paced {
        let (r, rate) = key(&c.link);
        if c.link.loss > 0.0 {
            lossy.insert((r, (c.link.loss * 1e6) as u64, rate), c.link.label.clone());
        } else if !c.link.up.contains("loss") && !c.link.down.contains("loss") {
            base.insert((r, rate), c.link.label.clone());
        }
    }
    let lossy: Vec<((u64, u64, u64), String)> = lossy
        .into_iter()
        .filter(|((r, _, rate), _)| base.contains_key(&(*r, *rate)))
        .collect();
    if lossy.is_empty() {
        return Ok(Vec::new());
    }
    let rtts: Vec<(u64, u64)> = lossy
        .iter()
        .map(|((r, _, rate), _)| (*r, *rate))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let losses: Vec<u64> = lossy
        .iter()
        .map(|((_, l, _), _)| *l)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let x_labels: Vec<String> = rtts
        .iter()
        .map(|(r, rate)| {
            let mut s = format!("{} ms", num_short(*r as f64 / 1000.0));
            if *rate > 0 {
                s.push_str(&format!(", {} Mbit/s", num_short(*rate as f64 / 1e6)));
            }
            s
        })
        .collect();
    let y_labels: Vec<String> = losses
        .iter()
        .map(|l| format!("{}%", num_short(*l as f64 / 1e4)))
        .collect();
    let samples = |p: &str, link: &str| {
        pooled_or_hist(
            paced
                .iter()
                .copied()
                .filter(|c| c.protocol == p && c.link.label == link),
            "latency_ms",
        )
    };
    let mut figs = Vec::new();
    for (a, b) in heat_pairs(&protos) {
        let mut cells = Vec::new();
        let mut nmin = u64::MAX;
        for ((r, l, rate), label) in &lossy {
            let Some(base_label) = base.get(&(*r, *rate)) else {
                continue;
            };
            let x = rtts.iter().position(|k| *k == (*r, *rate)).unwrap_or(0);
            let y = losses.iter().position(|k| k == l).unwrap_or(0);
            let pools = [
                samples(&a, label),
                samples(&a, base_label),
                samples(&b, label),
                samples(&b, base_label),
            ];
            nmin = nmin.min(pools.iter().map(|p| p.len() as u64).min().unwrap_or(0));
            let seed = (x as u64) << 32 | y as u64;
            // Value and hatching from the run's comparison of the cell-level
            // p99 inflations (the one rule); pooled requests only when a run
            // has no comparisons.csv of this format, then never significant.
            let cmp = run.comparison("hol", "paced", label, "hol_inflation_p99", &a, &b);
            let (ratio, significant) = match cmp {
                Some((r, c)) => (r, c.distinguishable),
                None => (
                    inflation_ratio(&pools[0], &pools[1], &pools[2], &pools[3], seed).map(|r| r.0),
                    false,
                ),
            };
            cells.push(HeatCell {
                x,
                y,
                ratio,
                significant,
            });
        }
        if cells.iter().all(|c| c.ratio.is_none()) {
            continue;
        }
        let title = format!("HOL inflation of {a} relative to {b} (p99 latency vs lossless)");
        let note = format!(
            "paced requests; each cell: median over cells of (p99 lossy / p99 lossless twin) of {a} ÷ the same of {b} · ≥ {} requests per pool · hatched: not distinguishable (comparisons.csv: corrected p < 0.05 and ratio interval excluding 1, over cells)",
            if nmin == u64::MAX { 0 } else { nmin }
        );
        let svg = charts::heatmap_svg(
            Frame {
                title: &title,
                note: &note,
            },
            "RTT (and rate)",
            "loss per direction",
            &x_labels,
            &y_labels,
            &cells,
            &format!("{a} ÷ {b}"),
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("hol-heat-{a}-vs-{b}"),
            &title,
            true,
            &svg,
        )?);
    }
    Ok(figs)
}

/// Waterfalls of the parallel-objects variant: first repetition of each
/// protocol, one chart per link.
pub fn hol_waterfalls(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let links = run.links();
    let par: Vec<&CellResult> = run
        .select("hol", "parallel")
        .filter(|c| c.timelines.keys().any(|k| k.starts_with("object-")))
        .collect();
    let labels: BTreeSet<String> = par.iter().map(|c| c.link.label.clone()).collect();
    let mut figs = Vec::new();
    for link in run.link_order(labels.iter()) {
        let Some(info) = links.get(&link) else {
            continue;
        };
        let protos = sort_protocols(
            par.iter()
                .filter(|c| c.link.label == link)
                .map(|c| c.protocol.clone())
                .collect(),
        );
        let mut panels = Vec::new();
        let mut nobj = 0;
        for p in &protos {
            let Some(c) = par
                .iter()
                .filter(|c| c.link.label == link && &c.protocol == p)
                .min_by_key(|c| c.repetition)
            else {
                continue;
            };
            let streams: Vec<Stream> = c
                .timelines
                .iter()
                .filter(|(k, _)| k.starts_with("object-"))
                .map(|(k, pts)| {
                    let total = pts.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1.0);
                    Stream {
                        label: k.trim_start_matches("object-").to_string(),
                        first_byte: pts.first().map(|p| p.0),
                        end: pts.last().map(|p| p.0),
                        progress: pts.iter().map(|&(t, b)| (t, b / total)).collect(),
                    }
                })
                .collect();
            nobj = nobj.max(streams.len());
            panels.push((p.clone(), streams));
        }
        if panels.is_empty() {
            continue;
        }
        let title = format!(
            "Parallel objects: per-object progress, {}",
            link_words(info)
        );
        let note = format!(
            "link: {} · {nobj} objects per protocol, first repetition (h1.1/h1.1-tls: 6 connections; others: 1)",
            link_spec(info)
        );
        let svg = charts::waterfall_svg(
            Frame {
                title: &title,
                note: &note,
            },
            &panels,
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("hol-waterfall-{link}"),
            &title,
            info.loss > 0.0,
            &svg,
        )?);
    }
    Ok(figs)
}

/// The numbers behind the heatmaps, as a table.
pub fn hol_inflation_table(runs: &[RunData], html: &mut String) {
    summary_table(
        runs,
        "hol",
        Some(&[
            "hol_inflation_p50",
            "hol_inflation_p99",
            "hol_inflation_max",
            "hol_delayed_share",
            "page_ms",
        ]),
        html,
    );
}

// ---------------------------------------------------------------- migration

/// Bytes (or latency) over time around the event: one chart per variant and
/// link, one line per protocol (first repetition), the event marked.
pub fn migration_charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let mut figs = Vec::new();
    for (v, info, cells) in run.by_variant_and_link("migration") {
        let (link, info) = (info.label.clone(), &info);
        let protos = sort_protocols(
            cells
                .iter()
                .filter(|c| c.link.label == link)
                .map(|c| c.protocol.clone())
                .collect(),
        );
        let paced = v.ends_with("-paced");
        let tl = if paced {
            "latency_vs_time"
        } else {
            "bytes_vs_time"
        };
        let mut series = Vec::new();
        let mut events = Vec::new();
        for p in &protos {
            let Some(c) = cells
                .iter()
                .filter(|c| c.link.label == link && &c.protocol == p)
                .filter(|c| c.timelines.contains_key(tl))
                .min_by_key(|c| c.repetition)
            else {
                continue;
            };
            let pts = c.timelines.get(tl).cloned().unwrap_or_default();
            let pts = if paced { pts } else { thin(&pts, 600) };
            series.push(Series::protocol(p, pts));
            if let Some(e) = data::migration_event(c) {
                events.push(e);
            }
        }
        if series.is_empty() {
            continue;
        }
        let mut ts: Vec<f64> = events.iter().filter(|e| e.2).map(|e| e.0).collect();
        ts.sort_by(f64::total_cmp);
        let kind = events
            .first()
            .map(|e| e.1.clone())
            .unwrap_or_else(|| v.clone());
        let vlines = match ts.get(ts.len() / 2) {
            Some(t) => vec![(*t, format!("{kind} event ≈ {} ms", num_short(t.round())))],
            None => Vec::new(),
        };
        let (title, y) = if paced {
            (
                format!("Migration ({v}): request latency around the event"),
                "latency from the scheduled send [ms]",
            )
        } else {
            (
                format!("Migration ({v}): bytes delivered around the event"),
                "bytes received (cumulative) [B]",
            )
        };
        let note = format!(
                "link: {} · first repetition per protocol ({} cells in all) · event time: median over protocols",
                link_spec(info),
                cells.iter().filter(|c| c.link.label == link).count()
            );
        let svg = charts::lines_svg(
            Frame {
                title: &title,
                note: &note,
            },
            &LineChart {
                x_desc: if paced {
                    "scheduled send time since the start [ms]".into()
                } else {
                    "time since the start of the transfer [ms]".into()
                },
                y_desc: y.into(),
                series,
                vlines,
                ..Default::default()
            },
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("migration-{v}-{link}"),
            &title,
            !paced,
            &svg,
        )?);
    }
    Ok(figs)
}

/// At most `max` points, evenly picked (keeps the first and last).
fn thin(pts: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if pts.len() <= max {
        return pts.to_vec();
    }
    let step = pts.len() as f64 / max as f64;
    let mut v: Vec<(f64, f64)> = (0..max).map(|i| pts[(i as f64 * step) as usize]).collect();
    if let Some(l) = pts.last() {
        v.push(*l);
    }
    v
}

/// Survival and disruption per variant × protocol × link.
pub fn migration_table(runs: &[RunData], html: &mut String) {
    let mut rows = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        for v in run.variants("migration") {
            let all: Vec<&CellResult> = run
                .cells
                .iter()
                .filter(|c| c.workload == "migration" && c.variant == v)
                .collect();
            let labels: BTreeSet<String> = all.iter().map(|c| c.link.label.clone()).collect();
            for link in run.link_order(labels.iter()) {
                let protos = sort_protocols(
                    all.iter()
                        .filter(|c| c.link.label == link)
                        .map(|c| c.protocol.clone())
                        .collect(),
                );
                for p in protos {
                    let cs: Vec<&&CellResult> = all
                        .iter()
                        .filter(|c| c.link.label == link && c.protocol == p)
                        .collect();
                    let ok: Vec<&CellResult> = cs
                        .iter()
                        .filter(|c| c.status.is_ok())
                        .map(|c| **c)
                        .collect();
                    let count = |m: &str| {
                        let s = pooled(ok.iter().copied(), m);
                        format!("{}/{}", s.iter().filter(|v| **v >= 0.5).count(), s.len())
                    };
                    let stat = |m: &str| {
                        let s = pooled(ok.iter().copied(), m);
                        match stats_median_ci(&s) {
                            Ok(ci) => format!(
                                "{} <span class=\"ci\">[{}, {}]</span> (n={})",
                                num(ci.median),
                                num(ci.low),
                                num(ci.high),
                                ci.n
                            ),
                            Err(_) => "–".into(),
                        }
                    };
                    // Medians of several metrics, " / "-separated ("–" where absent).
                    let parts = |ms: &[&str]| {
                        let v: Vec<String> = ms
                            .iter()
                            .map(|m| {
                                stats_median_ci(&pooled(ok.iter().copied(), m))
                                    .map(|ci| num(ci.median))
                                    .unwrap_or_else(|_| "–".into())
                            })
                            .collect();
                        v.join(" / ")
                    };
                    let surv = count("survived");
                    let cls = if surv.starts_with("0/") { "fail" } else { "ok" };
                    let mut row = Vec::new();
                    if runs.len() > 1 {
                        row.push(format!("{}", ri + 1));
                    }
                    row.extend([
                        esc(&v),
                        esc(&link),
                        proto_cell(&p),
                        format!("<span class=\"{cls}\">{surv}</span>"),
                        count("new_handshake"),
                        count("completed"),
                        stat("disruption_ms"),
                        stat("recovery_ms"),
                        parts(&["detect_ms", "reconnect_ms", "resume_ms"]),
                        parts(&["queue_at_event_packets", "queue_at_event_ms"]),
                        format!(
                            "{}{}",
                            cs.len(),
                            match cs.len() - ok.len() {
                                0 => String::new(),
                                f => format!(" <span class=\"fail\">({f} failed)</span>"),
                            }
                        ),
                    ]);
                    rows.push(row);
                }
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let mut head = vec![];
    if runs.len() > 1 {
        head.push("run");
    }
    head.extend([
        "variant",
        "link",
        "protocol",
        "survived (same connection)",
        "new handshake",
        "completed",
        "disruption [ms] median [95% CI]",
        "recovery [ms] median [95% CI]",
        "TCP: detect / reconnect / resume [ms]",
        "queue at the event [packets / ms]",
        "cells",
    ]);
    table(&head, &rows, html);
}

// ---------------------------------------------------------------- goodput

/// The steady-state goodput where the run has it (older runs: the object's).
fn goodput_metric(run: &RunData) -> &'static str {
    if run
        .rows
        .iter()
        .any(|r| r.workload == "goodput" && r.metric == "steady_goodput_mbps")
    {
        "steady_goodput_mbps"
    } else {
        "goodput_mbps"
    }
}

/// Goodput against loss, one line per protocol with its CI band, one chart
/// per RTT and rate.
pub fn goodput_charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let links = run.links();
    let rows: Vec<&SummaryRow> = run
        .rows
        .iter()
        .filter(|r| r.workload == "goodput" && r.metric == goodput_metric(run))
        .collect();
    let mut groups: BTreeMap<(u64, u64), Vec<&SummaryRow>> = BTreeMap::new();
    for r in &rows {
        let Some(l) = links.get(&r.link) else {
            continue;
        };
        groups
            .entry(((l.rtt_ms * 1000.0) as u64, l.rate_bps.unwrap_or(0)))
            .or_default()
            .push(r);
    }
    let mut figs = Vec::new();
    for ((rtt_us, rate), rs) in groups {
        let protos = sort_protocols(rs.iter().map(|r| r.protocol.clone()).collect());
        let loss_of = |r: &SummaryRow| links.get(&r.link).map(|l| l.loss * 100.0).unwrap_or(0.0);
        let mut series = Vec::new();
        let mut ns = Vec::new();
        for p in &protos {
            let mut pts: Vec<(f64, &SummaryRow)> = rs
                .iter()
                .filter(|r| &r.protocol == p)
                .map(|r| (loss_of(r), *r))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            ns.extend(pts.iter().map(|(_, r)| r.n));
            series.push(Series {
                points: pts.iter().map(|(x, r)| (*x, r.median)).collect(),
                // No interval (n too small): the band closes on the median.
                band: pts
                    .iter()
                    .map(|(x, r)| {
                        (
                            *x,
                            r.ci_low.unwrap_or(r.median),
                            r.ci_high.unwrap_or(r.median),
                        )
                    })
                    .collect(),
                markers: true,
                ..Series::protocol(p, Vec::new())
            });
        }
        let losses: BTreeSet<u64> = rs.iter().map(|r| (loss_of(r) * 1e4) as u64).collect();
        let ticks: Vec<(f64, String)> = losses
            .iter()
            .map(|l| (*l as f64 / 1e4, format!("{}%", num_short(*l as f64 / 1e4))))
            .collect();
        let rate_s = if rate > 0 {
            format!(", {} Mbit/s", num_short(rate as f64 / 1e6))
        } else {
            ", no rate limit".into()
        };
        let title = format!(
            "Goodput vs loss, {} ms RTT{rate_s}",
            num_short(rtt_us as f64 / 1000.0)
        );
        let infos: Vec<&LinkInfo> = rs
            .iter()
            .map(|r| r.link.clone())
            .collect::<BTreeSet<_>>()
            .iter()
            .filter_map(|l| links.get(l))
            .collect();
        let note = format!(
            "{} · {} (transfers)",
            specs_note(&infos),
            n_range(ns.into_iter())
        );
        let svg = charts::lines_svg(
            Frame {
                title: &title,
                note: &note,
            },
            &LineChart {
                x_desc: "loss per direction [%]".into(),
                y_desc: "goodput [Mbit/s] (median, 95% CI)".into(),
                series,
                x_ticks: Some(ticks),
                ..Default::default()
            },
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("goodput-rtt{rtt_us}-rate{rate}"),
            &title,
            true,
            &svg,
        )?);
    }
    Ok(figs)
}

// ---------------------------------------------------------------- UDP

/// What the link did to raw UDP: RTT distribution per link (nominal RTT
/// marked) and measured loss against nominal.
pub fn udp_charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let links = run.links();
    let cells: Vec<&CellResult> = run.ok_cells().filter(|c| c.workload == "udp").collect();
    let labels: BTreeSet<String> = cells.iter().map(|c| c.link.label.clone()).collect();
    let order = run.link_order(labels.iter());
    let mut figs = Vec::new();
    for link in &order {
        let Some(info) = links.get(link) else {
            continue;
        };
        let mut s = pooled_or_hist(
            cells.iter().copied().filter(|c| &c.link.label == link),
            "rtt_ms",
        );
        if s.is_empty() {
            continue;
        }
        s.sort_by(f64::total_cmp);
        let lo = s[0];
        let hi = quantile_sorted(&s, 0.999).unwrap_or(s[s.len() - 1]);
        let nb = 50usize;
        let w = ((hi - lo) / nb as f64).max(1e-3);
        let mut bins: Vec<(f64, f64, u64)> = (0..nb)
            .map(|i| (lo + i as f64 * w, lo + (i + 1) as f64 * w, 0))
            .collect();
        let mut beyond = 0u64;
        for v in &s {
            let i = ((v - lo) / w) as usize;
            match bins.get_mut(i) {
                Some(b) => b.2 += 1,
                None => beyond += 1,
            }
        }
        let title = format!("UDP round-trip time distribution, {}", link_words(info));
        let note = format!(
            "link: {} · n = {} echoed packets{}",
            link_spec(info),
            s.len(),
            if beyond > 0 {
                format!(" ({beyond} above {} ms not drawn)", num(hi))
            } else {
                String::new()
            }
        );
        let svg = charts::histogram_svg(
            Frame {
                title: &title,
                note: &note,
            },
            "round-trip time [ms]",
            protocol_color("udp"),
            "udp echo",
            &bins,
            &[(info.rtt_ms, "nominal RTT".into())],
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("udp-rtt-{link}"),
            &title,
            true,
            &svg,
        )?);
    }
    // Measured loss against nominal, all links in one chart.
    let mut groups = Vec::new();
    let mut ns = Vec::new();
    for link in &order {
        let Some(r) = run
            .row("udp", "udp", "echo", link, "loss_rate")
            .or_else(|| {
                run.rows
                    .iter()
                    .find(|r| r.workload == "udp" && &r.link == link && r.metric == "loss_rate")
            })
        else {
            continue;
        };
        let nominal = links.get(link).map(|l| {
            // Round trip: lost on the way out or back.
            1.0 - (1.0 - l.loss) * (1.0 - l.loss)
        });
        ns.push(r.n);
        groups.push(Group {
            label: link.clone(),
            bars: vec![Bar {
                protocol: r.protocol.clone(),
                value: r.median * 100.0,
                ci: r.ci_low.zip(r.ci_high).map(|(l, h)| (l * 100.0, h * 100.0)),
                ci_exact: r.ci_method == "order-statistic",
                theory: nominal.map(|v| v * 100.0),
            }],
        });
    }
    if !groups.is_empty() {
        let title = "UDP round-trip loss: measured vs nominal".to_string();
        let note = format!(
            "theory mark: 1 − (1 − loss)² of each link's nominal loss · {} (probe runs) per bar",
            n_range(ns.into_iter())
                .trim_start_matches("n = ")
                .replace(" per protocol", "")
        );
        let svg = charts::grouped_bars_svg(
            Frame {
                title: &title,
                note: &note,
            },
            "link",
            "round-trip loss [%] (median, 95% CI)",
            &["udp".to_string()],
            &groups,
        )?;
        figs.push(write_fig(out, ri, "udp-loss", &title, true, &svg)?);
    }
    Ok(figs)
}

/// The UDP baseline as a table: per link, what the probe saw.
pub fn udp_table(runs: &[RunData], html: &mut String) {
    let mut rows = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        let links = run.links();
        let labels: BTreeSet<String> = run
            .rows
            .iter()
            .filter(|r| r.workload == "udp")
            .map(|r| r.link.clone())
            .collect();
        for link in run.link_order(labels.iter()) {
            let g = |m: &str| {
                run.rows
                    .iter()
                    .find(|r| r.workload == "udp" && r.link == link && r.metric == m)
                    .map(median_ci)
                    .unwrap_or_else(|| "–".into())
            };
            let info = links.get(&link);
            let mut row = Vec::new();
            if runs.len() > 1 {
                row.push(format!("{}", ri + 1));
            }
            row.extend([
                esc(&link),
                esc(&info.map(link_spec).unwrap_or_default()),
                g("rtt_ms"),
                g("jitter_ms"),
                g("owd_up_p50_ms"),
                g("owd_down_p50_ms"),
                g("loss_rate"),
                g("reordered"),
                g("duplicates"),
            ]);
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return;
    }
    let mut head = vec![];
    if runs.len() > 1 {
        head.push("run");
    }
    head.extend([
        "link",
        "spec",
        "RTT [ms]",
        "jitter [ms]",
        "one-way up p50 [ms]",
        "one-way down p50 [ms]",
        "loss (fraction)",
        "reordered [packets]",
        "duplicates [packets]",
    ]);
    table(&head, &rows, html);
}

// ---------------------------------------------------------------- generic

/// Any workload: one bar chart per (variant, metric), groups = links, bars =
/// protocols, medians with 95% CIs.
pub fn generic_charts(
    run: &RunData,
    ri: usize,
    out: &Path,
    workload: &str,
) -> anyhow::Result<Vec<Fig>> {
    let links = run.links();
    let mut figs = Vec::new();
    for v in run.variants(workload) {
        let mut metrics: Vec<String> = run
            .rows
            .iter()
            .filter(|r| r.workload == workload && r.variant == v)
            .map(|r| r.metric.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        metrics.sort_by_key(|m| crate::metric_rank(workload, m));
        for (mi, m) in metrics.iter().enumerate() {
            let sel: Vec<&SummaryRow> = run
                .rows
                .iter()
                .filter(|r| r.workload == workload && r.variant == v && &r.metric == m)
                .collect();
            if sel.iter().all(|r| r.min == 0.0 && r.max == 0.0) {
                continue;
            }
            let unit = sel.first().map(|r| r.unit.clone()).unwrap_or_default();
            let fraction = unit == "bool";
            let protocols = sort_protocols(sel.iter().map(|r| r.protocol.clone()).collect());
            let order = run.link_order(sel.iter().map(|r| &r.link));
            let groups: Vec<Group> = order
                .iter()
                .map(|l| Group {
                    label: l.clone(),
                    bars: protocols
                        .iter()
                        .filter_map(|p| {
                            let r = sel.iter().find(|r| &r.protocol == p && &r.link == l)?;
                            Some(Bar {
                                protocol: p.clone(),
                                value: if fraction { r.mean } else { r.median },
                                ci: r.ci_low.zip(r.ci_high).filter(|_| !fraction),
                                ci_exact: r.ci_method == "order-statistic",
                                theory: None,
                            })
                        })
                        .collect(),
                })
                .collect();
            let title = format!("{workload} / {v}: {m}");
            let y = if fraction {
                format!("{m}: fraction of runs")
            } else {
                format!("{m} [{unit}] (median, 95% CI)")
            };
            let infos: Vec<&LinkInfo> = order.iter().filter_map(|l| links.get(l)).collect();
            let note = format!(
                "{} · {}",
                specs_note(&infos),
                n_range(sel.iter().map(|r| r.n))
            );
            let svg = charts::grouped_bars_svg(
                Frame {
                    title: &title,
                    note: &note,
                },
                "link",
                &y,
                &protocols,
                &groups,
            )?;
            figs.push(write_fig(
                out,
                ri,
                &format!("{workload}-{v}-{m}"),
                &title,
                mi < 3,
                &svg,
            )?);
        }
    }
    Ok(figs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflation_ratio_significance() {
        let base: Vec<f64> = (0..200).map(|i| 20.0 + (i % 10) as f64 * 0.1).collect();
        // A: every 10th request +60 ms under loss; B: unaffected.
        let a_lossy: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 10 == 0 { v + 60.0 } else { *v })
            .collect();
        let (r, sig, (lo, hi)) = inflation_ratio(&a_lossy, &base, &base, &base, 1).unwrap();
        assert!(r > 3.0 && sig && lo > 1.0, "{r} {lo} {hi}");
        // Same distributions: not significant.
        let (r, sig, _) = inflation_ratio(&base, &base, &base, &base, 1).unwrap();
        assert!((r - 1.0).abs() < 1e-9 && !sig);
        assert!(inflation_ratio(&[], &base, &base, &base, 1).is_none());
    }

    #[test]
    fn cdf_and_thinning() {
        let s: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let c = cdf_points(&s);
        assert!(c.len() <= 402 && c.last() == Some(&(999.0, 1.0)));
        assert_eq!(thin(&c, 10).len(), 11);
    }
}
