//! TUN devices (`IFF_TUN | IFF_NO_PI`): one IP packet per read or write.
//!
//! Written by hand rather than with `tun-rs`: all we need is `open` +
//! `TUNSETIFF` on a thread inside a given namespace and a non-blocking fd; the
//! addresses and routes are configured by `ip` (see `link`), and tun-rs would
//! bring its async runtime and offload machinery for nothing.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// An open TUN device. The device exists while the fd is open (it is not made
/// persistent), in the namespace of the thread that created it.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
}

impl Tun {
    /// Create TUN device `name` in the calling thread's network namespace
    /// (call it inside [`crate::ns::NetNs::run`]). The fd is non-blocking.
    pub fn create(name: &str) -> io::Result<Tun> {
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
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
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
        Ok(Tun { fd, name })
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
