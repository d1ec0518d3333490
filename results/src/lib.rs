//! quicbench-results: what a benchmark run leaves on disk, and what can be said
//! about it.
//!
//! - [`schema`]: the versioned JSON types (`run.json`, `cells/<id>.json`,
//!   `summary.csv`/`summary.json` rows);
//! - [`hist`]: HdrHistogram helpers (base64 V2+deflate in JSON);
//! - [`stats`]: medians with distribution-free 95% confidence intervals,
//!   bootstrap, quantiles, comparisons;
//! - [`store`]: the run directory (atomic cell files, resume, summary, merge of
//!   shards).
//!
//! Charts and the static site live in the `quicbench-report` crate.
//!
//! This crate knows nothing of sockets or HTTP: it is data, statistics and files.
//! See `docs/results-schema.md` and `docs/statistics.md`.
//!
//! ```
//! use quicbench_results::{summarize, CellResult, LinkInfo, RunDir};
//!
//! let base = tempfile::tempdir()?;
//! let dir = RunDir::create(base.path(), "smoke")?;
//! let mut cell = CellResult::new("h3-cold-r0", "h3", "handshake", "cold", LinkInfo::default(), 0, 42);
//! for ms in [101.3, 99.8, 100.4] {
//!     cell.push_sample("ttfb_ms", "ms", ms)?;
//! }
//! dir.write_cell(&cell)?;
//! assert!(dir.finished_cells()?.contains("h3-cold-r0"));
//! let rows = summarize(&dir.read_cells()?);
//! assert_eq!(rows[0].median, 100.4);
//! dir.write_summary(&rows)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod analysis;
pub mod error;
pub mod hist;
pub mod infer;
pub mod schema;
pub mod stats;
pub mod store;

pub use analysis::{comparisons, drift, summarize_with, ComparisonRow, Derived, DriftCheck, Group};
pub use error::ResultsError;
pub use hist::HistogramData;
pub use schema::{
    now_rfc3339, AdaptiveGroup, CellResult, CellStatus, HostInfo, LinkInfo, Metric, RunMeta,
    ShardSource, SummaryRow, SCHEMA_VERSION,
};
pub use stats::{compare, median_ci, Comparison, MedianCi, StatsError};
pub use store::{merge, summarize, RunDir};
