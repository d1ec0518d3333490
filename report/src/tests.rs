use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use quicbench_results::{
    CellResult, CellStatus, HostInfo, LinkInfo, RunDir, RunMeta, SummaryRow, SCHEMA_VERSION,
};

use super::*;

fn link(label: &str, rtt: f64, loss: f64) -> LinkInfo {
    LinkInfo {
        label: label.into(),
        up: format!("delay {}ms loss {}%", rtt / 2.0, loss * 100.0),
        down: format!("delay {}ms", rtt / 2.0),
        rtt_ms: rtt,
        loss,
        rate_bps: None,
    }
}

/// A small synthetic run: handshakes of h2 and h3 on two links (links given
/// in the "wrong" order to check sorting), a migration with timelines.
pub(crate) fn synthetic_run(base: &Path) -> RunDir {
    synthetic_run_with(base, false)
}

/// The cell run by another server × client pair (`params`, and
/// `extra.endpoints` as the harness writes it).
fn with_pair(mut c: CellResult, server: &str, client: &str) -> CellResult {
    c.params = serde_json::json!({ "server": server, "client": client });
    let side = |name: &str| {
        if name == "quicbench" {
            serde_json::json!({ "name": name })
        } else {
            serde_json::json!({
                "name": name,
                "version": format!("{name} 1.2.3"),
                "command": format!("$QB_SCRIPTS/endpoints/{name}.sh"),
                "notes": format!("{name} <notes>"),
                "namespace_tcp_cc": null,
            })
        }
    };
    c.extra.insert(
        "endpoints".into(),
        serde_json::json!({ "server": side(server), "client": side(client) }),
    );
    c
}

/// Third-party pairs beside ours: h3 handshakes by ngtcp2 → quicbench and
/// ngtcp2 → ngtcp2 (ok, slower), quicbench → aioquic (every cell failed),
/// h2 by ngtcp2 → quicbench (not applicable); a migration by ngtcp2 →
/// quicbench that survived 2 of 3 times.
fn add_pairs(rd: &RunDir, ids: &mut Vec<String>) {
    for rep in 0..3u32 {
        for (label, rtt) in [("rtt200", 200.0), ("rtt20", 20.0)] {
            let arms: [(&str, &str, &str, Option<f64>); 4] = [
                ("h3", "ngtcp2", "quicbench", Some(2.5)),
                ("h3", "ngtcp2", "ngtcp2", Some(4.0)),
                ("h3", "quicbench", "aioquic", None),
                ("h2", "ngtcp2", "quicbench", None),
            ];
            for (proto, server, client, rtts) in arms {
                let id = format!("{proto}-handshake-cold-{label}-{server}-{client}-r{rep}");
                let mut c = with_pair(
                    CellResult::new(
                        &id,
                        proto,
                        "handshake",
                        "cold",
                        link(label, rtt, 0.0),
                        rep,
                        7,
                    ),
                    server,
                    client,
                );
                match (rtts, client) {
                    (Some(t), _) => {
                        for i in 0..4 {
                            let r = t + 0.05 + 0.01 * (i + rep) as f64;
                            c.push_sample("ttfb_rtt", "RTT", r).unwrap();
                            c.push_sample("ttfb_ms", "ms", r * rtt).unwrap();
                        }
                    }
                    (None, "aioquic") => {
                        c.status = CellStatus::Failed {
                            reason: "aioquic client: handshake timeout <interop>".into(),
                        }
                    }
                    (None, _) => {
                        c.status = CellStatus::Skipped {
                            reason: "not applicable: ngtcp2 speaks h3 only".into(),
                        }
                    }
                }
                rd.write_cell(&c).unwrap();
                ids.push(id);
            }
        }
        let id = format!("h3-migration-port-rebind-rtt50-ngtcp2-quicbench-r{rep}");
        let mut c = with_pair(
            CellResult::new(
                &id,
                "h3",
                "migration",
                "port-rebind",
                link("rtt50", 50.0, 0.0),
                rep,
                7,
            ),
            "ngtcp2",
            "quicbench",
        );
        c.push_sample("survived", "bool", if rep < 2 { 1.0 } else { 0.0 })
            .unwrap();
        c.push_sample("completion_ms", "ms", 900.0 + rep as f64)
            .unwrap();
        rd.write_cell(&c).unwrap();
        ids.push(id);
    }
}

