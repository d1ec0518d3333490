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
use quicbench_harness::workloads::names;
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
    assert_eq!(samples(res, names::CHOSEN_DROPS_UP), [want_up], "{id}");
    assert_eq!(samples(res, names::CHOSEN_DROPS_DOWN), [want_down], "{id}");
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
    // The warm-up connection is a flow too, counted apart from the measured
    // ones, and lost nothing.
    let flows = res.extra["link_flows"]["total"].as_u64().expect("flows");
    assert_eq!(flows as usize, CONNECTIONS, "{id}");
    assert_eq!(res.extra["link_flows"]["warmup"], 1, "{id}");
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
        let gaps = samples(&res, names::RETRANSMIT_GAP_MS);
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

/// Third-party endpoints on a lost-flight link: the drop is the link's, so
/// it works whoever is at either end (their own client runs its own
/// handshake workload). Each cell completes, the link drops exactly one
/// chosen packet per measured connection, every dropped packet is resent,
/// and the cell carries no theory for the third party's own timers. Needs
/// the Debian ngtcp2, nginx and curl (scripts/install-endpoints.sh).
#[test]
fn third_party_endpoints_lose_their_first_flight_too() {
    if !common::can_build_links() {
        return;
    }
    let need = [
        "/usr/bin/gtlsclient",
        "/usr/sbin/gtlsserver",
        "/usr/sbin/nginx",
        "/usr/bin/curl",
    ];
    if let Some(missing) = need.iter().find(|p| !std::path::Path::new(p).exists()) {
        eprintln!("SKIPPED: {missing} missing; run scripts/install-endpoints.sh as root");
        return;
    }
    let src = r#"
protocols = ["h2", "h3"]
cc = "cubic"
cell_timeout_s = 40
warmup = 1
servers = ["quicbench", "ngtcp2", "nginx"]
clients = ["quicbench", "ngtcp2", "curl"]
[[links]]
label = "rtt20ms"
spec = "delay 10ms"
[workloads.handshake]
connections = 2
modes = ["first-flight-lost", "server-flight-lost"]
"#;
    let m = Matrix::parse(src, "<test>").expect("matrix");
    let cells = plan::cells_upto(&m, 1);
    let pairs = [
        ("h3", "ngtcp2", "quicbench"),
        ("h3", "quicbench", "ngtcp2"),
        ("h2", "nginx", "quicbench"),
        ("h2", "quicbench", "curl"),
    ];
    let ctx = common::ctx();
    for (p, s, c) in pairs {
        for mode in ["first-flight-lost", "server-flight-lost"] {
            let cell = cells
                .iter()
                .find(|x| {
                    x.protocol.name() == p && x.server == s && x.client == c && x.variant == mode
                })
                .unwrap_or_else(|| panic!("no cell {p} {s}->{c} {mode}"));
            let res = execute(&ctx, &m, cell);
            let id = &res.cell_id;
            let ttfb = samples(&res, "ttfb_ms");
            let gaps = samples(&res, names::RETRANSMIT_GAP_MS);
            eprintln!(
                "{p} {s} -> {c} {mode:<18}: {:?}; ttfb_ms {ttfb:?}; retransmit gap {gaps:?}; theory {:?}; notes {:?}",
                res.status, res.theory, res.notes
            );
            assert!(res.status.is_ok(), "{id}: {:?}", res.status);
            let total = samples(&res, names::CHOSEN_DROPS);
            assert_eq!(
                total,
                [2.0],
                "{id}: one chosen drop per measured connection"
            );
            let key = if mode == "first-flight-lost" {
                names::CHOSEN_DROPS_UP
            } else {
                names::CHOSEN_DROPS_DOWN
            };
            assert_eq!(samples(&res, key), [2.0], "{id}");
            assert_eq!(gaps.len(), 2, "{id}: every drop resent");
            if s != "quicbench" || c != "quicbench" {
                let theirs = c != "quicbench";
                assert_eq!(
                    res.theory.contains_key("ttfb_ms"),
                    !theirs,
                    "{id}: {:?}",
                    res.theory
                );
            }
        }
    }
}
