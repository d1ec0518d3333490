//! NAT rebinding on the kernel backend: nftables SNAT in the client namespace,
//! with the same bookkeeping (`crate::nat::Nat`) and events as the user-space
//! NAT.
//!
//! Transparent until the first rebind. A rebind rewrites the SNAT rules (new
//! external address from the same pool as user space; for a port rebind, a
//! source-port range disjoint from the previous one and from the ephemeral
//! ports) and then deletes the conntrack entries of older bindings, so every
//! flow gets a new binding with its next packet up, as with the user-space NAT.
//! Each binding generation marks the flows it translates (`ct mark`), and the
//! deletion keeps the current generation's: a flush of the whole table would
//! race with traffic, deleting a flow just bound under the new rules and
//! making it rebind twice (a flow seen on two new ports after one event). Packets
//! from the server that belong to no client-originated flow (old bindings) are
//! dropped and counted, as a real NAT drops them.
//!
//! Needs `nft` (Debian: nftables) and the kernel's nf_tables NAT; runs in the
//! calling thread's network namespace, so callers enter the client namespace
//! first.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::nat::{Nat, NatCounters, NatSchedule, RebindEvent, RebindKind};
use crate::relay::Clock;

const TABLE: &str = "quicbench_nat";
/// Source ports of odd and even port rebinds: disjoint from each other and
/// from the ephemeral range (32768-60999), so a rebind always changes the port.
const PORT_RANGES: [(u16, u16); 2] = [(16_384, 32_767), (1_024, 16_383)];

/// The kernel NAT of one link.
pub(super) struct KernelNat {
    dev: String,
    nat: Mutex<Nat>,
    clock: Clock,
    stop: Mutex<bool>,
    wake: Condvar,
    /// Set once the table exists (first rebind).
    installed: AtomicBool,
}

