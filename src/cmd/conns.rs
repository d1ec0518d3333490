//! `quicbench conns`: hold more than 65,535 TCP and QUIC connections to one
//! server port each, over an emulated link between two fresh namespaces.
//! The logic is `quicbench_harness::conns`; this is its front end (and the
//! entry point of its server child process).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use quicbench_harness::conns::{self, ConnsConfig, ConnsParams};
use quicbench_netem::link::Backend;

#[derive(Debug, Args)]
pub struct ConnsArgs {
    /// Congestion controller of both transports (QUIC's and TCP_CONGESTION on
    /// every socket): cubic, newreno, bbr.
    #[arg(long, default_value = "cubic")]
    cc: quicbench_wire::CongestionControl,
    /// TCP connections to hold at one server port (0: skip TCP).
    #[arg(long, default_value_t = 70_000)]
    tcp: u64,
    /// QUIC connections to hold at one server UDP port (0: skip QUIC).
    #[arg(long, default_value_t = 70_000)]
    quic: u64,
    /// Client addresses (198.18.0.1, .2, ...); 0: one per 30,000 connections, at least 2.
    #[arg(long, default_value_t = 0)]
    addrs: usize,
    /// QUIC client sockets (quinn endpoints) per client address.
    #[arg(long, default_value_t = 2)]
    quic_sockets_per_addr: usize,
    /// TCP handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// QUIC handshakes in flight at once (default under the server's Retry threshold of 64).
    #[arg(long, default_value_t = 48)]
    quic_concurrency: usize,
    /// Seconds to hold every connection open before checking it.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Stop opening connections after this many seconds (per phase).
    #[arg(long, default_value_t = 300)]
    establish_timeout: u64,
    /// Time limit of one handshake and of one liveness check, seconds.
    #[arg(long, default_value_t = 20)]
    handshake_timeout: u64,
    /// Link backend: auto, userspace or kernel.
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Write the full report as JSON here ("-": stdout, instead of the summary).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bars on stderr.
    #[arg(long)]
    quiet: bool,
    /// Internal: run as the server child process with this JSON spec.
    #[arg(long, hide = true)]
    server_child: Option<String>,
    /// Internal: run as a TCP client child process with this JSON spec.
    #[arg(long, hide = true)]
    client_child: Option<String>,
}

pub fn conns(a: ConnsArgs) -> anyhow::Result<ExitCode> {
    if let Some(spec) = &a.server_child {
        conns::server::child_main(spec)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(spec) = &a.client_child {
        conns::client::child_main(spec)?;
        return Ok(ExitCode::SUCCESS);
    }
    let params = ConnsParams {
        tcp: a.tcp,
        quic: a.quic,
        client_addrs: a.addrs,
        quic_sockets_per_addr: a.quic_sockets_per_addr,
        concurrency: a.concurrency,
        quic_concurrency: a.quic_concurrency,
        hold_s: a.hold,
        establish_timeout_s: a.establish_timeout,
        handshake_timeout_s: a.handshake_timeout,
        cc: a.cc,
        links: None,
    };
    params.validate().map_err(|e| anyhow::anyhow!(e))?;
    let exe = std::env::current_exe().context("locating the quicbench executable")?;
    let mut cfg = ConnsConfig::new(params, exe);
    cfg.backend = a.backend;
    cfg.progress = !a.quiet;
    if !a.quiet {
        eprintln!(
            "conns: {} TCP + {} QUIC connections from {} client addresses; stops by itself \
             within {} s at most",
            cfg.params.tcp,
            cfg.params.quic,
            cfg.params.resolved_addrs(),
            cfg.params.worst_case_s()
        );
    }
    let report = conns::run(&cfg)?;
    let json = serde_json::to_string_pretty(&report)?;
    match a.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => {
            std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?;
            print!("{}", conns::summary(&report));
            println!("report: {}", p.display());
        }
        None => print!("{}", conns::summary(&report)),
    }
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
