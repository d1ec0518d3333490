//! The link's view of a handshake agrees with our own client's: at 20 ms RTT
//! the transport handshake the relay saw (TCP SYN → SYN-ACK delivered; QUIC
//! first Initial → the client's first 1-RTT packet) is within 1 ms of the
//! client's own `connect_ms` for TCP (measured: 0.14-0.19 ms apart), per
//! protocol (medians over the cell's connections). QUIC is allowed 2 ms:
//! quinn's client spends 0.5-1 ms building its first Initial (key shares,
//! ClientHello) before the link sees anything (measured: 0.80 ms apart). So the link-side figures of a third-party black box can be
//! read like our client-side ones (docs/methodology.md).
//!
//! And the first response's critical path (netem `flows::ResponsePath`)
//! splits time to first byte into whole round trips on the wire and the
//! endpoints' turns: 2 round trips for h1.1 and h3, 3 for TLS over TCP,
//! wire within 0.1 RTT of that (measured: 2.000-2.004 and 3.001-3.004 RTT;
//! turns: h1.1 0.2 + 0.1 ms, h1.1-tls 0.7-0.8 + 0.5 ms, h2 0.9 + 0.7 ms,
//! h3 0.6-0.9 + 1.0-1.6 ms, client + server).

mod common;

use quicbench_harness::cell::execute;
use quicbench_harness::{plan, Matrix};
use quicbench_results::CellStatus;

fn median(v: &[f64]) -> f64 {
    quicbench_results::stats::median(v).expect("samples")
}

#[test]
fn link_side_handshake_agrees_with_the_client_within_1ms() {
    if !common::can_build_links() {
        return;
    }
    let src = r#"
protocols = ["h1.1", "h1.1-tls", "h2", "h3"]
cc = "cubic"
[[links]]
label = "rtt20ms"
spec = "delay 10ms"
[workloads.handshake]
connections = 6
modes = ["cold"]
"#;
    let m = Matrix::parse(src, "<test>").expect("matrix");
    let ctx = common::ctx();
    for cell in plan::cells_upto(&m, 1) {
        let r = execute(&ctx, &m, &cell);
        assert_eq!(r.status, CellStatus::Ok, "{}: {:?}", cell.id, r.status);
        let client = median(&r.metrics["connect_ms"].samples);
        let link = &r.metrics["link_handshake_ms"].samples;
        // One flow per measured connection; the warm-up connection's flow
        // opened before them and is counted apart.
        assert_eq!(link.len(), 6, "{}: {link:?}", cell.id);
        assert_eq!(r.extra["link_flows"]["warmup"], 1, "{}", cell.id);
        let link = median(link);
        eprintln!(
            "{}: client connect {client:.3} ms, link handshake {link:.3} ms",
            cell.protocol.name()
        );
        // h3: 0.67-0.80 ms apart here; once 1.57 ms with the machine's load
        // at 3 (quinn's client work before its first Initial waits for a core).
        let bound = if cell.protocol.name() == "h3" {
            2.0
        } else {
            1.0
        };
        assert!(
            (client - link).abs() < bound,
            "{}: client {client:.3} ms vs link {link:.3} ms",
            cell.id
        );
        assert!((19.0..25.0).contains(&link), "{}: {link}", cell.id);
        assert_eq!(r.metrics["link_flows"].samples, vec![6.0], "{}", cell.id);
        // The first response's path: whole round trips on the wire, the rest
        // the endpoints' turns (flows::ResponsePath).
        let proto = cell.protocol.name();
        let want = match proto {
            "h1.1" | "h3" => 2.0,
            _ => 3.0, // TCP + TLS 1.3
        };
        let rt = &r.metrics["link_round_trips"].samples;
        assert_eq!(rt.len(), 6, "{}: {rt:?}", cell.id);
        assert!(
            rt.iter().all(|x| *x == want),
            "{}: round trips {rt:?}",
            cell.id
        );
        // Every measured connection's server turns are the server's work,
        // the last one's too: a turn of a whole one-way delay (10 ms) would
        // be a packet sent after the exchange (the servers' own close when
        // they stopped before the client's close reached them).
        let slowest = r.metrics["link_server_ms"]
            .samples
            .iter()
            .fold(0.0f64, |a, b| a.max(*b));
        assert!(
            slowest < 8.0,
            "{}: a server turn of {slowest:.3} ms: {:?}",
            cell.id,
            r.metrics["link_server_ms"].samples
        );
        let rtts = median(&r.metrics["link_wire_rtts"].samples);
        let (cl, sv, wire) = (
            median(&r.metrics["link_client_ms"].samples),
            median(&r.metrics["link_server_ms"].samples),
            median(&r.metrics["link_wire_ms"].samples),
        );
        eprintln!(
            "{proto}: {want} round trips, wire {wire:.3} ms = {rtts:.3} RTT, client {cl:.3} ms, server {sv:.3} ms; path {}",
            r.extra["link_flows"]["flows"][1]["response_path"]
        );
        assert!(
            (want - 0.01..want + 0.1).contains(&rtts),
            "{}: wire {rtts} RTT for {want} round trips",
            cell.id
        );
        // Where the CPU went: our client's, our servers' and the relay's
        // threads each used some (extra.cpu, harness::cpu_use).
        let cpu = &r.extra["cpu"];
        eprintln!("{}: cpu {cpu}", cell.protocol.name());
        for k in ["client_cpu_ms", "server_cpu_ms", "relay_cpu_ms"] {
            let v = cpu[k].as_f64().unwrap_or(0.0);
            assert!(
                v > 0.0 && v < cpu["wall_ms"].as_f64().unwrap_or(0.0) * 2.0,
                "{}: {k} {cpu}",
                cell.id
            );
        }
    }
}
