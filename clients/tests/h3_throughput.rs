//! Loopback HTTP/3 fetch times, for the record (no timed assertions):
//! `cargo test -p quicbench-clients --test h3_throughput -- --ignored --nocapture`

use std::time::Duration;

use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check: run with --ignored --nocapture"]
async fn h3_loopback_throughput() {
    let id = Identity::generate(&[]).unwrap();
    let trust = id.trust_anchors();
    let s = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let mut o = ClientOptions::new(s.addrs.quic[0], trust);
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(120);
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    let info = c.info().clone();
    println!(
        "handshake: {:.3} ms",
        (info.transport_ready_ns.unwrap() - info.start_ns) as f64 / 1e6
    );
    for n in [1u64 << 20, 100u64 << 20] {
        let mut totals = Vec::new();
        for _ in 0..5 {
            let r = c.run(&[Request::bytes(n)]).await.remove(0);
            assert!(r.ok(), "{r:?}");
            totals.push(r.total_ns().unwrap());
            println!(
                "{:>4} MiB: ttfb {:.3} ms, total {:.3} ms",
                n >> 20,
                r.ttfb_ns().unwrap() as f64 / 1e6,
                r.total_ns().unwrap() as f64 / 1e6
            );
        }
        totals.sort();
        let secs = totals[2] as f64 / 1e9;
        println!(
            "{:>4} MiB median of 5: {:.3} ms, {:.1} MB/s ({:.2} Gbit/s)",
            n >> 20,
            secs * 1e3,
            n as f64 / secs / 1e6,
            n as f64 * 8.0 / secs / 1e9
        );
    }
    c.close().await;
    s.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
