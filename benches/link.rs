//! Link benches: the sans-IO model's per-packet cost, and (with privileges)
//! TCP bulk throughput through the user-space relay vs a direct veth-free
//! loopback baseline. Names are stable for `--save-baseline` / `--baseline`.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use quicbench_netem::link::{Backend, Link, LinkConfig};
use quicbench_netem::{LinkModel, LinkSpec, Verdict};

const SPECS: &[(&str, &str)] = &[
    ("none", ""),
    ("delay", "delay 20ms"),
    (
        "jitter-normal-loss",
        "delay 20ms 5ms distribution normal loss 1%",
    ),
    ("rate", "rate 100mbit"),
    ("gemodel", "delay 10ms loss gemodel 1% 10% 70% 0.1%"),
    ("reorder", "delay 10ms reorder 25% 50% gap 5"),
    (
        "everything",
        "delay 10ms 2ms 25% loss 1% 25% duplicate 0.5% corrupt 0.1% reorder 1% rate 1gbit",
    ),
];

fn model(c: &mut Criterion) {
    let mut g = c.benchmark_group("link_model");
    g.throughput(Throughput::Elements(1));
    for (name, spec) in SPECS {
        let spec: LinkSpec = spec.parse().expect("bench spec parses");
        g.bench_with_input(BenchmarkId::new("enqueue", name), &spec, |b, spec| {
            let mut m = LinkModel::new(spec, 1);
            // 10k packets/s of 1500 B on a simulated clock.
            let mut now = 0u64;
            b.iter(|| {
                now += 100_000;
                match m.enqueue(now, 1500) {
                    Verdict::Drop(r) => std::hint::black_box(r as u64),
                    Verdict::Deliver(d) => std::hint::black_box(d.len() as u64),
                }
            })
        });
    }
    g.finish();
}

/// Bytes per second of a bounded TCP bulk transfer from `client` to `server`.
fn bulk(link: &Link, bytes: u64) -> Duration {
    let ip = link.server_ip();
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = link
        .server_ns()
        .spawn_thread("bench-sink", move || -> std::io::Result<u64> {
            let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
            let _ = tx.send(l.local_addr());
            let (mut s, _) = l.accept()?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0;
            loop {
                match s.read(&mut buf)? {
                    0 => return Ok(total),
                    n => total += n as u64,
                }
            }
        })
        .expect("server thread");
    let addr = rx.recv().expect("sink address").expect("sink bound");
    let took = link
        .client_ns()
        .try_run(move || {
            let mut s = TcpStream::connect(addr).expect("connect through the link");
            let buf = vec![7u8; 256 * 1024];
            let t0 = Instant::now();
            let mut sent = 0;
            while sent < bytes {
                s.write_all(&buf).expect("write");
                sent += buf.len() as u64;
            }
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut one = [0u8; 1];
            let _ = s.read(&mut one);
            t0.elapsed()
        })
        .expect("client thread");
    let _ = srv.join();
    took
}

fn relay(c: &mut Criterion) {
    if !support::can_build_links("relay benches") {
        return;
    }
    const BYTES: u64 = 128 << 20;
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Bytes(BYTES));
    g.sample_size(10);
    // The user-space relay, and a direct veth pair (the kernel backend with no
    // impairment installs no qdisc) as the reference it is compared with.
    for (name, backend) in [("userspace", Backend::UserSpace), ("veth", Backend::Kernel)] {
        let mut cfg = LinkConfig::new(LinkSpec::default(), LinkSpec::default());
        cfg.backend = backend;
        let link = match Link::build(cfg) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("SKIPPED: relay bench {name}: cannot build the link: {e}");
                continue;
            }
        };
        g.bench_function(format!("tcp_bulk_128MiB/{name}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bulk(&link, BYTES)).sum())
        });
    }
    g.finish();
}

criterion_group!(benches, model, relay);
bench_main!(benches);
