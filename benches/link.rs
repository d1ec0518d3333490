//! Link benches: the sans-IO model's per-packet cost, and (with privileges)
//! TCP bulk throughput through the user-space relay, with and without
//! segmentation offload, against a plain veth pair in the same run. Names are stable for `--save-baseline` / `--baseline`.

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use quicbench_netem::link::{Backend, Link, LinkConfig};
use quicbench_netem::{LinkModel, LinkSpec, NetNs, Verdict};

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

/// Time of a bounded TCP bulk transfer from `client` to `ip` in `server`.
fn bulk(client: &NetNs, server: &NetNs, ip: IpAddr, bytes: u64) -> Duration {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = server
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
    let took = client
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

/// A plain veth pair between two namespaces, with the kernel's default
/// offloads: what any emulated link is measured against. (The kernel
/// backend's own veth has its offloads off for per-packet netem, so it is
/// not this reference.)
struct Veth {
    client: NetNs,
    server: NetNs,
}

const VETH_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);

fn veth() -> std::io::Result<Veth> {
    let client = NetNs::with_label("bench-veth-client").map_err(std::io::Error::other)?;
    let server = NetNs::with_label("bench-veth-server").map_err(std::io::Error::other)?;
    let server_path = format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        server.fd().as_raw_fd()
    );
    for (ns, args) in [
        (
            &client,
            vec![
                "link",
                "add",
                "qbvc",
                "type",
                "veth",
                "peer",
                "name",
                "qbvs",
                "netns",
                &server_path,
            ],
        ),
        (&client, vec!["addr", "add", "198.18.0.1/15", "dev", "qbvc"]),
        (&client, vec!["link", "set", "qbvc", "up"]),
        (&server, vec!["addr", "add", "198.18.1.1/15", "dev", "qbvs"]),
        (&server, vec!["link", "set", "qbvs", "up"]),
    ] {
        ns.exec("ip", &args)?;
    }
    Ok(Veth { client, server })
}

fn relay(c: &mut Criterion) {
    if !support::can_build_links("relay benches") {
        return;
    }
    const BYTES: u64 = 128 << 20;
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Bytes(BYTES));
    g.sample_size(10);
    // The user-space relay with and without segmentation offload on its TUN
    // devices; its CPU per Gbit/s is printed after each.
    for (name, offload) in [("userspace", true), ("userspace-no-offload", false)] {
        let mut cfg = LinkConfig::new(LinkSpec::default(), LinkSpec::default());
        cfg.backend = Backend::UserSpace;
        cfg.offload = offload;
        let link = match Link::build(cfg) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("SKIPPED: relay bench {name}: cannot build the link: {e}");
                continue;
            }
        };
        let ip = link.server_ip();
        g.bench_function(format!("tcp_bulk_128MiB/{name}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| bulk(link.client_ns(), link.server_ns(), ip, BYTES))
                    .sum()
            })
        });
        let k = link.counters();
        let cpu_ns = k.up.relay.cpu_ns + k.down.relay.cpu_ns;
        let gbit = k.up.relay.bytes_written as f64 * 8.0 / 1e9;
        if gbit > 0.0 && cpu_ns > 0 {
            eprintln!(
                "relay {name}: offload {}, {:.1} ms of relay CPU per Gbit carried ({:.1} Gbit in all)",
                k.up.relay.offload,
                cpu_ns as f64 / 1e6 / gbit,
                gbit
            );
        }
    }
    match veth() {
        Ok(v) => {
            g.bench_function("tcp_bulk_128MiB/veth", |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| bulk(&v.client, &v.server, IpAddr::V4(VETH_SERVER), BYTES))
                        .sum()
                })
            });
        }
        Err(e) => eprintln!("SKIPPED: relay bench veth: cannot build the veth pair: {e}"),
    }
    g.finish();
}

criterion_group!(benches, model, relay);
bench_main!(benches);
