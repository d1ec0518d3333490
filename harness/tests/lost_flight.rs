//! A lost first flight, deterministically: the handshake's
//! `first-flight-lost` and `server-flight-lost` modes on a lossless 20 ms
//! link. The link's `drop-nth 1` must drop exactly one packet of each
//! measured connection, in the intended direction, and that packet must be
//! the flow's first (the client's SYN or QUIC Initial; the server's first
//! packet); the warm-up connection loses nothing. The measured time to first
//! byte must be within 10% of the sender's retransmission timer (TCP's 1 s
//! initial RTO; quinn's first PTO, 3 × its 333 ms initial RTT) plus the
//! protocol's cold round trips (h2: 3, h3: 2). Real namespaces and TUN
//! devices: needs root.

mod common;

use quicbench_harness::cell::execute;
use quicbench_harness::{plan, Matrix};
use quicbench_results::CellResult;

const CONNECTIONS: usize = 3;

const MATRIX: &str = r#"
name = "lost-flight"
seed = 5
repetitions = 1
warmup = 1
protocols = ["h2", "h3"]

[[links]]
label = "rtt20ms"
spec = "delay 10ms"

[workloads.handshake]
connections = 3
modes = ["first-flight-lost", "server-flight-lost"]
"#;

fn samples<'a>(res: &'a CellResult, k: &str) -> &'a [f64] {
    res.metrics.get(k).map_or(&[], |m| m.samples.as_slice())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Exactly one chosen drop per measured connection, in `dir`, each the
/// first packet of its direction (and the SYN / the Initial).
fn check_drops(res: &CellResult, dir: &str, h3: bool) {
    let id = &res.cell_id;
    let (want_up, want_down) = if dir == "up" {
        (CONNECTIONS as f64, 0.0)
    } else {
        (0.0, CONNECTIONS as f64)
    };
    assert_eq!(samples(res, "chosen_drops_up"), [want_up], "{id}");
    assert_eq!(samples(res, "chosen_drops_down"), [want_down], "{id}");
    let drops = res.extra["chosen_drops"].as_array().expect("chosen_drops");
    assert_eq!(drops.len(), CONNECTIONS, "{id}: one flow each: {drops:?}");
    for d in drops {
        assert_eq!(d["dir"], dir, "{id}: {d}");
        assert_eq!(d["dropped"], 1, "{id}: {d}");
        assert_eq!(d["first_packet"], true, "{id}: {d}");
        if h3 {
            assert_eq!(d["protocol"], "udp", "{id}: {d}");
            assert_eq!(d["quic_initial"], true, "{id}: {d}");
        } else {
            assert_eq!(d["protocol"], "tcp", "{id}: {d}");
            assert_eq!(d["tcp_syn"], true, "{id}: {d}");
        }
    }
    // The warm-up connection is a flow too, and lost nothing.
    let flows = res.extra["link_flows"]["total"].as_u64().expect("flows");
    assert_eq!(flows as usize, CONNECTIONS + 1, "{id}");
}

#[test]
fn lost_first_flights_cost_the_senders_timer() {
    if !common::can_build_links() {
        return;
    }
    let m = Matrix::parse(MATRIX, "<test>").expect("matrix");
    let ctx = common::ctx();
    let cells = plan::cells(&m);
    assert_eq!(cells.len(), 4, "2 protocols × 2 modes");
    for cell in cells {
        let res = execute(&ctx, &m, &cell);
        let id = &res.cell_id;
        assert!(res.status.is_ok(), "{id}: {:?}", res.status);
        let h3 = cell.protocol.name() == "h3";
        let dir = match cell.variant.as_str() {
            "first-flight-lost" => "up",
            "server-flight-lost" => "down",
            v => panic!("unexpected variant {v}"),
        };
        let ttfb = samples(&res, "ttfb_ms");
        let gaps = samples(&res, "retransmit_gap_ms");
        let theory = res.theory["ttfb_ms"];
        let timer = res.theory["retransmit_timer_ms"];
        eprintln!(
            "{:<3} {:<18} ttfb_ms median {:7.1} {:?}; theory {theory:.0} (timer {timer:.0} + round trips); \
             connect_ms median {:7.1}; retransmit gap on the wire median {:7.1} {:?}; notes {:?}",
            cell.protocol.name(),
            cell.variant,
            median(ttfb),
            ttfb,
            median(samples(&res, "connect_ms")),
            median(gaps),
            gaps,
            res.notes,
        );
        check_drops(&res, dir, h3);
        assert_eq!(ttfb.len(), CONNECTIONS, "{id}: every connection measured");
        for v in ttfb {
            assert!(
                (v - theory).abs() <= 0.1 * theory,
                "{id}: ttfb {v:.1} ms not within 10% of {theory:.1} ms"
            );
        }
        assert_eq!(gaps.len(), CONNECTIONS, "{id}: every drop was resent");
        for g in gaps {
            assert!(
                (g - timer).abs() <= 0.1 * timer,
                "{id}: resent {g:.1} ms after the drop, timer {timer:.0} ms"
            );
        }
    }
}
