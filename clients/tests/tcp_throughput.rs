//! Loopback fetch times of the TCP clients against our server (no assertions on
//! time: numbers for the record). Run:
//! `cargo test -p quicbench-clients --test tcp_throughput -- --ignored --nocapture`

use std::io::Write;
use std::time::Duration;

use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check: run with --ignored --nocapture"]
async fn loopback_fetch_times() {
    let id = Identity::generate(&[]).unwrap();
    let srv = quicbench_servers::start(ServerOptions::ephemeral(id.clone()))
        .await
        .unwrap();
    let mut out = std::io::stderr();
    for proto in [
        Protocol::H11,
        Protocol::H11Tls,
        Protocol::H11Pipelined,
        Protocol::H2,
        Protocol::H10,
    ] {
        let addr = if proto.uses_tls() {
            srv.addrs.tls[0]
        } else {
            srv.addrs.http[0]
        };
        let c = Client::new(proto, ClientOptions::new(addr, id.trust_anchors())).unwrap();
        let mut conn = c.connect().await.unwrap();
        // Warm-up, then 5 runs of each size; report the median.
        conn.run(&[Request::bytes(1 << 20)]).await;
        for n in [1u64 << 20, 100 << 20] {
            let mut ns: Vec<u64> = Vec::new();
            for _ in 0..5 {
                let r = &conn.run(&[Request::bytes(n)]).await[0];
                assert!(r.ok() && r.bytes == n, "{r:?}");
                ns.push(r.total_ns().unwrap());
            }
            ns.sort();
            let med = ns[2];
            let _ = writeln!(
                out,
                "{:<15} {:>4} MiB: median {:>9.3} ms  ({:>6.2} Gbit/s)  [min {:.3} ms, max {:.3} ms]",
                proto.name(),
                n >> 20,
                med as f64 / 1e6,
                n as f64 * 8.0 / med as f64,
                ns[0] as f64 / 1e6,
                ns[4] as f64 / 1e6,
            );
        }
        conn.close().await;
    }
    srv.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
