//! The server side of the `conns` workload: quicbench's own servers
//! (`quicbench_servers::start`) in a child process inside the server namespace,
//! so that its memory is measured apart from the client's.
//!
//! The child is `<quicbench> conns --server-child '<json spec>'`. It prints one
//! JSON line when listening ([`Ready`]), then answers each `stats` line on stdin
//! with one JSON line ([`quicbench_servers::StatsSnapshot`]); `quit` or the end of
//! stdin shuts it down. It is started from the namespace's keeper thread, so it
//! is SIGKILLed (pdeathsig) if the coordinator dies, and killed by PID if it
//! does not stop in time.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use quicbench_netem::NetNs;
use quicbench_servers::{ServerOptions, StatsSnapshot};
use quicbench_wire::tls::Identity;
use serde::{Deserialize, Serialize};

use super::proc::ChildProc;

/// What the child serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildSpec {
    pub listen: IpAddr,
    /// Also the HTTP/1.x idle timeout between requests: longer than the hold.
    pub header_timeout_s: u64,
    pub max_connections: usize,
    /// `ServerOptions::quic_recv_buffer`.
    #[serde(default)]
    pub quic_recv_buffer: Option<usize>,
    /// Cleartext HTTP port (0: any); with `reuse_port`, shared with the other
    /// server processes of the phase (SO_REUSEPORT).
    #[serde(default)]
    pub http_port: u16,
    #[serde(default)]
    pub reuse_port: bool,
    /// Both transports' congestion controller.
    #[serde(default)]
    pub cc: quicbench_wire::CongestionControl,
}

/// The child's first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub pid: u32,
    pub http_port: u16,
    pub quic_port: u16,
    pub trust_pem: String,
    /// The child's RLIMIT_NOFILE (soft, hard), inherited from the coordinator.
    pub nofile: (u64, u64),
}

/// Entry point of the child (`quicbench conns --server-child JSON`).
pub fn child_main(spec_json: &str) -> anyhow::Result<()> {
    let spec: ChildSpec = serde_json::from_str(spec_json).context("parsing --server-child")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let identity = Identity::generate(&[spec.listen.to_string()])?;
        let trust_pem = identity.trust_pem.clone();
        let mut o = ServerOptions::ephemeral(identity);
        o.listen = vec![spec.listen];
        o.header_timeout = Duration::from_secs(spec.header_timeout_s.max(1));
        o.max_connections = spec.max_connections;
        o.quic_recv_buffer = spec.quic_recv_buffer;
        o.http_port = spec.http_port;
        o.tcp_reuse_port = spec.reuse_port;
        o.cc = spec.cc;
        let servers = quicbench_servers::start(o).await?;
        let port = |v: &[std::net::SocketAddr]| v.first().map(|a| a.port()).unwrap_or(0);
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap_or((0, 0));
        let ready = Ready {
            pid: std::process::id(),
            http_port: port(&servers.addrs.http),
            quic_port: port(&servers.addrs.quic),
            trust_pem,
            nofile,
        };
        println!("{}", serde_json::to_string(&ready)?);
        // Commands arrive on a plain thread (blocking stdin) and are answered
        // here, where the servers live.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(cmd) = rx.recv().await {
            match cmd.trim() {
                "stats" => {
                    println!("{}", serde_json::to_string(&servers.stats())?);
                }
                "quit" => break,
                _ => {}
            }
        }
        servers.shutdown(Duration::from_secs(2)).await;
        Ok::<_, anyhow::Error>(())
    })
}

/// A running server child.
pub struct ServerProc {
    proc: ChildProc,
    pub ready: Ready,
}

impl ServerProc {
    /// Start `exe conns --server-child` inside `ns` and wait until it listens.
    pub fn start(exe: &Path, ns: &NetNs, spec: &ChildSpec) -> anyhow::Result<ServerProc> {
        let proc = ChildProc::start(exe, ns, "--server-child", &serde_json::to_string(spec)?)?;
        let line = proc.recv(Duration::from_secs(30)).context(
            "the server process did not report its ports (is the executable a quicbench \
             binary with the `conns` command?)",
        )?;
        let ready =
            serde_json::from_str(&line).with_context(|| format!("server process said {line:?}"))?;
        Ok(ServerProc { proc, ready })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The servers' counters now.
    pub fn stats(&mut self) -> anyhow::Result<StatsSnapshot> {
        self.proc.send("stats")?;
        let line = self.proc.recv(Duration::from_secs(20))?;
        serde_json::from_str(&line).with_context(|| format!("server stats {line:?}"))
    }

    /// Ask the child to shut down; kill it (by its PID) if it has not exited
    /// within `grace`. Returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> String {
        format!("server: {}", self.proc.stop(grace))
    }
}
