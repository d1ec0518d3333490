//! Fairness on a real bottleneck: two flows of the same protocol and
//! controller on a 20 Mbit/s link with a one-BDP buffer, 10 s each, must
//! share it (Jain's index ≥ 0.9), fill it, and the link's per-5-tuple view
//! must agree with the clients'. Real namespaces and TUN devices: needs root.

mod common;

use common::first;

use quicbench_harness::cell::execute;
use quicbench_harness::{plan, Matrix};

const MATRIX: &str = r#"
name = "fairness"
seed = 5
repetitions = 1
warmup = 0
cc = "cubic"
buffer = "1bdp"

[[links]]
label = "rtt20ms-20mbit"
spec = "delay 10ms rate 20mbit"

[workloads.fairness]
mixes = ["2xh3", "2xh2"]
duration_ms = 10000
"#;

#[test]
fn two_flows_of_one_protocol_share_a_20_mbit_link() {
    if !common::can_build_links() {
        return;
    }
    let m = Matrix::parse(MATRIX, "<test>").expect("matrix");
    let ctx = common::ctx();
    let cells = plan::cells(&m);
    assert_eq!(cells.len(), 2, "two mixes × one link × cubic");
    for cell in cells {
        let res = execute(&ctx, &m, &cell);
        assert!(res.status.is_ok(), "{}: {:?}", cell.id, res.status);
        let get = |k: &str| first(&res, k).unwrap_or_else(|| panic!("{}: no {k}", cell.id));
        let (jain, link_jain) = (get("jain_index"), get("link_jain_index"));
        let util = get("utilisation");
        let p = cell.protocol.name();
        let (share, link_share) = (get(&format!("share_{p}")), get(&format!("link_share_{p}")));
        let flows = &res.metrics["flow_mbps"].samples;
        println!(
            "{}: flows {flows:.2?} Mbit/s, Jain {jain:.3} (link {link_jain:.3}), utilisation {util:.3}, queue p50 {:?} ms, convergence {:?} ms",
            cell.id,
            first(&res, "queue_delay_p50_ms"),
            first(&res, "convergence_ms"),
        );
        assert_eq!(flows.len(), 2);
        assert!(jain >= 0.9, "{}: Jain's index {jain}", cell.id);
        assert!(
            (jain - link_jain).abs() <= 0.05,
            "{}: client {jain} vs link {link_jain}",
            cell.id
        );
        // Every flow is of the one protocol: all of the bytes are its.
        assert!((share - 1.0).abs() < 1e-9 && (link_share - 1.0).abs() < 1e-9);
        assert!(util > 0.8 && util <= 1.0, "{}: utilisation {util}", cell.id);
        // Read back at both ends of both flows.
        let t = res.transport.as_ref().expect("transport record");
        assert_eq!(t["matched"], true, "{}: {t}", cell.id);
        assert!(
            res.timelines.contains_key("flow1_mbps")
                && res.timelines.contains_key("link_flow1_mbps"),
            "{}: per-flow timelines",
            cell.id
        );
    }
}
