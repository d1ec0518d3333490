//! The emulated link: a client and a server network namespace joined by an
//! impaired path, user space (two TUN devices and the timed relay) or kernel
//! (a veth pair with tc-netem qdiscs).
//!
//! Addressing (all in the benchmarking ranges, see [`addr`]):
//!
//! | | IPv4 | IPv6 |
//! | --- | --- | --- |
//! | client address i (0-based) | 198.18.0.(1+i) | 2001:2::(1+i) |
//! | server | 198.18.1.1 | 2001:2:0:1::1 |
//! | NAT external pool | 198.19.0.0/16 | 2001:2:0:2::/64 |
//!
//! Each namespace routes 198.18.0.0/15 and 2001:2::/48 through its link
//! device (`qbc` in the client namespace, `qbs` in the server's).

mod kernel_backend;
mod kernel_nat;
pub mod offload;
pub mod path_cost;

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::flows::{FlowTable, FlowsConfig, FlowsReport};
use crate::model::LinkModel;
use crate::nat::{Nat, NatCounters};
use crate::ns::{NetNs, NsError};
use crate::pcap::PcapWriter;
use crate::relay::{Clock, Dir, DirPcap, DirShared, DirectionCfg, NatShared, Relay};
use crate::spec::LinkSpec;
use crate::tun::Tun;
pub use path_cost::PathCost;

pub use crate::nat::{Binding, NatSchedule, RebindEvent, RebindKind};
pub use crate::relay::{DirCounters, RelayCounters, RelayPriority};
pub use kernel_backend::VethOffloads;

/// Addresses of the link (benchmarking ranges only).
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The client's first IPv4 address; address i is this plus i.
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    /// The client's first IPv6 address; address i is this plus i.
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
    pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
    /// Routed through the link in both namespaces.
    pub const ROUTE_V4: &str = "198.18.0.0/15";
    pub const ROUTE_V6: &str = "2001:2::/48";
    /// Most client addresses (198.18.0.1 ..= 198.18.0.250).
    pub const MAX_CLIENT_ADDRS: usize = 250;

    pub fn client_v4(i: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(CLIENT_V4) + i as u32)
    }
    pub fn client_v6(i: usize) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(CLIENT_V6) + i as u128)
    }
}

/// Interface name of the link in the client namespace.
pub const CLIENT_DEV: &str = "qbc";
/// Interface name of the link in the server namespace.
pub const SERVER_DEV: &str = "qbs";

/// Which implementation carries the link.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Kernel netem where the kernel has it (and no user-space-only feature is
    /// asked for), else user space.
    #[default]
    Auto,
    UserSpace,
    Kernel,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::UserSpace => "userspace",
            Backend::Kernel => "kernel",
        })
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "userspace" | "user-space" | "user" | "tun" => Ok(Backend::UserSpace),
            "kernel" | "netem" => Ok(Backend::Kernel),
            other => Err(format!(
                "unknown backend {other:?}: expected auto, userspace or kernel"
            )),
        }
    }
}

/// Whether the kernel can run tc-netem here, and why (probed once per process:
/// the probe may start `tc` in a throwaway namespace).
pub fn kernel_netem_available() -> (bool, String) {
    static PROBE: std::sync::OnceLock<(bool, String)> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            let p = crate::kernel::netem_available();
            (p.available, p.reason)
        })
        .clone()
}

/// Resolve `Auto` for this machine: the backend used and why.
pub fn choose_backend(requested: Backend) -> (Backend, String) {
    match requested {
        Backend::UserSpace => (Backend::UserSpace, "user-space TUN relay requested".into()),
        Backend::Kernel => (Backend::Kernel, "kernel tc-netem requested".into()),
        Backend::Auto => match kernel_netem_available() {
            (true, why) => (
                Backend::Kernel,
                format!("kernel tc-netem on a veth pair: {why}"),
            ),
            (false, why) => (Backend::UserSpace, format!("user-space TUN relay: {why}")),
        },
    }
}

