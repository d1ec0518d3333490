//! The timed relay: moves IP packets between the client's and the server's TUN
//! device through one [`LinkModel`] per direction.
//!
//! One thread per direction both reads and schedules (two threads in all: on a
//! 2-core machine a reader+writer pair per direction would compete with the
//! endpoints for nothing). Each thread:
//!
//! 1. drains its source TUN (non-blocking reads until `EAGAIN`, at most
//!    [`READ_BATCH`] at a time), stamps each packet with the monotonic link clock,
//!    offers it to the model (and, going up, to the NAT) and queues the
//!    departures in `(at_ns, seq)` order (equal times keep FIFO order): a FIFO
//!    for those that come in order, a heap for the rest (`DepartureQueue`);
//! 2. writes every departure that is due (applying corruption; going down,
//!    translating back through the NAT);
//! 3. waits for the next packet or the next deadline: `ppoll` with a
//!    nanosecond timeout and a 1 ns timer slack, ending a *margin* before the
//!    deadline, then spins the rest (re-reading the source between spins).
//!    The margin adapts to the measured wake-up lateness of `ppoll` (twice its
//!    moving average, 15..150 µs): spinning only the last tens of µs keeps two
//!    cores free for the endpoints while hitting deadlines within a few µs.
//!    It never spins while a task waits for a CPU (`cpu::Contention`,
//!    re-read every 25 µs; counted as `spin_yielded`): it sleeps to the
//!    deadline instead, so an endpoint waits at most ~25 µs for a core the
//!    relay is spinning on.
//!
//! Tokio timers are never used: they tick in milliseconds.
//!
//! Flow metrics ([`crate::flows`]): each packet's headers are parsed once as it
//! is read (going up before the NAT rewrites it, going down mapped back
//! through the NAT, so both see the client-side 5-tuple), offered to the flow
//! table with the model's verdict, and the returned [`Stamp`] rides with each
//! queued copy until it is written (delivered) or dropped (NAT, refused
//! write). The table lock is taken once per read batch and once per write
//! batch.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::flows::{self, DropCause, FlowTable, PacketMeta, Stamp};
use crate::gso::{self, Run, Split, VnetHdr};
use crate::model::{Counters, LinkModel, Verdict};
use crate::nat::{DownAction, Nat, NatSchedule};
use crate::pcap::PcapWriter;
use crate::tun::Tun;

/// Packets read per batch before the thread looks at its deadlines again.
pub const READ_BATCH: usize = 64;
/// Packets held in the relay's queue at most (beyond the model's own limit):
/// a memory bound, counted as `dropped_overflow`.
pub const MAX_QUEUED: usize = 65_536;
const MARGIN_MIN_NS: u64 = 15_000;
const MARGIN_MAX_NS: u64 = 150_000;
const SPIN_SLICE_NS: u64 = 4_000;
/// At most this much of a deadline is left to spin after a sleep aimed early
/// while a task waits for a CPU (the rest of the time the task has the core).
const BUSY_EARLY_MAX_NS: u64 = 40_000;
const BUSY_AIM_STEP_NS: u64 = 2_000;
/// Aimed at the quartile: three wake-ups in four come after the deadline and
/// need no spin; the median departure is ~2 µs late instead of ~24 µs
/// (`quicbench calibrate` at 10,000 echoes/s, docs/link.md).
const BUSY_AIM_QUANTILE_PERMILLE: u64 = 250;
/// At most this share (in 1/1000) of each [`SPIN_WINDOW_NS`] is spent spinning;
/// past it the thread sleeps right up to the deadline for the rest of the
/// window (precision then rests on the wake-up latency alone). With dense
/// departures a real-time relay would otherwise never leave the CPU.
const SPIN_BUDGET_PERMILLE: u64 = 250;
const SPIN_WINDOW_NS: u64 = 10_000_000;

/// The link clock: monotonic ns since the link was built, plus the wall-clock
/// time of that origin (for pcap timestamps).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
    realtime_epoch_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let epoch = Instant::now();
        let realtime_epoch_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock {
            epoch,
            realtime_epoch_ns,
        }
    }

    /// Monotonic ns since the origin (`CLOCK_MONOTONIC` underneath).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Wall-clock ns since the Unix epoch of a link-clock instant.
    pub fn realtime_ns(&self, link_ns: u64) -> u64 {
        self.realtime_epoch_ns + link_ns
    }

    /// The origin as an `Instant`.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What the relay itself did in one direction (the model's counters say what
