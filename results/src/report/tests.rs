use super::*;
use crate::schema::{CellStatus, HostInfo, LinkInfo, SCHEMA_VERSION};

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
    let rd = RunDir::create(base, "synthetic").unwrap();
    let mut ids = Vec::new();
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
    rd.write_meta(&RunMeta {
        schema_version: SCHEMA_VERSION,
        quicbench_version: "0.1.0".into(),
        git_commit: None,
        started: crate::now_rfc3339(),
        finished: None,
        name: "synthetic <run>".into(),
        host: HostInfo::default(),
        crate_versions: BTreeMap::from([("quinn".into(), "0.11.12".into())]),
        backend: "userspace".into(),
        backend_reason: "test".into(),
        matrix: serde_json::json!({}),
        shard: None,
        seed: 1,
        calibration: None,
        planned_cells: ids.len() as u64,
        cell_ids: ids,
    })
    .unwrap();
    rd.resummarize().unwrap();
    rd
}

#[test]
fn bar_groups_order_links_and_protocols() {
    let base = tempfile::tempdir().unwrap();
    let rd = synthetic_run(base.path());
    let run = load_run(rd.path()).unwrap();
    let (protocols, groups, unit) =
        bar_groups(&run.cells, &run.rows, "handshake", "resumed", "ttfb_rtt");
    assert_eq!(protocols, vec!["h1.1-tls", "h2", "h3"]);
    assert_eq!(unit, "RTT");
    assert_eq!(
        groups.iter().map(|g| g.label.as_str()).collect::<Vec<_>>(),
        vec!["rtt20", "rtt200"]
    );
    let h3 = groups[0].bars.iter().find(|b| b.protocol == "h3").unwrap();
    assert_eq!(h3.theory, Some(1.0));
    assert!(h3.ci_exact, "12 samples: order-statistic CI");
    let (lo, hi) = h3.ci.unwrap();
    assert!(lo <= h3.value && h3.value <= hi);
    // Fractions: mean, no whiskers.
    let (_, g, unit) = bar_groups(
        &run.cells,
        &run.rows,
        "migration",
        "port-rebind",
        "survived",
    );
    assert_eq!(unit, "bool");
    let h3 = g[0].bars.iter().find(|b| b.protocol == "h3").unwrap();
    assert_eq!((h3.value, h3.ci), (1.0, None));
    assert!(bar_groups(&run.cells, &run.rows, "nope", "x", "y")
        .1
        .is_empty());

    let svg = handshake_ttfb_rtt_svg(&run.cells, &run.rows, "cold")
        .unwrap()
        .unwrap();
    assert!(svg.contains("round trips") && svg.contains("theory"));
    assert!(handshake_ttfb_rtt_svg(&run.cells, &run.rows, "absent")
        .unwrap()
        .is_none());
}

#[test]
fn site_is_built() {
    let base = tempfile::tempdir().unwrap();
    let rd = synthetic_run(base.path());
    // A broken cell file is listed, not fatal.
    fs::write(rd.cell_path("broken"), b"{").unwrap();
    let out = base.path().join("site");
    let index = build_site(&[rd.path().to_path_buf(), rd.path().to_path_buf()], &out).unwrap();
    assert_eq!(index, out.join("index.html"));
    let html = fs::read_to_string(&index).unwrap();
    assert!(html.contains("synthetic &lt;run&gt;"), "escaped name");
    assert!(html.contains("broken.json"));
    assert!(html.contains("not distinguishable") || html.contains("of h3"));
    assert!(html.contains("data/r0/summary.csv"));
    let charts: Vec<String> = fs::read_dir(out.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in [
        "r0-handshake-cold-ttfb_rtt.svg",
        "r0-handshake-resumed-ttfb_ms.svg",
        "r0-migration-port-rebind-survived.svg",
        "r0-migration-port-rebind-rtt50-bytes_vs_time.svg",
        "r1-handshake-cold-ttfb_rtt.svg",
    ] {
        assert!(charts.iter().any(|c| c == want), "{want} not in {charts:?}");
        assert!(
            html.contains(&format!("charts/{want}")),
            "{want} not linked"
        );
    }
    for c in &charts {
        let svg = fs::read_to_string(out.join("charts").join(c)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{c}"
        );
    }
    assert!(out.join("data/r1/run.json").exists());
    // Building again over an existing site works.
    build_site(&[rd.path().to_path_buf()], &out).unwrap();
    assert!(build_site(&[], &out).is_err());
    // Keep a copy to look at, when asked.
    if let Ok(dir) = std::env::var("QUICBENCH_KEEP_SITE") {
        let _ = fs::create_dir_all(&dir);
        for c in &charts {
            let _ = fs::copy(out.join("charts").join(c), Path::new(&dir).join(c));
        }
        let _ = fs::copy(&index, Path::new(&dir).join("index.html"));
    }
}

#[test]
fn numbers_are_formatted_for_people() {
    assert_eq!(num(123.456), "123.5");
    assert_eq!(num(0.012345), "0.01235");
    assert_eq!(num(3.0), "3.000");
    assert_eq!(num(12345.6), "12346");
    assert_eq!(num(0.0), "0");
    assert_eq!(num(2e-5), "2.000e-5");
    assert_eq!(
        esc("<a href='x'>&\""),
        "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
    );
    assert_eq!(slug("a/b c.svg"), "a_b_c.svg");
}
