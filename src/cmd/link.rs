//! `quicbench link` (any server and client over an emulated link),
//! `quicbench calibrate` (is the link what it claims?) and `quicbench doctor`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use quicbench_harness::calibrate::CalibrateOptions;
use quicbench_netem::link::{Backend, Link, LinkConfig};
use quicbench_netem::LinkSpec;

/// The link's shape, shared by `link` and `calibrate`.
#[derive(Debug, Args)]
pub struct LinkShape {
    /// netem spec applied to each direction, e.g. "delay 20ms loss 1%": a
    /// 40 ms RTT and ~2% of round trips losing a packet (printed at the start).
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
    /// Do not measure and take off the user-space path's fixed cost: every
    /// packet then arrives its path's cost (tens of µs) after the configured
    /// delay (docs/link.md, "Delay precision").
    #[arg(long)]
    no_path_compensation: bool,
    /// Read and write the user-space link's devices one packet at a time
    /// (no TSO/USO super-packets). Slower (about 2 Gbit/s against 6-9 here);
    /// the model decides per wire packet either way (docs/link.md,
    /// "Segmentation offload").
    #[arg(long)]
    no_offload: bool,
    /// Pin the user-space relay's threads to this CPU, where the machine has
    /// one to spare: the relay then never competes with the endpoints.
    #[arg(long, value_name = "N")]
    relay_cpu: Option<usize>,
    /// Let the user-space relay spin before its deadlines even while a task
    /// waits for a CPU (by default it then sleeps to the deadline, so no
    /// endpoint waits for its core). To measure what that costs in
    /// precision, or where the relay has a core of its own (--relay-cpu).
    #[arg(long)]
    spin_when_busy: bool,
    /// Let the CPUs sleep deeply while the user-space link is up. By default
    /// they are kept to polling when idle (PM QoS, as cyclictest does), so
    /// waking the relay costs the same every time: a packet's crossing then
    /// varies by µs instead of tens of µs on a VM (docs/link.md, "Delay
    /// precision"). Polling draws power while the link is up.
    #[arg(long)]
    no_idle_poll: bool,
}

impl LinkShape {
    fn config(&self) -> LinkConfig {
        let both = self.spec.clone().unwrap_or_default();
        let mut c = LinkConfig::new(
            self.up.clone().unwrap_or_else(|| both.clone()),
            self.down.clone().unwrap_or(both),
        );
        c.backend = self.backend;
        c.seed = self.seed;
        c.mtu = self.mtu;
        c.pcap_dir = self.pcap.clone();
        c.compensate_path = !self.no_path_compensation;
        c.offload = !self.no_offload;
        c.relay_cpu = self.relay_cpu;
        c.spin_when_busy = self.spin_when_busy;
        c.idle_poll = !self.no_idle_poll;
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
        "quicbench link: backend {} ({}); client {} ⇄ server {}",
        link.backend(),
        link.backend_reason(),
        link.client_ip(),
        link.server_ip(),
    );
    eprintln!(
        "quicbench link: {}",
        quicbench_netem::describe_path(&link.config().up, &link.config().down)
    );
    let mut server = None;
    if let Some(cmd) = &a.server {
        let mut c = link.server_ns().command("sh");
        c.arg("-c").arg(cmd).envs(env.iter().map(|(k, v)| (k, v)));
        // Its own process group, so stopping it also stops what the shell
        // started (a server run without `exec` is a grandchild).
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        server = Some(
            link.server_ns()
                .spawn(c)
                .with_context(|| format!("starting server command {cmd:?}"))?,
        );
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
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = s.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = s.wait();
    }
    eprintln!(
        "quicbench link: counters {}",
        serde_json::to_string_pretty(&link.counters())?
    );
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::from(128),
    })
}

