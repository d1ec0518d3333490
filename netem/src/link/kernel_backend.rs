//! Kernel backend: a veth pair between the namespaces with a tc-netem qdisc on
//! each end's egress (client end = up, server end = down). Runs only where the
//! kernel has `sch_netem`; the user-space relay is the default elsewhere.
//!
//! Both veth ends have their segmentation offloads off and `gso_max_segs 1`
//! (see `offload.rs`), so netem impairs the packets the wire would carry.

use std::os::fd::AsRawFd;

use super::offload::{self, Offloads};
use super::{addr, ip_batch, setup, LinkConfig, LinkError, CLIENT_DEV, SERVER_DEV};
use crate::model::Counters;
use crate::ns::NetNs;
use crate::relay::DirCounters;
use crate::spec::LinkSpec;

/// The NAT's external pools (`crate::nat::NAT_V4_BASE`, `NAT_V6_BASE`).
const NAT_POOL_V4: &str = "198.19.0.0/16";
const NAT_POOL_V6: &str = "2001:2:0:2::/64";

/// The offload state of both veth ends, as read back after the build.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VethOffloads {
    /// The client end (`qbc`: egress = up).
    pub client: Offloads,
    /// The server end (`qbs`: egress = down).
    pub server: Offloads,
}

pub(super) fn build(
    cfg: &LinkConfig,
    client_ns: &NetNs,
    server_ns: &NetNs,
) -> Result<VethOffloads, LinkError> {
    wire_veth(cfg, client_ns, server_ns)?;
    let offloads = VethOffloads {
        client: no_batching(client_ns, CLIENT_DEV)?,
        server: no_batching(server_ns, SERVER_DEV)?,
    };
    apply_netem(client_ns, CLIENT_DEV, &cfg.up)?;
    apply_netem(server_ns, SERVER_DEV, &cfg.down)?;
    apply_drop_nth(client_ns, CLIENT_DEV, &cfg.up)?;
    apply_drop_nth(server_ns, SERVER_DEV, &cfg.down)?;
    Ok(offloads)
}

/// Both directions' `drop-nth` can be built on this backend (else the reason).
pub(super) fn check_drop_nth(cfg: &LinkConfig) -> Result<(), String> {
    for spec in [&cfg.up, &cfg.down] {
        if !spec.drop_nth.is_empty() {
            crate::kernel::drop_nth_ruleset(CLIENT_DEV, spec)?;
            super::kernel_nat::nft_available()
                .map_err(|e| format!("drop-nth on the kernel backend needs nft: {e}"))?;
        }
    }
    Ok(())
}

/// `drop-nth` on `dev`'s egress, with nftables in `ns` (see
/// `crate::kernel::drop_nth_ruleset`).
fn apply_drop_nth(ns: &NetNs, dev: &str, spec: &LinkSpec) -> Result<(), LinkError> {
    let Some(script) =
        crate::kernel::drop_nth_ruleset(dev, spec).map_err(LinkError::Unsupported)?
    else {
        return Ok(());
    };
    ns.try_run(|| super::kernel_nat::nft(&script))
        .map_err(setup(format!("entering namespace {}", ns.label())))?
        .map_err(setup(format!("installing drop-nth on {dev} (nftables)")))
}

/// Packets `drop-nth` dropped on `dev`'s egress (0 without it, or unreadable).
fn chosen_drops(ns: &NetNs, spec: &LinkSpec) -> u64 {
    if spec.drop_nth.is_empty() {
        return 0;
    }
    let table = crate::kernel::DROP_NTH_TABLE;
    ns.try_run(|| super::kernel_nat::nft_output(&["list", "counters", "table", "inet", table]))
        .ok()
        .and_then(|r| r.ok())
        .map_or(0, |out| crate::kernel::parse_drop_nth_counter(&out))
}

/// Offloads off and `gso_max_segs 1` on `dev`, verified: a link that would
/// impair batches instead of packets is refused.
fn no_batching(ns: &NetNs, dev: &str) -> Result<Offloads, LinkError> {
    ip_batch(ns, &format!("link set dev {dev} gso_max_segs 1\n"))?;
    let mut o = ns
        .try_run(|| offload::disable_batching(dev))
        .map_err(setup(format!("entering namespace {}", ns.label())))?
        .map_err(setup(format!(
            "turning segmentation offloads off on {dev} (ethtool ioctl)"
        )))?;
    let details = ns
        .exec("ip", &["-d", "-o", "link", "show", "dev", dev])
        .map_err(setup(format!("reading {dev}'s details with `ip -d link`")))?;
    o.gso_max_segs = parse_gso_max_segs(&details).unwrap_or(0);
    if !o.verified() {
        return Err(LinkError::Setup {
            what: format!("verifying that {dev} hands the qdisc single packets"),
            source: std::io::Error::other(format!(
                "still on: {:?}, gso_max_segs {} (want none, 1)",
                o.still_on, o.gso_max_segs
            )),
        });
    }
    Ok(o)
}

