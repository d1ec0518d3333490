//! Third-party endpoints as child processes in a cell's namespaces: started
//! with `sh -c` in a process group of their own (so whatever they fork goes
//! with them), stdout and stderr to files, readiness by the port being bound
//! in their namespace, stopped by signal. Started from the namespace's keeper
//! thread, a child is SIGKILLed (pdeathsig) if the coordinator dies.
//!
//! Each child's CPU is added to its role's total (`extra.cpu`, through
//! [`cpu::add`]) when it is reaped: the larger of its rusage (`wait4`: every
//! thread it ran, and the children it waited for) and the last reading of its
//! group's live threads (what a server forked and did not wait for); its
//! run-queue wait from that reading alone. Both are lower bounds.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use quicbench_netem::cpu::{self, ThreadCpu};
use quicbench_netem::NetNs;

/// How much of stderr a failure reason quotes.
const TAIL_BYTES: usize = 600;

/// The last lines of a log file (at most [`TAIL_BYTES`]), for a reason.
pub fn tail(path: &Path) -> String {
    let Ok(b) = std::fs::read(path) else {
        return String::new();
    };
    let from = b.len().saturating_sub(TAIL_BYTES);
    let s = String::from_utf8_lossy(&b[from..]);
    // From a line start when the cut fell mid-line.
    let s = if from > 0 {
        s.split_once('\n').map_or(&*s, |(_, r)| r)
    } else {
        &s
    };
    s.trim().replace('\n', " | ")
}

/// A started child and where its output goes.
pub struct Proc {
    child: Child,
    pub what: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    done: Option<std::process::ExitStatus>,
    /// Whose CPU it is (`cpu_use::CLIENT_PROCESS`, `SERVER_PROCESS`).
    role: &'static str,
    /// The largest reading so far of its live threads (see the module doc).
    seen: ThreadCpu,
}

