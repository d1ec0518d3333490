//! When each packet entered the link: the kernel's stamp of the moment the
//! sending stack handed it to the TUN device, not the moment the relay woke
//! up and read it.
//!
//! A relay asleep until its next departure is woken by the packet; on this
//! 2-core VM that wake-up took 15-60 µs (median ~28 µs), and the relay used
//! to date the packet by its read. The path-cost compensation takes off the
//! median, but the spread stayed in every packet's delay: ping across
//! `delay 20ms` averaged 40.03-40.05 ms with its median near 40.02
//! (docs/link.md, "Delay precision").
//!
//! So each device gets a packet socket that sees what the stack transmits on
//! it (`dev_queue_xmit_nit`, right before the device's own transmit queues
//! it for the relay), filtered in the kernel to outgoing packets and their
//! first [`HEAD`] bytes, with the kernel's stamp in a memory-mapped ring
//! (`TPACKET_V2`: no system call per packet). Each packet the relay reads is
//! matched to its ring entry by length and head bytes ([`Matcher`], a
//! sans-IO core), so a packet the device dropped, or two senders racing on
//! two CPUs, cannot give a packet another's stamp. Without a match the read
//! time stands, as before.
//!
//! Written by hand: no crate here maps a packet ring for timestamps alone.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

/// Bytes of each packet the kernel copies into the ring, and compared: IP and
/// transport headers and the start of the payload (TCP sequence numbers, IP
/// IDs, QUIC's packet numbers: enough to tell packets apart).
pub const HEAD: usize = 96;
/// Ring frame: `tpacket2_hdr` and `sockaddr_ll` (48 bytes), padding, the head.
const FRAME: usize = 256;
const BLOCK: usize = 1 << 16;
const BLOCKS: usize = 16;
/// Entries kept waiting for their read. The device's own queue (500 packets
/// by default) drops beyond this.
const MAX_PENDING: usize = 1024;
/// A waiting entry this much older than a matched one was dropped by the
/// device (its queue was full) and will never be read.
const STALE_NS: u64 = 1_000_000;
const PACKET_OUTGOING: u32 = 4;
const TPACKET_V2: libc::c_int = 1;

/// One transmitted packet as the tap saw it.
#[derive(Clone, Copy)]
pub struct Sent {
    /// Kernel stamp, ns since the Unix epoch.
    pub stamp_realtime_ns: u64,
    pub len: u32,
    pub head_len: u8,
    pub head: [u8; HEAD],
}

impl Sent {
    fn matches(&self, pkt: &[u8]) -> bool {
        let h = self.head_len as usize;
        self.len as usize == pkt.len() && pkt.len() >= h && pkt[..h] == self.head[..h]
    }
}

/// Pairs packets read from a device with the tap's entries for them. The
/// entries come in transmit order and the reads in the device queue's
/// order; they differ only when senders race, so the match is nearly
/// always the first entry.
#[derive(Default)]
pub struct Matcher {
    pending: VecDeque<Sent>,
}

impl Matcher {
    pub fn push(&mut self, s: Sent) {
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(s);
    }

