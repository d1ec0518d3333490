//! TCP side of the `conns` workload: HTTP/1.1 keep-alive connections to the
//! cleartext server, each bound to one of the client addresses (with
//! `IP_BIND_ADDRESS_NO_PORT`, so the kernel picks the source port at connect
//! time by the whole 4-tuple, not per address at bind time).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The request sent on every connection (once when established, once after the hold).
pub const REQUEST: &[u8] = b"GET /bytes/0 HTTP/1.1\r\nHost: conns\r\n\r\n";

/// Open one connection from `src`, send [`REQUEST`], read a `200` head. On
/// failure, a short reason (the kind is what gets counted).
pub async fn establish(
    src: Ipv4Addr,
    server: SocketAddr,
    limit: Duration,
    cc: quicbench_wire::CongestionControl,
) -> Result<(TcpStream, Duration), String> {
    let t0 = Instant::now();
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {}", errno_name(&e)))?;
    quicbench_wire::transport::set_tcp_congestion(&sock, cc).map_err(|e| e.to_string())?;
    bind_no_port(&sock);
    sock.bind(SocketAddr::new(src.into(), 0))
        .map_err(|e| format!("bind: {}", errno_name(&e)))?;
    let work = async {
        let mut s = sock
            .connect(server)
            .await
            .map_err(|e| format!("connect: {}", errno_name(&e)))?;
        let _ = s.set_nodelay(true);
        exchange(&mut s).await?;
        Ok::<_, String>(s)
    };
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(s)) => Ok((s, t0.elapsed())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}

/// [`establish`], tagged with the address index (for the establishment loop).
pub async fn establish_indexed(
    a: usize,
    src: Ipv4Addr,
    server: SocketAddr,
    limit: Duration,
    cc: quicbench_wire::CongestionControl,
) -> (usize, Result<(TcpStream, Duration), String>) {
    (a, establish(src, server, limit, cc).await)
}

/// One request/response on an open connection: the liveness check.
pub async fn exchange(s: &mut TcpStream) -> Result<(), String> {
    s.write_all(REQUEST)
        .await
        .map_err(|e| format!("write: {}", errno_name(&e)))?;
    let mut buf = [0u8; 1024];
    let mut have = 0usize;
    loop {
        if have == buf.len() {
            return Err("response head over 1 KiB".into());
        }
        let n = s
            .read(&mut buf[have..])
            .await
            .map_err(|e| format!("read: {}", errno_name(&e)))?;
        if n == 0 {
            return Err("closed by the server".into());
        }
        have += n;
        if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
            let head = &buf[..end];
            if !head.starts_with(b"HTTP/1.1 200") {
                let line = head.split(|b| *b == b'\r').next().unwrap_or(&[]);
                return Err(format!(
                    "answer {:?}",
                    String::from_utf8_lossy(line)
                        .chars()
                        .take(40)
                        .collect::<String>()
                ));
            }
            // `/bytes/0`: no body follows.
            return Ok(());
        }
    }
}

/// A liveness check with a time limit.
pub async fn check(s: &mut TcpStream, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, exchange(s)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {limit:?}")),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `IP_BIND_ADDRESS_NO_PORT`: without it, `bind(addr, 0)` reserves a port for
/// the address alone, and one address runs out at ~64k sockets whatever the
/// destination. Best effort: without it the run still works up to that.
fn bind_no_port(sock: &TcpSocket) {
    let _ = quicbench_wire::sockinfo::set_int_opt(
        sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_BIND_ADDRESS_NO_PORT,
        1,
    );
}

/// `EADDRNOTAVAIL`, `ECONNREFUSED`...: the errno's name, else the error text.
pub fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        None => e.kind().to_string(),
    }
}