/// How to build a link.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkConfig {
    /// client -> server impairments.
    pub up: LinkSpec,
    /// server -> client impairments.
    pub down: LinkSpec,
    /// Seeds both directions' models (the down model gets a derived seed).
    pub seed: u64,
    /// MTU of the link devices, 1280..=65535.
    pub mtu: u32,
    pub backend: Backend,
    /// Scheduled NAT rebinds (both backends; the kernel's needs `nft`); times
    /// from `Link::build`.
    pub nat: Option<NatSchedule>,
    /// Capture `{up,down}-{in,out}.pcap` here (user space only).
    pub pcap_dir: Option<PathBuf>,
    /// Client addresses per family (1..=250).
    pub client_addrs: usize,
    /// Scheduling of the relay threads (user space).
    pub relay_priority: RelayPriority,
    /// Per-flow metrics on the link (user space; `max_flows: 0` turns them
    /// off). See [`Link::flows`].
    #[serde(default)]
    pub flows: FlowsConfig,
    /// User space: measure the path's fixed cost when the link is built and
    /// take it off every departure ([`path_cost`]). On by default.
    #[serde(default = "yes")]
    pub compensate_path: bool,
    /// User space: segmentation offload on the TUN devices, so a read or
    /// write carries up to 64 KB while the model still decides per wire
    /// packet (`gso`). On by default; off reads one packet per syscall.
    #[serde(default = "yes")]
    pub offload: bool,
    /// User space: pin both relay threads to this CPU (where a machine has
    /// cores to spare, so the relay never competes with the endpoints).
    /// None: the scheduler places them.
    #[serde(default)]
    pub relay_cpu: Option<usize>,
    /// User space: spin before deadlines even while a task waits for a CPU
    /// (by default the relay then sleeps to the deadline instead, so no
    /// endpoint waits for its core: `relay.spin_yielded`). For measuring
    /// what yielding costs in precision, or with a core to spare.
    #[serde(default)]
    pub spin_when_busy: bool,
    /// User space: keep the CPUs out of deep idle states while the link is up
    /// (`cpu::IdlePoll`), so the relay's wake-ups, and with them each
    /// packet's crossing, cost the same every time. On by default; needs
    /// root (without it the link says so and runs without).
    #[serde(default = "yes")]
    pub idle_poll: bool,
}

fn yes() -> bool {
    true
}

impl LinkConfig {
    pub fn new(up: LinkSpec, down: LinkSpec) -> Self {
        LinkConfig {
            up,
            down,
            seed: 0,
            mtu: 1500,
            backend: Backend::Auto,
            nat: None,
            pcap_dir: None,
            client_addrs: 1,
            relay_priority: RelayPriority::default(),
            flows: FlowsConfig::default(),
            compensate_path: true,
            offload: true,
            relay_cpu: None,
            spin_when_busy: false,
            idle_poll: true,
        }
    }

    /// The same impairments both ways.
    pub fn symmetric(spec: LinkSpec) -> Self {
        Self::new(spec.clone(), spec)
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self::new(LinkSpec::default(), LinkSpec::default())
    }
}

/// What went wrong building or driving a link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Ns(#[from] NsError),
    #[error("{what}: {source}")]
    Setup { what: String, source: io::Error },
    #[error("bad link configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Unsupported(String),
}

fn setup(what: impl Into<String>) -> impl FnOnce(io::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Setup { what, source }
}

/// Counters of both directions, serialisable into the results.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkCounters {
    pub backend: String,
    pub up: DirCounters,
    pub down: DirCounters,
    pub nat: NatCounters,
    /// Kernel backend: the veth ends' offload state, read back after the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offloads: Option<VethOffloads>,
}

impl fmt::Display for RebindEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RebindKind::Port => "port",
            RebindKind::Address => "address",
        };
        write!(
            f,
            "rebind #{} ({kind}{}) at {:.3} ms: {} port+{} -> {} port+{} ({} flows forgotten)",
            self.generation,
            if self.scheduled { ", scheduled" } else { "" },
            self.at_ns as f64 / 1e6,
            self.old.v4,
            self.old.port_shift,
            self.new.v4,
            self.new.port_shift,
            self.flows_forgotten
        )
    }
}