/// [`synthetic_run`], with the third-party pairs of [`add_pairs`] when `pairs`.
pub(crate) fn synthetic_run_with(base: &Path, pairs: bool) -> RunDir {
    let rd = RunDir::create(base, "synthetic").unwrap();
    let mut ids = Vec::new();
    if pairs {
        add_pairs(&rd, &mut ids);
    }
    for rep in 0..3u32 {
        for (label, rtt) in [("rtt200", 200.0), ("rtt20", 20.0)] {
            for (proto, theory) in [("h2", 3.0), ("h3", 2.0), ("h1.1-tls", 3.0)] {
                for variant in ["cold", "resumed"] {
                    let id = format!("{proto}-handshake-{variant}-{label}-r{rep}");
                    let mut c = CellResult::new(
                        &id,
                        proto,
                        "handshake",
                        variant,
                        link(label, rtt, 0.0),
                        rep,
                        rep as u64,
                    );
                    let t = if variant == "resumed" && proto == "h3" {
                        1.0
                    } else {
                        theory
                    };
                    for i in 0..4 {
                        let r = t + 0.05 + 0.01 * (i + rep) as f64;
                        c.push_sample("ttfb_rtt", "RTT", r).unwrap();
                        c.push_sample("ttfb_ms", "ms", r * rtt).unwrap();
                    }
                    c.theory.insert("ttfb_rtt".into(), t);
                    rd.write_cell(&c).unwrap();
                    ids.push(id);
                }
            }
        }
        for proto in ["h3", "h1.1-tls"] {
            let id = format!("{proto}-migration-port-rebind-rtt50-r{rep}");
            let mut c = CellResult::new(
                &id,
                proto,
                "migration",
                "port-rebind",
                link("rtt50", 50.0, 0.0),
                rep,
                9,
            );
            let survived = proto == "h3";
            c.push_sample("survived", "bool", if survived { 1.0 } else { 0.0 })
                .unwrap();
            c.push_sample(
                "disruption_ms",
                "ms",
                if survived { 60.0 } else { 400.0 } + rep as f64,
            )
            .unwrap();
            let stall = if survived { 50.0 } else { 350.0 };
            let pts: Vec<(f64, f64)> = (0..=40)
                .map(|i| {
                    let t = i as f64 * 25.0;
                    let b = if t < 300.0 {
                        t * 1000.0
                    } else if t < 300.0 + stall {
                        300_000.0
                    } else {
                        300_000.0 + (t - 300.0 - stall) * 1000.0
                    };
                    (t, b)
                })
                .collect();
            c.timelines.insert("bytes_vs_time".into(), pts);
            rd.write_cell(&c).unwrap();
            ids.push(id);
        }
    }
    let mut failed = CellResult::new(
        "h2-migration-port-rebind-rtt50-r0",
        "h2",
        "migration",
        "port-rebind",
        link("rtt50", 50.0, 0.0),
        0,
        1,
    );
    failed.status = CellStatus::Failed {
        reason: "server <crashed>".into(),
    };
    rd.write_cell(&failed).unwrap();
    ids.push(failed.cell_id.clone());
    finish_run(
        rd,
        "synthetic <run>",
        BTreeMap::from([("quinn".into(), "0.11.12".into())]),
        ids,
    )
}

/// Write a test run's run.json (its cells are written) and its summary.
fn finish_run(
    rd: RunDir,
    name: &str,
    crate_versions: BTreeMap<String, String>,
    ids: Vec<String>,
) -> RunDir {
    rd.write_meta(&RunMeta {
        schema_version: SCHEMA_VERSION,
        quicbench_version: "0.1.0".into(),
        git_commit: None,
        started: quicbench_results::now_rfc3339(),
        finished: None,
        name: name.into(),
        host: HostInfo::default(),
        crate_versions,
        backend: "userspace".into(),
        backend_reason: "test".into(),
        privileges: None,
        matrix: serde_json::json!({}),
        shard: None,
        seed: 1,
        calibration: None,
        transport_profile: None,
        endpoints: Vec::new(),
        planned_cells: ids.len() as u64,
        cell_ids: ids,
        order_seed: None,
        drift: Vec::new(),
        adaptive: Vec::new(),
    })
    .unwrap();
    rd.resummarize().unwrap();
    rd
}

