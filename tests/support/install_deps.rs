//! Shared by the interop tests of several crates (included with `#[path]`):
//! they install their own peers, so that `cargo test` alone sets up a fresh
//! machine.

use std::path::Path;
use std::process::Stdio;

/// Runs the project's installer (`scripts/install-test-deps.sh`: idempotent,
/// one at a time), so that `cargo test` alone sets up a fresh machine. Without
/// root its apt steps fail; the caller checks again and skips loudly.
pub fn provision() {
    use std::io::Write;
    // Every crate that includes this file sits one level below the root.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-test-deps.sh");
    let st = std::process::Command::new("bash")
        .arg(&script)
        .stdout(Stdio::null())
        .status();
    let _ = writeln!(std::io::stderr(), "{}: {st:?}", script.display());
}
