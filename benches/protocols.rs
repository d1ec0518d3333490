//! Per-protocol benches: handshake (fresh connection to first byte, cold and
//! resumed/0-RTT), request/response on a warm connection, 1 MiB and 100 MiB
//! transfers, with a raw-QUIC baseline beside h3's (`transfer/quic-raw/...`:
//! quinn streams, no HTTP/3, `support/rawquic.rs`); after each transfer
//! group, h3's rate as a share of raw QUIC's over alternating pairs of
//! fetches is printed: the h3 layer's own cost. On loopback by default (and say so); with
//! `QUICBENCH_LINK="delay 10ms loss 1%"`, across the emulated link (as root,
//! or as an ordinary user through a user namespace entered at start).
//!
//! Names are stable (`handshake/<proto>/cold`, `request/<proto>/warm`,
//! `transfer/<proto>/1MiB`...): compare runs with `--save-baseline` / `--baseline`.

#[path = "support/rawquic.rs"]
mod rawquic;
#[path = "support/mod.rs"]
mod support;

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_netem::link::{Link, LinkConfig};
use quicbench_netem::LinkSpec;
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::transport::{LinkShape, Transport};
use quicbench_wire::Protocol;
use tokio::runtime::Runtime;

const PROTOCOLS: [Protocol; 7] = [
    Protocol::H10,
    Protocol::H10Tls,
    Protocol::H11,
    Protocol::H11Tls,
    Protocol::H11Pipelined,
    Protocol::H2,
    Protocol::H3,
];

/// Where the benches run: servers and the client runtime, on loopback or on
/// both ends of an emulated link.
struct Setup {
    client_rt: Runtime,
    _server_rt: Option<Runtime>,
    link: Option<Link>,
    _server_thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    ip: IpAddr,
    ports: [u16; 3], // http, tls, quic
    /// The raw-QUIC baseline server's port.
    raw_port: u16,
    identity: Identity,
    label: String,
    /// What both ends' QUIC is told of the path (`wire::transport::LinkShape`).
    shape: LinkShape,
}

/// Loopback's endpoints are set up as for the harness's default link (a
/// 1500-byte MTU that takes batches): QUIC then starts at 1472-byte
/// datagrams and spends no probes discovering the path, as in every cell.
const LOOPBACK_SHAPE: LinkShape = LinkShape {
    mtu: 1500,
    batches: true,
};

fn setup() -> Setup {
    let link_spec = std::env::var("QUICBENCH_LINK")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if let Some(spec) = link_spec {
        let spec = match spec.parse::<LinkSpec>() {
            Ok(s) => s,
            Err(e) => panic!("QUICBENCH_LINK: {e}"),
        };
        if support::can_build_links("the emulated link (falling back to loopback)") {
            match Link::build(LinkConfig::symmetric(spec.clone())) {
                Ok(link) => return setup_link(link, &spec),
                Err(e) => eprintln!(
                    "quicbench bench: cannot build the link ({e}); falling back to loopback"
                ),
            }
        }
    } else {
        eprintln!("quicbench bench: on loopback (set QUICBENCH_LINK=\"delay 10ms loss 1%\" for the emulated link: root, or an ordinary user where user namespaces are allowed)");
    }
    let identity = Identity::generate(&[]).expect("identity");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut opts = ServerOptions::ephemeral(identity.clone());
    opts.link = Some(LOOPBACK_SHAPE);
    let raw_transport = Transport {
        cc: opts.cc,
        link: opts.link,
    };
    let servers = rt
        .block_on(quicbench_servers::start(opts))
        .expect("servers");
    let raw_port = rt
        .block_on(async { rawquic::start(IpAddr::from([127, 0, 0, 1]), &identity, raw_transport) })
        .expect("raw-QUIC server")
        .port();
    let ports = [
        servers.addrs.http[0].port(),
        servers.addrs.tls[0].port(),
        servers.addrs.quic[0].port(),
    ];
    // The servers live as long as the runtime.
    std::mem::forget(servers);
    Setup {
        client_rt: rt,
        _server_rt: None,
        link: None,
        shape: LOOPBACK_SHAPE,
        _server_thread: None,
        stop: None,
        ip: IpAddr::from([127, 0, 0, 1]),
        ports,
        raw_port,
        identity,
        label: "loopback".into(),
    }
}