/// One direction's queue at an instant (see [`Link::standing_queue`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirQueue {
    /// Packets inside the emulator (queued or in their delay).
    pub packets: u64,
    /// Extra wait beyond the base delay for a packet arriving now.
    pub wait_ns: u64,
}

/// Both directions' queues at an instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StandingQueue {
    pub up: DirQueue,
    pub down: DirQueue,
}

struct UserSpace {
    // Field order matters for drop: the relay threads stop before the TUN
    // devices close.
    relay: Option<Relay>,
    up: Arc<Mutex<DirShared>>,
    down: Arc<Mutex<DirShared>>,
    nat: Arc<NatShared>,
    flows: Option<Arc<Mutex<FlowTable>>>,
    /// The path's fixed cost taken off departures, or why it is not.
    path_cost: Result<PathCost, String>,
    _tuns: (Arc<Tun>, Arc<Tun>),
    /// Held while the link is up, or why not (`cpu::IdlePoll`).
    idle_poll: Result<crate::cpu::IdlePoll, String>,
}

struct KernelSide {
    offloads: VethOffloads,
    nat: Arc<kernel_nat::KernelNat>,
    /// Fires the NAT schedule (inside the client namespace).
    scheduler: Option<std::thread::JoinHandle<io::Result<()>>>,
}

enum Inner {
    User(UserSpace),
    Kernel(KernelSide),
}

/// A built link. Dropping it stops the relay, closes the devices, kills the
/// processes started with `NetNs::spawn` and lets both namespaces vanish.
pub struct Link {
    inner: Inner,
    backend: Backend,
    reason: String,
    clock: Clock,
    cfg: LinkConfig,
    // Namespaces last: everything inside them is gone by then.
    client_ns: NetNs,
    server_ns: NetNs,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("backend", &self.backend)
            .field("reason", &self.reason)
            .field("client_ns", &self.client_ns)
            .field("server_ns", &self.server_ns)
            .finish()
    }
}

impl Link {
    /// Create both namespaces, the path between them and (user space) the relay.
    pub fn build(cfg: LinkConfig) -> Result<Link, LinkError> {
        if let Some(cpu) = cfg.relay_cpu {
            let allowed = crate::cpu::allowed_cpus();
            if !allowed.contains(&cpu) {
                return Err(LinkError::Config(format!(
                    "relay CPU {cpu}: not one this process may run on ({allowed:?})"
                )));
            }
        }
        if !(1280..=65_535).contains(&cfg.mtu) {
            return Err(LinkError::Config(format!(
                "mtu {} outside 1280..=65535 (IPv6 needs at least 1280)",
                cfg.mtu
            )));
        }
        if cfg.client_addrs == 0 || cfg.client_addrs > addr::MAX_CLIENT_ADDRS {
            return Err(LinkError::Config(format!(
                "client_addrs {} outside 1..={}",
                cfg.client_addrs,
                addr::MAX_CLIENT_ADDRS
            )));
        }
        let userspace_only = cfg.pcap_dir.is_some();
        let (backend, reason) = match cfg.backend {
            Backend::Auto if userspace_only => (
                Backend::UserSpace,
                "pcap capture requested: user-space TUN relay".to_string(),
            ),
            b => choose_backend(b),
        };
        let (backend, reason) = match (cfg.backend, backend, &cfg.nat) {
            // Scheduled rebinds on the kernel backend need nft: where it is
            // missing, auto keeps the user-space NAT.
            (Backend::Auto, Backend::Kernel, Some(_)) => match kernel_nat::nft_available() {
                Ok(()) => (backend, reason),
                Err(e) => (
                    Backend::UserSpace,
                    format!("NAT rebinding requested and {e}: user-space TUN relay"),
                ),
            },
            _ => (backend, reason),
        };
        if backend == Backend::Kernel && userspace_only {
            return Err(LinkError::Unsupported(
                "pcap capture needs the user-space backend".into(),
            ));
        }
        // drop-nth beyond the first packet is user-space only: auto falls
        // back, an explicit kernel request is refused.
        let (backend, reason) = match (cfg.backend, backend) {
            (Backend::Auto, Backend::Kernel) => match kernel_backend::check_drop_nth(&cfg) {
                Ok(()) => (backend, reason),
                Err(e) => (Backend::UserSpace, format!("{e}: user-space TUN relay")),
            },
            _ => (backend, reason),
        };
        if backend == Backend::Kernel {
            kernel_backend::check_drop_nth(&cfg).map_err(LinkError::Unsupported)?;
        }
        if backend == Backend::Kernel && cfg.nat.is_some() {
            kernel_nat::nft_available().map_err(LinkError::Unsupported)?;
        }
        let clock = Clock::new();
        let client_ns = NetNs::with_label("client")?;
        let server_ns = NetNs::with_label("server")?;
        let inner = match backend {
            Backend::Kernel => {
                let offloads = kernel_backend::build(&cfg, &client_ns, &server_ns)?;
                let nat = kernel_nat::KernelNat::new(CLIENT_DEV, new_nat(&cfg), clock);
                let scheduler = match cfg.nat.clone() {
                    None => None,
                    Some(sched) => {
                        let n = nat.clone();
                        Some(
                            client_ns
                                .spawn_thread("nat-schedule", move || n.run_schedule(&sched))
                                .map_err(setup("starting the NAT schedule thread"))?,
                        )
                    }
                };
                Inner::Kernel(KernelSide {
                    offloads,
                    nat,
                    scheduler,
                })
            }
            _ => Inner::User(build_userspace(&cfg, &client_ns, &server_ns, clock)?),
        };
        tracing::debug!(%backend, %reason, "link built");
        Ok(Link {
            inner,
            backend,
            reason,
            clock,
            cfg,
            client_ns,
            server_ns,
        })
    }

