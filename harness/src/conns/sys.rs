//! What the `conns` workload reads from and asks of the kernel: the open-file
//! limit, resident memory, slab and socket-buffer memory, and the TCP table of a
//! namespace (the server's own view of who is connected).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use quicbench_netem::NetNs;
use serde::Serialize;

/// The process's RLIMIT_NOFILE before and after [`raise_nofile`].
#[derive(Debug, Clone, Serialize)]
pub struct FdLimits {
    pub wanted: u64,
    pub soft_before: u64,
    pub hard_before: u64,
    pub soft_after: u64,
    pub hard_after: u64,
    /// The hard limit was raised (root / CAP_SYS_RESOURCE).
    pub raised_hard: bool,
    /// One line for the output: what was done and why.
    pub note: String,
}

/// Raise RLIMIT_NOFILE's soft limit to `wanted` (at least), raising the hard
/// limit too when allowed (up to `fs.nr_open`). Never lowers anything. Child
/// processes (the server) inherit the result.
pub fn raise_nofile(wanted: u64) -> FdLimits {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let mut lim = FdLimits {
        wanted,
        soft_before: soft,
        hard_before: hard,
        soft_after: soft,
        hard_after: hard,
        raised_hard: false,
        note: String::new(),
    };
    if soft >= wanted {
        lim.note = format!("RLIMIT_NOFILE soft {soft} already covers {wanted}; left as is");
        return lim;
    }
    let mut new_hard = hard;
    if hard < wanted {
        let target = wanted.min(nr_open);
        match setrlimit(Resource::RLIMIT_NOFILE, soft, target) {
            Ok(()) => {
                new_hard = target;
                lim.raised_hard = true;
            }
            Err(e) => {
                lim.note = format!(
                    "could not raise the RLIMIT_NOFILE hard limit {hard} to {target} ({e}; \
                     needs root or CAP_SYS_RESOURCE); "
                );
            }
        }
    }
    let new_soft = wanted.min(new_hard);
    if new_soft <= soft {
        lim.note += &format!(
            "RLIMIT_NOFILE stays soft {soft} / hard {hard}: sockets are spread over several \
             processes, each within it"
        );
        return lim;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, new_soft, new_hard) {
        Ok(()) => {
            lim.soft_after = new_soft;
            lim.hard_after = new_hard;
            lim.note += &format!(
                "raised RLIMIT_NOFILE from soft {soft} / hard {hard} to soft {new_soft} / hard \
                 {new_hard}{}",
                if lim.raised_hard {
                    " (hard limit raised: running as root)"
                } else {
                    ""
                }
            );
        }
        Err(e) => {
            lim.note += &format!("could not raise RLIMIT_NOFILE soft limit to {new_soft}: {e}");
        }
    }
    if let Ok((s, h)) = getrlimit(Resource::RLIMIT_NOFILE) {
        lim.soft_after = s;
        lim.hard_after = h;
    }
    lim
}

/// Resident set size of `pid` (or of this process), bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    kb_field(&s, "VmRSS:")
}

/// Kernel slab memory (SReclaimable + SUnreclaim), system-wide, bytes.
pub fn slab_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    kb_field(&s, "Slab:")
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// `/proc/net/sockstat` as seen from a namespace. `inuse` counts are that
/// namespace's; `mem` (pages of socket buffers) is the kernel's global total
/// per protocol.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SockStat {
    pub tcp_inuse: u64,
    pub tcp_orphan: u64,
    pub tcp_tw: u64,
    pub tcp_mem_pages: u64,
    pub udp_inuse: u64,
    pub udp_mem_pages: u64,
}

pub fn parse_sockstat(s: &str) -> SockStat {
    let mut st = SockStat::default();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        let proto = it.next().unwrap_or("");
        let words: Vec<&str> = it.collect();
        let field = |name: &str| -> u64 {
            words
                .windows(2)
                .find(|w| w[0] == name)
                .and_then(|w| w[1].parse().ok())
                .unwrap_or(0)
        };
        match proto {
            "TCP:" => {
                st.tcp_inuse = field("inuse");
                st.tcp_orphan = field("orphan");
                st.tcp_tw = field("tw");
                st.tcp_mem_pages = field("mem");
            }
            "UDP:" => {
                st.udp_inuse = field("inuse");
                st.udp_mem_pages = field("mem");
            }
            _ => {}
        }
    }
    st
}

/// Read `/proc/thread-self/net/<file>` from inside `ns`.
fn read_ns_proc(ns: &NetNs, file: &str) -> std::io::Result<String> {
    let path = format!("/proc/thread-self/net/{file}");
    ns.try_run(move || {
        let mut f = std::fs::File::open(&path)?;
        let mut s = String::with_capacity(1 << 20);
        f.read_to_string(&mut s)?;
        Ok(s)
    })?
}

/// `Udp: RcvbufErrors` of a namespace (/proc/net/snmp): datagrams dropped
/// because a socket's receive buffer was full.
pub fn udp_rcvbuf_errors(ns: &NetNs) -> Option<u64> {
    let s = read_ns_proc(ns, "snmp").ok()?;
    parse_snmp(&s, "Udp:", "RcvbufErrors")
}

/// A field of /proc/net/snmp (a header line, then a value line, per protocol).
pub fn parse_snmp(s: &str, proto: &str, field: &str) -> Option<u64> {
    let mut lines = s.lines().filter(|l| l.starts_with(proto));
    let head = lines.next()?;
    let vals = lines.next()?;
    let i = head.split_whitespace().position(|h| h == field)?;
    vals.split_whitespace().nth(i)?.parse().ok()
}

