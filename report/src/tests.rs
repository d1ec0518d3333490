use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use quicbench_results::{
    CellResult, CellStatus, HostInfo, LinkInfo, RunDir, RunMeta, SCHEMA_VERSION,
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
        started: quicbench_results::now_rfc3339(),
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
        transport_profile: None,
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