    pub fn client_ns(&self) -> &NetNs {
        &self.client_ns
    }

    pub fn server_ns(&self) -> &NetNs {
        &self.server_ns
    }

    /// The client's first IPv4 address.
    pub fn client_ip(&self) -> IpAddr {
        IpAddr::V4(addr::CLIENT_V4)
    }

    /// The client's first IPv6 address.
    pub fn client_ip6(&self) -> IpAddr {
        IpAddr::V6(addr::CLIENT_V6)
    }

    /// All client IPv4 addresses (`LinkConfig::client_addrs` of them).
    pub fn client_ips_v4(&self) -> Vec<Ipv4Addr> {
        (0..self.cfg.client_addrs).map(addr::client_v4).collect()
    }

    /// All client IPv6 addresses.
    pub fn client_ips_v6(&self) -> Vec<Ipv6Addr> {
        (0..self.cfg.client_addrs).map(addr::client_v6).collect()
    }

    pub fn server_ip(&self) -> IpAddr {
        IpAddr::V4(addr::SERVER_V4)
    }

    pub fn server_ip6(&self) -> IpAddr {
        IpAddr::V6(addr::SERVER_V6)
    }

    pub fn mtu(&self) -> u32 {
        self.cfg.mtu
    }

    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why this backend was chosen.
    pub fn backend_reason(&self) -> &str {
        &self.reason
    }

    /// The link clock (ns since `build`), on which counters and rebind events are stamped.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Ground truth of both directions so far.
    pub fn counters(&self) -> LinkCounters {
        match &self.inner {
            Inner::User(u) => {
                let snap = |s: &Arc<Mutex<DirShared>>| {
                    let (mut c, tid) = {
                        let g = lock(s);
                        (g.snapshot(), g.tid)
                    };
                    // Read outside the lock: the relay keeps moving packets.
                    if let Some(t) = (tid > 0).then(|| crate::cpu::thread(tid)).flatten() {
                        c.relay.cpu_ns = t.cpu_ns;
                        c.relay.run_wait_ns = t.wait_ns;
                    }
                    c
                };
                LinkCounters {
                    backend: self.backend.to_string(),
                    up: snap(&u.up),
                    down: snap(&u.down),
                    nat: u.nat.lock().counters().clone(),
                    offloads: None,
                }
            }
            Inner::Kernel(k) => LinkCounters {
                backend: self.backend.to_string(),
                up: kernel_backend::counters(&self.client_ns, CLIENT_DEV, &self.cfg.up),
                down: kernel_backend::counters(&self.server_ns, SERVER_DEV, &self.cfg.down),
                nat: self
                    .client_ns
                    .try_run(|| k.nat.counters())
                    .unwrap_or_default(),
                offloads: Some(k.offloads.clone()),
            },
        }
    }

