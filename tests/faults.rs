//! Fault tests of the `quicbench` binary over real namespaces and TUN devices
//! (docs/security.md, "Faults"):
//!
//! - SIGKILL of the coordinator mid-cell leaves no namespace, device or
//!   process behind, every finished cell file is valid, and `--resume`
//!   completes the plan;
//! - SIGINT stops cleanly (exit 130), keeps finished cells, leaves run.json
//!   unfinished, and `--resume` completes;
//! - a cell that cannot finish in `cell_timeout_s` fails with the reason and
//!   the run goes on.
//!
//! Needs root (or user namespaces) and /dev/net/tun; otherwise says loudly
//! what was skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quicbench_results::{CellResult, CellStatus, RunMeta};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_quicbench")
}

/// Straight to stderr: a skip must be seen, not captured away.
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr(), "!!! {line}");
}

fn can_run_links(test: &str) -> bool {
    quicbench_netem::test_gate::links(test)
}

/// Three cells on a rate-limited link: two goodput transfers of 8 MiB at
/// 20 Mbit/s (about 3.5 s each, long enough to be caught in flight) and a
/// short UDP probe.
const SLOW: &str = r#"
name = "faults"
repetitions = 1
warmup = 0
protocols = ["h1.1", "h2", "udp"]
cell_timeout_s = 60
[[links]]
label = "slow"
spec = "delay 1ms rate 20mbit"
[workloads.goodput]
size = 8388608
[workloads.udp]
count = 20
"#;

fn write_matrix(dir: &Path, text: &str) -> PathBuf {
    let m = dir.join("m.toml");
    std::fs::write(&m, text).unwrap();
    m
}

fn start_run(matrix: &Path, out: &Path) -> Child {
    Command::new(bin())
        .args(["run", "--no-calibrate", "--matrix"])
        .arg(matrix)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start quicbench run")
}