#[test]
fn site_is_built() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let rd = synthetic_run(base.path());
    // A broken cell file is listed, not fatal.
    fs::write(rd.cell_path("broken"), b"{")?;
    let out = base.path().join("site");
    let index = build_site(&[rd.path().to_path_buf(), rd.path().to_path_buf()], &out)?;
    assert_eq!(index, out.join("index.html"));
    let html = fs::read_to_string(&index)?;
    assert!(html.contains("synthetic &lt;run&gt;"), "escaped name");
    assert!(html.contains("broken.json"));
    assert!(html.contains("data/r0/summary.csv"));
    assert!(html.contains("Runs compared"));
    for page in ["handshake.html", "migration.html", "methodology.html"] {
        assert!(out.join(page).is_file(), "{page}");
        assert!(html.contains(&format!("href=\"{page}\"")), "{page} linked");
    }
    let hs = fs::read_to_string(out.join("handshake.html"))?;
    assert!(hs.contains("charts/r0-handshake-rtt20000-rate0.svg"));
    assert!(hs.contains("charts/r1-handshake-rtt20000-rate0.svg"));
    let mig = fs::read_to_string(out.join("migration.html"))?;
    assert!(
        mig.contains("charts/r0-migration-port-rebind-rtt50.svg"),
        "{mig}"
    );
    assert!(mig.contains("3/3") && mig.contains("0/3"), "survival table");
    for e in fs::read_dir(out.join("charts"))? {
        let p = e?.path();
        let svg = fs::read_to_string(&p)?;
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{}",
            p.display()
        );
    }
    assert!(out.join("data/r1/run.json").exists());
    assert!(out
        .join("data/r0/cells/h3-migration-port-rebind-rtt50-r0.json")
        .exists());
    // Building again over an existing site works.
    build_site(&[rd.path().to_path_buf()], &out)?;
    assert!(build_site(&[], &out).is_err());
    Ok(())
}

/// Every chart file of a site but the implementations page's, by name.
fn protocol_charts(site: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(site.join("charts"))? {
        let p = e?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains("-impl-") {
            out.insert(name, fs::read_to_string(&p)?);
        }
    }
    Ok(out)
}

#[test]
fn third_party_pairs_leave_the_protocol_views_alone() -> anyhow::Result<()> {
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    let ours = synthetic_run_with(a.path(), false);
    let mixed = synthetic_run_with(b.path(), true);
    // Comparisons of every arm, as the harness writes them: the report keeps
    // the rows whose two arms are our own pair.
    for rd in [&ours, &mixed] {
        let cells = rd.read_cells()?;
        rd.write_comparisons(&quicbench_results::comparisons(
            &cells,
            &[],
            quicbench_results::infer::RUN_CORRECTION,
        ))?;
    }
    let (ro, rm) = (load_run(ours.path())?, load_run(mixed.path())?);
    let ids = |r: &RunData| {
        r.cells
            .iter()
            .map(|c| c.cell_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&ro), ids(&rm));
    assert_eq!(ro.rows, rm.rows, "our pair's summary rows only");
    assert!(rm.impl_rows.len() > rm.rows.len());
    assert!(rm.impl_cells.len() > rm.cells.len() && rm.has_other_endpoints());
    assert!(!ro.has_other_endpoints());
    assert!(rm.comparisons.iter().all(|c| c.server_a == "quicbench"
        && c.client_a == "quicbench"
        && c.server_b == "quicbench"
        && c.client_b == "quicbench"));
    assert_eq!(
        ro.comparisons
            .iter()
            .map(|c| (&c.metric, c.ratio))
            .collect::<Vec<_>>(),
        rm.comparisons
            .iter()
            .map(|c| (&c.metric, c.ratio))
            .collect::<Vec<_>>()
    );

    let (so, sm) = (a.path().join("site"), b.path().join("site"));
    build_site(&[ours.path().to_path_buf()], &so)?;
    build_site(&[mixed.path().to_path_buf()], &sm)?;
    let (co, cm) = (protocol_charts(&so)?, protocol_charts(&sm)?);
    assert!(!co.is_empty());
    assert_eq!(co.keys().collect::<Vec<_>>(), cm.keys().collect::<Vec<_>>());
    for (name, svg) in &co {
        assert!(cm[name] == *svg, "{name} differs with third-party pairs");
    }
    // The page and its link exist only with other pairs.
    assert!(!so.join(implementations::FILE).exists());
    assert!(!fs::read_to_string(so.join("index.html"))?.contains(implementations::FILE));
    assert!(sm.join(implementations::FILE).is_file());
    let index = fs::read_to_string(sm.join("index.html"))?;
    assert!(index.contains("href=\"implementations.html\""));
    // The matrix overview on the index has ours only: no ngtcp2 cell listed.
    assert!(
        !index.contains("ngtcp2-quicbench-r0"),
        "third-party cells kept off the index"
    );
    Ok(())
}

