//! One error type for the crate; every variant names the file or the thing that
//! was wrong.

use std::path::PathBuf;

use crate::stats::StatsError;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// serde_json's message carries the line and column.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{}: schema version {found}, this build reads version {expected}", path.display())]
    SchemaVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("histogram {what}: {reason}")]
    Histogram { what: String, reason: String },
    #[error("chart {what}: {reason}")]
    Chart { what: String, reason: String },
    #[error("merge: {0}")]
    Merge(String),
    #[error(transparent)]
    Stats(#[from] StatsError),
}

impl ResultsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ResultsError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ResultsError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
