//! The pages of the site and the orchestration: load the runs, draw every
//! chart, write the pages, copy the raw data.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use quicbench_results::store;

use crate::data::{link_spec, link_words, load_run, sort_protocols, RunData};
use crate::html::{self, esc, median_ci, num, num_short, proto_cell, table, Fig, Page};
use crate::palette::{self, hex};
use crate::workloads as wl;

/// How the site is built.
#[derive(Debug, Clone)]
pub struct Options {
    /// Copy every cell file into data/r<i>/cells/ (failed cells link to
    /// theirs). Off: only the run-level files are copied.
    pub copy_cells: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { copy_cells: true }
    }
}

/// Docs of the project, linked from the methodology page.
const DOCS: &str = "https://github.com/quicbench/quicbench/blob/main/docs";

/// Builds the site; see [`crate::build_site`].
pub fn build_site_with(runs: &[PathBuf], out: &Path, opts: &Options) -> anyhow::Result<PathBuf> {
    if runs.is_empty() {
        anyhow::bail!("report: no run directory given");
    }
    let loaded: Vec<RunData> = runs
        .iter()
        .map(|r| load_run(r))
        .collect::<anyhow::Result<_>>()?;
    let charts_dir = out.join("charts");
    // Charts of an earlier build would linger: start the charts afresh.
    if charts_dir.exists() {
        fs::remove_dir_all(&charts_dir)
            .with_context(|| format!("removing old charts in {}", charts_dir.display()))?;
    }
    fs::create_dir_all(&charts_dir)
        .with_context(|| format!("creating {}", charts_dir.display()))?;
    let data_links = copy_data(&loaded, out, opts)?;

    let labels: Vec<String> = loaded
        .iter()
        .enumerate()
        .map(|(i, r)| format!("Run {}: {}", i + 1, r.label()))
        .collect();
    let mut workloads: Vec<String> = Vec::new();
    for r in &loaded {
        for w in r.workloads() {
            if !workloads.contains(&w) {
                workloads.push(w);
            }
        }
    }
    workloads.sort_by_key(|w| (crate::workload_rank(w), w.clone()));

    let mut pages: Vec<Page> = Vec::new();
    pages.push(index_page(
        &loaded,
        &labels,
        &workloads,
        &data_links,
        opts.copy_cells,
    ));
    for w in &workloads {
        pages.push(workload_page(&loaded, &labels, w, out)?);
    }
    if let Some(p) = crate::implementations::page(&loaded, &labels, out, opts.copy_cells)? {
        pages.push(p);
    }
    pages.push(methodology_page(&loaded, &labels));

    let nav: Vec<(String, String)> = pages
        .iter()
        .map(|p| (p.file.clone(), p.nav_title.clone()))
        .collect();
    let footer = format!(
        "Made by quicbench {} from {} · raw data: {}",
        esc(env!("CARGO_PKG_VERSION")),
        labels.iter().map(|l| esc(l)).collect::<Vec<_>>().join("; "),
        data_links.join(" · ")
    );
    for p in &pages {
        let path = out.join(&p.file);
        store::write_atomic(&path, html::render(p, &nav, &footer).as_bytes())
            .with_context(|| format!("writing page {}", path.display()))?;
    }
    Ok(out.join("index.html"))
}

/// Copies each run's files under data/r<i>/; returns the HTML links.
fn copy_data(runs: &[RunData], out: &Path, opts: &Options) -> anyhow::Result<Vec<String>> {
    let mut links = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let data = out.join("data").join(format!("r{i}"));
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let mut mine = Vec::new();
        for f in [
            store::META_FILE,
            store::SUMMARY_CSV,
            store::SUMMARY_JSON,
            "comparisons.csv",
            "sources.json",
        ] {
            let src = run.dir.join(f);
            if src.is_file() {
                let dst = data.join(f);
                fs::copy(&src, &dst)
                    .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
                mine.push(format!("<a href=\"data/r{i}/{f}\">{f}</a>"));
            }
        }
        if opts.copy_cells {
            let cells = data.join("cells");
            fs::create_dir_all(&cells).with_context(|| format!("creating {}", cells.display()))?;
            // Every pair's cells: the implementations page links to them too.
            for c in &run.impl_cells {
                let src = run.dir.join("cells").join(format!("{}.json", c.cell_id));
                let dst = cells.join(format!("{}.json", c.cell_id));
                fs::copy(&src, &dst)
                    .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
            }
            if let Some(c) = run.impl_cells.first() {
                mine.push(format!(
                    "<a href=\"data/r{i}/cells/{}.json\">cells/</a> ({} files)",
                    esc(&c.cell_id),
                    run.impl_cells.len()
                ));
            }
        }
        let prefix = if runs.len() > 1 {
            format!("run {}: ", i + 1)
        } else {
            String::new()
        };
        links.push(format!("{prefix}{}", mine.join(", ")));
    }
    Ok(links)
}

fn cell_link(i: usize, id: &str, copied: bool) -> String {
    if copied {
        format!(
            "<a href=\"data/r{i}/cells/{0}.json\"><code>{0}</code></a>",
            esc(id)
        )
    } else {
        format!("<code>{}</code>", esc(id))
    }
}

// ------------------------------------------------------------------ index

