//! Segmentation offloads of the kernel backend's veth ends, through the
//! ethtool ioctl (`SIOCETHTOOL`: `ETHTOOL_GSSET_INFO`, `GSTRINGS`, `GFEATURES`,
//! `SFEATURES`), so no `ethtool` binary is needed.
//!
//! Why: with offloads a qdisc sees super-packets (up to 64 KB of TCP, or a
//! GSO batch of UDP datagrams) and netem drops, delays and counts each as one
//! packet. Turning the features off is not enough for TCP, which always builds
//! GSO packets since Linux 4.17 (segmented after the qdisc): the device's
//! `gso_max_segs 1` (set with `ip link`) makes TCP hand the qdisc one segment
//! per packet. UDP_SEGMENT (a QUIC stack's GSO) ignores both: the endpoint must
//! not use it (see docs/link.md).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// Whether a feature (ethtool's name, as `ethtool -k` prints it) batches
/// packets: segmentation on send, aggregation on receive.
pub fn is_batching(name: &str) -> bool {
    name.ends_with("-segmentation")
        || name.starts_with("rx-gro")
        || name == "rx-udp-gro-forwarding"
        || name == "rx-lro"
        || name.starts_with("tx-gso")
}

/// One device's batching features after [`disable_batching`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Offloads {
    /// Batching features that are off (verified by reading them back).
    pub off: Vec<String>,
    /// Batching features still on (fixed by the driver, or refused).
    pub still_on: Vec<String>,
    /// The device's `gso_max_segs` (1: TCP hands the qdisc single segments).
    pub gso_max_segs: u32,
}

impl Offloads {
    /// Everything that batches is off and TCP sends single segments.
    pub fn verified(&self) -> bool {
        self.still_on.is_empty() && self.gso_max_segs == 1
    }
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SIOCETHTOOL` on `dev` with `buf` (u32 words: the command and its payload).
fn ethtool(sock: &OwnedFd, dev: &str, buf: &mut [u32]) -> io::Result<()> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: buf.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    let n = dev.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&dev.as_bytes()[..n]);
    // SAFETY: req points at a valid ifreq whose data points at `buf`, sized for
    // the command by the caller; both outlive the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The feature names of `dev`, index = feature bit.
fn feature_names(sock: &OwnedFd, dev: &str) -> io::Result<Vec<String>> {
    // struct ethtool_sset_info { cmd, reserved, u64 sset_mask, u32 data[] }
    let mut info = [0u32; 5];
    info[0] = ETHTOOL_GSSET_INFO;
    info[2] = 1 << ETH_SS_FEATURES;
    ethtool(sock, dev, &mut info)?;
    if info[2] & (1 << ETH_SS_FEATURES) == 0 {
        return Err(io::Error::other("the device reports no feature strings"));
    }
    let count = info[4] as usize;
    if count > 4096 {
        return Err(io::Error::other(format!("{count} feature strings?")));
    }
    // struct ethtool_gstrings { cmd, string_set, len, u8 data[] }
    let mut buf = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
    buf[0] = ETHTOOL_GSTRINGS;
    buf[1] = ETH_SS_FEATURES;
    buf[2] = count as u32;
    ethtool(sock, dev, &mut buf)?;
    let bytes: Vec<u8> = buf[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    Ok(bytes
        .chunks(ETH_GSTRING_LEN)
        .map(|c| {
            let end = c.iter().position(|b| *b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect())
}

/// `(available, active)` bit sets of `dev`, `blocks` u32 words each.
fn features(sock: &OwnedFd, dev: &str, blocks: usize) -> io::Result<(Vec<u32>, Vec<u32>)> {
    // struct ethtool_gfeatures { cmd, size, {available, requested, active, never_changed}[] }
    let mut buf = vec![0u32; 2 + 4 * blocks];
    buf[0] = ETHTOOL_GFEATURES;
    buf[1] = blocks as u32;
    ethtool(sock, dev, &mut buf)?;
    let avail = (0..blocks).map(|b| buf[2 + 4 * b]).collect();
    let active = (0..blocks).map(|b| buf[2 + 4 * b + 2]).collect();
    Ok((avail, active))
}

/// Turns every batching feature of `dev` off (in the calling thread's network
/// namespace) and reads them back.
pub fn disable_batching(dev: &str) -> io::Result<Offloads> {
    let sock = socket()?;
    let names = feature_names(&sock, dev)?;
    let blocks = names.len().div_ceil(32);
    let bit = |i: usize| (i / 32, 1u32 << (i % 32));
    let (avail, _) = features(&sock, dev, blocks)?;
    // struct ethtool_sfeatures { cmd, size, {valid, requested}[] }: valid bits
    // with requested 0 turn those features off.
    let mut set = vec![0u32; 2 + 2 * blocks];
    set[0] = ETHTOOL_SFEATURES;
    set[1] = blocks as u32;
    for (i, name) in names.iter().enumerate() {
        let (b, m) = bit(i);
        if is_batching(name) && avail[b] & m != 0 {
            set[2 + 2 * b] |= m;
        }
    }
    // A positive return (ETHTOOL_F_WISH...) only says some wish was not met:
    // the read-back below tells which.
    ethtool(&sock, dev, &mut set)?;
    let (_, active) = features(&sock, dev, blocks)?;
    let mut out = Offloads::default();
    for (i, name) in names.iter().enumerate() {
        if !is_batching(name) {
            continue;
        }
        let (b, m) = bit(i);
        if active[b] & m != 0 {
            out.still_on.push(name.clone());
        } else {
            out.off.push(name.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_features_by_name() {
        for on in [
            "tx-tcp-segmentation",
            "tx-tcp6-segmentation",
            "tx-udp-segmentation",
            "tx-generic-segmentation",
            "rx-gro",
            "rx-gro-list",
            "rx-udp-gro-forwarding",
            "rx-lro",
            "tx-gso-list",
            "tx-gso-partial",
        ] {
            assert!(is_batching(on), "{on}");
        }
        for off in [
            "tx-checksum-ip-generic",
            "tx-scatter-gather",
            "rx-checksum",
            "highdma",
        ] {
            assert!(!is_batching(off), "{off}");
        }
    }
}
