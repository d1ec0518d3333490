//! The transport's view of each connection, from both ends, over loopback:
//! the client's records (`Connection::transport`) and the server's
//! (`ServerOptions::record_transport`), sampled during a long transfer.

use std::time::Duration;

use quicbench_clients::sockinfo::{Side, Snapshot, TransportRecord};
use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;

const SIZE: u64 = 32 << 20;

fn in_time_order(r: &TransportRecord) -> bool {
    r.samples.windows(2).all(|w| w[0].t_ns < w[1].t_ns)
}

/// The server's record of the connection whose client port is `port`.
fn server_record(all: &[TransportRecord], port: u16) -> Option<&TransportRecord> {
    all.iter().find(|r| r.peer.map(|p| p.port()) == Some(port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_record_each_connection() {
    let id = Identity::generate(&[]).expect("identity");
    let mut so = ServerOptions::ephemeral(id.clone());
    so.record_transport = true;
    so.transport_sample = Some(Duration::from_millis(10));
    let srv = quicbench_servers::start(so).await.expect("servers");
    let ctx = srv.ctx.clone();
    let mut client_records = Vec::new();
    for proto in [Protocol::H10, Protocol::H11, Protocol::H2, Protocol::H3] {
        let addr = match proto {
            Protocol::H10 | Protocol::H11 => srv.addrs.http[0],
            Protocol::H3 => srv.addrs.quic[0],
            _ => srv.addrs.tls[0],
        };
        let mut o = ClientOptions::new(addr, id.trust_anchors());
        o.transport_sample = Some(Duration::from_millis(10));
        let c = Client::new(proto, o).expect("client");
        let mut conn = c.connect().await.expect("connect");
        let recs = conn.run(&[Request::bytes(SIZE)]).await;
        assert!(recs[0].ok(), "{proto:?}: {:?}", recs[0]);
        let info = conn.info().clone();
        let live = conn.transport();
        conn.close().await;
        assert_eq!(live.len(), 1, "{proto:?}");
        let r = &live[0];
        assert_eq!(r.side, Side::Client);
        assert_eq!(r.conn_id, Some(info.conn_id));
        assert!(in_time_order(r), "{proto:?}");
        assert!(
            r.samples.len() >= 2,
            "{proto:?}: {} samples",
            r.samples.len()
        );
        assert!(r.samples.iter().all(|s| s.cwnd > 0), "{proto:?}");
        match r.end.as_ref().expect("end snapshot") {
            Snapshot::Tcp(t) => {
                assert_eq!(r.transport, "tcp");
                assert!(t.bytes_received.unwrap_or(0) >= SIZE, "{proto:?}: {t:?}");
                assert!(t.segs_out.unwrap_or(0) > 0);
                // What ConnInfo says ran is what the socket says.
                assert!(info.congestion_control.is_some());
                assert_eq!(r.congestion(), info.congestion_control.as_deref());
                let o = r.sockopts.as_ref().expect("sockopts");
                assert_eq!(o.nodelay, Some(true));
            }
            Snapshot::Quic(q) => {
                assert_eq!(r.transport, "quic");
                assert!(q.udp_rx_bytes >= SIZE, "{q:?}");
                assert!(q.sent_packets > 0 && q.cwnd > 0 && q.srtt_us > 0);
                assert!(q.current_mtu >= 1200);
            }
        }
        let port = info.local.map(|a| a.port()).unwrap_or(0);
        client_records.push((proto, port));
    }
    srv.shutdown(Duration::from_secs(1)).await;
    let server = ctx.transport_records();
    for (proto, port) in client_records {
        let r = server_record(&server, port)
            .unwrap_or_else(|| panic!("{proto:?}: no server record for port {port}"));
        assert_eq!(r.side, Side::Server);
        assert!(in_time_order(r), "{proto:?}");
        assert!(!r.samples.is_empty(), "{proto:?}");
        // The server sent the body: its window and counters.
        match r.end.as_ref().expect("server end snapshot") {
            Snapshot::Tcp(t) => {
                assert!(r.closed, "{proto:?}: closed");
                // An HTTP/1.0 server closes as soon as it has handed the
                // response to the kernel: the snapshot at its close has the
                // tail unsent or in flight.
                let in_flight = u64::from(t.unacked) * u64::from(t.snd_mss)
                    + u64::from(t.notsent_bytes.unwrap_or(0));
                assert!(
                    t.bytes_acked.unwrap_or(0) + in_flight >= SIZE,
                    "{proto:?}: {t:?}"
                );
                if proto != Protocol::H10 {
                    assert!(t.bytes_acked.unwrap_or(0) >= SIZE, "{proto:?}: {t:?}");
                }
                assert!(t.snd_cwnd > 0);
                assert!(r.congestion().is_some());
            }
            Snapshot::Quic(q) => {
                assert!(q.udp_tx_bytes >= SIZE, "{q:?}");
                assert!(q.cwnd > 0 && q.sent_packets > 0);
            }
        }
        let peak = r.samples.iter().map(|s| s.cwnd).max().unwrap_or(0);
        assert!(peak > 0, "{proto:?}");
    }
}

#[tokio::test]
async fn without_sampling_there_is_still_an_end_snapshot() {
    let id = Identity::generate(&[]).expect("identity");
    let srv = quicbench_servers::start(ServerOptions::ephemeral(id.clone()))
        .await
        .expect("servers");
    let c = Client::new(
        Protocol::H11,
        ClientOptions::new(srv.addrs.http[0], id.trust_anchors()),
    )
    .expect("client");
    let mut conn = c.connect().await.expect("connect");
    let recs = conn.run(&[Request::bytes(1 << 20)]).await;
    assert!(recs[0].ok());
    let t = conn.transport();
    assert_eq!(t.len(), 1);
    assert!(t[0].samples.is_empty());
    assert_eq!(t[0].sample_period_ms, 0.0);
    assert!(!t[0].closed);
    assert!(matches!(t[0].end, Some(Snapshot::Tcp(_))));
    conn.close().await;
    // Not asked for: the server kept nothing.
    assert!(srv.transport().is_empty());
    srv.shutdown(Duration::from_secs(1)).await;
}

/// The cost of sampling: loopback fetch times of 100 MiB with and without a
/// 10 ms sampler on both ends (numbers for the record, no assertion). Run:
/// `cargo test -p quicbench-clients --test transport_info -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check: run with --ignored --nocapture"]
async fn sampling_cost_on_loopback() {
    const N: u64 = 100 << 20;
    const RUNS: usize = 9;
    let id = Identity::generate(&[]).expect("identity");
    for proto in [Protocol::H11, Protocol::H2, Protocol::H3] {
        for sample in [None, Some(Duration::from_millis(10))] {
            let mut so = ServerOptions::ephemeral(id.clone());
            so.record_transport = sample.is_some();
            so.transport_sample = sample;
            let srv = quicbench_servers::start(so).await.expect("servers");
            let addr = match proto {
                Protocol::H11 => srv.addrs.http[0],
                Protocol::H3 => srv.addrs.quic[0],
                _ => srv.addrs.tls[0],
            };
            let mut o = ClientOptions::new(addr, id.trust_anchors());
            o.transport_sample = sample;
            let c = Client::new(proto, o).expect("client");
            let mut conn = c.connect().await.expect("connect");
            conn.run(&[Request::bytes(N)]).await;
            let mut ns = Vec::new();
            for _ in 0..RUNS {
                let r = &conn.run(&[Request::bytes(N)]).await[0];
                assert!(r.ok());
                ns.push(r.total_ns().unwrap_or(0));
            }
            ns.sort_unstable();
            let samples = conn.transport().first().map_or(0, |r| r.samples.len());
            conn.close().await;
            srv.shutdown(Duration::from_secs(1)).await;
            let med = ns[RUNS / 2];
            eprintln!(
                "{:<6} sampling {:<5}: median {:>8.2} ms ({:>5.2} Gbit/s), min {:.2}, max {:.2}; {samples} client samples",
                proto.name(),
                if sample.is_some() { "10ms" } else { "off" },
                med as f64 / 1e6,
                N as f64 * 8.0 / med as f64,
                ns[0] as f64 / 1e6,
                ns[RUNS - 1] as f64 / 1e6,
            );
        }
    }
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