fn index_page(
    runs: &[RunData],
    labels: &[String],
    workloads: &[String],
    data_links: &[String],
    copied: bool,
) -> Page {
    let mut h = String::new();
    let main = &runs[0];
    let _ = writeln!(h, "<h1>quicbench results: {}</h1>", esc(&main.meta.name));
    let _ = writeln!(
        h,
        "<p>What HTTP/3 over QUIC buys over HTTP/1.0, HTTP/1.1 (keep-alive, pipelined), HTTP/2 and raw UDP on emulated links. The cell (one repetition) is the unit: medians of cells with intervals over cells, each with its method and confidence; two protocols are <em>distinguishable</em> only when the corrected p-value is below 0.05 and the interval of the ratio of medians excludes 1. How it was measured: <a href=\"methodology.html\">methodology</a>.</p>"
    );
    h.push_str("<p>Protocol colours (the same in every chart): ");
    for (p, c) in palette::PROTOCOLS {
        let _ = write!(
            h,
            "<span class=\"sw\" style=\"background:{}\"></span>{} &nbsp; ",
            hex(c),
            esc(p)
        );
    }
    h.push_str("</p>\n");
    h.push_str("<table><thead><tr><th></th><th>run</th><th>host</th><th>link emulation</th><th>cells</th><th>raw data</th></tr></thead><tbody>\n");
    for (i, r) in runs.iter().enumerate() {
        let failed = r.cells.iter().filter(|c| !c.status.is_ok()).count();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}<br><small>{} → {}</small></td><td>{}<br><small>{}, {} cores, kernel {}</small></td><td>{}</td><td>{} of {} planned{}{}{}</td><td>{}</td></tr>",
            i + 1,
            esc(&r.meta.name),
            esc(&r.meta.started),
            esc(r.meta.finished.as_deref().unwrap_or("(unfinished)")),
            esc(&r.meta.host.hostname),
            esc(&r.meta.host.cpu_model),
            r.meta.host.cores,
            esc(&r.meta.host.kernel),
            esc(&r.meta.backend),
            r.impl_cells.len(),
            r.meta.cell_ids.len(),
            if failed > 0 {
                format!(", <span class=\"fail\">{failed} not ok</span>")
            } else {
                String::new()
            },
            other_pairs_note(r),
            if r.invalid.is_empty() {
                String::new()
            } else {
                format!(", <span class=\"fail\">{} unreadable</span>", r.invalid.len())
            },
            data_links.get(i).cloned().unwrap_or_default()
        );
    }
    h.push_str("</tbody></table>\n");

    h.push_str("<h2 id=\"findings\">Headline findings</h2>\n");
    for (i, r) in runs.iter().enumerate() {
        if runs.len() > 1 {
            let _ = writeln!(h, "<h3>{}</h3>", esc(&labels[i]));
        }
        findings(r, &mut h);
    }
    if runs.len() > 1 {
        compare_runs(runs, &mut h);
    }

    h.push_str("<h2 id=\"pages\">Pages</h2><ul>\n");
    for w in workloads {
        let _ = writeln!(
            h,
            "<li><a href=\"{}.html\">{}</a></li>",
            esc(&html::slug(w)),
            esc(&crate::workload_title(w))
        );
    }
    if runs.iter().any(RunData::has_other_endpoints) {
        let _ = writeln!(
            h,
            "<li><a href=\"{}\">Implementations: server × client pairs, protocol or implementation</a></li>",
            crate::implementations::FILE
        );
    }
    h.push_str("<li><a href=\"methodology.html\">Methodology: metrics, statistics, link model, calibration, versions, host</a></li></ul>\n");

    h.push_str("<h2 id=\"matrix\">Matrix overview</h2>\n<p>Cells per workload variant × protocol × link: the number that finished ok; <span class=\"fail\">✗n</span>: n failed or skipped; –: not in the plan.</p>\n");
    if runs.iter().any(RunData::has_other_endpoints) {
        let _ = writeln!(
            h,
            "<p>Here and on every workload page: cells with our own server and client only. Other server × client pairs: <a href=\"{}\">implementations</a>.</p>",
            crate::implementations::FILE
        );
    }
    for (i, r) in runs.iter().enumerate() {
        if runs.len() > 1 {
            let _ = writeln!(h, "<h3>{}</h3>", esc(&labels[i]));
        }
        matrix_overview(r, i, copied, &mut h);
    }
    Page {
        file: "index.html".into(),
        nav_title: "Overview".into(),
        title: format!("quicbench: {}", main.meta.name),
        body: h,
    }
}

/// The run table's word on cells of other implementation pairs: counted
/// there, shown only on the implementations page.
fn other_pairs_note(r: &RunData) -> String {
    let other = r.impl_cells.len() - r.cells.len();
    if other == 0 {
        return String::new();
    }
    let not_ok = r.impl_cells.iter().filter(|c| !c.status.is_ok()).count()
        - r.cells.iter().filter(|c| !c.status.is_ok()).count();
    format!(
        "<br><small>{other} with other implementations ({not_ok} not ok or not applicable): <a href=\"{}\">implementations</a></small>",
        crate::implementations::FILE
    )
}

fn finding(h: &mut String, title: &str, body: &str) {
    let _ = writeln!(
        h,
        "<div class=\"finding\"><strong>{}</strong> {body}</div>",
        esc(title)
    );
}

