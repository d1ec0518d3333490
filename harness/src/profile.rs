//! What a namespace's network stack was set to, and what it dropped.
//!
//! A comparison is wrong without a trace when a setting differs between the
//! transports (a host default such as BBR, tiny socket buffers) or when a
//! packet is lost anywhere but in the link model (a device queue, a socket's
//! receive buffer, a listen queue). So each cell records, for both ends:
//! the sysctls that change a TCP or UDP result, the routes' initcwnd/initrwnd,
//! every device's qdisc and queue length ([`NsProfile`]), and the drop
//! counters before and after the workload ([`DropCounters`]); their
//! difference is the cell's `unaccounted_drops`.
//!
//! Read from inside the namespace: `/proc/sys/net` and `/proc/thread-self/net`
//! answer for the calling thread's namespace, and `ip`/`tc` (iproute2, which
//! the link needs anyway) run in it through [`NetNs::exec`].

use std::collections::BTreeMap;

use quicbench_netem::ns::NetNs;
use serde::{Deserialize, Serialize};

/// The sysctls that can change a TCP or QUIC result (namespace-scoped ones,
/// plus the global controller list).
pub const SYSCTLS: &[&str] = &[
    "net/ipv4/tcp_congestion_control",
    "net/ipv4/tcp_available_congestion_control",
    "net/ipv4/tcp_rmem",
    "net/ipv4/tcp_wmem",
    "net/ipv4/tcp_slow_start_after_idle",
    "net/ipv4/tcp_ecn",
    "net/ipv4/tcp_sack",
    "net/ipv4/tcp_timestamps",
    "net/ipv4/tcp_no_metrics_save",
    "net/ipv4/tcp_min_tso_segs",
    "net/ipv4/tcp_fastopen",
    "net/core/rmem_default",
    "net/core/rmem_max",
    "net/core/wmem_default",
    "net/core/wmem_max",
];

/// One namespace's settings, as read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NsProfile {
    /// sysctl (dotted name) → value; a missing one is absent.
    pub sysctls: BTreeMap<String, String>,
    /// Every route with its initcwnd/initrwnd (None: the kernel's default, 10).
    pub routes: Vec<RouteInfo>,
    /// Every device: MTU, qdisc, txqueuelen.
    pub devices: Vec<DeviceInfo>,
    /// What could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub dst: String,
    pub dev: Option<String>,
    pub initcwnd: Option<u64>,
    pub initrwnd: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub mtu: Option<u64>,
    pub qdisc: Option<String>,
    pub txqueuelen: Option<u64>,
}

/// Counters of drops that the link model did not make. Monotonic: compare a
/// snapshot after the workload with one before ([`DropCounters::since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCounters {
    /// Name (e.g. `Udp.RcvbufErrors`, `dev.tun0.tx_dropped`,
    /// `qdisc.tun0.drops`) → count.
    pub counters: BTreeMap<String, u64>,
}

/// The `/proc/net/snmp` and `/proc/net/netstat` counters that are drops.
const PROTO_DROPS: &[&str] = &[
    "Udp.RcvbufErrors",
    "Udp.SndbufErrors",
    "Udp.InErrors",
    "Udp.MemErrors",
    "Udp6.Udp6RcvbufErrors",
    "Udp6.Udp6SndbufErrors",
    "Udp6.Udp6InErrors",
    "Udp6.Udp6MemErrors",
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "TcpExt.TCPBacklogDrop",
    "TcpExt.TCPRcvQDrop",
    "TcpExt.TCPZeroWindowDrop",
    "TcpExt.TCPMemoryPressures",
    "Ip.InDiscards",
    "Ip.OutDiscards",
];

