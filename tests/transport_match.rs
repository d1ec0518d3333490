//! Matched transports, over real namespaces, TUN devices and TLS: every cell
//! runs the controller its matrix asks for on *both* transports (read back
//! from the sockets and from quinn), a loss-limited Cubic flow agrees with
//! the Mathis model on TCP and on QUIC alike, and BBR is told apart from
//! Cubic. Needs root (or user namespaces); otherwise says loudly what was
//! skipped.

#[path = "support/runs.rs"]
mod runs;
use runs::{can_run_links, cells, run_matrix, samples};

const MATCHED: &str = r#"
name = "matched"
repetitions = 1
warmup = 0
protocols = ["h1.0", "h1.0-tls", "h1.1", "h1.1-tls", "h1.1-pipelined", "h2", "h3", "udp"]
cc = ["cubic", "newreno", "bbr"]
[[links]]
label = "rtt2ms"
spec = "delay 1ms"
[workloads.handshake]
connections = 2
modes = ["cold"]
[workloads.udp]
count = 50
"#;

#[test]
fn every_cell_runs_the_controller_it_asks_for_on_both_ends() {
    if !can_run_links("matched-controller test") {
        return;
    }
    let (_tmp, dir) = run_matrix(MATCHED);
    let cs = cells(&dir);
    assert_eq!(
        cs.len(),
        7 * 3 + 1,
        "7 HTTP protocols × 3 controllers + 1 UDP probe"
    );
    for c in &cs {
        let id = c["cell_id"].as_str().unwrap();
        assert_eq!(c["status"]["kind"], "ok", "{id}: {}", c["status"]);
        let t = &c["transport"];
        assert!(t.is_object(), "{id}: no transport record");
        if c["protocol"] == "udp" {
            assert!(
                t["controller"].is_null(),
                "{id}: the probe has no controller"
            );
            assert!(
                !id.contains("cubic"),
                "{id}: one probe cell, not one per cc"
            );
            continue;
        }
        let want = c["params"]["cc"].as_str().unwrap();
        assert!(
            id.contains(&format!("__{want}__")),
            "{id}: the id names the controller"
        );
        assert_eq!(t["controller"], want, "{id}");
        assert_eq!(t["matched"], true, "{id}: {}", t["mismatches"]);
        assert_eq!(t["client_connection"], want, "{id}: client read-back");
        assert_eq!(c["tls"]["congestion_control"], want, "{id}");
        let server = if c["protocol"] == "h3" {
            &t["server_quic"]
        } else {
            &t["server_tcp"]
        };
        let server = server.as_object().unwrap();
        assert_eq!(
            server.keys().collect::<Vec<_>>(),
            vec![want],
            "{id}: server read-back {server:?}"
        );
        // Every connection of the cell was counted at the server.
        assert!(server[want].as_u64().unwrap() >= 2, "{id}: {server:?}");
        // Both ends of QUIC send the link's packet size, and batch as TCP
        // does: the client's datagram size is read back from quinn.
        if c["protocol"] == "h3" {
            assert_eq!(t["quic"]["udp_payload"], 1472, "{id}");
            assert_eq!(c["tls"]["quic_mtu"], 1472, "{id}: client read-back");
            let userspace = c["link_counters"]["backend"] == "userspace";
            assert_eq!(
                t["quic"]["gso"], userspace,
                "{id}: GSO as the link splits batches"
            );
        }
        // The profile of both namespaces was read, and no packet was lost
        // outside the link model on a lossless link.
        for end in ["client", "server"] {
            assert!(
                t[end]["sysctls"]["net.ipv4.tcp_rmem"].is_string(),
                "{id}: {end} profile {}",
                t[end]
            );
        }
        assert_eq!(
            samples(c, "unaccounted_drops"),
            vec![0.0],
            "{id}: {}",
            t["unaccounted_drops"]
        );
    }
}

const FAIRNESS: &str = r#"
name = "fairness"
seed = 11
repetitions = 1
warmup = 0
protocols = ["h2", "h3"]
cc = ["cubic", "bbr"]
[[links]]
label = "rtt20ms-loss2%"
spec = "delay 10ms loss 2%"
[workloads.goodput]
size = 4194304
# The steady-state transfer is not what this test checks: keep it short.
duration_ms = 1000
"#;

/// Mathis et al. (1997): a loss-limited AIMD flow's rate, MSS·C/(RTT·√p),
/// C = √(3/2) ≈ 1.22, in Mbit/s.
fn mathis_mbps(mss: f64, rtt_s: f64, p: f64) -> f64 {
    mss * 8.0 * (1.5f64).sqrt() / (rtt_s * p.sqrt()) / 1e6
}

#[test]
fn a_loss_limited_cubic_flow_agrees_with_mathis_on_both_transports() {
    if !can_run_links("fairness regression test") {
        return;
    }
    let (_tmp, dir) = run_matrix(FAIRNESS);
    let cs = cells(&dir);
    let goodput = |proto: &str, cc: &str| -> (f64, f64) {
        let c = cs
            .iter()
            .find(|c| c["protocol"] == proto && c["params"]["cc"] == cc)
            .unwrap_or_else(|| panic!("no {proto}/{cc} cell"));
        assert_eq!(c["status"]["kind"], "ok", "{}", c["status"]);
        assert_eq!(c["transport"]["matched"], true);
        let g = samples(c, "goodput_mbps");
        assert_eq!(g.len(), 1);
        // The server hands the user-space link batches (TSO, UDP GSO) that
        // it splits per wire packet: TCP and QUIC alike.
        let relay = &c["link_counters"]["down"]["relay"];
        if c["link_counters"]["backend"] == "userspace" {
            assert!(
                relay["gso_reads"].as_u64().unwrap() > 0,
                "{proto}/{cc}: {relay}"
            );
        }
        // The data direction (server → client) is the link's "down".
        let down = &c["link_counters"]["down"]["model"];
        let lost = down["dropped_loss"].as_f64().unwrap();
        let sent = down["packets_in"].as_f64().unwrap();
        (g[0], lost / sent)
    };
    let (h2, p2) = goodput("h2", "cubic");
    let (h3, p3) = goodput("h3", "cubic");
    // MSS of a 1500-byte link with TCP timestamps; QUIC's payload per packet
    // is within a few bytes of it (1472-byte datagrams, ~25 bytes of header).
    for (name, g, p) in [("h2", h2, p2), ("h3", h3, p3)] {
        let model = mathis_mbps(1448.0, 0.020, p);
        eprintln!(
            "{name} cubic: {g:.2} Mbit/s at measured loss {:.2}% — Mathis {model:.2}",
            p * 100.0
        );
        assert!(
            (0.5..=2.0).contains(&(g / model)),
            "{name}/cubic {g:.2} Mbit/s vs Mathis {model:.2} (loss {p:.4})"
        );
    }
    let ratio = h2 / h3;
    assert!(
        (0.5..=2.0).contains(&ratio),
        "h2 {h2:.2} vs h3 {h3:.2} Mbit/s with the same controller"
    );
    for proto in ["h2", "h3"] {
        let (cubic, _) = goodput(proto, "cubic");
        let (bbr, _) = goodput(proto, "bbr");
        eprintln!("{proto}: bbr {bbr:.1} vs cubic {cubic:.1} Mbit/s");
        assert!(
            bbr >= 5.0 * cubic,
            "{proto}: BBR {bbr:.1} should be far above Cubic {cubic:.1} under random loss"
        );
    }
}