/// the *link* did).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelayCounters {
    pub packets_read: u64,
    pub bytes_read: u64,
    pub read_errors: u64,
    pub packets_written: u64,
    pub bytes_written: u64,
    /// Writes the destination refused (a corrupted version nibble, device gone...).
    pub write_errors: u64,
    /// Packets dropped because the relay queue held [`MAX_QUEUED`] packets.
    pub dropped_overflow: u64,
    /// Packets the NAT dropped (no mapping after a rebind); down only.
    pub nat_dropped: u64,
    pub max_queued: u64,
    /// Packets in the relay's queue at the last update (the standing queue now).
    #[serde(default)]
    pub queued: u64,
    /// Sojourn: scheduled departure minus arrival (delay, transmission and
    /// queueing), over every copy the link delivered.
    #[serde(default)]
    pub sojourn_p50_ns: u64,
    #[serde(default)]
    pub sojourn_p99_ns: u64,
    #[serde(default)]
    pub sojourn_max_ns: u64,
    /// The queueing part of the sojourn: time spent behind other packets (see
    /// `Departure::queued_ns`); what the buffer size decides.
    #[serde(default)]
    pub queueing_p50_ns: u64,
    #[serde(default)]
    pub queueing_p99_ns: u64,
    #[serde(default)]
    pub queueing_max_ns: u64,
    /// The path's fixed cost, measured when the link was built and taken off
    /// every scheduled departure (never earlier than the packet's arrival),
    /// so the delay seen from socket to socket is the configured one
    /// (`link::path_cost`). 0: not measured (or nothing to take off).
    #[serde(default)]
    pub path_compensation_ns: u64,
    /// Write time minus scheduled departure time (after the compensation),
    /// over all written packets.
    pub lateness_p50_ns: u64,
    pub lateness_p99_ns: u64,
    pub lateness_max_ns: u64,
    /// The current sleep-to-spin margin (see the module doc).
    pub spin_margin_ns: u64,
    /// Time spent spinning before deadlines (CPU cost of precision).
    pub spin_ns: u64,
    /// Deadlines slept up to instead of spun for, because a runnable task
    /// waited for a CPU (`cpu::Contention`): an endpoint would have waited
    /// for the relay's core.
    #[serde(default)]
    pub spin_yielded: u64,
    /// The relay thread's CPU time and run-queue wait since the link was
    /// built (`crate::cpu`; 0 where /proc has no schedstat).
    #[serde(default)]
    pub cpu_ns: u64,
    #[serde(default)]
    pub run_wait_ns: u64,
    /// Scheduling the relay thread got: "fifo" (SCHED_FIFO), "nice" or "normal".
    pub scheduling: String,
    /// Segmentation offload on the TUN devices: "off", "tso" or "tso+uso"
    /// (`tun::Offload`). With offloads one read or write may carry many wire
    /// packets; every packet count above is still per wire packet.
    #[serde(default)]
    pub offload: String,
    /// Super-packets read, and the wire packets they were split into.
    #[serde(default)]
    pub gso_reads: u64,
    #[serde(default)]
    pub gso_read_segments: u64,
    /// Writes that carried a run of wire packets as one super-packet, and the
    /// wire packets they carried.
    #[serde(default)]
    pub gso_writes: u64,
    #[serde(default)]
    pub gso_write_segments: u64,
    /// Super-packets that could not be split (dropped), and joined writes the
    /// kernel refused (after which the direction writes packets one by one).
    #[serde(default)]
    pub offload_errors: u64,
    /// Reads dated by the device's tap (`tap.rs`: when the sender's stack
    /// handed the packet to the device) rather than by the read itself, and
    /// how long those packets waited in the device for the relay to read
    /// them (its wake-up, mostly), which is then not part of their delay.
    #[serde(default)]
    pub arrivals_tapped: u64,
    #[serde(default)]
    pub read_wait_p50_ns: u64,
    #[serde(default)]
    pub read_wait_p99_ns: u64,
    /// The CPU the relay thread is pinned to (`LinkConfig::relay_cpu`).
    #[serde(default)]
    pub pinned_cpu: Option<u32>,
    /// Whether the CPUs were kept out of deep idle states while the link was
    /// up (`cpu::IdlePoll`, `LinkConfig::idle_poll`).
    #[serde(default)]
    pub idle_poll: bool,
}

impl RelayCounters {
    /// Reads from the source device: a super-packet is one read, however
    /// many wire packets it held.
    pub fn reads(&self) -> u64 {
        (self.packets_read + self.gso_reads).saturating_sub(self.gso_read_segments)
    }
}

/// How hard the relay threads ask the kernel for CPU when they wake up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayPriority {
    /// SCHED_FIFO (priority 10) where permitted, else nice -10, else normal:
    /// a relay woken for a deadline preempts the endpoints and any other load
    /// at once instead of waiting up to a scheduler slice (milliseconds). A
    /// spin budget keeps a real-time relay from monopolising a core.
    #[default]
    Realtime,
    /// nice -10 where permitted.
    High,
    /// Leave the scheduling alone.
    Normal,
}

/// What a relay thread would get here ("fifo", "nice" or "normal"), tried on
/// a throwaway thread (`quicbench doctor`).
pub fn realtime_available() -> &'static str {
    std::thread::spawn(|| apply_priority(RelayPriority::Realtime))
        .join()
        .unwrap_or("normal")
}

/// Apply `p` to the calling thread; returns what it got.
fn apply_priority(p: RelayPriority) -> &'static str {
    if p == RelayPriority::Realtime {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: setting our own thread's policy with a valid param.
        if unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) }
            == 0
        {
            return "fifo";
        }
    }
    if p != RelayPriority::Normal {
        // SAFETY: setpriority on our own thread id (Linux: per-thread nice).
        let tid = unsafe { libc::gettid() } as libc::id_t;
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, -10) } == 0 {
            return "nice";
        }
    }
    "normal"
}

/// Counters of one direction: the model's ground truth and the relay's own.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DirCounters {
    pub model: Counters,
    pub relay: RelayCounters,
}

/// Which way a relay thread moves packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// client -> server
    Up,
    /// server -> client
    Down,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Down => "down",
        }
    }
}

/// State a direction shares with the `Link` (behind a mutex, taken once per batch).
#[derive(Debug)]
pub(crate) struct DirShared {
    /// The direction's relay thread (0 until it started).
    pub tid: i32,
    pub model: LinkModel,
    pub relay: RelayCounters,
    lateness: hdrhistogram::Histogram<u64>,
    sojourn: hdrhistogram::Histogram<u64>,
    queueing: hdrhistogram::Histogram<u64>,
    read_wait: hdrhistogram::Histogram<u64>,
}

/// 1 ns .. 100 s, 2 significant digits: small and cheap to record.
fn histogram() -> hdrhistogram::Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    hdrhistogram::Histogram::new_with_bounds(1, 100_000_000_000, 2)
        .expect("constant histogram bounds are valid")
}

/// Consecutive equal values, recorded into a histogram as one `record_n`:
/// packets split from one super-packet and written in one run mostly share
/// their sojourn, queueing and lateness. The histogram ends up the same.
#[derive(Debug, Default)]
struct Runs {
    value: u64,
    count: u64,
}

impl Runs {
    fn add(&mut self, h: &mut hdrhistogram::Histogram<u64>, v: u64) {
        if self.count > 0 && self.value == v {
            self.count += 1;
            return;
        }
        self.flush(h);
        (self.value, self.count) = (v, 1);
    }

