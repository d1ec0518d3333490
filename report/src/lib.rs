//! quicbench-report: SVG charts and a static site from run directories. (Skeleton.)

use std::path::{Path, PathBuf};

/// Build the site for `runs` (the first is the main run; more are compared
/// side by side) into `out`; returns the path of index.html.
pub fn build_site(runs: &[PathBuf], out: &Path) -> anyhow::Result<PathBuf> {
    let _ = runs;
    anyhow::bail!("the report site is not built yet ({})", out.display())
}
