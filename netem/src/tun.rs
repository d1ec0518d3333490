//! TUN devices (`IFF_TUN | IFF_NO_PI`): one IP packet per read or write, or,
//! with offloads ([`Tun::create_offload`]), a virtio-net header and a packet
//! of up to 64 KB that stands for many wire packets (see [`crate::gso`]).
//!
//! Written by hand rather than with `tun-rs`: all we need is `open` +
//! `TUNSETIFF` on a thread inside a given namespace and a non-blocking fd; the
//! addresses and routes are configured by `ip` (see `link`), and tun-rs would
//! bring its async runtime and offload machinery for nothing.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What a TUN device offloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// One IP packet per read and write.
    Off,
    /// TCP segmentation (IPv4 and IPv6) and checksums.
    Tso,
    /// TCP and UDP segmentation (UDP from Linux 6.2) and checksums.
    TsoUso,
}

impl Offload {
    pub fn name(self) -> &'static str {
        match self {
            Offload::Off => "off",
            Offload::Tso => "tso",
            Offload::TsoUso => "tso+uso",
        }
    }
}

/// An open TUN device. The device exists while the fd is open (it is not made
/// persistent), in the namespace of the thread that created it.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
    offload: Offload,
}

impl Tun {
    /// Create TUN device `name` in the calling thread's network namespace
    /// (call it inside [`crate::ns::NetNs::run`]). The fd is non-blocking.
    pub fn create(name: &str) -> io::Result<Tun> {
        Self::open(name, false)
    }

    /// Like [`Tun::create`], with a virtio-net header on every read and write
    /// and the kernel told the device segments TCP (and UDP where the kernel
    /// can: `TUN_F_USO*` needs Linux 6.2) and does checksums, so the stack
    /// hands it 64 KB super-packets. Falls back to a plain device when the
    /// kernel refuses (see [`Tun::offload`]).
    pub fn create_offload(name: &str) -> io::Result<Tun> {
        let tun = Self::open(name, true)?;
        let base = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        for (flags, offload) in [
            (base | libc::TUN_F_USO4 | libc::TUN_F_USO6, Offload::TsoUso),
            (base, Offload::Tso),
        ] {
            // SAFETY: TUNSETOFFLOAD takes its argument by value.
            if unsafe {
                libc::ioctl(
                    tun.fd.as_raw_fd(),
                    libc::TUNSETOFFLOAD as _,
                    flags as libc::c_ulong,
                )
            } == 0
            {
                return Ok(Tun { offload, ..tun });
            }
        }
        let e = io::Error::last_os_error();
        tracing::warn!("TUNSETOFFLOAD {name}: {e}; the device reads one packet at a time");
        drop(tun);
        Self::open(name, false)
    }

    fn open(name: &str, vnet: bool) -> io::Result<Tun> {
        let mut ifr = crate::ns::ifreq_named(name)?;
        // SAFETY: a plain open(2) of a NUL-terminated path.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("opening /dev/net/tun: {e}"),
            ));
        }
        // SAFETY: raw is a freshly opened fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if vnet {
            flags |= libc::IFF_VNET_HDR;
        }
        ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes the ifreq we pass.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        let name: String = ifr
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8 as char)
            .collect();
        if vnet {
            let len = crate::gso::VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one int.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &len) } < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("TUNSETVNETHDRSZ {name}: {e}"),
                ));
            }
        }
        Ok(Tun {
            fd,
            name,
            offload: Offload::Off,
        })
    }

    /// What the device offloads. With anything but [`Offload::Off`] every
    /// read and write starts with a [`crate::gso::VnetHdr`].
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// Bytes of virtio-net header before each packet (0 without offloads).
    pub fn vnet_hdr_len(&self) -> usize {
        match self.offload {
            Offload::Off => 0,
            _ => crate::gso::VNET_HDR_LEN,
        }
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Read one packet; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Write one packet.
    pub fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        // SAFETY: pkt is valid for pkt.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Tun {
    /// Write one packet gathered from `bufs` (a super-packet's header and its
    /// segments' payloads, without copying them together).
    pub fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: IoSlice is ABI-compatible with iovec; every slice is valid.
        let n = unsafe {
            libc::writev(
                self.fd.as_raw_fd(),
                bufs.as_ptr().cast(),
                bufs.len() as libc::c_int,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