    /// The stamp of `pkt` (ns since the epoch), taken off the waiting list
    /// with whatever the device must have dropped before it.
    pub fn take(&mut self, pkt: &[u8]) -> Option<u64> {
        let i = self.pending.iter().position(|s| s.matches(pkt))?;
        let stamp = self.pending.remove(i)?.stamp_realtime_ns;
        while self
            .pending
            .front()
            .is_some_and(|s| s.stamp_realtime_ns.saturating_add(STALE_NS) < stamp)
        {
            self.pending.pop_front();
        }
        Some(stamp)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The tap on one device: its socket, ring and matcher.
pub struct TxTap {
    fd: OwnedFd,
    ring: NonNull<u8>,
    frames: usize,
    next: usize,
    matcher: Matcher,
}

// SAFETY: the ring is owned by this value alone (mapped in `open`, unmapped
// in `drop`); the kernel's side of it is synchronised through `tp_status`.
unsafe impl Send for TxTap {}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: v is a valid T for the length given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

impl TxTap {
    /// Tap device `dev` of the calling thread's network namespace (call it
    /// where the device was created, before it carries traffic).
    pub fn open(dev: &str) -> io::Result<TxTap> {
        let name = std::ffi::CString::new(dev)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device name has a NUL"))?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(os_err(&format!("no device {dev} to tap")));
        }
        crate::stamp::hold_key();
        // Protocol 0: nothing is delivered until the bind, after the filter
        // and the ring are in place.
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(os_err("packet socket"));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Outgoing packets only, cut to HEAD bytes; the relay's own writes
        // into the device (incoming) are refused here, in the kernel.
        let prog = [
            bpf(
                (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                0,
                0,
                (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32,
            ),
            bpf(
                (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                0,
                1,
                PACKET_OUTGOING,
            ),
            bpf((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, HEAD as u32),
            bpf((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, 0),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog) < 0 {
            return Err(os_err("packet socket filter"));
        }
        if setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V2) < 0 {
            return Err(os_err("TPACKET_V2"));
        }
        let req = libc::tpacket_req {
            tp_block_size: BLOCK as libc::c_uint,
            tp_block_nr: BLOCKS as libc::c_uint,
            tp_frame_size: FRAME as libc::c_uint,
            tp_frame_nr: (BLOCK / FRAME * BLOCKS) as libc::c_uint,
        };
        if setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req) < 0 {
            return Err(os_err("packet ring"));
        }
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK * BLOCKS,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mapping the packet ring"));
        }
        let tap = TxTap {
            fd,
            ring: NonNull::new(p.cast()).ok_or_else(|| os_err("mapping the packet ring"))?,
            frames: BLOCK / FRAME * BLOCKS,
            next: 0,
            matcher: Matcher::default(),
        };
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binds to a valid sockaddr_ll of the given length.
        if unsafe {
            libc::bind(
                tap.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        } < 0
        {
            return Err(os_err(&format!("binding the tap to {dev}")));
        }
        Ok(tap)
    }

    /// Move what the kernel put in the ring to the matcher.
    fn drain(&mut self) {
        loop {
            // SAFETY: frame `next` lies inside the mapping (frames never
            // straddle blocks: BLOCK is a multiple of FRAME), and its header
            // is only read once the kernel has handed it over.
            unsafe {
                let f = self.ring.as_ptr().add(self.next * FRAME);
                let hdr = f.cast::<libc::tpacket2_hdr>();
                let status = std::ptr::read_volatile(std::ptr::addr_of!((*hdr).tp_status));
                if status & libc::TP_STATUS_USER == 0 {
                    return;
                }
                fence(Ordering::Acquire);
                let h = std::ptr::read_volatile(hdr);
                let take = (h.tp_snaplen as usize).min(HEAD);
                let mut s = Sent {
                    stamp_realtime_ns: h.tp_sec as u64 * 1_000_000_000 + h.tp_nsec as u64,
                    len: h.tp_len,
                    head_len: take as u8,
                    head: [0; HEAD],
                };
                if (h.tp_mac as usize) + take <= FRAME {
                    std::ptr::copy_nonoverlapping(
                        f.add(h.tp_mac as usize),
                        s.head.as_mut_ptr(),
                        take,
                    );
                    self.matcher.push(s);
                }
                fence(Ordering::Release);
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*hdr).tp_status), 0);
            }
            self.next = (self.next + 1) % self.frames;
        }
    }

    /// When `pkt` (an IP packet just read from the device) was handed to
    /// the device, on the clock whose reading after the read is `now_ns`;
    /// None when the tap has no entry for it. Call right after the read.
    pub fn arrival(&mut self, pkt: &[u8], now_ns: u64) -> Option<u64> {
        let real_now = crate::stamp::realtime_ns();
        self.drain();
        let stamp = self.matcher.take(pkt)?;
        Some(now_ns.saturating_sub(real_now.saturating_sub(stamp)))
    }
}

fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl Drop for TxTap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`.
        unsafe {
            libc::munmap(self.ring.as_ptr().cast(), BLOCK * BLOCKS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(stamp: u64, pkt: &[u8]) -> Sent {
        let take = pkt.len().min(HEAD);
        let mut head = [0; HEAD];
        head[..take].copy_from_slice(&pkt[..take]);
        Sent {
            stamp_realtime_ns: stamp,
            len: pkt.len() as u32,
            head_len: take as u8,
            head,
        }
    }

    fn pkt(id: u8, len: usize) -> Vec<u8> {
        let mut p = vec![0x45; len];
        p[4] = id;
        p
    }

    #[test]
    fn reads_in_transmit_order_take_their_own_stamps() {
        let mut m = Matcher::default();
        for i in 0..10u8 {
            m.push(sent(1_000 + i as u64, &pkt(i, 200)));
        }
        for i in 0..10u8 {
            assert_eq!(m.take(&pkt(i, 200)), Some(1_000 + i as u64));
        }
        assert_eq!(m.pending(), 0);
    }

    #[test]
    fn racing_senders_and_unknown_packets_get_no_other_packets_stamp() {
        let mut m = Matcher::default();
        m.push(sent(10, &pkt(1, 100)));
        m.push(sent(11, &pkt(2, 100)));
        // Queued in the other order by two CPUs.
        assert_eq!(m.take(&pkt(2, 100)), Some(11));
        assert_eq!(m.take(&pkt(1, 100)), Some(10));
        // Same head, other length; a packet the tap never saw.
        m.push(sent(12, &pkt(3, 100)));
        assert_eq!(m.take(&pkt(3, 101)), None);
        assert_eq!(m.take(&pkt(4, 100)), None);
        assert_eq!(m.take(&pkt(3, 100)), Some(12));
    }

    #[test]
    fn only_the_head_is_compared_and_long_packets_match() {
        let mut m = Matcher::default();
        let mut a = pkt(1, 1500);
        m.push(sent(5, &a));
        a[HEAD + 10] ^= 0xff; // beyond the head: not compared
        assert_eq!(m.take(&a), Some(5));
    }

    #[test]
    fn entries_the_device_dropped_are_forgotten() {
        let mut m = Matcher::default();
        m.push(sent(1_000, &pkt(1, 100))); // dropped by the device: never read
        m.push(sent(1_500, &pkt(2, 100))); // racing: read later
        m.push(sent(1_000 + STALE_NS + 1, &pkt(3, 100)));
        assert_eq!(m.take(&pkt(3, 100)), Some(1_000 + STALE_NS + 1));
        assert_eq!(
            m.pending(),
            1,
            "the stale entry is gone, the recent one kept"
        );
        assert_eq!(m.take(&pkt(2, 100)), Some(1_500));
    }

    /// On a real device: a datagram read 30 ms after it was sent is dated
    /// to its send, and what the relay writes into the device is not tapped.
    #[test]
    fn a_packet_read_late_is_dated_to_its_transmission() {
        if !crate::test_gate::links("a_packet_read_late_is_dated_to_its_transmission") {
            return;
        }
        let ns = crate::ns::NetNs::with_label("tap-test").expect("namespace");
        let (tun, mut tap) = ns.run(|| {
            let tun = crate::tun::Tun::create("qbtap").expect("TUN");
            let tap = TxTap::open("qbtap").expect("tap");
            (tun, tap)
        });
        crate::link::ip_batch(
            &ns,
            "link set dev qbtap addrgenmode none\naddr add 198.18.5.1/32 dev qbtap\n\
             link set dev qbtap up\nroute add 198.18.5.0/24 dev qbtap\n",
        )
        .expect("addresses");
        let clock = crate::relay::Clock::new();
        let (sent_at, sock) = ns.run(|| {
            let s = std::net::UdpSocket::bind("198.18.5.1:0").expect("bind");
            let t = clock.now_ns();
            s.send_to(b"dated at the device", "198.18.5.2:9")
                .expect("send");
            (t, s)
        });
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut buf = [0u8; 2048];
        let mut n = tun
            .recv(&mut buf)
            .expect("the datagram waits in the device");
        // Whatever the stack sent when the device came up goes first.
        while !buf[..n].ends_with(b"dated at the device") {
            tap.arrival(&buf[..n], clock.now_ns());
            n = tun
                .recv(&mut buf)
                .expect("the datagram waits in the device");
        }
        let now = clock.now_ns();
        let at = tap.arrival(&buf[..n], now).expect("the tap saw it");
        assert!(
            at >= sent_at && at - sent_at < 5_000_000,
            "dated {} µs after its send, read {} µs after it",
            (at as i64 - sent_at as i64) / 1000,
            (now - sent_at) / 1000
        );
        assert!(now - at > 25_000_000, "the read came 30 ms later");
        // Written into the device (as the relay delivers): incoming, not tapped.
        let mut back = buf[..n].to_vec();
        back[12..16].copy_from_slice(&[198, 18, 5, 2]);
        back[16..20].copy_from_slice(&[198, 18, 5, 1]);
        back[20..24].copy_from_slice(&[buf[22], buf[23], buf[20], buf[21]]);
        // (Swapping addresses and ports leaves both checksums valid.)
        tun.send(&back).expect("write into the device");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        let got = sock
            .recv(&mut buf)
            .expect("the written datagram is delivered");
        assert_eq!(&buf[..got], b"dated at the device");
        tap.drain();
        assert_eq!(
            tap.matcher.pending(),
            0,
            "the relay's own writes are not tapped"
        );
    }

    #[test]
    fn the_waiting_list_is_bounded() {
        let mut m = Matcher::default();
        for i in 0..(MAX_PENDING as u64 + 10) {
            let mut p = pkt(0, 100);
            p[8..16].copy_from_slice(&i.to_be_bytes());
            m.push(sent(i, &p));
        }
        assert_eq!(m.pending(), MAX_PENDING);
        let mut first = pkt(0, 100);
        first[8..16].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(m.take(&first), None, "the oldest made room");
    }
}
