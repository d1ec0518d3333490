//! On a lossless link the paced HOL workload must not queue: every protocol's
//! median latency is its service time (inflation 1.0 ± 0.05) and close to the
//! protocol's round trips. Before the fix, sequential HTTP/1.x requests every
//! 20 ms on a 20 ms RTT link queued behind each other (HTTP/1.0: a 541 ms
//! median for a 2-RTT request). Real namespaces and TUN devices: needs root.

mod common;

use quicbench_harness::cell::execute;
use quicbench_harness::{plan, Matrix};

const MATRIX: &str = r#"
name = "hol-lossless"
seed = 1
repetitions = 1
warmup = 1
protocols = ["h1.0", "h1.0-tls", "h1.1", "h1.1-tls", "h1.1-pipelined", "h2", "h3"]

[[links]]
label = "rtt20ms"
spec = "delay 10ms"

[workloads.hol]
interval_ms = 20
duration_ms = 1000
size = 1024
parallel_objects = 0
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn lossless_paced_hol_does_not_queue() {
    if !common::can_build_links() {
        return;
    }
    let m = Matrix::parse(MATRIX, "<test>").expect("matrix");
    let ctx = common::ctx();
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for cell in plan::cells(&m) {
        let res = execute(&ctx, &m, &cell);
        assert!(res.status.is_ok(), "{}: {:?}", cell.id, res.status);
        let get = |k: &str| {
            res.metrics
                .get(k)
                .map(|x| median(x.samples.clone()))
                .unwrap_or_else(|| panic!("{}: no {k}", cell.id))
        };
        let (lat, svc) = (get("latency_ms"), get("service_ms"));
        let rtts = match cell.protocol.name() {
            "h1.0" => 2.0,
            "h1.0-tls" => 3.0,
            _ => 1.0,
        };
        let theory = rtts * 20.0;
        let inflation = lat / svc;
        report.push(format!(
            "{:<15} latency {lat:7.2} ms  service {svc:7.2} ms  inflation {inflation:.3}  theory {theory} ms",
            cell.protocol.name()
        ));
        if (inflation - 1.0).abs() > 0.05 || lat > theory * 1.3 + 5.0 || lat < theory * 0.95 {
            bad.push(cell.id.clone());
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        bad.is_empty(),
        "queueing or off theory: {bad:?}\n{}",
        report.join("\n")
    );
}