fn run_dir_in(base: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("run.json").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Cell files (`cells/*.json`), each parsed as a `CellResult` (panics naming
/// the file if one is not).
fn read_cells(dir: &Path) -> BTreeMap<String, CellResult> {
    let Ok(rd) = std::fs::read_dir(dir.join("cells")) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for p in rd.map(|e| e.unwrap().path()) {
        if p.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let cell: CellResult = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{} is not a valid cell file: {e}", p.display()));
        cell.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.insert(cell.cell_id.clone(), cell);
    }
    out
}

fn cell_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("cells"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

fn meta(dir: &Path) -> RunMeta {
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

/// The plan of a matrix as an uninterrupted run would record it: a run that
/// stops before its first cell still writes every planned cell id.
fn planned_ids(matrix: &Path, tmp: &Path) -> BTreeSet<String> {
    let out = tmp.join("plan");
    let st = Command::new(bin())
        .args(["run", "--no-calibrate", "--max-cells", "0", "--matrix"])
        .arg(matrix)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    meta(&run_dir_in(&out).unwrap())
        .cell_ids
        .into_iter()
        .collect()
}

fn resume(dir: &Path) -> std::process::Output {
    let out = Command::new(bin())
        .args(["run", "--resume"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "resume failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn net_devices() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `net:[4026532…]` → the inode.
fn ns_inode(link: &Path) -> Option<u64> {
    let t = std::fs::read_link(link).ok()?;
    let t = t.to_str()?;
    t.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Network namespaces `pid` is in or holds: its threads' namespaces and its
/// namespace file descriptors (the harness keeps anonymous namespaces alive
/// by fd).
fn namespaces_of(pid: u32) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(|e| e.ok()) {
            out.extend(ns_inode(&t.path().join("ns/net")));
        }
    }
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.filter_map(|e| e.ok()) {
            out.extend(ns_inode(&fd.path()));
        }
    }
    out
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// (ppid, start time in clock ticks) from /proc/<pid>/stat.
fn stat_of(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest: state(0) ppid(1) ... starttime(19)
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Processes whose parent is `pid`, as (pid, start time).
fn children_of(pid: u32) -> BTreeSet<(u32, u64)> {
    all_pids()
        .into_iter()
        .filter_map(|p| {
            let (ppid, start) = stat_of(p)?;
            (ppid == pid).then_some((p, start))
        })
        .collect()
}

/// Every process (thread or fd) still in or holding one of `inodes`, and
/// every bind mount of one (named namespaces, /run/netns).
fn holders_of(inodes: &BTreeSet<u64>) -> Vec<String> {
    let mut out = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mounts.lines() {
        if let Some(i) = inodes.iter().find(|i| line.contains(&format!("net:[{i}]"))) {
            out.push(format!("net namespace {i} is mounted: {line}"));
        }
    }
    for pid in all_pids() {
        let held = namespaces_of(pid);
        if let Some(i) = held.intersection(inodes).next() {
            out.push(format!("pid {pid} holds net namespace {i}"));
        }
    }
    out
}

/// What a run has under way, watched from outside while it runs.
#[derive(Default)]
struct Watch {
    namespaces: BTreeSet<u64>,
    children: BTreeSet<(u32, u64)>,
}

impl Watch {
    fn look(&mut self, pid: u32, own_ns: u64) {
        let ns = namespaces_of(pid);
        self.namespaces
            .extend(ns.into_iter().filter(|&i| i != own_ns));
        self.children.extend(children_of(pid));
    }
}

fn own_ns() -> u64 {
    ns_inode(Path::new("/proc/self/ns/net")).expect("own network namespace")
}

/// Polls until the run has written at least `cells` cell files and has its
/// next cell's link up (namespaces beyond its own), then lets the cell run
/// for `settle`. Returns the run directory.
fn wait_in_flight(
    child: &mut Child,
    out: &Path,
    cells: usize,
    settle: Duration,
    watch: &mut Watch,
) -> PathBuf {
    let own = own_ns();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never reached a cell in flight"
        );
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the run ended before it could be interrupted: {st}");
        }
        watch.look(child.id(), own);
        if let Some(dir) = run_dir_in(out) {
            let live = namespaces_of(child.id());
            if cell_files(&dir) >= cells && live.iter().any(|&i| i != own) {
                let t = Instant::now();
                while t.elapsed() < settle {
                    watch.look(child.id(), own);
                    std::thread::sleep(Duration::from_millis(100));
                }
                return dir;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` for up to `limit`; the last failure if it never passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let t = Instant::now();
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if t.elapsed() > limit => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn sigkill_mid_cell_leaves_nothing_and_resume_completes() {
    if !can_run_links("sigkill_mid_cell_leaves_nothing_and_resume_completes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = write_matrix(tmp.path(), SLOW);
    let plan = planned_ids(&m, tmp.path());
    assert_eq!(plan.len(), 3);
    let devices_before = net_devices();

    let out = tmp.path().join("run");
    let mut child = start_run(&m, &out);
    let pid = child.id();
    let mut watch = Watch::default();
    let dir = wait_in_flight(&mut child, &out, 1, Duration::from_millis(700), &mut watch);
    assert!(
        !watch.namespaces.is_empty(),
        "the run should hold its cell's namespaces"
    );
    println!(
        "killing the run (pid {pid}) with {} cell(s) written, holding net namespaces {:?}, children {:?}",
        cell_files(&dir),
        watch.namespaces,
        watch.children
    );
    child.kill().unwrap(); // SIGKILL
    let st = child.wait().unwrap();
    assert!(!st.success(), "{st}");

    // The kernel reclaims everything the coordinator held.
    eventually(Duration::from_secs(10), || {
        let h = holders_of(&watch.namespaces);
        if h.is_empty() {
            Ok(())
        } else {
            Err(format!("namespaces of the killed run still alive: {h:?}"))
        }
    });
    eventually(Duration::from_secs(10), || {
        let left: Vec<_> = net_devices().difference(&devices_before).cloned().collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("devices left in the root namespace: {left:?}"))
        }
    });
    eventually(Duration::from_secs(5), || {
        let alive: Vec<_> = watch
            .children
            .iter()
            .filter(|(p, start)| stat_of(*p).is_some_and(|(_, s)| s == *start))
            .collect();
        let orphans = children_of(pid);
        if alive.is_empty() && orphans.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "processes of the killed run still alive: {alive:?} {orphans:?}"
            ))
        }
    });

    // What finished is intact; the cell in flight is lost, nothing else.
    let before = read_cells(&dir);
    assert!(
        !before.is_empty() && before.len() < plan.len(),
        "{before:?}"
    );
    assert!(meta(&dir).finished.is_none());

    let r = resume(&dir);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!("{} already done", before.len())),
        "{err}"
    );
    let after = read_cells(&dir);
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), plan);
    for (id, c) in &before {
        assert_eq!(&after[id], c, "a finished cell was rewritten on resume");
    }
    assert!(meta(&dir).finished.is_some(), "the resumed run is complete");
}

#[test]
fn sigint_stops_cleanly_and_resume_completes() {
    if !can_run_links("sigint_stops_cleanly_and_resume_completes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = write_matrix(tmp.path(), SLOW);
    let out = tmp.path().join("run");
    let mut child = start_run(&m, &out);
    let mut watch = Watch::default();
    let dir = wait_in_flight(&mut child, &out, 1, Duration::from_millis(700), &mut watch);
    let done_before = cell_files(&dir);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    // The cell in flight is abandoned within its stop poll (50 ms) and teardown.
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the run did not stop within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status}");
    eventually(Duration::from_secs(10), || {
        let h = holders_of(&watch.namespaces);
        if h.is_empty() {
            Ok(())
        } else {
            Err(format!("namespaces of the stopped run still alive: {h:?}"))
        }
    });

    let kept = read_cells(&dir);
    assert_eq!(
        kept.len(),
        done_before,
        "the interrupted cell is not recorded"
    );
    let plan: BTreeSet<String> = meta(&dir).cell_ids.into_iter().collect();
    assert!(kept.len() < plan.len());
    assert!(meta(&dir).finished.is_none(), "an interrupted run says so");
    assert!(
        dir.join("summary.csv").exists(),
        "what finished is summarised"
    );

    resume(&dir);
    let after = read_cells(&dir);
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), plan);
    assert!(after.values().all(|c| c.status.is_ok()), "{after:?}");
    assert!(meta(&dir).finished.is_some());
}

/// A goodput transfer that needs ~30 s (4 MiB at 1 Mbit/s) in a 5 s cell,
/// then a UDP probe: the first cell fails on the timeout and the run goes on.
const TIMEOUT: &str = r#"
name = "timeout"
repetitions = 1
warmup = 0
protocols = ["h2", "udp"]
cell_timeout_s = 5
[[links]]
label = "crawl"
spec = "delay 1ms rate 1mbit"
[workloads.goodput]
size = 4194304
[workloads.udp]
count = 20
"#;

#[test]
fn a_cell_over_its_time_limit_fails_and_the_run_goes_on() {
    if !can_run_links("a_cell_over_its_time_limit_fails_and_the_run_goes_on") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = write_matrix(tmp.path(), TIMEOUT);
    let out = tmp.path().join("run");
    let t = Instant::now();
    let r = Command::new(bin())
        .args(["run", "--no-calibrate", "--matrix"])
        .arg(&m)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let elapsed = t.elapsed();
    assert!(
        r.status.success(),
        "a failed cell does not fail the run: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let dir = run_dir_in(&out).unwrap();
    let cells = read_cells(&dir);
    assert_eq!(cells.len(), 2, "{:?}", cells.keys());
    let (mut failed, mut ok) = (0, 0);
    for c in cells.values() {
        match (&c.workload[..], &c.status) {
            ("goodput", CellStatus::Failed { reason }) => {
                assert!(
                    reason.contains("timed out") || reason.contains("timeout"),
                    "the reason names the timeout: {reason}"
                );
                assert!(
                    c.duration_s < 5.0 + 10.0,
                    "the cell ended {} s after it began, its limit is 5 s",
                    c.duration_s
                );
                failed += 1;
            }
            ("udp", CellStatus::Ok) => ok += 1,
            (w, s) => panic!("unexpected {w} cell {s:?}"),
        }
    }
    assert_eq!((failed, ok), (1, 1));
    assert!(meta(&dir).finished.is_some());
    assert!(
        elapsed < Duration::from_secs(40),
        "the run took {elapsed:?}: the timeout did not cut the transfer short"
    );
}

/// Threads of `pid` named `name` (`/proc/<pid>/task/<tid>/comm`).
fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == name)
                })
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One 8 MiB transfer over HTTP/1.1 at 20 Mbit/s (about 3.5 s), then a UDP
/// probe.
const SERVER_DIES: &str = r#"
name = "server-dies"
repetitions = 1
warmup = 0
protocols = ["h1.1", "udp"]
cell_timeout_s = 20
[[links]]
label = "slow"
spec = "delay 1ms rate 20mbit"
[workloads.goodput]
size = 8388608
[workloads.udp]
count = 20
"#;

/// The server side of the transfer dies mid-cell: every established TCP
/// socket in the server namespace is destroyed (`ss -K`, the kernel's
/// SOCK_DESTROY: the client sees a reset, as when a server process dies).
/// The cell fails with the reason, the next cell runs and is `ok`.
#[test]
fn server_connection_killed_mid_cell_fails_the_cell_and_the_run_goes_on() {
    let test = "server_connection_killed_mid_cell_fails_the_cell_and_the_run_goes_on";
    if !can_run_links(test) {
        return;
    }
    for tool in ["nsenter", "ss"] {
        if Command::new(tool).arg("--version").output().is_err() {
            loud(&format!(
                "SKIPPED: {test}: no `{tool}` (util-linux, iproute2)"
            ));
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let m = write_matrix(tmp.path(), SERVER_DIES);
    let out = tmp.path().join("run");
    let mut child = start_run(&m, &out);
    let pid = child.id();
    // The servers run on a thread named qb-servers inside the server namespace.
    let deadline = Instant::now() + Duration::from_secs(30);
    let server_tid = loop {
        assert!(Instant::now() < deadline, "no server thread appeared");
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the run ended early: {st}");
        }
        if let Some(&t) = threads_named(pid, "qb-servers").first() {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the transfer get going, then destroy the server's connections.
    std::thread::sleep(Duration::from_millis(1200));
    let ns = format!("/proc/{pid}/task/{server_tid}/ns/net");
    let kill = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .args(["ss", "-K", "-t", "state", "established"])
        .output()
        .unwrap();
    assert!(
        kill.status.success(),
        "ss -K in the server namespace: {}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let killed = String::from_utf8_lossy(&kill.stdout);
    println!("destroyed in the server namespace:\n{killed}");
    assert!(
        killed.lines().count() > 1,
        "no established connection to destroy: the transfer was not under way"
    );

    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "a failed cell does not fail the run: {status}"
    );
    let dir = run_dir_in(&out).unwrap();
    let cells = read_cells(&dir);
    assert_eq!(cells.len(), 2, "{:?}", cells.keys());
    for c in cells.values() {
        match (&c.workload[..], &c.status) {
            ("goodput", CellStatus::Failed { reason }) => {
                println!("goodput cell failed after {:.1} s: {reason}", c.duration_s);
                assert!(!reason.trim().is_empty());
                assert!(c.duration_s < 20.0, "the failure took {} s", c.duration_s);
            }
            ("udp", CellStatus::Ok) => {}
            (w, s) => panic!("unexpected {w} cell {s:?} (notes {:?})", c.notes),
        }
    }
    assert!(meta(&dir).finished.is_some());
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
