//! CPU time and run-queue wait of threads (`/proc/<pid>/task/<tid>/schedstat`:
//! ns on a CPU, ns runnable but waiting for one, timeslices), so a result can
//! show when the machine, not the protocol, set a number: an endpoint that
//! waited for a core while the relay spun, a relay that did not get one.
//!
//! Threads are summed by role as they end ([`on_thread_end`], called by the
//! harness's tokio runtimes and thread closures) into process-wide totals;
//! a cell reads [`totals`] before and after (cells run one at a time in a
//! process). The relay's threads are read while they run (`Link::counters`).
//! Child processes (third-party endpoints) are read by process group
//! ([`group`]) and added by role ([`add`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One thread's (or a sum of threads') accounting, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadCpu {
    /// Time on a CPU.
    pub cpu_ns: u64,
    /// Time runnable, waiting for a CPU (the run queue).
    pub wait_ns: u64,
}

impl ThreadCpu {
    pub fn saturating_sub(self, o: ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            cpu_ns: self.cpu_ns.saturating_sub(o.cpu_ns),
            wait_ns: self.wait_ns.saturating_sub(o.wait_ns),
        }
    }

    fn add(&mut self, o: ThreadCpu) {
        self.cpu_ns = self.cpu_ns.saturating_add(o.cpu_ns);
        self.wait_ns = self.wait_ns.saturating_add(o.wait_ns);
    }
}

/// Parse a schedstat line: "<cpu ns> <wait ns> <timeslices>".
pub fn parse_schedstat(s: &str) -> Option<ThreadCpu> {
    let mut it = s.split_ascii_whitespace();
    let cpu_ns = it.next()?.parse().ok()?;
    let wait_ns = it.next()?.parse().ok()?;
    Some(ThreadCpu { cpu_ns, wait_ns })
}

/// The calling thread's accounting (None where /proc has no schedstat:
/// a kernel without CONFIG_SCHED_INFO).
pub fn current_thread() -> Option<ThreadCpu> {
    parse_schedstat(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

/// A thread of this process, by its kernel thread id.
pub fn thread(tid: i32) -> Option<ThreadCpu> {
    parse_schedstat(&std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?)
}

/// This process's CPU time so far, every thread's, ended ones included
/// (`getrusage(RUSAGE_SELF)`: user + system), ns.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: a zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    timeval_ns(ru.ru_utime) + timeval_ns(ru.ru_stime)
}

/// A rusage time, ns.
pub fn timeval_ns(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1_000_000_000 + (t.tv_usec.max(0) as u64) * 1_000
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

static ENDED: Mutex<BTreeMap<&'static str, ThreadCpu>> = Mutex::new(BTreeMap::new());

/// Add the calling thread's accounting to `role`'s total: call it last
/// thing in the thread (tokio: `on_thread_stop`).
pub fn on_thread_end(role: &'static str) {
    if let Some(c) = current_thread() {
        add(role, c);
    }
}

/// Add `c` to `role`'s total: what a role's child processes used
/// ([`group`] and the reaped child's rusage), beside its threads.
pub fn add(role: &'static str, c: ThreadCpu) {
    ENDED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(role)
        .or_default()
        .add(c);
}

/// The process group id in a `/proc/<pid>/stat` line (its 5th field). The
/// command name (2nd) is in parentheses and may hold spaces or ')': fields
/// are counted from the last ')'.
pub fn parse_stat_pgrp(s: &str) -> Option<i32> {
    let rest = &s[s.rfind(')')? + 1..];
    // state, ppid, pgrp
    rest.split_ascii_whitespace().nth(2)?.parse().ok()
}

/// The summed accounting of every live thread of `pid`'s (`/proc/<pid>/task/*`).
pub fn process(pid: i32) -> ThreadCpu {
    let mut sum = ThreadCpu::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return sum;
    };
    for e in dir.flatten() {
        if let Some(c) = std::fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|t| parse_schedstat(&t))
        {
            sum.add(c);
        }
    }
    sum
}

/// The summed accounting of the live threads of every process in process
/// group `pgid` (a child started with its own group and what it forked).
/// Threads and processes that already ended are not in it.
pub fn group(pgid: i32) -> ThreadCpu {
    let mut sum = ThreadCpu::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return sum;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let in_group = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat_pgrp(&t))
            == Some(pgid);
        if in_group {
            sum.add(process(pid));
        }
    }
    sum
}

/// Process-wide totals per role of the threads ended so far.
pub fn totals() -> BTreeMap<&'static str, ThreadCpu> {
    ENDED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Whether spinning would take a CPU another task wants: the relay spins the
