//! The one gate of every test that builds links (network namespaces and TUN
//! devices) or sets TCP controllers, in every crate of the workspace.
//!
//! As root a test runs as it is. An ordinary user cannot enter a user
//! namespace once libtest has started its threads (the kernel refuses
//! `CLONE_NEWUSER` to a multi-threaded process), so each test binary that
//! needs privileges enters one *before main*, from its `.init_array`
//! ([`crate::test_binary_enters_user_namespace`]), with a network namespace of
//! its own and loopback up: its links are built inside it, and its loopback
//! servers may set any controller the kernel has (an ordinary user on the
//! host's loopback gets only `net.ipv4.tcp_allowed_congestion_control`).
//! [`links`] then checks, and only where nothing works does a test say
//! `SKIPPED:` with the reason; with `QUICBENCH_REQUIRE_NAMESPACES` set (CI, the
//! kernel-netem VM) a skip is a failure instead.

use crate::privileges;

/// Set it to turn "cannot build links here" into a failure.
pub const REQUIRE_ENV: &str = "QUICBENCH_REQUIRE_NAMESPACES";
/// What the gate's skip line says.
const GATE_SKIP: &str = "needs network namespaces and /dev/net/tun";

/// Call first in a test that builds links: `if !links("name") { return; }`.
/// True: run the body. False: it cannot run here (said loudly on stderr).
pub fn links(test: &str) -> bool {
    let why = match ready_here() {
        Ok(()) => return true,
        Err(why) => why,
    };
    if std::env::var_os(REQUIRE_ENV).is_some() {
        panic!("{test}: {REQUIRE_ENV} is set, but links cannot be built here: {why}");
    }
    // Straight to stderr: libtest captures eprintln! of a passing test, and a
    // skip must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {GATE_SKIP}: {why}");
    false
}

/// Namespaces can be created and TUN opens, in this process as it is.
fn ready_here() -> Result<(), String> {
    crate::ns::can_create().map_err(|e| e.to_string())?;
    privileges::tun_access()
}

/// Before `main` of a test binary (see
/// [`crate::test_binary_enters_user_namespace`]): an ordinary user's process
/// becomes root of a user namespace and of a network namespace of its own,
/// with loopback up. Nothing as root. A refusal is kept ([`privileges`]) and
/// reported by the first [`links`] or namespace that fails.
pub fn enter_at_start() {
    if nix::unistd::geteuid().is_root() {
        return;
    }
    if !privileges::acquire().sufficient() {
        return;
    }
    // Loopback tests may then set any controller; links nest inside as usual.
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok() {
        let _ = crate::ns::set_link_up("lo");
    }
}

/// In a test binary (once, e.g. in the tests' common module): run
/// [`test_gate::enter_at_start`](crate::test_gate::enter_at_start) before
/// `main`, while the process has one thread. A no-op as root.
#[macro_export]
macro_rules! test_binary_enters_user_namespace {
    () => {
        #[used]
        #[link_section = ".init_array"]
        static QUICBENCH_ENTER_USER_NAMESPACE: extern "C" fn() = {
            extern "C" fn enter() {
                $crate::test_gate::enter_at_start();
            }
            enter
        };
    };
}
