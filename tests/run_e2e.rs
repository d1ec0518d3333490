//! End-to-end runs of the `quicbench` binary over real namespaces, TUN devices
//! and TLS: the handshake-vs-theory check, resume, shard + merge equivalence,
//! and bad input. Needs root (or user namespaces); otherwise says loudly what
//! was skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

#[path = "support/runs.rs"]
mod runs;
use runs::{bin, cells, median, quicbench, run_dir_in};

fn can_run_links() -> bool {
    runs::can_run_links("end-to-end runs")
}

fn net_devices() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

const HANDSHAKE: &str = r#"
name = "theory"
repetitions = 1
warmup = 1
protocols = ["h1.0", "h1.1-tls", "h2", "h3"]
[[links]]
label = "rtt0"
spec = "delay 0ms"
[[links]]
label = "rtt40ms"
spec = "delay 20ms"
[workloads.handshake]
connections = 5
size = 100
modes = ["cold", "resumed"]
"#;

/// A cell's 5 per-connection samples of `metric`.
fn cell_samples(c: &serde_json::Value, metric: &str) -> Vec<f64> {
    let samples: Vec<f64> = c["metrics"][metric]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no {metric} samples", c["cell_id"]))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(samples.len(), 5, "{}: {metric}", c["cell_id"]);
    samples
}

/// Median of a cell's per-connection samples of `metric`.
fn cell_median(c: &serde_json::Value, metric: &str) -> f64 {
    median(cell_samples(c, metric))
}

/// The first-byte time on a lossless 40 ms link is theory × RTT (2 RTT h1
/// cleartext, 3 RTT TLS over TCP, 2 RTT h3, 1 RTT h3 0-RTT) plus the
/// endpoints' own fixed cost, measured on a 0 ms link in the same run (its
/// fastest connection): the cell's fastest connection within 10% once that
/// cost is taken off (an extra round trip is 50-100%), and the median time on
/// the wire, from the link's own timestamps, within 3%. The fixed
/// cost is what the endpoints spend (crypto, sockets, the relay's crossings),
/// not round trips; it is bounded here and printed (h3 1.6-3.2 ms, TLS over
/// TCP ≈ 0.9 ms on this 2-core machine). What is left above theory (h3 0-RTT
/// 1.015-1.07 RTT) is the delay line's wake-up and the endpoints waiting for a
/// core beside the relay (issue 15). The machine is held alone: a concurrent
/// run added 5 ms. This proves the harness measures what it claims.
#[test]
fn handshake_ttfb_matches_theory_and_cells_leave_nothing_behind() {
    if !can_run_links() {
        return;
    }
    let _machine = runs::alone();
    let before = net_devices();
    let (_tmp, dir) = runs::run_matrix(HANDSHAKE);
    let cs = cells(&dir);
    assert_eq!(cs.len(), 16, "4 protocols × 2 modes × 2 links");
    let mut fixed_ms = BTreeMap::new();
    for c in cs.iter().filter(|c| c["link"]["label"] == "rtt0") {
        let id = c["cell_id"].as_str().unwrap();
        assert_eq!(c["status"]["kind"], "ok", "{id}: {}", c["status"]);
        // The fastest connection: the endpoints' work is a floor, and a
        // core taken away for a moment only adds (a CI run once saw a
        // median of 8.2 ms for h3 0-RTT here, 1.3-2.0 ms otherwise).
        let m = cell_samples(c, "ttfb_ms")
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        let cpu = &c["extra"]["cpu"];
        eprintln!(
            "{id}: fixed cost {m:.3} ms (fastest of 5; median {:.3} ms; endpoints' CPU {:.1} ms, waited {:.1} ms)",
            cell_median(c, "ttfb_ms"),
            cpu["client_cpu_ms"].as_f64().unwrap_or(f64::NAN) + cpu["server_cpu_ms"].as_f64().unwrap_or(f64::NAN),
            cpu["client_wait_ms"].as_f64().unwrap_or(f64::NAN) + cpu["server_wait_ms"].as_f64().unwrap_or(f64::NAN),
        );
        assert!(m < 10.0, "{id}: {m:.3} ms to the first byte on a 0 ms link");
        let key = (c["protocol"].to_string(), c["variant"].to_string());
        fixed_ms.insert(key, m);
    }
    let mut checked = 0;
    for c in cs.iter().filter(|c| c["link"]["label"] == "rtt40ms") {
        let id = c["cell_id"].as_str().unwrap();
        assert_eq!(c["status"]["kind"], "ok", "{id}: {}", c["status"]);
        let theory = c["theory"]["ttfb_rtt"].as_f64().unwrap();
        let key = (c["protocol"].to_string(), c["variant"].to_string());
        let fixed = fixed_ms[&key];
        let raw = cell_median(c, "ttfb_rtt");
        let net = (cell_median(c, "ttfb_ms") - fixed) / 40.0;
        // The fastest connection, as for the fixed cost: a core taken away
        // from an endpoint only adds (a CI run with other tests beside it saw
        // h3 0-RTT's median at 1.16 RTT, its wire at 1.00).
        let fastest = cell_samples(c, "ttfb_ms")
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        let net_fastest = (fastest - fixed) / 40.0;
        // What the link controls, from its own timestamps: exact.
        let wire: Vec<f64> = c["metrics"]["link_wire_rtts"]["samples"]
            .as_array()
            .unwrap_or_else(|| panic!("{id}: no link_wire_rtts samples"))
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        eprintln!("{id}: on the wire {wire:?} RTT (the warm-up's among them)");
        let wire = median(wire);
        eprintln!(
            "{id}: median TTFB {raw:.3} RTT, {net:.3} RTT without the fixed {fixed:.2} ms; fastest {net_fastest:.3}; on the wire {wire:.3} RTT (theory {theory})"
        );
        assert!(
            (net_fastest - theory).abs() <= 0.10 * theory,
            "{id}: fastest TTFB {net_fastest:.3} RTT after the fixed {fixed:.2} ms vs theory {theory} RTT"
        );
        assert!(
            (wire - theory).abs() <= 0.03 * theory,
            "{id}: {wire:.3} RTT on the wire vs theory {theory} RTT"
        );
        checked += 1;
        if c["protocol"] == "h3" && c["variant"] == "resumed" {
            assert_eq!(
                c["tls"]["early_data_accepted"], true,
                "{id}: 0-RTT must really be used"
            );
            assert_eq!(theory, 1.0);
        }
        if c["protocol"] != "h1.0" {
            assert_eq!(c["tls"]["tls_version"], "TLSv1_3", "{id}");
        }
        // Ground truth from the link: packets crossed both ways, none lost.
        let lc = &c["link_counters"];
        assert!(lc["up"]["model"]["delivered"].as_u64().unwrap() > 0, "{id}");
        assert_eq!(
            lc["up"]["model"]["dropped_loss"].as_u64().unwrap(),
            0,
            "{id}"
        );
    }
    assert_eq!(checked, 8);
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(summary.starts_with("protocol,workload,link,metric,unit,median,ci_low,ci_high,n"));
    assert!(summary.contains("h3,handshake,rtt40ms,ttfb_rtt,RTT,"));
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert!(run["finished"].is_string());
    assert!(run["crate_versions"]["quinn"].is_string());
    // Every cell's namespaces and devices are gone.
    assert_eq!(before, net_devices());
}

