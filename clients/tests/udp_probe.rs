//! UDP probe client against our probe server over real sockets on 127.0.0.1.

use std::time::Duration;

use quicbench_clients::udp::{probe, ProbeConfig, ProbeMode};
use quicbench_servers::{ServerOptions, Servers};
use quicbench_wire::tls::Identity;

async fn server() -> Servers {
    quicbench_servers::start(ServerOptions::ephemeral(Identity::generate(&[]).unwrap()))
        .await
        .unwrap()
}

fn cfg(s: &Servers, mode: ProbeMode, count: u64) -> ProbeConfig {
    let mut c = ProbeConfig::new(s.addrs.udp[0], mode);
    c.count = count;
    c.interval = Duration::from_micros(500);
    c.size = 300;
    c.timeout = Duration::from_millis(300);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_loopback() {
    let s = server().await;
    let t = std::time::Instant::now();
    let r = probe(cfg(&s, ProbeMode::Echo, 500)).await.unwrap();
    // Paced: 500 datagrams every 0.5 ms take about 250 ms (not a timing assertion
    // on the link, only that pacing did not collapse into a burst).
    assert!(
        t.elapsed() >= Duration::from_millis(240),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        (r.sent, r.received, r.lost, r.loss_rate),
        (500, 500, 0, 0.0)
    );
    assert_eq!((r.duplicates, r.reordered), (Some(0), Some(0)));
    let rtt = r.rtt.clone().unwrap();
    assert_eq!(rtt.count, 500);
    assert!(
        rtt.min_us > 0.0 && rtt.min_us <= rtt.p50_us && rtt.p50_us <= rtt.max_us,
        "{rtt:?}"
    );
    let (up, down) = (r.owd_up.clone().unwrap(), r.owd_down.clone().unwrap());
    // One-way delays are parts of the round trip (same clock on both ends).
    assert!(
        up.min_us + down.min_us <= rtt.max_us,
        "{up:?} {down:?} {rtt:?}"
    );
    assert!(r.jitter_us.unwrap() >= 0.0);
    assert_eq!(r.samples_us.len(), 500);
    assert!(r.histogram_v2_hex.is_some());
    let st = s.stats();
    assert_eq!(st.udp_datagrams, 500);
    assert_eq!(st.udp_garbage, 0);
    // The report serialises (floats may differ in the last bit through JSON).
    let j = serde_json::to_string(&r).unwrap();
    let back: quicbench_clients::udp::ProbeReport = serde_json::from_str(&j).unwrap();
    assert_eq!(
        (back.sent, back.received, back.mode),
        (r.sent, r.received, r.mode)
    );
    assert_eq!(
        (back.samples_us, back.histogram_v2_hex),
        (r.samples_us, r.histogram_v2_hex)
    );
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_report() {
    let s = server().await;
    let r = probe(cfg(&s, ProbeMode::Sink, 300)).await.unwrap();
    assert_eq!((r.sent, r.received, r.lost), (300, 300, 0));
    assert_eq!(r.rtt, None);
    // Two sessions from one client are counted apart.
    let mut c = cfg(&s, ProbeMode::Sink, 7);
    c.session = 42;
    let r = probe(c).await.unwrap();
    assert_eq!((r.sent, r.received), (7, 7));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_mode() {
    let s = server().await;
    let r = probe(cfg(&s, ProbeMode::Source, 400)).await.unwrap();
    assert_eq!((r.sent, r.received, r.lost), (400, 400, 0));
    assert_eq!((r.duplicates, r.reordered), (Some(0), Some(0)));
    assert_eq!(r.owd_down.clone().unwrap().count, 400);
    assert!(r.jitter_us.is_some());
    assert_eq!(r.rtt, None);
    // Bounds are checked before anything is sent.
    let mut c = cfg(&s, ProbeMode::Source, 2_000_000);
    c.interval = Duration::from_micros(1);
    assert!(probe(c).await.is_err());
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_means_total_loss_not_an_error() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    drop(sock);
    let mut c = ProbeConfig::new(addr, ProbeMode::Echo);
    c.count = 20;
    c.interval = Duration::from_millis(1);
    c.timeout = Duration::from_millis(100);
    let r = probe(c).await.unwrap();
    assert_eq!((r.sent, r.received, r.lost, r.loss_rate), (20, 0, 20, 1.0));
    assert_eq!(r.rtt, None);
    // Every probe is bounded in count and time before anything is sent.
    let mut c = ProbeConfig::new(addr, ProbeMode::Echo);
    c.count = 20_000_000;
    assert!(probe(c.clone()).await.is_err());
    c.count = 1000;
    c.interval = Duration::from_secs(1);
    assert!(probe(c.clone()).await.is_err());
    c.count = 0;
    assert!(probe(c).await.is_err());
    let mut c = ProbeConfig::new(addr, ProbeMode::Source);
    c.count = 5;
    c.timeout = Duration::from_millis(100);
    assert!(probe(c).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_source_over_ipv6_loopback() {
    let mut so = ServerOptions::ephemeral(Identity::generate(&[]).unwrap());
    so.listen = vec!["::1".parse().unwrap()];
    let s = quicbench_servers::start(so).await.unwrap();
    let r = probe(cfg(&s, ProbeMode::Echo, 100)).await.unwrap();
    assert_eq!((r.sent, r.received), (100, 100));
    let r = probe(cfg(&s, ProbeMode::Source, 100)).await.unwrap();
    assert_eq!((r.sent, r.received), (100, 100));
    s.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();

/// One-way delays end when a datagram entered the receiving socket (the
/// kernel's stamp), not when its reader woke up: with the server's runtime
/// held for 80 ms when the request arrives, the up delay stays at loopback's
/// µs and the hold shows in the round trip only.
#[test]
fn one_way_delays_end_in_the_socket_not_at_the_reader() {
    let srv_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = srv_rt.block_on(server());
    let addr = s.addrs.udp[0];
    let handle = srv_rt.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let driver = std::thread::spawn(move || {
        srv_rt.block_on(async move {
            let _ = stop_rx.await;
            s.shutdown(Duration::from_millis(200)).await;
        })
    });
    // Hold the server's only thread: it reads nothing for 80 ms.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = held_tx.send(());
        std::thread::sleep(Duration::from_millis(80));
    });
    held_rx.recv().unwrap();
    let mut c = ProbeConfig::new(addr, ProbeMode::Echo);
    c.count = 1;
    c.timeout = Duration::from_secs(2);
    let r = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(probe(c))
        .unwrap();
    let _ = stop_tx.send(());
    driver.join().unwrap();
    assert_eq!(r.received, 1, "{r:?}");
    let (rtt, up, down) = (
        r.rtt.clone().unwrap(),
        r.owd_up.clone().unwrap(),
        r.owd_down.clone().unwrap(),
    );
    assert!(
        rtt.p50_us >= 60_000.0,
        "the hold is in the round trip: {rtt:?}"
    );
    assert!(
        up.p50_us < 20_000.0,
        "the up delay ends in the socket: {up:?}"
    );
    assert!(down.p50_us < 20_000.0, "{down:?}");
}
