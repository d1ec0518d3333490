//! Random datagrams at the probe port and the QUIC port: counted or dropped,
//! never a crash or a wedge; both keep serving afterwards.

use std::time::Duration;

use quicbench_clients::udp::{probe, ProbeConfig, ProbeMode};
use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_servers::ServerOptions;
use quicbench_wire::probe::{encode, Header, Kind, HEADER_LEN};
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;
use rand::{Rng, RngCore, SeedableRng};

fn garbage(rng: &mut rand::rngs::StdRng, i: usize) -> Vec<u8> {
    let len = match i % 5 {
        0 => rng.random_range(0..HEADER_LEN),
        1 => rng.random_range(HEADER_LEN..200),
        2 => 1200,
        3 => rng.random_range(1..65_000),
        _ => rng.random_range(0..2000),
    };
    let mut d = vec![0u8; len];
    rng.fill_bytes(&mut d);
    if i % 7 == 0 && len >= HEADER_LEN {
        // Right magic, random rest: exercises the parser past the magic check.
        d[..4].copy_from_slice(b"QBP1");
    }
    if i % 11 == 0 && len > 0 {
        // Looks like a QUIC long header (Initial) with random contents.
        d[0] = 0xc0 | (d[0] & 0x0f);
        if len >= 5 {
            d[1..5].copy_from_slice(&1u32.to_be_bytes());
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_datagrams_do_not_hurt() {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let s = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let (udp, quic) = (s.addrs.udp[0], s.addrs.quic[0]);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n = 2000;
    for i in 0..n {
        let d = garbage(&mut rng, i);
        sock.send_to(&d, udp).await.unwrap();
        sock.send_to(&d, quic).await.unwrap();
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Server-only kinds and malformed requests sent to the server are garbage too.
    for kind in [Kind::EchoReply, Kind::SinkReport, Kind::SourceData] {
        let d = encode(&Header::new(kind, 1, 1, 1), &[], 64).unwrap();
        sock.send_to(&d, udp).await.unwrap();
    }
    let short_source = encode(&Header::new(Kind::SourceRequest, 1, 0, 0), &[], HEADER_LEN).unwrap();
    sock.send_to(&short_source, udp).await.unwrap();
    // An undersized report request would be an amplifier: refused.
    let small_report = encode(
        &Header::new(Kind::SinkReportRequest, 1, 0, 0),
        &[],
        HEADER_LEN,
    )
    .unwrap();
    sock.send_to(&small_report, udp).await.unwrap();

    // Still serving: a probe and an HTTP/3 fetch.
    let mut c = ProbeConfig::new(udp, ProbeMode::Echo);
    c.count = 50;
    c.interval = Duration::from_micros(200);
    c.timeout = Duration::from_millis(500);
    let r = probe(c).await.unwrap();
    assert_eq!(r.received, 50);

    let mut o = ClientOptions::new(quic, trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(10);
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut conn = client.connect().await.unwrap();
    let recs = conn.run(&[Request::bytes(100_000)]).await;
    assert!(recs[0].ok(), "{recs:?}");
    conn.close().await;

    let st = s.stats();
    // Every garbage datagram that reached the probe port was counted as such
    // (UDP on loopback does not drop at this rate, but allow for it).
    assert!(
        st.udp_garbage >= 5 && st.udp_garbage <= n as u64 + 5,
        "{st:?}"
    );
    // (A random datagram with the magic may happen to be a valid request.)
    assert!(st.udp_datagrams >= st.udp_garbage + 50, "{st:?}");
    assert_eq!(st.quic_accepted, 1);
    s.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
