//! The kernel backend on a plain veth pair (no impairment: this runs where the
//! kernel has no sch_netem): offloads off so a qdisc sees single packets, and
//! NAT rebinding with nftables, checked with the same tests as user space.
//! With sch_netem (the VM of scripts/kernel-netem-vm.sh) tests/backends.rs
//! checks the impairments themselves on both backends.
//! Needs root (veth, nftables) and `nft` (scripts/install-test-deps.sh); as
//! root a missing `nft` fails the test with the installer's output.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use quicbench_netem::link::CLIENT_DEV;
use quicbench_netem::{Backend, Link, LinkConfig};

#[path = "../../tests/support/install_deps.rs"]
mod install_deps;

fn nft_runs() -> bool {
    quicbench_netem::tools::command("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Namespaces can be made here, and `nft` runs (installed when missing).
fn ready(test: &str) -> bool {
    if !quicbench_netem::test_gate::links(test) {
        return false;
    }
    if nft_runs() {
        return true;
    }
    let p = install_deps::provision();
    if nft_runs() {
        return true;
    }
    install_deps::missing(test, "nft (nftables)", &p);
    false
}

fn kernel(mut cfg: LinkConfig) -> Link {
    cfg.backend = Backend::Kernel;
    Link::build(cfg).expect("building a kernel-backend veth link")
}

/// Offloads are off, verified and recorded; a TCP bulk transfer reaches the
/// client's qdisc as single packets (counted by skb length in postrouting,
/// where the qdisc would get them), not as 64 KB GSO batches.
#[test]
fn kernel_link_hands_the_qdisc_single_packets() {
    if !ready("kernel_link_hands_the_qdisc_single_packets") {
        return;
    }
    let link = kernel(LinkConfig::default());
    let off = link.offloads().expect("kernel links record their offloads");
    for end in [&off.client, &off.server] {
        assert!(end.verified(), "{end:?}");
        for f in [
            "tx-tcp-segmentation",
            "tx-generic-segmentation",
            "rx-gro",
            "tx-udp-segmentation",
        ] {
            assert!(end.off.iter().any(|x| x == f), "{f} not off: {end:?}");
        }
        assert_eq!(end.gso_max_segs, 1);
    }
    let recorded = serde_json::to_value(link.counters()).unwrap();
    assert_eq!(
        recorded["offloads"]["client"]["gso_max_segs"], 1,
        "{recorded}"
    );

    let rules = format!(
        "table inet qbtest {{\n chain post {{\n  type filter hook postrouting priority 0; policy accept;\n  \
         oifname \"{CLIENT_DEV}\" meta length > 1500 counter\n  oifname \"{CLIENT_DEV}\" counter\n }}\n}}\n"
    );
    let mut nft = link.client_ns().command("nft");
    nft.args(["-f", "-"]).stdin(Stdio::piped());
    let mut child = link.client_ns().spawn(nft).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());

    let l = link
        .server_ns()
        .run(|| TcpListener::bind((link.server_ip(), 0)))
        .unwrap();
    let to: SocketAddr = l.local_addr().unwrap();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k as u64,
            }
        }
    });
    let mut c = link
        .client_ns()
        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..20 {
        c.write_all(&chunk).unwrap();
    }
    drop(c);
    assert_eq!(srv.join().unwrap(), 20 << 20);
    let out = link
        .client_ns()
        .exec("nft", &["list", "table", "inet", "qbtest"])
        .unwrap();
    let packets: Vec<u64> = out
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "packets")
        .filter_map(|w| w[1].parse().ok())
        .collect();
    eprintln!("postrouting on {CLIENT_DEV}: [> 1500 bytes, all] = {packets:?}");
    assert_eq!(packets.len(), 2, "{out}");
    assert!(packets[1] > 14_000, "20 MiB in ~1448-byte segments: {out}");
    assert_eq!(packets[0], 0, "super-packets reached the qdisc: {out}");
}

#[test]
fn kernel_nat_port_and_address_rebinding_on_demand() {
    if !ready("kernel_nat_port_and_address_rebinding_on_demand") {
        return;
    }
    common::nat::rebinding_on_demand(&kernel(LinkConfig::default()), false);
}

#[test]
fn kernel_nat_scheduled_rebinds_change_a_live_udp_flow() {
    if !ready("kernel_nat_scheduled_rebinds_change_a_live_udp_flow") {
        return;
    }
    common::nat::scheduled_rebinds(&kernel(common::nat::schedule_config()));
}

#[test]
fn kernel_nat_port_rebind_breaks_a_tcp_connection_like_a_real_nat() {
    if !ready("kernel_nat_port_rebind_breaks_a_tcp_connection_like_a_real_nat") {
        return;
    }
    common::nat::port_rebind_breaks_tcp(&kernel(LinkConfig::default()));
}

// Queue drops apart from loss, and the impairment rates, are checked on both
// backends by tests/backends.rs (one behaviour list).