/// Short headline findings computed from the summary rows.
fn findings(r: &RunData, h: &mut String) {
    let links = r.links();
    let order = r.link_order(links.keys());
    let mut any = false;
    // Handshake: on the first lossless link with handshakes.
    if let Some(l) = order.iter().find(|l| {
        links.get(*l).is_some_and(|i| i.loss == 0.0)
            && r.rows
                .iter()
                .any(|x| x.workload == "handshake" && &x.link == *l && x.metric == "ttfb_rtt")
    }) {
        let protos = sort_protocols(
            r.rows
                .iter()
                .filter(|x| x.workload == "handshake" && &x.link == l)
                .map(|x| x.protocol.clone())
                .collect(),
        );
        let parts: Vec<String> = protos
            .iter()
            .filter_map(|p| {
                let c = r.row(p, "handshake", "cold", l, "ttfb_rtt")?;
                // Then every other mode measured (resumed; TCP's Fast Open ones).
                let others: String = ["resumed", "resumed-tfo", "resumed-tfo-0rtt"]
                    .iter()
                    .filter_map(|m| {
                        let x = r.row(p, "handshake", m, l, "ttfb_rtt")?;
                        Some(format!(
                            " / {} {m}",
                            num_short((x.median * 100.0).round() / 100.0)
                        ))
                    })
                    .collect();
                Some(format!(
                    "{} {} cold{others}",
                    proto_cell(p),
                    num_short((c.median * 100.0).round() / 100.0),
                ))
            })
            .collect();
        if !parts.is_empty() {
            any = true;
            finding(
                h,
                &format!(
                    "Handshake, time to first byte in RTTs ({}):",
                    link_words(&links[l.as_str()])
                ),
                &format!("{}. <a href=\"handshake.html\">more</a>", parts.join(" · ")),
            );
        }
    }
    // HOL: the lossiest link with derived inflation rows.
    let hol: Vec<&quicbench_results::SummaryRow> = r
        .rows
        .iter()
        .filter(|x| x.workload == "hol" && x.metric == "hol_inflation_p99")
        .collect();
    if let Some(worst) = order
        .iter()
        .rev()
        .find(|l| hol.iter().any(|x| &&x.link == l))
    {
        let mut sel: Vec<&&quicbench_results::SummaryRow> =
            hol.iter().filter(|x| &x.link == worst).collect();
        sel.sort_by_key(|x| palette::protocol_rank(&x.protocol));
        let parts: Vec<String> = sel
            .iter()
            .map(|x| format!("{} ×{}", proto_cell(&x.protocol), num(x.median)))
            .collect();
        any = true;
        finding(
            h,
            &format!(
                "Head-of-line blocking, p99 latency inflation vs the lossless link ({}):",
                links
                    .get(worst.as_str())
                    .map(link_words)
                    .unwrap_or_default()
            ),
            &format!("{}. <a href=\"hol.html\">more</a>", parts.join(" · ")),
        );
    }
    // Migration: survival per variant and protocol.
    let mig: Vec<&quicbench_results::CellResult> = r
        .ok_cells()
        .filter(|c| c.workload == "migration" && !c.variant.ends_with("-paced"))
        .collect();
    if !mig.is_empty() {
        let mut by: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for c in &mig {
            let e = by
                .entry((c.variant.clone(), c.protocol.clone()))
                .or_default();
            if let Some(m) = c.metrics.get("survived") {
                e.0 += m.samples.iter().filter(|v| **v >= 0.5).count() as u64;
                e.1 += m.samples.len() as u64;
            }
        }
        let mut parts = Vec::new();
        for v in by.keys().map(|k| k.0.clone()).collect::<BTreeSet<_>>() {
            let mut ps: Vec<(&String, &(u64, u64))> = by
                .iter()
                .filter(|(k, _)| k.0 == v)
                .map(|(k, x)| (&k.1, x))
                .collect();
            ps.sort_by_key(|(p, _)| palette::protocol_rank(p));
            let survivors: Vec<String> = ps
                .iter()
                .filter(|(_, (s, n))| *n > 0 && s == n)
                .map(|(p, _)| proto_cell(p))
                .collect();
            parts.push(format!(
                "<em>{}</em>: {} of {} protocols kept their connection every time{}",
                esc(&v),
                survivors.len(),
                ps.len(),
                if survivors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", survivors.join(", "))
                }
            ));
        }
        any = true;
        finding(
            h,
            "Connection migration:",
            &format!("{}. <a href=\"migration.html\">more</a>", parts.join("; ")),
        );
    }
    // Goodput: on the lossiest link.
    let gp: Vec<&quicbench_results::SummaryRow> = r
        .rows
        .iter()
        .filter(|x| x.workload == "goodput" && x.metric == "goodput_mbps")
        .collect();
    if let Some(l) = order
        .iter()
        .rev()
        .find(|l| gp.iter().any(|x| &&x.link == l))
    {
        let mut sel: Vec<&&quicbench_results::SummaryRow> =
            gp.iter().filter(|x| &x.link == l).collect();
        sel.sort_by_key(|x| palette::protocol_rank(&x.protocol));
        let parts: Vec<String> = sel
            .iter()
            .map(|x| format!("{} {}", proto_cell(&x.protocol), num(x.median)))
            .collect();
        any = true;
        finding(
            h,
            &format!(
                "Goodput in Mbit/s ({}):",
                links.get(l.as_str()).map(link_words).unwrap_or_default()
            ),
            &format!("{}. <a href=\"goodput.html\">more</a>", parts.join(" · ")),
        );
    }
    if let Some((title, body)) = crate::fairness::finding(r) {
        any = true;
        finding(h, &title, &body);
    }
    let udp: Vec<String> = order
        .iter()
        .filter_map(|l| {
            let x = r
                .rows
                .iter()
                .find(|x| x.workload == "udp" && &x.link == l && x.metric == "loss_rate")?;
            let rtt = r
                .rows
                .iter()
                .find(|x| x.workload == "udp" && &x.link == l && x.metric == "rtt_ms");
            Some(format!(
                "{}: loss {}%{}",
                esc(l),
                num_short((x.median * 10000.0).round() / 100.0),
                rtt.map(|y| format!(", RTT {} ms", num(y.median)))
                    .unwrap_or_default()
            ))
        })
        .collect();
    if !udp.is_empty() {
        any = true;
        finding(
            h,
            "The links as raw UDP saw them:",
            &format!("{}. <a href=\"udp.html\">more</a>", udp.join(" · ")),
        );
    }
    let failed = r.cells.iter().filter(|c| !c.status.is_ok()).count();
    if failed > 0 {
        finding(
            h,
            "Failed cells:",
            &format!(
                "<span class=\"fail\">{failed} cell(s) did not finish ok</span>: see <a href=\"#failed\">the list</a>."
            ),
        );
    }
    if !any {
        h.push_str("<p>No headline metric in this run.</p>\n");
    }
}

