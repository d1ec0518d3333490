//! `quicbench link` (any server and client over an emulated link),
//! `quicbench calibrate` (is the link what it claims?) and `quicbench doctor`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use quicbench_clients::udp::{ProbeConfig, ProbeMode};
use quicbench_netem::link::{Backend, Link, LinkConfig};
use quicbench_netem::LinkSpec;

/// The link's shape, shared by `link` and `calibrate`.
#[derive(Debug, Args)]
pub struct LinkShape {
    /// netem spec for both directions, e.g. "delay 20ms loss 1%".
    #[arg(long)]
    spec: Option<LinkSpec>,
    /// client → server spec (overrides --spec for that direction).
    #[arg(long)]
    up: Option<LinkSpec>,
    /// server → client spec.
    #[arg(long)]
    down: Option<LinkSpec>,
    /// auto, userspace or kernel.
    #[arg(long, default_value = "auto", env = "QUICBENCH_BACKEND")]
    backend: Backend,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Capture the link's traffic (before and after impairment) into DIR.
    #[arg(long)]
    pcap: Option<PathBuf>,
}

impl LinkShape {
    fn config(&self) -> LinkConfig {
        let both = self.spec.clone().unwrap_or_default();
        let mut c = LinkConfig::new(self.up.clone().unwrap_or_else(|| both.clone()), self.down.clone().unwrap_or(both));
        c.backend = self.backend;
        c.seed = self.seed;
        c.mtu = self.mtu;
        c.pcap_dir = self.pcap.clone();
        c
    }
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    shape: LinkShape,
    /// Server command (run with `sh -c` in the server namespace).
    #[arg(long)]
    server: Option<String>,
    /// Wait this long after starting the server before the client starts.
    #[arg(long, default_value_t = 300)]
    server_wait_ms: u64,
    /// Client command and arguments (run in the client namespace).
    #[arg(last = true, required = true)]
    client: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    shape: LinkShape,
    /// Probe datagrams per second.
    #[arg(long, default_value_t = 10_000)]
    pps: u64,
    /// Probe duration, seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Probe datagram size, bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn link(a: LinkArgs) -> anyhow::Result<ExitCode> {
    let link = Link::build(a.shape.config()).context("building the link")?;
    let env = [
        ("QUICBENCH_SERVER_IP", link.server_ip().to_string()),
        ("QUICBENCH_CLIENT_IP", link.client_ip().to_string()),
        ("QUICBENCH_SERVER_IP6", link.server_ip6().to_string()),
        ("QUICBENCH_CLIENT_IP6", link.client_ip6().to_string()),
    ];
    eprintln!(
        "quicbench link: backend {} ({}); client {} ⇄ server {}; up [{}] down [{}]",
        link.backend(),
        link.backend_reason(),
        link.client_ip(),
        link.server_ip(),
        link.config().up,
        link.config().down
    );
    let mut server = None;
    if let Some(cmd) = &a.server {
        let mut c = link.server_ns().command("sh");
        c.arg("-c").arg(cmd).envs(env.iter().map(|(k, v)| (k, v)));
        server = Some(link.server_ns().spawn(c).with_context(|| format!("starting server command {cmd:?}"))?);
        std::thread::sleep(Duration::from_millis(a.server_wait_ms));
    }
    let mut c = link.client_ns().command(&a.client[0]);
    c.args(&a.client[1..]).envs(env.iter().map(|(k, v)| (k, v)));
    let status = link
        .client_ns()
        .spawn(c)
        .with_context(|| format!("starting client command {:?}", a.client[0]))?
        .wait()?;
    if let Some(mut s) = server {
        // SIGTERM first so servers can say goodbye, then SIGKILL.
        let pid = nix::unistd::Pid::from_raw(s.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = s.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = s.kill();
        let _ = s.wait();
    }
    eprintln!("quicbench link: counters {}", serde_json::to_string_pretty(&link.counters())?);
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::from(128),
    })
}

