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
//! This crate knows nothing of sockets or HTTP: it is data, statistics and files.
//! See `docs/results-schema.md` and `docs/statistics.md`.

pub mod error;
pub mod hist;
pub mod schema;
pub mod stats;
pub mod store;

pub use error::ResultsError;
pub use hist::HistogramData;
pub use schema::{
    now_rfc3339, CellResult, CellStatus, HostInfo, LinkInfo, Metric, RunMeta, ShardSource,
    SummaryRow, SCHEMA_VERSION,
};
pub use stats::{compare, median_ci, Comparison, MedianCi, StatsError};
pub use store::{merge, summarize, RunDir};