fn setup_link(link: Link, spec: &LinkSpec) -> Setup {
    eprintln!(
        "quicbench bench: across the emulated link [{spec}] ({})",
        link.backend_reason()
    );
    let ip = link.server_ip();
    let shape = LinkShape::of(&link);
    let identity = Identity::generate(&[ip.to_string()]).expect("identity");
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let id2 = identity.clone();
    let th = link
        .server_ns()
        .spawn_thread("bench-servers", move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let mut o = ServerOptions::ephemeral(id2.clone());
                o.listen = vec![ip];
                o.link = Some(shape);
                let t = Transport {
                    cc: o.cc,
                    link: o.link,
                };
                let s = quicbench_servers::start(o).await.expect("servers");
                let raw = rawquic::start(ip, &id2, t).expect("raw-QUIC server");
                let _ = tx.send([
                    s.addrs.http[0].port(),
                    s.addrs.tls[0].port(),
                    s.addrs.quic[0].port(),
                    raw.port(),
                ]);
                let _ = stop_rx.await;
                s.shutdown(Duration::from_millis(200)).await;
            })
        })
        .expect("server thread");
    let [http, tls, quic, raw_port] = rx.recv().expect("server ports");
    let ports = [http, tls, quic];
    // A runtime whose workers live in the client namespace: sockets are created
    // by tasks spawned onto it (never by block_on on the main thread).
    let client_rt = link
        .client_ns()
        .try_run(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        })
        .expect("client ns")
        .expect("client runtime");
    Setup {
        client_rt,
        _server_rt: None,
        link: Some(link),
        shape,
        _server_thread: Some(th),
        stop: Some(stop_tx),
        ip,
        ports,
        raw_port,
        identity,
        label: format!("link [{spec}]"),
    }
}

impl Setup {
    fn client(&self, p: Protocol, resume: bool) -> Client {
        let port = match p {
            Protocol::H10 | Protocol::H11 => self.ports[0],
            Protocol::H3 => self.ports[2],
            _ => self.ports[1],
        };
        let mut o = self.options(port);
        o.resume = resume;
        Client::new(p, o).expect("client")
    }

    /// The clients' options (the raw-QUIC client takes its settings from
    /// them as the h3 client does).
    fn options(&self, port: u16) -> ClientOptions {
        let mut o = ClientOptions::new(
            SocketAddr::new(self.ip, port),
            self.identity.trust_anchors(),
        );
        o.link = Some(self.shape);
        o
    }

    /// The CPU this process's threads used so far, but the link's relay
    /// threads (ns): the endpoints'.
    fn endpoints_cpu_ns(&self) -> u64 {
        let relay = self.link.as_ref().map_or(0, |l| {
            let k = l.counters();
            k.up.relay.cpu_ns + k.down.relay.cpu_ns
        });
        quicbench_netem::cpu::self_cpu_ns().saturating_sub(relay)
    }

    /// Run a future on a worker of the client runtime (so its sockets are
    /// created in the client namespace when there is a link).
    fn run<F, T>(&self, f: F) -> T
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.client_rt
            .block_on(async { self.client_rt.spawn(f).await.expect("bench task") })
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Fresh connection to first byte, summed over `iters` connections.
async fn handshakes(c: Client, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t0 = c.epoch().now_ns();
        let mut conn = c.connect().await.expect("connect");
        let r = conn.run(&[Request::bytes(1)]).await.remove(0);
        assert!(r.ok(), "{:?}", r.error);
        total += Duration::from_nanos(r.first_byte_ns.expect("first byte").saturating_sub(t0));
        conn.close().await;
    }
    total
}

fn protocols(cr: &mut Criterion) {
    let s = setup();
    eprintln!("quicbench bench: protocol benches on {}", s.label);
    let mut g = cr.benchmark_group("handshake");
    g.sample_size(20);
    let cold_ran = Cell::new(false);
    for p in PROTOCOLS {
        g.bench_function(format!("{}/cold", p.name()), |b| {
            cold_ran.set(true);
            b.iter_custom(|iters| {
                let c = s.client(p, false);
                s.run(handshakes(c, iters))
            })
        });
        if p.uses_tls() {
            g.bench_function(format!("{}/resumed", p.name()), |b| {
                let c = s.client(p, true);
                // Obtain a ticket first.
                s.run(handshakes(c.clone(), 1));
                b.iter_custom(|iters| s.run(handshakes(c.clone(), iters)))
            });
        }
    }
    g.finish();
    if cold_ran.get() {
        handshake_cpu(&s);
    }

    let mut g = cr.benchmark_group("request");
    for p in PROTOCOLS {
        g.bench_function(format!("{}/warm", p.name()), |b| {
            let c = s.client(p, true);
            b.iter_custom(|iters| {
                let c = c.clone();
                s.run(async move {
                    let mut conn = c.connect().await.expect("connect");
                    let _ = conn.run(&[Request::bytes(1)]).await;
                    let t = std::time::Instant::now();
                    for _ in 0..iters {
                        let r = conn.run(&[Request::bytes(1)]).await;
                        assert!(r[0].ok());
                    }
                    let d = t.elapsed();
                    conn.close().await;
                    d
                })
            })
        });
    }
    g.finish();

    for (name, size, samples) in [("1MiB", 1u64 << 20, 20usize), ("100MiB", 100 << 20, 10)] {
        let mut g = cr.benchmark_group("transfer");
        g.throughput(Throughput::Bytes(size));
        g.sample_size(samples);
        // Whether the filter let h3's and raw QUIC's benches run: then the
        // two are also measured in alternation, below.
        let h3_ran = Cell::new(false);
        let raw_ran = Cell::new(false);
        for p in PROTOCOLS {
            g.bench_function(format!("{}/{name}", p.name()), |b| {
                let c = s.client(p, true);
                b.iter_custom(|iters| {
                    let c = c.clone();
                    let d = s.run(async move {
                        let mut conn = c.connect().await.expect("connect");
                        let t = std::time::Instant::now();
                        for _ in 0..iters {
                            let r = conn.run(&[Request::bytes(size)]).await;
                            assert!(r[0].ok() && r[0].bytes == size, "{:?}", r[0].error);
                        }
                        let d = t.elapsed();
                        conn.close().await;
                        d
                    });
                    if p == Protocol::H3 {
                        h3_ran.set(true);
                    }
                    d
                })
            });
        }
        g.bench_function(format!("quic-raw/{name}"), |b| {
            let server = SocketAddr::new(s.ip, s.raw_port);
            let o = s.options(s.raw_port);
            b.iter_custom(|iters| {
                let o = o.clone();
                let d = s.run(async move {
                    let conn = rawquic::RawConn::connect(server, &o)
                        .await
                        .expect("raw-QUIC connect");
                    let t = std::time::Instant::now();
                    for _ in 0..iters {
                        conn.fetch(size).await.expect("raw-QUIC fetch");
                    }
                    let d = t.elapsed();
                    conn.close();
                    d
                });
                raw_ran.set(true);
                d
            })
        });
        g.finish();
        if h3_ran.get() && raw_ran.get() {
            h3_against_raw(&s, name, size);
        }
    }
}

