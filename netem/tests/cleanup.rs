//! Nothing is left behind: after a process that built a Link drops it, exits
//! normally, gets SIGINT or SIGKILL, no namespace, TUN device or process of
//! its remains. The test re-executes this test binary as the child
//! (`child_builds_a_link` does the work only when `QB_CLEANUP_CHILD` is set).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quicbench_netem::{Backend, Link, LinkConfig};

const ENV: &str = "QB_CLEANUP_CHILD";

/// Everything under /proc that refers to network namespace `inode`: a
/// process's or thread's namespace, or an open fd.
fn holders(inode: u64, only_pid: Option<u32>) -> Vec<String> {
    let want = format!("net:[{inode}]");
    let mut found = Vec::new();
    let pids: Vec<String> = match only_pid {
        Some(p) => vec![p.to_string()],
        None => std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
            .collect(),
    };
    for pid in pids {
        let mut links = vec![];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                links.push(t.path().join("ns/net"));
            }
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for f in fds.flatten() {
                links.push(f.path());
            }
        }
        for l in links {
            if std::fs::read_link(&l)
                .map(|t| t.to_string_lossy() == want)
                .unwrap_or(false)
            {
                found.push(l.display().to_string());
            }
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is dead (only waiting to be reaped by its new parent).
        Ok(s) => s
            .rsplit(") ")
            .next()
            .map(|r| !r.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn root_devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

fn named_netns() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The child's side (a no-op in a normal test run).
// In "wait" mode the sleeper is never waited for on purpose: the process is
// killed, and the test checks the sleeper dies with it.
#[allow(clippy::zombie_processes)]
#[test]
fn child_builds_a_link() {
    let Ok(mode) = std::env::var(ENV) else { return };
    let cfg = LinkConfig {
        backend: Backend::UserSpace,
        ..Default::default()
    };
    let link = Link::build(cfg).unwrap();
    let mut cmd = link.server_ns().command("sleep");
    cmd.arg("300");
    let mut sleeper = link.server_ns().spawn(cmd).unwrap();
    let (ci, si) = (
        link.client_ns().inode().unwrap(),
        link.server_ns().inode().unwrap(),
    );
    println!("PID {}", sleeper.id());
    println!("NS {ci} {si}");
    println!("READY");
    if mode == "drop" {
        drop(link);
        // In-process guarantees of Drop: the spawned process was killed, and
        // nothing of ours refers to the namespaces any more.
        let st = sleeper.wait().unwrap();
        assert!(!st.success(), "the sleeper was killed: {st:?}");
        let me = std::process::id();
        assert!(wait_until(Duration::from_secs(2), || holders(ci, Some(me))
            .is_empty()
            && holders(si, Some(me)).is_empty()));
        println!("CLEAN");
    } else {
        // Wait to be signalled (bounded).
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn run_child(mode: &str, signal: Option<nix::sys::signal::Signal>) {
    let devs_before = root_devices();
    let named_before = named_netns();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "child_builds_a_link",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut pid = None;
    let mut ns = None;
    let mut clean = false;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child did not get READY in 30 s");
        // libtest may print its own "test ... " in front of our lines.
        if let Some(i) = line.find("PID ") {
            pid = Some(line[i + 4..].trim().parse::<u32>().unwrap());
        } else if let Some(i) = line.find("NS ") {
            let v: Vec<u64> = line[i + 3..]
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            ns = Some((v[0], v[1]));
        } else if line.contains("READY") {
            break;
        }
    }
    let (pid, (ci, si)) = (pid.unwrap(), ns.unwrap());
    // While alive: the sleeper runs inside the server namespace, which the
    // root namespace cannot see as a device or a name.
    if signal.is_some() {
        assert!(alive(pid));
        let target = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_eq!(target.to_string_lossy(), format!("net:[{si}]"));
        assert!(!holders(ci, Some(child_pid)).is_empty());
    }
    assert_eq!(
        root_devices(),
        devs_before,
        "nothing appears in the root namespace"
    );
    if let Some(sig) = signal {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid as i32), sig).unwrap();
    }
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "child did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        clean |= line.contains("CLEAN");
    }
    match signal {
        None => {
            assert!(status.success(), "child failed: {status:?}");
            assert!(clean, "the child did not confirm its in-process cleanup");
        }
        Some(_) => assert!(!status.success()),
    }
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "process {pid} survived ({mode})"
    );
    assert!(
        wait_until(Duration::from_secs(5), || holders(ci, None).is_empty()
            && holders(si, None).is_empty()),
        "namespaces still held after {mode}: {:?} {:?}",
        holders(ci, None),
        holders(si, None)
    );
    assert_eq!(
        root_devices(),
        devs_before,
        "no device left in the root namespace ({mode})"
    );
    assert_eq!(
        named_netns(),
        named_before,
        "no named namespace appeared ({mode})"
    );
}

#[test]
fn cleanup_after_drop_and_normal_exit() {
    if std::env::var(ENV).is_ok() || common::skip("cleanup_after_drop_and_normal_exit") {
        return;
    }
    run_child("drop", None);
}

#[test]
fn cleanup_after_sigint() {
    if std::env::var(ENV).is_ok() || common::skip("cleanup_after_sigint") {
        return;
    }
    run_child("wait", Some(nix::sys::signal::Signal::SIGINT));
}

#[test]
fn cleanup_after_sigkill() {
    if std::env::var(ENV).is_ok() || common::skip("cleanup_after_sigkill") {
        return;
    }
    run_child("wait", Some(nix::sys::signal::Signal::SIGKILL));
}
