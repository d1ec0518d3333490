//! The versioned result schema: `run.json` ([`RunMeta`]), `cells/<cell_id>.json`
//! ([`CellResult`]) and the rows of `summary.csv` / `summary.json`
//! ([`SummaryRow`]). Every field is documented in `docs/results-schema.md`.
//!
//! Versioning: adding a field that has a serde default keeps
//! [`SCHEMA_VERSION`]; removing, renaming or changing the meaning or unit of a
//! field bumps it. Readers reject other versions with an error naming the file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ResultsError;
use crate::hist::HistogramData;

/// Version of every file this crate writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The present instant as RFC 3339 UTC, e.g. `2026-11-24T06:00:24.123456789Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

pub(crate) fn format_rfc3339(t: time::OffsetDateTime) -> String {
    // Formatting a UTC OffsetDateTime as RFC 3339 fails only for years outside
    // 0..=9999, which `now` does not produce; fall back to the unix time anyway.
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("@{}", t.unix_timestamp()))
}

/// The machine a run was made on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    /// `uname -r` style kernel release.
    pub kernel: String,
    pub cpu_model: String,
    /// Logical CPUs available to the process.
    pub cores: u32,
    /// Total memory in bytes.
    pub memory_bytes: u64,
}

/// `run.json`: what was run, where, with what, and which cells were planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub schema_version: u32,
    /// Version of the quicbench binary (`CARGO_PKG_VERSION`).
    pub quicbench_version: String,
    /// `git rev-parse HEAD` of the source tree, when known.
    #[serde(default)]
    pub git_commit: Option<String>,
    /// RFC 3339 UTC.
    pub started: String,
    /// RFC 3339 UTC; `None` while the run is in progress (or if it died).
    #[serde(default)]
    pub finished: Option<String>,
    /// The run's name (also the suffix of its directory).
    pub name: String,
    pub host: HostInfo,
    /// Versions of the protocol stacks, e.g. `"quinn" -> "0.11.12"`.
    #[serde(default)]
    pub crate_versions: BTreeMap<String, String>,
    /// Link emulation backend: `"userspace"` or `"kernel"`.
    pub backend: String,
    /// How the run got the right to build links: "root", "user namespace"
    /// (an ordinary user, no sudo) or "none". Absent in runs made before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<String>,
    /// Why that backend was chosen (e.g. "sch_netem not available").
    #[serde(default)]
    pub backend_reason: String,
    /// The matrix as resolved by the harness (opaque here, compared on merge).
    pub matrix: serde_json::Value,
    /// `(index, count)`, 0-based index, when this directory holds one shard.
    #[serde(default)]
    pub shard: Option<(u32, u32)>,
    /// Matrix seed (cells derive their own seeds from it).
    pub seed: u64,
    /// Measured emulator precision / host calibration, if any.
    #[serde(default)]
    pub calibration: Option<serde_json::Value>,
    /// The network-stack settings a fresh namespace of this host inherits
    /// (sysctls, host default controller, available controllers): what a
    /// cell would get unless the harness sets it. Per-cell read-backs are in
    /// each cell's `transport`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_profile: Option<serde_json::Value>,
    /// The third-party endpoints the matrix pairs (docs/endpoints.md): per
    /// endpoint `name`, `role`, `version` (its version command's output, run
    /// at the start), `command`, `notes`. Empty when every end is ours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<serde_json::Value>,
    /// Number of cells in the whole plan (all shards).
    pub planned_cells: u64,
    /// Ids of the cells this directory is meant to hold (this shard's, or all),
    /// in run order.
    #[serde(default)]
    pub cell_ids: Vec<String>,
    /// How the cells were ordered: within each repetition block, a shuffle
    /// seeded with this (so drift cannot line up with one protocol or link).
    /// `None` in runs made before the shuffle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_seed: Option<u64>,
    /// The order/drift check of the run (`crate::analysis::drift`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::analysis::DriftCheck>,
    /// Adaptive repetitions: per group, how many it took and whether it met
    /// the target. Empty for a fixed number of repetitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adaptive: Vec<AdaptiveGroup>,
}