    fn flush(&mut self, h: &mut hdrhistogram::Histogram<u64>) {
        if self.count > 0 {
            let _ = h.record_n(self.value, self.count);
            self.count = 0;
        }
    }
}

/// (p50, p99, max) of `h`, zeros when empty.
fn quantiles(h: &hdrhistogram::Histogram<u64>) -> (u64, u64, u64) {
    if h.is_empty() {
        return (0, 0, 0);
    }
    (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
}

impl DirShared {
    pub fn new(model: LinkModel) -> Self {
        DirShared {
            tid: 0,
            model,
            relay: RelayCounters::default(),
            lateness: histogram(),
            sojourn: histogram(),
            queueing: histogram(),
            read_wait: histogram(),
        }
    }

    /// Start over with `model` and no counts (after the path-cost probes),
    /// taking `compensation_ns` off every departure from now on.
    pub fn restart(&mut self, model: LinkModel, compensation_ns: u64) {
        let (tid, scheduling, offload, pinned, idle_poll) = (
            self.tid,
            std::mem::take(&mut self.relay.scheduling),
            std::mem::take(&mut self.relay.offload),
            self.relay.pinned_cpu,
            self.relay.idle_poll,
        );
        *self = DirShared::new(model);
        self.tid = tid;
        // Set once by the relay thread as it starts.
        self.relay.scheduling = scheduling;
        self.relay.offload = offload;
        self.relay.pinned_cpu = pinned;
        self.relay.idle_poll = idle_poll;
        self.relay.path_compensation_ns = compensation_ns;
    }

    /// One delivered copy's time in the link and its queueing part (ns),
    /// equal neighbours in a batch recorded together: `runs` holds what is
    /// not recorded yet, until [`DirShared::flush_departures`].
    fn record_departure_run(&mut self, runs: &mut [Runs; 2], sojourn_ns: u64, queueing_ns: u64) {
        // 0 is recorded as 1 ns: the histograms start at 1.
        runs[0].add(&mut self.sojourn, sojourn_ns.max(1));
        runs[1].add(&mut self.queueing, queueing_ns.max(1));
    }

    fn flush_departures(&mut self, runs: &mut [Runs; 2]) {
        runs[0].flush(&mut self.sojourn);
        runs[1].flush(&mut self.queueing);
    }

    pub fn snapshot(&self) -> DirCounters {
        let mut relay = self.relay.clone();
        (
            relay.lateness_p50_ns,
            relay.lateness_p99_ns,
            relay.lateness_max_ns,
        ) = quantiles(&self.lateness);
        (
            relay.sojourn_p50_ns,
            relay.sojourn_p99_ns,
            relay.sojourn_max_ns,
        ) = quantiles(&self.sojourn);
        (
            relay.queueing_p50_ns,
            relay.queueing_p99_ns,
            relay.queueing_max_ns,
        ) = quantiles(&self.queueing);
        (relay.read_wait_p50_ns, relay.read_wait_p99_ns, _) = quantiles(&self.read_wait);
        DirCounters {
            model: self.model.counters().clone(),
            relay,
        }
    }
}

/// The NAT as both relay threads and the `Link` see it.
#[derive(Debug)]
pub(crate) struct NatShared {
    pub nat: Mutex<Nat>,
    /// Mirrors "at least one rebind happened": while 0 the data path skips the
    /// lock entirely (the NAT is transparent until then).
    pub generation: AtomicU32,
    pub schedule: Option<NatSchedule>,
}

impl NatShared {
    pub fn new(nat: Nat, schedule: Option<NatSchedule>) -> Self {
        NatShared {
            nat: Mutex::new(nat),
            generation: AtomicU32::new(0),
            schedule,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Nat> {
        // A panic while holding the lock leaves a consistent Nat (every method
        // finishes its table updates before anything can panic), so recover it.
        self.nat.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Optional capture of one direction before and after impairment.
#[derive(Debug, Default)]
pub(crate) struct DirPcap {
    pub input: Option<PcapWriter>,
    pub output: Option<PcapWriter>,
}

/// Everything one direction thread needs.
pub(crate) struct DirectionCfg {
    pub dir: Dir,
    pub src: Arc<Tun>,
    pub dst: Arc<Tun>,
    pub shared: Arc<Mutex<DirShared>>,
    pub nat: Arc<NatShared>,
    pub pcap: DirPcap,
    /// Dates each packet by when its sender's stack handed it to `src`
    /// (`tap.rs`); None: by the relay's read.
    pub tap: Option<crate::tap::TxTap>,
    pub clock: Clock,
    pub buf_len: usize,
    pub priority: RelayPriority,
    /// Pin the thread to this CPU (`LinkConfig::relay_cpu`).
    pub cpu: Option<usize>,
    /// Spin even while the other CPUs are taken (`LinkConfig::spin_when_busy`).
    pub spin_when_busy: bool,
    /// The flow table both directions feed (None: flow metrics off).
    pub flows: Option<Arc<Mutex<FlowTable>>>,
    /// Set while the link measures its path cost (`link::path_cost`): those
    /// probes are not captured.
    pub probing: Arc<AtomicBool>,
}

/// The two relay threads; stopped and joined on drop.
pub(crate) struct Relay {
    stop: Arc<AtomicBool>,
    stop_fd: Arc<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    pub fn start(up: DirectionCfg, down: DirectionCfg) -> io::Result<Relay> {
        // SAFETY: plain eventfd(2); the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let stop_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let stop = Arc::new(AtomicBool::new(false));
        let mut relay = Relay {
            stop: stop.clone(),
            stop_fd: stop_fd.clone(),
            threads: Vec::new(),
        };
        for cfg in [up, down] {
            let stop = stop.clone();
            let stop_fd = stop_fd.clone();
            let h = std::thread::Builder::new()
                .name(format!("relay-{}", cfg.dir.name()))
                .spawn(move || Worker::new(cfg, stop, stop_fd).run())?;
            relay.threads.push(h);
        }
        Ok(relay)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(self.stop_fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Pending {
    at_ns: u64,
    seq: u64,
    len: usize,
    corrupt: Option<(usize, u8)>,
    buf: Vec<u8>,
    /// The flow table's stamp of this packet (None: not tracked).
    stamp: Option<Stamp>,
}

// Reversed so that BinaryHeap (a max-heap) pops the earliest (at_ns, seq).
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.at_ns, o.seq).cmp(&(self.at_ns, self.seq))
    }
}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at_ns, self.seq) == (o.at_ns, o.seq)
    }
}
impl Eq for Pending {}

/// The departures waiting to be written, popped in `(at_ns, seq)` order.
///
/// Most departures come in order (a link without jitter or reordering
/// hands out non-decreasing times): those are appended to a FIFO, O(1)
/// each, instead of paying a heap push and pop per wire packet. One that
/// would go before the FIFO's tail goes into a heap. Each of the two is
/// sorted, so taking the smaller of their heads gives exactly the order a
/// single heap would.
#[derive(Default)]
struct DepartureQueue {
    fifo: VecDeque<Pending>,
    heap: BinaryHeap<Pending>,
}

impl DepartureQueue {
    fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    fn push(&mut self, p: Pending) {
        match self.fifo.back() {
            Some(b) if (b.at_ns, b.seq) > (p.at_ns, p.seq) => self.heap.push(p),
            _ => self.fifo.push_back(p),
        }
    }

    /// True when the FIFO's head is the earliest departure.
    fn fifo_first(&self) -> bool {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) => (f.at_ns, f.seq) < (h.at_ns, h.seq),
            (f, _) => f.is_some(),
        }
    }

    /// The earliest departure.
    fn peek(&self) -> Option<&Pending> {
        if self.fifo_first() {
            self.fifo.front()
        } else {
            self.heap.peek()
        }
    }

    fn pop(&mut self) -> Option<Pending> {
        if self.fifo_first() {
            self.fifo.pop_front()
        } else {
            self.heap.pop()
        }
    }
}

