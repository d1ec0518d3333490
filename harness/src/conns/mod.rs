//! The `conns` workload: more than 65,535 concurrent connections to one server
//! port ("the 65,535 myth"). A TCP connection is identified by its 4-tuple, not
//! by the server's port, so one listening port takes connections from many
//! client addresses and ports; one client address alone has only ~64k source
//! ports towards one server port, so the client side uses several addresses
//! (198.18.0.1, .2, ... in its namespace). QUIC connections are identified by
//! connection ID: one UDP port takes them all, from a few client sockets.
//!
//! Each phase (TCP, then QUIC) builds its own link (two fresh namespaces),
//! starts quicbench's servers in a child process in the server namespace,
//! opens the connections from this process in the client namespace, holds
//! them, checks them, closes them, stops the server and drops the link (the
//! namespaces vanish). Everything is bounded: a time limit on establishing, a
//! per-handshake and per-check time limit, a failure cap.
//!
//! Exact measurement definitions: docs/conns.md.

pub mod cell;
pub mod client;
pub mod proc;
pub mod quic;
pub mod server;
pub mod sys;
pub mod tcp;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quicbench_netem::link::{Backend, Link, LinkConfig};
use quicbench_netem::{LinkSpec, NetNs};
use quicbench_servers::StatsSnapshot;
use quicbench_wire::CongestionControl;
use serde::{Deserialize, Serialize};

use self::proc::ChildProc;
use self::server::{ChildSpec, ServerProc};
use self::sys::{FdLimits, SockStat, TcpTable};

/// Most connections of one kind a run may ask for.
pub const MAX_CONNS: u64 = 1_000_000;
/// Connections per client address the automatic address count aims at (well
/// under the ~64k source ports of one address).
pub const CONNS_PER_ADDR: u64 = 30_000;
/// Source ports per address with `ip_local_port_range` = 1024..=65535.
pub const PORTS_PER_ADDR: u64 = 65_535 - 1024 + 1;

/// Receive buffer asked for on every UDP socket of the QUIC phase (server and
/// client): thousands of handshakes in flight overflow the kernel's default
/// (208 KiB) and Initials get dropped.
pub const UDP_RECV_BUFFER: usize = 16 << 20;

/// Receive buffer of the QUIC server's socket: larger than the clients', for
/// the close. Tearing tens of thousands of connections down at once slows the
/// server's receive path (measured with perf at 70,000: half its CPU in glibc
/// `_int_malloc`/`unlink_chunk`/`_int_free` while the freed connection state is
/// sorted back into the allocator's bins) to a fraction of the rate the
/// CONNECTION_CLOSEs arrive at; at 16 MiB the backlog overflowed (11,000 to
/// 21,000 closes dropped, those connections ending at the 30 s idle timeout),
/// at 128 MiB nothing is dropped. The kernel charges only what is queued.
pub const SERVER_UDP_RECV_BUFFER: usize = 128 << 20;

/// What to open (also `[workloads.conns]` of a matrix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnsParams {
    /// TCP connections to hold (0: skip TCP).
    #[serde(default = "d_target")]
    pub tcp: u64,
    /// QUIC connections to hold (0: skip QUIC).
    #[serde(default = "d_target")]
    pub quic: u64,
    /// Client addresses (0: enough for ~30,000 connections each, at least 2).
    #[serde(default)]
    pub client_addrs: usize,
    /// QUIC client sockets (quinn endpoints) per client address.
    #[serde(default = "d_quic_sockets")]
    pub quic_sockets_per_addr: usize,
    /// TCP handshakes in flight at once (over all client processes).
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// QUIC handshakes in flight at once. The default stays under the server's
    /// Retry threshold (`quicbench_servers::h3::RETRY_ABOVE_HANDSHAKES`): above
    /// it nearly every client gets a Retry first, and about 1 in 1000 of those
    /// handshakes never completes (docs/conns.md).
    #[serde(default = "d_quic_concurrency")]
    pub quic_concurrency: usize,
    /// How long all connections are held open before the check, seconds.
    #[serde(default = "d_hold")]
    pub hold_s: f64,
    /// Stop opening connections after this long, seconds (per phase).
    #[serde(default = "d_establish_timeout")]
    pub establish_timeout_s: u64,
    /// Time limit of one handshake and of one liveness check, seconds.
    #[serde(default = "d_handshake_timeout")]
    pub handshake_timeout_s: u64,
    /// Congestion controller of both transports (QUIC's and TCP_CONGESTION on
    /// every socket, client and server). Default cubic.
    #[serde(default)]
    pub cc: CongestionControl,
    /// Matrix only: the links (labels) to run on; default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<String>>,
}

fn d_target() -> u64 {
    70_000
}
fn d_quic_sockets() -> usize {
    2
}
fn d_concurrency() -> usize {
    256
}
fn d_quic_concurrency() -> usize {
    48
}
fn d_hold() -> f64 {
    10.0
}
fn d_establish_timeout() -> u64 {
    300
}
fn d_handshake_timeout() -> u64 {
    20
}

impl Default for ConnsParams {
    fn default() -> Self {
        ConnsParams {
            tcp: d_target(),
            quic: d_target(),
            client_addrs: 0,
            quic_sockets_per_addr: d_quic_sockets(),
            concurrency: d_concurrency(),
            quic_concurrency: d_quic_concurrency(),
            hold_s: d_hold(),
            establish_timeout_s: d_establish_timeout(),
            handshake_timeout_s: d_handshake_timeout(),
            cc: CongestionControl::default(),
            links: None,
        }
    }
}

