//! A cell's fixed cost: what building the link, starting and stopping the
//! servers, reading the drop counters and tearing everything down costs
//! beside the workload itself. The full preset runs thousands of cells, so
//! this is wall time (docs/matrix.md, wall time). Needs root (namespaces,
//! TUN); otherwise says so and measures nothing. Names are stable for
//! `--save-baseline` / `--baseline`.
//!
//! Besides criterion's totals, the bench prints the median of each phase of
//! a whole cell (`extra.fixed_cost` of its result).

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion};
use quicbench_harness::cell::{self, CellCtx};
use quicbench_harness::matrix::Matrix;
use quicbench_harness::plan;
use quicbench_netem::link::{Backend, Link, LinkConfig};

/// One connection, one 100-byte response, no warm-up, on a 0 ms link: the
/// workload is ~1-3 ms, the rest is the cell's fixed cost.
const MATRIX: &str = r#"
name = "fixed-cost"
repetitions = 1
warmup = 0
cc = "cubic"
protocols = ["h1.1", "h1.1-tls", "h2", "h3", "udp"]
[[links]]
label = "rtt0"
spec = "delay 0ms"
[workloads.handshake]
connections = 1
size = 100
modes = ["cold"]
[workloads.udp]
count = 10
interval_us = 1000
size = 200
"#;

fn privileged() -> bool {
    support::can_build_links("cell fixed-cost bench")
}

fn link_up_down(c: &mut Criterion) {
    if !privileged() {
        return;
    }
    let mut g = c.benchmark_group("cell_fixed/link_up_down");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    // The kernel backend without an impairment is a plain veth pair: it
    // builds where the kernel has no sch_netem too.
    for (name, backend, spec) in [
        ("user-space", Backend::UserSpace, "delay 0ms"),
        ("kernel-veth", Backend::Kernel, ""),
    ] {
        let spec: quicbench_netem::LinkSpec = spec.parse().expect("spec");
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut cfg = LinkConfig::symmetric(spec.clone());
                cfg.backend = backend;
                drop(Link::build(cfg).expect("link"));
            })
        });
    }
    g.finish();
}

fn whole_cell(c: &mut Criterion) {
    if !privileged() {
        return;
    }
    let m = Matrix::parse(MATRIX, "benches/cell.rs").expect("bench matrix");
    let ctx =
        CellCtx::new(Backend::UserSpace, None, Arc::new(AtomicBool::new(false))).expect("identity");
    let cells = plan::cells(&m);
    let mut phases: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut g = c.benchmark_group("cell_fixed/cell");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for cl in &cells {
        let proto = cl.protocol.name();
        g.bench_function(BenchmarkId::from_parameter(proto), |b| {
            b.iter(|| {
                let r = cell::execute(&ctx, &m, cl);
                assert!(
                    matches!(r.status, quicbench_results::CellStatus::Ok),
                    "{}: {:?}",
                    cl.id,
                    r.status
                );
                if let Some(fc) = r.extra.get("fixed_cost").and_then(|v| v.as_object()) {
                    let p = phases.entry(proto.to_string()).or_default();
                    for (k, v) in fc {
                        p.entry(k.clone()).or_default().extend(v.as_f64());
                    }
                }
            })
        });
    }
    g.finish();
    eprintln!("\nmedian phase wall time per cell (ms), extra.fixed_cost:");
    for (proto, p) in &phases {
        let line: Vec<String> = p
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.sort_by(f64::total_cmp);
                format!("{}={:.1}", k.trim_end_matches("_ms"), v[v.len() / 2])
            })
            .collect();
        eprintln!("  {proto:9} {}", line.join(" "));
    }
}

criterion_group!(benches, link_up_down, whole_cell);
bench_main!(benches);
