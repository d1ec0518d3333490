//! quicbench-report: the static result site from run directories.
//!
//! For now this delegates to the site builder in `quicbench_results::report`
//! (charts with plotters, Okabe-Ito palette per protocol, tables with medians
//! and 95% CIs).

use std::path::{Path, PathBuf};

/// Build the site for `runs` (the first is the main run; more are compared
/// side by side) into `out`; returns the path of index.html.
pub fn build_site(runs: &[PathBuf], out: &Path) -> anyhow::Result<PathBuf> {
    Ok(quicbench_results::report::build_site(runs, out)?)
}
