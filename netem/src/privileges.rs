//! What this process may do to the network, and how it got there: as root, or
//! as an ordinary user who became root of a user namespace of its own.
//!
//! A link needs network namespaces and TUN devices, i.e. CAP_SYS_ADMIN and
//! CAP_NET_ADMIN *over the namespaces it creates*. Where the kernel allows
//! unprivileged user namespaces, an ordinary user gets both by entering one at
//! start ([`acquire`]): its uid becomes 0 inside, and every namespace created
//! afterwards belongs to it. That must happen while the process has one
//! thread (the kernel refuses `CLONE_NEWUSER` otherwise), so the command line
//! calls [`acquire`] first thing in `main`; the test suites use
//! [`crate::test_gate`], which re-executes a test in a child that enters one.
//!
//! What differs inside (docs/rootless.md): SCHED_FIFO for the relay needs real
//! root (the relay falls back to nice or normal and records which), the
//! open-file hard limit cannot be raised, sysctls that are not per network
//! namespace cannot be written, and `/dev/net/tun` must be openable by the
//! user (mode 0666, what udev's default rule sets).

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;

use nix::sched::{unshare, CloneFlags};

use crate::ns::NsError;

/// How this process is allowed to create namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileges {
    /// Root of the initial user namespace (or of a container's).
    Root,
    /// Root of a user namespace that maps one ordinary user (`outer_uid`):
    /// entered by [`acquire`], or by whoever started us (`unshare -r`, a test
    /// gate).
    UserNamespace { outer_uid: u32 },
    /// An ordinary user that could not enter a user namespace: why, naming
    /// the setting and how to change it.
    Unprivileged { why: String },
}

impl Privileges {
    /// The short form recorded in run.json: "root", "user namespace", "none".
    pub fn label(&self) -> &'static str {
        match self {
            Privileges::Root => "root",
            Privileges::UserNamespace { .. } => "user namespace",
            Privileges::Unprivileged { .. } => "none",
        }
    }

    /// True where namespaces can be expected to work.
    pub fn sufficient(&self) -> bool {
        !matches!(self, Privileges::Unprivileged { .. })
    }
}

impl fmt::Display for Privileges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Privileges::Root => f.write_str("root"),
            Privileges::UserNamespace { outer_uid } => write!(
                f,
                "user namespace (uid {outer_uid} is root inside; no sudo needed)"
            ),
            Privileges::Unprivileged { why } => write!(f, "none: {why}"),
        }
    }
}

static ACQUIRED: OnceLock<Privileges> = OnceLock::new();

/// Make sure this process may create namespaces: nothing to do as root (or
/// inside a user namespace already); otherwise enter a user namespace of our
/// own. Call it first thing in `main`, before any thread starts. Never fails:
/// an ordinary user whose kernel refuses gets [`Privileges::Unprivileged`] with
/// the reason, and the first namespace the process tries to create fails with
/// it (see [`refusal_hint`]).
pub fn acquire() -> Privileges {
    ACQUIRED
        .get_or_init(|| match current() {
            Privileges::Unprivileged { .. } => {
                let uid = nix::unistd::geteuid().as_raw();
                match enter_user_namespace() {
                    Ok(()) => Privileges::UserNamespace { outer_uid: uid },
                    Err(e) => Privileges::Unprivileged {
                        why: user_namespace_refused(&e.to_string()),
                    },
                }
            }
            p => p,
        })
        .clone()
}

/// What this process has now: what [`acquire`] found, or (where it was not
/// called) what the process was started with.
pub fn privileges() -> Privileges {
    ACQUIRED.get().cloned().unwrap_or_else(current)
}

/// Read from the process itself: root of the initial namespace, root of a
/// user namespace (a uid map that is not the identity), or neither.
fn current() -> Privileges {
    if !nix::unistd::geteuid().is_root() {
        return Privileges::Unprivileged {
            why: "not root, and no user namespace entered yet".into(),
        };
    }
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    match parse_uid_map(&map) {
        Some(outer) => Privileges::UserNamespace { outer_uid: outer },
        None => Privileges::Root,
    }
}

/// The outer uid that 0 maps to, when the map is not the initial namespace's
/// identity map (`0 0 4294967295`).
fn parse_uid_map(map: &str) -> Option<u32> {
    let mut lines = map.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next()?;
    let f: Vec<u64> = first
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    match f.as_slice() {
        [0, 0, 4294967295] => None,
        [0, outer, _] => Some(*outer as u32),
        _ => None,
    }
}