#[test]
fn heatmap_marks_not_applicable_failed_and_ok_pairs() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let rd = synthetic_run_with(base.path(), true);
    let run = load_run(rd.path())?;
    let site = base.path().join("site");
    build_site(&[rd.path().to_path_buf()], &site)?;
    let h3 = fs::read_to_string(site.join("charts/r0-impl-handshake-cold-h3-rtt20.svg"))?;
    let h2 = fs::read_to_string(site.join("charts/r0-impl-handshake-cold-h2-rtt20.svg"))?;
    assert!(h3.starts_with("<svg") && h3.trim_end().ends_with("</svg>"));
    // Failed: a red ✗ with the reason in the tooltip.
    assert!(
        h3.contains("<title>quicbench → aioquic, h3: failed (3 of 3 cells): aioquic client: handshake timeout &lt;interop&gt;</title>"),
        "{h3}"
    );
    assert!(h3.contains(">✗</text>"));
    // Ok: the median of the pair's summary row, its interval in the tooltip.
    let row = |s: &str, c: &str| {
        run.impl_rows
            .iter()
            .find(|r| {
                r.protocol == "h3"
                    && r.variant == "cold"
                    && r.link == "rtt20"
                    && r.metric == "ttfb_ms"
                    && r.server == s
                    && r.client == c
            })
            .cloned()
    };
    let theirs = row("ngtcp2", "quicbench").expect("row of ngtcp2 → quicbench");
    let ours = row("quicbench", "quicbench").expect("row of our pair");
    assert!(h3.contains(&format!(
        ">{} ms</text>",
        charts::format_value(theirs.median)
    )));
    assert!(h3.contains(&format!(">{} ms</text>", charts::format_value(ours.median))));
    assert!(h3.contains(&format!(
        "<title>ngtcp2 → quicbench, h3: ttfb_ms median {} ms [",
        html::num(theirs.median)
    )));
    assert!(h3.contains(&format!(
        "×{} vs ours (quicbench → quicbench)",
        impl_charts::ratio_text(theirs.median / ours.median)
    )));
    // Not applicable: hatched grey "n/a", the reason in the tooltip; a pair
    // that does not run h2 at all (ngtcp2 → ngtcp2) is blank.
    assert!(h2.contains(">n/a</text>"));
    assert!(
        h2.contains("<title>ngtcp2 → quicbench, h2: not applicable: ngtcp2 speaks h3 only</title>")
    );
    assert!(!h2.contains("ngtcp2 → ngtcp2") && !h2.contains("<title>quicbench → aioquic"));
    assert!(h3.contains("<title>ngtcp2 → ngtcp2, h3:"));
    // Migration: the survived share; our pair recorded no completion_ms.
    let mig = fs::read_to_string(site.join("charts/r0-impl-migration-port-rebind-h3-rtt50.svg"))?;
    assert!(mig.contains(">survived 2/3</text>"), "{mig}");
    assert!(mig.contains("3 ok cell(s) without completion_ms"));
    // The page: versions, the range plot and its text, the not-ok list.
    let page = fs::read_to_string(site.join(implementations::FILE))?;
    assert!(page.contains("ngtcp2 1.2.3") && page.contains("ngtcp2 &lt;notes&gt;"));
    assert!(page.contains("charts/r0-impl-range-handshake-cold-rtt20.svg"));
    assert!(page.contains("h3: implementation spread "), "{page}");
    assert!(page.contains("h3 vs h2 (ours): "));
    assert!(page.contains("aioquic client: handshake timeout &lt;interop&gt;"));
    assert!(page.contains("<title>"), "SVGs inline, so tooltips work");
    Ok(())
}

