//! quicbench-harness: the coordinator. A matrix ([`matrix`]) becomes cells
//! ([`plan`]); each cell builds its link, starts servers, runs a workload
//! ([`workloads`]) and is written as it ends ([`cell`], [`run`]).

pub mod calibrate;
pub mod cell;
pub mod conns;
pub mod cpu_use;
pub mod endpoints;
pub mod fairness;
pub mod ground_truth;
pub mod headline;
pub mod link_metrics;
pub mod matrix;
pub mod plan;
pub mod profile;
pub mod run;
pub mod transport;
pub mod workloads;

pub use matrix::{Matrix, MatrixError};
pub use plan::{Cell, Shard, Workload};
pub use run::{run, RunOptions, RunOutcome};