impl Proc {
    /// `sh -c <command>` in `ns`, working directory `dir`, with `vars`.
    pub fn start(
        ns: &NetNs,
        what: &str,
        role: &'static str,
        command: &str,
        vars: &[(String, String)],
        dir: &Path,
        out_dir: &Path,
    ) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt;
        let stdout = out_dir.join("stdout.log");
        let stderr = out_dir.join("stderr.log");
        let mut cmd = ns.command("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(dir)
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).with_context(|| stdout.display().to_string())?)
            .stderr(std::fs::File::create(&stderr).with_context(|| stderr.display().to_string())?)
            .process_group(0);
        let child = ns
            .spawn(cmd)
            .with_context(|| format!("starting {what}: sh -c {command:?}"))?;
        Ok(Proc {
            child,
            what: what.to_string(),
            stdout,
            stderr,
            done: None,
            role,
            seen: ThreadCpu::default(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        if self.done.is_none() {
            // The child's own threads only: cheap enough for every poll.
            self.read_cpu(cpu::process(self.pid() as i32));
            self.reap(false);
        }
        self.done
    }

    fn read_cpu(&mut self, now: ThreadCpu) {
        self.seen.cpu_ns = self.seen.cpu_ns.max(now.cpu_ns);
        self.seen.wait_ns = self.seen.wait_ns.max(now.wait_ns);
    }

    /// Reap the child with `wait4` (blocking or not), keeping its status
    /// and adding its CPU to its role. Reaping it here, not through
    /// [`Child`], is what gives its rusage.
    fn reap(&mut self, block: bool) {
        use std::os::unix::process::ExitStatusExt;
        let pid = self.pid() as libc::pid_t;
        let mut status: libc::c_int = 0;
        // SAFETY: a zeroed rusage is valid; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if block { 0 } else { libc::WNOHANG };
        let r = loop {
            // SAFETY: our own child; status and ru outlive the call.
            let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
            if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break r;
            }
        };
        if r != pid {
            return;
        }
        self.done = Some(std::process::ExitStatus::from_raw(status));
        let used = ThreadCpu {
            cpu_ns: (cpu::timeval_ns(ru.ru_utime) + cpu::timeval_ns(ru.ru_stime))
                .max(self.seen.cpu_ns),
            wait_ns: self.seen.wait_ns,
        };
        cpu::add(self.role, used);
    }

    /// "`what` exited with status S: <stderr tail>".
    pub fn exit_reason(&self, status: std::process::ExitStatus) -> String {
        let t = tail(&self.stderr);
        let t = if t.is_empty() { tail(&self.stdout) } else { t };
        format!("{} exited with {status}: {t}", self.what)
    }

    /// Wait until it exits, `limit` passes, `stop` is set (Ctrl-C) or
    /// `give_up` is (the caller's own reason). Ok(status), or Err(reason)
    /// after killing it.
    pub fn wait(
        &mut self,
        limit: Duration,
        stop: &AtomicBool,
        give_up: Option<&AtomicBool>,
    ) -> Result<std::process::ExitStatus, String> {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                return Ok(s);
            }
            if stop.load(Ordering::Relaxed) {
                self.kill();
                return Err("interrupted".into());
            }
            if give_up.is_some_and(|g| g.load(Ordering::Relaxed)) {
                self.kill();
                return Err(format!("{} given up on: killed", self.what));
            }
            if t0.elapsed() >= limit {
                self.kill();
                return Err(format!(
                    "{} still running after {:.1} s: killed ({})",
                    self.what,
                    limit.as_secs_f64(),
                    tail(&self.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait until `port` is bound (UDP when `udp`, else a TCP listener) in
    /// the child's namespace, read from its own `/proc/<pid>/net`.
    pub fn wait_bound(&mut self, port: u16, udp: bool, limit: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let files: &[&str] = if udp {
            &["udp", "udp6"]
        } else {
            &["tcp", "tcp6"]
        };
        loop {
            if let Some(s) = self.exited() {
                return Err(anyhow!("{}", self.exit_reason(s)));
            }
            let net = PathBuf::from(format!("/proc/{}/net", self.pid()));
            let bound = files.iter().any(|f| {
                std::fs::read_to_string(net.join(f))
                    .map(|t| port_bound(&t, port, !udp))
                    .unwrap_or(false)
            });
            if bound {
                return Ok(());
            }
            if t0.elapsed() >= limit {
                let s = tail(&self.stderr);
                self.kill();
                return Err(anyhow!(
                    "{} did not bind {} port {port} within {} s ({})",
                    self.what,
                    if udp { "UDP" } else { "TCP" },
                    limit.as_secs(),
                    if s.is_empty() { "no output" } else { &s }
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM to its process group, SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        self.read_cpu(cpu::group(self.pid() as i32));
        signal_group(self.pid(), libc::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < grace {
            if self.exited().is_some() {
                // Children it left in the group go too.
                signal_group(self.pid(), libc::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// SIGKILL to its process group, then reap it.
    pub fn kill(&mut self) {
        if self.done.is_none() {
            self.read_cpu(cpu::group(self.pid() as i32));
        }
        signal_group(self.pid(), libc::SIGKILL);
        if self.done.is_none() {
            self.reap(true);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's process group (its pgid is its pid:
    // started with process_group(0)).
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

/// Run `f` while the TCP controllers of `ns`'s established connections are
/// read with `ss -tin` every `period` beside it: a third-party TCP
/// endpoint's controller read back from its own sockets. Returns f's value
/// and every controller seen.
pub fn sampling_cc<R>(
    ns: &NetNs,
    period: Duration,
    f: impl FnOnce() -> R,
) -> (R, std::collections::BTreeSet<String>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(o) = ns
                    .command("ss")
                    .args(["-tinH", "state", "established"])
                    .output()
                {
                    seen.extend(ss_controllers(&String::from_utf8_lossy(&o.stdout)));
                }
                std::thread::sleep(period);
            }
            seen
        });
        let r = f();
        stop.store(true, Ordering::Relaxed);
        (r, h.join().unwrap_or_default())
    })
}

/// Controller names in `ss -tin` output (the word before `wscale:`, or any
/// known name standing alone).
pub fn ss_controllers(text: &str) -> Vec<String> {
    const KNOWN: [&str; 6] = ["cubic", "reno", "bbr", "bbr2", "vegas", "westwood"];
    text.split_whitespace()
        .filter(|w| KNOWN.contains(w))
        .map(str::to_string)
        .collect()
}

/// Whether `/proc/net/{tcp,udp}[6]` text shows local port `port` bound
/// (for TCP: in state LISTEN, 0A).
pub fn port_bound(table: &str, port: u16, listen: bool) -> bool {
    let want = format!("{port:04X}");
    table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        let local = f.nth(1).unwrap_or("");
        let state = f.nth(1).unwrap_or("");
        local.rsplit_once(':').map(|(_, p)| p) == Some(want.as_str()) && (!listen || state == "0A")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_bound_reads_proc_net() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue\n\
   0: 0112C6C6:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n\
   1: 0112C6C6:D431 0101C6C6:115C 01 00000000:00000000 00:00000000 00000000     0        0 2\n";
        assert!(port_bound(tcp, 0x115C, true));
        // Bound as the local end of an established connection, not listening.
        assert!(!port_bound(tcp, 0xD431, true));
        assert!(port_bound(tcp, 0xD431, false));
        assert!(!port_bound(tcp, 80, false));
        let udp6 = "  sl  local_address                         remote_address                        st\n\
  10: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 07 0\n";
        assert!(port_bound(udp6, 443, false));
        assert!(!port_bound("", 443, false));
    }

    #[test]
    fn controllers_are_read_from_ss() {
        let ss = "0      0      198.18.0.1:40000  198.18.1.1:4433\n\t cubic wscale:7,7 rto:204 rtt:20.5/10 mss:1448\n";
        assert_eq!(ss_controllers(ss), vec!["cubic"]);
        assert_eq!(ss_controllers("ts sack bbr wscale:9,9"), vec!["bbr"]);
        assert!(ss_controllers("").is_empty());
    }

    #[test]
    fn tail_quotes_the_last_lines() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("e.log");
        std::fs::write(&p, "one\ntwo\n").unwrap();
        assert_eq!(tail(&p), "one | two");
        let long = format!("{}\nlast line\n", "x".repeat(2000));
        std::fs::write(&p, long).unwrap();
        assert_eq!(tail(&p), "last line");
        assert_eq!(tail(&t.path().join("none")), "");
    }
}