/// Print the CPU a cold connection costs, to its first byte and its close:
/// client and server together (both run in this process; on a link, the
/// relay's threads are taken off). Protocols alternate by round, so a load
/// that changes moves all alike; the median round is printed.
fn handshake_cpu(s: &Setup) {
    const ROUNDS: usize = 7;
    const PER_ROUND: u64 = 20;
    let protos = [Protocol::H11, Protocol::H11Tls, Protocol::H2, Protocol::H3];
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); protos.len()];
    for _ in 0..ROUNDS {
        for (i, p) in protos.iter().enumerate() {
            let c = s.client(*p, false);
            let t0 = s.endpoints_cpu_ns();
            s.run(handshakes(c, PER_ROUND));
            per[i].push(s.endpoints_cpu_ns().saturating_sub(t0) as f64 / PER_ROUND as f64 / 1e3);
        }
    }
    let med: Vec<f64> = per
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let line = protos
        .iter()
        .zip(&med)
        .map(|(p, us)| format!("{} {us:.0} µs", p.name()))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "quicbench bench: CPU per cold connection (handshake, 1-byte request, close; both ends; median of {ROUNDS} rounds of {PER_ROUND}): {line}; h3 = {:.2}x h1.1-tls (target <= 1.5x)",
        med[3] / med[1].max(1e-9)
    );
}

/// Alternating pairs, one h3 then one raw-QUIC fetch of `size`, each on
/// its own warm connection: the ratio is taken within a pair, so a load that
/// changes during the run (criterion measures one bench after the other)
/// moves both sides alike. A few milliseconds' fetch is moved by one
/// scheduling delay: small objects get more pairs (about 0.2 s of them).
fn pairs(size: u64) -> usize {
    if size <= 8 << 20 {
        31
    } else {
        7
    }
}

/// Print the h3 layer's own cost: h3's rate as a share of raw QUIC's, over
/// [`pairs`] alternating fetches.
fn h3_against_raw(s: &Setup, name: &str, size: u64) {
    let c = s.client(Protocol::H3, true);
    let server = SocketAddr::new(s.ip, s.raw_port);
    let o = s.options(s.raw_port);
    let times = s.run(async move {
        let mut h3 = c.connect().await.expect("connect");
        let raw = rawquic::RawConn::connect(server, &o)
            .await
            .expect("raw-QUIC connect");
        let mut times = Vec::new();
        // The first pair warms both connections (congestion window, buffers).
        for i in 0..=pairs(size) {
            let t = std::time::Instant::now();
            let r = h3.run(&[Request::bytes(size)]).await;
            assert!(r[0].ok() && r[0].bytes == size, "{:?}", r[0].error);
            let h3_t = t.elapsed();
            let t = std::time::Instant::now();
            raw.fetch(size).await.expect("raw-QUIC fetch");
            let raw_t = t.elapsed();
            if i > 0 {
                times.push((h3_t, raw_t));
            }
        }
        h3.close().await;
        raw.close();
        times
    });
    let gbps = |d: Duration| size as f64 * 8.0 / d.as_secs_f64().max(1e-9) / 1e9;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (h3, _, _) = median(times.iter().map(|t| gbps(t.0)).collect());
    let (raw, _, _) = median(times.iter().map(|t| gbps(t.1)).collect());
    let (share, lo, hi) = median(
        times
            .iter()
            .map(|t| 100.0 * t.1.as_secs_f64() / t.0.as_secs_f64().max(1e-9))
            .collect(),
    );
    eprintln!(
        "quicbench bench: transfer/{name}, {} alternating pairs: h3 {h3:.2} Gbit/s, raw QUIC {raw:.2} Gbit/s (medians); h3 = {share:.0}% of raw QUIC (per pair {lo:.0}-{hi:.0}%; target >= 90%): the h3 layer's own cost",
        pairs(size)
    );
}

criterion_group!(benches, protocols);
bench_main!(benches);
