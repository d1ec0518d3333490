//! How long the site of a full-size run takes to build.
//!
//! `cargo run --release -p quicbench-report --example render_full -- SRC_RUN WORK [CELLS]`
//!
//! Synthesizes a run directory of CELLS cells (default 5880, the full preset's
//! size) under WORK from the real cells of SRC_RUN, replicated with new ids,
//! link labels and repetitions (links spread over RTT × loss like a grid),
//! summarizes it, then times `build_site` on it (cells not copied, and copied).

use std::path::PathBuf;
use std::time::Instant;

use quicbench_results::RunDir;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(src), Some(work)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: render_full SRC_RUN WORK [CELLS]");
    };
    let want: usize = match args.next() {
        Some(n) => n
            .to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("CELLS: not a number"))?,
        None => 5880,
    };
    let src = RunDir::open(&PathBuf::from(src))?;
    let mut meta = src.read_meta()?;
    let cells = src.read_cells()?;
    anyhow::ensure!(!cells.is_empty(), "{}: no cells", src.path().display());
    let work = PathBuf::from(work);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let t = Instant::now();
    let dir = RunDir::create(&work, "full-synthetic")?;
    let mut ids = Vec::with_capacity(want);
    'outer: for k in 0.. {
        // 8 link variants (2 RTT shifts × 4 loss levels) × repetitions.
        let (shift, lossv, rep) = (k % 2, (k / 2) % 4, k / 8);
        for c in &cells {
            if ids.len() >= want {
                break 'outer;
            }
            let mut c = c.clone();
            c.cell_id = format!("{}__x{k}", c.cell_id);
            c.link.label = format!("{}-s{shift}-l{lossv}", c.link.label);
            c.link.rtt_ms += 100.0 * shift as f64;
            if lossv > 0 || c.link.loss > 0.0 {
                c.link.loss += 0.005 * lossv as f64;
                if !c.link.up.contains("loss") {
                    c.link.up.push_str(" loss 0.5%");
                }
            }
            c.repetition += rep as u32 * 10;
            dir.write_cell(&c)?;
            ids.push(c.cell_id.clone());
        }
    }
    meta.cell_ids = ids.clone();
    meta.planned_cells = ids.len() as u64;
    meta.name = "full-synthetic".into();
    dir.write_meta(&meta)?;
    dir.resummarize()?;
    eprintln!(
        "synthesized {} cells in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    for copy_cells in [false, true] {
        let out = work.join(format!("site-copy{copy_cells}"));
        let t = Instant::now();
        quicbench_report::build_site_with(
            &[dir.path().to_path_buf()],
            &out,
            &quicbench_report::Options { copy_cells },
        )?;
        let charts = std::fs::read_dir(out.join("charts"))?.count();
        println!(
            "build_site: {} cells, {charts} charts, cells copied: {copy_cells}: {:.2} s",
            ids.len(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
