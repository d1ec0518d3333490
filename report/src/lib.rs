//! quicbench-report: SVG charts and a static, self-contained HTML site from
//! run directories (`quicbench report RUN [--compare RUN2 ...] [--out DIR]`).
//!
//! Layout of the site (every link relative, nothing loaded from elsewhere):
//!
//! ```text
//! <out>/index.html          headline findings, matrix overview, failed cells
//! <out>/<workload>.html     one page per workload (handshake, hol, migration,
//!                           goodput, udp, fairness, and any other in the data)
//! <out>/implementations.html server × client pairs (only when a run has a
//!                           cell with a third-party endpoint)
//! <out>/methodology.html    metrics, statistics, link model, calibration,
//!                           versions, host
//! <out>/charts/r<i>-*.svg   charts of run i (0 = the main run)
//! <out>/data/r<i>/          run.json, summary.csv/json, comparisons.csv,
//!                           sources.json, cells/ of run i
//! ```
//!
//! Colours are fixed per protocol ([`palette`], Okabe-Ito). What each page
//! and chart shows: `docs/report.md`.

pub mod charts;
pub mod data;
pub mod fairness;
pub mod html;
pub mod impl_charts;
pub mod implementations;
pub mod palette;
mod site;
pub mod transport;
pub mod workloads;

use std::path::{Path, PathBuf};

pub use data::{load_run, RunData};
pub use site::{build_site_with, Options};

/// Build the site for `runs` (the first is the main run; more are compared
/// side by side) into `out`; returns the path of index.html.
pub fn build_site(runs: &[PathBuf], out: &Path) -> anyhow::Result<PathBuf> {
    build_site_with(runs, out, &Options::default())
}

/// Workloads in the order the site shows them: (name, page title, metrics in
/// order of interest; metrics not listed follow, by name).
pub const WORKLOADS: [(&str, &str, &[&str]); 6] = [
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
            "loss_delay_p50_ms",
            "lossless_service_ms",
            "service_ms",
            "queue_ms",
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
            "detect_ms",
            "reconnect_ms",
            "resume_ms",
            "queue_at_event_ms",
            "completion_ms",
            "new_handshake",
            "completed",
        ],
    ),
    (
        "goodput",
        "Goodput",
        &[
            "steady_goodput_mbps",
            "completion_ms",
            "goodput_mbps",
            "rate_ratio",
            "setup_ms",
            "tx_retrans_share",
            "tx_retrans_bytes",
            "tx_congestion_events",
            "tx_max_cwnd_bytes",
            "tx_srtt_ms",
        ],
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
    (
        "fairness",
        "Sharing a bottleneck",
        &[
            "jain_index",
            "share_*",
            "norm_share_*",
            "convergence_ms",
            "converged",
            "utilisation",
            "queue_delay_p50_ms",
            "queue_delay_p99_ms",
            "link_jain_index",
            "link_share_*",
            "flow_mbps",
            "total_mbps",
        ],
    ),
];

pub fn workload_rank(w: &str) -> usize {
    WORKLOADS
        .iter()
        .position(|(n, _, _)| *n == w)
        .unwrap_or(WORKLOADS.len())
}

pub fn workload_title(w: &str) -> String {
    WORKLOADS
        .iter()
        .find(|(n, _, _)| *n == w)
        .map(|(_, t, _)| t.to_string())
        .unwrap_or_else(|| format!("Workload {w}"))
}

/// A metric name against a pattern of [`WORKLOADS`]: the name itself, or a
/// prefix ending in `*` for metrics named per group (`share_*` is
/// `share_h3`, `share_h3@bbr`, ...; not `link_share_h3`).
fn metric_matches(pattern: &str, metric: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => metric.starts_with(prefix) && metric.len() > prefix.len(),
        None => pattern == metric,
    }
}

/// Sort key of a metric on its workload's page: its place in [`WORKLOADS`]
/// (a `prefix*` pattern holds every metric of that prefix), then its name.
pub fn metric_rank(w: &str, m: &str) -> (usize, String) {
    let pref = WORKLOADS
        .iter()
        .find(|(n, _, _)| *n == w)
        .map(|(_, _, p)| *p)
        .unwrap_or(&[]);
    (
        pref.iter()
            .position(|x| metric_matches(x, m))
            .unwrap_or(pref.len()),
        m.to_string(),
    )
}

#[cfg(test)]
mod tests;
