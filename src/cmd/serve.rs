//! `quicbench serve`: every server on one (or more) address(es).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::CongestionControl;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address(es) to listen on (repeatable). Default: 127.0.0.1 and ::1.
    #[arg(long)]
    listen: Vec<IpAddr>,
    /// HTTP/1.0 + HTTP/1.1 cleartext (TCP).
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// HTTP/1.1 + HTTP/2 over TLS 1.3 (TCP).
    #[arg(long, default_value_t = 8443)]
    tls_port: u16,
    /// HTTP/3 (QUIC over UDP).
    #[arg(long, default_value_t = 8443)]
    quic_port: u16,
    /// UDP probe (echo, sink, source).
    #[arg(long, default_value_t = 9000)]
    udp_port: u16,
    /// Write the PEM a client must trust (CA + server certificate) here.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// Write the server's private key (PEM) here (for other servers in interop tests).
    #[arg(long)]
    key_out: Option<PathBuf>,
    /// Serve this certificate chain (PEM) instead of a generated one (needs --key).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Cap on /bytes/N (413 above).
    #[arg(long, default_value_t = quicbench_wire::resource::DEFAULT_MAX_BYTES)]
    max_bytes: u64,
    /// Congestion controller of both transports: QUIC's, and TCP_CONGESTION on
    /// every TCP socket (cubic, newreno, bbr). Not the host's default: a
    /// comparison needs the same controller on both.
    #[arg(long, default_value = "cubic")]
    cc: CongestionControl,
    /// Most concurrent connections per server.
    #[arg(long, default_value_t = 100_000)]
    max_connections: usize,
    /// Runtime threads: 0 is one worker per core (many clients at once); 1
    /// runs every server on one thread (a current-thread runtime, as quinn's
    /// perf server does: one fast connection is not handed between threads);
    /// N > 1 gives N workers.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let listen = if a.listen.is_empty() {
        let mut l = vec![IpAddr::from([127, 0, 0, 1])];
        // IPv6 too, where the host has it.
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            l.push("::1".parse()?);
        }
        l
    } else {
        a.listen.clone()
    };
    let identity = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => Identity::load(c, k)?,
        _ => Identity::generate(&listen.iter().map(|i| i.to_string()).collect::<Vec<_>>())?,
    };
    // Written once the servers listen (below), so a client that waits for the
    // file can connect at once.
    let trust_out = a.cert_out.clone().map(|p| (p, identity.clone()));
    if let Some(p) = &a.key_out {
        identity.write_key(p)?;
    }
    let mut opts = ServerOptions::new(identity);
    opts.listen = listen;
    opts.http_port = a.http_port;
    opts.tls_port = a.tls_port;
    opts.quic_port = a.quic_port;
    opts.udp_port = a.udp_port;
    opts.max_bytes = a.max_bytes;
    opts.cc = a.cc;
    opts.max_connections = a.max_connections;
    let rt = super::runtime_with(a.threads)?;
    rt.block_on(async move {
        let servers = quicbench_servers::start(opts)
            .await
            .context("starting servers")?;
        if let Some((p, id)) = &trust_out {
            id.write_trust(p)?;
        }
        let join = |v: &[std::net::SocketAddr]| {
            v.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "quicbench serve: HTTP/1.0+1.1 (tcp)      {}",
            join(&servers.addrs.http)
        );
        println!(
            "quicbench serve: HTTP/1.1+2 TLS (tcp)    {}",
            join(&servers.addrs.tls)
        );
        println!(
            "quicbench serve: HTTP/3 (quic/udp)       {}",
            join(&servers.addrs.quic)
        );
        println!(
            "quicbench serve: UDP probe (udp)         {}",
            join(&servers.addrs.udp)
        );
        if let Some(p) = &a.cert_out {
            println!(
                "quicbench serve: trust {} (e.g. curl --cacert {})",
                p.display(),
                p.display()
            );
        }
        println!("quicbench serve: resources: GET / and GET /bytes/N; Ctrl-C stops");
        match a.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        let stats = servers.stats();
        servers.shutdown(Duration::from_secs(2)).await;
        eprintln!(
            "quicbench serve: stopped; {}",
            serde_json::to_string(&stats).unwrap_or_default()
        );
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