impl ConnsParams {
    /// Refuse what cannot work or would not stop.
    pub fn validate(&self) -> Result<(), String> {
        if self.tcp > MAX_CONNS || self.quic > MAX_CONNS {
            return Err(format!("at most {MAX_CONNS} connections of each kind"));
        }
        if self.tcp == 0 && self.quic == 0 {
            return Err("nothing to do: tcp and quic are both 0".into());
        }
        if self.client_addrs > quicbench_netem::link::addr::MAX_CLIENT_ADDRS {
            return Err(format!(
                "client_addrs {} above {}",
                self.client_addrs,
                quicbench_netem::link::addr::MAX_CLIENT_ADDRS
            ));
        }
        let addrs = self.resolved_addrs() as u64;
        if self.tcp > addrs * PORTS_PER_ADDR {
            return Err(format!(
                "{} TCP connections need at least {} client addresses ({} source ports each)",
                self.tcp,
                self.tcp.div_ceil(PORTS_PER_ADDR),
                PORTS_PER_ADDR
            ));
        }
        if !(1..=100).contains(&self.quic_sockets_per_addr) {
            return Err("quic_sockets_per_addr must be 1..=100".into());
        }
        if !(1..=65_536).contains(&self.concurrency)
            || !(1..=65_536).contains(&self.quic_concurrency)
        {
            return Err("concurrency and quic_concurrency must be 1..=65536".into());
        }
        if !(self.hold_s.is_finite() && (0.0..=3600.0).contains(&self.hold_s)) {
            return Err("hold_s must be 0..=3600".into());
        }
        if !(1..=3600).contains(&self.establish_timeout_s) {
            return Err("establish_timeout_s must be 1..=3600".into());
        }
        if !(1..=600).contains(&self.handshake_timeout_s) {
            return Err("handshake_timeout_s must be 1..=600".into());
        }
        Ok(())
    }

    /// Client addresses used.
    pub fn resolved_addrs(&self) -> usize {
        if self.client_addrs > 0 {
            return self.client_addrs;
        }
        let most = self.tcp.max(self.quic);
        (most.div_ceil(CONNS_PER_ADDR) as usize)
            .clamp(2, quicbench_netem::link::addr::MAX_CLIENT_ADDRS)
    }

    /// Longest a run can take, seconds (both phases, every limit reached).
    pub fn worst_case_s(&self) -> u64 {
        let phase = 30 // link, server start, memory samples
            + self.establish_timeout_s
            + self.handshake_timeout_s
            + self.hold_s.ceil() as u64
            + 60 // server-side tables and stats
            + self.handshake_timeout_s * 2 // check, close
            + 40; // server drain, stop
        phase * (u64::from(self.tcp > 0) + u64::from(self.quic > 0))
    }
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct ConnsConfig {
    pub params: ConnsParams,
    /// A quicbench binary: the server runs as `<exe> conns --server-child ...`.
    pub exe: PathBuf,
    pub backend: Backend,
    /// Progress bars on stderr.
    pub progress: bool,
    /// Link impairments (default: none).
    pub up: LinkSpec,
    pub down: LinkSpec,
    /// Set (e.g. on Ctrl-C): stop establishing and holding at once.
    pub stop: Option<Arc<AtomicBool>>,
}

impl ConnsConfig {
    /// No impairments, automatic backend, no progress bars.
    pub fn new(params: ConnsParams, exe: PathBuf) -> ConnsConfig {
        ConnsConfig {
            params,
            exe,
            backend: Backend::Auto,
            progress: false,
            up: LinkSpec::default(),
            down: LinkSpec::default(),
            stop: None,
        }
    }
}

/// A sysctl set inside one of the run's namespaces.
#[derive(Debug, Clone, Serialize)]
pub struct SysctlSet {
    pub namespace: String,
    pub name: String,
    pub value: String,
    pub ok: bool,
}

/// One pass/fail statement about what the kernel and the server saw.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Memory at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemSample {
    /// VmRSS of the server processes, summed.
    pub server_rss: Option<u64>,
    /// VmRSS of the client processes (or of this process when the client
    /// runs here), summed.
    pub client_rss: Option<u64>,
    /// Kernel slab, system-wide (`Slab:` of /proc/meminfo).
    pub slab: Option<u64>,
    /// /proc/net/sockstat from the server namespace.
    pub sockstat: SockStat,
}

impl MemSample {
    fn take(server_pids: &[u32], client_pids: &[u32], server_ns: &NetNs) -> MemSample {
        let sum =
            |pids: &[u32]| -> Option<u64> { pids.iter().map(|p| sys::rss_bytes(Some(*p))).sum() };
        MemSample {
            server_rss: sum(server_pids),
            client_rss: if client_pids.is_empty() {
                sys::rss_bytes(None)
            } else {
                sum(client_pids)
            },
            slab: sys::slab_bytes(),
            sockstat: sys::sockstat(server_ns),
        }
    }
}

/// Memory per connection: (at hold − before) / connections established.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub before: MemSample,
    pub at_hold: MemSample,
    /// Server process RSS growth per connection, bytes.
    pub server_bytes_per_conn: Option<f64>,
    /// Client process RSS growth per connection, bytes.
    pub client_bytes_per_conn: Option<f64>,
    /// Kernel slab growth per connection (both ends' sockets and everything
    /// else the machine did meanwhile), bytes.
    pub kernel_slab_bytes_per_conn: Option<f64>,
    /// Socket buffer memory growth per connection (sockstat `mem`, pages × 4096;
    /// TCP for TCP, UDP for QUIC), bytes.
    pub sockbuf_bytes_per_conn: Option<f64>,
}