/// `gso_max_segs N` from `ip -d link show`.
fn parse_gso_max_segs(out: &str) -> Option<u32> {
    let mut it = out.split_whitespace();
    it.find(|w| *w == "gso_max_segs")?;
    it.next()?.parse().ok()
}

/// The veth pair, addresses and routes (everything but the qdiscs).
fn wire_veth(cfg: &LinkConfig, client_ns: &NetNs, server_ns: &NetNs) -> Result<(), LinkError> {
    // `ip` opens the server namespace through our fd table (anonymous
    // namespaces have no name under /run/netns).
    let server_path = format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        server_ns.fd().as_raw_fd()
    );
    let mtu = cfg.mtu;
    let mut client = format!(
        "link add {CLIENT_DEV} mtu {mtu} type veth peer name {SERVER_DEV} mtu {mtu} netns {server_path}\n"
    );
    for i in 0..cfg.client_addrs {
        client += &format!("addr add {}/32 dev {CLIENT_DEV}\n", addr::client_v4(i));
        client += &format!(
            "addr add {}/128 dev {CLIENT_DEV} nodad\n",
            addr::client_v6(i)
        );
    }
    client += &format!(
        "link set dev {CLIENT_DEV} up\nroute add {} dev {CLIENT_DEV} src {}\nroute add {} dev {CLIENT_DEV} src {}\n",
        addr::ROUTE_V4,
        addr::CLIENT_V4,
        addr::ROUTE_V6,
        addr::CLIENT_V6
    );
    // The NAT pool is reached through the client's first address: on a veth
    // (unlike a TUN device) the server resolves its next hop, and nothing
    // answers ARP/ND for the pool's addresses themselves.
    let server = format!(
        "addr add {s4}/32 dev {SERVER_DEV}\naddr add {s6}/128 dev {SERVER_DEV} nodad\n\
         link set dev {SERVER_DEV} up\nroute add {r4} dev {SERVER_DEV} src {s4}\n\
         route add {r6} dev {SERVER_DEV} src {s6}\n\
         route add {NAT_POOL_V4} via {c4} dev {SERVER_DEV} src {s4}\n\
         route add {NAT_POOL_V6} via {c6} dev {SERVER_DEV} src {s6}\n",
        s4 = addr::SERVER_V4,
        s6 = addr::SERVER_V6,
        c4 = addr::CLIENT_V4,
        c6 = addr::CLIENT_V6,
        r4 = addr::ROUTE_V4,
        r6 = addr::ROUTE_V6,
    );
    for ns in [client_ns, server_ns] {
        no_dad(ns)?;
    }
    ip_batch(client_ns, &client)?;
    ip_batch(server_ns, &server)?;
    Ok(())
}

/// New devices of `ns` skip duplicate address detection. Without this the
/// veth's link-local address stays tentative for 1-2 s after it comes up, and
/// the kernel sends no neighbour solicitation for a packet whose source is not
/// one of the device's own addresses (every packet the NAT has rewritten):
/// IPv6 through the NAT was dead for the first seconds of a link.
fn no_dad(ns: &NetNs) -> Result<(), LinkError> {
    ns.run(|| std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0"))
        .map_err(setup("turning off IPv6 duplicate address detection"))
}

/// Install `spec` as the root netem qdisc of `dev` inside `ns` (`crate::kernel`
/// runs tc in the calling thread's namespace).
fn apply_netem(ns: &NetNs, dev: &str, spec: &LinkSpec) -> Result<(), LinkError> {
    // No impairment: a plain veth pair, so this also runs where the kernel has
    // no sch_netem (the reference the user-space relay is compared with).
    // drop-nth is nftables' (apply_drop_nth), not netem's.
    let netem_part = LinkSpec {
        drop_nth: Vec::new(),
        ..spec.clone()
    };
    if netem_part == LinkSpec::default() {
        return Ok(());
    }
    ns.try_run(|| crate::kernel::apply(dev, spec))
        .map_err(setup(format!("entering namespace {}", ns.label())))?
        .map_err(|e| LinkError::Setup {
            what: format!("installing netem on {dev} in namespace {}", ns.label()),
            source: std::io::Error::other(e.to_string()),
        })
}

/// Packets sent and dropped by the netem qdisc on `dev` (from `tc -s qdisc`);
/// zeros when tc cannot tell.
pub(super) fn counters(ns: &NetNs, dev: &str, spec: &LinkSpec) -> DirCounters {
    let out = ns
        .exec("tc", &["-s", "qdisc", "show", "dev", dev])
        .unwrap_or_default();
    let stats = parse_tc_stats(&out);
    let mut model = stats.map(|s| s.counters(spec)).unwrap_or_default();
    // Dropped before the qdisc, so not in tc's figures.
    let chosen = chosen_drops(ns, spec);
    model.dropped_chosen = chosen;
    model.packets_in += chosen;
    DirCounters {
        model,
        relay: crate::relay::RelayCounters {
            // The qdisc's backlog: the standing queue now.
            queued: stats.map_or(0, |s| s.backlog_packets),
            ..Default::default()
        },
    }
}

/// The figures of `tc -s qdisc show` for the root qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcStats {
    bytes: u64,
    packets: u64,
    dropped: u64,
    /// Packets queued now (`backlog Nb Mp`).
    backlog_packets: u64,
}

