//! From cells to what a run may claim: the summary rows, the corrected
//! comparisons and the drift check, all with the cell as the unit of
//! replication (see [`crate::infer`] and `docs/statistics.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::{self, HistogramData};
use crate::infer::{self, CellValue, Correction};
use crate::schema::{CellResult, SummaryRow};
use crate::stats;

/// A figure computed by the harness for one cell from several cells (e.g.
/// HOL inflation: a lossy cell against its lossless twin). It joins the group
/// of the cell `cell_id` as that cell's value of `metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    pub cell_id: String,
    pub metric: String,
    pub unit: String,
    pub value: f64,
}

/// The headline metric of a workload variant: the one adaptive repetitions
/// and the drift check follow. `None` for workloads without one.
pub fn headline_metric(workload: &str, variant: &str) -> Option<&'static str> {
    match (workload, variant) {
        ("handshake", _) => Some("ttfb_ms"),
        ("hol", "parallel") => Some("page_ms"),
        ("hol", _) => Some("latency_ms"),
        ("migration", _) => Some("completion_ms"),
        ("goodput", _) => Some("goodput_mbps"),
        ("fairness", _) => Some("jain_index"),
        ("udp", _) => Some("rtt_ms"),
        _ => None,
    }
}

/// The congestion controller a cell ran with (`params.cc`), or "".
pub fn cell_cc(c: &CellResult) -> String {
    c.params
        .get("cc")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The implementation at one end of a cell (`params.server` /
/// `params.client`, docs/endpoints.md): `quicbench` (ours) when unnamed.
pub fn cell_endpoint(c: &CellResult, end: &str) -> String {
    c.params
        .get(end)
        .and_then(|v| v.as_str())
        .unwrap_or(OURS)
        .to_string()
}

/// Our own implementation's endpoint name.
pub const OURS: &str = "quicbench";

pub(crate) fn ours() -> String {
    OURS.to_string()
}

/// A group of cells that are repetitions of one another: protocol, workload,
/// variant, link label, congestion controller and the server × client pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Group {
    pub protocol: String,
    pub workload: String,
    pub variant: String,
    pub link: String,
    pub cc: String,
    pub server: String,
    pub client: String,
}

impl Group {
    pub fn of(c: &CellResult) -> Group {
        Group {
            protocol: c.protocol.clone(),
            workload: c.workload.clone(),
            variant: c.variant.clone(),
            link: c.link.label.clone(),
            cc: cell_cc(c),
            server: cell_endpoint(c, "server"),
            client: cell_endpoint(c, "client"),
        }
    }

    /// Both ends are ours.
    pub fn ours(&self) -> bool {
        self.server == OURS && self.client == OURS
    }

    /// `protocol/workload-variant/link[/cc]`, for messages and run.json.
    pub fn label(&self) -> String {
        let mut s = format!(
            "{}/{}-{}/{}",
            self.protocol, self.workload, self.variant, self.link
        );
        if !self.cc.is_empty() {
            s.push('/');
            s.push_str(&self.cc);
        }
        if !self.ours() {
            s.push_str(&format!("/{}->{}", self.server, self.client));
        }
        s
    }
}

type Key = (Group, String, String); // group, metric, unit

#[derive(Default)]
struct Pool<'a> {
    /// (cell id, start time, cell-level value), one per cell.
    cells: Vec<(String, String, CellValue)>,
    pooled: Vec<f64>,
    hists: Vec<&'a HistogramData>,
    source: &'static str,
}

/// FNV-1a, so bootstrap seeds do not change between Rust versions.
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn key_seed(g: &Group, metric: &str, unit: &str) -> u64 {
    stable_hash(&format!("{}|{metric}|{unit}", g.label()))
}