    /// User space: the packets the relay holds now (up, down), waiting for
    /// their departure; a lock of each direction, nothing read from the
    /// system. None on the kernel backend.
    pub fn queued(&self) -> Option<(u64, u64)> {
        match &self.inner {
            Inner::User(u) => Some((lock(&u.up).relay.queued, lock(&u.down).relay.queued)),
            Inner::Kernel(_) => None,
        }
    }

    /// User space: the path's fixed cost measured at build and taken off every
    /// departure, or why not. Kernel backend: Err (netem's delay is not
    /// compensated).
    pub fn path_cost(&self) -> Result<PathCost, String> {
        match &self.inner {
            Inner::User(u) => u.path_cost.clone(),
            Inner::Kernel(_) => {
                Err("kernel backend: tc-netem's delay is applied as configured".into())
            }
        }
    }

    /// User space: whether the CPUs are kept out of deep idle states while
    /// the link is up (`cpu::IdlePoll`), or why not. Kernel backend: Err.
    pub fn idle_poll(&self) -> Result<(), String> {
        match &self.inner {
            Inner::User(u) => u.idle_poll.as_ref().map(|_| ()).map_err(Clone::clone),
            Inner::Kernel(_) => Err("kernel backend: no relay to wake".into()),
        }
    }

    /// Kernel backend: the veth ends' offload state (None in user space, where
    /// the TUN devices hand the relay single packets).
    pub fn offloads(&self) -> Option<&VethOffloads> {
        match &self.inner {
            Inner::Kernel(k) => Some(&k.offloads),
            Inner::User(_) => None,
        }
    }

    /// Rebind the client's NAT mapping now (both backends; the kernel's runs
    /// `nft` in the client namespace).
    pub fn rebind_now(&self, kind: RebindKind) -> Result<RebindEvent, LinkError> {
        match &self.inner {
            Inner::User(u) => {
                let mut nat = u.nat.lock();
                let ev = nat.rebind(kind, self.clock.now_ns(), false);
                u.nat.generation.store(ev.generation, Ordering::Release);
                Ok(ev)
            }
            Inner::Kernel(k) => self
                .client_ns
                .try_run(|| k.nat.rebind(kind, false))
                .map_err(setup("entering the client namespace"))?
                .map_err(setup("rebinding the kernel NAT (nftables)")),
        }
    }

    /// Arm (drop) or disarm (only count) the `drop-nth` of both directions
    /// (see [`crate::chosen`]): a harness disarms it around traffic it does not
    /// want hit (warm-up connections). Returns whether any direction has
    /// `drop-nth`. The kernel backend's nftables rule is always armed: it
    /// answers `Unsupported`.
    pub fn arm_chosen_drops(&self, armed: bool) -> Result<bool, LinkError> {
        match &self.inner {
            Inner::User(u) => {
                let mut any = false;
                for s in [&u.up, &u.down] {
                    let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
                    any |= g.model.set_chosen_armed(armed);
                }
                Ok(any)
            }
            Inner::Kernel(_) => Err(LinkError::Unsupported(
                "the kernel backend's drop-nth (an nftables rule) cannot be disarmed".into(),
            )),
        }
    }

    /// Every rebind so far, in order.
    pub fn rebind_events(&self) -> Vec<RebindEvent> {
        match &self.inner {
            Inner::User(u) => u.nat.lock().events().to_vec(),
            Inner::Kernel(k) => k.nat.events(),
        }
    }

