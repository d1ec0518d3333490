//! Anonymous network namespaces held by file descriptors.
//!
//! A [`NetNs`] is created by a dedicated *keeper* thread that calls
//! `unshare(CLONE_NEWNET)` and opens `/proc/thread-self/ns/net`. Nothing is
//! mounted under `/run/netns`: the namespace lives exactly as long as something
//! in this process refers to it (the fd, a thread inside it, a child process
//! inside it), so it vanishes with the process however the process ends.
//!
//! The keeper thread stays alive (idle on a channel) for as long as the
//! `NetNs`: children started with [`NetNs::spawn`] are forked *by the keeper*,
//! and their `PR_SET_PDEATHSIG(SIGKILL)` fires when the thread that forked them
//! exits (that is how Linux defines the "parent" for pdeathsig), so they die when
//! the `NetNs` is dropped or when the process dies, never earlier.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::sched::{setns, unshare, CloneFlags};

/// Why a namespace could not be created or entered.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// The process may not create network namespaces; `hint` says what this
    /// process is and what would let it (crate::privileges::refusal_hint).
    #[error("creating a network namespace was refused ({source}): {hint}")]
    NotPermitted { source: nix::Error, hint: String },
    /// A system call failed for another reason.
    #[error("{what}: {source}")]
    Sys { what: String, source: io::Error },
}

impl NsError {
    fn sys(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        NsError::Sys {
            what: what.into(),
            source: source.into(),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// An anonymous network namespace, alive while this value (or anything inside
/// the namespace) is.
pub struct NetNs {
    fd: Arc<OwnedFd>,
    label: String,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    keeper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NetNs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetNs")
            .field("label", &self.label)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl NetNs {
    /// Create a fresh network namespace with its loopback interface up.
    pub fn new() -> Result<NetNs, NsError> {
        Self::with_label("netns")
    }

    /// As [`NetNs::new`], with a label used in thread names and messages.
    pub fn with_label(label: &str) -> Result<NetNs, NsError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<OwnedFd, NsError>>();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let keeper = std::thread::Builder::new()
            .name(format!("ns-{label}"))
            .spawn(move || {
                let fd = match unshare(CloneFlags::CLONE_NEWNET) {
                    Err(e @ (nix::Error::EPERM | nix::Error::EACCES)) => {
                        Err(NsError::NotPermitted {
                            source: e,
                            hint: crate::privileges::refusal_hint(),
                        })
                    }
                    Err(e) => Err(NsError::sys("unshare(CLONE_NEWNET)", e)),
                    Ok(()) => std::fs::File::open("/proc/thread-self/ns/net")
                        .map(OwnedFd::from)
                        .map_err(|e| NsError::sys("opening /proc/thread-self/ns/net", e))
                        .and_then(|fd| {
                            set_link_up("lo")
                                .map_err(|e| NsError::sys("bringing loopback up", e))?;
                            Ok(fd)
                        }),
                };
                let ok = fd.is_ok();
                // The receiver only disappears if `with_label` returned already.
                let _ = ready_tx.send(fd);
                if !ok {
                    return;
                }
                // Serve spawn jobs until the NetNs is dropped; see the module doc
                // for why children must be forked by this long-lived thread.
                while let Ok(job) = job_rx.recv() {
                    job();
                }
            })
            .map_err(|e| NsError::sys("spawning the namespace keeper thread", e))?;
        let fd = match ready_rx.recv() {
            Ok(r) => r,
            Err(_) => Err(NsError::sys(
                "namespace keeper thread",
                io::Error::other("exited before reporting"),
            )),
        };
        match fd {
            Ok(fd) => Ok(NetNs {
                fd: Arc::new(fd),
                label: label.to_string(),
                jobs: Mutex::new(Some(job_tx)),
                keeper: Some(keeper),
            }),
            Err(e) => {
                let _ = keeper.join();
                Err(e)
            }
        }
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The namespace file descriptor (as `/proc/thread-self/ns/net` opened inside it).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The namespace inode (as `stat -L /proc/<pid>/ns/net` shows it), to
    /// recognise it from outside.
    pub fn inode(&self) -> io::Result<u64> {
        let st = nix::sys::stat::fstat(self.fd.as_fd()).map_err(io::Error::from)?;
        Ok(st.st_ino)
    }

    /// Run `f` on a fresh thread inside the namespace and wait for its result.
    /// Sockets created by `f` belong to the namespace; so do threads it spawns
    /// (a tokio runtime built inside `f` has its workers there).
    ///
    /// Panics if entering the namespace fails, which cannot happen for a
    /// namespace this process created (it had the rights then); see
    /// [`NetNs::try_run`] for a fallible version. A panic in `f` is propagated.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        match self.try_run(f) {
            Ok(r) => r,
            Err(e) => panic!("entering namespace {}: {e}", self.label),
        }
    }

    /// As [`NetNs::run`], returning an error when the thread cannot be started
    /// or cannot enter the namespace.
    pub fn try_run<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let fd = &self.fd;
        std::thread::scope(|s| {
            let h = std::thread::Builder::new()
                .name(format!("in-{}", self.label))
                .spawn_scoped(s, move || -> io::Result<R> {
                    setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                        .map_err(|e| io::Error::other(format!("setns: {e}")))?;
                    Ok(f())
                })?;
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Start a named thread inside the namespace and return its handle; the
    /// thread's result is `Err` if it could not enter the namespace.
    pub fn spawn_thread<F, R>(&self, name: &str, f: F) -> io::Result<JoinHandle<io::Result<R>>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fd = Arc::clone(&self.fd);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io::Error::other(format!("setns: {e}")))?;
                Ok(f())
            })
    }

