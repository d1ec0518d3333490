//! A migration cell whose event did not happen reports nothing but its reason:
//! real clients and servers (on loopback, in this namespace), a fake link.
//! Before this test, a TCP transfer that never saw a rebind reported
//! `survived = 1` ("survived, no new handshake") when the rebind failed.
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use quicbench_harness::matrix::MigrationParams;
use quicbench_harness::workloads::{self, Env, LinkControl, NatTally, Ports, RebindError, Rebound};
use quicbench_netem::RebindKind;
use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;
use quicbench_wire::{CongestionControl, Protocol};

/// A link that cannot rebind (the kernel backend before NAT support), or
/// one that says it did but translates nothing.
struct Fake {
    refuse: bool,
}

impl LinkControl for Fake {
    fn rebind(&self, _k: RebindKind) -> Result<Rebound, RebindError> {
        if self.refuse {
            return Err(RebindError::Unsupported("kernel backend".into()));
        }
        Ok(Rebound {
            detail: "rebind #1".into(),
            generation: 1,
            queue: None,
            before: NatTally::default(),
        })
    }
    fn logged(&self, _g: u32) -> bool {
        true
    }
    fn nat_tally(&self) -> NatTally {
        NatTally::default()
    }
}

async fn run(p: Protocol, refuse: bool, paced: bool) -> workloads::Output {
    let id = Identity::generate(&["127.0.0.1".into()]).unwrap();
    let mut o = ServerOptions::new(id.clone());
    o.http_port = 0;
    o.tls_port = 0;
    o.quic_port = 0;
    o.udp_port = 0;
    let servers = quicbench_servers::start(o).await.unwrap();
    let port = |v: &Vec<std::net::SocketAddr>| v.first().map(|a| a.port()).unwrap_or(0);
    let a = &servers.addrs;
    let env = Env {
        server_ip: IpAddr::from([127, 0, 0, 1]),
        ports: Ports {
            http: port(&a.http),
            tls: port(&a.tls),
            quic: port(&a.quic),
            udp: port(&a.udp),
        },
        trust: id.trust_anchors(),
        cc: CongestionControl::default(),
        rtt_ms: 0.0,
        rate_bps: None,
        loss: 0.0,
        warmup: 0,
        timeout: Duration::from_secs(20),
        link: Some(Arc::new(Fake { refuse })),
        link_shape: None,
        capture_dir: None,
        stall_timeout: None,
        transport_sample: None,
        static_server: false,
    };
    let mp: MigrationParams =
        toml::from_str("size = 268435456\nat_ms = 1\npaced_duration_ms = 200\n").unwrap();
    let out = if paced {
        workloads::migration_paced(&env, p, "port", &mp).await
    } else {
        workloads::migration(&env, p, "port", &mp).await
    };
    servers.shutdown(Duration::from_millis(200)).await;
    out
}

fn assert_failed(out: &workloads::Output, why: &str) {
    assert!(
        out.metrics.is_empty(),
        "metrics written from an event that did not happen: {:?}",
        out.metrics
    );
    assert!(out.failures > 0);
    let reason = out.notes.first().cloned().unwrap_or_default();
    assert!(
        reason.contains(why),
        "reason {reason:?}, notes {:?}",
        out.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rebind_is_not_survival() {
    for p in [Protocol::H11, Protocol::H2, Protocol::H3] {
        let out = run(p, true, false).await;
        assert_failed(&out, "cannot rebind");
        let out = run(p, true, true).await;
        assert_failed(&out, "cannot rebind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebind_that_translated_nothing_is_not_confirmed() {
    let out = run(Protocol::H11, false, false).await;
    assert_failed(&out, "translated no packet");
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