fn per_conn(before: Option<u64>, after: Option<u64>, n: u64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    }
}

/// Quantiles of the per-connection handshake time, ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

fn quantiles(v: &mut [f64]) -> Quantiles {
    if v.is_empty() {
        return Quantiles::default();
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Quantiles {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: v[v.len() - 1],
    }
}

/// One phase (TCP or QUIC).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// `tcp` or `quic`.
    pub kind: String,
    /// What a connection is and how it is established.
    pub what: String,
    pub target: u64,
    pub server: SocketAddr,
    pub client_addrs: Vec<Ipv4Addr>,
    /// Client sockets the connections came from (TCP: one per connection;
    /// QUIC: the quinn endpoints).
    pub client_sockets: u64,
    pub established: u64,
    /// Handshakes that failed (or timed out), by reason.
    pub handshake_failures: u64,
    pub failure_kinds: BTreeMap<String, u64>,
    /// Why establishing stopped: `target reached`, `establish time limit`, `too many failures`.
    pub stopped_by: String,
    /// From the first connect to the last connection established, s.
    pub establish_s: f64,
    /// established / establish_s.
    pub accept_rate_cps: f64,
    /// Time to establish one connection (TCP: connect + first response; QUIC:
    /// the handshake), ms.
    pub handshake_ms: Quantiles,
    /// Connections established per client address (client's bookkeeping).
    pub per_client_addr: BTreeMap<String, u64>,
    /// How long all connections were held before the check, s.
    pub held_s: f64,
    /// Connections that answered the liveness check after the hold.
    pub alive_after_hold: u64,
    pub check_failure_kinds: BTreeMap<String, u64>,
    /// The server namespace's TCP table at the end of the hold (TCP only).
    pub server_table: Option<TcpTable>,
    /// The server's own counters at the end of the hold.
    pub server_stats_at_hold: Option<StatsSnapshot>,
    /// From closing to the server counting no open connection, s.
    pub close_s: f64,
    pub memory: Memory,
    pub checks: Vec<Check>,
    /// (t ms since the first connect, connections established).
    pub timeline: Vec<(f64, f64)>,
    pub sysctls: Vec<SysctlSet>,
    pub backend: String,
    pub server_nofile: (u64, u64),
    /// PIDs of the server processes (gone when the phase returns).
    pub server_pids: Vec<u32>,
    /// PIDs of the client processes (TCP; QUIC runs in this process).
    pub client_pids: Vec<u32>,
    /// Inodes of the phase's two namespaces (gone when the phase returns).
    pub namespace_inodes: Vec<u64>,
    /// Datagrams the kernel dropped for a full socket receive buffer during the
    /// phase (server namespace, client namespace).
    pub udp_rcvbuf_errors: (u64, u64),
    /// The emulated link's ground truth (packets relayed, dropped...).
    pub link_counters: Option<serde_json::Value>,
    pub notes: Vec<String>,
}

impl PhaseReport {
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ConnsReport {
    pub params: ConnsParams,
    pub fd_limits: FdLimits,
    pub phases: Vec<PhaseReport>,
    pub total_s: f64,
    pub machine: String,
}

impl ConnsReport {
    pub fn all_ok(&self) -> bool {
        self.phases.iter().all(|p| p.all_ok())
    }
}

/// Run every phase asked for.
pub fn run(cfg: &ConnsConfig) -> anyhow::Result<ConnsReport> {
    let p = &cfg.params;
    p.validate().map_err(|e| anyhow!("conns: {e}"))?;
    let t0 = Instant::now();
    let fd_limits = sys::raise_nofile(fds_needed(p));
    if cfg.progress {
        eprintln!("conns: {}", fd_limits.note);
    }
    let mut phases = Vec::new();
    for tcp in [true, false] {
        if (if tcp { p.tcp } else { p.quic }) == 0 {
            continue;
        }
        phases.push(run_one(cfg, tcp)?);
    }
    Ok(ConnsReport {
        params: p.clone(),
        fd_limits,
        phases,
        total_s: t0.elapsed().as_secs_f64(),
        machine: machine(),
    })
}

/// One phase: TCP (`tcp`) or QUIC, with the target from `cfg.params`. The
/// caller raises the fd limit ([`sys::raise_nofile`]) first.
pub fn run_one(cfg: &ConnsConfig, tcp: bool) -> anyhow::Result<PhaseReport> {
    let (kind, target) = if tcp {
        (Kind::Tcp, cfg.params.tcp)
    } else {
        (Kind::Quic, cfg.params.quic)
    };
    run_phase(cfg, kind, target).with_context(|| format!("{} phase", kind.name()))
}

/// File descriptors a run of `p` needs per process.
pub fn fds_needed(p: &ConnsParams) -> u64 {
    // Each process (client: this one; server: the child, which inherits the
    // limit) holds one fd per TCP connection, plus slack.
    p.tcp.max(p.quic / 8) + 8192
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "? GiB".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpus} CPUs, {mem}, Linux {kernel}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Quic,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Quic => "quic",
        }
    }
}

/// Samples taken at the hold points, from the server side.
#[derive(Default)]
struct HoldSamples {
    mem: Option<MemSample>,
    table: Option<Result<TcpTable, String>>,
    stats: Option<Result<StatsSnapshot, String>>,
}

/// Where the client phase is.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Every connection is open (or establishing stopped).
    Established,
    /// The hold is over; nothing checked yet.
    EndOfHold,
}

