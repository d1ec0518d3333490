//! The transport's own view of each connection (a cell's `extra.ground_truth`,
//! from TCP_INFO and quinn's statistics, both ends): the sender's congestion
//! window over time beside the goodput and migration charts, and a table of
//! what the sender did (retransmitted bytes, congestion events) beside goodput.
//!
//! Every download's sender is the server, so the charts use the server's
//! records. Read as plain JSON: the report knows nothing of sockets.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use quicbench_results::CellResult;
use serde::Deserialize;

use crate::charts::{self, Frame, LineChart, Series};
use crate::data::{self, link_spec, sort_protocols, RunData};
use crate::html::{esc, num, num_short, proto_cell, table, Fig};
use crate::workloads::write_fig;

/// One connection's record, as far as the report needs it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub side: String,
    #[serde(default)]
    pub transport: String,
    #[serde(default)]
    pub start_ns: u64,
    /// Read back, in quicbench's names (cubic, newreno, bbr).
    #[serde(default)]
    pub controller: Option<String>,
    #[serde(default)]
    pub sockopts: Option<Sockopts>,
    #[serde(default)]
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sockopts {
    #[serde(default)]
    pub congestion: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Sample {
    pub t_ns: u64,
    pub cwnd: u64,
    #[serde(default)]
    pub retrans_bytes: u64,
}

/// The records of one side ("client" or "server") of a cell.
pub fn records(c: &CellResult, side: &str) -> Vec<Record> {
    c.extra
        .get("ground_truth")
        .and_then(|t| t.get(side))
        .and_then(|v| serde_json::from_value::<Vec<Record>>(v.clone()).ok())
        .unwrap_or_default()
}

/// The congestion controller that ran, as the server's connection read it
/// back (TCP_CONGESTION, quinn's state); else the client's; else the kernel's
/// name in the socket options.
pub fn controller(c: &CellResult) -> Option<String> {
    let recs: Vec<Record> = records(c, "server")
        .into_iter()
        .chain(records(c, "client"))
        .collect();
    recs.iter().find_map(|r| r.controller.clone()).or_else(|| {
        recs.into_iter()
            .find_map(|r| r.sockopts.and_then(|o| o.congestion))
    })
}

/// The controller a cell was set to run (its `cc` parameter; the matrix may
/// make it an axis), else the one read back.
fn cell_cc(c: &CellResult) -> String {
    c.params
        .get("cc")
        .and_then(|v| v.as_str())
        .map(String::from)
        .or_else(|| controller(c))
        .unwrap_or_default()
}

/// One line per protocol × controller present among `cells` on `link`: the
/// first repetition with server samples. A second controller of the same
/// protocol gets a lighter shade.
fn per_protocol_cc<'a>(
    cells: &[&'a CellResult],
    link: &str,
) -> Vec<(String, String, &'a CellResult, bool)> {
    let protos = sort_protocols(
        cells
            .iter()
            .filter(|c| c.link.label == link)
            .map(|c| c.protocol.clone())
            .collect(),
    );
    let mut out = Vec::new();
    for p in protos {
        let ccs: BTreeSet<String> = cells
            .iter()
            .filter(|c| c.link.label == link && c.protocol == p)
            .map(|c| cell_cc(c))
            .collect();
        for (i, cc) in ccs.iter().enumerate() {
            let of_cc: Vec<&CellResult> = cells
                .iter()
                .copied()
                .filter(|c| &cell_cc(c) == cc)
                .collect();
            if let Some(c) = first_sampled(&of_cc, link, &p) {
                out.push((p.clone(), cc.clone(), c, i > 0));
            }
        }
    }
    out
}

/// A record's window series: (ms, KiB). Samples taken before the axis' zero
/// (clamped to 0 when the records were rebased) are dropped but the last.
fn cwnd_points(r: &Record) -> Vec<(f64, f64)> {
    let first = r.samples.iter().rposition(|s| s.t_ns == 0).unwrap_or(0);
    r.samples[first..]
        .iter()
        .map(|s| (s.t_ns as f64 / 1e6, s.cwnd as f64 / 1024.0))
        .collect()
}

/// Half way to white.
fn lighter(c: plotters::style::RGBColor) -> plotters::style::RGBColor {
    let mix = |v: u8| v + (255 - v) / 2;
    plotters::style::RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

fn label(p: &str, cc: Option<&str>) -> String {
    match cc {
        Some(cc) => format!("{p} ({cc})"),
        None => p.to_string(),
    }
}

/// The first repetition of `p` on `link` among `cells` that has server samples.
fn first_sampled<'a>(cells: &[&'a CellResult], link: &str, p: &str) -> Option<&'a CellResult> {
    cells
        .iter()
        .filter(|c| c.link.label == link && c.protocol == p)
        .filter(|c| records(c, "server").iter().any(|r| !r.samples.is_empty()))
        .min_by_key(|c| c.repetition)
        .copied()
}