/// last tens of µs before a deadline only while this says no (issue 15:
/// never while an endpoint is runnable). Read from `/proc/loadavg`'s
/// "runnable/total" field (every CPU's run queue, this thread included, ~1.5
/// µs a read), at most once per [`Contention::RECHECK_NS`].
///
/// Busy means more tasks are runnable than there are CPUs: one waits. Not
/// merely all CPUs in use: an endpoint running on the other core does not
/// wait for the spinner's, and yielding then costs precision for nothing
/// (measured with ping, docs/link.md). A task that wakes while the relay
/// spins makes it busy at the next reading, so it waits at most
/// [`Contention::RECHECK_NS`] and a spin slice for the spinner's core.
pub struct Contention {
    file: Option<std::fs::File>,
    cpus: u32,
    checked_at: Option<u64>,
    busy: bool,
}

impl Contention {
    /// How long a reading is trusted: a spin slice is 4 µs, a spin at most
    /// 150 µs.
    pub const RECHECK_NS: u64 = 25_000;

    pub fn new() -> Contention {
        // SAFETY: sysconf has no memory effects.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        Contention {
            file: std::fs::File::open("/proc/loadavg").ok(),
            cpus: u32::try_from(n).unwrap_or(1).max(1),
            checked_at: None,
            busy: false,
        }
    }

    /// True when a runnable task waits for a CPU (see the type's doc).
    /// Without /proc: never busy (spin as before).
    pub fn busy(&mut self, now_ns: u64) -> bool {
        if self
            .checked_at
            .is_some_and(|t| now_ns.saturating_sub(t) < Self::RECHECK_NS)
        {
            return self.busy;
        }
        self.checked_at = Some(now_ns);
        let Some(f) = &self.file else {
            return false;
        };
        let mut buf = [0u8; 128];
        let n = std::os::unix::fs::FileExt::read_at(f, &mut buf, 0).unwrap_or(0);
        self.busy = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(parse_loadavg_runnable)
            .is_some_and(|r| a_task_waits(r, self.cpus));
        self.busy
    }
}

impl Default for Contention {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps every CPU out of idle states deeper than polling while it lives: a
/// PM QoS request of 0 µs wake-up latency (`/dev/cpu_dma_latency` held open
/// with 0, as cyclictest does), dropped by the kernel when the file closes.
///
/// Why: a relay that sleeps is woken by the packet the sender writes into its
/// TUN device, and when its CPU is idle that wake-up takes whatever the idle
/// state costs to leave. In a VM halting is an exit to the host: on the
/// project's 2-core VM a packet crossed the link in 10-80 µs depending on it,
/// so the path cost measured at build ranged 12-227 µs from one link to the
/// next; with the request, 11-21 µs (5-9 µs either way since packets are
/// dated at the device, `tap.rs`: the relay's wake-up is no longer part of
/// it; the request still shortens every other wake-up). An idle CPU then polls instead of
/// halting: it uses no CPU time of any task (endpoint CPU figures are
/// unchanged) but draws power, and a VM's host sees its vCPU busy. It holds
/// only while a user-space link is up (`LinkConfig::idle_poll`).
#[derive(Debug)]
pub struct IdlePoll {
    _file: std::fs::File,
}

impl IdlePoll {
    pub const DEVICE: &'static str = "/dev/cpu_dma_latency";

    /// Ask for it. Err: why not (no device, not root), which the link records.
    pub fn hold() -> Result<IdlePoll, String> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(Self::DEVICE)
            .map_err(|e| format!("opening {}: {e}", Self::DEVICE))?;
        file.write_all(&0i32.to_ne_bytes())
            .map_err(|e| format!("writing 0 to {}: {e}", Self::DEVICE))?;
        Ok(IdlePoll { _file: file })
    }
}