/// `unshare(CLONE_NEWUSER)`, retried for a moment on EINVAL: a thread that
/// has just ended (joined) stays in the thread group until the kernel reaps
/// it, and meanwhile the process still counts as multi-threaded.
fn unshare_user_namespace() -> nix::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    loop {
        match unshare(CloneFlags::CLONE_NEWUSER) {
            Err(nix::Error::EINVAL) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            r => return r,
        }
    }
}

/// Make this process root of a new user namespace (mapping the current uid and
/// gid to 0) so that it may create network namespaces and TUN devices without
/// being root. A no-op when already root.
///
/// Must be called before the process starts any other thread (the kernel
/// refuses `CLONE_NEWUSER` in a multi-threaded process): at the top of `main`.
pub fn enter_user_namespace() -> Result<(), NsError> {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    if uid.is_root() {
        return Ok(());
    }
    match unshare_user_namespace() {
        Ok(()) => {}
        Err(nix::Error::EINVAL) => {
            return Err(NsError::Sys {
                what: "unshare(CLONE_NEWUSER)".into(),
                source: io::Error::other(
                    "the process is multi-threaded: enter the user namespace before \
                     starting any thread",
                ),
            })
        }
        Err(e) => {
            return Err(NsError::Sys {
                what: "unshare(CLONE_NEWUSER)".into(),
                source: e.into(),
            })
        }
    }
    let w = |path: &str, s: String| {
        std::fs::write(path, s).map_err(|e| NsError::Sys {
            what: format!("writing {path}"),
            source: e,
        })
    };
    w("/proc/self/setgroups", "deny".into())?;
    w("/proc/self/uid_map", format!("0 {uid} 1"))?;
    w("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(())
}

fn read_setting(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The kernel settings that can refuse an unprivileged user namespace, as
/// they are on this machine: `(sysctl name, value, what it means, how to
/// allow)`. Only those present and refusing are returned.
fn refusing_settings() -> Vec<Setting> {
    refusing_settings_from(read_setting)
}

/// `(sysctl name, value, what it means, how to allow it)`.
type Setting = (&'static str, String, &'static str, &'static str);

/// Each setting that can refuse: (sysctl name, the value that refuses, what
/// it means, how to allow it). The /proc path follows from the name.
const REFUSERS: [(&str, &str, &str, &str); 3] = [
    (
        "user.max_user_namespaces",
        "0",
        "no user namespaces may be created at all",
        "sudo sysctl -w user.max_user_namespaces=10000",
    ),
    (
        "kernel.unprivileged_userns_clone",
        "0",
        "Debian's switch: only root may create user namespaces",
        "sudo sysctl -w kernel.unprivileged_userns_clone=1",
    ),
    (
        "kernel.apparmor_restrict_unprivileged_userns",
        "1",
        "AppArmor (Ubuntu 23.10 and later) gives unconfined programs' user \
         namespaces no capabilities",
        "an AppArmor profile for the quicbench binary with `userns,` \
         (docs/rootless.md), or sudo sysctl -w \
         kernel.apparmor_restrict_unprivileged_userns=0",
    ),
];

fn refusing_settings_from(read_setting: impl Fn(&str) -> Option<String>) -> Vec<Setting> {
    REFUSERS
        .iter()
        .filter_map(|&(name, refusing, meaning, allow)| {
            let path = format!("/proc/sys/{}", name.replace('.', "/"));
            let v = read_setting(&path)?;
            (v == refusing).then_some((name, v, meaning, allow))
        })
        .collect()
}

/// Why an ordinary user could not enter a user namespace, from the error and
/// the settings that decide it, with the two ways forward.
fn user_namespace_refused(error: &str) -> String {
    refused_message(error, &refusing_settings())
}

fn refused_message(error: &str, settings: &[Setting]) -> String {
    let mut s = format!("entering a user namespace failed ({error})");
    if settings.is_empty() {
        s.push_str(
            "; no kernel setting refuses it here, so a sandbox does (a container's \
             seccomp profile or a missing CAP_SYS_ADMIN: docker run --security-opt \
             seccomp=unconfined)",
        );
    }
    s + &ways_forward(settings)
}

/// Each refusing setting (how to see it, how to allow it), then the two ways
/// forward.
fn ways_forward(settings: &[Setting]) -> String {
    let mut s = String::new();
    for (name, value, meaning, allow) in settings {
        s.push_str(&format!(
            "; {name} = {value}: {meaning} (see it: sysctl {name}; allow it: {allow})"
        ));
    }
    s + ". Two ways forward: run as root (sudo), or allow unprivileged user namespaces"
}

/// Appended to a refused `unshare(CLONE_NEWNET)`: what this process is and
/// what would let it create namespaces.
pub fn refusal_hint() -> String {
    match privileges() {
        Privileges::Root => {
            "running as root without CAP_SYS_ADMIN and CAP_NET_ADMIN (a container? \
             docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN --security-opt \
             seccomp=unconfined)"
                .into()
        }
        Privileges::UserNamespace { .. } => {
            "inside a user namespace, creating a network namespace was still refused".to_string()
                + &ways_forward(&refusing_settings())
        }
        Privileges::Unprivileged { why } if ACQUIRED.get().is_some() => {
            format!("not root, and {why}")
        }
        Privileges::Unprivileged { .. } => "not root, and this program did not enter a user \
             namespace: run as root, or call quicbench_netem::privileges::acquire() first \
             thing in main (the quicbench commands do)"
            .into(),
    }
}

/// Whether `/dev/net/tun` opens for this process, and if not why, with the fix.
pub fn tun_access() -> Result<(), String> {
    const TUN: &str = "/dev/net/tun";
    match std::fs::OpenOptions::new().read(true).write(true).open(TUN) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "{TUN} does not exist ({e}): `sudo modprobe tun`; in Docker: --device /dev/net/tun"
        )),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mode = std::fs::metadata(TUN)
                .map(|m| format!("{:o}", m.permissions().mode() & 0o777))
                .unwrap_or_else(|_| "?".into());
            Err(format!(
                "{TUN} is mode {mode} and this user may not open it ({e}): ask root once for \
                 `chmod 0666 {TUN}` (what udev's default rule sets on Debian, Ubuntu and \
                 Fedora; a machine without udev keeps the kernel's 0600), or run as root"
            ))
        }
        Err(e) => Err(format!("{TUN} does not open: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_map_identity_is_root_of_the_initial_namespace() {
        assert_eq!(parse_uid_map("         0          0 4294967295\n"), None);
    }

    #[test]
    fn uid_map_of_one_user_names_it() {
        assert_eq!(
            parse_uid_map("         0       1000          1\n"),
            Some(1000)
        );
        assert_eq!(parse_uid_map("0 65534 1"), Some(65534));
    }

    #[test]
    fn uid_map_unreadable_or_odd_is_not_a_user_namespace() {
        assert_eq!(parse_uid_map(""), None);
        assert_eq!(parse_uid_map("garbage"), None);
        // A map that does not start at 0 inside: we are not its root.
        assert_eq!(parse_uid_map("1000 1000 1"), None);
    }

    #[test]
    fn labels_are_the_run_json_values() {
        assert_eq!(Privileges::Root.label(), "root");
        assert_eq!(
            Privileges::UserNamespace { outer_uid: 1000 }.label(),
            "user namespace"
        );
        let u = Privileges::Unprivileged { why: "x".into() };
        assert_eq!(u.label(), "none");
        assert!(!u.sufficient());
        assert!(Privileges::Root.sufficient());
    }

    fn settings(pairs: &[(&str, &str)]) -> Vec<Setting> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        refusing_settings_from(move |p: &str| {
            pairs.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn each_refusing_setting_is_named_with_how_to_see_and_allow_it() {
        let s = settings(&[("/proc/sys/user/max_user_namespaces", "0")]);
        let m = refused_message("ENOSPC", &s);
        assert!(m.contains("user.max_user_namespaces = 0"), "{m}");
        assert!(m.contains("sysctl user.max_user_namespaces"), "{m}");
        assert!(m.contains("user.max_user_namespaces=10000"), "{m}");
        let s = settings(&[("/proc/sys/kernel/unprivileged_userns_clone", "0")]);
        assert!(refused_message("EPERM", &s).contains("kernel.unprivileged_userns_clone = 0"));
        let s = settings(&[(
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
        )]);
        let m = refused_message("EPERM", &s);
        assert!(m.contains("AppArmor"), "{m}");
        assert!(m.contains("userns,"), "{m}");
    }

    #[test]
    fn allowing_values_are_not_reported() {
        let s = settings(&[
            ("/proc/sys/user/max_user_namespaces", "96362"),
            ("/proc/sys/kernel/unprivileged_userns_clone", "1"),
            (
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                "0",
            ),
        ]);
        assert!(s.is_empty(), "{s:?}");
        // Nothing in the kernel refuses: a sandbox (seccomp) must have.
        assert!(refused_message("EPERM", &s).contains("seccomp"));
    }

    #[test]
    fn refusal_names_the_two_ways_forward() {
        let s = user_namespace_refused("EPERM");
        assert!(s.contains("EPERM"), "{s}");
        assert!(s.contains("run as root"), "{s}");
        assert!(s.contains("allow unprivileged user namespaces"), "{s}");
    }
}