fn pools<'a>(cells: &'a [CellResult], derived: &[Derived]) -> BTreeMap<Key, Pool<'a>> {
    let mut out: BTreeMap<Key, Pool<'a>> = BTreeMap::new();
    let ok: Vec<&CellResult> = cells.iter().filter(|c| c.status.is_ok()).collect();
    for c in &ok {
        let g = Group::of(c);
        for (name, m) in &c.metrics {
            let xs: Vec<f64> = m
                .samples
                .iter()
                .copied()
                .filter(|x| x.is_finite())
                .collect();
            let Ok(cv) = CellValue::from_samples(&xs) else {
                continue;
            };
            let p = out
                .entry((g.clone(), name.clone(), m.unit.clone()))
                .or_default();
            p.source = "samples";
            p.pooled.extend_from_slice(&xs);
            p.cells.push((c.cell_id.clone(), c.started.clone(), cv));
        }
        for (name, h) in &c.histograms {
            if c.metrics.contains_key(name) {
                continue;
            }
            let Some(v) = h
                .decode()
                .ok()
                .filter(|h| !h.is_empty())
                .map(|h| hist_quantile(&h, 0.5))
            else {
                continue;
            };
            let p = out
                .entry((g.clone(), name.clone(), h.unit.clone()))
                .or_default();
            if p.source == "samples" {
                continue;
            }
            p.source = "histogram";
            p.hists.push(h);
            p.cells
                .push((c.cell_id.clone(), c.started.clone(), CellValue::single(v)));
        }
    }
    let by_id: BTreeMap<&str, &CellResult> = ok.iter().map(|c| (c.cell_id.as_str(), *c)).collect();
    for d in derived.iter().filter(|d| d.value.is_finite()) {
        let Some(c) = by_id.get(d.cell_id.as_str()) else {
            continue;
        };
        let p = out
            .entry((Group::of(c), d.metric.clone(), d.unit.clone()))
            .or_default();
        p.source = "derived";
        p.pooled.push(d.value);
        p.cells.push((
            d.cell_id.clone(),
            c.started.clone(),
            CellValue::single(d.value),
        ));
    }
    out
}

/// The summary: one row per group × metric. The median and its interval are
/// over cell-level values (each cell's median, or its derived value); mean,
/// std, min, p90, p99 and max describe the pooled samples (descriptive only).
/// Rows are sorted by (protocol, workload, variant, link, cc, metric, unit).
pub fn summarize_with(cells: &[CellResult], derived: &[Derived]) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for ((g, metric, unit), mut p) in pools(cells, derived) {
        let values: Vec<CellValue> = p.cells.iter().map(|c| c.2.clone()).collect();
        let Ok(iv) = infer::cell_interval(&values, stats::LEVEL, key_seed(&g, &metric, &unit))
        else {
            continue;
        };
        let desc = if p.source == "histogram" {
            // Sorted so the merged histogram does not depend on cell order.
            p.hists.sort_by(|a, b| a.data.cmp(&b.data));
            hist::merge_all(p.hists.iter().copied())
                .ok()
                .and_then(|h| h.decode().ok())
                .filter(|h| !h.is_empty())
                .map(|h| stats::Describe {
                    n: h.len() as usize,
                    mean: h.mean(),
                    std: (h.len() >= 2).then(|| h.stdev()),
                    min: hist_rank(&h, 0),
                    p50: hist_quantile(&h, 0.5),
                    p90: hist_quantile(&h, 0.9),
                    p99: hist_quantile(&h, 0.99),
                    max: hist_rank(&h, h.len() - 1),
                })
        } else {
            stats::describe(&p.pooled).ok()
        };
        let Some(d) = desc else {
            continue;
        };
        rows.push(SummaryRow {
            protocol: g.protocol,
            workload: g.workload,
            link: g.link,
            metric,
            unit,
            median: iv.estimate,
            ci_low: iv.low,
            ci_high: iv.high,
            n: iv.n as u64,
            variant: g.variant,
            ci_method: iv.method.as_str().to_string(),
            ci_confidence: iv.confidence,
            mean: d.mean,
            std: d.std,
            min: d.min,
            p90: d.p90,
            p99: d.p99,
            max: d.max,
            cells: iv.n as u64,
            source: p.source.to_string(),
            samples: d.n as u64,
            cc: g.cc,
            server: g.server,
            client: g.client,
        });
    }
    rows
}

/// The value of 0-based rank `r` of the recorded values (bucket midpoint).
pub(crate) fn hist_rank(h: &hdrhistogram::Histogram<u64>, r: u64) -> f64 {
    let mut seen = 0u64;
    for it in h.iter_recorded() {
        seen += it.count_at_value();
        if seen > r {
            return h.median_equivalent(it.value_iterated_to()) as f64;
        }
    }
    h.median_equivalent(h.max()) as f64
}