impl DropCounters {
    /// What grew since `before` (counters that shrank or vanished count 0).
    pub fn since(&self, before: &DropCounters) -> BTreeMap<String, u64> {
        self.counters
            .iter()
            .filter_map(|(k, v)| {
                let d = v.saturating_sub(before.counters.get(k).copied().unwrap_or(0));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// Read every setting of `ns`.
pub fn read_profile(ns: &NetNs) -> NsProfile {
    let mut p = NsProfile::default();
    // One thread in the namespace for every sysctl (each `NetNs::sysctl`
    // would start its own).
    let read = ns.try_run(|| {
        SYSCTLS
            .iter()
            .map(|name| {
                let path = std::path::Path::new("/proc/sys").join(name);
                (*name, std::fs::read_to_string(path))
            })
            .collect::<Vec<_>>()
    });
    match read {
        Ok(list) => {
            for (name, v) in list {
                match v {
                    Ok(v) => {
                        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                        p.sysctls.insert(name.replace('/', "."), v);
                    }
                    Err(e) => p.unreadable.push(format!("sysctl {name}: {e}")),
                }
            }
        }
        Err(e) => p.unreadable.push(format!("entering the namespace: {e}")),
    }
    for family in ["-4", "-6"] {
        match ns.exec("ip", &[family, "-j", "route", "show"]) {
            Ok(json) => p.routes.extend(parse_routes(&json)),
            Err(e) => p.unreadable.push(format!("routes: {e}")),
        }
    }
    match ns.exec("ip", &["-j", "link", "show"]) {
        Ok(json) => p.devices = parse_devices(&json),
        Err(e) => p.unreadable.push(format!("devices: {e}")),
    }
    p
}

/// Read every drop counter of `ns`.
pub fn read_drops(ns: &NetNs) -> Result<DropCounters, String> {
    let mut c = DropCounters::default();
    let proc = ns
        .try_run(|| {
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
            let snmp6 = std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap_or_default();
            let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
            Ok::<_, std::io::Error>((snmp, snmp6, netstat))
        })
        .map_err(|e| format!("entering the namespace: {e}"))?
        .map_err(|e| format!("reading /proc/thread-self/net: {e}"))?;
    let mut all = parse_proc_table(&proc.0);
    all.extend(parse_proc_table(&proc.2));
    all.extend(parse_snmp6(&proc.1));
    for k in PROTO_DROPS {
        if let Some(v) = all.get(*k) {
            c.counters.insert((*k).to_string(), *v);
        }
    }
    let links = ns
        .exec("ip", &["-j", "-s", "link", "show"])
        .map_err(|e| e.to_string())?;
    c.counters.extend(parse_device_drops(&links));
    let qdiscs = ns
        .exec("tc", &["-j", "-s", "qdisc", "show"])
        .map_err(|e| e.to_string())?;
    c.counters.extend(parse_qdisc_drops(&qdiscs));
    Ok(c)
}

/// `/proc/net/snmp` and `/proc/net/netstat`: pairs of lines, a header of
/// names and a line of values, both prefixed `Proto:`. → `Proto.Name` → value.
pub fn parse_proc_table(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [head, vals] = pair else { continue };
        let (Some((p1, names)), Some((p2, values))) = (head.split_once(':'), vals.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                out.insert(format!("{p1}.{n}"), v);
            }
        }
    }
    out
}

/// `/proc/net/snmp6`: one `Name value` per line → `Udp6.Name` etc.
pub fn parse_snmp6(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        let proto = ["Udp6", "Ip6", "Icmp6", "UdpLite6"]
            .into_iter()
            .find(|p| name.starts_with(p));
        if let Some(p) = proto {
            out.insert(format!("{p}.{name}"), v);
        }
    }
    out
}

fn as_u64(v: &serde_json::Value, k: &str) -> Option<u64> {
    v.get(k).and_then(|x| x.as_u64())
}

/// `ip -j route show`: destination, device, and the initcwnd/initrwnd metrics.
pub fn parse_routes(json: &str) -> Vec<RouteInfo> {
    let Ok(serde_json::Value::Array(routes)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    routes
        .iter()
        .map(|r| {
            // iproute2 prints metrics as [{"initcwnd": 10}, ...] or as fields.
            let metric = |k: &str| {
                as_u64(r, k).or_else(|| {
                    r.get("metrics")
                        .and_then(|m| m.as_array())
                        .and_then(|a| a.iter().find_map(|m| as_u64(m, k)))
                })
            };
            RouteInfo {
                dst: r
                    .get("dst")
                    .and_then(|d| d.as_str())
                    .unwrap_or("?")
                    .to_string(),
                dev: r.get("dev").and_then(|d| d.as_str()).map(str::to_string),
                initcwnd: metric("initcwnd"),
                initrwnd: metric("initrwnd"),
            }
        })
        .collect()
}

/// `ip -j link show`: name, MTU, qdisc, txqueuelen of every device.
pub fn parse_devices(json: &str) -> Vec<DeviceInfo> {
    let Ok(serde_json::Value::Array(devs)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    devs.iter()
        .map(|d| DeviceInfo {
            name: d
                .get("ifname")
                .and_then(|n| n.as_str())
                .unwrap_or("?")
                .to_string(),
            mtu: as_u64(d, "mtu"),
            qdisc: d.get("qdisc").and_then(|q| q.as_str()).map(str::to_string),
            txqueuelen: as_u64(d, "txqlen"),
        })
        .collect()
}

/// `ip -j -s link show`: per device, the receive and transmit drops and
/// overruns → `dev.<name>.rx_dropped` etc.
pub fn parse_device_drops(json: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(serde_json::Value::Array(devs)) = serde_json::from_str(json) else {
        return out;
    };
    for d in &devs {
        let Some(name) = d.get("ifname").and_then(|n| n.as_str()) else {
            continue;
        };
        let Some(s) = d.get("stats64").or_else(|| d.get("stats")) else {
            continue;
        };
        for (dir, keys) in [
            (
                "rx",
                &["dropped", "over_errors", "missed", "fifo_errors"][..],
            ),
            ("tx", &["dropped", "fifo_errors", "aborted_errors"][..]),
        ] {
            let Some(x) = s.get(dir) else { continue };
            for k in keys {
                if let Some(v) = as_u64(x, k) {
                    out.insert(format!("dev.{name}.{dir}_{k}"), v);
                }
            }
        }
    }
    out
}

/// `tc -j -s qdisc show`: per qdisc, its drops → `qdisc.<dev>.<kind>.drops`.
/// A netem qdisc's drops are the model's own (the kernel backend's link), so
/// they are left out here: the link counters report them.
pub fn parse_qdisc_drops(json: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(serde_json::Value::Array(qs)) = serde_json::from_str(json) else {
        return out;
    };
    for q in &qs {
        let kind = q.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
        if kind == "netem" {
            continue;
        }
        let dev = q.get("dev").and_then(|k| k.as_str()).unwrap_or("?");
        let handle = q.get("handle").and_then(|k| k.as_str()).unwrap_or("");
        if let Some(v) = as_u64(q, "drops") {
            *out.entry(format!("qdisc.{dev}.{kind}{handle}.drops"))
                .or_default() += v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL InReceives InDiscards OutDiscards
Ip: 2 64 2086 3 4
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 21 0 7 22 5 0 0 0 0
";

    #[test]
    fn proc_tables_parse_by_name() {
        let t = parse_proc_table(SNMP);
        assert_eq!(t.get("Udp.RcvbufErrors"), Some(&5));
        assert_eq!(t.get("Udp.InErrors"), Some(&7));
        assert_eq!(t.get("Ip.InDiscards"), Some(&3));
        // A truncated table yields what it has, never a wrong pairing.
        let t = parse_proc_table("Udp: A B\nTcp: 1 2\n");
        assert!(t.is_empty());
        let t = parse_snmp6("Udp6InDatagrams 4\nUdp6RcvbufErrors 9\nIp6InReceives x\n");
        assert_eq!(t.get("Udp6.Udp6RcvbufErrors"), Some(&9));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn devices_routes_and_qdiscs_parse() {
        let links = r#"[{"ifindex":1,"ifname":"lo","mtu":65536,"qdisc":"noqueue","txqlen":1000,
            "stats64":{"rx":{"bytes":1,"packets":1,"errors":0,"dropped":2,"over_errors":0,"multicast":0},
                       "tx":{"bytes":1,"packets":1,"errors":0,"dropped":3,"carrier_errors":0,"collisions":0}}}]"#;
        let d = parse_device_drops(links);
        assert_eq!(d.get("dev.lo.rx_dropped"), Some(&2));
        assert_eq!(d.get("dev.lo.tx_dropped"), Some(&3));
        assert_eq!(d.get("dev.lo.rx_over_errors"), Some(&0));
        let devs = parse_devices(links);
        assert_eq!(devs[0].qdisc.as_deref(), Some("noqueue"));
        assert_eq!(devs[0].txqueuelen, Some(1000));
        let routes = parse_routes(
            r#"[{"dst":"198.18.0.0/24","dev":"qb0","metrics":[{"initcwnd":20}]},{"dst":"default","dev":"qb0"}]"#,
        );
        assert_eq!(routes[0].initcwnd, Some(20));
        assert_eq!(routes[1].initcwnd, None);
        let q = parse_qdisc_drops(
            r#"[{"kind":"pfifo_fast","handle":"0:","dev":"tun0","drops":4},{"kind":"netem","handle":"1:","dev":"veth0","drops":100}]"#,
        );
        assert_eq!(q.get("qdisc.tun0.pfifo_fast0:.drops"), Some(&4));
        assert_eq!(q.len(), 1, "netem's drops are the model's: {q:?}");
        assert!(parse_routes("not json").is_empty());
    }

    #[test]
    fn since_counts_growth_only() {
        let mut a = DropCounters::default();
        a.counters.insert("x".into(), 5);
        a.counters.insert("y".into(), 5);
        let mut b = a.clone();
        b.counters.insert("x".into(), 8);
        b.counters.insert("y".into(), 2);
        b.counters.insert("z".into(), 1);
        let d = b.since(&a);
        assert_eq!(d.get("x"), Some(&3));
        assert_eq!(d.get("y"), None);
        assert_eq!(d.get("z"), Some(&1));
    }
}
