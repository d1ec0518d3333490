//! What the end-to-end tests of the `quicbench` binary share: running it,
//! finding the run directory, reading its cells. Included with
//! `#[path = "support/runs.rs"] mod runs;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_quicbench")
}

/// Tests of one binary run in parallel threads, and on a 2-core machine a
/// concurrent run adds milliseconds to a timed one. Timing checks hold the
/// machine alone ([`alone`]); every other test that runs links holds it
/// shared ([`shared`]).
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Hold the machine alone while a timing-sensitive check runs.
pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|p| p.into_inner())
}

/// Hold the machine shared (other non-timing tests may run beside).
pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|p| p.into_inner())
}

/// True when links can be built here (or, false, when the test already ran in
/// a child user namespace); otherwise says loudly what is skipped.
pub fn can_run_links(what: &str) -> bool {
    quicbench_netem::test_gate::links(what)
}

/// The newest run directory under `base`.
pub fn run_dir_in(base: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("run.json").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a run directory")
}

/// Run the binary; on failure, print its output (the caller asserts).
pub fn quicbench(args: &[&str]) -> std::process::Output {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run quicbench");
    if !out.status.success() {
        eprintln!(
            "quicbench {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Run the matrix text `toml` into a fresh directory; returns (tempdir, run dir).
pub fn run_matrix(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m.toml");
    std::fs::write(&m, toml).unwrap();
    let out = quicbench(&[
        "run",
        "--matrix",
        m.to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "quicbench run failed");
    let dir = run_dir_in(tmp.path());
    (tmp, dir)
}

/// Every cell of a run, sorted by id.
pub fn cells(dir: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect();
    v.sort_by_key(|c| c["cell_id"].as_str().unwrap().to_string());
    v
}

/// The samples of metric `name` in a cell.
pub fn samples(cell: &serde_json::Value, name: &str) -> Vec<f64> {
    cell["metrics"][name]["samples"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