/// Type-7 quantile over the recorded values (same rule as for samples).
pub(crate) fn hist_quantile(h: &hdrhistogram::Histogram<u64>, p: f64) -> f64 {
    let pos = (h.len().saturating_sub(1)) as f64 * p;
    let lo = pos.floor() as u64;
    let a = hist_rank(h, lo);
    let b = hist_rank(h, (lo + 1).min(h.len().saturating_sub(1)));
    a + (pos - lo as f64) * (b - a)
}

/// One protocol pair compared on one metric (a row of `comparisons.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    pub workload: String,
    pub variant: String,
    pub link: String,
    pub cc: String,
    pub metric: String,
    pub unit: String,
    pub protocol_a: String,
    pub protocol_b: String,
    /// Cells on each side (the unit of replication).
    pub n_a: u64,
    pub n_b: u64,
    /// Medians of the cell-level values.
    pub median_a: f64,
    pub median_b: f64,
    /// median_a − median_b.
    pub diff: f64,
    /// Effect size: median_a / median_b (empty when undefined).
    pub ratio: Option<f64>,
    pub ratio_low: Option<f64>,
    pub ratio_high: Option<f64>,
    /// `cluster-bootstrap` (fewer than 6 cells a side) or `cell-bootstrap`
    /// (nominal 95%), or empty.
    pub ratio_method: String,
    /// `mann-whitney-exact` or `mann-whitney-normal`, on cell-level values.
    pub test: String,
    pub p: f64,
    /// p after the family's correction; empty when the pair is outside the
    /// family (n too small: it cannot reach significance).
    pub p_adjusted: Option<f64>,
    /// `benjamini-hochberg` or `holm`.
    pub correction: String,
    /// Family size the correction used.
    pub family: u64,
    /// [`infer::verdict`]: corrected p < 0.05 and the ratio interval excludes 1.
    pub distinguishable: bool,
    /// Why not, when not: `n too small`, `not significant after correction`,
    /// `overlap`, `ratio undefined`.
    pub reason: String,
    /// The server × client pair of arm a (`quicbench`: ours); new columns
    /// at the end, so readers of the first 24 keep working.
    #[serde(default = "ours")]
    pub server_a: String,
    #[serde(default = "ours")]
    pub client_a: String,
    #[serde(default = "ours")]
    pub server_b: String,
    #[serde(default = "ours")]
    pub client_b: String,
}

/// Column names of `comparisons.csv`, in order (must match [`ComparisonRow`]).
pub const COMPARISON_COLUMNS: [&str; 28] = [
    "workload",
    "variant",
    "link",
    "cc",
    "metric",
    "unit",
    "protocol_a",
    "protocol_b",
    "n_a",
    "n_b",
    "median_a",
    "median_b",
    "diff",
    "ratio",
    "ratio_low",
    "ratio_high",
    "ratio_method",
    "test",
    "p",
    "p_adjusted",
    "correction",
    "family",
    "distinguishable",
    "reason",
    "server_a",
    "client_a",
    "server_b",
    "client_b",
];

