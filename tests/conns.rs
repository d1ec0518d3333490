//! The `conns` workload for real (docs/conns.md): more TCP connections to one
//! server port than one client address has source ports, from several client
//! addresses, and QUIC connections to one UDP port; then what the kernel and
//! the server saw.
//!
//! Needs root (namespaces, TUN, raising RLIMIT_NOFILE's hard limit); otherwise
//! prints a loud `SKIPPED:` line and returns.
//!
//! Size: `QUICBENCH_CONNS_TEST_TCP` / `QUICBENCH_CONNS_TEST_QUIC` (defaults
//! below). The default TCP count is above 65,535, spread over 2 client
//! addresses, so that the test shows the 4-tuple at work.

use std::collections::BTreeSet;
use std::path::PathBuf;

use quicbench_harness::conns::{self, ConnsConfig, ConnsParams, PhaseReport};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn can_run(test: &str) -> bool {
    // Root, or an ordinary user in the user namespace entered before main:
    // the open-file hard limit then stays as given, and conns spreads the
    // sockets over more processes (docs/rootless.md).
    quicbench_netem::test_gate::links(test)
}

/// Every namespace inode some thread of some process is in.
fn live_netns_inodes() -> BTreeSet<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(m) = std::fs::metadata(t.path().join("ns/net")) {
                out.insert(m.ino());
            }
        }
    }
    out
}

fn print_checks(p: &PhaseReport) {
    for c in &p.checks {
        eprintln!(
            "  {} [{}] {}: {}",
            p.kind,
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
}

#[test]
fn conns_beyond_65535_at_one_port() {
    let test = "conns_beyond_65535_at_one_port";
    if !can_run(test) {
        return;
    }
    let tcp = env_u64("QUICBENCH_CONNS_TEST_TCP", 70_000);
    let quic = env_u64("QUICBENCH_CONNS_TEST_QUIC", 2_000);
    let params = ConnsParams {
        tcp,
        quic,
        client_addrs: 2,
        quic_sockets_per_addr: 2,
        concurrency: 256,
        quic_concurrency: 48,
        hold_s: 1.0,
        establish_timeout_s: 120,
        handshake_timeout_s: 20,
        cc: Default::default(),
        links: None,
    };
    let cfg = ConnsConfig::new(params, PathBuf::from(env!("CARGO_BIN_EXE_quicbench")));
    let r = conns::run(&cfg).expect("conns run");
    eprint!("{}", conns::summary(&r));

    // The output says what happened to our fd limit; where it could not be
    // raised enough (no CAP_SYS_RESOURCE), the sockets were spread over
    // several processes, each within its limit.
    assert!(r.fd_limits.note.contains("RLIMIT_NOFILE"));
    assert_eq!(r.phases.len(), 2);

    let t = &r.phases[0];
    print_checks(t);
    assert_eq!(t.kind, "tcp");
    assert_eq!(t.established, tcp, "failures: {:?}", t.failure_kinds);
    // The kernel's table in the server namespace: N established sockets at the
    // one listening port, N distinct 4-tuples, from both client addresses.
    let table = t.server_table.as_ref().expect("server TCP table read");
    assert_eq!(table.established, tcp);
    assert_eq!(table.distinct_peers, tcp);
    assert_eq!(table.per_peer_addr.len(), 2, "{:?}", table.per_peer_addr);
    for (addr, n) in &table.per_peer_addr {
        let want = t.per_client_addr.get(addr).copied().unwrap_or(0);
        assert_eq!(*n, want, "server and client disagree on {addr}");
        assert!(
            *n >= tcp / 2 - 1,
            "uneven spread: {:?}",
            table.per_peer_addr
        );
        assert!(*n <= conns::PORTS_PER_ADDR);
    }
    // The server process counted them too, and every one still answered a
    // request after the hold.
    let stats = t.server_stats_at_hold.as_ref().expect("server stats");
    assert_eq!(stats.tcp_accepted, tcp);
    assert_eq!(stats.open_connections, tcp);
    assert_eq!(t.alive_after_hold, tcp, "{:?}", t.check_failure_kinds);
    assert!(t.memory.server_bytes_per_conn.is_some());
    assert!(t.memory.client_bytes_per_conn.is_some());
    let per_proc = r.fd_limits.soft_after.saturating_sub(64);
    assert!(tcp / t.client_pids.len() as u64 <= per_proc);
    assert!(t.sysctls.iter().all(|s| s.ok), "{:?}", t.sysctls);
    assert!(t.all_ok());

    let q = &r.phases[1];
    print_checks(q);
    assert_eq!(q.kind, "quic");
    assert_eq!(q.established, quic, "failures: {:?}", q.failure_kinds);
    let stats = q.server_stats_at_hold.as_ref().expect("server stats");
    assert_eq!(stats.open_connections, quic);
    assert_eq!(q.alive_after_hold, quic, "{:?}", q.check_failure_kinds);
    assert_eq!(q.per_client_addr.len(), 2);
    assert!(q.per_client_addr.values().all(|n| *n > 0));
    assert!(q.all_ok());

    // Nothing left behind: the server processes are gone (PID no longer ours
    // to signal) and no thread of any process is in the run's namespaces.
    let live = live_netns_inodes();
    for ph in &r.phases {
        for pid in ph.server_pids.iter().chain(&ph.client_pids) {
            let gone =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), None).is_err();
            assert!(gone, "child pid {pid} still running");
        }
        for ino in &ph.namespace_inodes {
            assert!(!live.contains(ino), "namespace {ino} still in use");
        }
    }
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
