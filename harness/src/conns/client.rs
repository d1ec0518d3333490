//! The TCP client side of the `conns` workload in child processes
//! (`<quicbench> conns --client-child '<json spec>'`), each holding its share
//! of the connections: a process's RLIMIT_NOFILE bounds how many sockets it can
//! hold, and the hard limit cannot be raised without CAP_SYS_RESOURCE.
//!
//! Protocol (lines): the child prints `ready`; on `go` it opens its share,
//! printing `p <n>` (completed so far) every 250 ms and `e <json>` (its
//! [`super::ClientOutcome`]) when done; on `check` it sends one request on every
//! connection and prints `c <json>` ([`CheckOutcome`]); on `quit` (or the end
//! of stdin) it closes everything and prints `q <seconds>`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::{establish_all, tcp, ConnsParams, Established};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSpec {
    pub params: ConnsParams,
    pub addrs: Vec<Ipv4Addr>,
    pub server: SocketAddr,
    /// Connection i of this child uses address `(first + i) % addrs.len()`.
    pub first: u64,
    pub target: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub alive: u64,
    pub failures: BTreeMap<String, u64>,
}

pub fn child_main(spec_json: &str) -> anyhow::Result<()> {
    let spec: ClientSpec = serde_json::from_str(spec_json).context("parsing --client-child")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!("ready");
    loop {
        match rx.recv() {
            Ok(l) if l.trim() == "go" => break,
            Ok(_) => continue,
            Err(_) => return Ok(()),
        }
    }
    let p = &spec.params;
    let limit = Duration::from_secs(p.handshake_timeout_s);
    let n = spec.addrs.len().max(1) as u64;
    let pb = ProgressBar::hidden();
    let Established { mut conns, out } = rt.block_on(async {
        let pbc = pb.clone();
        let printer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                println!("p {}", pbc.position());
            }
        });
        let addrs = spec.addrs.clone();
        let server = spec.server;
        let first = spec.first;
        let cc = p.cc;
        let est = establish_all(p, &spec.addrs, spec.target, &pb, &None, |i| {
            let a = ((first + i) % n) as usize;
            let src = addrs.get(a).copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
            tcp::establish_indexed(a, src, server, limit, cc)
        })
        .await;
        printer.abort();
        est
    });
    println!("p {}", pb.position());
    println!("e {}", serde_json::to_string(&out)?);
    while let Ok(cmd) = rx.recv() {
        match cmd.trim() {
            "check" => {
                let results: Vec<Result<(), String>> = rt.block_on(
                    futures::stream::iter(conns.iter_mut())
                        .map(|(_, s)| tcp::check(s, limit))
                        .buffer_unordered(p.concurrency)
                        .collect(),
                );
                let mut c = CheckOutcome::default();
                for r in results {
                    match r {
                        Ok(()) => c.alive += 1,
                        Err(e) => *c.failures.entry(e).or_default() += 1,
                    }
                }
                println!("c {}", serde_json::to_string(&c)?);
            }
            "quit" => break,
            _ => {}
        }
    }
    let t = Instant::now();
    drop(conns);
    println!("q {}", t.elapsed().as_secs_f64());
    Ok(())
}

/// How many processes hold `n` sockets when one process may hold `soft` fds.
pub fn processes_for(n: u64, soft: u64, headroom: f64) -> u64 {
    let per = soft.saturating_sub(4096).max(1000);
    ((n as f64 * headroom) / per as f64).ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_counts() {
        assert_eq!(processes_for(70_000, 20_000, 1.0), 5);
        assert_eq!(processes_for(70_000, 20_000, 1.15), 6);
        assert_eq!(processes_for(1000, 20_000, 1.0), 1);
        assert_eq!(processes_for(70_000, 1 << 20, 1.0), 1);
        assert_eq!(processes_for(0, 1024, 1.0), 1);
    }
}
