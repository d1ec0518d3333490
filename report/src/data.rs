//! Reading run directories for the report, and the small queries every page
//! makes of them (links in order, pooled samples, migration events).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use quicbench_results::analysis::{cell_endpoint, OURS};
use quicbench_results::store::{self, RunDir};
use quicbench_results::{CellResult, ComparisonRow, LinkInfo, RunMeta, SummaryRow};

use crate::palette::protocol_rank;

/// Everything the report needs of one run directory.
///
/// `cells`, `rows` and `comparisons` hold only what ran with our own
/// implementation at both ends (docs/endpoints.md): every protocol chart and
/// table reads these, so a run with third-party endpoints neither pools nor
/// duplicates implementations there. The implementations page reads
/// `impl_cells` / `impl_rows`: everything.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub meta: RunMeta,
    /// Every readable cell (ok or not) of our own server × client pair,
    /// sorted by id.
    pub cells: Vec<CellResult>,
    /// `summary.json` if present (it may hold harness-derived rows), else
    /// `quicbench_results::summarize` of the cells; our own pair's rows.
    pub rows: Vec<SummaryRow>,
    /// Every readable cell of every server × client pair, sorted by id.
    pub impl_cells: Vec<CellResult>,
    /// Every summary row of every pair.
    pub impl_rows: Vec<SummaryRow>,
    /// Cell files that could not be read, with the reason.
    pub invalid: Vec<(PathBuf, String)>,
    /// `comparisons.csv` (corrected over the run's family); empty when the
    /// file is missing or of an older format. Every "distinguishable" the
    /// report shows comes from here: one rule, `quicbench_results::infer::verdict`.
    /// Only rows whose two arms are both our own pair.
    pub comparisons: Vec<ComparisonRow>,
}

/// Both ends of the cell are our own implementation (`params.server` and
/// `params.client` absent, as in runs before endpoints, or `quicbench`).
pub fn ours_cell(c: &CellResult) -> bool {
    cell_endpoint(c, "server") == OURS && cell_endpoint(c, "client") == OURS
}

/// The summary row is of our own pair.
pub fn ours_row(r: &SummaryRow) -> bool {
    r.server == OURS && r.client == OURS
}

/// Loads a run directory for reporting: unreadable cell files are listed in
/// `invalid` rather than failing the whole report.
pub fn load_run(dir: &Path) -> anyhow::Result<RunData> {
    let rd = RunDir::open(dir).with_context(|| format!("run directory {}", dir.display()))?;
    let meta = rd.read_meta()?;
    let scan = rd.scan_cells()?;
    let mut cells = Vec::with_capacity(scan.finished.len());
    let mut invalid = scan.invalid;
    for id in &scan.finished {
        let p = rd.cell_path(id);
        match store::read_cell_file(&p) {
            Ok(c) => cells.push(c),
            Err(e) => invalid.push((p, e.to_string())),
        }
    }
    let rows = if rd.path().join(store::SUMMARY_JSON).exists() {
        rd.read_summary()?
    } else {
        quicbench_results::summarize(&cells)
    };
    let comparisons = rd
        .read_comparisons()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            [&c.server_a, &c.client_a, &c.server_b, &c.client_b]
                .iter()
                .all(|e| *e == OURS)
        })
        .collect();
    Ok(RunData::split(dir, meta, cells, rows, invalid, comparisons))
}

impl RunData {
    /// The one place the report keeps third-party pairs out of the protocol
    /// views: `cells` / `rows` become our own pair's, `impl_*` keep all.
    pub fn split(
        dir: &Path,
        meta: RunMeta,
        impl_cells: Vec<CellResult>,
        impl_rows: Vec<SummaryRow>,
        invalid: Vec<(PathBuf, String)>,
        comparisons: Vec<ComparisonRow>,
    ) -> RunData {
        RunData {
            dir: dir.to_path_buf(),
            meta,
            cells: impl_cells
                .iter()
                .filter(|c| ours_cell(c))
                .cloned()
                .collect(),
            rows: impl_rows.iter().filter(|r| ours_row(r)).cloned().collect(),
            impl_cells,
            impl_rows,
            invalid,
            comparisons,
        }
    }