/// What the client side measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ClientOutcome {
    established: u64,
    failed: u64,
    failure_kinds: BTreeMap<String, u64>,
    stopped_by: String,
    establish_s: f64,
    handshake_ms: Vec<f64>,
    per_addr: BTreeMap<String, u64>,
    timeline: Vec<(f64, f64)>,
    held_s: f64,
    alive: u64,
    check_failures: BTreeMap<String, u64>,
    client_sockets: u64,
    close_s: f64,
}

fn run_phase(cfg: &ConnsConfig, kind: Kind, target: u64) -> anyhow::Result<PhaseReport> {
    let p = &cfg.params;
    let n_addrs = p.resolved_addrs();
    let mut lc = LinkConfig::new(cfg.up.clone(), cfg.down.clone());
    lc.client_addrs = n_addrs;
    lc.backend = cfg.backend;
    lc.seed = 1;
    let link = Link::build(lc).context("building the link")?;
    let namespace_inodes: Vec<u64> = [link.client_ns(), link.server_ns()]
        .iter()
        .filter_map(|ns| ns.inode().ok())
        .collect();
    let mut sysctls = Vec::new();
    let mut set = |ns: &NetNs, name: &str, value: &str| {
        let r = ns.set_sysctl(name, value);
        if let Err(e) = &r {
            tracing::warn!("conns: {e}");
        }
        sysctls.push(SysctlSet {
            namespace: ns.label().to_string(),
            name: name.to_string(),
            value: value.to_string(),
            ok: r.is_ok(),
        });
    };
    // Only inside the namespaces this run created.
    set(
        link.client_ns(),
        "net.ipv4.ip_local_port_range",
        "1024 65535",
    );
    set(link.server_ns(), "net.core.somaxconn", "65535");
    set(link.server_ns(), "net.ipv4.tcp_max_syn_backlog", "65535");

    // One process may hold only RLIMIT_NOFILE sockets, and the hard limit
    // cannot be raised without CAP_SYS_RESOURCE: the TCP connections are
    // spread over several server processes sharing the port (SO_REUSEPORT) and
    // several client processes.
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(s, _)| s)
        .unwrap_or(1024);
    let (n_servers, n_clients) = match kind {
        // The kernel spreads connections over the listeners by a hash: headroom.
        Kind::Tcp => (
            client::processes_for(target, soft, 1.15),
            client::processes_for(target, soft, 1.0),
        ),
        Kind::Quic => (1, 0),
    };
    let mut spec = ChildSpec {
        listen: link.server_ip(),
        // hyper's header timeout is also its keep-alive idle timeout: it must
        // outlast establishing plus the hold.
        header_timeout_s: p.establish_timeout_s + p.hold_s.ceil() as u64 + 120,
        max_connections: (target as usize + 1000).max(100_000),
        quic_recv_buffer: Some(SERVER_UDP_RECV_BUFFER),
        http_port: 0,
        reuse_port: n_servers > 1,
        cc: p.cc,
    };
    let mut srvs: Vec<ServerProc> = Vec::new();
    for _ in 0..n_servers {
        let s = ServerProc::start(&cfg.exe, link.server_ns(), &spec)?;
        spec.http_port = s.ready.http_port;
        srvs.push(s);
    }
    let server_pids: Vec<u32> = srvs.iter().map(|s| s.pid()).collect();
    let (port, trust_pem) = match srvs.first() {
        Some(s) => (
            match kind {
                Kind::Tcp => s.ready.http_port,
                Kind::Quic => s.ready.quic_port,
            },
            s.ready.trust_pem.clone(),
        ),
        None => bail!("no server process"),
    };
    let server = SocketAddr::new(link.server_ip(), port);
    let trust = quicbench_wire::tls::certs_from_pem(trust_pem.as_bytes());
    let addrs = link.client_ips_v4();
    let server_ns = link.server_ns();
    let mut clients: Vec<ChildProc> = Vec::new();
    let mut first = 0u64;
    for j in 0..n_clients {
        let share = target / n_clients + u64::from(j < target % n_clients);
        let mut cp = p.clone();
        cp.concurrency = (p.concurrency / n_clients as usize).max(1);
        let cs = client::ClientSpec {
            params: cp,
            addrs: addrs.clone(),
            server,
            first,
            target: share,
        };
        first += share;
        let c = ChildProc::start(
            &cfg.exe,
            link.client_ns(),
            "--client-child",
            &serde_json::to_string(&cs)?,
        )?;
        let line = c.recv(Duration::from_secs(30))?;
        if line.trim() != "ready" {
            bail!("client process said {line:?}");
        }
        clients.push(c);
    }
    let client_pids: Vec<u32> = clients.iter().map(|c| c.pid()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = MemSample::take(&server_pids, &client_pids, server_ns);

    let mut samples = HoldSamples::default();
    let outcome = {
        let samples = &mut samples;
        let srvs = &mut srvs;
        let (server_pids, client_pids) = (&server_pids, &client_pids);
        let mut hook = move |stage: Stage| match stage {
            Stage::Established => {
                std::thread::sleep(Duration::from_millis(500));
                samples.mem = Some(MemSample::take(server_pids, client_pids, server_ns));
            }
            Stage::EndOfHold => {
                if kind == Kind::Tcp {
                    samples.table = Some(
                        sys::tcp_table(server_ns, port, sys::Side::Local)
                            .map_err(|e| e.to_string()),
                    );
                }
                samples.stats = Some(sum_stats(srvs).map_err(|e| format!("{e:#}")));
            }
        };
        let progress = cfg.progress;
        let stop = cfg.stop.clone();
        let p = p.clone();
        let cx = PhaseCtx {
            p: &p,
            addrs: &addrs,
            server,
            target,
            progress,
            stop: &stop,
        };
        match kind {
            Kind::Tcp => tcp_children(&cx, &mut clients, &mut hook)?,
            Kind::Quic => link
                .client_ns()
                .try_run(move || -> anyhow::Result<ClientOutcome> {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()?;
                    // This thread and the runtime's workers (started from it)
                    // are in the client namespace: so is every socket.
                    rt.block_on(quic_phase(&cx, &trust, &mut hook))
                })
                .context("entering the client namespace")??,
        }
    };
    let mut notes: Vec<String> = clients
        .iter_mut()
        .map(|c| format!("client: {}", c.stop(Duration::from_secs(10))))
        .collect();
    drop(clients);
    // Close: until the servers count no open connection.
    let t_close = Instant::now();
    let mut drained = false;
    while t_close.elapsed() < Duration::from_secs(30) {
        match sum_stats(&mut srvs) {
            Ok(s) if s.open_connections == 0 => {
                drained = true;
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break,
        }
    }
    let close_s = outcome.close_s + t_close.elapsed().as_secs_f64();
    notes.extend(srvs.iter_mut().map(|s| s.stop(Duration::from_secs(10))));
    let server_nofile = srvs.first().map(|s| s.ready.nofile).unwrap_or((0, 0));
    drop(srvs);
    let udp_rcvbuf_errors = (
        sys::udp_rcvbuf_errors(link.server_ns()).unwrap_or(0),
        sys::udp_rcvbuf_errors(link.client_ns()).unwrap_or(0),
    );
    let backend = link.backend().to_string();
    let link_counters = serde_json::to_value(link.counters()).ok();
    drop(link);

    let at_hold = samples.mem.unwrap_or_default();
    let n = outcome.established;
    let sock_pages = |s: &SockStat| match kind {
        Kind::Tcp => s.tcp_mem_pages,
        Kind::Quic => s.udp_mem_pages,
    };
    let memory = Memory {
        server_bytes_per_conn: per_conn(before.server_rss, at_hold.server_rss, n),
        client_bytes_per_conn: per_conn(before.client_rss, at_hold.client_rss, n),
        kernel_slab_bytes_per_conn: per_conn(before.slab, at_hold.slab, n),
        sockbuf_bytes_per_conn: per_conn(
            Some(sock_pages(&before.sockstat) * 4096),
            Some(sock_pages(&at_hold.sockstat) * 4096),
            n,
        ),
        before,
        at_hold,
    };
    let table = match samples.table {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            tracing::warn!("conns: reading the server's TCP table: {e}");
            None
        }
        None => None,
    };
    let stats = samples.stats.and_then(|r| r.ok());
    let mut checks = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push(Check {
            name: name.to_string(),
            ok,
            detail,
        })
    };
    check(
        "target reached",
        n == target,
        format!("{n} of {target} established ({})", outcome.stopped_by),
    );
    let used: Vec<_> = outcome.per_addr.values().filter(|c| **c > 0).collect();
    check(
        "several client addresses",
        used.len() >= 2.min(n_addrs) && used.len() == n_addrs.min(n as usize),
        format!(
            "{} of {n_addrs} client addresses carry connections: {:?}",
            used.len(),
            outcome.per_addr
        ),
    );
    check(
        "alive after the hold",
        outcome.alive == n,
        format!(
            "{} of {n} answered after {:.1} s held",
            outcome.alive, outcome.held_s
        ),
    );
    match kind {
        Kind::Tcp => {
            let (est, distinct, per) = table
                .as_ref()
                .map(|t| (t.established, t.distinct_peers, t.per_peer_addr.clone()))
                .unwrap_or_default();
            check(
                "server's TCP table",
                est == n,
                format!(
                    "{est} ESTABLISHED sockets at the server's port {port} (client counted {n})"
                ),
            );
            check(
                "distinct 4-tuples",
                distinct == n,
                format!("{distinct} distinct (client address, client port) pairs at {server}"),
            );
            let most = per.values().copied().max().unwrap_or(0);
            check(
                "per-address spread",
                per.len() == n_addrs.min(n as usize) && most <= PORTS_PER_ADDR,
                format!(
                    "server sees {} client addresses, at most {most} connections from one",
                    per.len()
                ),
            );
        }
        Kind::Quic => {
            let open = stats.as_ref().map(|s| s.open_connections).unwrap_or(0);
            check(
                "server's open QUIC connections",
                open == n,
                format!("the server counts {open} open connections on UDP port {port} (client counted {n})"),
            );
        }
    }
    check(
        "closed",
        drained,
        format!("server open connections back to 0 within {close_s:.1} s"),
    );
    let mut hs = outcome.handshake_ms;
    Ok(PhaseReport {
        kind: kind.name().into(),
        what: match kind {
            Kind::Tcp => "TCP to the cleartext HTTP/1.1 server (hyper): connect from a client \
                          address (IP_BIND_ADDRESS_NO_PORT), GET /bytes/0, keep the connection"
                .into(),
            Kind::Quic => "QUIC (quinn, ALPN h3, full TLS 1.3 handshake, no resumption) to the \
                           HTTP/3 server; many connections per client UDP socket"
                .into(),
        },
        target,
        server,
        client_addrs: addrs,
        client_sockets: outcome.client_sockets,
        established: n,
        handshake_failures: outcome.failed,
        failure_kinds: outcome.failure_kinds,
        stopped_by: outcome.stopped_by,
        establish_s: outcome.establish_s,
        accept_rate_cps: if outcome.establish_s > 0.0 {
            n as f64 / outcome.establish_s
        } else {
            0.0
        },
        handshake_ms: quantiles(&mut hs),
        per_client_addr: outcome.per_addr,
        held_s: outcome.held_s,
        alive_after_hold: outcome.alive,
        check_failure_kinds: outcome.check_failures,
        server_table: table,
        server_stats_at_hold: stats,
        close_s,
        memory,
        checks,
        timeline: outcome.timeline,
        sysctls,
        backend,
        server_nofile,
        server_pids,
        client_pids,
        namespace_inodes,
        link_counters,
        udp_rcvbuf_errors,
        notes,
    })
}