pub fn calibrate(a: CalibrateArgs) -> anyhow::Result<ExitCode> {
    let o = CalibrateOptions {
        pps: a.pps,
        seconds: a.seconds,
        size: a.size,
        ..CalibrateOptions::default()
    };
    let cfg = a.shape.config();
    // Before the probe: what each direction will do (--spec applies to both).
    eprintln!(
        "quicbench calibrate: {}",
        quicbench_netem::describe_path(&cfg.up, &cfg.down)
    );
    let cal = quicbench_harness::calibrate::calibrate(&cfg, o)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cal)?);
    } else {
        println!("quicbench calibrate: {cal}");
    }
    Ok(if cal.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
    let privileges = quicbench_netem::privileges::privileges();
    say(
        privileges.sufficient(),
        &format!("privileges: {privileges}"),
        "run as root (sudo), or allow unprivileged user namespaces (the line above names the setting)",
    );
    let ns = quicbench_netem::ns::can_create();
    say(ns.is_ok(), &format!("network namespaces: {}", match &ns { Ok(()) => "can be created".to_string(), Err(e) => e.to_string() }), "needs CAP_SYS_ADMIN + CAP_NET_ADMIN (root), or a user namespace; in Docker: --cap-add NET_ADMIN --cap-add SYS_ADMIN, seccomp=unconfined");
    ok &= ns.is_ok();
    let tun = quicbench_netem::privileges::tun_access();
    say(
        tun.is_ok(),
        &match &tun {
            Ok(()) => "/dev/net/tun: opens".to_string(),
            Err(e) => e.clone(),
        },
        "",
    );
    ok &= tun.is_ok();
    let sched = quicbench_netem::relay::realtime_available();
    let fifo = sched == "fifo";
    println!(
        "  [{}] relay scheduling: {}",
        if fifo { "ok" } else { "!!" },
        match sched {
            "fifo" => "SCHED_FIFO (real-time)".to_string(),
            s =>
                format!(
                "{} only: SCHED_FIFO needs real root or an RLIMIT_RTPRIO (ulimit -r); the relay \
                 then waits for a core like any thread, which costs delay precision on a busy \
                 machine (docs/rootless.md)",
                if s == "nice" { "nice -10" } else { "normal priority" }
            ),
        }
    );
    let ipcmd = quicbench_netem::tools::command("ip")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    say(
        ipcmd,
        "iproute2 (`ip`, `tc`) installed",
        "apt-get install iproute2",
    );
    ok &= ipcmd;
    let (netem, why) = quicbench_netem::link::kernel_netem_available();
    say(
        netem,
        &format!("kernel sch_netem: {why}"),
        "optional: modprobe sch_netem (the user-space link runs without it)",
    );
    let (b, reason) = quicbench_netem::link::choose_backend(Backend::Auto);
    println!("  backend that `run` will use: {b} — {reason}");
    for w in comparison_warnings() {
        println!("  [!!] {w}");
    }
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(s, h)| format!("{s} (hard {h})"))
        .unwrap_or_default();
    println!("  open-file limit: {nofile}");
    println!(
        "  cores: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{}",
        match (ok, &privileges) {
            (true, quicbench_netem::privileges::Privileges::UserNamespace { .. }) => {
                "ready (no root needed: user namespace): `quicbench run` can run here"
            }
            (true, _) => "ready: `quicbench run` can run here",
            (false, _) => "not ready: fix the [--] lines above",
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Host defaults that would bias a TCP-vs-QUIC comparison if a run relied on
/// them. `run` sets the controller on every socket and QUIC's buffers itself;
/// these warnings are for what other tools (iperf3, curl) on this host get,
/// and for a controller a matrix cannot have.
fn comparison_warnings() -> Vec<String> {
    use quicbench_wire::transport::{available_tcp_congestion, tcp_name};
    use quicbench_wire::CongestionControl;
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    let mut w = Vec::new();
    if let Ok(cc) = read("/proc/sys/net/ipv4/tcp_congestion_control") {
        if cc != "cubic" {
            w.push(format!(
                "host TCP default controller is {cc}, not cubic: quicbench sets the matrix's `cc` on every socket of both transports, but another tool on this host (iperf3, curl) runs {cc} unless told otherwise (iperf3 -C cubic)"
            ));
        }
    }
    match available_tcp_congestion() {
        Ok(list) => {
            let missing: Vec<&str> = [
                CongestionControl::Cubic,
                CongestionControl::NewReno,
                CongestionControl::Bbr,
            ]
            .into_iter()
            .map(tcp_name)
            .filter(|n| !list.iter().any(|a| a == n))
            .collect();
            if !missing.is_empty() {
                w.push(format!(
                    "TCP controllers missing from this kernel: {} (available: {}); cells asking for them are skipped — modprobe tcp_<name> to add one",
                    missing.join(", "),
                    list.join(" ")
                ));
            }
        }
        Err(e) => w.push(format!("cannot read tcp_available_congestion_control: {e}")),
    }
    if let Ok(v) = read("/proc/sys/net/core/rmem_max") {
        if v.parse::<u64>().unwrap_or(0) < (4 << 20) && !nix::unistd::geteuid().is_root() {
            w.push(format!(
                "net.core.rmem_max is {v} bytes and this is not root: QUIC sockets cannot get the {} MiB buffers they ask for, and a fast link may drop datagrams in the receive buffer (each cell reports it as unaccounted_drops)",
                quicbench_wire::transport::QUIC_SOCKET_BUFFER >> 20
            ));
        }
    }
    if let Ok(v) = read("/proc/sys/net/ipv4/tcp_slow_start_after_idle") {
        if v == "1" {
            w.push("net.ipv4.tcp_slow_start_after_idle = 1: an idle keep-alive TCP connection restarts from the initial window (quinn does not); paced workloads record it in each cell's transport profile".into());
        }
    }
    w
}