fn summary_row(protocol: &str, server: &str, client: &str, median: f64) -> SummaryRow {
    SummaryRow {
        protocol: protocol.into(),
        workload: "handshake".into(),
        link: "rtt20".into(),
        metric: "ttfb_ms".into(),
        unit: "ms".into(),
        median,
        ci_low: Some(median * 0.9),
        ci_high: Some(median * 1.1),
        n: 6,
        variant: "cold".into(),
        ci_method: "order-statistic".into(),
        ci_confidence: Some(0.95),
        mean: median,
        std: None,
        min: median,
        p90: median,
        p99: median,
        max: median,
        cells: 6,
        source: "samples".into(),
        samples: 24,
        cc: String::new(),
        server: server.into(),
        client: client.into(),
    }
}

#[test]
fn spread_text_holds_the_protocol_gap_against_the_implementation_spread() {
    use implementations::{spread_text, Arm};
    let arm = |p: &str, s: &str, c: &str, m: f64| Arm {
        server: s.into(),
        client: c.into(),
        row: summary_row(p, s, c, m),
    };
    let rows = vec![
        (
            "h2".to_string(),
            vec![arm("h2", "quicbench", "quicbench", 8.642_857)],
        ),
        (
            "h3".to_string(),
            vec![
                arm("h3", "quicbench", "quicbench", 12.1),
                arm("h3", "ngtcp2", "quicbench", 30.4),
                arm("h3", "quic-go", "ngtcp2", 20.0),
            ],
        ),
    ];
    assert_eq!(
        spread_text(&rows, "ms"),
        "h3: implementation spread 12.1–30.4 ms (2.5×); h3 vs h2 (ours): 1.4×"
    );
    // Both with a spread; the gap the other way round; a protocol without
    // our own pair has a spread but no gap.
    let rows = vec![
        (
            "h2".to_string(),
            vec![
                arm("h2", "quicbench", "quicbench", 10.0),
                arm("h2", "nginx", "quicbench", 11.0),
            ],
        ),
        (
            "h3".to_string(),
            vec![
                arm("h3", "quicbench", "quicbench", 7.0),
                arm("h3", "ngtcp2", "quicbench", 70.0),
            ],
        ),
        (
            "h1.1".to_string(),
            vec![
                arm("h1.1", "nginx", "curl", 5.0),
                arm("h1.1", "nginx", "wget", 6.0),
            ],
        ),
    ];
    assert_eq!(
        spread_text(&rows, "ms"),
        "h2: implementation spread 10.0–11.0 ms (1.1×); h2 vs h3 (ours): 1.4×. \
         h3: implementation spread 7.00–70.0 ms (10×); h3 vs h2 (ours): 0.70×. \
         h1.1: implementation spread 5.00–6.00 ms (1.2×)"
    );
    assert_eq!(spread_text(&rows[..1], "ms").matches(" vs ").count(), 0);
}