fn bar(progress: bool, len: u64, prefix: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>5} [{elapsed_precise}] {bar:30} {pos}/{len} ({per_sec}) {msg}",
    ) {
        pb.set_style(style);
    }
    pb.set_prefix(prefix.to_string());
    pb
}

/// Establishment: run `open(i)` for i in 0..target, `concurrency` at a time,
/// until done, the deadline, or the failure cap.
pub(crate) struct Established<T> {
    pub conns: Vec<(usize, T)>,
    pub out: ClientOutcome,
}

pub(crate) async fn establish_all<T, F, Fut>(
    p: &ConnsParams,
    addrs: &[Ipv4Addr],
    target: u64,
    pb: &ProgressBar,
    stop: &Option<Arc<AtomicBool>>,
    open: F,
) -> Established<T>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = (usize, Result<(T, Duration), String>)>,
{
    let mut out = ClientOutcome {
        stopped_by: "target reached".into(),
        ..ClientOutcome::default()
    };
    for a in addrs {
        out.per_addr.insert(a.to_string(), 0);
    }
    let max_failures = target / 100 + 100;
    let mut conns = Vec::with_capacity(target as usize);
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(p.establish_timeout_s);
    let mut last_sample = t0;
    let mut s = futures::stream::iter(0..target)
        .map(open)
        .buffer_unordered(p.concurrency);
    loop {
        let next = match tokio::time::timeout_at(deadline, s.next()).await {
            Err(_) => {
                out.stopped_by = "establish time limit".into();
                break;
            }
            Ok(None) => break,
            Ok(Some(x)) => x,
        };
        match next {
            (a, Ok((c, d))) => {
                conns.push((a, c));
                out.established += 1;
                out.handshake_ms.push(d.as_secs_f64() * 1e3);
                if let Some(ip) = addrs.get(a) {
                    *out.per_addr.entry(ip.to_string()).or_default() += 1;
                }
                out.establish_s = t0.elapsed().as_secs_f64();
            }
            (_, Err(e)) => {
                out.failed += 1;
                *out.failure_kinds.entry(e).or_default() += 1;
            }
        }
        pb.inc(1);
        if stopped(stop) {
            out.stopped_by = "interrupted".into();
            break;
        }
        if out.failed > max_failures {
            out.stopped_by = format!("too many failures (over {max_failures})");
            break;
        }
        if last_sample.elapsed() >= Duration::from_millis(250) {
            last_sample = Instant::now();
            out.timeline
                .push((t0.elapsed().as_secs_f64() * 1e3, out.established as f64));
            pb.set_message(format!("{} failed", out.failed));
        }
    }
    out.timeline
        .push((t0.elapsed().as_secs_f64() * 1e3, out.established as f64));
    pb.finish_and_clear();
    Established { conns, out }
}

