//! Without root: `ns::enter_user_namespace()` at the start of a single-threaded
//! main, then namespaces as usual. As root, this re-executes itself as uid/gid
//! 65534 (nobody) to check the unprivileged path for real, and fails when that
//! child could not run the check (a skipped child is no pass). `harness =
//! false`: libtest's threads would make `unshare(CLONE_NEWUSER)` impossible.

use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use quicbench_netem::ns::{enter_user_namespace, NetNs};

const ENV: &str = "QB_USERNS_CHILD";
/// The child's exit status when it could not run the check (automake's "skip").
const SKIP: i32 = 77;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test -- --list` compatibility: one test, this binary.
        println!("userns: test");
        return;
    }
    if std::env::var(ENV).is_ok() {
        child();
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        // Already unprivileged: run the check in this process (a skip here
        // is reported as such, exit status 0: nothing more can be done).
        child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.env(ENV, "1");
    // SAFETY: setgroups/setgid/setuid between fork and exec, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    // As root the unprivileged path can always be set up: a child that
    // skipped means the check did not run, which must not pass.
    assert_ne!(
        out.status.code(),
        Some(SKIP),
        "the unprivileged child skipped instead of running the check: {stderr}"
    );
    assert!(
        out.status.success(),
        "unprivileged child failed: {:?}",
        out.status
    );
    println!("test userns (as uid 65534) ... ok");
}

fn child() {
    let uid = nix::unistd::geteuid();
    // Before enter_user_namespace, creating a namespace is refused, with a
    // message that says what to do.
    if !uid.is_root() {
        match NetNs::new() {
            Ok(_) => {
                eprintln!(
                    "SKIPPED: userns: uid {uid} may create namespaces without a user namespace?"
                );
                skip();
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("privileges::acquire()") && msg.contains("root"),
                    "{msg}"
                );
            }
        }
    }
    if let Err(e) = enter_user_namespace() {
        eprintln!("SKIPPED: userns: this kernel refuses unprivileged user namespaces: {e}");
        skip();
    }
    let ns = NetNs::new().expect("a network namespace inside the user namespace");
    // Loopback is up: UDP over 127.0.0.1 inside it.
    let (a, b) = ns.run(|| {
        (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        )
    });
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    a.send_to(b"hi", b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 8];
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hi");
    // A whole link, where /dev/net/tun lets this uid open it (mode 0666 on
    // most distributions; some machines keep it 0600 root).
    let cfg = quicbench_netem::LinkConfig {
        backend: quicbench_netem::Backend::UserSpace,
        ..Default::default()
    };
    match quicbench_netem::Link::build(cfg) {
        Ok(link) => {
            let s = link
                .server_ns()
                .run(|| UdpSocket::bind((link.server_ip(), 0)))
                .unwrap();
            let c = link
                .client_ns()
                .run(|| UdpSocket::bind((link.client_ip(), 0)))
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            c.send_to(b"through", s.local_addr().unwrap()).unwrap();
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"through");
            println!("userns: link built and carried UDP without root");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("/dev/net/tun"), "unexpected failure: {msg}");
            println!("userns: namespaces work without root; TUN refused here: {msg}");
        }
    }
}

/// The check could not run: the root parent fails on this status; run
/// directly (not root) it is a loud skip.
fn skip() -> ! {
    if std::env::var(ENV).is_ok() {
        std::process::exit(SKIP);
    }
    std::process::exit(0);
}
