//! `quicbench get` (curl-like, any protocol) and `quicbench udp-probe`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use quicbench_clients::udp::{ProbeConfig, ProbeMode};
use quicbench_clients::{Client, ClientOptions, ConnInfo, Request, RequestRecord};
use quicbench_wire::{CongestionControl, Protocol};

use crate::safety::check_target;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// h1.0, h1.0-tls, h1.1, h1.1-tls, h1.1-pipelined, h2, h3.
    #[arg(long, default_value = "h3")]
    proto: Protocol,
    /// e.g. https://127.0.0.1:8443/bytes/1048576 (the scheme is informative:
    /// the protocol decides TLS).
    url: String,
    /// Number of requests.
    #[arg(short = 'n', long, default_value_t = 1)]
    requests: u32,
    /// Concurrency: connections for HTTP/1.x, concurrent streams (or pipeline
    /// depth) for h1.1-pipelined, h2 and h3.
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: u32,
    /// PEM file of certificates to trust (from `quicbench serve --cert-out`).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// TLS server name (default: the URL's host).
    #[arg(long)]
    server_name: Option<String>,
    /// Congestion controller of both transports: QUIC's, and TCP_CONGESTION on
    /// every TCP socket (cubic, newreno, bbr). Not the host's default: a
    /// comparison needs the same controller on both.
    #[arg(long, default_value = "cubic")]
    cc: CongestionControl,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Runtime threads: 1 runs the client on one thread (a current-thread
    /// runtime, like curl and quinn's perf tool: a worker per core hands
    /// every packet of a fast QUIC connection between threads, see
    /// docs/h3.md); N > 1 gives N workers; 0 one per core.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print every request's record as JSON lines.
    #[arg(long)]
    json: bool,
    /// Allow targets outside loopback and 198.18.0.0/15, 2001:2::/48.
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Server address, e.g. 127.0.0.1:9000.
    addr: String,
    /// echo (RTT), sink (upstream loss), source (downstream loss and delay).
    #[arg(long, default_value = "echo")]
    mode: String,
    #[arg(short = 'n', long, default_value_t = 1000)]
    count: u32,
    /// Interval between datagrams, microseconds.
    #[arg(long, default_value_t = 1000)]
    interval_us: u64,
    /// Datagram size, bytes (48..=65507).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long)]
    allow_remote: bool,
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(url: &str, proto: Protocol) -> anyhow::Result<Target> {
    let uri: http::Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
    let host = uri
        .host()
        .with_context(|| format!("URL {url:?} has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let default_port = match proto {
        Protocol::H10 | Protocol::H11 => 8080,
        Protocol::Udp => 9000,
        _ => 8443,
    };
    let port = uri.port_u16().unwrap_or(default_port);
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host:?}"))?
            .next()
            .with_context(|| format!("{host:?} resolves to no address"))?,
    };
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Ok(Target { addr, host, path })
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn line(name: &str, mut v: Vec<f64>) {
    if v.is_empty() {
        return;
    }
    v.sort_by(f64::total_cmp);
    if v.len() == 1 {
        println!("  {name:<10} {:>10.3} ms", v[0]);
    } else {
        println!(
            "  {name:<10} p50 {:>9.3}  p90 {:>9.3}  p99 {:>9.3}  max {:>9.3} ms",
            pct(&v, 0.5),
            pct(&v, 0.9),
            pct(&v, 0.99),
            v[v.len() - 1]
        );
    }
}

pub fn get(a: GetArgs) -> anyhow::Result<ExitCode> {
    if a.proto == Protocol::Udp {
        bail!("--proto udp: use `quicbench udp-probe ADDR`");
    }
    if a.requests == 0 || a.concurrency == 0 {
        bail!("-n and -c must be ≥ 1");
    }
    let t = parse_url(&a.url, a.proto)?;
    check_target(t.addr.ip(), a.allow_remote)?;
    let setup_start = Instant::now();
    let trust = match &a.cacert {
        Some(p) => quicbench_wire::tls::load_trust(p)?,
        None if a.proto.uses_tls() => bail!(
            "--proto {} uses TLS: give --cacert PEM (from `quicbench serve --cert-out`)",
            a.proto
        ),
        None => Vec::new(),
    };
    let mut o = ClientOptions::new(t.addr, trust);
    o.server_name = a.server_name.clone().unwrap_or(t.host.clone());
    o.cc = a.cc;
    o.timeout = Duration::from_secs(a.timeout);
    let client = Client::new(a.proto, o)?;
    let tls_config = setup_start.elapsed();
    let rt_start = Instant::now();
    let rt = super::runtime_with(a.threads)?;
    let runtime = rt_start.elapsed();
    let (records, infos, connect, wall) = rt.block_on(async {
        let started = Instant::now();
        let per_conn = matches!(
            a.proto,
            Protocol::H10 | Protocol::H10Tls | Protocol::H11 | Protocol::H11Tls
        );
        let nconn = if per_conn {
            a.concurrency.min(a.requests)
        } else {
            1
        };
        let mut conns = Vec::new();
        for _ in 0..nconn {
            conns.push(client.connect().await?);
        }
        let connect = started.elapsed();
        let mut futs = Vec::new();
        for (ci, conn) in conns.iter_mut().enumerate() {
            let mine: Vec<u32> = (0..a.requests)
                .filter(|i| *i % nconn == ci as u32)
                .collect();
            // Each batch starts when the one before it is done, and its
            // requests are timed from that start: an HTTP/1.x connection
            // carries one request at a time, HTTP/2 and HTTP/3 `-c` at once.
            // (One batch of all of a connection's requests would time each
            // from the first one's start, queueing included.)
            let batch = if per_conn { 1 } else { a.concurrency as usize };
            let path = t.path.clone();
            futs.push(async move {
                let mut recs = Vec::new();
                for chunk in mine.chunks(batch) {
                    let reqs: Vec<Request> =
                        chunk.iter().map(|_| Request::get(path.clone())).collect();
                    recs.extend(conn.run(&reqs).await);
                }
                recs
            });
        }
        let records: Vec<RequestRecord> = futures_join(futs).await.into_iter().flatten().collect();
        let infos: Vec<_> = conns.iter().map(|c| c.info().clone()).collect();
        for c in conns {
            c.close().await;
        }
        Ok::<_, anyhow::Error>((records, infos, connect, started.elapsed()))
    })?;
    if a.json {
        for r in &records {
            println!("{}", serde_json::to_string(r)?);
        }
    }
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
    let failed = records.len() - ok.len();
    let info = infos.first();
    println!(
        "{} {} -> {} ({} request(s), {} connection(s))",
        a.proto,
        t.path,
        t.addr,
        records.len(),
        infos.len()
    );
    if let Some(i) = info {
        if let (Some(v), Some(c)) = (&i.tls_version, &i.cipher) {
            println!(
                "  tls        {v} {c} alpn={} resumed={} 0-rtt={}",
                i.alpn.as_deref().unwrap_or("-"),
                i.resumed.map(|b| b.to_string()).unwrap_or("-".into()),
                i.early_data_accepted
                    .map(|b| b.to_string())
                    .unwrap_or("-".into())
            );
        }
        if let Some(cc) = &i.congestion_control {
            println!("  cc         {cc}");
        }
        let ms = |a: Option<u64>| a.map(|t| t.saturating_sub(i.start_ns) as f64 / 1e6);
        if let Some(v) = ms(i.transport_ready_ns) {
            println!("  connect    {v:>10.3} ms");
        }
        if let Some(v) = ms(i.tls_ready_ns).filter(|_| a.proto.uses_tls()) {
            println!("  tls ready  {v:>10.3} ms");
        }
    }
    let setup = Setup {
        tls_config,
        runtime,
        connect,
        first: info,
    };
    println!("  set-up     {}", setup.line(infos.len()));
    line(
        "ttfb",
        ok.iter()
            .filter_map(|r| r.ttfb_ns())
            .map(|n| n as f64 / 1e6)
            .collect(),
    );
    line(
        "total",
        ok.iter()
            .filter_map(|r| r.total_ns())
            .map(|n| n as f64 / 1e6)
            .collect(),
    );
    println!(
        "  bytes      {}; verified {}/{}",
        Transfer::of(&ok).line(),
        ok.iter().filter(|r| r.verified == Some(true)).count(),
        ok.iter().filter(|r| r.verified.is_some()).count()
    );
    println!(
        "  wall       {:.3} ms from the first connect to the last close",
        wall.as_secs_f64() * 1e3
    );
    if let Some(s) = ok.first().and_then(|r| r.status) {
        println!("  status     {s}");
    }
    if failed > 0 {
        for r in records.iter().filter(|r| !r.ok()).take(5) {
            eprintln!(
                "  failed #{}: {}",
                r.index,
                r.error
                    .clone()
                    .unwrap_or_else(|| format!("status {:?} verified {:?}", r.status, r.verified))
            );
        }
        eprintln!("{failed} request(s) failed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The client's own set-up before its first request can leave: TLS
/// configuration (trust store, rustls config), the runtime's start, and the
/// connections (QUIC: endpoint bind, then handshake).
struct Setup<'a> {
    tls_config: Duration,
    runtime: Duration,
    /// Every connection, opened one after another.
    connect: Duration,
    /// The first connection, for the split of its connect.
    first: Option<&'a ConnInfo>,
}

impl Setup<'_> {
    fn line(&self, conns: usize) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let total = self.tls_config + self.runtime + self.connect;
        let mut s = format!(
            "{:.3} ms: tls config {:.3}, runtime {:.3}, connect {:.3}",
            ms(total),
            ms(self.tls_config),
            ms(self.runtime),
            ms(self.connect)
        );
        if conns > 1 {
            s += &format!(" ({conns} connections)");
        } else if let Some(i) = self.first {
            let span = |a: u64, b: Option<u64>| b.map(|b| b.saturating_sub(a) as f64 / 1e6);
            if let (Some(bind), Some(hs)) = (
                span(i.start_ns, i.handshake_start_ns),
                i.handshake_start_ns
                    .and_then(|h| span(h, i.transport_ready_ns)),
            ) {
                s += &format!(" (endpoint {bind:.3}, handshake {hs:.3})");
            }
        }
        s
    }
}

/// The transfer itself: body bytes of the successful requests, from the
/// first request's start to the last body byte, so neither the client's
/// set-up nor the close counts against the rate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Transfer {
    bytes: u64,
    requests: usize,
    /// First request's start to the last byte, ns (None: no byte arrived).
    span_ns: Option<u64>,
}