pub fn sockstat(ns: &NetNs) -> SockStat {
    read_ns_proc(ns, "sockstat")
        .map(|s| parse_sockstat(&s))
        .unwrap_or_default()
}

/// A namespace's TCP sockets in ESTABLISHED state with local port `port`
/// (a server's view) or remote port `port` (a client's view).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TcpTable {
    pub established: u64,
    /// Distinct (remote address, remote port) pairs among them: with one local
    /// address and port, the number of distinct 4-tuples.
    pub distinct_peers: u64,
    /// Established sockets per peer address.
    pub per_peer_addr: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Match the local port (a server's listening port).
    Local,
    /// Match the remote port.
    Remote,
}

/// Count established sockets at `port` in `ns` (IPv4 and IPv6 tables).
pub fn tcp_table(ns: &NetNs, port: u16, side: Side) -> std::io::Result<TcpTable> {
    let mut peers: HashSet<SocketAddr> = HashSet::new();
    let mut t = TcpTable::default();
    for file in ["tcp", "tcp6"] {
        let text = match read_ns_proc(ns, file) {
            Ok(s) => s,
            Err(e) if file == "tcp6" && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in text.lines().skip(1) {
            let Some((local, remote, state)) = parse_tcp_line(line) else {
                continue;
            };
            if state != 1 {
                continue;
            }
            let (ours, peer) = match side {
                Side::Local => (local, remote),
                Side::Remote => (remote, local),
            };
            if ours.port() != port {
                continue;
            }
            t.established += 1;
            peers.insert(peer);
            *t.per_peer_addr.entry(peer.ip().to_string()).or_default() += 1;
        }
    }
    t.distinct_peers = peers.len() as u64;
    Ok(t)
}

/// One line of /proc/net/tcp{,6}: (local, remote, state).
pub fn parse_tcp_line(line: &str) -> Option<(SocketAddr, SocketAddr, u8)> {
    let mut it = line.split_whitespace();
    let _sl = it.next()?;
    let local = parse_hex_endpoint(it.next()?)?;
    let remote = parse_hex_endpoint(it.next()?)?;
    let state = u8::from_str_radix(it.next()?, 16).ok()?;
    Some((local, remote, state))
}

/// `0101A8C6:1F90` (IPv4: one native-endian u32) or 32 hex digits (IPv6: four
/// native-endian u32s), then the port in big-endian hex.
fn parse_hex_endpoint(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let ip = match a.len() {
        8 => {
            let v = u32::from_str_radix(a, 16).ok()?;
            IpAddr::V4(Ipv4Addr::from(v.to_ne_bytes()))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let v = u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_fields() {
        let s = "sockets: used 140123\nTCP: inuse 140002 orphan 0 tw 3 alloc 140010 mem 2941\n\
                 UDP: inuse 2 mem 17\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
        let st = parse_sockstat(s);
        assert_eq!(st.tcp_inuse, 140_002);
        assert_eq!(st.tcp_tw, 3);
        assert_eq!(st.tcp_mem_pages, 2941);
        assert_eq!(st.udp_inuse, 2);
        assert_eq!(st.udp_mem_pages, 17);
        assert_eq!(parse_sockstat("garbage\nTCP: inuse x").tcp_inuse, 0);
    }

    #[test]
    fn tcp_lines() {
        // 198.18.1.1:8080 <- 198.18.0.2:40000, ESTABLISHED (x86: little endian).
        let v4 = format!(
            "   0: {:08X}:1F90 {:08X}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 1",
            u32::from_ne_bytes([198, 18, 1, 1]),
            u32::from_ne_bytes([198, 18, 0, 2])
        );
        let (l, r, st) = parse_tcp_line(&v4).expect("parses");
        assert_eq!(l, "198.18.1.1:8080".parse::<SocketAddr>().expect("addr"));
        assert_eq!(r, "198.18.0.2:40000".parse::<SocketAddr>().expect("addr"));
        assert_eq!(st, 1);
        let ip6: Ipv6Addr = "2001:2::1".parse().expect("v6");
        let o = ip6.octets();
        let hex: String = (0..4)
            .map(|i| {
                let w = u32::from_ne_bytes([o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]]);
                format!("{w:08X}")
            })
            .collect();
        let v6 = format!("  1: {hex}:01BB {hex}:C000 0A 0 0 0");
        let (l, _, st) = parse_tcp_line(&v6).expect("parses");
        assert_eq!(l, SocketAddr::new(IpAddr::V6(ip6), 443));
        assert_eq!(st, 10);
        assert!(parse_tcp_line("  sl  local_address rem_address   st").is_none());
        assert!(parse_tcp_line("0: zz:1 00:1 01").is_none());
    }

    #[test]
    fn snmp_fields() {
        let s = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                 Udp: 100 2 7 90 5 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_snmp(s, "Udp:", "RcvbufErrors"), Some(5));
        assert_eq!(parse_snmp(s, "Udp:", "Nope"), None);
        assert_eq!(parse_snmp("", "Udp:", "RcvbufErrors"), None);
    }

    #[test]
    fn kb_fields() {
        assert_eq!(
            kb_field("VmPeak:\t 100 kB\nVmRSS:\t    2048 kB\n", "VmRSS:"),
            Some(2048 * 1024)
        );
        assert_eq!(kb_field("nothing", "VmRSS:"), None);
    }
}