/// Rows present in two runs side by side, for the headline metrics.
fn compare_runs(runs: &[RunData], h: &mut String) {
    const METRICS: [&str; 5] = [
        "ttfb_rtt",
        "latency_ms",
        "disruption_ms",
        "goodput_mbps",
        "rtt_ms",
    ];
    let mut rows = Vec::new();
    let base = &runs[0];
    for r0 in base
        .rows
        .iter()
        .filter(|r| METRICS.contains(&r.metric.as_str()))
    {
        let others: Vec<Option<&quicbench_results::SummaryRow>> = runs[1..]
            .iter()
            .map(|o| {
                o.row(
                    &r0.protocol,
                    &r0.workload,
                    &r0.variant,
                    &r0.link,
                    &r0.metric,
                )
            })
            .collect();
        if others.iter().all(|o| o.is_none()) {
            continue;
        }
        let mut row = vec![
            esc(&format!("{}/{}", r0.workload, r0.variant)),
            esc(&r0.link),
            esc(&format!("{} [{}]", r0.metric, r0.unit)),
            proto_cell(&r0.protocol),
            median_ci(r0),
        ];
        for o in others {
            row.push(match o {
                Some(o) => format!(
                    "{} — {}",
                    median_ci(o),
                    if o.ci_overlaps(r0) {
                        "not distinguishable".to_string()
                    } else if r0.median != 0.0 {
                        format!("<strong>×{}</strong>", num(o.median / r0.median))
                    } else {
                        "differs".into()
                    }
                ),
                None => "–".into(),
            });
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return;
    }
    h.push_str("<h3>Runs compared</h3>\n<p>Headline metrics present in the first run and another: medians of cells with their intervals; ×: the other run's median over the first's, shown only when both have intervals and they do not overlap (runs are not corrected for multiple comparisons: read it as a screen).</p>\n");
    let mut head = vec!["workload", "link", "metric", "protocol", "run 1"];
    let names: Vec<String> = (2..=runs.len()).map(|i| format!("run {i}")).collect();
    head.extend(names.iter().map(String::as_str));
    h.push_str("<details><summary>Comparison table</summary>\n");
    table(&head, &rows, h);
    h.push_str("</details>\n");
}

fn matrix_overview(r: &RunData, ri: usize, copied: bool, h: &mut String) {
    let links = r.link_order(r.cells.iter().map(|c| &c.link.label));
    type Key = (usize, String, String, (usize, String));
    let mut grid: BTreeMap<Key, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    for c in &r.cells {
        let e = grid
            .entry((
                crate::workload_rank(&c.workload),
                c.workload.clone(),
                c.variant.clone(),
                palette::protocol_rank(&c.protocol),
            ))
            .or_default()
            .entry(c.link.label.clone())
            .or_default();
        if c.status.is_ok() {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let mut rows = Vec::new();
    for ((_, w, v, (_, p)), per) in &grid {
        let mut row = vec![esc(&format!("{w}/{v}")), proto_cell(p)];
        for l in &links {
            row.push(match per.get(l) {
                None => "–".into(),
                Some((ok, 0)) => format!("{ok}"),
                Some((ok, f)) => format!("{ok} <span class=\"fail\">✗{f}</span>"),
            });
        }
        rows.push(row);
    }
    let mut head = vec!["workload/variant", "protocol"];
    head.extend(links.iter().map(String::as_str));
    table(&head, &rows, h);
    let failed: Vec<&quicbench_results::CellResult> =
        r.cells.iter().filter(|c| !c.status.is_ok()).collect();
    if !failed.is_empty() || !r.invalid.is_empty() {
        let _ = writeln!(
            h,
            "<h3 id=\"failed\">Failed, skipped or unreadable cells ({})</h3>",
            failed.len() + r.invalid.len()
        );
        let mut rows: Vec<Vec<String>> = failed
            .iter()
            .take(300)
            .map(|c| {
                let (kind, reason) = match &c.status {
                    quicbench_results::CellStatus::Failed { reason } => ("failed", reason),
                    quicbench_results::CellStatus::Skipped { reason } => ("skipped", reason),
                    quicbench_results::CellStatus::Ok => ("ok", &String::new()),
                };
                vec![
                    cell_link(ri, &c.cell_id, copied),
                    format!("<span class=\"fail\">{kind}</span>"),
                    esc(reason),
                ]
            })
            .collect();
        rows.extend(r.invalid.iter().map(|(p, e)| {
            vec![
                format!("<code>{}</code>", esc(&p.display().to_string())),
                "<span class=\"fail\">unreadable</span>".into(),
                esc(e),
            ]
        }));
        table(&["cell", "status", "reason"], &rows, h);
        if failed.len() > 300 {
            let _ = writeln!(h, "<p>… and {} more.</p>", failed.len() - 300);
        }
    }
}

// ------------------------------------------------------------ workloads

fn workload_page(runs: &[RunData], labels: &[String], w: &str, out: &Path) -> anyhow::Result<Page> {
    let mut h = String::new();
    let title = crate::workload_title(w);
    let _ = writeln!(h, "<h1>{}</h1>", esc(&title));
    type ChartFn = fn(&RunData, usize, &Path) -> anyhow::Result<Vec<Fig>>;
    let section = |h: &mut String, heading: &str, intro: &str, f: ChartFn| {
        let per_run: Vec<Vec<Fig>> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| f(r, i, out))
            .collect::<anyhow::Result<_>>()?;
        if per_run.iter().all(|v| v.is_empty()) {
            return Ok::<(), anyhow::Error>(());
        }
        let _ = writeln!(h, "<h2>{}</h2>\n<p>{intro}</p>", esc(heading));
        html::figures(&per_run, labels, h);
        Ok(())
    };
    match w {
        "handshake" => {
            h.push_str("<p>Sequential fresh connections, each fetching one small object. Time to first byte from the start of connecting, divided by the link's configured RTT. <em>cold</em>: full handshake; <em>resumed</em>: TLS session resumption (TCP) or QUIC 0-RTT (h3); <em>resumed-tfo</em>: TCP Fast Open with TLS resumption; <em>resumed-tfo-0rtt</em>: Fast Open with TLS 1.3 early data carrying the request, TCP's answer to QUIC 0-RTT (h1.1-tls, h2; rarely deployed, see the methodology); <em>first-flight-lost</em> / <em>server-flight-lost</em>: cold, with the link dropping the client's / the server's first packet of each connection (drop-nth 1), so the sender's retransmission timer (TCP's 1 s initial RTO, QUIC's first PTO) comes on top of the round trips. The black mark on each bar is the protocol's theoretical minimum in round trips (for the lost-flight modes: timer plus round trips, in RTTs).</p>\n");
            section(&mut h, "Time to first byte in round trips", "One chart per RTT (the lost-flight modes on a chart of their own); bars: medians over every handshake of every repetition, whiskers: 95% CIs.", wl::handshake_charts)?;
            summary_table(runs, w, &mut h);
        }
        "hol" => {
            h.push_str("<p>How much one lost packet delays requests that were not in it. <em>paced</em>: one small request every interval on one connection, per-request latency; <em>parallel</em>: many objects requested at once, per-object completion and progress.</p>\n");
            section(&mut h, "Latency CDFs per loss rate", "Distribution of per-request latency on each link (x: log scale). A protocol with head-of-line blocking grows a long tail under loss.", wl::hol_cdf_charts)?;
            section(&mut h, "HOL inflation: protocol pairs over RTT × loss", "Each cell: how much more (&gt;1, vermillion) or less (&lt;1, blue) the first protocol's p99 latency grows under loss than the second's, each relative to its own lossless twin link. Hatched, marked n.s.: not distinguishable by the run's rule (comparisons.csv: Mann-Whitney on cell values, Benjamini-Hochberg-corrected p &lt; 0.05 and the ratio's bootstrap interval excluding 1).", wl::hol_heatmaps)?;
            section(&mut h, "Parallel objects: waterfalls", "One row per object (first repetition): light bar from the request to the last byte, filled curve: the object's own bytes received over time, black tick: first byte.", wl::hol_waterfalls)?;
            h.push_str("<h2>Tables</h2>\n");
            wl::hol_inflation_table(runs, &mut h);
            summary_table(runs, w, &mut h);
        }
        "migration" => {
            h.push_str("<p>A long transfer (or a paced request stream: <em>-paced</em> variants) during which the client's address or port changes: NAT rebinding (<em>port</em>, <em>address</em>) or active QUIC migration (<em>active</em>). QUIC keeps its connection by connection ID; TCP has to start over with a new handshake and resume with a Range request.</p>\n");
            h.push_str("<h2>Survival and disruption</h2>\n<p>survived: completed on the same connection, counted only in cells whose event the link confirmed (the rebind is in its log and packets were translated after it; a cell whose event did not happen fails with the reason); TCP recovers in parts: detect (mostly the stall timeout, a parameter), reconnect (a new handshake) and resume (the Range request); the queue at the event is what a rebinding flushes at the NAT; disruption: the longest delivery gap from the event on (paced: the worst latency of a request scheduled from shortly before the event on); recovery: time until the delivery rate is back to 90% of the pre-event rate.</p>\n");
            wl::migration_table(runs, &mut h);
            section(
                &mut h,
                "Around the event",
                "One line per protocol (first repetition), the event dashed.",
                wl::migration_charts,
            )?;
            section(
                &mut h,
                "The sender's congestion window around the event",
                "The server's own view of its window (TCP_INFO, quinn's statistics), sampled every 10 ms or coarser on long transfers; the line of a TCP transfer ends where its connection broke and a new line starts with the new connection.",
                crate::transport::migration_cwnd_charts,
            )?;
            crate::transport::sender_table(runs, w, &mut h);
            summary_table(runs, w, &mut h);
        }
        "goodput" => {
            h.push_str("<p>One object on an established connection: payload bits over the transfer time.</p>\n");
            section(
                &mut h,
                "Goodput vs loss",
                "One chart per RTT and rate; lines: medians, bands and bars: 95% CIs.",
                wl::goodput_charts,
            )?;
            section(
                &mut h,
                "The sender's congestion window",
                "The server's own view of its window during the transfer (TCP_INFO snd_cwnd × MSS; quinn's window), sampled every 10 ms (coarser on long transfers). The legend names the controller that ran.",
                crate::transport::goodput_cwnd_charts,
            )?;
            crate::transport::sender_table(runs, w, &mut h);
            summary_table(runs, w, &mut h);
        }
        "fairness" => {
            crate::fairness::intro(&mut h, DOCS);
            section(
                &mut h,
                "Throughput per flow over time",
                "One chart per mix × link × controller: the repetition whose Jain's index is the median of its cells. Filled: each flow's throughput as its client saw it, stacked (one colour per protocol, lighter shades for more flows of the same protocol), per window averaged onto common windows from the first flow's start; dashed: the same stack as the link delivered it (framing included); black: the link's rate. Below: the queueing delay toward the client at the bottleneck.",
                crate::fairness::charts,
            )?;
            h.push_str("<h2>Shares</h2>\n<p>Medians of cells with their interval over cells (method and confidence beside each; <span class=\"warn\">*</span>: approximate, 3 to 5 cells). A group is a protocol, or protocol@controller when the mix runs several controllers. Share: the group's part of all bytes over the common span; normalised share: that part over the group's fair part (its flows / all flows), 1 = fair. Convergence: median over the cells that converged.</p>\n");
            crate::fairness::shares_table(runs, &mut h);
            summary_table(runs, w, &mut h);
        }
        "udp" => {
            h.push_str("<p>Raw UDP echo probes: the link as it is, with no transport in between. This is the ground truth the other pages are measured against.</p>\n");
            section(&mut h, "Delay and loss", "Round-trip time of every echoed probe (nominal RTT marked), and the loss the probes saw against the configured loss.", wl::udp_charts)?;
            h.push_str("<h2>Per link</h2>\n");
            wl::udp_table(runs, &mut h);
            summary_table(runs, w, &mut h);
        }
        other => {
            let _ = writeln!(
                h,
                "<p>Workload <code>{}</code>: one chart per variant and metric, links as groups, protocols as bars (medians, 95% CIs).</p>",
                esc(other)
            );
            let per_run: Vec<Vec<Fig>> = runs
                .iter()
                .enumerate()
                .map(|(i, r)| wl::generic_charts(r, i, out, other))
                .collect::<anyhow::Result<_>>()?;
            html::figures(&per_run, labels, &mut h);
            summary_table(runs, w, &mut h);
        }
    }
    Ok(Page {
        file: format!("{}.html", html::slug(w)),
        nav_title: match w {
            "handshake" => "Handshake".into(),
            "hol" => "HOL blocking".into(),
            "migration" => "Migration".into(),
            "goodput" => "Goodput".into(),
            "udp" => "UDP baseline".into(),
            "fairness" => "Fairness".into(),
            o => o.to_string(),
        },
        title: format!("quicbench: {title}"),
        body: h,
    })
}

fn summary_table(runs: &[RunData], w: &str, h: &mut String) {
    wl::summary_table(runs, w, None, h);
}

// ---------------------------------------------------------- methodology

const METRICS: [(&str, &str, &str); 62] = [
    ("ttfb_ms", "ms", "handshake: from the start of connecting to the first response byte"),
    ("ttfb_rtt", "RTT", "handshake: ttfb_ms divided by the link's configured RTT"),
    ("connect_ms", "ms", "handshake: transport ready (TCP established / QUIC handshake confirmed)"),
    ("tls_ms", "ms", "handshake: TLS handshake complete (TCP+TLS protocols)"),
    ("total_ms", "ms", "handshake: to the last byte of the small object"),
    ("resumed_share", "fraction", "handshake: share of connections whose TLS session was resumed"),
    ("zero_rtt_share", "fraction", "handshake: share of h3 connections whose 0-RTT data was accepted"),
    ("tfo_share", "fraction", "handshake (resumed-tfo*): share of connections whose SYN carried data the server acknowledged (TCP Fast Open, read back from TCP_INFO)"),
    ("early_data_share", "fraction", "handshake (resumed-tfo-0rtt): share of TCP connections whose TLS 1.3 early data the server accepted"),
    ("latency_ms", "ms", "hol/paced: per-request latency from its scheduled send to its last byte = queue_ms + service_ms (migration -paced: from the original schedule)"),
    ("queue_ms", "ms", "hol/paced: scheduled send to the moment the request could start (HTTP/1.x: waiting for its connection to be free)"),
    ("service_ms", "ms", "hol/paced: request start to its last byte"),
    ("lossless_service_ms", "ms", "hol/paced (derived): median service time on the lossless twin link"),
    ("lossless_queue_ms", "ms", "hol/paced (derived): median queueing on the lossless twin link (0 when the baseline is unsaturated)"),
    ("lossy_queue_ms", "ms", "hol/paced (derived): median queueing under loss (requests waiting behind a stalled one)"),
    ("loss_delay_p50_ms", "ms", "hol/paced (derived): median latency under loss minus the lossless median"),
    ("loss_delay_p99_ms", "ms", "hol/paced (derived): p99 latency under loss minus the lossless p99"),
    ("hol_inflation_p50", "ratio", "hol/paced (derived): (lossless median service + loss-caused delay p50) / lossless median service: the inflation loss alone causes"),
    ("hol_inflation_p99", "ratio", "hol/paced (derived): the same at p99 (lossless p99 service + loss-caused delay p99) / lossless p99 service"),
    ("hol_inflation_max", "ratio", "hol/paced (derived): the same at the maximum"),
    ("hol_delayed_share", "fraction", "hol/paced (derived): share of requests slower than the lossless median + 1 RTT"),
    ("object_ms", "ms", "hol/parallel: completion of each object from the common request time"),
    ("page_ms", "ms", "hol/parallel: completion of the last object"),
    ("survived", "bool", "migration: completed on the original connection, no new handshake; only in cells whose event the link confirmed (a cell whose event did not happen fails)"),
    ("new_handshake", "bool", "migration: the client had to connect again"),
    ("completed", "bool", "migration: every byte (every request) arrived in time"),
    ("disruption_ms", "ms", "migration: longest delivery gap from the event on (paced: worst latency around the event)"),
    ("recovery_ms", "ms", "migration: from the event until the delivery rate is back to 90% of before"),
    ("detect_ms", "ms", "migration, TCP: from the event until the client gave up on the connection (mostly the stall timeout, a parameter)"),
    ("reconnect_ms", "ms", "migration, TCP: from giving up to a new connection ready (handshake)"),
    ("resume_ms", "ms", "migration, TCP: from the new connection to the first byte of the resumed (Range) response"),
    ("queue_at_event_packets", "packets", "migration: packets queued toward the client at the event (flushed at the NAT after a rebind)"),
    ("queue_at_event_ms", "ms", "migration: the wait that standing queue adds beyond the base delay"),
    ("nat_dropped_packets", "packets", "migration: packets the NAT dropped after the event (sent to the old binding)"),
    ("completion_ms", "ms", "migration / goodput: duration of the whole transfer (goodput: of the object, slow start included)"),
    ("goodput_mbps", "Mbit/s", "goodput: payload bits / transfer time of one object on an established connection (HTTP/1.0: its own, set-up included)"),
    ("steady_goodput_mbps", "Mbit/s", "goodput: bytes over time of a long transfer after its first N RTTs (N: steady_after_rtts)"),
    ("setup_ms", "ms", "goodput, HTTP/1.0: the object's own connection set-up (TCP, TLS)"),
    ("goodput_excl_setup_mbps", "Mbit/s", "goodput, HTTP/1.0: the object's rate without its connection set-up"),
    ("rate_ratio", "fraction", "goodput: goodput / the link's rate limit"),
    ("rtt_ms", "ms", "udp: round-trip time of each echoed probe"),
    ("loss_rate", "fraction", "udp: share of probes without an echo (round trip)"),
    ("jitter_ms", "ms", "udp: RFC 3550 interarrival jitter"),
    ("reordered", "packets", "udp: probes that arrived after a later one"),
    ("failures", "count", "every workload: requests or steps that failed in a cell"),
    ("tx_retrans_bytes", "bytes", "HTTP workloads: the sender's (server's) retransmitted bytes, summed over connections (TCP_INFO bytes_retrans; QUIC: bytes in packets declared lost)"),
    ("tx_retrans_share", "fraction", "HTTP workloads: tx_retrans_bytes / bytes the sender put on the wire"),
    ("tx_congestion_events", "count", "h3: quinn's congestion events on the sender's side (TCP_INFO has no such count)"),
    ("tx_max_cwnd_bytes", "bytes", "HTTP workloads: the sender's largest congestion window seen (samples and end)"),
    ("tx_srtt_ms", "ms", "HTTP workloads: the sender's smoothed RTT at the end of its connection (largest over connections)"),
    ("jain_index", "index", "fairness: Jain's index of the flows' rates over the span every flow was downloading, (Σx)² / (n·Σx²): 1 = equal, 1/n = one flow has all (clients' view)"),
    ("link_jain_index", "index", "fairness: the same from the bytes the link delivered per flow"),
    ("flow_mbps", "Mbit/s", "fairness: each flow's rate over the common span (one sample per flow)"),
    ("total_mbps", "Mbit/s", "fairness: the flows' rates summed"),
    ("utilisation", "fraction", "fairness: total_mbps / the link's rate"),
    ("share_<group>", "fraction", "fairness: the group's part of all bytes over the common span (group: the protocol, or protocol@controller when the mix runs several)"),
    ("norm_share_<group>", "ratio", "fairness: share over the group's fair part (its flows / all flows): 1 = fair"),
    ("link_share_<group>", "fraction", "fairness: share_<group> from the bytes the link delivered"),
    ("convergence_ms", "ms", "fairness: from the common start until every flow is within ±10% of the fair share over 2 s; absent when that never happened"),
    ("converged", "fraction", "fairness: 1 when the cell converged (convergence_ms exists)"),
    ("queue_delay_p50_ms", "ms", "fairness: median queueing delay toward the client at the bottleneck over the common span"),
    ("queue_delay_p99_ms", "ms", "fairness: p99 of that queueing delay"),
];

fn methodology_page(runs: &[RunData], labels: &[String]) -> Page {
    let mut h = String::new();
    h.push_str("<h1>Methodology</h1>\n");
    let _ = writeln!(
        h,
        "<p>A <strong>cell</strong> is one protocol × one link × one workload variant × one repetition. Each cell builds its link afresh (two network namespaces joined by the emulated link), starts every server in the server namespace, runs the workload on a fresh client in the client namespace, records the link's own counters (packets delivered, dropped, delayed, reordered per direction) and writes <code>cells/&lt;id&gt;.json</code>. Every TLS endpoint is TLS 1.3 with the same certificate and library (rustls); Both transports of a cell run the congestion controller the matrix names (Cubic by default; TCP_CONGESTION on every TCP socket, quinn's controller for QUIC), read back from both ends of every connection; rows with different controllers are never compared. The full text: <a href=\"{DOCS}/methodology.md\">docs/methodology.md</a>, statistics: <a href=\"{DOCS}/statistics.md\">docs/statistics.md</a>, the link: <a href=\"{DOCS}/link-model.md\">docs/link-model.md</a>.</p>"
    );
    h.push_str("<h2 id=\"stats\">Statistics</h2>\n<ul>\
<li>The <strong>cell</strong> (one repetition) is the unit of replication: requests in a cell share a connection, a loss pattern and a moment of the machine. Each cell is reduced to its median; tables and bars show the <strong>median of the cells with an interval over cells</strong>: interpolated order statistics (95%) with 6 cells or more, a seeded cluster bootstrap (cells, then samples within cells; marked <span class=\"warn\">*</span>, whiskers grey, confidence capped at 1 − 2<sup>1−n</sup>) with 3 to 5, and <strong>no interval</strong> (\"n too small\") below 3.</li>\
<li>Two protocols are <strong>distinguishable</strong> only when a Mann-Whitney test on their cell values, corrected over the run's whole family of comparisons (Benjamini-Hochberg), gives p &lt; 0.05 and the bootstrap interval of the ratio of medians excludes 1 (<code>comparisons.csv</code>); otherwise the reason is shown. Not distinguishable does not mean equal.</li>\
<li><strong>HOL heatmaps</strong>: each cell is I<sub>A</sub> / I<sub>B</sub>, with I the median over cells of (p99 latency on the lossy link / p99 on its lossless twin of the same repetition). Hatched, marked n.s.: not distinguishable by the rule above.</li>\
<li>Fractions (unit <code>bool</code>) are shown as the share of cells, without an interval.</li>\
<li>RTT means the link's configured base RTT, not a measurement; the UDP page shows what the link really did.</li></ul>\n");
    h.push_str("<h2 id=\"metrics\">Metrics</h2>\n");
    let rows: Vec<Vec<String>> = METRICS
        .iter()
        .map(|(m, u, d)| vec![format!("<code>{m}</code>"), esc(u), esc(d)])
        .collect();
    table(&["metric", "unit", "meaning"], &rows, &mut h);

    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(h, "<h2>{}</h2>", esc(&labels[i]));
        let m = &r.meta;
        h.push_str("<h3>Link model</h3>\n");
        let _ = writeln!(
            h,
            "<p>Backend: <strong>{}</strong> ({}). Specs are netem syntax (tc-netem(8)), up = client → server.</p>",
            esc(&m.backend),
            esc(&m.backend_reason)
        );
        let links = r.links();
        let rows: Vec<Vec<String>> = r
            .link_order(links.keys())
            .iter()
            .filter_map(|l| links.get(l))
            .map(|l| {
                let (per_dir, round_trip) = loss_columns(l);
                vec![
                    esc(&l.label),
                    format!("<code>{}</code>", esc(&l.up)),
                    format!("<code>{}</code>", esc(&l.down)),
                    num_short(l.rtt_ms),
                    per_dir,
                    round_trip,
                    l.rate_bps
                        .map(|b| format!("{} Mbit/s", num_short(b as f64 / 1e6)))
                        .unwrap_or_else(|| "–".into()),
                ]
            })
            .collect();
        h.push_str(
            "<p>Each direction applies its own spec: a link given one spec has it both ways, so \
             its delay counts twice in the RTT and a packet or its answer is lost with the \
             round-trip loss 1 − (1 − up)(1 − down).</p>\n",
        );
        table(
            &[
                "label",
                "up (client → server)",
                "down (server → client)",
                "RTT [ms]",
                "loss up / down",
                "round-trip loss",
                "rate",
            ],
            &rows,
            &mut h,
        );
        calibration(r, &mut h);
        h.push_str("<h3>Versions and machine</h3>\n");
        let mut stacks: Vec<String> = m
            .crate_versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        stacks.sort();
        let mut tls: BTreeSet<String> = BTreeSet::new();
        for c in r.cells.iter().take(5000) {
            if let Some(t) = &c.tls {
                for key in ["congestion_control", "tls_version", "cipher", "alpn"] {
                    if let Some(v) = t.get(key).and_then(|v| v.as_str()) {
                        tls.insert(format!("{}: {key} {v}", c.protocol));
                    }
                }
            }
        }
        let sources = r
            .dir
            .join("sources.json")
            .is_file()
            .then(|| "merged from shards: see data/…/sources.json".to_string());
        let mut rows = vec![
            vec![
                "quicbench".into(),
                esc(&format!(
                    "{} {}",
                    m.quicbench_version,
                    m.git_commit.clone().unwrap_or_default()
                )),
            ],
            vec!["protocol stacks".into(), esc(&stacks.join(", "))],
            vec![
                "negotiated (from the cells)".into(),
                esc(&tls.into_iter().collect::<Vec<_>>().join("; ")),
            ],
            vec![
                "host".into(),
                esc(&format!(
                    "{} — {} ({} cores, {:.1} GiB), kernel {}",
                    m.host.hostname,
                    m.host.cpu_model,
                    m.host.cores,
                    m.host.memory_bytes as f64 / (1u64 << 30) as f64,
                    m.host.kernel
                )),
            ],
            vec!["started".into(), esc(&m.started)],
            vec![
                "finished".into(),
                esc(m.finished.as_deref().unwrap_or("(unfinished)")),
            ],
            vec!["seed".into(), m.seed.to_string()],
            vec![
                "cells".into(),
                format!(
                    "{} present, {} planned here, {} in the whole plan",
                    r.impl_cells.len(),
                    m.cell_ids.len(),
                    m.planned_cells
                ),
            ],
        ];
        if let Some((i, n)) = m.shard {
            rows.push(vec!["shard".into(), format!("{i} of {n}")]);
        }
        if let Some(s) = sources {
            rows.push(vec!["shards".into(), esc(&s)]);
        }
        table(&["", ""], &rows, &mut h);
        let _ = writeln!(
            h,
            "<details><summary>The matrix as run (from run.json)</summary><pre>{}</pre></details>",
            esc(&serde_json::to_string_pretty(&m.matrix).unwrap_or_default())
        );
    }
    Page {
        file: "methodology.html".into(),
        nav_title: "Methodology".into(),
        title: "quicbench: methodology".into(),
        body: h,
    }
}

/// The calibration of run.json: per link, what the probe measured and the
/// checks against the spec.
fn calibration(r: &RunData, h: &mut String) {
    h.push_str("<h3>Calibration</h3>\n");
    let Some(cal) = r.meta.calibration.as_ref().and_then(|c| c.as_object()) else {
        h.push_str("<p>This run recorded no calibration (run.json <code>calibration</code> is empty).</p>\n");
        return;
    };
    h.push_str("<p>Before any cell, each link carried 1 s of UDP echo probes; measured against its spec (targets: see docs/link.md).</p>\n");
    let mut rows = Vec::new();
    for (label, v) in cal {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            rows.push(vec![
                esc(label),
                format!("<span class=\"fail\">error: {}</span>", esc(e)),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        let p = v.get("probe");
        let us = |k: &str, q: &str| {
            p.and_then(|p| p.get(k))
                .and_then(|x| x.get(q))
                .and_then(|x| x.as_f64())
                .map(|x| num(x / 1000.0))
                .unwrap_or_else(|| "–".into())
        };
        let loss = p
            .and_then(|p| p.get("loss_rate"))
            .and_then(|x| x.as_f64())
            .map(|x| format!("{}%", num_short(x * 100.0)))
            .unwrap_or_else(|| "–".into());
        let checks: Vec<String> = v
            .get("checks")
            .and_then(|c| c.as_array())
            .map(|a| {
                a.iter()
                    .map(|c| {
                        let ok = c.get("ok").and_then(|x| x.as_bool()).unwrap_or(false);
                        format!(
                            "<span class=\"{}\">{}</span> {}: {}",
                            if ok { "ok" } else { "fail" },
                            if ok { "✓" } else { "✗" },
                            esc(c.get("name").and_then(|x| x.as_str()).unwrap_or("")),
                            esc(c.get("detail").and_then(|x| x.as_str()).unwrap_or(""))
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push(vec![
            esc(label),
            format!(
                "<code>{}</code>",
                esc(&link_spec(&quicbench_results::LinkInfo {
                    up: v.get("up").and_then(|x| x.as_str()).unwrap_or("").into(),
                    down: v.get("down").and_then(|x| x.as_str()).unwrap_or("").into(),
                    ..Default::default()
                }))
            ),
            format!(
                "{} / {} / {}",
                us("rtt", "p50_us"),
                us("rtt", "p99_us"),
                us("rtt", "max_us")
            ),
            loss,
            checks.join("<br>"),
        ]);
    }
    table(
        &["link", "spec", "RTT p50 / p99 / max [ms]", "loss", "checks"],
        &rows,
        h,
    );
}

/// "up% / down%" and the round-trip loss of a link, from its two specs
/// (the nominal `loss` field holds the up direction only).
fn loss_columns(l: &quicbench_results::LinkInfo) -> (String, String) {
    let parse = |s: &str| s.parse::<quicbench_netem::LinkSpec>().ok();
    match (parse(&l.up), parse(&l.down)) {
        (Some(up), Some(down)) => {
            let rt = quicbench_netem::RoundTrip::of(&up, &down);
            (
                format!(
                    "{}% / {}%",
                    num_short(rt.up_loss * 100.0),
                    num_short(rt.down_loss * 100.0)
                ),
                format!("{}%", num_short(rt.loss() * 100.0)),
            )
        }
        _ => (format!("{}% / ?", num_short(l.loss * 100.0)), "–".into()),
    }
}

#[cfg(test)]
mod link_table_tests {
    use super::*;

    #[test]
    fn link_table_states_each_direction_and_the_round_trip() {
        let l = |up: &str, down: &str| quicbench_results::LinkInfo {
            label: "x".into(),
            up: up.into(),
            down: down.into(),
            rtt_ms: 20.0,
            loss: 0.02,
            rate_bps: None,
        };
        assert_eq!(
            loss_columns(&l("delay 10ms loss 2%", "delay 10ms loss 2%")),
            ("2% / 2%".to_string(), "3.96%".to_string())
        );
        assert_eq!(
            loss_columns(&l("delay 10ms loss 2%", "delay 10ms")),
            ("2% / 0%".to_string(), "2%".to_string())
        );
        assert_eq!(
            loss_columns(&l("not a spec", "delay 10ms")),
            ("2% / ?".to_string(), "–".to_string())
        );
    }
}