impl Transfer {
    fn of(ok: &[&RequestRecord]) -> Self {
        let first = ok.iter().map(|r| r.start_ns).min();
        let last = ok.iter().filter_map(|r| r.last_byte_ns).max();
        Transfer {
            bytes: ok.iter().map(|r| r.bytes).sum(),
            requests: ok.len(),
            span_ns: first
                .zip(last)
                .map(|(a, b)| b.saturating_sub(a))
                .filter(|s| *s > 0),
        }
    }

    /// "N in T ms = R Mbit/s (first request to last byte); Q req/s".
    fn line(&self) -> String {
        match self.span_ns {
            Some(ns) => {
                let secs = ns as f64 / 1e9;
                format!(
                    "{} in {:.3} ms = {:.1} Mbit/s (first request to last byte); {:.1} req/s",
                    self.bytes,
                    secs * 1e3,
                    self.bytes as f64 * 8.0 / secs / 1e6,
                    self.requests as f64 / secs
                )
            }
            None => format!("{} (no timed transfer)", self.bytes),
        }
    }
}

async fn futures_join<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    futures::future::join_all(futs).await
}

pub fn probe(a: ProbeArgs) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = a
        .addr
        .to_socket_addrs()
        .with_context(|| format!("bad address {:?} (expected HOST:PORT)", a.addr))?
        .next()
        .with_context(|| format!("{:?} resolves to no address", a.addr))?;
    check_target(addr.ip(), a.allow_remote)?;
    let mode = match a.mode.as_str() {
        "echo" => ProbeMode::Echo,
        "sink" => ProbeMode::Sink,
        "source" => ProbeMode::Source,
        m => bail!("unknown probe mode {m:?}: expected echo, sink or source"),
    };
    quicbench_wire::probe::check_size(a.size)?;
    let mut cfg = ProbeConfig::new(addr, mode);
    cfg.count = a.count as u64;
    cfg.interval = Duration::from_micros(a.interval_us);
    cfg.size = a.size;
    let rt = super::runtime()?;
    let rep = rt.block_on(quicbench_clients::udp::probe(cfg))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "udp probe {} -> {addr}: {} datagrams of {} B every {} µs",
            a.mode, rep.sent, rep.size, rep.interval_us
        );
        println!(
            "  received {} lost {} ({:.3}%)",
            rep.received,
            rep.lost,
            rep.loss_rate * 100.0
        );
        if let Some(d) = rep.duplicates {
            println!("  duplicates {d}");
        }
        if let Some(r) = rep.reordered {
            println!("  reordered {r}");
        }
        let show = |name: &str, s: &Option<quicbench_clients::udp::Summary>| {
            if let Some(s) = s {
                println!(
                    "  {name:<8} min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3} ms",
                    s.min_us / 1000.0,
                    s.p50_us / 1000.0,
                    s.p90_us / 1000.0,
                    s.p99_us / 1000.0,
                    s.max_us / 1000.0
                );
            }
        };
        show("rtt", &rep.rtt);
        show("owd up", &rep.owd_up);
        show("owd down", &rep.owd_down);
        if let Some(j) = rep.jitter_us {
            println!("  jitter   {:.3} ms (RFC 3550)", j / 1000.0);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start_ns: u64, last: Option<u64>, bytes: u64) -> RequestRecord {
        let mut r = RequestRecord::new(0, "/bytes/1", 0, start_ns);
        r.last_byte_ns = last;
        r.bytes = bytes;
        r
    }

    #[test]
    fn transfer_rate_counts_first_start_to_last_byte() {
        // Two requests: 1 MB each, 10 ms after set-up, last byte at 30 ms.
        let a = rec(10_000_000, Some(25_000_000), 1_000_000);
        let b = rec(12_000_000, Some(30_000_000), 1_000_000);
        let t = Transfer::of(&[&a, &b]);
        assert_eq!(t.span_ns, Some(20_000_000));
        assert_eq!(t.bytes, 2_000_000);
        // 2 MB in 20 ms = 800 Mbit/s, 100 req/s.
        assert_eq!(
            t.line(),
            "2000000 in 20.000 ms = 800.0 Mbit/s (first request to last byte); 100.0 req/s"
        );
    }

    #[test]
    fn transfer_without_bytes_has_no_rate() {
        let t = Transfer::of(&[]);
        assert_eq!(t.span_ns, None);
        assert_eq!(t.line(), "0 (no timed transfer)");
        let r = rec(5, None, 0);
        assert_eq!(Transfer::of(&[&r]).span_ns, None);
    }

    #[test]
    fn setup_line_splits_a_quic_connect() {
        let info = ConnInfo {
            start_ns: 1_000_000,
            handshake_start_ns: Some(1_200_000),
            transport_ready_ns: Some(2_700_000),
            ..Default::default()
        };
        let s = Setup {
            tls_config: Duration::from_micros(300),
            runtime: Duration::from_micros(200),
            connect: Duration::from_micros(1_900),
            first: Some(&info),
        };
        assert_eq!(
            s.line(1),
            "2.400 ms: tls config 0.300, runtime 0.200, connect 1.900 (endpoint 0.200, handshake 1.500)"
        );
        assert_eq!(
            s.line(4),
            "2.400 ms: tls config 0.300, runtime 0.200, connect 1.900 (4 connections)"
        );
    }
}