struct Worker {
    cfg: DirectionCfg,
    stop: Arc<AtomicBool>,
    stop_fd: Arc<OwnedFd>,
    heap: DepartureQueue,
    pool: Vec<Vec<u8>>,
    seq: u64,
    /// Moving average of ppoll's wake-up lateness (ns).
    late_avg_ns: u64,
    /// The last packet's arrival: arrivals never go back (two senders
    /// racing can queue packets in another order than the tap saw them).
    last_arrival: u64,
    /// Reads the tap dated, and their waits in the device (ns), folded into
    /// the shared counters under the lock.
    tapped: u64,
    read_waits: Vec<u64>,
    /// How early a sleep to a deadline is aimed while a task waits for a CPU:
    /// a running estimate of the [`BUSY_AIM_QUANTILE_PERMILLE`] quantile of
    /// those sleeps' wake-up lateness (see `wait`).
    busy_aim_ns: u64,
    next_rebind: u32,
    batch: Vec<(Vec<u8>, usize, u64)>,
    /// Parsed headers of `batch` (when flows are tracked), same order.
    metas: Vec<Option<PacketMeta>>,
    /// Fates of written/dropped copies, applied to the flow table once per
    /// write batch: (time, stamp, None = delivered).
    fates: Vec<(u64, Stamp, Option<DropCause>)>,
    // Local counters, folded into the shared ones under the lock.
    written: u64,
    bytes_written: u64,
    write_errors: u64,
    nat_dropped: u64,
    lateness: Vec<u64>,
    /// Spin budget: ns spun in the current window, and whether spinning is
    /// allowed in it (see `SPIN_BUDGET`).
    spin_window_start: u64,
    spin_in_window: u64,
    spin_allowed: bool,
    spin_total: u64,
    spin_yielded: u64,
    contention: crate::cpu::Contention,
    /// Bytes of virtio-net header before each packet in every buffer (0
    /// without offloads): the IP packet of `(buf, n)` is `buf[off..off + n]`.
    off: usize,
    /// Where super-packets are read before they are split.
    scratch: Vec<u8>,
    /// Departures being written (kept to reuse its allocation).
    due: Vec<Pending>,
    /// A joined write's virtio-net and IP/L4 headers.
    run_hdr: [u8; 160],
    /// Set when the kernel refused a joined write: packets go one by one.
    join_refused: bool,
    gso_reads: u64,
    gso_read_segments: u64,
    gso_writes: u64,
    gso_write_segments: u64,
    offload_errors: u64,
}

impl Worker {
    fn new(cfg: DirectionCfg, stop: Arc<AtomicBool>, stop_fd: Arc<OwnedFd>) -> Worker {
        let off = cfg.src.vnet_hdr_len();
        debug_assert_eq!(off, cfg.dst.vnet_hdr_len(), "both devices offload alike");
        Worker {
            cfg,
            stop,
            stop_fd,
            heap: DepartureQueue::default(),
            pool: Vec::new(),
            seq: 0,
            late_avg_ns: 20_000,
            last_arrival: 0,
            tapped: 0,
            read_waits: Vec::with_capacity(READ_BATCH),
            busy_aim_ns: 20_000,
            next_rebind: 0,
            batch: Vec::with_capacity(READ_BATCH),
            metas: Vec::with_capacity(READ_BATCH),
            fates: Vec::with_capacity(256),
            written: 0,
            bytes_written: 0,
            write_errors: 0,
            nat_dropped: 0,
            lateness: Vec::with_capacity(256),
            spin_window_start: 0,
            spin_in_window: 0,
            spin_allowed: true,
            spin_total: 0,
            spin_yielded: 0,
            contention: crate::cpu::Contention::new(),
            off,
            scratch: if off > 0 {
                vec![0u8; off + 65_536 + 64]
            } else {
                Vec::new()
            },
            due: Vec::with_capacity(256),
            run_hdr: [0; 160],
            join_refused: false,
            gso_reads: 0,
            gso_read_segments: 0,
            gso_writes: 0,
            gso_write_segments: 0,
            offload_errors: 0,
        }
    }