    /// Any cell with another implementation at one end (the implementations
    /// page is built and linked only then).
    pub fn has_other_endpoints(&self) -> bool {
        self.impl_cells.len() > self.cells.len()
    }

    /// The comparison of protocol `a` with `b` on one metric, in either order
    /// of the file, with the ratio oriented as median(a) / median(b).
    pub fn comparison(
        &self,
        workload: &str,
        variant: &str,
        link: &str,
        metric: &str,
        a: &str,
        b: &str,
    ) -> Option<(Option<f64>, &ComparisonRow)> {
        self.comparisons.iter().find_map(|c| {
            if c.workload != workload
                || c.variant != variant
                || c.link != link
                || c.metric != metric
            {
                return None;
            }
            if c.protocol_a == a && c.protocol_b == b {
                Some((c.ratio, c))
            } else if c.protocol_a == b && c.protocol_b == a {
                Some((c.ratio.filter(|r| *r != 0.0).map(|r| 1.0 / r), c))
            } else {
                None
            }
        })
    }

    pub fn ok_cells(&self) -> impl Iterator<Item = &CellResult> {
        self.cells.iter().filter(|c| c.status.is_ok())
    }

    /// Workloads present (in cells or rows), in site order.
    pub fn workloads(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .cells
            .iter()
            .map(|c| c.workload.clone())
            .chain(self.rows.iter().map(|r| r.workload.clone()))
            .collect();
        let mut v: Vec<String> = set.into_iter().collect();
        v.sort_by_key(|w| (crate::workload_rank(w), w.clone()));
        v
    }

    /// Links of the run by label.
    pub fn links(&self) -> BTreeMap<String, LinkInfo> {
        self.cells
            .iter()
            .map(|c| (c.link.label.clone(), c.link.clone()))
            .collect()
    }

    /// Link labels in a natural order: by RTT, loss, rate, then label.
    pub fn link_order<'a>(&self, labels: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let info = self.links();
        let mut v: Vec<String> = labels
            .into_iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
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

    /// Ok cells of one workload variant.
    pub fn select<'a>(
        &'a self,
        workload: &'a str,
        variant: &'a str,
    ) -> impl Iterator<Item = &'a CellResult> + 'a {
        self.ok_cells()
            .filter(move |c| c.workload == workload && c.variant == variant)
    }

    /// Each variant of `workload` × each link its (ok) cells ran on, in
    /// report order (variant name, then [`RunData::link_order`]): the
    /// variant, the link, and the variant's cells on it. The walk of every
    /// per-link chart of a workload.
    pub fn by_variant_and_link(&self, workload: &str) -> Vec<(String, LinkInfo, Vec<&CellResult>)> {
        let links = self.links();
        let mut out = Vec::new();
        for v in self.variants(workload) {
            let cells: Vec<&CellResult> = self
                .ok_cells()
                .filter(|c| c.workload == workload && c.variant == v)
                .collect();
            let labels: BTreeSet<String> = cells.iter().map(|c| c.link.label.clone()).collect();
            for link in self.link_order(labels.iter()) {
                let Some(info) = links.get(&link) else {
                    continue;
                };
                let on: Vec<&CellResult> = cells
                    .iter()
                    .copied()
                    .filter(|c| c.link.label == link)
                    .collect();
                out.push((v.clone(), info.clone(), on));
            }
        }
        out
    }

    /// Variants of a workload present in the cells, in name order.
    pub fn variants(&self, workload: &str) -> Vec<String> {
        self.cells
            .iter()
            .filter(|c| c.workload == workload)
            .map(|c| c.variant.clone())
            .chain(
                self.rows
                    .iter()
                    .filter(|r| r.workload == workload)
                    .map(|r| r.variant.clone()),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The summary row of one group and metric.
    pub fn row(
        &self,
        protocol: &str,
        workload: &str,
        variant: &str,
        link: &str,
        metric: &str,
    ) -> Option<&SummaryRow> {
        self.rows.iter().find(|r| {
            r.protocol == protocol
                && r.workload == workload
                && r.variant == variant
                && r.link == link
                && r.metric == metric
        })
    }

    /// A short label: "name (host, date)".
    pub fn label(&self) -> String {
        format!(
            "{} ({}, {})",
            self.meta.name,
            if self.meta.host.hostname.is_empty() {
                "unknown host"
            } else {
                &self.meta.host.hostname
            },
            self.meta.started.get(..10).unwrap_or(&self.meta.started)
        )
    }
}

/// Protocols in display order.
pub fn sort_protocols(mut v: Vec<String>) -> Vec<String> {
    v.sort_by_key(|p| protocol_rank(p));
    v.dedup();
    v
}

/// Pooled samples of `metric` over cells.
pub fn pooled<'a>(cells: impl Iterator<Item = &'a CellResult>, metric: &str) -> Vec<f64> {
    cells
        .filter_map(|c| c.metrics.get(metric))
        .flat_map(|m| m.samples.iter().copied())
        .filter(|v| v.is_finite())
        .collect()
}

