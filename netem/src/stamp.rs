//! Kernel receive timestamps: when a datagram entered the receiving socket's
//! queue, not when its reader woke up to take it.
//!
//! A link delivers into the receiver's socket; the reader's wake-up after that
//! (tens of µs for a tokio task on a busy 2-core VM) is the endpoint's cost,
//! paid on any network. The link's path-cost measurement and the UDP probe
//! both read one-way delays up to the kernel's stamp (`SO_TIMESTAMPNS`), so
//! the link neither compensates for the reader's wake-up nor is blamed for it
//! (docs/link.md, "Delay precision").
//!
//! The kernel stamps in `CLOCK_REALTIME`; a stamp is turned into the caller's
//! monotonic clock by its age: `now_mono − (now_real − stamp)`, both clocks
//! read right after the receive. Only a wall-clock step between the two
//! readings could skew it (by the step), and a stamp "from the future" is
//! taken as age 0.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;

/// Ask the kernel to stamp every datagram the socket receives.
pub fn enable<S: AsFd>(socket: &S) -> io::Result<()> {
    hold_key();
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// The kernel stamps datagrams as they arrive only while some socket wants
/// stamps (a static key), and turns that on from a deferred work item: for
/// a moment after the first `setsockopt` a datagram is stamped when it is
/// read instead, which is the very error this module exists to avoid (seen
/// in `the_stamp_is_the_arrival_not_the_read`). One socket held with stamps
/// for the process keeps the key on; the first call waits for it once.
pub(crate) fn hold_key() {
    static KEY: std::sync::OnceLock<Option<std::net::UdpSocket>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        // Bound to nothing in particular and never used: it only holds the key.
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        setsockopt(&s, sockopt::ReceiveTimestampns, &true).ok()?;
        std::thread::sleep(std::time::Duration::from_millis(5));
        Some(s)
    });
}

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub len: usize,
    /// None on a connected socket the kernel did not name the sender for.
    pub from: Option<SocketAddr>,
    /// Nanoseconds since the Unix epoch when the datagram entered the
    /// socket's queue; None if the socket has no stamps enabled.
    pub stamp_realtime_ns: Option<u64>,
}

impl Received {
    /// The kernel's stamp on the clock whose reading "now" is `now_ns`
    /// (taken right after the receive); `now_ns` itself without a stamp.
    pub fn arrival_on(&self, now_ns: u64) -> u64 {
        match self.stamp_realtime_ns {
            Some(stamp) => now_ns.saturating_sub(realtime_ns().saturating_sub(stamp)),
            None => now_ns,
        }
    }
}

pub(crate) fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn timespec_ns(ts: &TimeSpec) -> u64 {
    (ts.tv_sec().max(0) as u64) * 1_000_000_000 + ts.tv_nsec().max(0) as u64
}

/// `recvmsg` into `buf` with the stamp; `nonblocking` for sockets driven by
/// readiness (tokio's `async_io`: EAGAIN is `WouldBlock`).
pub fn recv<S: AsRawFd>(socket: &S, buf: &mut [u8], nonblocking: bool) -> io::Result<Received> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(TimeSpec);
    let flags = if nonblocking {
        MsgFlags::MSG_DONTWAIT
    } else {
        MsgFlags::empty()
    };
    let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut space), flags)
        .map_err(io::Error::from)?;
    let mut stamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                stamp = Some(timespec_ns(&ts));
            }
        }
    }
    let from = msg.address.as_ref().and_then(sockaddr);
    Ok(Received {
        len: msg.bytes,
        from,
        stamp_realtime_ns: stamp,
    })
}

fn sockaddr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    if let Some(v6) = a.as_sockaddr_in6() {
        return Some(SocketAddr::V6((*v6).into()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// The stamp is when the datagram arrived, not when it was read: a read
    /// 30 ms late still dates it to the send (loopback: µs).
    #[test]
    fn the_stamp_is_the_arrival_not_the_read() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let epoch = Instant::now();
        let sent = epoch.elapsed().as_nanos() as u64;
        tx.send_to(b"stamp me", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let mut buf = [0u8; 64];
        let r = recv(&rx, &mut buf, false).unwrap();
        let now = epoch.elapsed().as_nanos() as u64;
        assert_eq!(&buf[..r.len], b"stamp me");
        assert_eq!(r.from, Some(tx.local_addr().unwrap()));
        let arrival = r.arrival_on(now);
        assert!(r.stamp_realtime_ns.is_some());
        assert!(now - sent >= 30_000_000);
        // Within 5 ms of the send (it took µs), 25 ms before the read.
        assert!(
            arrival + 5_000_000 >= sent && arrival <= sent + 5_000_000,
            "{sent} {arrival}"
        );
    }

    #[test]
    fn without_stamps_the_read_time_stands() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        let r = recv(&rx, &mut buf, false).unwrap();
        assert_eq!(r.stamp_realtime_ns, None);
        assert_eq!(r.arrival_on(12345), 12345);
        let empty = recv(&rx, &mut buf, true).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
    }
}
