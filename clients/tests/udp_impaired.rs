//! Datagrams through an impaired user-space relay on loopback, with a
//! deterministic impairment pattern, so expectations are exact:
//! the UDP probe's loss / duplicate / reorder accounting against ground truth,
//! and HTTP/3 recovering from loss and surviving a NAT rebinding (the relay
//! changes its outside port mid-transfer: passive migration on the server).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quicbench_clients::udp::{probe, ProbeConfig, ProbeMode};
use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;
use tokio::net::UdpSocket;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Forward,
    Drop,
    Duplicate,
    /// Hold this datagram and send it right after the next one (a swap).
    Hold,
}

/// What to do with the n-th datagram (from 0) in a direction.
type Rule = fn(u64) -> Action;

struct Relay {
    addr: SocketAddr,
    /// The relay's outside port changes after this many upstream datagrams (0: never).
    rebinds: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client at a time; `rebind_after`: upstream datagram count after which
/// the outside socket is replaced (a NAT rebinding), 0 for never.
async fn relay(server: SocketAddr, up: Rule, down: Rule, rebind_after: u64) -> Relay {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let rebinds = Arc::new(AtomicU64::new(0));
    let r2 = rebinds.clone();
    let task = tokio::spawn(async move {
        let mut back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut client: Option<SocketAddr> = None;
        let (mut n_up, mut n_down) = (0u64, 0u64);
        let mut held_up: Option<Vec<u8>> = None;
        let mut held_down: Option<Vec<u8>> = None;
        let mut b1 = vec![0u8; 65_536];
        let mut b2 = vec![0u8; 65_536];
        loop {
            tokio::select! {
                r = front.recv_from(&mut b1) => {
                    let Ok((len, from)) = r else { continue };
                    client = Some(from);
                    let d = &b1[..len];
                    let act = up(n_up);
                    n_up += 1;
                    if rebind_after > 0 && n_up == rebind_after {
                        back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                        r2.fetch_add(1, Ordering::Relaxed);
                    }
                    forward(&back, d, act, &mut held_up, server).await;
                }
                r = back.recv_from(&mut b2) => {
                    let Ok((len, _)) = r else { continue };
                    let Some(c) = client else { continue };
                    let act = down(n_down);
                    n_down += 1;
                    forward(&front, &b2[..len], act, &mut held_down, c).await;
                }
            }
        }
    });
    Relay {
        addr,
        rebinds,
        task,
    }
}

async fn forward(
    sock: &UdpSocket,
    d: &[u8],
    act: Action,
    held: &mut Option<Vec<u8>>,
    to: SocketAddr,
) {
    match act {
        Action::Drop => {}
        Action::Hold => {
            // Two holds in a row: release the older first.
            if let Some(h) = held.replace(d.to_vec()) {
                let _ = sock.send_to(&h, to).await;
            }
            return;
        }
        Action::Forward => {
            let _ = sock.send_to(d, to).await;
        }
        Action::Duplicate => {
            let _ = sock.send_to(d, to).await;
            let _ = sock.send_to(d, to).await;
        }
    }
    if let Some(h) = held.take() {
        let _ = sock.send_to(&h, to).await;
    }
}

fn forward_all(_: u64) -> Action {
    Action::Forward
}

async fn servers() -> (
    quicbench_servers::Servers,
    Vec<rustls_pki_types::CertificateDer<'static>>,
) {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    (
        quicbench_servers::start(ServerOptions::ephemeral(id))
            .await
            .unwrap(),
        trust,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_counts_loss_exactly() {
    let (s, _) = servers().await;
    // Every 10th request is lost on the way up; every 25th reply on the way down.
    let r = relay(
        s.addrs.udp[0],
        |n| {
            if n % 10 == 9 {
                Action::Drop
            } else {
                Action::Forward
            }
        },
        |n| {
            if n % 25 == 24 {
                Action::Drop
            } else {
                Action::Forward
            }
        },
        0,
    )
    .await;
    let mut c = ProbeConfig::new(r.addr, ProbeMode::Echo);
    c.count = 1000;
    c.interval = Duration::from_micros(200);
    c.timeout = Duration::from_millis(300);
    let rep = probe(c).await.unwrap();
    // 900 requests arrive; of their 900 replies, every 25th (36) is dropped.
    assert_eq!(
        (rep.sent, rep.received, rep.lost),
        (1000, 864, 136),
        "{rep:?}"
    );
    assert!((rep.loss_rate - 0.136).abs() < 1e-12);
    assert_eq!((rep.duplicates, rep.reordered), (Some(0), Some(0)));
    assert_eq!(rep.rtt.unwrap().count, 864);

    // Sink: the server counts what got past the relay.
    let r = relay(
        s.addrs.udp[0],
        |n| {
            if n % 4 == 3 && n < 400 {
                Action::Drop
            } else {
                Action::Forward
            }
        },
        forward_all,
        0,
    )
    .await;
    let mut c = ProbeConfig::new(r.addr, ProbeMode::Sink);
    c.count = 400;
    c.interval = Duration::from_micros(500);
    c.timeout = Duration::from_millis(200);
    let rep = probe(c).await.unwrap();
    assert_eq!(
        (rep.sent, rep.received, rep.lost),
        (400, 300, 100),
        "{rep:?}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_counts_duplicates_and_reordering_exactly() {
    let (s, _) = servers().await;
    // Downstream: every 50th datagram duplicated, every 20th (from the 5th)
    // swapped with its successor; the patterns never touch the same datagram.
    let r = relay(
        s.addrs.udp[0],
        forward_all,
        |n| match n {
            n if n % 50 == 0 => Action::Duplicate,
            n if n % 20 == 5 => Action::Hold,
            _ => Action::Forward,
        },
        0,
    )
    .await;
    let mut c = ProbeConfig::new(r.addr, ProbeMode::Source);
    c.count = 1000;
    c.interval = Duration::from_micros(500);
    c.timeout = Duration::from_millis(300);
    let rep = probe(c).await.unwrap();
    assert_eq!(
        (rep.sent, rep.received, rep.lost),
        (1000, 1000, 0),
        "{rep:?}"
    );
    assert_eq!(rep.duplicates, Some(20));
    assert_eq!(rep.reordered, Some(50));
    assert!(rep.jitter_us.unwrap() >= 0.0);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_recovers_from_loss() {
    let (s, trust) = servers().await;
    // 2 % loss each way, in a fixed pattern (handshake packets included).
    let r = relay(
        s.addrs.quic[0],
        |n| {
            if n % 50 == 7 {
                Action::Drop
            } else {
                Action::Forward
            }
        },
        |n| {
            if n % 50 == 31 {
                Action::Drop
            } else {
                Action::Forward
            }
        },
        0,
    )
    .await;
    let mut o = ClientOptions::new(r.addr, trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(30);
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let recs = c
        .run(&[
            Request::bytes(5 << 20),
            Request::bytes(100_000),
            Request::get("/"),
        ])
        .await;
    assert!(recs.iter().all(|r| r.ok()), "{recs:?}");
    assert_eq!((recs[0].bytes, recs[0].verified), (5 << 20, Some(true)));
    assert!(c.as_h3().unwrap().quic().stats().path.lost_packets > 0);
    c.close().await;
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_survives_nat_rebinding() {
    let (s, trust) = servers().await;
    // The relay's outside port changes after 300 upstream datagrams: the server
    // sees the connection come from a new address mid-transfer.
    let r = relay(s.addrs.quic[0], forward_all, forward_all, 300).await;
    let mut o = ClientOptions::new(r.addr, trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(30);
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let recs = c.run(&[Request::bytes(20 << 20)]).await;
    assert!(recs[0].ok(), "{recs:?}");
    assert_eq!((recs[0].bytes, recs[0].verified), (20 << 20, Some(true)));
    assert_eq!(
        r.rebinds.load(Ordering::Relaxed),
        1,
        "the rebinding happened"
    );
    // Still one connection on the server.
    assert_eq!(s.stats().quic_accepted, 1);
    c.close().await;
    s.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