    fn margin_ns(&self) -> u64 {
        (2 * self.late_avg_ns).clamp(MARGIN_MIN_NS, MARGIN_MAX_NS)
    }

    fn flows(&self) -> Option<MutexGuard<'_, FlowTable>> {
        // A FlowTable stays consistent across a panic (counters and appends).
        self.cfg
            .flows
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn shared(&self) -> MutexGuard<'_, DirShared> {
        // The data in DirShared stays consistent across a panic (plain counters).
        self.cfg.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.pool
            .pop()
            .unwrap_or_else(|| vec![0u8; self.cfg.buf_len])
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < 4096 {
            self.pool.push(buf);
        }
    }

    fn run(mut self) {
        self.shared().tid = crate::cpu::gettid();
        // ppoll's timeout is padded by the thread's timer slack (50 µs by
        // default): ask for none.
        // SAFETY: prctl with integer arguments.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        }
        let sched = apply_priority(self.cfg.priority);
        let offload = self.cfg.src.offload().name();
        let pinned = self
            .cfg
            .cpu
            .filter(|c| match crate::cpu::pin_current_thread(*c) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("relay: cannot pin to CPU {c}: {e}");
                    false
                }
            });
        {
            let mut g = self.shared();
            g.relay.scheduling = sched.to_string();
            g.relay.offload = offload.to_string();
            g.relay.pinned_cpu = pinned.map(|c| c as u32);
        }
        while !self.stop.load(Ordering::Relaxed) {
            let full = self.read_batch();
            self.write_due();
            if self.cfg.dir == Dir::Up {
                self.fire_rebinds();
            }
            if full {
                continue; // more may be queued: read before sleeping
            }
            self.wait();
        }
        // Flush captures; queued packets are dropped with the link.
        if let Some(w) = self.cfg.pcap.input.as_mut() {
            let _ = w.flush();
        }
        if let Some(w) = self.cfg.pcap.output.as_mut() {
            let _ = w.flush();
        }
    }

    /// Read up to READ_BATCH packets; true if the batch filled (more may wait).
    /// Read one packet into the batch: a plain read, or with offloads a
    /// virtio-net header and a packet, split into its wire packets.
    fn read_one(&mut self) -> io::Result<()> {
        let off = self.off;
        if off == 0 {
            let mut buf = self.buffer();
            return match self.cfg.src.recv(&mut buf) {
                Ok(n) => {
                    let t = self.arrival(&buf[..n], self.cfg.clock.now_ns());
                    self.batch.push((buf, n, t));
                    Ok(())
                }
                Err(e) => {
                    self.recycle(buf);
                    Err(e)
                }
            };
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let got = self.cfg.src.recv(&mut scratch).map(|n| {
            let now = self.cfg.clock.now_ns();
            let t = self.arrival(scratch.get(off..n).unwrap_or_default(), now);
            self.split_into_batch(&scratch[..n], t);
        });
        self.scratch = scratch;
        got
    }

    /// When the packet just read (`pkt`, its IP bytes; read at `now`)
    /// entered the link: the tap's stamp when it has one.
    fn arrival(&mut self, pkt: &[u8], now: u64) -> u64 {
        let tapped = self.cfg.tap.as_mut().and_then(|tap| tap.arrival(pkt, now));
        let t = match tapped {
            Some(at) => {
                self.tapped += 1;
                if self.read_waits.len() < 4 * READ_BATCH {
                    self.read_waits.push(now - at);
                }
                at
            }
            None => now,
        }
        .max(self.last_arrival);
        self.last_arrival = t;
        t
    }

    fn split_into_batch(&mut self, data: &[u8], t: u64) {
        let off = self.off;
        let Some(h) = VnetHdr::read(data) else {
            self.offload_errors += 1;
            return;
        };
        let pkt = &data[off..];
        if h.gso_type == gso::GSO_NONE {
            let mut buf = self.buffer();
            if buf.len() < data.len() {
                buf.resize(data.len(), 0);
            }
            buf[..data.len()].copy_from_slice(data);
            self.batch.push((buf, pkt.len(), t));
            return;
        }
        match Split::new(&h, pkt) {
            Ok(split) => {
                self.gso_reads += 1;
                self.gso_read_segments += split.count() as u64;
                for i in 0..split.count() {
                    let mut buf = self.buffer();
                    let need = off + split.segment_len(i);
                    if buf.len() < need {
                        buf.resize(need, 0);
                    }
                    let n = split.write(i, &mut buf);
                    self.batch.push((buf, n, t));
                }
            }
            Err(e) => {
                self.offload_errors += 1;
                tracing::debug!("relay: super-packet of {} bytes not split: {e}", pkt.len());
            }
        }
    }

    /// Read up to READ_BATCH packets; true if the batch filled (more may wait).
    fn read_batch(&mut self) -> bool {
        let mut read_errors = 0u64;
        let errors_before = self.offload_errors;
        while self.batch.len() < READ_BATCH {
            if let Err(e) = self.read_one() {
                if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted {
                    read_errors += 1;
                }
                break;
            }
        }
        if self.batch.is_empty() && read_errors == 0 && self.offload_errors == errors_before {
            return false;
        }
        let full = self.batch.len() >= READ_BATCH;
        let mut batch = std::mem::take(&mut self.batch);
        let off = self.off;
        let capture = !self.cfg.probing.load(Ordering::Relaxed);
        if off > 0 && (self.cfg.pcap.input.is_some() || self.cfg.pcap.output.is_some()) {
            // A capture shows each packet as it is on the wire, checksum done.
            for (buf, n, _) in batch.iter_mut() {
                gso::finalize(&mut buf[..off + *n]);
            }
        }
        if let Some(w) = self.cfg.pcap.input.as_mut().filter(|_| capture) {
            for (buf, n, t) in &batch {
                let _ = w.write(self.cfg.clock.realtime_ns(*t), &buf[off..off + *n]);
            }
        }
        // Flow metrics see the client-side tuple: parse before the NAT
        // rewrites a packet going up.
        self.metas.clear();
        let tracking = self.cfg.flows.is_some();
        if tracking {
            self.metas.extend(
                batch
                    .iter()
                    .map(|(buf, n, _)| flows::parse(&buf[off..off + *n])),
            );
        }
        if self.cfg.nat.generation.load(Ordering::Acquire) != 0 {
            let mut nat = self.cfg.nat.lock();
            match self.cfg.dir {
                Dir::Up => {
                    for (buf, n, _) in batch.iter_mut() {
                        // The NAT fixes complete checksums, not partial ones.
                        if off > 0 {
                            gso::finalize(&mut buf[..off + *n]);
                        }
                        nat.translate_up(&mut buf[off..off + *n]);
                    }
                }
                // Going down the destination is the external binding: map it
                // back (a packet the NAT will drop for want of a mapping is
                // attributed to no flow).
                Dir::Down => {
                    for slot in self.metas.iter_mut() {
                        if let Some(m) = slot {
                            let proto = match m.proto {
                                flows::Proto::Tcp => 6,
                                flows::Proto::Udp => 17,
                            };
                            match nat.internal_of(proto, m.dst) {
                                Some(int) => m.dst = int,
                                None => *slot = None,
                            }
                        }
                    }
                }
            }
        }
        let shared = Arc::clone(&self.cfg.shared);
        let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
        let flows_arc = self.cfg.flows.clone();
        let mut ft = flows_arc
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|p| p.into_inner()));
        g.relay.read_errors += read_errors;
        g.relay.gso_reads += std::mem::take(&mut self.gso_reads);
        g.relay.gso_read_segments += std::mem::take(&mut self.gso_read_segments);
        g.relay.offload_errors += std::mem::take(&mut self.offload_errors);
        g.relay.arrivals_tapped += std::mem::take(&mut self.tapped);
        for w in self.read_waits.drain(..) {
            let _ = g.read_wait.record(w.max(1));
        }
        let mut overflow = 0u64;
        let mut unattributed = 0u64;
        let mut runs: [Runs; 2] = Default::default();
        let compensation = g.relay.path_compensation_ns;
        for (j, (buf, n, t)) in batch.drain(..).enumerate() {
            g.relay.packets_read += 1;
            g.relay.bytes_read += n as u64;
            let stamp = match (ft.as_mut(), self.metas.get(j).copied().flatten()) {
                (Some(ft), Some(m)) => ft.offer(t, self.cfg.dir, &m),
                (Some(_), None) => {
                    unattributed += 1;
                    None
                }
                (None, _) => None,
            };
            match g.model.enqueue_packet(t, &buf[off..off + n]) {
                Verdict::Drop(r) => {
                    if let (Some(ft), Some(s)) = (ft.as_mut(), stamp.as_ref()) {
                        ft.dropped(s, r.into());
                    }
                    self.recycle(buf)
                }
                Verdict::Deliver(deps) => {
                    let k = deps.len();
                    let mut buf = Some(buf);
                    for (i, d) in deps.into_iter().enumerate() {
                        g.record_departure_run(&mut runs, d.at_ns.saturating_sub(t), d.queued_ns);
                        if self.heap.len() >= MAX_QUEUED {
                            overflow += 1;
                            if let (Some(ft), Some(s)) = (ft.as_mut(), stamp.as_ref()) {
                                ft.dropped(s, DropCause::Relay);
                            }
                            continue;
                        }
                        // The last copy takes the buffer; duplicates copy it.
                        let b = if i + 1 == k {
                            match buf.take() {
                                Some(b) => b,
                                None => continue,
                            }
                        } else {
                            match buf.as_ref() {
                                Some(src) => {
                                    let mut c = self.buffer();
                                    if c.len() < off + n {
                                        c.resize(off + n, 0);
                                    }
                                    c[..off + n].copy_from_slice(&src[..off + n]);
                                    c
                                }
                                None => continue,
                            }
                        };
                        self.seq += 1;
                        self.heap.push(Pending {
                            // Earlier by the path's own cost, never before
                            // arrival: order is kept (a monotone shift).
                            at_ns: d.at_ns.saturating_sub(compensation).max(t),
                            seq: self.seq,
                            len: n,
                            corrupt: d.corrupt,
                            buf: b,
                            stamp,
                        });
                    }
                    if let Some(b) = buf {
                        self.recycle(b);
                    }
                }
            }
        }
        if let Some(ft) = ft.as_mut() {
            ft.unattributed(unattributed);
        }
        drop(ft);
        g.flush_departures(&mut runs);
        g.relay.dropped_overflow += overflow;
        g.relay.max_queued = g.relay.max_queued.max(self.heap.len() as u64);
        g.relay.queued = self.heap.len() as u64;
        drop(g);
        self.batch = batch;
        full
    }

    fn write_due(&mut self) {
        let now = self.cfg.clock.now_ns();
        let off = self.off;
        let mut did = false;
        let mut due = std::mem::take(&mut self.due);
        while self.heap.peek().is_some_and(|p| p.at_ns <= now) {
            let Some(mut p) = self.heap.pop() else { break };
            did = true;
            if self.cfg.dir == Dir::Down && self.cfg.nat.generation.load(Ordering::Acquire) != 0 {
                if off > 0 {
                    gso::finalize(&mut p.buf[..off + p.len]);
                }
                let action = self
                    .cfg
                    .nat
                    .lock()
                    .translate_down(&mut p.buf[off..off + p.len]);
                if action == DownAction::Drop {
                    self.nat_dropped += 1;
                    if let Some(s) = p.stamp {
                        self.fates.push((now, s, Some(DropCause::Relay)));
                    }
                    self.recycle(p.buf);
                    continue;
                }
            }
            if let Some((byte, bit)) = p.corrupt {
                // Complete the checksum first, or the receiver would compute
                // it over the flipped bit and never see the corruption.
                if off > 0 {
                    gso::finalize(&mut p.buf[..off + p.len]);
                }
                if let Some(b) = p.buf[off..off + p.len].get_mut(byte) {
                    *b ^= 1 << (bit & 7);
                }
            }
            due.push(p);
        }
        let capture = !self.cfg.probing.load(Ordering::Relaxed);
        let mut i = 0;
        while i < due.len() {
            // Stamped as the write starts: the receiving stack takes the
            // packet inside the write, and its answer may be read by the
            // other direction's thread before this one's write returns.
            let now = self.cfg.clock.now_ns();
            let (k, sent) = self.send_head(&due[i..]);
            for p in &due[i..i + k] {
                if sent {
                    self.written += 1;
                    self.bytes_written += p.len as u64;
                } else {
                    self.write_errors += 1;
                }
                if let Some(s) = p.stamp {
                    self.fates
                        .push((now, s, (!sent).then_some(DropCause::Relay)));
                }
                self.lateness.push(now.saturating_sub(p.at_ns));
                if let Some(w) = self.cfg.pcap.output.as_mut().filter(|_| capture) {
                    let _ = w.write(self.cfg.clock.realtime_ns(now), &p.buf[off..off + p.len]);
                }
            }
            i += k;
        }
        for p in due.drain(..) {
            self.recycle(p.buf);
        }
        self.due = due;
        if did {
            let margin = self.margin_ns();
            let (written, bytes, errs, natd) = (
                self.written,
                self.bytes_written,
                self.write_errors,
                self.nat_dropped,
            );
            let lateness = std::mem::take(&mut self.lateness);
            let gso_writes = std::mem::take(&mut self.gso_writes);
            let gso_write_segments = std::mem::take(&mut self.gso_write_segments);
            let offload_errors = std::mem::take(&mut self.offload_errors);
            {
                let mut g = self.shared();
                g.relay.packets_written += written;
                g.relay.bytes_written += bytes;
                g.relay.write_errors += errs;
                g.relay.nat_dropped += natd;
                g.relay.spin_margin_ns = margin;
                g.relay.spin_ns = self.spin_total;
                g.relay.spin_yielded = self.spin_yielded;
                g.relay.queued = self.heap.len() as u64;
                g.relay.gso_writes += gso_writes;
                g.relay.gso_write_segments += gso_write_segments;
                g.relay.offload_errors += offload_errors;
                let mut run = Runs::default();
                for l in &lateness {
                    run.add(&mut g.lateness, (*l).max(1));
                }
                run.flush(&mut g.lateness);
            }
            self.lateness = lateness;
            self.lateness.clear();
            if !self.fates.is_empty() {
                if let Some(mut ft) = self.flows() {
                    for (t, s, fate) in &self.fates {
                        match fate {
                            None => ft.delivered(*t, s),
                            Some(c) => ft.dropped(s, *c),
                        }
                    }
                }
                self.fates.clear();
            }
            self.written = 0;
            self.bytes_written = 0;
            self.write_errors = 0;
            self.nat_dropped = 0;
        }
    }

    /// Write the departures at the head of `due`: with offloads, the longest
    /// run of them that forms one super-packet ([`Run`]) in one write, else
    /// the first alone. Returns how many it wrote and whether the write
    /// succeeded. Only packets already due are joined: none waits for another.
    fn send_head(&mut self, due: &[Pending]) -> (usize, bool) {
        let off = self.off;
        let first = &due[0];
        let alone = |w: &Self| w.cfg.dst.send(&first.buf[..off + first.len]).is_ok();
        if off == 0 || self.join_refused || first.corrupt.is_some() || due.len() < 2 {
            return (1, alone(self));
        }
        let head = &first.buf[off..off + first.len];
        let Some(mut run) = Run::start(head) else {
            return (1, alone(self));
        };
        for p in &due[1..] {
            // A corrupted packet goes alone: its checksum must stay complete.
            if p.corrupt.is_some() || !run.push(head, &p.buf[off..off + p.len]) {
                break;
            }
        }
        let k = run.segments();
        if k == 1 {
            return (1, alone(self));
        }
        let hl = run.header_len();
        let n = run.header(head, &mut self.run_hdr);
        let mut iov = Vec::with_capacity(k + 1);
        iov.push(IoSlice::new(&self.run_hdr[..n]));
        iov.extend(
            due[..k]
                .iter()
                .map(|p| IoSlice::new(&p.buf[off + hl..off + p.len])),
        );
        match self.cfg.dst.send_vectored(&iov) {
            Ok(_) => {
                self.gso_writes += 1;
                self.gso_write_segments += k as u64;
                (k, true)
            }
            Err(e) => {
                // Never seen on Linux 5.x-6.x; if a kernel refuses joined
                // writes, lose no packet and stop joining.
                tracing::warn!(
                    "relay: joined write of {k} packets refused ({e}); writing them one by one"
                );
                self.offload_errors += 1;
                self.join_refused = true;
                (1, alone(self))
            }
        }
    }

    fn next_rebind_ns(&self) -> Option<u64> {
        if self.cfg.dir != Dir::Up {
            return None;
        }
        self.cfg.nat.schedule.as_ref()?.event_ns(self.next_rebind)
    }

    fn fire_rebinds(&mut self) {
        let Some(sched) = self.cfg.nat.schedule.clone() else {
            return;
        };
        let now = self.cfg.clock.now_ns();
        while let Some(t) = sched.event_ns(self.next_rebind) {
            if t > now {
                break;
            }
            let mut nat = self.cfg.nat.lock();
            let ev = nat.rebind(sched.kind, now, true);
            self.cfg
                .nat
                .generation
                .store(ev.generation, Ordering::Release);
            drop(nat);
            tracing::debug!(?ev, "scheduled NAT rebind");
            self.next_rebind += 1;
        }
    }

    fn wait(&mut self) {
        let now = self.cfg.clock.now_ns();
        let next = match (self.heap.peek().map(|p| p.at_ns), self.next_rebind_ns()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(deadline) = next else {
            self.poll(None);
            return;
        };
        if deadline <= now {
            return;
        }
        let left = deadline - now;
        if now - self.spin_window_start >= SPIN_WINDOW_NS {
            self.spin_allowed = self.spin_in_window * 1000 <= SPIN_WINDOW_NS * SPIN_BUDGET_PERMILLE;
            self.spin_window_start = now;
            self.spin_in_window = 0;
        }
        let margin = if self.spin_allowed {
            self.margin_ns()
        } else {
            0
        };
        if left > margin {
            if let Some(late) = self.sleep_to(deadline - margin, now) {
                if margin > 0 {
                    // EWMA with weight 1/16: follows load changes within ~16 wake-ups.
                    self.late_avg_ns = (self.late_avg_ns * 15 + late) / 16;
                }
            }
        } else if !self.cfg.spin_when_busy
            && self.contention.busy(now)
            && left > self.busy_early_ns()
        {
            // Spinning now would keep an endpoint off a core: sleep instead,
            // aimed early by a low quantile of the wake-up's lateness so that
            // the typical departure is ~on time, not ~24 µs late. The
            // wake-ups that come early leave at most `busy_early_ns` to spin
            // (the next round).
            self.spin_yielded += 1;
            if let Some(late) = self.sleep_to(deadline - self.busy_early_ns(), now) {
                // A streaming quantile: up by q, down by 1 − q, so it
                // settles where a share q of the wake-ups come earlier.
                let q = BUSY_AIM_QUANTILE_PERMILLE;
                self.busy_aim_ns = if late > self.busy_aim_ns {
                    self.busy_aim_ns + BUSY_AIM_STEP_NS * q / 1000
                } else {
                    self.busy_aim_ns
                        .saturating_sub(BUSY_AIM_STEP_NS * (1000 - q) / 1000)
                };
            }
        } else {
            // Spin a short slice, then go round again (which re-reads the source,
            // so arrivals are stamped on time while we spin).
            let until = now + left.min(SPIN_SLICE_NS);
            let mut t = now;
            while t < until {
                std::hint::spin_loop();
                t = self.cfg.clock.now_ns();
            }
            self.spin_in_window += t - now;
            self.spin_total += t - now;
        }
    }

    /// Sleep until `target` (or a packet, or the stop). Some(how late it
    /// woke, ns, bounded at 10 ms) when the sleep ran to its end.
    fn sleep_to(&mut self, target: u64, now: u64) -> Option<u64> {
        if !self.poll(Some(target.saturating_sub(now))) {
            return None;
        }
        Some(
            self.cfg
                .clock
                .now_ns()
                .saturating_sub(target)
                .min(10_000_000),
        )
    }

    /// How early a sleep to a deadline is aimed while a task waits for a CPU.
    fn busy_early_ns(&self) -> u64 {
        self.busy_aim_ns.min(BUSY_EARLY_MAX_NS)
    }

    /// Wait until the source is readable, the relay is stopped, or `timeout_ns`
    /// passed (`None`: no timeout). True when it timed out.
    fn poll(&self, timeout_ns: Option<u64>) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: self.cfg.src.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop_fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = timeout_ns.map(|ns| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map(|t| t as *const libc::timespec)
            .unwrap_or(std::ptr::null());
        // SAFETY: fds and the timespec outlive the call.
        let r = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                tsp,
                std::ptr::null(),
            )
        };
        if r > 0 && fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            // The device is failing (only seen while tearing down): don't let
            // a permanently "ready" fd turn this loop into a busy one.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        r == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn pending(at_ns: u64, seq: u64) -> Pending {
        Pending {
            at_ns,
            seq,
            len: 0,
            corrupt: None,
            buf: Vec::new(),
            stamp: None,
        }
    }

    /// Recording runs of equal values gives the histogram one record each
    /// would.
    #[test]
    fn runs_record_what_single_records_would() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (mut a, mut b) = (histogram(), histogram());
        let mut run = Runs::default();
        for _ in 0..10_000 {
            let v = [1u64, 1, 1, 7, 7, 1_000_003][rng.random_range(0..6)];
            let _ = a.record(v);
            run.add(&mut b, v);
        }
        run.flush(&mut b);
        assert_eq!(a.len(), b.len());
        assert_eq!(a.max(), b.max());
        for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q), "{q}");
        }
        assert!(a == b, "identical histograms");
    }

    /// The FIFO fast path pops exactly what one heap would, in order and
    /// out of order, with pops interleaved with pushes.
    #[test]
    fn departure_queue_pops_in_heap_order() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for shuffle in [0u32, 1, 10, 50, 100] {
            let (mut q, mut h) = (DepartureQueue::default(), BinaryHeap::new());
            let (mut t, mut seq) = (0u64, 0u64);
            let mut popped = (Vec::new(), Vec::new());
            for _ in 0..5_000 {
                t += rng.random_range(0..3);
                seq += 1;
                // Some departures go before earlier ones (jitter, reorder).
                let at = if rng.random_range(0..100) < shuffle {
                    t.saturating_sub(rng.random_range(0..20))
                } else {
                    t
                };
                q.push(pending(at, seq));
                h.push(pending(at, seq));
                assert_eq!(q.len(), h.len());
                assert_eq!(
                    q.peek().map(|p| (p.at_ns, p.seq)),
                    h.peek().map(|p| (p.at_ns, p.seq))
                );
                if rng.random_range(0..3) == 0 {
                    for _ in 0..rng.random_range(0..4) {
                        popped.0.extend(q.pop().map(|p| (p.at_ns, p.seq)));
                        popped.1.extend(h.pop().map(|p| (p.at_ns, p.seq)));
                    }
                }
            }
            while let Some(p) = h.pop() {
                popped.1.push((p.at_ns, p.seq));
                popped.0.extend(q.pop().map(|p| (p.at_ns, p.seq)));
            }
            assert!(q.pop().is_none());
            assert_eq!(popped.0, popped.1, "shuffle {shuffle}%");
        }
    }
}