    /// Per-flow metrics measured on the link since it was built (or since
    /// [`Link::reset_flows`]): every TCP/UDP flow's packets and bytes offered,
    /// delivered and dropped per direction, TCP and QUIC milestones,
    /// retransmissions and a goodput curve, the same for every endpoint
    /// implementation (see [`crate::flows`]). Times are on the link clock
    /// ([`Link::now_ns`]).
    ///
    /// None on the kernel backend, which has no per-packet hook (tc-netem
    /// only counts; a capture could later provide one), and when
    /// `LinkConfig::flows.max_flows` is 0.
    pub fn flows(&self) -> Option<FlowsReport> {
        let Inner::User(u) = &self.inner else {
            return None;
        };
        let t = u.flows.as_ref()?;
        let now = self.clock.now_ns();
        Some(t.lock().unwrap_or_else(|p| p.into_inner()).report(now))
    }

    /// Start a new measurement phase of [`Link::flows`] now (between a
    /// cell's warm-up and its measurement, say): counts, times and curves
    /// restart from zero; known flows keep their client and server roles.
    /// Returns the link-clock time of the reset (None where `flows` is None).
    pub fn reset_flows(&self) -> Option<u64> {
        let Inner::User(u) = &self.inner else {
            return None;
        };
        let t = u.flows.as_ref()?;
        let now = self.clock.now_ns();
        t.lock().unwrap_or_else(|p| p.into_inner()).reset(now);
        Some(now)
    }

    /// The standing queue of each direction now (user space only; None on the
    /// kernel backend): what a packet arriving now would find ahead of it.
    pub fn standing_queue(&self) -> Option<StandingQueue> {
        let Inner::User(u) = &self.inner else {
            return None;
        };
        let now = self.clock.now_ns();
        let one = |s: &Arc<Mutex<DirShared>>| {
            let (packets, wait_ns) = s
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .model
                .standing_queue(now);
            DirQueue {
                packets: packets as u64,
                wait_ns,
            }
        };
        Some(StandingQueue {
            up: one(&u.up),
            down: one(&u.down),
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        match &mut self.inner {
            // Join the relay threads (which flush the captures) before the
            // devices and namespaces go.
            Inner::User(u) => {
                u.relay.take();
            }
            Inner::Kernel(k) => {
                k.nat.stop();
                if let Some(h) = k.scheduler.take() {
                    let _ = h.join();
                }
            }
        }
    }
}

/// The NAT's bookkeeping for the client's addresses.
fn new_nat(cfg: &LinkConfig) -> Nat {
    let n = cfg.client_addrs;
    Nat::new(
        (0..n).map(addr::client_v4).collect(),
        (0..n).map(addr::client_v6).collect(),
    )
}

/// The two TUN devices, offloading alike (both or neither: the relay writes
/// what it reads).
fn create_tuns(
    client_ns: &NetNs,
    server_ns: &NetNs,
    offload: bool,
) -> Result<(Tun, Tun), LinkError> {
    let create = |ns: &NetNs, dev: &'static str, side: &str, offload: bool| {
        ns.try_run(move || {
            if offload {
                Tun::create_offload(dev)
            } else {
                Tun::create(dev)
            }
        })
        .map_err(setup(format!("entering the {side} namespace")))?
        .map_err(setup(format!("creating the {side} TUN device")))
    };
    let c = create(client_ns, CLIENT_DEV, "client", offload)?;
    let s = create(server_ns, SERVER_DEV, "server", offload)?;
    if c.offload() == s.offload() {
        return Ok((c, s));
    }
    tracing::warn!(
        "TUN offloads differ ({} and {}): both devices without",
        c.offload().name(),
        s.offload().name()
    );
    drop((c, s));
    Ok((
        create(client_ns, CLIENT_DEV, "client", false)?,
        create(server_ns, SERVER_DEV, "server", false)?,
    ))
}

/// The tap that dates packets as the stack hands them to `dev` (`tap.rs`);
/// None, said once per process, where packet sockets are refused: the relay
/// then dates them by its read, as it did before.
fn open_tap(ns: &NetNs, dev: &'static str) -> Option<crate::tap::TxTap> {
    match ns.try_run(move || crate::tap::TxTap::open(dev)) {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) | Err(e) => {
            static SAID: AtomicBool = AtomicBool::new(false);
            warn_once(&SAID, || {
                format!(
                    "packets are dated when the relay reads them, its wake-up included \
                     (relay.arrivals_tapped 0): {e}"
                )
            });
            None
        }
    }
}

