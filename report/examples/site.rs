//! Builds the static report site of run directories with this crate alone:
//! `cargo run -p quicbench-report --example site -- OUT RUN [RUN...]`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(out), runs) = (args.next(), args.collect::<Vec<_>>()) else {
        return Err("usage: site OUT RUN [RUN...]".into());
    };
    if runs.is_empty() {
        return Err("usage: site OUT RUN [RUN...]".into());
    }
    let index = quicbench_report::build_site(&runs, &out)?;
    println!("{}", index.display());
    Ok(())
}