/// Samples of `metric`, or when a cell kept only an HdrHistogram, its
/// recorded values (µs → ms when the histogram unit is "us").
pub fn pooled_or_hist<'a>(cells: impl Iterator<Item = &'a CellResult>, metric: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for c in cells {
        if let Some(m) = c.metrics.get(metric).filter(|m| !m.samples.is_empty()) {
            out.extend(m.samples.iter().copied().filter(|v| v.is_finite()));
        } else if let Some(h) = c.histograms.get(metric) {
            if let Ok(hist) = h.decode() {
                let scale = if h.unit == "us" { 1e-3 } else { 1.0 };
                for v in hist.iter_recorded() {
                    let x = hist.median_equivalent(v.value_iterated_to()) as f64 * scale;
                    for _ in 0..v.count_at_value().min(1_000_000) {
                        out.push(x);
                    }
                }
            }
        }
    }
    out
}

/// The migration event of a cell: (t_ms on the bytes_vs_time axis, kind,
/// whether it happened). From `extra.event`, else from an `extra: {...}` note.
pub fn migration_event(c: &CellResult) -> Option<(f64, String, bool)> {
    let from = |v: &serde_json::Value| -> Option<(f64, String, bool)> {
        let e = v.get("event")?;
        Some((
            e.get("t_ms")?.as_f64()?,
            e.get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("event")
                .to_string(),
            e.get("ok").and_then(|k| k.as_bool()).unwrap_or(true),
        ))
    };
    if let Some(ev) = c.extra.get("event") {
        let wrapped = serde_json::json!({ "event": ev });
        if let Some(e) = from(&wrapped) {
            return Some(e);
        }
    }
    c.notes.iter().find_map(|n| {
        let json = n.strip_prefix("extra: ")?;
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        from(&v)
    })
}

/// Human form of a link: "20 ms RTT, loss 2%, 20 Mbit/s".
pub fn link_words(l: &LinkInfo) -> String {
    let mut s = format!("{} ms RTT", crate::html::num_short(l.rtt_ms));
    if l.loss > 0.0 {
        s.push_str(&format!(
            ", loss {}%",
            crate::html::num_short(l.loss * 100.0)
        ));
    }
    if let Some(r) = l.rate_bps {
        s.push_str(&format!(
            ", {} Mbit/s",
            crate::html::num_short(r as f64 / 1e6)
        ));
    }
    s
}

/// The netem spec of a link for a chart note: one spec when both directions
/// agree, else "up ... / down ...".
pub fn link_spec(l: &LinkInfo) -> String {
    if l.up == l.down {
        format!("{} (each way)", l.up)
    } else {
        format!("up: {} / down: {}", l.up, l.down)
    }
}