/// The runnable count in a `/proc/loadavg` line ("0.50 0.40 0.30 3/105 2475").
pub fn parse_loadavg_runnable(s: &str) -> Option<u32> {
    let field = s.split_ascii_whitespace().nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

/// `runnable` tasks (the asking one among them) on `cpus` CPUs: one waits.
pub fn a_task_waits(runnable: u32, cpus: u32) -> bool {
    runnable > cpus.max(1)
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // fills at most size_of::<cpu_set_t>() bytes of it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE.
        .filter(|i| unsafe { libc::CPU_ISSET(*i, &set) })
        .collect()
}

/// Pin the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::other(format!("CPU {cpu} out of range")));
    }
    // SAFETY: as above; cpu < CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set outlives the call.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cpu_grows_with_work() {
        let a = self_cpu_ns();
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(self_cpu_ns() > a, "30 ms of spinning used no CPU?");
    }

    #[test]
    fn schedstat_lines() {
        assert_eq!(
            parse_schedstat("481593 614078 2\n"),
            Some(ThreadCpu {
                cpu_ns: 481_593,
                wait_ns: 614_078
            })
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("12"), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn loadavg_lines_give_the_runnable_count() {
        assert_eq!(
            parse_loadavg_runnable("2.34 2.17 1.45 3/105 24752\n"),
            Some(3)
        );
        assert_eq!(parse_loadavg_runnable("0.00 0.00 0.00 1/80 1"), Some(1));
        assert_eq!(parse_loadavg_runnable("0.00 0.00 0.00"), None);
        assert_eq!(parse_loadavg_runnable("0.00 0.00 0.00 x/80 1"), None);
        assert_eq!(parse_loadavg_runnable("0.00 0.00 0.00 380 1"), None);
    }

    #[test]
    fn spinning_yields_when_a_task_waits_for_a_cpu() {
        // 2 CPUs: the spinner and an endpoint on the other core, or the
        // relay's two threads, each have a CPU; a third task waits.
        assert!(!a_task_waits(1, 2));
        assert!(!a_task_waits(2, 2));
        assert!(a_task_waits(3, 2));
        assert!(a_task_waits(9, 2));
        // 8 CPUs.
        assert!(!a_task_waits(8, 8));
        assert!(a_task_waits(9, 8));
        // 1 CPU: any other runnable task waits for the spinner.
        assert!(!a_task_waits(1, 1));
        assert!(a_task_waits(2, 1));
        // A CPU count of 0 (unreadable) counts as 1.
        assert!(a_task_waits(2, 0));
        assert!(!a_task_waits(0, 2));
    }

    #[test]
    fn contention_is_read_and_cached() {
        let mut c = Contention::new();
        // This thread is runnable: a reading exists; whatever it says, it
        // is kept for RECHECK_NS.
        let first = c.busy(1_000_000);
        assert_eq!(c.checked_at, Some(1_000_000));
        assert_eq!(c.busy(1_000_000 + Contention::RECHECK_NS - 1), first);
        assert_eq!(c.checked_at, Some(1_000_000));
        c.busy(1_000_000 + Contention::RECHECK_NS);
        assert_eq!(c.checked_at, Some(1_000_000 + Contention::RECHECK_NS));
    }

    #[test]
    fn busy_cpus_are_seen() {
        // As many spinning threads as CPUs (bounded to 300 ms), and this
        // one: a task waits for a CPU.
        let cpus = Contention::new().cpus as usize;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hogs: Vec<_> = (0..cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let t0 = std::time::Instant::now();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && t0.elapsed() < std::time::Duration::from_millis(300)
                    {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut c = Contention::new();
        let busy = c.busy(0);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in hogs {
            h.join().expect("hog");
        }
        assert!(
            busy,
            "{cpus} spinning threads and this one: the CPUs are taken"
        );
    }

    #[test]
    fn stat_lines_give_the_process_group() {
        assert_eq!(
            parse_stat_pgrp("4242 (sh) S 1 4242 4242 0 -1 4194560"),
            Some(4242)
        );
        // A command name with spaces and parentheses.
        assert_eq!(parse_stat_pgrp("77 (a) b (c)) R 5 99 77 0"), Some(99));
        assert_eq!(parse_stat_pgrp("77 (x) R 5"), None);
        assert_eq!(parse_stat_pgrp("no parenthesis"), None);
        assert_eq!(parse_stat_pgrp("1 (x) S 0 notanumber 1"), None);
    }

    #[test]
    fn a_child_process_group_is_read_while_it_runs() {
        use std::os::unix::process::CommandExt;
        // A shell in its own group that forks a busy child and waits.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5' & wait")
            .process_group(0)
            .spawn()
            .expect("sh");
        let pgid = child.id() as i32;
        let t0 = std::time::Instant::now();
        let mut got = ThreadCpu::default();
        while t0.elapsed() < std::time::Duration::from_secs(5) {
            got = group(pgid);
            if got.cpu_ns >= 20_000_000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The leader only waits: the group's CPU is its child's.
        let leader = process(pgid);
        // SAFETY: the group is the one just started here.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
        assert!(
            got.cpu_ns >= 20_000_000,
            "the busy grandchild's CPU: {got:?}"
        );
        assert!(leader.cpu_ns < got.cpu_ns / 2, "{leader:?} {got:?}");
    }

    #[test]
    fn a_busy_thread_is_accounted_when_it_ends() {
        let before = totals().get("cpu-test").copied().unwrap_or_default();
        std::thread::spawn(|| {
            let t0 = std::time::Instant::now();
            let mut x = 0u64;
            while t0.elapsed() < std::time::Duration::from_millis(20) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            on_thread_end("cpu-test");
        })
        .join()
        .expect("the spinning thread");
        let got = totals()["cpu-test"].saturating_sub(before);
        // It spun 20 ms of wall time: on a CPU for some of it, runnable the rest.
        assert!(got.cpu_ns + got.wait_ns >= 5_000_000, "{got:?}");
        assert!(thread(gettid()).is_some());
    }
}