/// A bounded TCP bulk transfer across the link: bytes/s of goodput.
fn tcp_bulk(link: &Link, seconds: f64) -> anyhow::Result<f64> {
    let ip = link.server_ip();
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = link.server_ns().spawn_thread("calib-tcp-server", move || -> std::io::Result<u64> {
        let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
        let _ = tx.send(l.local_addr());
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    })?;
    let addr = rx.recv_timeout(Duration::from_secs(5))??;
    let dur = Duration::from_secs_f64(seconds);
    let sent = link.client_ns().try_run(move || -> std::io::Result<(u64, Duration)> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        let buf = vec![0x5au8; 256 * 1024];
        let t0 = Instant::now();
        let mut sent = 0u64;
        // Bounded in time: stops by itself.
        while t0.elapsed() < dur {
            s.write_all(&buf)?;
            sent += buf.len() as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        let mut sink = [0u8; 1];
        let _ = s.read(&mut sink);
        Ok((sent, t0.elapsed()))
    })??;
    let got = srv.join().map_err(|_| anyhow::anyhow!("tcp server thread panicked"))???;
    Ok(got.min(sent.0) as f64 / sent.1.as_secs_f64())
}

pub fn calibrate(a: CalibrateArgs) -> anyhow::Result<ExitCode> {
    if a.pps == 0 || a.seconds <= 0.0 || a.seconds > 600.0 {
        bail!("--pps must be ≥ 1 and --seconds in (0, 600]");
    }
    quicbench_wire::probe::check_size(a.size)?;
    let cfg = a.shape.config();
    let link = Link::build(cfg.clone()).context("building the link")?;
    let ip = link.server_ip();
    // The UDP probe server in the server namespace.
    let (ptx, prx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let identity = quicbench_wire::tls::Identity::generate(&[ip.to_string()])?;
    let srv = link.server_ns().spawn_thread("calib-servers", move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        rt.block_on(async move {
            let mut o = quicbench_servers::ServerOptions::ephemeral(identity);
            o.listen = vec![ip];
            let s = quicbench_servers::start(o).await?;
            let _ = ptx.send(s.addrs.udp[0]);
            let _ = stop_rx.await;
            s.shutdown(Duration::from_millis(200)).await;
            Ok(())
        })
    })?;
    let udp = prx.recv_timeout(Duration::from_secs(10)).context("probe server did not start")?;
    let count = (a.pps as f64 * a.seconds) as u64;
    let interval = Duration::from_nanos(1_000_000_000 / a.pps);
    let up_delay = cfg.up.base_delay_ns() as f64 / 1e6;
    let down_delay = cfg.down.base_delay_ns() as f64 / 1e6;
    let size = a.size;
    let report = link.client_ns().try_run(move || -> anyhow::Result<_> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut pc = ProbeConfig::new(udp, ProbeMode::Echo);
        pc.count = count;
        pc.interval = interval;
        pc.size = size;
        pc.timeout = Duration::from_millis(((up_delay + down_delay) * 3.0) as u64 + 1000);
        Ok(rt.block_on(quicbench_clients::udp::probe(pc))?)
    })??;
    let rate = cfg.up.rate_bps();
    let bulk = match rate {
        Some(_) => Some(tcp_bulk(&link, 3.0)?),
        None => None,
    };
    let _ = stop_tx.send(());
    let _ = srv.join();
    let counters = link.counters();

    // Verdicts.
    let mut lines: Vec<String> = Vec::new();
    let mut pass = true;
    let check = |lines: &mut Vec<String>, pass: &mut bool, name: String, ok: bool| {
        *pass &= ok;
        lines.push(format!("  [{}] {name}", if ok { "ok" } else { "OFF" }));
    };
    if let Some(o) = &report.owd_up {
        let e50 = o.p50_us / 1000.0 - up_delay;
        let e99 = o.p99_us / 1000.0 - up_delay;
        let jitter = cfg.up.to_string().contains("delay") && cfg.up.to_string().split_whitespace().filter(|t| t.ends_with("ms") || t.ends_with("us")).count() > 1;
        if !jitter {
            check(&mut lines, &mut pass, format!("one-way delay up: configured {up_delay:.3} ms, measured p50 {:.3} ms (error {:+.0} µs, target ±50), p99 {:.3} ms (error {:+.0} µs, target ±300)", o.p50_us / 1000.0, e50 * 1000.0, o.p99_us / 1000.0, e99 * 1000.0), e50.abs() <= 0.05 && e99.abs() <= 0.3);
        } else {
            lines.push(format!("  [--] one-way delay up with jitter: p50 {:.3} ms, p99 {:.3} ms (configured base {up_delay:.3} ms)", o.p50_us / 1000.0, o.p99_us / 1000.0));
        }
    }
    // Round-trip loss expected from both directions' nominal loss.
    let p = 1.0 - (1.0 - cfg.up.loss_probability()) * (1.0 - cfg.down.loss_probability());
    let n = report.sent.max(1) as f64;
    let sd = (p * (1.0 - p) / n).sqrt();
    let (lo, hi) = ((p - 2.576 * sd).max(0.0), (p + 2.576 * sd).min(1.0));
    check(
        &mut lines,
        &mut pass,
        format!("round-trip loss: configured {:.3}%, measured {:.3}% of {} (99% binomial interval [{:.3}%, {:.3}%])", p * 100.0, report.loss_rate * 100.0, report.sent, lo * 100.0, hi * 100.0),
        report.loss_rate >= lo - 1e-12 && report.loss_rate <= hi + 1e-12,
    );
    if let (Some(r), Some(b)) = (rate, bulk) {
        // TCP payload per packet at this MTU (IPv4 20 B + TCP 32 B with timestamps).
        let eff = (cfg.mtu as f64 - 52.0) / cfg.mtu as f64;
        let expect = r as f64 * eff;
        let ratio = b * 8.0 / expect;
        check(&mut lines, &mut pass, format!("rate: configured {:.3} Mbit/s, TCP goodput {:.3} Mbit/s = {:.1}% of the payload rate ({:.3} Mbit/s at MTU {}), target within 2%", r as f64 / 1e6, b * 8.0 / 1e6, ratio * 100.0, expect / 1e6, cfg.mtu), (ratio - 1.0).abs() <= 0.02);
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "backend": link.backend().to_string(), "reason": link.backend_reason(),
                "up": cfg.up.to_string(), "down": cfg.down.to_string(),
                "probe": report, "tcp_goodput_bps": bulk.map(|b| b * 8.0), "counters": counters, "pass": pass,
            }))?
        );
    } else {
        println!("quicbench calibrate: backend {} ({})", link.backend(), link.backend_reason());
        println!("  up [{}]  down [{}]", cfg.up, cfg.down);
        if let Some(r) = &report.rtt {
            println!("  RTT: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} echoes", r.p50_us / 1000.0, r.p99_us / 1000.0, r.max_us / 1000.0, r.count);
        }
        for l in &lines {
            println!("{l}");
        }
        println!("verdict: {}", if pass { "the link matches its spec" } else { "the link does NOT match its spec on this machine (see [OFF] lines)" });
    }
    Ok(if pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn doctor() -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let say = |good: bool, what: &str, fix: &str| {
        println!("  [{}] {what}", if good { "ok" } else { "--" });
        if !good && !fix.is_empty() {
            println!("       fix: {fix}");
        }
    };
    println!("quicbench doctor");
    let root = nix::unistd::geteuid().is_root();
    say(root, &format!("running as root: {root}"), "run as root (sudo), or rely on unprivileged user namespaces below");
    let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").map(|s| s.trim() != "0").unwrap_or(false)
        && std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone").map(|s| s.trim() != "0").unwrap_or(true);
    say(root || userns, &format!("unprivileged user namespaces: {}", if userns { "enabled" } else { "disabled" }), "sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=10000");
    let ns = quicbench_netem::ns::can_create();
    say(ns.is_ok(), &format!("network namespaces: {}", match &ns { Ok(()) => "can be created".to_string(), Err(e) => e.to_string() }), "needs CAP_SYS_ADMIN + CAP_NET_ADMIN (root), or user namespaces; in Docker: --cap-add NET_ADMIN --cap-add SYS_ADMIN, seccomp=unconfined");
    ok &= ns.is_ok();
    let tun = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun");
    say(tun.is_ok(), &format!("/dev/net/tun: {}", match &tun { Ok(_) => "opens".to_string(), Err(e) => e.to_string() }), "modprobe tun; in Docker: --device /dev/net/tun");
    ok &= tun.is_ok();
    let ipcmd = Command::new("ip").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    say(ipcmd, "iproute2 (`ip`, `tc`) installed", "apt-get install iproute2");
    ok &= ipcmd;
    let (netem, why) = quicbench_netem::link::kernel_netem_available();
    say(netem, &format!("kernel sch_netem: {why}"), "optional: modprobe sch_netem (the user-space link runs without it)");
    let (b, reason) = quicbench_netem::link::choose_backend(Backend::Auto);
    println!("  backend that `run` will use: {b} — {reason}");
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(s, h)| format!("{s} (hard {h})")).unwrap_or_default();
    println!("  open-file limit: {nofile}");
    println!("  cores: {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("{}", if ok { "ready: `quicbench run` can run here" } else { "not ready: fix the [--] lines above" });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
