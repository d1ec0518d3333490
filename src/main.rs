//! The `quicbench` command line: thin front ends over the workspace crates.

mod cmd;
mod safety;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What does HTTP/3 over QUIC buy over HTTP/1.0, HTTP/1.1, HTTP/2 and raw UDP on
/// a given network? Paired servers and clients over an emulated link.
#[derive(Debug, Parser)]
#[command(name = "quicbench", version, about, long_about = None)]
struct Cli {
    /// Log filter (also RUST_LOG), e.g. "info" or "quicbench_harness=debug".
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a matrix (default: the quick preset) and write a run directory.
    Run(cmd::run::RunArgs),
    /// Merge shard run directories into one run.
    Merge(cmd::run::MergeArgs),
    /// Build the static result site from a run directory.
    Report(cmd::report::ReportArgs),
    /// Start every server (HTTP/1.x, HTTP/2, HTTP/3, UDP probe) on one address.
    Serve(cmd::serve::ServeArgs),
    /// Fetch a URL with one of quicbench's clients and print timings.
    Get(cmd::get::GetArgs),
    /// Measure a path with the UDP probe (RTT, loss, reordering, jitter).
    UdpProbe(cmd::get::ProbeArgs),
    /// Run any server and client command joined by an emulated link.
    Link(cmd::link::LinkArgs),
    /// Measure the emulated link and compare it with its spec.
    Calibrate(cmd::link::CalibrateArgs),
    /// Hold >65,535 TCP and QUIC connections at one server port each; accept rate, memory/conn.
    Conns(cmd::conns::ConnsArgs),
    /// Check what this machine can do (privileges, TUN, netem) and which backend runs.
    Doctor,
}

impl Command {
    fn builds_links(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Link(_)
                | Command::Calibrate(_)
                | Command::Conns(_)
                | Command::Doctor
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The commands that build links need namespaces: an ordinary user enters a
    // user namespace of its own, which must happen while this process has one
    // thread (before logging, runtimes, anything).
    if cli.cmd.builds_links() {
        quicbench_netem::privileges::acquire();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let r = match cli.cmd {
        Command::Run(a) => cmd::run::run(a),
        Command::Merge(a) => cmd::run::merge(a),
        Command::Report(a) => cmd::report::report(a),
        Command::Serve(a) => cmd::serve::serve(a),
        Command::Get(a) => cmd::get::get(a),
        Command::UdpProbe(a) => cmd::get::probe(a),
        Command::Link(a) => cmd::link::link(a),
        Command::Calibrate(a) => cmd::link::calibrate(a),
        Command::Doctor => cmd::link::doctor(),
        Command::Conns(a) => cmd::conns::conns(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quicbench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