impl KernelNat {
    pub fn new(dev: &str, nat: Nat, clock: Clock) -> Arc<KernelNat> {
        Arc::new(KernelNat {
            dev: dev.to_string(),
            nat: Mutex::new(nat),
            clock,
            stop: Mutex::new(false),
            wake: Condvar::new(),
            installed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Nat> {
        // Nat's tables are consistent between calls: recover from a panic.
        self.nat.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebind now. Must run on a thread inside the client namespace.
    pub fn rebind(&self, kind: RebindKind, scheduled: bool) -> io::Result<RebindEvent> {
        let mut nat = self.lock();
        // Applied to a copy first: a failed nft run leaves the NAT as it was.
        let at = self.clock.now_ns();
        let mut next = nat.clone();
        let mut ev = next.rebind(kind, at, scheduled);
        let first = !self.installed.load(Ordering::Acquire);
        nft(&ruleset(&next, &self.dev, first))?;
        self.installed.store(true, Ordering::Release);
        let flows = conntrack_count().unwrap_or(0);
        forget_old_bindings(generation_mark(next.events().len()))?;
        next.set_last_flows_forgotten(flows);
        ev.flows_forgotten = flows;
        *nat = next;
        Ok(ev)
    }

    pub fn events(&self) -> Vec<RebindEvent> {
        self.lock().events().to_vec()
    }

    /// Counters read from nftables (the calling thread must be in the client
    /// namespace); the last known ones when nft cannot be read.
    pub fn counters(&self) -> NatCounters {
        let mut nat = self.lock();
        if self.installed.load(Ordering::Acquire) {
            if let Ok(out) = nft_output(&["list", "counters", "table", "inet", TABLE]) {
                let mut c = parse_counters(&out);
                c.rebinds = nat.events().len() as u64;
                nat.set_counters(c);
            }
        }
        nat.counters().clone()
    }

    /// Fire `schedule`'s rebinds until [`KernelNat::stop`]; runs on a thread
    /// inside the client namespace.
    pub fn run_schedule(&self, schedule: &NatSchedule) {
        let mut k = 0;
        while let Some(at) = schedule.event_ns(k) {
            let mut stopped = self.stop.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if *stopped {
                    return;
                }
                let now = self.clock.now_ns();
                if now >= at {
                    break;
                }
                stopped = self
                    .wake
                    .wait_timeout(stopped, Duration::from_nanos(at - now))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(stopped);
            match self.rebind(schedule.kind, true) {
                Ok(ev) => tracing::debug!(?ev, "scheduled NAT rebind (kernel)"),
                Err(e) => tracing::warn!("scheduled NAT rebind failed: {e}"),
            }
            k += 1;
        }
    }

    pub fn stop(&self) {
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// The nft script for the NAT's current bindings: the whole table the first
/// time, then only the SNAT chain (one transaction either way).
pub(super) fn ruleset(nat: &Nat, dev: &str, first: bool) -> String {
    let mut s = String::new();
    if first {
        s += &format!(
            "table inet {TABLE} {{\n\
             \tcounter translated_up {{ }}\n\
             \tcounter translated_down {{ }}\n\
             \tcounter dropped_no_mapping {{ }}\n\
             \tchain src_rewrite {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}}\n\
             \tchain dst_rewrite {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t}}\n\
             \tchain count_up {{\n\
             \t\ttype filter hook postrouting priority srcnat + 10; policy accept;\n\
             \t\toifname \"{dev}\" ct direction original ct status snat counter name \"translated_up\"\n\
             \t}}\n\
             \tchain inbound {{\n\
             \t\ttype filter hook prerouting priority filter; policy accept;\n\
             \t\tiifname \"{dev}\" meta l4proto {{ tcp, udp }} ct direction original counter name \"dropped_no_mapping\" drop\n\
             \t\tiifname \"{dev}\" ct direction reply ct status snat counter name \"translated_down\"\n\
             \t}}\n\
             }}\n"
        );
    }
    s += &format!("flush chain inet {TABLE} src_rewrite\n");
    let mark = generation_mark(nat.events().len());
    let ports = match nat.port_generation() {
        0 => String::new(),
        g => {
            let (lo, hi) = PORT_RANGES[(g % 2) as usize];
            format!(":{lo}-{hi}")
        }
    };
    let (n4, n6) = nat.client_addr_count();
    for proto in ["tcp", "udp"] {
        for (own, ext) in (0..n4).filter_map(|i| nat.v4_binding(i)) {
            s += &format!(
                "add rule inet {TABLE} src_rewrite oifname \"{dev}\" ip saddr {own} meta l4proto {proto} ct mark set {mark} snat ip to {ext}{ports}\n"
            );
        }
        for (own, ext) in (0..n6).filter_map(|i| nat.v6_binding(i)) {
            let to = if ports.is_empty() {
                ext.to_string()
            } else {
                format!("[{ext}]{ports}")
            };
            s += &format!(
                "add rule inet {TABLE} src_rewrite oifname \"{dev}\" ip6 saddr {own} meta l4proto {proto} ct mark set {mark} snat ip6 to {to}\n"
            );
        }
    }
    s
}

fn nft_missing(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            e.kind(),
            "nft (nftables) is not installed: NAT rebinding on the kernel backend needs it \
             (apt-get install nftables), or use the user-space backend",
        )
    } else {
        e
    }
}

/// `nft -f -` with `script` on stdin.
pub(super) fn nft(script: &str) -> io::Result<()> {
    let mut child = crate::tools::command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(nft_missing)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft -f - failed ({}): {}\nscript:\n{script}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

pub(super) fn nft_output(args: &[&str]) -> io::Result<String> {
    let out = crate::tools::command("nft")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(nft_missing)?;
    if !out.status.success() {
        return Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Is `nft` there to run?
pub(super) fn nft_available() -> Result<(), String> {
    nft_output(&["--version"])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Named counters of `nft list counters`: `counter NAME { packets N bytes M }`.
fn parse_counters(out: &str) -> NatCounters {
    let mut c = NatCounters::default();
    let mut name = "";
    for w in out.split_whitespace().collect::<Vec<_>>().windows(2) {
        match w[0] {
            "counter" => name = w[1],
            "packets" => {
                let n = w[1].parse().unwrap_or(0);
                match name {
                    "translated_up" => c.translated_up = n,
                    "translated_down" => c.translated_down = n,
                    "dropped_no_mapping" => c.dropped_no_mapping = n,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    c
}

/// Connections conntrack tracks in this namespace.
fn conntrack_count() -> io::Result<usize> {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")?
        .trim()
        .parse()
        .map_err(io::Error::other)
}

/// Bits of the conntrack mark the NAT owns.
const MARK_MASK: u32 = 3;

/// The conntrack mark of flows bound in generation `events` (1 or 2,
/// alternating; 0 is a flow no rule of ours translated).
fn generation_mark(events: usize) -> u32 {
    1 + (events % 2) as u32
}

/// Delete the conntrack entries not bound by the generation marked `keep`:
/// unmarked ones (from before the first rebind) and the previous generation's.
/// Twice: a flow whose first packet was between the rule change and the
/// first pass (still bound by the old rules, not yet in the table) is caught
/// by the second.
fn forget_old_bindings(keep: u32) -> io::Result<()> {
    let other = if keep == 1 { 2 } else { 1 };
    for _ in 0..2 {
        for mark in [0, other] {
            delete_conntrack(Some((mark, MARK_MASK)))?;
        }
    }
    Ok(())
}

/// Delete this namespace's conntrack entries (ctnetlink `IPCTNL_MSG_CT_DELETE`
/// without a tuple, family AF_UNSPEC): all, or those whose
/// `mark & mask == value` (`CTA_MARK`, `CTA_MARK_MASK`).
fn delete_conntrack(mark: Option<(u32, u32)>) -> io::Result<()> {
    const CTA_MARK: u16 = 8;
    const CTA_MARK_MASK: u16 = 21;
    const NETLINK_NETFILTER: libc::c_int = 12;
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    // SAFETY: plain socket(2); checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: a valid timeval for SO_RCVTIMEO.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    // nlmsghdr (16 bytes) + nfgenmsg (family, version, res_id) + attributes
    // (4-byte header, big-endian u32 payload).
    let mut attrs = Vec::new();
    if let Some((value, mask)) = mark {
        for (kind, v) in [(CTA_MARK, value), (CTA_MARK_MASK, mask)] {
            attrs.extend_from_slice(&8u16.to_ne_bytes());
            attrs.extend_from_slice(&kind.to_ne_bytes());
            attrs.extend_from_slice(&v.to_be_bytes());
        }
    }
    let len = 20 + attrs.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend_from_slice(&attrs);
    // SAFETY: zeroed sockaddr_nl is valid; family set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: msg and addr are valid for the given lengths.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // The ack: nlmsghdr of type NLMSG_ERROR, then the (negative) errno.
    let n = n as usize;
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        // ENOENT: the table was already empty.
        if err != 0 && err != -libc::ENOENT {
            return Err(io::Error::from_raw_os_error(-err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::addr;

    fn nat(n: usize) -> Nat {
        Nat::new(
            (0..n).map(addr::client_v4).collect(),
            (0..n).map(addr::client_v6).collect(),
        )
    }

    #[test]
    fn ruleset_follows_the_bindings() {
        let mut n = nat(2);
        n.rebind(RebindKind::Port, 0, false);
        let first = ruleset(&n, "qbc", true);
        assert!(first.contains("table inet quicbench_nat"), "{first}");
        assert!(first.contains("counter name \"dropped_no_mapping\" drop"));
        assert!(first.contains(
            "ip saddr 198.18.0.1 meta l4proto tcp ct mark set 2 snat ip to 198.18.0.1:1024-16383"
        ));
        assert!(first.contains(
            "ip6 saddr 2001:2::2 meta l4proto udp ct mark set 2 snat ip6 to [2001:2::2]:1024-16383"
        ));
        // The second port rebind takes the other range; an address rebind
        // moves to the pool, ports kept from the current range.
        n.rebind(RebindKind::Port, 1, false);
        let again = ruleset(&n, "qbc", false);
        assert!(!again.contains("table inet"), "{again}");
        assert!(again.starts_with("flush chain inet quicbench_nat src_rewrite\n"));
        assert!(
            again.contains("ct mark set 1 snat ip to 198.18.0.1:16384-32767"),
            "{again}"
        );
        n.rebind(RebindKind::Address, 2, false);
        let addr_rb = ruleset(&n, "qbc", false);
        assert!(
            addr_rb
                .contains("ip saddr 198.18.0.2 meta l4proto udp ct mark set 2 snat ip to 198.19.0.2:16384-32767"),
            "{addr_rb}"
        );
        let mut m = nat(1);
        m.rebind(RebindKind::Address, 0, false);
        let a = ruleset(&m, "qbc", false);
        assert!(a.contains("snat ip to 198.19.0.1\n"), "{a}");
        assert!(a.contains("snat ip6 to 2001:2:0:2::1\n"), "{a}");
    }

    #[test]
    fn parses_nft_counters() {
        let out = "table inet quicbench_nat {\n\tcounter translated_up {\n\t\tpackets 12 bytes 3400\n\t}\n\tcounter translated_down {\n\t\tpackets 7 bytes 900\n\t}\n\tcounter dropped_no_mapping {\n\t\tpackets 3 bytes 120\n\t}\n}\n";
        let c = parse_counters(out);
        assert_eq!(
            (c.translated_up, c.translated_down, c.dropped_no_mapping),
            (12, 7, 3)
        );
    }
}
