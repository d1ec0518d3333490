//! Kernel tc-netem backend: the `tc` command line for a [`LinkSpec`], detection of
//! `sch_netem` in the running kernel, and applying a spec with `tc`.
//!
//! `tc` runs in the network namespace of the *calling thread* (a child process inherits
//! it), so callers configure a namespace's device from a thread that has entered it.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::spec::Distribution;
use crate::spec::{LinkSpec, SlotDelay, DEFAULT_LIMIT};

/// What tc says when the kernel lacks the qdisc.
const UNKNOWN_QDISC: &str = "Specified qdisc kind is unknown";

/// The arguments after `tc` that install `spec` as the root qdisc of `dev`:
/// `qdisc replace dev DEV root netem limit N ...`. `replace` so it works whether or not a
/// root qdisc is there; `limit` always explicit so the kernel state is fully given.
///
/// One translation: `slot distribution uniform D J` becomes `slot D-J D+J` (the same
/// uniform law), because tc has no uniform.dist table file to load. (`distribution
/// uniform` for the delay is netem's default and is simply left out.)
///
/// `drop-nth` is not tc's: it is left out here and installed with nftables
/// ([`drop_nth_ruleset`]).
pub fn tc_args(dev: &str, spec: &LinkSpec) -> Vec<String> {
    let mut spec = spec.clone();
    spec.drop_nth.clear();
    if let Some(slot) = spec.slot.as_mut() {
        if let SlotDelay::Distribution {
            distribution: Distribution::Uniform,
            delay_ns,
            jitter_ns,
        } = slot.delay
        {
            slot.delay = SlotDelay::Range {
                min_ns: delay_ns.saturating_sub(jitter_ns),
                max_ns: delay_ns.saturating_add(jitter_ns),
            };
        }
    }
    let mut args: Vec<String> = ["qdisc", "replace", "dev", dev, "root", "netem"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if spec.limit == DEFAULT_LIMIT {
        args.push("limit".into());
        args.push(DEFAULT_LIMIT.to_string());
    }
    args.extend(spec.to_tokens());
    args
}

/// The nftables table that holds `drop-nth` on the kernel backend.
pub const DROP_NTH_TABLE: &str = "quicbench_drop_nth";
/// Its counter of chosen drops.
pub const DROP_NTH_COUNTER: &str = "chosen";
/// Flows its sets remember at most (as [`crate::chosen::MAX_FLOWS`]): when full,
/// the `add` fails and the packet of a new flow passes.
const DROP_NTH_SET_SIZE: usize = crate::chosen::MAX_FLOWS;

/// The `nft -f -` script that drops the first packet of every TCP/UDP flow leaving
/// `dev` (run in the namespace that owns `dev`), for a spec with `drop-nth 1`.
///
/// A dynamic set per family remembers the flows (5-tuples) seen: a packet of a flow
/// in the set passes; the first packet of a new flow is added to it, counted and
/// dropped, so its retransmission passes. Conntrack cannot do this alone: a dropped
/// first packet never confirms its conntrack entry, so the retransmission would be
/// `ct state new` (and dropped) again. Later indices would need a per-flow count
/// nftables does not keep (`ct original packets` skips the unconfirmed drops), so
/// they are refused: only the user-space backend has them.
///
/// `Ok(None)` for a spec without `drop-nth`.
pub fn drop_nth_ruleset(dev: &str, spec: &LinkSpec) -> Result<Option<String>, String> {
    match spec.drop_nth.as_slice() {
        [] => return Ok(None),
        [1] => {}
        other => {
            let list: Vec<String> = other.iter().map(|n| n.to_string()).collect();
            return Err(format!(
                "drop-nth {}: the kernel backend supports only `drop-nth 1` (the first packet \
                 of each flow, with an nftables set); use the user-space backend for other \
                 indices",
                list.join(",")
            ));
        }
    }
    let t = DROP_NTH_TABLE;
    let c = DROP_NTH_COUNTER;
    let n = DROP_NTH_SET_SIZE;
    let mut s = format!("table inet {t} {{\n\tcounter {c} {{ }}\n");
    for (set, addr) in [("seen4", "ipv4_addr"), ("seen6", "ipv6_addr")] {
        s += &format!(
            "\tset {set} {{\n\t\ttype {addr} . {addr} . inet_proto . inet_service . inet_service\n\
             \t\tflags dynamic\n\t\tsize {n}\n\t}}\n"
        );
    }
    // Before the NAT (srcnat): flows as the sender addressed them.
    s += "\tchain egress {\n\t\ttype filter hook postrouting priority filter; policy accept;\n";
    for (set, ip) in [("seen4", "ip"), ("seen6", "ip6")] {
        let tuple = format!("{ip} saddr . {ip} daddr . meta l4proto . th sport . th dport");
        let head = format!("oifname \"{dev}\" meta l4proto {{ tcp, udp }} {tuple}");
        s += &format!("\t\t{head} @{set} accept\n");
        s += &format!(
            "\t\toifname \"{dev}\" meta l4proto {{ tcp, udp }} add @{set} {{ {tuple} }} \
             counter name \"{c}\" drop\n"
        );
    }
    s += "\t}\n}\n";
    Ok(Some(s))
}

/// The packets `drop-nth` dropped, from `nft list counters table inet
/// quicbench_drop_nth` (0 when the counter is not in it).
pub fn parse_drop_nth_counter(out: &str) -> u64 {
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut name = "";
    for w in words.windows(2) {
        match w[0] {
            "counter" => name = w[1],
            "packets" if name == DROP_NTH_COUNTER => return w[1].parse().unwrap_or(0),
            _ => {}
        }
    }
    0
}

/// The arguments after `tc` that remove the root qdisc of `dev`.
pub fn tc_del_args(dev: &str) -> Vec<String> {
    ["qdisc", "del", "dev", dev, "root"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Result of [`netem_available`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetemProbe {
    pub available: bool,
    /// Why: how it was found, or what failed (tc's own words included).
    pub reason: String,
}

impl NetemProbe {
    /// `Ok(reason)` when available, `Err(reason)` when not.
    pub fn into_result(self) -> Result<String, String> {
        if self.available {
            Ok(self.reason)
        } else {
            Err(self.reason)
        }
    }
}

/// Does the running kernel have `sch_netem`?
///
/// Loaded module (`/sys/module/sch_netem`) answers yes at once. Otherwise the definitive
/// test: `tc qdisc add dev lo root netem delay 1ms` inside a throwaway network namespace
/// (the child process unshares before exec; as non-root also a user namespace mapping it to
/// root), so no real interface is touched; the kernel autoloads the module if it exists.
pub fn netem_available() -> NetemProbe {
    if Path::new("/sys/module/sch_netem").exists() {
        return NetemProbe {
            available: true,
            reason: "sch_netem is loaded (/sys/module/sch_netem exists)".into(),
        };
    }
    let args = ["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"];
    let mut cmd = crate::tools::command("tc");
    cmd.args(args).stdin(Stdio::null());
    if let Err(e) = in_throwaway_netns(&mut cmd) {
        return NetemProbe {
            available: false,
            reason: e,
        };
    }
    match cmd.output() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => NetemProbe {
            available: false,
            reason: "tc (iproute2) is not installed or not in PATH".into(),
        },
        Err(e) => NetemProbe {
            available: false,
            reason: format!(
                "could not run tc in a throwaway network namespace to probe for netem: {e}"
            ),
        },
        Ok(out) if out.status.success() => NetemProbe {
            available: true,
            reason: "tc installed a netem qdisc in a throwaway network namespace".into(),
        },
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let reason = if stderr.contains(UNKNOWN_QDISC) {
                format!(
                    "the kernel has no sch_netem (tc {}: {stderr})",
                    args.join(" ")
                )
            } else {
                format!(
                    "tc could not install a netem qdisc (tc {}: {stderr})",
                    args.join(" ")
                )
            };
            NetemProbe {
                available: false,
                reason,
            }
        }
    }
}

/// Makes `cmd` start in a fresh network namespace of its own.
fn in_throwaway_netns(cmd: &mut Command) -> Result<(), String> {
    // SAFETY: plain libc getters, no memory involved.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // Built before fork: the child may only make async-signal-safe calls.
    let maps = if uid == 0 {
        None
    } else {
        let c = |s: &str| CString::new(s).map_err(|e| e.to_string());
        Some((
            c("/proc/self/setgroups")?,
            c("/proc/self/uid_map")?,
            c("/proc/self/gid_map")?,
            format!("0 {uid} 1"),
            format!("0 {gid} 1"),
        ))
    };
    // SAFETY: the closure runs between fork and exec and only calls unshare, open, write
    // and close on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let flags = match maps {
                None => libc::CLONE_NEWNET,
                Some(_) => libc::CLONE_NEWUSER | libc::CLONE_NEWNET,
            };
            if libc::unshare(flags) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((setgroups, uid_map, gid_map, uid_line, gid_line)) = &maps {
                write_proc(setgroups, b"deny")?;
                write_proc(uid_map, uid_line.as_bytes())?;
                write_proc(gid_map, gid_line.as_bytes())?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// open/write/close only: usable between fork and exec.
fn write_proc(path: &CString, data: &[u8]) -> io::Result<()> {
    // SAFETY: path is a valid C string, data a valid buffer; the fd is closed on all paths.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// Why `tc` did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error("the spec is not valid for tc: {0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("tc (iproute2) is not installed or not in PATH")]
    NotFound,
    #[error("could not run tc: {0}")]
    Spawn(io::Error),
    #[error("the kernel has no sch_netem (tc {args}: {stderr})")]
    NoNetem { args: String, stderr: String },
    #[error("no network device {dev:?} in this network namespace (tc {args}: {stderr})")]
    NoDevice {
        dev: String,
        args: String,
        stderr: String,
    },
    #[error("not permitted: changing qdiscs needs CAP_NET_ADMIN (tc {args}: {stderr})")]
    Permission { args: String, stderr: String },
    #[error("tc {args} failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: String,
        stderr: String,
    },
}

/// Installs `spec` as the root qdisc of `dev` (in the calling thread's network namespace).
pub fn apply(dev: &str, spec: &LinkSpec) -> Result<(), TcError> {
    spec.validate()?;
    run_tc(dev, &tc_args(dev, spec))
}

/// Removes the root qdisc of `dev` (back to the device default).
pub fn clear(dev: &str) -> Result<(), TcError> {
    run_tc(dev, &tc_del_args(dev))
}

fn run_tc(dev: &str, args: &[String]) -> Result<(), TcError> {
    let out: Output = crate::tools::command("tc")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                TcError::NotFound
            } else {
                TcError::Spawn(e)
            }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let args = args.join(" ");
    Err(if stderr.contains(UNKNOWN_QDISC) {
        TcError::NoNetem { args, stderr }
    } else if stderr.contains("Cannot find device") {
        TcError::NoDevice {
            dev: dev.to_string(),
            args,
            stderr,
        }
    } else if stderr.contains("Operation not permitted") {
        TcError::Permission { args, stderr }
    } else {
        TcError::Failed {
            args,
            status: out.status.to_string(),
            stderr,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(spec: &str) -> String {
        let spec: LinkSpec = spec.parse().unwrap();
        tc_args("veth0", &spec).join(" ")
    }

    #[test]
    fn tc_args_for_every_option() {
        let head = "qdisc replace dev veth0 root netem";
        let cases = [
            ("", "limit 1000"),
            ("limit 50", "limit 50"),
            ("delay 20ms", "limit 1000 delay 20ms"),
            ("delay 20ms 5ms", "limit 1000 delay 20ms 5ms"),
            ("delay 20ms 5ms 25%", "limit 1000 delay 20ms 5ms 25%"),
            (
                "delay 20ms 5ms distribution normal",
                "limit 1000 delay 20ms 5ms distribution normal",
            ),
            (
                "delay 20ms 5ms distribution pareto",
                "limit 1000 delay 20ms 5ms distribution pareto",
            ),
            (
                "delay 20ms 5ms distribution paretonormal",
                "limit 1000 delay 20ms 5ms distribution paretonormal",
            ),
            (
                "delay 20ms 5ms distribution uniform",
                "limit 1000 delay 20ms 5ms",
            ),
            ("delay 1.5ms", "limit 1000 delay 1.5ms"),
            ("loss 1%", "limit 1000 loss 1%"),
            ("loss random 1% 25%", "limit 1000 loss 1% 25%"),
            (
                "loss state 1% 30% 2% 80% 0.5%",
                "limit 1000 loss state 1% 30% 2% 80% 0.5%",
            ),
            (
                "loss gemodel 1% 10% 70% 0.1%",
                "limit 1000 loss gemodel 1% 10% 70% 0.1%",
            ),
            ("loss 1% ecn", "limit 1000 loss 1% ecn"),
            ("duplicate 1% 10%", "limit 1000 duplicate 1% 10%"),
            ("corrupt 0.1%", "limit 1000 corrupt 0.1%"),
            (
                "delay 10ms reorder 25% 50% gap 5",
                "limit 1000 delay 10ms reorder 25% 50% gap 5",
            ),
            ("rate 10mbit", "limit 1000 rate 10mbit"),
            ("rate 5kbit 20 100 5", "limit 1000 rate 5kbit 20 100 5"),
            ("rate 1mbit -14", "limit 1000 rate 1mbit -14"),
            (
                "slot 1ms 5ms packets 10 bytes 3000",
                "limit 1000 slot 1ms 5ms packets 10 bytes 3000",
            ),
            (
                "slot distribution normal 2ms 500us",
                "limit 1000 slot distribution normal 2ms 500us",
            ),
            (
                "slot distribution uniform 2ms 500us packets 4",
                "limit 1000 slot 1.5ms 2.5ms packets 4",
            ),
            ("seed 42 loss 1%", "limit 1000 loss 1% seed 42"),
        ];
        for (spec, want) in cases {
            assert_eq!(args(spec), format!("{head} {want}"), "{spec:?}");
        }
        assert_eq!(tc_del_args("eth1").join(" "), "qdisc del dev eth1 root");
        // What tc receives parses back to the same spec.
        let spec: LinkSpec =
            "delay 20ms 5ms 25% distribution normal loss gemodel 1% 10% duplicate 1% \
             reorder 5% gap 2 corrupt 1% rate 10mbit 14 limit 77 seed 3"
                .parse()
                .unwrap();
        let tokens = tc_args("x", &spec)[5..].join(" ");
        assert_eq!(tokens.parse::<LinkSpec>().unwrap(), spec);
    }

    /// Runs `f` on a thread moved into a fresh network namespace (root only), so `tc`
    /// touches nothing real. None when namespaces cannot be made here.
    fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        std::thread::spawn(move || {
            // SAFETY: unshare only changes this thread's namespace membership.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            Some(f())
        })
        .join()
        .unwrap()
    }

    #[test]
    fn probe_agrees_with_a_real_attempt() {
        let probe = netem_available();
        eprintln!("netem probe: {probe:?}");
        assert!(!probe.reason.is_empty());
        let spec: LinkSpec = "delay 10ms loss 1%".parse().unwrap();
        let Some(result) = in_fresh_netns(move || apply("lo", &spec)) else {
            eprintln!("skipped: cannot create a network namespace here");
            return;
        };
        match result {
            Ok(()) => assert!(probe.available, "{probe:?}"),
            Err(TcError::NotFound) => assert!(!probe.available),
            Err(TcError::NoNetem { stderr, .. }) => {
                assert!(!probe.available);
                assert!(
                    stderr.contains("Specified qdisc kind is unknown"),
                    "{stderr}"
                );
                assert!(
                    probe.reason.contains("the kernel has no sch_netem"),
                    "{}",
                    probe.reason
                );
                assert!(probe.reason.contains("Specified qdisc kind is unknown"));
                assert!(probe.clone().into_result().is_err());
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }

    /// On this project's machine the kernel has no sch_netem: say so, with tc's reason.
    #[test]
    fn probe_says_no_where_the_module_is_absent() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let module_dir = format!("/lib/modules/{}", release.trim());
        if Path::new("/sys/module/sch_netem").exists() || Path::new(&module_dir).exists() {
            eprintln!("skipped: sch_netem may exist on this kernel");
            return;
        }
        let probe = netem_available();
        if probe.reason.contains("not installed") || probe.reason.contains("namespace") {
            eprintln!("skipped: {}", probe.reason);
            return;
        }
        assert!(!probe.available, "{probe:?}");
        assert!(
            probe.reason.contains("Specified qdisc kind is unknown"),
            "{}",
            probe.reason
        );
    }

    #[test]
    fn apply_maps_failures() {
        let spec: LinkSpec = "delay 10ms".parse().unwrap();
        let Some(result) = in_fresh_netns(move || apply("qbnosuchdev0", &spec)) else {
            eprintln!("skipped: cannot create a network namespace here");
            return;
        };
        match result {
            Err(TcError::NoDevice { dev, .. }) => assert_eq!(dev, "qbnosuchdev0"),
            Err(TcError::NotFound) => eprintln!("skipped: no tc"),
            other => panic!("expected NoDevice, got {other:?}"),
        }
        let bad = LinkSpec {
            limit: 0,
            ..LinkSpec::default()
        };
        let e = apply("lo", &bad).unwrap_err();
        assert!(matches!(e, TcError::Spec(_)), "{e}");
        assert!(e.to_string().contains("limit"), "{e}");
    }

    #[test]
    fn drop_nth_stays_out_of_tc() {
        assert_eq!(
            args("delay 10ms drop-nth 1"),
            "qdisc replace dev veth0 root netem limit 1000 delay 10ms"
        );
    }

    #[test]
    fn drop_nth_first_packet_is_an_nftables_set_of_seen_flows() {
        let spec: LinkSpec = "delay 10ms drop-nth 1".parse().unwrap();
        let script = drop_nth_ruleset("qbc", &spec).unwrap().unwrap();
        let want = "table inet quicbench_drop_nth {
\tcounter chosen { }
\tset seen4 {
\t\ttype ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service
\t\tflags dynamic
\t\tsize 65536
\t}
\tset seen6 {
\t\ttype ipv6_addr . ipv6_addr . inet_proto . inet_service . inet_service
\t\tflags dynamic
\t\tsize 65536
\t}
\tchain egress {
\t\ttype filter hook postrouting priority filter; policy accept;
\t\toifname \"qbc\" meta l4proto { tcp, udp } ip saddr . ip daddr . meta l4proto . th sport . th dport @seen4 accept
\t\toifname \"qbc\" meta l4proto { tcp, udp } add @seen4 { ip saddr . ip daddr . meta l4proto . th sport . th dport } counter name \"chosen\" drop
\t\toifname \"qbc\" meta l4proto { tcp, udp } ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport @seen6 accept
\t\toifname \"qbc\" meta l4proto { tcp, udp } add @seen6 { ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport } counter name \"chosen\" drop
\t}
}
";
        assert_eq!(script, want);
        assert_eq!(drop_nth_ruleset("qbc", &LinkSpec::default()), Ok(None));
    }

    #[test]
    fn drop_nth_beyond_the_first_is_refused_on_the_kernel_backend() {
        for text in ["drop-nth 2", "drop-nth 1,2"] {
            let spec: LinkSpec = text.parse().unwrap();
            let e = drop_nth_ruleset("qbc", &spec).unwrap_err();
            assert!(e.contains("supports only `drop-nth 1`"), "{e}");
            assert!(e.contains(text), "{e}");
        }
    }

    #[test]
    fn drop_nth_counter_from_nft() {
        let out = "table inet quicbench_drop_nth {\n\tcounter chosen {\n\t\tpackets 3 bytes 180\n\t}\n}\n";
        assert_eq!(parse_drop_nth_counter(out), 3);
        assert_eq!(parse_drop_nth_counter(""), 0);
    }
}
