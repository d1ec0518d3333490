//! Re-analyzes a run directory with this build's statistics and prints the
//! headline, without touching the directory: `cargo run -p quicbench-harness
//! --example reanalyze -- RUN_DIR [--write]` (`--write` rewrites summary.csv/json,
//! comparisons.csv and run.json's drift check).

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: reanalyze RUN_DIR [--write]"))?;
    let rd = quicbench_results::RunDir::open(std::path::Path::new(&dir))?;
    let (cells, analysis) = if args.next().as_deref() == Some("--write") {
        quicbench_harness::headline::write_analysis(&rd)?
    } else {
        let cells = rd.read_cells()?;
        let a = quicbench_harness::headline::analyze(&cells);
        (cells, a)
    };
    print!(
        "{}",
        quicbench_harness::headline::headline(&cells, &analysis)
    );
    Ok(())
}