/// Goodput: the sender's congestion window over the transfer, one chart per
/// link, one line per protocol (first repetition).
pub fn goodput_cwnd_charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let links = run.links();
    let cells: Vec<&CellResult> = run.ok_cells().filter(|c| c.workload == "goodput").collect();
    let labels: BTreeSet<String> = cells.iter().map(|c| c.link.label.clone()).collect();
    let mut figs = Vec::new();
    for link in run.link_order(labels.iter()) {
        let Some(info) = links.get(&link) else {
            continue;
        };
        let mut series = Vec::new();
        for (p, _, c, shade) in per_protocol_cc(&cells, &link) {
            // HTTP/1.0 serves each request on its own connection: the transfer's
            // is the one sampled longest.
            let Some(r) = records(c, "server")
                .into_iter()
                .max_by_key(|r| r.samples.len())
            else {
                continue;
            };
            let cc = controller(c);
            let base = Series::protocol(&p, cwnd_points(&r));
            let color = if shade {
                lighter(base.color)
            } else {
                base.color
            };
            series.push(Series {
                label: label(&p, cc.as_deref()),
                color,
                ..base
            });
        }
        if series.is_empty() {
            continue;
        }
        let title = format!(
            "Goodput: the sender's congestion window, {}",
            data::link_words(info)
        );
        let note = format!(
            "link: {} · server's view (TCP_INFO snd_cwnd × mss; quinn's window) · first repetition per protocol",
            link_spec(info)
        );
        let svg = charts::lines_svg(
            Frame {
                title: &title,
                note: &note,
            },
            &LineChart {
                x_desc: "time since the request [ms]".into(),
                y_desc: "congestion window [KiB]".into(),
                series,
                ..Default::default()
            },
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("goodput-cwnd-{link}"),
            &title,
            false,
            &svg,
        )?);
    }
    Ok(figs)
}

/// Migration: the sender's window around the event, one chart per variant
/// and link. A TCP transfer that started over has one line per connection.
pub fn migration_cwnd_charts(run: &RunData, ri: usize, out: &Path) -> anyhow::Result<Vec<Fig>> {
    let mut figs = Vec::new();
    for (v, info, cells) in run.by_variant_and_link("migration") {
        let (link, info) = (info.label.clone(), &info);
        let mut series = Vec::new();
        let mut events = Vec::new();
        for (p, _, c, _) in per_protocol_cc(&cells, &link) {
            let p = &p;
            let cc = controller(c);
            let mut recs: Vec<Record> = records(c, "server")
                .into_iter()
                .filter(|r| r.samples.len() > 1)
                .collect();
            recs.sort_by_key(|r| r.start_ns);
            for (i, r) in recs.iter().enumerate() {
                let base = Series::protocol(p, cwnd_points(r));
                // Later connections of the same protocol: its colour, lighter.
                let (name, color) = if i == 0 {
                    (label(p, cc.as_deref()), base.color)
                } else {
                    (
                        format!("{}, connection {}", label(p, cc.as_deref()), i + 1),
                        lighter(base.color),
                    )
                };
                series.push(Series {
                    label: name,
                    color,
                    ..base
                });
            }
            if let Some(e) = data::migration_event(c).filter(|e| e.2) {
                events.push(e.0);
            }
        }
        if series.is_empty() {
            continue;
        }
        events.sort_by(f64::total_cmp);
        let vlines = match events.get(events.len() / 2) {
            Some(t) => vec![(*t, format!("event ≈ {} ms", num_short(t.round())))],
            None => Vec::new(),
        };
        let title = format!("Migration ({v}): the sender's congestion window");
        let note = format!(
            "link: {} · server's view, one line per connection · first repetition per protocol",
            link_spec(info)
        );
        let svg = charts::lines_svg(
            Frame {
                title: &title,
                note: &note,
            },
            &LineChart {
                x_desc: if v.ends_with("-paced") {
                    "time since the first scheduled request [ms]".into()
                } else {
                    "time since the start of the transfer [ms]".into()
                },
                y_desc: "congestion window [KiB]".into(),
                series,
                vlines,
                ..Default::default()
            },
        )?;
        figs.push(write_fig(
            out,
            ri,
            &format!("migration-cwnd-{v}-{link}"),
            &title,
            false,
            &svg,
        )?);
    }
    Ok(figs)
}

/// Metrics of the sender's view (written by the harness), in table order.
pub const SENDER_METRICS: [(&str, &str); 5] = [
    ("tx_retrans_share", "retransmitted / sent"),
    ("tx_retrans_bytes", "retransmitted [B]"),
    ("tx_congestion_events", "congestion events (QUIC)"),
    ("tx_max_cwnd_bytes", "largest window [B]"),
    ("tx_srtt_ms", "sRTT at the end [ms]"),
];