const SMALL: &str = r#"
name = "small"
repetitions = 2
warmup = 0
protocols = ["h1.1", "h3", "udp"]
[[links]]
label = "rtt10ms-loss1%"
spec = "delay 5ms loss 1%"
[workloads.handshake]
connections = 2
modes = ["cold"]
[workloads.goodput]
size = 65536
[workloads.udp]
count = 50
"#;

fn cell_ids(dir: &Path) -> BTreeSet<String> {
    cells(dir)
        .iter()
        .map(|c| c["cell_id"].as_str().unwrap().to_string())
        .collect()
}

/// Summary keys (protocol, workload, variant, link, metric) → n.
fn summary_keys(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (p, w, v, l, m, n) = (
        col("protocol"),
        col("workload"),
        col("variant"),
        col("link"),
        col("metric"),
        col("n"),
    );
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (
                format!("{}/{}/{}/{}/{}", f[p], f[w], f[v], f[l], f[m]),
                f[n].to_string(),
            )
        })
        .collect()
}

#[test]
fn resume_and_shards_merge_to_the_same_run() {
    if !can_run_links() {
        return;
    }
    let _machine = runs::shared();
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m.toml");
    std::fs::write(&m, SMALL).unwrap();
    let ms = m.to_str().unwrap();

    // Whole run.
    let whole = tmp.path().join("whole");
    assert!(
        quicbench(&["run", "--matrix", ms, "--out", whole.to_str().unwrap()])
            .status
            .success()
    );
    let whole_dir = run_dir_in(&whole);
    let all = cell_ids(&whole_dir);
    assert_eq!(
        all.len(),
        2 * (2 + 2 + 1),
        "reps × (handshake h1.1,h3 + goodput h1.1,h3 + udp)"
    );

    // Interrupted run (3 cells), then --resume finishes it.
    let partial = tmp.path().join("partial");
    assert!(quicbench(&[
        "run",
        "--matrix",
        ms,
        "--out",
        partial.to_str().unwrap(),
        "--max-cells",
        "3"
    ])
    .status
    .success());
    let pdir = run_dir_in(&partial);
    assert_eq!(cell_ids(&pdir).len(), 3);
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pdir.join("run.json")).unwrap()).unwrap();
    assert!(run["finished"].is_null(), "an unfinished run says so");
    let out = quicbench(&["run", "--resume", pdir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 already done"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cell_ids(&pdir), all);

    // Three shards, merged.
    let mut shard_dirs = Vec::new();
    for i in 0..3 {
        let base = tmp.path().join(format!("shard{i}"));
        assert!(quicbench(&[
            "run",
            "--matrix",
            ms,
            "--out",
            base.to_str().unwrap(),
            "--shard",
            &format!("{i}/3")
        ])
        .status
        .success());
        shard_dirs.push(run_dir_in(&base));
    }
    let merged = tmp.path().join("merged");
    let mut args = vec!["merge".to_string()];
    args.extend(shard_dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    args.extend(["--out".into(), merged.to_string_lossy().into_owned()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(quicbench(&a).status.success());
    assert_eq!(
        cell_ids(&merged),
        all,
        "shards merged = the whole run's cells"
    );
    let (sk, wk) = (summary_keys(&merged), summary_keys(&whole_dir));
    assert_eq!(
        sk.keys().collect::<Vec<_>>(),
        wk.keys().collect::<Vec<_>>(),
        "same summary rows"
    );
    assert_eq!(sk, wk, "same n per summary row");
}

#[test]
fn bad_matrix_is_named_precisely() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("bad.toml");
    std::fs::write(
        &m,
        "protocols = [\"h3\"]\n[[links]]\nspec = \"delay 10 parsecs\"\n[workloads.goodput]\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args([
            "run",
            "--matrix",
            m.to_str().unwrap(),
            "--out",
            tmp.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3") && err.contains("links[0].spec") && err.contains("parsecs"),
        "{err}"
    );
    // Nothing was created for an invalid matrix.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn get_refuses_remote_targets() {
    let out = Command::new(bin())
        .args(["get", "--proto", "h1.1", "http://192.0.2.1:8080/"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    let out = Command::new(bin())
        .args(["udp-probe", "8.8.8.8:9000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

fn processes_with_arg(arg: &str) -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .chars()
                        .all(|c| c.is_ascii_digit())
                })
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(arg))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

/// `link` and `calibrate` say first what the spec does per direction: the
/// effective specs, the RTT and the round-trip loss (`--spec` is applied to
/// each direction).
#[test]
fn link_and_calibrate_state_both_directions_first() {
    if !can_run_links() {
        return;
    }
    let _machine = runs::shared();
    let want = "up (client → server) [delay 5ms loss 1%], down (server → client) \
                [delay 5ms loss 1%]: RTT 10 ms, round-trip loss 1.99% (1% each way)";
    let out = Command::new(bin())
        .args(["link", "--spec", "delay 5ms loss 1%", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let first = err.lines().take(2).collect::<Vec<_>>().join("\n");
    assert!(first.contains(want), "{err}");
    let out = Command::new(bin())
        .args([
            "calibrate",
            "--spec",
            "delay 5ms loss 1%",
            "--seconds",
            "0.3",
            "--pps",
            "1000",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().next().is_some_and(|l| l.contains(want)),
        "{err}"
    );
}

/// `quicbench link`: any server and client command over the link, with the
/// addresses in their environment; the client's exit status comes back and the
/// server (including what its shell started) is stopped.
#[test]
fn link_runs_any_commands_and_stops_the_server_group() {
    if !can_run_links() {
        return;
    }
    let _machine = runs::shared();
    let marker = "987.654321";
    let out = Command::new(bin())
        .args([
            "link",
            "--spec",
            "delay 5ms",
            "--server-wait-ms",
            "100",
            "--server",
            &format!("sleep {marker}; true"),
            "--",
            "sh",
            "-c",
            "test \"$QUICBENCH_SERVER_IP\" = 198.18.1.1 && test \"$QUICBENCH_CLIENT_IP\" = 198.18.0.1 && exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"delivered\""),
        "counters printed"
    );
    assert_eq!(
        processes_with_arg(marker),
        0,
        "the server's grandchild was stopped"
    );
}