    /// A `Command` whose child joins this namespace (`setns` before `exec`) and
    /// gets `PR_SET_PDEATHSIG(SIGKILL)`.
    ///
    /// pdeathsig fires when the *thread* that forked the child exits: start the
    /// command with [`NetNs::spawn`] to tie the child to this `NetNs` (killed when
    /// it is dropped, or when the process dies). Calling `.spawn()` yourself ties
    /// it to the calling thread instead (beware of short-lived pool threads).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let fd = Arc::clone(&self.fd);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec; it only makes
        // async-signal-safe system calls and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then no
                // signal would ever come, so refuse to run.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        cmd
    }

    /// Start `cmd` (usually from [`NetNs::command`]) from the namespace's keeper
    /// thread, so that its pdeathsig fires when this `NetNs` is dropped.
    pub fn spawn(&self, mut cmd: Command) -> io::Result<Child> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(cmd.spawn());
        });
        let sent = match self.jobs.lock() {
            Ok(g) => g.as_ref().map(|s| s.send(job).is_ok()).unwrap_or(false),
            Err(_) => false,
        };
        if !sent {
            return Err(io::Error::other(format!(
                "namespace {} is shutting down",
                self.label
            )));
        }
        rx.recv()
            .map_err(|_| io::Error::other("namespace keeper thread died"))?
    }

    /// Run `program args...` inside the namespace, wait, and fail with its
    /// stderr when it exits non-zero.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<String> {
        // A system tool (ip, tc, nft): found in sbin where PATH lacks it.
        let mut cmd = self.command(crate::tools::locate(program));
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = self.spawn(cmd)?.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "`{program} {}` in namespace {} failed ({}): {}",
                args.join(" "),
                self.label,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Write a sysctl (e.g. `net/ipv4/ip_local_port_range`) of this namespace.
    pub fn set_sysctl(&self, name: &str, value: &str) -> io::Result<()> {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        self.try_run(|| {
            std::fs::write(&path, value).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("writing {} = {value}: {e}", path.display()),
                )
            })
        })?
    }

    /// Read a sysctl of this namespace.
    pub fn sysctl(&self, name: &str) -> io::Result<String> {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        self.try_run(|| std::fs::read_to_string(&path).map(|s| s.trim().to_string()))?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Closing the channel ends the keeper; its exit SIGKILLs the children it
        // forked (pdeathsig).
        if let Ok(mut g) = self.jobs.lock() {
            g.take();
        }
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

/// Set `IFF_UP` on interface `name` of the calling thread's namespace.
pub(crate) fn set_link_up(name: &str) -> io::Result<()> {
    // SIOCSIFFLAGS on a throwaway socket: no exec needed for the loopback.
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    let mut ifr = ifreq_named(name)?;
    // SAFETY: ifr is a valid ifreq; the ioctls read/write only within it.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A zeroed `ifreq` carrying interface name `name`.
pub(crate) fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= ifr.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?} (1..=15 bytes, no NUL)"),
        ));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(ifr)
}

pub use crate::privileges::enter_user_namespace;

/// Whether this process can create network namespaces (tries once).
pub fn can_create() -> Result<(), NsError> {
    NetNs::with_label("probe").map(drop)
}