impl TcStats {
    /// netem counts loss drops and tail drops (queue full) in one `dropped`
    /// figure. They are told apart where the spec decides it: a spec without a
    /// loss model drops only at the limit (all queue drops). Otherwise the
    /// split is unknown and the drops go to `dropped_unattributed`, never into
    /// `dropped_loss` (which would count a full queue as link loss).
    fn counters(self, spec: &LinkSpec) -> Counters {
        let mut c = Counters {
            delivered: self.packets,
            bytes_delivered: self.bytes,
            packets_in: self.packets + self.dropped,
            ..Counters::default()
        };
        if spec.loss.is_none() {
            c.dropped_queue = self.dropped;
        } else {
            c.dropped_unattributed = self.dropped;
        }
        c
    }
}

/// Parse the first " Sent 1234 bytes 5 pkt (dropped 1, overlimits 0 requeues 0)"
/// (the root qdisc's line: child qdiscs follow it).
fn parse_tc_stats(out: &str) -> Option<TcStats> {
    let line = out.lines().find(|l| l.trim_start().starts_with("Sent "))?;
    let t: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ')')
        .filter(|s| !s.is_empty())
        .collect();
    let after = |key: &str| -> Option<u64> {
        let i = t.iter().position(|w| *w == key)?;
        t.get(i + 1)?.parse().ok()
    };
    let backlog_packets = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("backlog "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.strip_suffix('p')?.parse().ok())
        .unwrap_or(0);
    Some(TcStats {
        bytes: after("Sent")?,
        packets: after("bytes")?,
        dropped: after("dropped").unwrap_or(0),
        backlog_packets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    /// The veth wiring carries UDP both ways, v4 and v6 (the qdiscs need a
    /// kernel with sch_netem; this part runs anywhere we may make namespaces).
    #[test]
    fn veth_wiring_carries_udp() {
        let (Ok(c), Ok(s)) = (NetNs::with_label("kc"), NetNs::with_label("ks")) else {
            eprintln!("SKIPPED: veth_wiring_carries_udp: cannot create network namespaces");
            return;
        };
        let cfg = LinkConfig {
            client_addrs: 2,
            ..Default::default()
        };
        wire_veth(&cfg, &c, &s).unwrap();
        for (cip, sip) in [
            (addr::client_v4(1).into(), addr::SERVER_V4.into()),
            (addr::CLIENT_V6.into(), addr::SERVER_V6.into()),
        ] {
            let (cip, sip): (std::net::IpAddr, std::net::IpAddr) = (cip, sip);
            let srv = s.run(|| UdpSocket::bind(SocketAddr::new(sip, 0))).unwrap();
            let cli = c.run(|| UdpSocket::bind(SocketAddr::new(cip, 0))).unwrap();
            for sock in [&srv, &cli] {
                sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            }
            cli.send_to(b"up", srv.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = srv.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"up"[..], cli.local_addr().unwrap()));
            srv.send_to(b"down", from).unwrap();
            let (n, _) = cli.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"down");
        }
        let out = s
            .exec("ip", &["-o", "link", "show", "dev", SERVER_DEV])
            .unwrap();
        assert!(out.contains("mtu 1500"), "{out}");
    }

    /// `drop-nth 1` with nftables on the veth (no netem needed): each UDP
    /// flow's first datagram up is dropped and counted, its second passes,
    /// v4 and v6; the other direction is untouched.
    #[test]
    fn drop_nth_first_packet_with_nftables() {
        let (Ok(c), Ok(s)) = (NetNs::with_label("kc"), NetNs::with_label("ks")) else {
            eprintln!(
                "SKIPPED: drop_nth_first_packet_with_nftables: cannot create network namespaces"
            );
            return;
        };
        if super::super::kernel_nat::nft_available().is_err() {
            eprintln!("SKIPPED: drop_nth_first_packet_with_nftables: nft not installed");
            return;
        }
        let cfg = LinkConfig::default();
        wire_veth(&cfg, &c, &s).unwrap();
        let spec: LinkSpec = "drop-nth 1".parse().unwrap();
        apply_drop_nth(&c, CLIENT_DEV, &spec).unwrap();
        for (cip, sip) in [
            (addr::CLIENT_V4.into(), addr::SERVER_V4.into()),
            (addr::CLIENT_V6.into(), addr::SERVER_V6.into()),
        ] {
            let (cip, sip): (std::net::IpAddr, std::net::IpAddr) = (cip, sip);
            let srv = s.run(|| UdpSocket::bind(SocketAddr::new(sip, 0))).unwrap();
            // Generous: on a loaded machine the first IPv6 datagram waits for
            // neighbour discovery (seen to exceed 500 ms in CI).
            srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for _flow in 0..2 {
                let cli = c.run(|| UdpSocket::bind(SocketAddr::new(cip, 0))).unwrap();
                cli.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let to = srv.local_addr().unwrap();
                let mut buf = [0u8; 16];
                for msg in [&b"first"[..], b"second"] {
                    // The first may fail with EPERM (dropped on output).
                    let _ = cli.send_to(msg, to);
                }
                let (n, from) = srv.recv_from(&mut buf).unwrap();
                assert_eq!(
                    (&buf[..n], from),
                    (&b"second"[..], cli.local_addr().unwrap())
                );
                srv.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                assert!(srv.recv_from(&mut buf).is_err(), "nothing else arrived");
                srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                // Down is not the rule's direction.
                srv.send_to(b"down", from).unwrap();
                let (n, _) = cli.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"down");
            }
        }
        assert_eq!(chosen_drops(&c, &spec), 4, "two flows in each family");
    }

    #[test]
    fn drop_nth_beyond_the_first_is_user_space_only() {
        let cfg = LinkConfig {
            down: "delay 10ms drop-nth 1,3".parse().unwrap(),
            ..Default::default()
        };
        let e = check_drop_nth(&cfg).unwrap_err();
        assert!(e.contains("supports only `drop-nth 1`"), "{e}");
        assert_eq!(check_drop_nth(&LinkConfig::default()), Ok(()));
    }

    #[test]
    fn nat_pools_match_the_nat() {
        assert_eq!(NAT_POOL_V4, format!("{}/16", crate::nat::NAT_V4_BASE));
        assert_eq!(NAT_POOL_V6, format!("{}/64", crate::nat::NAT_V6_BASE));
    }

    #[test]
    fn parses_tc_stats() {
        let out = "qdisc netem 8001: root refcnt 2 limit 1000 delay 10ms\n Sent 1234 bytes 5 pkt (dropped 1, overlimits 0 requeues 0)\n backlog 0b 0p requeues 0\n";
        let s = super::parse_tc_stats(out).unwrap();
        assert_eq!(
            (s.bytes, s.packets, s.dropped, s.backlog_packets),
            (1234, 5, 1, 0)
        );
        let busy = out.replace("backlog 0b 0p", "backlog 4500b 3p");
        assert_eq!(super::parse_tc_stats(&busy).unwrap().backlog_packets, 3);
        assert_eq!(super::parse_tc_stats("nothing"), None);
    }

    /// Queue drops are never counted as link loss: a spec without a loss
    /// model drops only at its limit; with one, netem's single figure is
    /// reported as unattributed.
    #[test]
    fn tc_drops_are_not_all_loss() {
        let out = "qdisc netem 8001: root refcnt 2 limit 20 delay 10ms rate 1Mbit\n Sent 30000 bytes 20 pkt (dropped 7, overlimits 0 requeues 0)\n backlog 0b 0p requeues 0\n";
        let s = super::parse_tc_stats(out).unwrap();
        let c = s.counters(&"delay 10ms rate 1mbit limit 20".parse().unwrap());
        assert_eq!(
            (c.dropped_loss, c.dropped_queue, c.dropped_unattributed),
            (0, 7, 0)
        );
        assert_eq!(
            (c.packets_in, c.delivered, c.bytes_delivered),
            (27, 20, 30000)
        );
        let c = s.counters(&"delay 10ms loss 1% rate 1mbit limit 20".parse().unwrap());
        assert_eq!(
            (c.dropped_loss, c.dropped_queue, c.dropped_unattributed),
            (0, 0, 7)
        );
    }

    #[test]
    fn gso_max_segs_from_ip_details() {
        let out = "5: qbc@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP \\    veth addrgenmode eui64 numtxqueues 2 numrxqueues 2 gso_max_size 65536 gso_max_segs 1 tso_max_size 524280";
        assert_eq!(super::parse_gso_max_segs(out), Some(1));
        assert_eq!(super::parse_gso_max_segs("mtu 1500"), None);
    }
}
