//! Shared by the interop tests of several crates (included with `#[path]`):
//! they install their own peers, so that `cargo test` alone sets up a fresh
//! machine. As root (CI) a peer that cannot be installed fails the test with
//! the installer's output; without root the test skips loudly.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the installer did.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub script: PathBuf,
    /// Exit status, or why it could not start.
    pub status: String,
    /// Its stdout and stderr, as printed.
    pub output: String,
}

/// Runs the project's installer (`scripts/install-test-deps.sh`: idempotent,
/// one at a time) and shows its output. Without root its apt steps fail; the
/// caller checks again and calls [`missing`].
pub fn provision() -> Provisioned {
    // Every crate that includes this file sits one level below the root.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-test-deps.sh");
    provision_with(&script)
}

/// [`provision`] with another script (tests of this helper).
pub fn provision_with(script: &Path) -> Provisioned {
    let out = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .output();
    let p = match out {
        Ok(o) => Provisioned {
            script: script.to_path_buf(),
            status: o.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        },
        Err(e) => Provisioned {
            script: script.to_path_buf(),
            status: format!("could not start bash: {e}"),
            output: String::new(),
        },
    };
    // Straight to the stderr handle: libtest captures eprintln!, and this must show.
    let _ = writeln!(
        std::io::stderr(),
        "{} ({}):\n{}",
        p.script.display(),
        p.status,
        p.output.trim_end()
    );
    p
}

/// Real root: effective uid 0 in the initial user namespace (read from
/// /proc: no libc needed by every includer). Root of a user namespace (a test
/// re-executed by the link gate) cannot install packages.
pub fn is_root() -> bool {
    let uid0 = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    let identity = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false);
    uid0 && identity
}

/// `what` is still missing after `p`: as root (CI), where the installer can
/// work, fail with its output; otherwise say SKIPPED loudly (the caller
/// returns).
pub fn missing(test: &str, what: &str, p: &Provisioned) {
    missing_as(is_root(), test, what, p)
}

/// [`missing`] with the privilege given (tests of this helper).
pub fn missing_as(root: bool, test: &str, what: &str, p: &Provisioned) {
    let msg = format!(
        "{test}: {what} is missing and {} could not install it ({}); its output:\n{}",
        p.script.display(),
        p.status,
        p.output.trim_end()
    );
    if root {
        panic!("{msg}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED (not root): {msg}");
}
