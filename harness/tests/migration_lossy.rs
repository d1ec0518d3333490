//! HTTP/3 survives a NAT rebinding on a lossy link. After the rebinding the
//! server's packets go to the old mapping and a downloading client has
//! nothing of its own to send: before the client pinged after the stall
//! timeout (QUIC keep-alive), both ends waited out the 30 s idle timeout and
//! 0 of 4 such cells survived at 2% loss. Real namespaces, TUN devices, the
//! user-space NAT: needs root.

mod common;

use quicbench_harness::cell::execute;
use quicbench_harness::{plan, Matrix};

const MATRIX: &str = r#"
name = "migration-lossy"
seed = 7
repetitions = 2
warmup = 0
protocols = ["h3"]
cell_timeout_s = 60

[[links]]
label = "rtt20ms-loss2%-20mbit"
spec = "delay 10ms loss 2% rate 20mbit"

[workloads.migration]
size = 2097152
at_ms = 500
kinds = ["port", "address"]
paced = false
stall_timeout_ms = 1000
"#;

#[test]
fn h3_survives_a_rebinding_on_a_lossy_link() {
    if !common::can_build_links() {
        return;
    }
    let m = Matrix::parse(MATRIX, "<test>").expect("matrix");
    let ctx = common::ctx();
    let cells = plan::cells(&m);
    assert_eq!(cells.len(), 4, "2 kinds × 2 repetitions");
    for cell in cells {
        let res = execute(&ctx, &m, &cell);
        assert!(res.status.is_ok(), "{}: {:?}", cell.id, res.status);
        let get = |k: &str| {
            common::first(&res, k).unwrap_or_else(|| panic!("{}: no {k}: {:?}", cell.id, res.notes))
        };
        let (survived, disruption) = (get("survived"), get("disruption_ms"));
        eprintln!(
            "{}: survived {survived}, disruption {disruption:.0} ms",
            cell.id
        );
        assert_eq!(survived, 1.0, "{}: {:?}", cell.id, res.notes);
        assert_eq!(get("new_handshake"), 0.0, "{}", cell.id);
        // The stall timeout, a few round trips to validate the path, and the
        // server's backed-off retransmissions: seconds, not the idle timeout.
        assert!(disruption < 5_000.0, "{}: {disruption} ms", cell.id);
    }
}
