//! `quicbench run` and `quicbench merge`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use quicbench_harness::{Matrix, RunOptions, Shard};
use quicbench_netem::link::Backend;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// An embedded matrix: quick (default, a few minutes), full (~2 h),
    /// grid (a cluster's job) or impls (independent implementations, ~15 min).
    #[arg(long, conflicts_with = "matrix")]
    preset: Option<String>,
    /// A matrix TOML file (see docs/matrix.md).
    #[arg(long)]
    matrix: Option<PathBuf>,
    /// Base directory of run directories.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Run name (default: the matrix's).
    #[arg(long)]
    name: Option<String>,
    /// Run only shard I of N (0-based), e.g. 0/4; merge shards with `quicbench merge`.
    #[arg(long)]
    shard: Option<Shard>,
    /// Continue a run directory: its finished cells are skipped.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Link backend: auto (kernel netem where the kernel has it), userspace, kernel.
    #[arg(long, default_value = "auto", env = "QUICBENCH_BACKEND")]
    backend: Backend,
    /// Capture each cell's link traffic (pcap) in the run directory.
    #[arg(long)]
    pcap: bool,
    /// Pin the user-space relay's threads to this CPU, where the machine has
    /// one to spare (recorded per cell as `relay.pinned_cpu`).
    #[arg(long, value_name = "N")]
    relay_cpu: Option<usize>,
    /// Let the CPUs sleep deeply while a cell's user-space link is up (by
    /// default they poll when idle, so the relay's wake-ups cost the same
    /// every time; recorded per cell as `relay.idle_poll`).
    #[arg(long)]
    no_idle_poll: bool,
    /// Override the matrix seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the matrix repetitions with a fixed number (adaptive off).
    #[arg(long)]
    repetitions: Option<u32>,
    /// Skip the link calibration recorded at the start of a run.
    #[arg(long)]
    no_calibrate: bool,
    /// Run at most this many cells (a smoke test of a big matrix).
    #[arg(long)]
    max_cells: Option<usize>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard run directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Merged run directory to create.
    #[arg(long)]
    out: PathBuf,
}

fn git_commit() -> Option<String> {
    option_env!("QUICBENCH_GIT_COMMIT")
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// Ctrl-C sets the flag (finish cleanly); a second Ctrl-C exits at once.
fn install_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = std::thread::Builder::new().name("ctrl-c".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nquicbench: interrupted — finishing: the cell in flight is dropped, finished cells are kept (Ctrl-C again to quit now)");
                s.store(true, Ordering::SeqCst);
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    });
    stop
}

fn matrix_of(a: &RunArgs) -> anyhow::Result<Matrix> {
    let mut m = match (&a.matrix, &a.preset, &a.resume) {
        (Some(p), _, _) => Matrix::load(p)?,
        (None, Some(name), _) => Matrix::preset(name)?,
        (None, None, Some(dir)) => {
            // Resume with the matrix the run was started with.
            let meta = quicbench_results::RunDir::open(dir)?.read_meta()?;
            let src = meta
                .matrix
                .get("source")
                .and_then(|s| s.as_str())
                .context("run.json has no matrix source")?;
            Matrix::parse(src, &format!("{}/run.json (matrix)", dir.display()))?
        }
        (None, None, None) => Matrix::preset("quick")?,
    };
    if let Some(s) = a.seed {
        m.seed = s;
    }
    if let Some(r) = a.repetitions {
        if r == 0 {
            bail!("--repetitions must be ≥ 1");
        }
        m.repetitions = r;
        m.adaptive = None;
    }
    Ok(m)
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let m = matrix_of(&a)?;
    let stop = install_ctrl_c();
    let opts = RunOptions {
        out: a.out.clone(),
        name: a.name.clone(),
        shard: a.shard,
        resume: a.resume.clone(),
        backend: a.backend,
        pcap: a.pcap,
        relay_cpu: a.relay_cpu,
        idle_poll: !a.no_idle_poll,
        progress_bar: std::io::stderr().is_terminal(),
        max_cells: a.max_cells,
        calibrate: !a.no_calibrate,
        git_commit: git_commit(),
        quicbench_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // What each link does per direction, before anything runs: a spec applies
    // to each direction, so its delay counts twice in the RTT.
    eprintln!("quicbench run: {} link(s):", m.links.len());
    for l in &m.links {
        eprintln!(
            "  {}: {}",
            l.label,
            quicbench_netem::describe_path(&l.up, &l.down)
        );
    }
    let outcome = quicbench_harness::run(&m, &opts, stop)?;
    let dir = quicbench_results::RunDir::open(&outcome.dir)?;
    let (cells, analysis) = quicbench_harness::headline::write_analysis(&dir)?;
    println!();
    print!(
        "{}",
        quicbench_harness::headline::headline(&cells, &analysis)
    );
    println!(
        "\n{} cell(s) run, {} failed, {} skipped (already done) in {:.0} s{}",
        outcome.ran,
        outcome.failed,
        outcome.skipped_finished,
        outcome.elapsed_s,
        if outcome.interrupted {
            " — interrupted"
        } else {
            ""
        }
    );
    println!("results: {}", outcome.dir.display());
    println!("  summary: {}", outcome.dir.join("summary.csv").display());
    println!("  report:  quicbench report {}", outcome.dir.display());
    if outcome.interrupted {
        println!(
            "  resume:  quicbench run --resume {}",
            outcome.dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn merge(a: MergeArgs) -> anyhow::Result<ExitCode> {
    quicbench_results::merge(&a.dirs, &a.out)?;
    let dir = quicbench_results::RunDir::open(&a.out)?;
    let (cells, _) = quicbench_harness::headline::write_analysis(&dir)?;
    println!(
        "merged {} shard(s), {} cell(s) into {}",
        a.dirs.len(),
        cells.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
