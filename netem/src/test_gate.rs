//! The one gate of every test that builds links (network namespaces and TUN
//! devices), in every crate of the workspace.
//!
//! As root the test runs in place. As an ordinary user it cannot enter a user
//! namespace in place (libtest has started threads, and the kernel refuses
//! `CLONE_NEWUSER` to a multi-threaded process), so the gate re-executes the
//! test binary for this one test in a child that enters a user namespace
//! between fork and exec (a forked child has one thread), reports the child's
//! output and fails with it. Only where neither works does the test say
//! `SKIPPED:` with the reason; with `QUICBENCH_REQUIRE_NAMESPACES` set (CI, the
//! kernel-netem VM) a skip is a failure instead.

use std::ffi::CStr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::privileges;

/// Set it to turn "cannot build links here" into a failure.
pub const REQUIRE_ENV: &str = "QUICBENCH_REQUIRE_NAMESPACES";
/// What the gate's own skip line says (a child's skip is the parent's).
const GATE_SKIP: &str = "needs network namespaces and /dev/net/tun";
/// Marks the re-executed child (it must not re-execute again).
const CHILD_ENV: &str = "QUICBENCH_TEST_IN_USER_NAMESPACE";

/// Call first in a test that builds links: `if !links("name") { return; }`.
/// True: run the body here. False: the test already ran and passed in a
/// child user namespace, or it is skipped (said loudly on stderr).
pub fn links(test: &str) -> bool {
    let why = match ready_here() {
        Ok(()) => return true,
        Err(why) => why,
    };
    let why = if std::env::var_os(CHILD_ENV).is_none() && !nix::unistd::geteuid().is_root() {
        match rerun_in_user_namespace(test) {
            Ok(()) => return false,
            Err(refused) => format!("{why}; a user namespace for the test: {refused}"),
        }
    } else {
        why
    };
    if std::env::var_os(REQUIRE_ENV).is_some() {
        panic!("{test}: {REQUIRE_ENV} is set, but links cannot be built here: {why}");
    }
    eprintln!("SKIPPED: {test}: {GATE_SKIP}: {why}");
    false
}

/// Namespaces can be created and TUN opens, in this process as it is.
fn ready_here() -> Result<(), String> {
    crate::ns::can_create().map_err(|e| e.to_string())?;
    privileges::tun_access()
}

/// Run this one test again in a child that is root of a user namespace of
/// its own. Ok: it ran and passed (its output is printed, so libtest shows it
/// with the test's). Err: the user namespace could not be made. A child that
/// ran and failed fails the caller with the child's output.
fn rerun_in_user_namespace(test: &str) -> Result<(), String> {
    // libtest names each test's thread after the test's full path.
    let name = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or(test)
        .to_string();
    let exe = std::env::current_exe().map_err(|e| format!("finding the test binary: {e}"))?;
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    // Everything the child writes is made before fork: no allocation after.
    let files = [
        (c"/proc/self/setgroups", b"deny".to_vec()),
        (c"/proc/self/uid_map", format!("0 {uid} 1").into_bytes()),
        (c"/proc/self/gid_map", format!("0 {gid} 1").into_bytes()),
    ];
    let mut cmd = Command::new(&exe);
    cmd.args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1");
    // SAFETY: between fork and exec only async-signal-safe system calls on
    // memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for (path, data) in &files {
                write_all(path, data)?;
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .map_err(|e| format!("re-executing {} in a user namespace: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    if stdout.contains("running 0 tests") {
        panic!("{test}: re-executed for a user namespace, but `{name}` matched no test");
    }
    if !out.status.success() {
        panic!(
            "{test}: failed in a user namespace (uid {uid} as root inside; {})",
            out.status
        );
    }
    // The child's own gate skipped (e.g. TUN not openable): the same skip here.
    if let Some(line) = stderr.lines().find(|l| l.contains(GATE_SKIP)) {
        return Err(format!("inside it: {line}"));
    }
    eprintln!("{test}: ran in a user namespace (uid {uid} as root inside): ok");
    Ok(())
}

/// open + write + close with raw system calls (async-signal-safe).
fn write_all(path: &CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path and a buffer that outlives the calls.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}