fn stopped(stop: &Option<Arc<AtomicBool>>) -> bool {
    stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
}

/// Hold for `hold_s`, with a spinner.
async fn hold(
    p: &ConnsParams,
    progress: bool,
    n: u64,
    what: &str,
    stop: &Option<Arc<AtomicBool>>,
) -> f64 {
    let pb = if progress {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_message(format!(
            "holding {n} {what} connections for {:.0} s",
            p.hold_s
        ));
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    } else {
        ProgressBar::hidden()
    };
    let t = Instant::now();
    let end = t + Duration::from_secs_f64(p.hold_s);
    while !stopped(stop) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::time::sleep((end - now).min(Duration::from_millis(100))).await;
    }
    pb.finish_and_clear();
    t.elapsed().as_secs_f64()
}

fn hook_blocking(hook: &mut (dyn FnMut(Stage) + Send), stage: Stage) {
    tokio::task::block_in_place(|| hook(stage));
}

/// What the client side of a phase works with.
struct PhaseCtx<'a> {
    p: &'a ConnsParams,
    addrs: &'a [Ipv4Addr],
    server: SocketAddr,
    target: u64,
    progress: bool,
    stop: &'a Option<Arc<AtomicBool>>,
}

/// The servers' counters, summed over the processes.
fn sum_stats(srvs: &mut [ServerProc]) -> anyhow::Result<StatsSnapshot> {
    let mut t = StatsSnapshot::default();
    for s in srvs.iter_mut() {
        let x = s.stats()?;
        t.tcp_accepted += x.tcp_accepted;
        t.tcp_refused += x.tcp_refused;
        t.quic_accepted += x.quic_accepted;
        t.quic_refused += x.quic_refused;
        t.quic_retries += x.quic_retries;
        t.requests += x.requests;
        t.bad_requests += x.bad_requests;
        t.tls_failures += x.tls_failures;
        t.udp_datagrams += x.udp_datagrams;
        t.udp_garbage += x.udp_garbage;
        t.bytes_sent += x.bytes_sent;
        t.open_connections += x.open_connections;
    }
    Ok(t)
}