/// Every protocol pair on every metric of every (workload, variant, link, cc),
/// over cell-level values, corrected over the whole run with `correction`
/// (quicbench uses [`infer::RUN_CORRECTION`]).
pub fn comparisons(
    cells: &[CellResult],
    derived: &[Derived],
    correction: Correction,
) -> Vec<ComparisonRow> {
    type CKey = (String, String, String, String, String, String);
    // An arm: a protocol run by one server × client pair.
    type Arm = (String, String, String);
    let mut by: BTreeMap<CKey, BTreeMap<Arm, Vec<CellValue>>> = BTreeMap::new();
    for ((g, metric, unit), p) in pools(cells, derived) {
        if metric == "failures" {
            continue;
        }
        by.entry((g.workload, g.variant, g.link, g.cc, metric, unit))
            .or_default()
            .insert(
                (g.protocol, g.server, g.client),
                p.cells.into_iter().map(|c| c.2).collect(),
            );
    }
    let mut out = Vec::new();
    for ((workload, variant, link, cc, metric, unit), protos) in by {
        let protos: Vec<(&Arm, &Vec<CellValue>)> = protos.iter().collect();
        for (i, (pa, a)) in protos.iter().enumerate() {
            for (pb, b) in protos.iter().skip(i + 1) {
                let va: Vec<f64> = a.iter().map(|c| c.value).collect();
                let vb: Vec<f64> = b.iter().map(|c| c.value).collect();
                let (Ok(ma), Ok(mb), Ok((p, test))) = (
                    stats::median(&va),
                    stats::median(&vb),
                    infer::rank_test(&va, &vb),
                ) else {
                    continue;
                };
                // Ours on both ends keeps the seed it always had.
                let arm = |(p, s, c): &Arm| {
                    if s == OURS && c == OURS {
                        p.clone()
                    } else {
                        format!("{p}@{s}->{c}")
                    }
                };
                let seed = stable_hash(&format!(
                    "{workload}|{variant}|{link}|{cc}|{metric}|{}|{}",
                    arm(pa),
                    arm(pb)
                ));
                let ratio = if a.len().min(b.len()) >= infer::MIN_CELLS {
                    infer::ratio_interval(a, b, stats::LEVEL, infer::RESAMPLES, seed)
                        .ok()
                        .flatten()
                } else {
                    None
                };
                out.push(ComparisonRow {
                    workload: workload.clone(),
                    variant: variant.clone(),
                    link: link.clone(),
                    cc: cc.clone(),
                    metric: metric.clone(),
                    unit: unit.clone(),
                    protocol_a: pa.0.clone(),
                    protocol_b: pb.0.clone(),
                    n_a: a.len() as u64,
                    n_b: b.len() as u64,
                    median_a: ma,
                    median_b: mb,
                    diff: ma - mb,
                    ratio: (mb != 0.0).then(|| ma / mb),
                    ratio_low: ratio.map(|r| r.1),
                    ratio_high: ratio.map(|r| r.2),
                    ratio_method: ratio.map_or(String::new(), |r| r.3.as_str().into()),
                    test: test.as_str().into(),
                    p,
                    p_adjusted: None,
                    correction: correction.as_str().into(),
                    family: 0,
                    distinguishable: false,
                    reason: String::new(),
                    server_a: pa.1.clone(),
                    client_a: pa.2.clone(),
                    server_b: pb.1.clone(),
                    client_b: pb.2.clone(),
                });
            }
        }
    }
    // The family: every pair that can reach significance at all (decided by
    // cell counts alone, before any p-value is seen, so the error control holds).
    let family: Vec<usize> = (0..out.len())
        .filter(|&i| (out[i].n_a.min(out[i].n_b) as usize) >= infer::MIN_CELLS)
        .collect();
    let ps: Vec<f64> = family.iter().map(|&i| out[i].p).collect();
    for (&i, q) in family.iter().zip(infer::adjust(&ps, correction)) {
        out[i].p_adjusted = Some(q);
    }
    for r in &mut out {
        r.family = family.len() as u64;
        let ci = r.ratio_low.zip(r.ratio_high);
        match infer::verdict(r.n_a as usize, r.n_b as usize, r.p_adjusted, ci) {
            Ok(()) => r.distinguishable = true,
            Err(reason) => r.reason = reason.as_str().into(),
        }
    }
    out
}

/// The order/drift check of one metric over a run: in each group, the cell
/// that ran last against the one that ran first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    pub workload: String,
    pub metric: String,
    /// Groups with at least two Ok cells.
    pub groups: u64,
    /// Groups whose last cell is higher / lower than their first.
    pub up: u64,
    pub down: u64,
    /// Median over groups of (last − first) / |first|.
    pub median_change: Option<f64>,
    /// Two-sided sign test of up against down.
    pub p: f64,
    /// p < 0.01 (a systematic change over the run's time).
    pub drifting: bool,
}