/// How one group fared under adaptive repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveGroup {
    /// `protocol/workload-variant/link[/cc]`.
    pub group: String,
    /// The metric the stopping rule followed.
    pub metric: String,
    /// Repetitions run (Ok or not).
    pub repetitions: u32,
    /// The 95% interval's half-width reached `target` × median.
    pub met_target: bool,
    /// Half-width / median at the end, when an interval could be given.
    pub relative_half_width: Option<f64>,
}

/// One shard directory folded into a merged run (`sources.json` of a merged
/// run directory): what differs between shards (machine, backend, times,
/// calibration) is kept there rather than lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSource {
    /// The shard directory as given to merge.
    pub dir: String,
    pub shard: Option<(u32, u32)>,
    pub host: HostInfo,
    pub backend: String,
    pub backend_reason: String,
    /// The shard's `privileges` (see [`RunMeta::privileges`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<String>,
    pub started: String,
    pub finished: Option<String>,
    #[serde(default)]
    pub calibration: Option<serde_json::Value>,
    /// Number of cells it contributed.
    pub cells: u64,
}

/// The emulated link of a cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// Short label used in charts and summaries, e.g. `"rtt50-loss1"`.
    pub label: String,
    /// netem-syntax spec of the client→server direction.
    pub up: String,
    /// netem-syntax spec of the server→client direction.
    pub down: String,
    /// Nominal round-trip time in milliseconds (sum of both directions' delay).
    pub rtt_ms: f64,
    /// Nominal loss probability per packet, as a fraction in [0, 1].
    pub loss: f64,
    /// Rate limit in bits per second, if any.
    #[serde(default)]
    pub rate_bps: Option<u64>,
}

/// How a cell ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CellStatus {
    Ok,
    Failed { reason: String },
    Skipped { reason: String },
}

impl CellStatus {
    pub fn is_ok(&self) -> bool {
        matches!(self, CellStatus::Ok)
    }
}

/// Every sample of one quantity, in the order measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// e.g. `"ms"`, `"us"`, `"bytes"`, `"Mbit/s"`, `"rtt"`, `"count"`, `"fraction"`.
    pub unit: String,
    pub samples: Vec<f64>,
}

impl Metric {
    pub fn new(unit: impl Into<String>) -> Self {
        Metric {
            unit: unit.into(),
            samples: Vec::new(),
        }
    }
}