/// Merge a child's outcome into the total.
fn merge(total: &mut ClientOutcome, o: ClientOutcome) {
    total.established += o.established;
    total.failed += o.failed;
    for (k, v) in o.failure_kinds {
        *total.failure_kinds.entry(k).or_default() += v;
    }
    if o.stopped_by != "target reached" {
        total.stopped_by = o.stopped_by;
    }
    total.establish_s = total.establish_s.max(o.establish_s);
    total.handshake_ms.extend(o.handshake_ms);
    for (k, v) in o.per_addr {
        *total.per_addr.entry(k).or_default() += v;
    }
}

/// The TCP phase, driven from here, carried by the client processes.
fn tcp_children(
    cx: &PhaseCtx<'_>,
    clients: &mut [ChildProc],
    hook: &mut (dyn FnMut(Stage) + Send),
) -> anyhow::Result<ClientOutcome> {
    let p = cx.p;
    let pb = bar(cx.progress, cx.target, "tcp");
    let mut out = ClientOutcome {
        stopped_by: "target reached".into(),
        ..ClientOutcome::default()
    };
    for c in clients.iter_mut() {
        c.send("go")?;
    }
    let t0 = Instant::now();
    let limit = Duration::from_secs(p.establish_timeout_s + p.handshake_timeout_s + 30);
    let mut progress = vec![0u64; clients.len()];
    let mut done = vec![false; clients.len()];
    let mut last_sample = t0;
    while done.iter().any(|d| !d) {
        if t0.elapsed() > limit {
            bail!("client processes did not finish establishing within {limit:?}");
        }
        let mut idle = true;
        for (j, c) in clients.iter().enumerate() {
            while let Some(line) = c.try_recv() {
                idle = false;
                if let Some(n) = line.strip_prefix("p ") {
                    progress[j] = n.trim().parse().unwrap_or(progress[j]);
                } else if let Some(js) = line.strip_prefix("e ") {
                    let o: ClientOutcome = serde_json::from_str(js)
                        .with_context(|| format!("client {} outcome", c.pid()))?;
                    merge(&mut out, o);
                    done[j] = true;
                }
            }
        }
        pb.set_position(progress.iter().sum());
        if last_sample.elapsed() >= Duration::from_millis(250) {
            last_sample = Instant::now();
            out.timeline.push((
                t0.elapsed().as_secs_f64() * 1e3,
                progress.iter().sum::<u64>() as f64,
            ));
        }
        if idle {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pb.finish_and_clear();
    out.timeline
        .push((t0.elapsed().as_secs_f64() * 1e3, out.established as f64));
    out.client_sockets = out.established;
    hook(Stage::Established);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    out.held_s = rt.block_on(hold(p, cx.progress, out.established, "TCP", cx.stop));
    hook(Stage::EndOfHold);
    let check_limit = Duration::from_secs(p.handshake_timeout_s * 4 + 60);
    for c in clients.iter_mut() {
        c.send("check")?;
    }
    for c in clients.iter() {
        loop {
            let line = c.recv(check_limit)?;
            if let Some(js) = line.strip_prefix("c ") {
                let r: client::CheckOutcome = serde_json::from_str(js)?;
                out.alive += r.alive;
                for (k, v) in r.failures {
                    *out.check_failures.entry(k).or_default() += v;
                }
                break;
            }
        }
    }
    let t = Instant::now();
    for c in clients.iter_mut() {
        c.send("quit")?;
    }
    for c in clients.iter() {
        loop {
            match c.recv(Duration::from_secs(30)) {
                Ok(line) if line.starts_with("q ") => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    out.close_s = t.elapsed().as_secs_f64();
    Ok(out)
}

async fn quic_phase(
    cx: &PhaseCtx<'_>,
    trust: &[rustls_pki_types::CertificateDer<'static>],
    hook: &mut (dyn FnMut(Stage) + Send),
) -> anyhow::Result<ClientOutcome> {
    let PhaseCtx {
        p,
        addrs,
        server,
        target,
        progress,
        stop,
    } = *cx;
    let limit = Duration::from_secs(p.handshake_timeout_s);
    // Keep-alives: establishing 70,000 connections takes longer than the
    // server's 30 s idle timeout.
    let cfg = quic::client_config(trust, Some(Duration::from_secs(10)), p.cc)?;
    let mut eps: Vec<(usize, quinn::Endpoint)> = Vec::new();
    for (a, ip) in addrs.iter().enumerate() {
        for _ in 0..p.quic_sockets_per_addr {
            let bind = SocketAddr::new(IpAddr::V4(*ip), 0);
            let ep =
                quic::endpoint(bind).with_context(|| format!("quinn client endpoint on {bind}"))?;
            eps.push((a, ep));
        }
    }
    if eps.is_empty() {
        bail!("no client address");
    }
    let qp = ConnsParams {
        concurrency: p.quic_concurrency,
        ..p.clone()
    };
    let p = &qp;
    let pb = bar(progress, target, "quic");
    let eps_c = eps.clone();
    let Established { conns, mut out } = establish_all(p, addrs, target, &pb, stop, |i| {
        let (a, ep) = eps_c[(i % eps_c.len() as u64) as usize].clone();
        let cfg = cfg.clone();
        async move { (a, quic::establish(&ep, &cfg, server, limit).await) }
    })
    .await;
    out.client_sockets = eps.len() as u64;
    hook_blocking(hook, Stage::Established);
    out.held_s = hold(p, progress, out.established, "QUIC", stop).await;
    hook_blocking(hook, Stage::EndOfHold);
    let pb = bar(progress, conns.len() as u64, "check");
    let results: Vec<Result<(), String>> = futures::stream::iter(conns.iter())
        .map(|(_, c)| {
            let pb = &pb;
            async move {
                let r = quic::check(c, limit).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(p.concurrency)
        .collect()
        .await;
    pb.finish_and_clear();
    for r in results {
        match r {
            Ok(()) => out.alive += 1,
            Err(e) => *out.check_failures.entry(e).or_default() += 1,
        }
    }
    let t = Instant::now();
    // In batches of 500 every 10 ms. The server's receive path slows down
    // while it tears connections down; its socket buffer
    // (SERVER_UDP_RECV_BUFFER) holds the backlog (docs/conns.md). A
    // connection whose close is lost ends at the 30 s idle timeout.
    for batch in conns.chunks(500) {
        for (_, c) in batch {
            c.close(quinn::VarInt::from_u32(0), b"conns done");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(conns);
    for (_, ep) in &eps {
        let _ = tokio::time::timeout(limit, ep.wait_idle()).await;
    }
    out.close_s = t.elapsed().as_secs_f64();
    Ok(out)
}

/// Human-readable summary.
pub fn summary(r: &ConnsReport) -> String {
    let mut s = String::new();
    let mib = |b: Option<u64>| {
        b.map(|v| format!("{:.1} MiB", v as f64 / 1048576.0))
            .unwrap_or_else(|| "?".into())
    };
    let per = |v: Option<f64>| {
        v.map(|b| format!("{:.0} B", b))
            .unwrap_or_else(|| "?".into())
    };
    s += &format!("quicbench conns on {}\n", r.machine);
    s += &format!("file descriptors: {}\n", r.fd_limits.note);
    for ph in &r.phases {
        s += &format!("\n== {} == {}\n", ph.kind.to_uppercase(), ph.what);
        s += &format!(
            "server {} (one port), backend {}, client addresses {} ({} client sockets), server RLIMIT_NOFILE {}/{}\n",
            ph.server,
            ph.backend,
            ph.client_addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            ph.client_sockets,
            ph.server_nofile.0,
            ph.server_nofile.1
        );
        s += &format!(
            "sysctls (namespaces of this run only): {}\n",
            ph.sysctls
                .iter()
                .map(|c| format!(
                    "{}:{}={}{}",
                    c.namespace,
                    c.name,
                    c.value,
                    if c.ok { "" } else { " (FAILED)" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        s += &format!(
            "established {} / {} in {:.1} s: {:.0} conn/s ({}); handshake failures {}{}\n",
            ph.established,
            ph.target,
            ph.establish_s,
            ph.accept_rate_cps,
            ph.stopped_by,
            ph.handshake_failures,
            if ph.failure_kinds.is_empty() {
                String::new()
            } else {
                format!(" {:?}", ph.failure_kinds)
            }
        );
        s += &format!(
            "time to establish one: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
            ph.handshake_ms.p50, ph.handshake_ms.p90, ph.handshake_ms.p99, ph.handshake_ms.max
        );
        s += &format!("per client address: {:?}\n", ph.per_client_addr);
        s += &format!(
            "held {:.1} s; alive after the hold {} / {}{}; closed in {:.1} s\n",
            ph.held_s,
            ph.alive_after_hold,
            ph.established,
            if ph.check_failure_kinds.is_empty() {
                String::new()
            } else {
                format!(" {:?}", ph.check_failure_kinds)
            },
            ph.close_s
        );
        let m = &ph.memory;
        s += &format!(
            "memory per connection: server process {} (RSS {} -> {}), client process {} (RSS {} -> {}), \
             kernel slab {} (system-wide, both ends), socket buffers {}\n",
            per(m.server_bytes_per_conn),
            mib(m.before.server_rss),
            mib(m.at_hold.server_rss),
            per(m.client_bytes_per_conn),
            mib(m.before.client_rss),
            mib(m.at_hold.client_rss),
            per(m.kernel_slab_bytes_per_conn),
            per(m.sockbuf_bytes_per_conn),
        );
        for c in &ph.checks {
            s += &format!(
                "  [{}] {}: {}\n",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
    }
    s += &format!("\ntotal {:.1} s\n", r.total_s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_validate_and_addrs() {
        let p = ConnsParams::default();
        assert!(p.validate().is_ok());
        assert_eq!(p.resolved_addrs(), 3);
        let small = ConnsParams {
            tcp: 1000,
            quic: 0,
            ..ConnsParams::default()
        };
        assert_eq!(small.resolved_addrs(), 2);
        let too_many = ConnsParams {
            tcp: 200_000,
            client_addrs: 2,
            ..ConnsParams::default()
        };
        assert!(too_many.validate().is_err());
        let none = ConnsParams {
            tcp: 0,
            quic: 0,
            ..ConnsParams::default()
        };
        assert!(none.validate().is_err());
        assert!(p.worst_case_s() > 0);
    }

    #[test]
    fn quantiles_of_samples() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let q = quantiles(&mut v);
        assert_eq!(q.max, 100.0);
        assert!((q.p50 - 50.0).abs() <= 1.0);
        assert_eq!(quantiles(&mut []).max, 0.0);
    }

    #[test]
    fn params_from_toml() {
        let p: ConnsParams = toml::from_str("tcp = 2000\nquic = 500\nhold_s = 1").expect("parses");
        assert_eq!(p.tcp, 2000);
        assert_eq!(p.concurrency, 256);
        assert!(toml::from_str::<ConnsParams>("bogus = 1").is_err());
    }
}