/// A small synthetic fairness run: `h3+h2` with Cubic (the matrix's
/// controller) and `h3@bbr+h2@cubic` (controllers per flow), 3 repetitions
/// each on one 20 Mbit/s link, with the metrics, timelines and `extra` the
/// harness writes (harness/src/fairness/cell.rs).
fn fairness_run(base: &Path) -> RunDir {
    let rd = RunDir::create(base, "fair").unwrap();
    let mut ids = Vec::new();
    let l = LinkInfo {
        rate_bps: Some(20_000_000),
        up: "limit 51 delay 10ms rate 20mbit".into(),
        down: "limit 51 delay 10ms rate 20mbit".into(),
        ..link("rtt20-20mbit", 20.0, 0.0)
    };
    for (mix, cc, groups, h3_share) in [
        ("h3+h2", Some("cubic"), ["h3", "h2"], 0.6),
        ("h3@bbr+h2@cubic", None, ["h3@bbr", "h2@cubic"], 0.9),
    ] {
        for rep in 0..3u32 {
            let id = format!("fairness-{}__h3__r{rep}", mix.replace('@', "="));
            let mut c = CellResult::new(&id, "h3", "fairness", mix, l.clone(), rep, 3);
            c.params = serde_json::json!({ "cc": cc, "window_ms": 500 });
            let share = h3_share + 0.01 * rep as f64;
            let (a, b) = (19.0 * share, 19.0 * (1.0 - share));
            let jain = (a + b).powi(2) / (2.0 * (a * a + b * b));
            for (m, u, v) in [
                ("jain_index", "index", jain),
                ("link_jain_index", "index", jain - 0.001),
                ("total_mbps", "Mbit/s", 19.0),
                ("utilisation", "fraction", 0.95),
                ("queue_delay_p50_ms", "ms", 16.0 + rep as f64),
                ("queue_delay_p99_ms", "ms", 20.0),
                ("converged", "fraction", if rep == 0 { 1.0 } else { 0.0 }),
            ] {
                c.push_sample(m, u, v).unwrap();
            }
            if rep == 0 {
                c.push_sample("convergence_ms", "ms", 1500.0).unwrap();
            }
            for (g, s) in groups.iter().zip([share, 1.0 - share]) {
                c.push_sample(&format!("share_{g}"), "fraction", s).unwrap();
                c.push_sample(&format!("norm_share_{g}"), "ratio", 2.0 * s)
                    .unwrap();
                c.push_sample(&format!("link_share_{g}"), "fraction", s + 0.002)
                    .unwrap();
            }
            for (i, r) in [a, b].iter().enumerate() {
                c.push_sample("flow_mbps", "Mbit/s", *r).unwrap();
                let start = 7.0 * i as f64;
                let tl: Vec<(f64, f64)> = (0..19).map(|k| (start + 500.0 * k as f64, *r)).collect();
                c.timelines.insert(
                    format!("link_flow{i}_mbps"),
                    tl.iter().map(|p| (p.0, p.1 * 1.027)).collect(),
                );
                c.timelines.insert(format!("flow{i}_mbps"), tl);
            }
            c.timelines.insert(
                "queue_delay_ms".into(),
                (0..100)
                    .map(|k| (k as f64 * 100.0, 15.0 + (k % 7) as f64))
                    .collect(),
            );
            let flows: Vec<serde_json::Value> = groups
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let (p, fcc) = g.split_once('@').unwrap_or((g, cc.unwrap_or("")));
                    serde_json::json!({ "flow": i, "protocol": p, "cc": fcc, "label": g,
                        "start_ms": 7.0 * i as f64, "end_ms": 10_000.0 })
                })
                .collect();
            c.extra.insert("flows".into(), serde_json::json!(flows));
            c.extra.insert(
                "fairness".into(),
                serde_json::json!({ "mix": mix, "duration_ms": 10_000, "stagger_ms": 0,
                    "window_ms": 500, "tolerance": 0.1 }),
            );
            rd.write_cell(&c).unwrap();
            ids.push(id);
        }
    }
    finish_run(rd, "fair", BTreeMap::new(), ids)
}

#[test]
fn fairness_page_has_stacked_charts_and_shares_with_intervals() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let rd = fairness_run(base.path());
    let run = load_run(rd.path())?;
    let out = base.path().join("site");
    build_site(&[rd.path().to_path_buf()], &out)?;
    let page = fs::read_to_string(out.join("fairness.html"))?;
    assert!(page.contains("<h1>Sharing a bottleneck</h1>"));
    assert!(page.contains("methodology.md#fairness-sharing-a-bottleneck"));
    // One stacked chart per mix × link × controller.
    for chart in [
        "charts/r0-fairness-h3_h2-cubic-rtt20-20mbit.svg",
        "charts/r0-fairness-h3_bbr_h2_cubic-rtt20-20mbit.svg",
    ] {
        assert!(page.contains(chart), "{chart} on the page");
        let svg = fs::read_to_string(out.join(chart))?;
        assert!(svg.contains("<polygon"), "{chart}: stacked areas");
        assert!(svg.contains("link rate 20 Mbit/s") && svg.contains("queueing delay"));
        assert!(svg.contains("#0072B2") && svg.contains("#D55E00"));
    }
    let svg = fs::read_to_string(out.join("charts/r0-fairness-h3_bbr_h2_cubic-rtt20-20mbit.svg"))?;
    assert!(svg.contains("flow 0 h3@bbr") && svg.contains("flow 1 h2@cubic"));
    // The median Jain's index of 3 repetitions is r1's.
    assert!(svg.contains("r1 of 3 cells"), "representative cell named");
    // The shares table: each group's share and normalised share with the
    // summary row's interval; convergence counted over cells.
    let share = run
        .rows
        .iter()
        .find(|r| r.variant == "h3@bbr+h2@cubic" && r.metric == "share_h3@bbr")
        .expect("share row");
    assert!(share.ci_low.is_some(), "3 cells: an interval");
    assert!(page.contains("share of the bytes (clients)"));
    assert!(
        page.contains(&html::median_ci(share)),
        "share with its interval"
    );
    let norm = run
        .rows
        .iter()
        .find(|r| r.variant == "h3+h2" && r.cc == "cubic" && r.metric == "norm_share_h2")
        .expect("normalised share row");
    assert!(page.contains(&html::median_ci(norm)));
    assert!(page.contains("h3@bbr:") && page.contains("h2@cubic:"));
    assert!(page.contains("1 of 3 cells converged"));
    // The summary table keeps the controller apart.
    assert!(page.contains("<th>controller</th>"));
    // The finding on the overview.
    let index = fs::read_to_string(out.join("index.html"))?;
    assert!(
        index.contains("Sharing a bottleneck (20 ms RTT, 20 Mbit/s):"),
        "{index}"
    );
    assert!(
        index.contains(
            "got 0.61 of the bottleneck against h2 (fair: 0.5, cubic for all; Jain 0.95)"
        ),
        "{index}"
    );
    assert!(index.contains("href=\"fairness.html\""));
    Ok(())
}