/// `cells/<cell_id>.json`: everything measured in one cell (one protocol ×
/// workload variant × link × repetition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub schema_version: u32,
    /// Unique in the run, file-name safe (`[A-Za-z0-9._+=,-]`).
    pub cell_id: String,
    /// Protocol name as `quicbench_wire::Protocol::name`, e.g. `"h3"`.
    pub protocol: String,
    /// e.g. `"handshake"`, `"hol"`, `"migration"`, `"goodput"`, `"udp"`.
    pub workload: String,
    /// e.g. `"cold"`, `"resumed"`, `"paced"`, `"parallel"`, `"port-rebind"`.
    pub variant: String,
    pub link: LinkInfo,
    pub repetition: u32,
    /// Seed of this cell's link model and workload randomness.
    pub seed: u64,
    /// Workload parameters as run (sizes, counts, timeouts...).
    #[serde(default)]
    pub params: serde_json::Value,
    pub status: CellStatus,
    /// RFC 3339 UTC.
    pub started: String,
    /// RFC 3339 UTC.
    pub finished: String,
    /// Wall-clock duration of the cell in seconds.
    pub duration_s: f64,
    /// Metric name → every sample (e.g. `"ttfb_ms"`: one per handshake).
    #[serde(default)]
    pub metrics: BTreeMap<String, Metric>,
    /// Name → HdrHistogram (for high-volume quantities where samples would be
    /// too many).
    #[serde(default)]
    pub histograms: BTreeMap<String, HistogramData>,
    /// Per-request raw records, where small enough to keep.
    #[serde(default)]
    pub records: Option<serde_json::Value>,
    /// Name → `(t_ms, value)` points, e.g. `"bytes_vs_time"` (t since the
    /// start of the transfer, cumulative bytes received).
    #[serde(default)]
    pub timelines: BTreeMap<String, Vec<(f64, f64)>>,
    /// Ground truth from the emulator (packets/bytes sent, dropped, delayed,
    /// per direction).
    #[serde(default)]
    pub link_counters: Option<serde_json::Value>,
    /// Negotiated TLS version, cipher, ALPN, resumed, 0-RTT, congestion control.
    #[serde(default)]
    pub tls: Option<serde_json::Value>,
    /// What the transports ran and what the stack around them did, for both
    /// ends (docs/results-schema.md § transport): the cell's controller, what
    /// was read back from the connections, each namespace's settings, and the
    /// drops that the link model did not make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<serde_json::Value>,
    /// Theoretical values to compare with, e.g. `"ttfb_rtt" -> 3.0`.
    #[serde(default)]
    pub theory: BTreeMap<String, f64>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Structured workload output that is neither a metric nor a timeline,
    /// e.g. `"event"` of a migration cell (`{"kind", "t_ms", "ok", "detail"}`,
    /// t_ms on the `bytes_vs_time` axis) or `"probe"` (the UDP probe report).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl CellResult {
    /// A cell that starts now, with status `Ok` and nothing measured yet.
    pub fn new(
        cell_id: impl Into<String>,
        protocol: impl Into<String>,
        workload: impl Into<String>,
        variant: impl Into<String>,
        link: LinkInfo,
        repetition: u32,
        seed: u64,
    ) -> Self {
        let now = now_rfc3339();
        CellResult {
            schema_version: SCHEMA_VERSION,
            cell_id: cell_id.into(),
            protocol: protocol.into(),
            workload: workload.into(),
            variant: variant.into(),
            link,
            repetition,
            seed,
            params: serde_json::Value::Null,
            status: CellStatus::Ok,
            started: now.clone(),
            finished: now,
            duration_s: 0.0,
            metrics: BTreeMap::new(),
            histograms: BTreeMap::new(),
            records: None,
            timelines: BTreeMap::new(),
            link_counters: None,
            tls: None,
            transport: None,
            theory: BTreeMap::new(),
            notes: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Appends one sample to metric `name`, creating it with `unit`. A unit
    /// different from the metric's existing one is an error (it would make the
    /// pooled samples meaningless).
    pub fn push_sample(&mut self, name: &str, unit: &str, value: f64) -> Result<(), ResultsError> {
        let m = self
            .metrics
            .entry(name.to_string())
            .or_insert_with(|| Metric::new(unit));
        if m.unit != unit {
            return Err(ResultsError::invalid(
                format!("metric {name:?} of cell {}", self.cell_id),
                format!("unit {unit:?} differs from earlier samples' {:?}", m.unit),
            ));
        }
        m.samples.push(value);
        Ok(())
    }

    /// Key of the group this cell is pooled in by [`crate::summarize`].
    pub fn group_key(&self) -> (String, String, String, String) {
        (
            self.protocol.clone(),
            self.workload.clone(),
            self.variant.clone(),
            self.link.label.clone(),
        )
    }

    /// Checks what JSON cannot carry or the store relies on: schema version, a
    /// file-name safe id, finite numbers (serde_json writes NaN/inf as `null`,
    /// which would not read back as f64).
    pub fn validate(&self) -> Result<(), ResultsError> {
        let what = || format!("cell {:?}", self.cell_id);
        if self.schema_version != SCHEMA_VERSION {
            return Err(ResultsError::invalid(
                what(),
                format!(
                    "schema_version {} (this build writes {SCHEMA_VERSION})",
                    self.schema_version
                ),
            ));
        }
        validate_cell_id(&self.cell_id)?;
        let finite = |name: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(ResultsError::invalid(what(), format!("{name} is {v}")))
            }
        };
        finite("duration_s", self.duration_s)?;
        finite("link.rtt_ms", self.link.rtt_ms)?;
        finite("link.loss", self.link.loss)?;
        for (name, m) in &self.metrics {
            for (i, v) in m.samples.iter().enumerate() {
                finite(&format!("metrics.{name}.samples[{i}]"), *v)?;
            }
        }
        for (name, pts) in &self.timelines {
            for (i, (t, v)) in pts.iter().enumerate() {
                finite(&format!("timelines.{name}[{i}].t"), *t)?;
                finite(&format!("timelines.{name}[{i}].value"), *v)?;
            }
        }
        for (name, v) in &self.theory {
            finite(&format!("theory.{name}"), *v)?;
        }
        Ok(())
    }
}

