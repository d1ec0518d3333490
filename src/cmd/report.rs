//! `quicbench report`: the static result site (see docs/report.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directory (from `quicbench run` or `quicbench merge`).
    run: PathBuf,
    /// More run directories to compare side by side (e.g. two quinn versions,
    /// two machines).
    #[arg(long = "compare")]
    compare: Vec<PathBuf>,
    /// Where to write the site (default: RUN/site).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not copy the cell files into the site (only run.json and the
    /// summaries): a smaller site for large runs.
    #[arg(long)]
    no_cells: bool,
}

pub fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let out = a.out.clone().unwrap_or_else(|| a.run.join("site"));
    let mut runs = vec![a.run.clone()];
    runs.extend(a.compare.iter().cloned());
    let started = std::time::Instant::now();
    let opts = quicbench_report::Options {
        copy_cells: !a.no_cells,
    };
    let index = quicbench_report::build_site_with(&runs, &out, &opts)?;
    println!(
        "site written: {} ({:.1} s); open it in a browser or publish the directory as is",
        index.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