/// Two-sided sign test p for `k` of `n` in one direction.
fn sign_test(k: u64, n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let lo = k.min(n - k) as usize;
    // P(B ≤ lo), B ~ Binomial(n, ½), doubled.
    let n = n as usize;
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let (mut ln_c, mut cdf) = (0.0_f64, 0.0);
    for i in 0..=lo {
        cdf += (ln_c - ln2n).exp();
        ln_c += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (2.0 * cdf).min(1.0)
}

/// Drift checks for each workload's headline metric and for every cell's
/// duration: whether cells that ran later in the run measure systematically
/// higher or lower than their group's first cell.
pub fn drift(cells: &[CellResult]) -> Vec<DriftCheck> {
    // (workload, metric) → group → (start time, value) per cell.
    type Series = BTreeMap<(String, String), BTreeMap<Group, Vec<(time_key::T, f64)>>>;
    let mut series: Series = BTreeMap::new();
    for c in cells.iter().filter(|c| c.status.is_ok()) {
        let g = Group::of(c);
        let t = time_key::of(&c.started);
        if let Some(m) = headline_metric(&c.workload, &c.variant) {
            if let Some(v) = c
                .metrics
                .get(m)
                .and_then(|m| stats::median(&m.samples).ok())
            {
                series
                    .entry((c.workload.clone(), m.to_string()))
                    .or_default()
                    .entry(g.clone())
                    .or_default()
                    .push((t.clone(), v));
            }
        }
        series
            .entry(("*".into(), "duration_s".into()))
            .or_default()
            .entry(g)
            .or_default()
            .push((t, c.duration_s));
    }
    let mut out = Vec::new();
    for ((workload, metric), groups) in series {
        let (mut up, mut down, mut changes) = (0u64, 0u64, Vec::new());
        let mut n = 0u64;
        for (_, mut pts) in groups {
            if pts.len() < 2 {
                continue;
            }
            n += 1;
            pts.sort_by(|a, b| a.0.cmp(&b.0));
            let (first, last) = (pts[0].1, pts[pts.len() - 1].1);
            if last > first {
                up += 1;
            } else if last < first {
                down += 1;
            }
            if first != 0.0 {
                changes.push((last - first) / first.abs());
            }
        }
        if n == 0 {
            continue;
        }
        let p = sign_test(up, up + down);
        out.push(DriftCheck {
            workload,
            metric,
            groups: n,
            up,
            down,
            median_change: stats::median(&changes).ok(),
            p,
            drifting: p < 0.01,
        });
    }
    out
}

/// Cell start times as sortable keys (RFC 3339 parsed; unparsable strings
/// sort after, by text).
mod time_key {
    pub type T = (i128, String);
    pub fn of(s: &str) -> T {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp_nanos())
            .unwrap_or(i128::MAX);
        (t, s.to_string())
    }
}

/// One line per drift check, for the end of a run.
pub fn drift_text(checks: &[DriftCheck]) -> String {
    let mut s = String::new();
    for d in checks {
        let what = if d.workload == "*" {
            format!("cell {}", d.metric)
        } else {
            format!("{} {}", d.workload, d.metric)
        };
        s.push_str(&format!(
            "  {what:<28} {} groups: last cell above first in {}, below in {} (median change {}), sign test p = {:.3}{}\n",
            d.groups,
            d.up,
            d.down,
            d.median_change
                .map(|c| format!("{:+.1}%", c * 100.0))
                .unwrap_or_else(|| "-".into()),
            d.p,
            if d.drifting { "  DRIFT" } else { "" }
        ));
    }
    s
}

/// "median [low, high] (95% order-statistic, n = 8 cells)", or "median (n = 2
/// cells: too few for an interval)": how every interval is printed.
pub fn interval_text(r: &SummaryRow, prec: usize) -> String {
    match (r.ci_low, r.ci_high, r.ci_confidence) {
        (Some(l), Some(h), Some(c)) => format!(
            "{:.prec$} [{l:.prec$}, {h:.prec$}] ({:.0}% {}, n = {})",
            r.median,
            c * 100.0,
            r.ci_method,
            r.n
        ),
        _ => format!(
            "{:.prec$} (n = {} cell{}: too few for an interval)",
            r.median,
            r.n,
            if r.n == 1 { "" } else { "s" }
        ),
    }
}

#[cfg(test)]
mod tests;
