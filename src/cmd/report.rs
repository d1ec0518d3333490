//! `quicbench report`: the static result site.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directory (from `quicbench run` or `quicbench merge`).
    run: PathBuf,
    /// More run directories to compare side by side.
    #[arg(long = "compare")]
    compare: Vec<PathBuf>,
    /// Where to write the site (default: RUN/site).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let out = a.out.clone().unwrap_or_else(|| a.run.join("site"));
    let mut runs = vec![a.run.clone()];
    runs.extend(a.compare.iter().cloned());
    let index = quicbench_report::build_site(&runs, &out)?;
    println!("site written: {}", index.display());
    Ok(ExitCode::SUCCESS)
}
