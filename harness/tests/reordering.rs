//! Reordering on a real link: netem's `reorder 25% gap 5` on a 20 ms link
//! sends about one packet in eight at once, ahead of the ones delayed before
//! it (after four delayed packets, each next one is sent at once with
//! probability 25%: cycles of 4 + 4 packets on average). The link's own count
//! of reordered packets must match that, and both transports must deliver
//! every byte verified; the goodput of each, beside the same link without
//! reordering, is printed (TCP detects reordering with RACK and DSACK, QUIC
//! declares a packet lost 3 packets or 9/8 RTT after a later one is acked).
//! Real namespaces and TUN devices: needs root.

mod common;

use common::first;

use quicbench_harness::cell::execute;
use quicbench_harness::{plan, Matrix};

const MATRIX: &str = r#"
name = "reordering"
seed = 3
repetitions = 1
warmup = 1
protocols = ["h2", "h3"]

[[links]]
label = "rtt20ms"
spec = "delay 10ms"

[[links]]
label = "rtt20ms-reorder25%gap5"
spec = "delay 10ms reorder 25% gap 5"

[workloads.goodput]
size = 2097152
duration_ms = 1000
"#;

#[test]
fn reordered_packets_match_the_model_and_both_transports_deliver() {
    if !common::can_build_links() {
        return;
    }
    let m = Matrix::parse(MATRIX, "<test>").expect("matrix");
    let ctx = common::ctx();
    let cells = plan::cells(&m);
    assert_eq!(cells.len(), 4, "2 protocols × 2 links");
    for cell in cells {
        let res = execute(&ctx, &m, &cell);
        assert!(res.status.is_ok(), "{}: {:?}", cell.id, res.status);
        let records = res
            .records
            .as_ref()
            .and_then(|r| r.as_array())
            .expect("records");
        assert!(
            records.iter().all(|r| r["verified"] == true),
            "{}: every body verified",
            cell.id
        );
        let lc = res.link_counters.as_ref().expect("link counters");
        let model = &lc["down"]["model"];
        let delivered = model["delivered"].as_u64().expect("delivered");
        let reordered = model["reordered"].as_u64().expect("reordered");
        let frac = reordered as f64 / delivered.max(1) as f64;
        eprintln!(
            "{:<24} {:<3} object {:6.1} Mbit/s, steady {:6.1} Mbit/s, sender: retransmitted {:.1}%, {} congestion events; link down: {reordered} of {delivered} packets sent at once by the reorder branch ({:.1}%), {} overtook an earlier one",
            res.link.label,
            cell.protocol.name(),
            first(&res, "goodput_mbps").unwrap_or(f64::NAN),
            first(&res, "steady_goodput_mbps").unwrap_or(f64::NAN),
            first(&res, "tx_retrans_share").unwrap_or(f64::NAN) * 100.0,
            first(&res, "tx_congestion_events").unwrap_or(f64::NAN),
            frac * 100.0,
            model["overtaking"]
        );
        if res.link.label.contains("reorder") {
            // 1/8 reordered; the count of a renewal process of mean cycle 8
            // and variance 12 has σ ≈ √(n · 12 / 8³): a 5σ band, ±1% slack.
            assert!(delivered > 500, "{}: {delivered} packets", cell.id);
            let sigma = (delivered as f64 * 12.0 / 512.0).sqrt() / delivered as f64;
            assert!(
                (frac - 0.125).abs() <= 5.0 * sigma + 0.01,
                "{}: {reordered} of {delivered} reordered ({frac:.4}), expected 0.125 ± {:.4}",
                cell.id,
                5.0 * sigma + 0.01
            );
        } else {
            assert_eq!(reordered, 0, "{}", cell.id);
        }
        // The cell's metric is the link's count of copies that really left
        // ahead of an earlier one: a copy the reorder branch sends at once
        // overtakes nothing when the delay line is empty (a sender paused by
        // its window), so it is at most the branch's count.
        let overtaking = model["overtaking"].as_u64().expect("overtaking");
        assert!(
            overtaking <= reordered,
            "{}: {overtaking} > {reordered}",
            cell.id
        );
        if res.link.label.contains("reorder") {
            assert!(overtaking > 0, "{}", cell.id);
        }
        let share = first(&res, "link_reordered_down_share").expect("reordered share");
        let want = overtaking as f64 / delivered as f64;
        assert!(
            (share - want).abs() < 1e-12,
            "{}: {share} vs {want}",
            cell.id
        );
    }
}