/// Warn once per process (a run builds a link per cell).
fn warn_once(said: &AtomicBool, msg: impl FnOnce() -> String) {
    if !said.swap(true, Ordering::Relaxed) {
        tracing::warn!("{}", msg());
    }
}

fn build_userspace(
    cfg: &LinkConfig,
    client_ns: &NetNs,
    server_ns: &NetNs,
    clock: Clock,
) -> Result<UserSpace, LinkError> {
    let (tun_c, tun_s) = create_tuns(client_ns, server_ns, cfg.offload)?;
    let (tap_c, tap_s) = (
        open_tap(client_ns, CLIENT_DEV),
        open_tap(server_ns, SERVER_DEV),
    );
    // Before the path cost is measured: it is measured as the link will run.
    let idle_poll = if cfg.idle_poll {
        crate::cpu::IdlePoll::hold().inspect_err(|why| {
            static SAID: AtomicBool = AtomicBool::new(false);
            warn_once(&SAID, || {
                format!(
                    "idle CPUs may sleep deeply while links are up, so the relay's wake-ups vary \
                     (relay.idle_poll false): {why}"
                )
            })
        })
    } else {
        Err("turned off (LinkConfig::idle_poll)".into())
    };

    let n = cfg.client_addrs;
    let mut client = format!(
        "link set dev {CLIENT_DEV} mtu {mtu}\nlink set dev {CLIENT_DEV} addrgenmode none\n",
        mtu = cfg.mtu
    );
    for i in 0..n {
        client += &format!("addr add {}/32 dev {CLIENT_DEV}\n", addr::client_v4(i));
        client += &format!(
            "addr add {}/128 dev {CLIENT_DEV} nodad\n",
            addr::client_v6(i)
        );
    }
    client += &format!(
        "link set dev {CLIENT_DEV} up\nroute add {} dev {CLIENT_DEV} src {}\nroute add {} dev {CLIENT_DEV} src {}\n",
        addr::ROUTE_V4,
        addr::CLIENT_V4,
        addr::ROUTE_V6,
        addr::CLIENT_V6
    );
    let server = format!(
        "link set dev {SERVER_DEV} mtu {mtu}\nlink set dev {SERVER_DEV} addrgenmode none\n\
         addr add {s4}/32 dev {SERVER_DEV}\naddr add {s6}/128 dev {SERVER_DEV} nodad\n\
         link set dev {SERVER_DEV} up\nroute add {r4} dev {SERVER_DEV} src {s4}\n\
         route add {r6} dev {SERVER_DEV} src {s6}\n",
        mtu = cfg.mtu,
        s4 = addr::SERVER_V4,
        s6 = addr::SERVER_V6,
        r4 = addr::ROUTE_V4,
        r6 = addr::ROUTE_V6,
    );
    ip_batch(client_ns, &client)?;
    ip_batch(server_ns, &server)?;

    let mut pcaps = [DirPcap::default(), DirPcap::default()];
    if let Some(dir) = &cfg.pcap_dir {
        std::fs::create_dir_all(dir).map_err(setup(format!("creating {}", dir.display())))?;
        for (i, d) in ["up", "down"].iter().enumerate() {
            let open = |stage: &str| {
                let p = dir.join(format!("{d}-{stage}.pcap"));
                PcapWriter::create(&p).map_err(setup(format!("creating {}", p.display())))
            };
            pcaps[i].input = Some(open("in")?);
            pcaps[i].output = Some(open("out")?);
        }
    }
    let [pcap_up, pcap_down] = pcaps;

    // A distinct, fixed derivation so the directions draw independent streams.
    let down_seed = cfg.seed ^ 0x9e37_79b9_7f4a_7c15;
    let models = || {
        (
            LinkModel::new(&cfg.up, cfg.seed),
            LinkModel::new(&cfg.down, down_seed),
        )
    };
    // Measuring the path first: the probes' own models until then.
    let (up0, down0) = if cfg.compensate_path {
        let probe: LinkSpec = path_cost::PROBE_SPEC
            .parse()
            .map_err(|e| LinkError::Config(format!("the path-cost probes' spec: {e}")))?;
        (LinkModel::new(&probe, 0), LinkModel::new(&probe, 0))
    } else {
        models()
    };
    let up = Arc::new(Mutex::new(DirShared::new(up0)));
    let down = Arc::new(Mutex::new(DirShared::new(down0)));
    let nat = Arc::new(NatShared::new(new_nat(cfg), cfg.nat.clone()));
    let flows =
        (cfg.flows.max_flows > 0).then(|| Arc::new(Mutex::new(FlowTable::new(cfg.flows.clone()))));
    let tun_c = Arc::new(tun_c);
    let tun_s = Arc::new(tun_s);
    let probing = Arc::new(AtomicBool::new(cfg.compensate_path));
    // Room for the largest wire packet the devices can hand us (super-packets
    // are read elsewhere and split into buffers of this size).
    let buf_len = cfg.mtu as usize + 64 + tun_c.vnet_hdr_len();
    let relay = Relay::start(
        DirectionCfg {
            dir: Dir::Up,
            src: tun_c.clone(),
            dst: tun_s.clone(),
            shared: up.clone(),
            nat: nat.clone(),
            pcap: pcap_up,
            tap: tap_c,
            clock,
            buf_len,
            priority: cfg.relay_priority,
            cpu: cfg.relay_cpu,
            spin_when_busy: cfg.spin_when_busy,
            flows: flows.clone(),
            probing: probing.clone(),
        },
        DirectionCfg {
            dir: Dir::Down,
            src: tun_s.clone(),
            dst: tun_c.clone(),
            shared: down.clone(),
            nat: nat.clone(),
            pcap: pcap_down,
            tap: tap_s,
            clock,
            buf_len,
            priority: cfg.relay_priority,
            cpu: cfg.relay_cpu,
            spin_when_busy: cfg.spin_when_busy,
            flows: flows.clone(),
            probing: probing.clone(),
        },
    )
    .map_err(setup("starting the relay threads"))?;
    for d in [&up, &down] {
        lock(d).relay.idle_poll = idle_poll.is_ok();
    }
    let path_cost = if cfg.compensate_path {
        let measured = path_cost::measure(
            client_ns,
            server_ns,
            IpAddr::V4(addr::CLIENT_V4),
            IpAddr::V4(addr::SERVER_V4),
            clock,
            &up,
            &down,
        );
        let (c_up, c_down) = match &measured {
            Ok(c) => (c.up_ns, c.down_ns),
            Err(why) => {
                tracing::warn!("the link's path cost is not compensated: {why}");
                (0, 0)
            }
        };
        let (m_up, m_down) = models();
        lock(&up).restart(m_up, c_up);
        lock(&down).restart(m_down, c_down);
        // The probes are no flow of the cell's.
        if let Some(f) = &flows {
            *lock(f) = FlowTable::new(cfg.flows.clone());
        }
        probing.store(false, Ordering::Relaxed);
        measured
    } else {
        Err("turned off (LinkConfig::compensate_path)".into())
    };
    Ok(UserSpace {
        relay: Some(relay),
        up,
        down,
        nat,
        flows,
        path_cost,
        _tuns: (tun_c, tun_s),
        idle_poll,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `ip -batch -` inside `ns` with `script` on stdin.
pub(crate) fn ip_batch(ns: &NetNs, script: &str) -> Result<(), LinkError> {
    let mut cmd = ns.command("ip");
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ns
        .spawn(cmd)
        .map_err(setup("running `ip` (iproute2 must be installed)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(setup("writing to `ip -batch -`"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(setup("waiting for `ip -batch -`"))?;
    if !out.status.success() {
        return Err(LinkError::Setup {
            what: format!(
                "configuring namespace {} with `ip -batch -`:\n{script}",
                ns.label()
            ),
            source: io::Error::other(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        });
    }
    Ok(())
}