#[test]
fn a_run_without_fairness_cells_has_no_fairness_page() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let rd = synthetic_run(base.path());
    let out = base.path().join("site");
    build_site(&[rd.path().to_path_buf()], &out)?;
    assert!(!out.join("fairness.html").exists());
    let index = fs::read_to_string(out.join("index.html"))?;
    assert!(!index.contains("fairness.html") && !index.contains("Sharing a bottleneck"));
    assert!(!fs::read_dir(out.join("charts"))?
        .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains("fairness"))));
    Ok(())
}

#[test]
fn per_group_metrics_rank_by_their_pattern() {
    let r = |m: &str| metric_rank("fairness", m);
    assert!(r("jain_index") < r("share_h3"));
    assert!(r("share_h3@bbr") < r("norm_share_h2@cubic"));
    assert!(r("norm_share_h2") < r("convergence_ms"));
    assert!(r("queue_delay_p50_ms") < r("link_share_h3"));
    assert_eq!(r("link_share_h3").0, r("link_share_h2@cubic").0);
    assert!(r("link_share_h3") < r("zzz"));
    assert_eq!(r("share_").0, r("zzz").0, "a prefix alone is no metric");
}

/// The lost-flight handshake modes (tens of RTTs) get a chart of their own
/// beside cold and resumed, with their theory marked.
#[test]
fn lost_flight_handshakes_have_their_own_chart() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let rd = synthetic_run(base.path());
    for rep in 0..3u32 {
        for (proto, theory_ms) in [("h2", 1080.0), ("h3", 1059.0)] {
            let id = format!("{proto}-handshake-server-flight-lost-rtt20-r{rep}");
            let mut c = CellResult::new(
                &id,
                proto,
                "handshake",
                "server-flight-lost",
                link("rtt20", 20.0, 0.0),
                rep,
                rep as u64,
            );
            for i in 0..3 {
                let ms = theory_ms + 5.0 + i as f64;
                c.push_sample("ttfb_ms", "ms", ms).unwrap();
                c.push_sample("ttfb_rtt", "RTT", ms / 20.0).unwrap();
            }
            c.theory.insert("ttfb_ms".into(), theory_ms);
            c.theory.insert("ttfb_rtt".into(), theory_ms / 20.0);
            rd.write_cell(&c).unwrap();
        }
    }
    rd.resummarize().unwrap();
    let run = crate::data::load_run(rd.path())?;
    let out = base.path().join("site");
    fs::create_dir_all(out.join("charts"))?;
    let figs = crate::workloads::handshake_charts(&run, 0, &out)?;
    let keys: Vec<&str> = figs.iter().map(|f| f.key.as_str()).collect();
    assert!(keys.contains(&"handshake-rtt20000-rate0"), "{keys:?}");
    assert!(keys.contains(&"handshake-rtt20000-rate0-lost"), "{keys:?}");
    assert!(
        !keys.contains(&"handshake-rtt200000-rate0-lost"),
        "{keys:?}"
    );
    let lost = fs::read_to_string(out.join("charts/r0-handshake-rtt20000-rate0-lost.svg"))?;
    assert!(
        lost.contains("server-flight-lost"),
        "the mode labels its group"
    );
    assert!(!lost.contains(">cold<"), "cold stays on the other chart");
    let plain = fs::read_to_string(out.join("charts/r0-handshake-rtt20000-rate0.svg"))?;
    assert!(!plain.contains("flight-lost"));
    Ok(())
}
