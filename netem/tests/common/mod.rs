//! Shared test helpers: capability check, echo servers in a namespace.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use quicbench_netem::{Link, LinkConfig, NetNs};

pub mod behaviours;
pub mod nat;

/// A UDP socket on `ip` in the client namespace (200 ms read timeout).
pub fn client_udp(link: &Link, ip: std::net::IpAddr) -> UdpSocket {
    let s = link
        .client_ns()
        .run(|| UdpSocket::bind(SocketAddr::new(ip, 0)))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// True (after a loud message) when links cannot be built for `test` here,
/// or when it already ran in a child user namespace: the caller returns.
pub fn skip(test: &str) -> bool {
    !quicbench_netem::test_gate::links(test)
}

pub fn userspace(mut cfg: LinkConfig) -> Link {
    cfg.backend = quicbench_netem::Backend::UserSpace;
    Link::build(cfg).expect("building the link")
}

/// A UDP server in `ns` that answers each datagram with
/// `"<source address>|" + the datagram`, until `stop` is set (bounded by `limit`).
pub struct UdpEcho {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

impl UdpEcho {
    pub fn start(ns: &NetNs, ip: std::net::IpAddr) -> UdpEcho {
        let sock = ns.run(|| UdpSocket::bind(SocketAddr::new(ip, 0))).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let join = std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(120);
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) && Instant::now() < limit {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let mut out = format!("{from}|").into_bytes();
                        out.extend_from_slice(&buf[..n]);
                        let _ = sock.send_to(&out, from);
                    }
                    Err(_) => continue,
                }
            }
            Ok(())
        });
        UdpEcho {
            addr,
            stop,
            join: Some(join),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Send `msg` and wait for the echo; returns (source the server saw, payload).
pub fn udp_roundtrip(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<(String, Vec<u8>)> {
    udp_roundtrip_within(sock, to, msg, Duration::from_secs(2))
}

/// As [`udp_roundtrip`], giving up after `limit`.
pub fn udp_roundtrip_within(
    sock: &UdpSocket,
    to: SocketAddr,
    msg: &[u8],
    limit: Duration,
) -> Option<(String, Vec<u8>)> {
    sock.send_to(msg, to).ok()?;
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let i = buf[..n].iter().position(|b| *b == b'|')?;
            if &buf[i + 1..n] == msg {
                return Some((
                    String::from_utf8_lossy(&buf[..i]).into_owned(),
                    buf[i + 1..n].to_vec(),
                ));
            }
        }
    }
    None
}

/// A TCP server in `ns` that, per connection, reads a 8-byte big-endian length
/// N, then sends N bytes back, then reads until EOF and reports bytes read.
pub fn tcp_server(ns: &NetNs, ip: std::net::IpAddr) -> (SocketAddr, JoinHandle<u64>) {
    let l = ns
        .run(|| TcpListener::bind(SocketAddr::new(ip, 0)))
        .unwrap();
    let addr = l.local_addr().unwrap();
    let j = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut len = [0u8; 8];
        s.read_exact(&mut len).unwrap();
        let n = u64::from_be_bytes(len);
        let chunk = vec![0x5au8; 1 << 16];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..k]).unwrap();
            left -= k as u64;
        }
        let mut got = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got += k as u64,
                Err(e) => panic!("server read: {e}"),
            }
        }
        got
    });
    (addr, j)
}

/// Client side of [`tcp_server`]: ask for `down` bytes, receive them, send `up`
/// bytes. Returns (download duration, upload duration).
pub fn tcp_client(ns: &NetNs, to: SocketAddr, down: u64, up: u64) -> (Duration, Duration) {
    let mut s = ns
        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let t0 = Instant::now();
    s.write_all(&down.to_be_bytes()).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    while got < down {
        let k = s.read(&mut buf).unwrap();
        assert!(k > 0, "server closed early after {got} of {down} bytes");
        assert!(buf[..k].iter().all(|b| *b == 0x5a), "payload damaged");
        got += k as u64;
    }
    let t_down = t0.elapsed();
    let t1 = Instant::now();
    let chunk = vec![0xa5u8; 1 << 16];
    let mut left = up;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..k]).unwrap();
        left -= k as u64;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // Wait for the server's close so the upload is really through.
    let _ = s.read(&mut buf);
    (t_down, t1.elapsed())
}

/// Quantile of a sorted slice.
pub fn q(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