/// Cell ids become file names: keep them to a portable, unambiguous set.
pub fn validate_cell_id(id: &str) -> Result<(), ResultsError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._+=,-".contains(c);
    if id.is_empty() || id.starts_with('.') || id.len() > 200 || !id.chars().all(ok_char) {
        return Err(ResultsError::invalid(
            format!("cell id {id:?}"),
            "must be 1-200 characters of [A-Za-z0-9._+=,-], not starting with '.'",
        ));
    }
    Ok(())
}

/// One row of the tidy summary: one cell group (protocol, workload, variant,
/// link, cc) × one metric. The cell is the unit: `median` is the median of the
/// cells' own medians (or derived values) and the interval is over those cell
/// values; `mean` .. `max` describe the pooled samples. The first nine
/// columns are the stable core; the rest may grow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub protocol: String,
    pub workload: String,
    /// Link label.
    pub link: String,
    pub metric: String,
    pub unit: String,
    /// Median of the cell-level values.
    pub median: f64,
    /// Lower bound of the interval of the median; empty when no interval can
    /// be given (fewer than 3 cells).
    pub ci_low: Option<f64>,
    /// Upper bound of the interval of the median; empty likewise.
    pub ci_high: Option<f64>,
    /// Number of cells: the independent measurements behind the interval.
    pub n: u64,
    pub variant: String,
    /// How the interval was obtained: `order-statistic` (n ≥ 6),
    /// `cluster-bootstrap` / `cell-bootstrap` (3 ≤ n < 6) or `n too small`.
    pub ci_method: String,
    /// Confidence of the interval (see `docs/statistics.md`); empty without one.
    pub ci_confidence: Option<f64>,
    pub mean: f64,
    /// Sample standard deviation (n − 1) of the pooled samples; `None` when
    /// there is one.
    pub std: Option<f64>,
    pub min: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Number of cells (repetitions) pooled (equal to `n`).
    pub cells: u64,
    /// `"samples"` (from `metrics`), `"derived"` (computed by the harness
    /// from several cells, one value per cell) or `"histogram"` (from
    /// `histograms`: bucket midpoints, within 0.1% at 3 significant digits).
    pub source: String,
    /// Number of pooled samples (requests, probes...) behind mean .. max.
    #[serde(default)]
    pub samples: u64,
    /// Congestion controller of the group (`params.cc` of its cells), or empty.
    #[serde(default)]
    pub cc: String,
    /// Server and client implementation of the group (docs/endpoints.md):
    /// `quicbench` is ours.
    #[serde(default = "crate::analysis::ours")]
    pub server: String,
    #[serde(default = "crate::analysis::ours")]
    pub client: String,
}

impl SummaryRow {
    /// True when the two rows' intervals share a point, or either has none:
    /// the report then calls the two "not distinguishable".
    pub fn ci_overlaps(&self, other: &SummaryRow) -> bool {
        match (self.ci_low, self.ci_high, other.ci_low, other.ci_high) {
            (Some(a), Some(b), Some(c), Some(d)) => a <= d && c <= b,
            _ => true,
        }
    }

    /// True when the row has a real interval (not "n too small").
    pub fn has_interval(&self) -> bool {
        self.ci_low.is_some() && self.ci_high.is_some()
    }
}
