//! Kernel backend: a veth pair between the namespaces with a tc-netem qdisc on
//! each end's egress (client end = up, server end = down). Runs only where the
//! kernel has `sch_netem`; the user-space relay is the default elsewhere.

use std::os::fd::AsRawFd;

use super::{addr, ip_batch, setup, LinkConfig, LinkError, CLIENT_DEV, SERVER_DEV};
use crate::model::Counters;
use crate::ns::NetNs;
use crate::relay::DirCounters;
use crate::spec::LinkSpec;

pub(super) fn build(
    cfg: &LinkConfig,
    client_ns: &NetNs,
    server_ns: &NetNs,
) -> Result<(), LinkError> {
    wire_veth(cfg, client_ns, server_ns)?;
    apply_netem(client_ns, CLIENT_DEV, &cfg.up)?;
    apply_netem(server_ns, SERVER_DEV, &cfg.down)?;
    Ok(())
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
    let server = format!(
        "addr add {s4}/32 dev {SERVER_DEV}\naddr add {s6}/128 dev {SERVER_DEV} nodad\n\
         link set dev {SERVER_DEV} up\nroute add {r4} dev {SERVER_DEV} src {s4}\n\
         route add {r6} dev {SERVER_DEV} src {s6}\n",
        s4 = addr::SERVER_V4,
        s6 = addr::SERVER_V6,
        r4 = addr::ROUTE_V4,
        r6 = addr::ROUTE_V6,
    );
    ip_batch(client_ns, &client)?;
    ip_batch(server_ns, &server)?;
    Ok(())
}

/// Install `spec` as the root netem qdisc of `dev` inside `ns` (`crate::kernel`
/// runs tc in the calling thread's namespace).
fn apply_netem(ns: &NetNs, dev: &str, spec: &LinkSpec) -> Result<(), LinkError> {
    // No impairment: a plain veth pair, so this also runs where the kernel has
    // no sch_netem (the reference the user-space relay is compared with).
    if *spec == LinkSpec::default() {
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
pub(super) fn counters(ns: &NetNs, dev: &str) -> DirCounters {
    let out = ns
        .exec("tc", &["-s", "qdisc", "show", "dev", dev])
        .unwrap_or_default();
    let mut c = Counters::default();
    if let Some((bytes, pkts, dropped)) = parse_tc_stats(&out) {
        c.delivered = pkts;
        c.bytes_delivered = bytes;
        c.dropped_loss = dropped;
        c.packets_in = pkts + dropped;
    }
    DirCounters {
        model: c,
        relay: Default::default(),
    }
}

/// Parse " Sent 1234 bytes 5 pkt (dropped 1, overlimits 0 requeues 0)".
fn parse_tc_stats(out: &str) -> Option<(u64, u64, u64)> {
    let line = out.lines().find(|l| l.trim_start().starts_with("Sent "))?;
    let t: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',')
        .filter(|s| !s.is_empty())
        .collect();
    let after = |key: &str| -> Option<u64> {
        let i = t.iter().position(|w| *w == key)?;
        t.get(i + 1)?.parse().ok()
    };
    let bytes = after("Sent")?;
    let pkts = t
        .iter()
        .position(|w| *w == "bytes")
        .and_then(|i| t.get(i + 1)?.parse().ok())?;
    Some((bytes, pkts, after("dropped").unwrap_or(0)))
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

    #[test]
    fn parses_tc_stats() {
        let out = "qdisc netem 8001: root refcnt 2 limit 1000 delay 10ms\n Sent 1234 bytes 5 pkt (dropped 1, overlimits 0 requeues 0)\n backlog 0b 0p requeues 0\n";
        assert_eq!(super::parse_tc_stats(out), Some((1234, 5, 1)));
        assert_eq!(super::parse_tc_stats("nothing"), None);
    }
}