/// Median [95% CI] of `metric` over `cells` ("–" without samples).
fn cell_median(cells: &[&CellResult], metric: &str) -> String {
    let v = data::pooled(cells.iter().copied(), metric);
    match quicbench_results::stats::median_ci(&v) {
        Ok(ci) => {
            let flag = if ci.n < 6 {
                "<span class=\"warn\" title=\"fewer than 6 samples: [min, max], confidence below 95%\">*</span>"
            } else {
                ""
            };
            format!(
                "{} <span class=\"ci\">[{}, {}]</span>{flag}",
                num(ci.median),
                num(ci.low),
                num(ci.high)
            )
        }
        Err(_) => "–".into(),
    }
}

/// Beside goodput (and migration): what the sender did, per link, protocol
/// and controller (medians with 95% CIs over the repetitions, from the
/// cells: a controller axis is never pooled here).
pub fn sender_table(runs: &[RunData], workload: &str, html: &mut String) {
    let mut rows = Vec::new();
    for (ri, run) in runs.iter().enumerate() {
        let cells: Vec<&CellResult> = run.ok_cells().filter(|c| c.workload == workload).collect();
        let groups: BTreeSet<(String, String, String, String)> = cells
            .iter()
            .map(|c| {
                (
                    c.variant.clone(),
                    c.link.label.clone(),
                    c.protocol.clone(),
                    cell_cc(c),
                )
            })
            .collect();
        let order = run.link_order(groups.iter().map(|g| &g.1));
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by_key(|(v, l, p, cc)| {
            (
                v.clone(),
                order.iter().position(|x| x == l),
                cc.clone(),
                crate::palette::protocol_rank(p),
            )
        });
        for (v, l, p, cc) in groups {
            let of: Vec<&CellResult> = cells
                .iter()
                .copied()
                .filter(|c| {
                    c.variant == v && c.link.label == l && c.protocol == p && cell_cc(c) == cc
                })
                .collect();
            let tx: Vec<String> = SENDER_METRICS
                .iter()
                .map(|(m, _)| cell_median(&of, m))
                .collect();
            if tx.iter().all(|s| s == "–") {
                continue;
            }
            let mut row = Vec::new();
            if runs.len() > 1 {
                row.push(format!("{}", ri + 1));
            }
            row.extend([esc(&v), esc(&l), proto_cell(&p)]);
            // What ran, read back (the set value if nothing was read).
            let ran = of.first().and_then(|c| controller(c)).unwrap_or(cc);
            row.push(esc(&ran));
            let key = if workload == "goodput" {
                "goodput_mbps"
            } else {
                "completion_ms"
            };
            row.push(cell_median(&of, key));
            row.extend(tx);
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        html,
        "<h2>What the sender did</h2>\n<p>The server's own view of each transfer, at its end (TCP: <code>TCP_INFO</code>; QUIC: quinn's statistics): TCP counts bytes retransmitted, QUIC bytes in packets declared lost (their data goes again in new packets). TCP_INFO has no count of congestion events. One row per controller: rows with different controllers are not a protocol comparison. Median [95% CI] over the repetitions.</p>"
    );
    let mut head = Vec::new();
    if runs.len() > 1 {
        head.push("run");
    }
    head.extend(["variant", "link", "protocol", "controller"]);
    head.push(if workload == "goodput" {
        "goodput [Mbit/s]"
    } else {
        "completion [ms]"
    });
    head.extend(SENDER_METRICS.iter().map(|(_, h)| *h));
    table(&head, &rows, html);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_points_from_cell_json() {
        let mut c = CellResult::new(
            "c",
            "h2",
            "goodput",
            "bulk",
            quicbench_results::LinkInfo {
                label: "l".to_string(),
                up: String::new(),
                down: String::new(),
                rtt_ms: 20.0,
                loss: 0.0,
                rate_bps: None,
            },
            0,
            1,
        );
        c.extra.insert(
            "ground_truth".into(),
            serde_json::json!({
                "t0_mono_ns": 5,
                "client": [],
                "server": [{
                    "side": "server", "transport": "tcp", "start_ns": 0,
                    "sockopts": {"congestion": "cubic", "nodelay": true},
                    "origin_mono_ns": 5, "closed": true, "sample_period_ms": 10.0,
                    "samples": [
                        {"t_ns": 0, "cwnd": 1024, "srtt_us": 1, "sent_bytes": 0, "retrans_bytes": 0, "retrans_packets": 0},
                        {"t_ns": 0, "cwnd": 2048, "srtt_us": 1, "sent_bytes": 0, "retrans_bytes": 0, "retrans_packets": 0},
                        {"t_ns": 10000000, "cwnd": 4096, "srtt_us": 1, "sent_bytes": 9, "retrans_bytes": 3, "retrans_packets": 1}
                    ]
                }]
            }),
        );
        let r = records(&c, "server");
        assert_eq!(r.len(), 1);
        assert_eq!(cwnd_points(&r[0]), vec![(0.0, 2.0), (10.0, 4.0)]);
        assert_eq!(controller(&c).as_deref(), Some("cubic"));
        assert!(records(&c, "client").is_empty());
        c.extra.clear();
        assert!(records(&c, "server").is_empty());
    }
}
