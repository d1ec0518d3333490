use super::*;
use crate::hist::HistogramData;
use crate::schema::{CellStatus, HostInfo, LinkInfo};
use std::collections::BTreeMap;

fn link(label: &str, rtt: f64) -> LinkInfo {
    LinkInfo {
        label: label.into(),
        up: format!("delay {}ms", rtt / 2.0),
        down: format!("delay {}ms", rtt / 2.0),
        rtt_ms: rtt,
        loss: 0.0,
        rate_bps: None,
    }
}

fn cell(id: &str, proto: &str, var: &str, lnk: &str, rep: u32, ttfb: &[f64]) -> CellResult {
    let mut c = CellResult::new(
        id,
        proto,
        "handshake",
        var,
        link(lnk, 50.0),
        rep,
        7 + rep as u64,
    );
    c.started = "2026-11-24T06:00:00Z".into();
    c.finished = "2026-11-24T06:00:01.5Z".into();
    c.duration_s = 1.5;
    for &v in ttfb {
        c.push_sample("ttfb_ms", "ms", v).unwrap();
    }
    c.theory.insert("ttfb_rtt".into(), 3.0);
    c
}

fn rich_cell() -> CellResult {
    let mut c = cell(
        "h3-hol-rtt50-r0",
        "h3",
        "paced",
        "rtt50",
        0,
        &[1.0, 2.5, 3.25],
    );
    c.workload = "hol".into();
    c.params = serde_json::json!({"requests": 20, "size": 1024});
    c.histograms.insert(
        "latency".into(),
        HistogramData::from_values(&[100, 200, 300], "us").unwrap(),
    );
    c.records = Some(serde_json::json!([{"i": 0, "ttfb_ms": 1.0}]));
    c.timelines
        .insert("bytes_vs_time".into(), vec![(0.0, 0.0), (10.5, 1200.0)]);
    c.link_counters = Some(serde_json::json!({"up": {"sent": 10, "dropped": 1}}));
    c.tls = Some(serde_json::json!({"version": "TLSv1.3", "alpn": "h3", "resumed": false}));
    c.notes.push("a note".into());
    c
}

fn meta(name: &str, shard: Option<(u32, u32)>, ids: Vec<String>) -> RunMeta {
    RunMeta {
        schema_version: SCHEMA_VERSION,
        quicbench_version: "0.1.0".into(),
        git_commit: Some("abc".into()),
        started: "2026-11-24T06:00:00Z".into(),
        finished: Some("2026-11-24T07:00:00Z".into()),
        name: name.into(),
        host: HostInfo {
            hostname: "h".into(),
            kernel: "6.1".into(),
            cpu_model: "cpu".into(),
            cores: 2,
            memory_bytes: 1 << 30,
        },
        crate_versions: BTreeMap::from([("quinn".to_string(), "0.11.12".to_string())]),
        backend: "userspace".into(),
        backend_reason: "no sch_netem".into(),
        privileges: None,
        matrix: serde_json::json!({"protocols": ["h2", "h3"], "reps": 3}),
        shard,
        seed: 1,
        calibration: None,
        transport_profile: None,
        endpoints: Vec::new(),
        planned_cells: 12,
        cell_ids: ids,
        order_seed: None,
        drift: Vec::new(),
        adaptive: Vec::new(),
    }
}

fn t0() -> time::OffsetDateTime {
    time::macros::datetime!(2026-11-24 06:01:02 UTC)
}

#[test]
fn create_names_directories_by_utc_time() {
    let base = tempfile::tempdir().unwrap();
    let a = RunDir::create_at(base.path(), "smoke", t0()).unwrap();
    assert_eq!(a.path(), base.path().join("20261124T060102Z-smoke"));
    assert!(a.cells_dir().is_dir());
    let b = RunDir::create_at(base.path(), "smoke", t0()).unwrap();
    assert_eq!(b.path(), base.path().join("20261124T060102Z-smoke-2"));
    let now = RunDir::create(base.path(), "now").unwrap();
    assert!(now
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("Z-now"));
    for bad in ["", "a/b", "../x", ".hidden", "sp ace"] {
        assert!(
            RunDir::create_at(base.path(), bad, t0()).is_err(),
            "{bad:?}"
        );
    }
    let err = RunDir::open(&base.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn cell_and_meta_round_trip() {
    let base = tempfile::tempdir().unwrap();
    let rd = RunDir::create_at(base.path(), "rt", t0()).unwrap();
    let m = meta("rt", Some((0, 2)), vec!["a".into()]);
    rd.write_meta(&m).unwrap();
    assert_eq!(rd.read_meta().unwrap(), m);
    let c = rich_cell();
    rd.write_cell(&c).unwrap();
    let mut failed = cell("f", "h2", "cold", "rtt50", 0, &[]);
    failed.status = CellStatus::Failed {
        reason: "server did not start".into(),
    };
    rd.write_cell(&failed).unwrap();
    let back = rd.read_cells().unwrap();
    assert_eq!(back, vec![failed.clone(), c.clone()]);
    let reopened = RunDir::open(rd.path()).unwrap();
    let scan = reopened.scan_cells().unwrap();
    assert_eq!(
        scan.finished,
        BTreeSet::from(["f".to_string(), c.cell_id.clone()])
    );
    assert_eq!(scan.failed, BTreeSet::from(["f".to_string()]));
    // Status is tagged JSON.
    let text = fs::read_to_string(rd.cell_path("f")).unwrap();
    assert!(text.contains(r#""kind": "failed""#), "{text}");
}

#[test]
fn serialized_field_names_match_the_documented_schema() {
    let v = serde_json::to_value(rich_cell()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut want = vec![
        "schema_version",
        "cell_id",
        "protocol",
        "workload",
        "variant",
        "link",
        "repetition",
        "seed",
        "params",
        "status",
        "started",
        "finished",
        "duration_s",
        "metrics",
        "histograms",
        "records",
        "timelines",
        "link_counters",
        "tls",
        "theory",
        "notes",
    ];
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want);
    let doc = include_str!("../../../docs/results-schema.md");
    for k in want {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/results-schema.md lacks `{k}`"
        );
    }
    let m = serde_json::to_value(meta("x", None, vec![])).unwrap();
    for k in m.as_object().unwrap().keys() {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/results-schema.md lacks `{k}`"
        );
    }
    for k in SUMMARY_COLUMNS {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/results-schema.md lacks `{k}`"
        );
    }
}

#[test]
fn write_cell_refuses_what_json_cannot_carry() {
    let base = tempfile::tempdir().unwrap();
    let rd = RunDir::create_at(base.path(), "v", t0()).unwrap();
    let mut c = cell("nan", "h3", "cold", "l", 0, &[1.0, f64::NAN]);
    let err = rd.write_cell(&c).unwrap_err().to_string();
    assert!(err.contains("metrics.ttfb_ms.samples[1] is NaN"), "{err}");
    c.metrics.clear();
    c.timelines.insert("t".into(), vec![(f64::INFINITY, 1.0)]);
    assert!(rd
        .write_cell(&c)
        .unwrap_err()
        .to_string()
        .contains("timelines.t[0].t"));
    let bad_id = cell("../escape", "h3", "cold", "l", 0, &[1.0]);
    assert!(rd
        .write_cell(&bad_id)
        .unwrap_err()
        .to_string()
        .contains("cell id"));
    let mut c = cell("u", "h3", "cold", "l", 0, &[1.0]);
    let err = c.push_sample("ttfb_ms", "s", 1.0).unwrap_err().to_string();
    assert!(err.contains("unit \"s\""), "{err}");
    assert!(fs::read_dir(rd.cells_dir()).unwrap().next().is_none());
}

#[test]
fn stray_temp_and_truncated_files_are_not_finished() {
    let base = tempfile::tempdir().unwrap();
    let rd = RunDir::create_at(base.path(), "crash", t0()).unwrap();
    let good = cell("good", "h3", "cold", "l", 0, &[1.0, 2.0]);
    rd.write_cell(&good).unwrap();
    let full = fs::read(rd.cell_path("good")).unwrap();
    // A crash mid-write leaves a temporary file; the real file is untouched.
    let stray = rd.cells_dir().join(".good.json.tmp-999-0");
    fs::write(&stray, &full[..full.len() / 2]).unwrap();
    // A cell file cut short (written by something non-atomic, or disk full).
    let cut = rd.cell_path("cut");
    let bytes = serde_json::to_vec_pretty(&cell("cut", "h2", "cold", "l", 0, &[3.0])).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    // A file whose content belongs to another cell.
    fs::write(rd.cell_path("renamed"), &full).unwrap();

    let scan = rd.scan_cells().unwrap();
    assert_eq!(scan.finished, BTreeSet::from(["good".to_string()]));
    assert_eq!(scan.temp_files, vec![stray.clone()]);
    assert_eq!(scan.invalid.len(), 2);
    let (p, e) = &scan.invalid[0];
    assert_eq!(p, &cut);
    assert!(e.contains("cut.json") && e.contains("line"), "{e}");
    assert!(
        scan.invalid[1].1.contains("holds cell_id \"good\""),
        "{}",
        scan.invalid[1].1
    );
    assert_eq!(rd.finished_cells().unwrap(), scan.finished);

    // read_cells is strict and names the file, line and column.
    let err = rd.read_cells().unwrap_err().to_string();
    assert!(err.contains("cut.json") && err.contains("column"), "{err}");

    // Resume: the cell is written again, atomically replacing the bad file.
    rd.write_cell(&cell("cut", "h2", "cold", "l", 0, &[3.0]))
        .unwrap();
    fs::remove_file(rd.cell_path("renamed")).unwrap();
    assert_eq!(rd.read_cells().unwrap().len(), 2);
    assert_eq!(rd.remove_temp_files().unwrap(), vec![stray.clone()]);
    assert!(!stray.exists());
    assert_eq!(fs::read(rd.cell_path("good")).unwrap(), full);
}

#[test]
fn other_schema_versions_are_named() {
    let base = tempfile::tempdir().unwrap();
    let rd = RunDir::create_at(base.path(), "ver", t0()).unwrap();
    let mut v = serde_json::to_value(cell("old", "h3", "cold", "l", 0, &[1.0])).unwrap();
    v["schema_version"] = 99.into();
    fs::write(rd.cell_path("old"), serde_json::to_vec(&v).unwrap()).unwrap();
    let err = rd.read_cells().unwrap_err().to_string();
    assert!(
        err.contains("old.json") && err.contains("schema version 99"),
        "{err}"
    );
    let mut m = serde_json::to_value(meta("ver", None, vec![])).unwrap();
    m["schema_version"] = 2.into();
    fs::write(rd.meta_path(), serde_json::to_vec(&m).unwrap()).unwrap();
    let err = rd.read_meta().unwrap_err().to_string();
    assert!(
        err.contains("run.json") && err.contains("schema version 2"),
        "{err}"
    );
    let mut bad = meta("ver", None, vec![]);
    bad.schema_version = 0;
    assert!(rd.write_meta(&bad).is_err());
}

#[test]
fn summary_pools_repetitions() {
    let cells = vec![
        cell("h3-r0", "h3", "cold", "rtt50", 0, &[10.0, 11.0, 12.0, 13.0]),
        cell("h3-r1", "h3", "cold", "rtt50", 1, &[14.0, 15.0, 16.0, 17.0]),
        cell("h3-r2", "h3", "cold", "rtt50", 2, &[18.0, 19.0, 20.0, 21.0]),
        cell("h2-r0", "h2", "cold", "rtt50", 0, &[30.0, 31.0]),
        {
            let mut f = cell("h2-r1", "h2", "cold", "rtt50", 1, &[999.0]);
            f.status = CellStatus::Failed { reason: "x".into() };
            f
        },
        {
            let mut s = cell("h2-r2", "h2", "cold", "rtt50", 2, &[999.0]);
            s.status = CellStatus::Skipped { reason: "y".into() };
            s
        },
        {
            let mut c = cell("h3-hist", "h3", "resumed", "rtt50", 0, &[]);
            c.metrics.clear();
            c.histograms.insert(
                "latency".into(),
                HistogramData::from_values(&(1..=100).collect::<Vec<u64>>(), "us").unwrap(),
            );
            c
        },
    ];
    let rows = summarize(&cells);
    let keys: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.protocol.as_str(), r.variant.as_str(), r.metric.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("h2", "cold", "ttfb_ms"),
            ("h3", "cold", "ttfb_ms"),
            ("h3", "resumed", "latency")
        ]
    );
    let h2 = &rows[0];
    assert_eq!(
        (h2.n, h2.cells, h2.samples, h2.median),
        (1, 1, 2, 30.5),
        "failed/skipped cells excluded"
    );
    assert_eq!(h2.ci_method, "n too small");
    assert_eq!(
        (h2.ci_low, h2.ci_high, h2.ci_confidence),
        (None, None, None)
    );
    let h3 = &rows[1];
    // The cell is the unit: three cells whose medians are 11.5, 15.5, 19.5.
    assert_eq!((h3.n, h3.cells, h3.samples, h3.median), (3, 3, 12, 15.5));
    assert_eq!(h3.ci_method, "cluster-bootstrap");
    let (lo, hi) = (h3.ci_low.unwrap(), h3.ci_high.unwrap());
    assert!(
        (10.0..=12.0).contains(&lo) && (19.0..=21.0).contains(&hi),
        "{lo} {hi}"
    );
    assert_eq!(h3.ci_confidence, Some(0.75));
    assert_eq!(
        (h3.unit.as_str(), h3.link.as_str(), h3.workload.as_str()),
        ("ms", "rtt50", "handshake")
    );
    assert_eq!((h3.min, h3.max, h3.mean), (10.0, 21.0, 15.5));
    assert_eq!(h3.source, "samples");
    let hist = &rows[2];
    assert_eq!(
        (
            hist.n,
            hist.samples,
            hist.unit.as_str(),
            hist.source.as_str()
        ),
        (1, 100, "us", "histogram")
    );
    // 1..=100 are exact at 3 significant digits; one cell: no interval.
    assert_eq!((hist.median, hist.ci_low, hist.ci_high), (50.5, None, None));
    assert_eq!((hist.min, hist.max), (1.0, 100.0));

    // Order of the input does not matter, to the last bit.
    let mut rev = cells.clone();
    rev.reverse();
    assert_eq!(summarize(&rev), rows);
    assert!(summarize(&[]).is_empty());
}

#[test]
fn summary_files() {
    let base = tempfile::tempdir().unwrap();
    let rd = RunDir::create_at(base.path(), "sum", t0()).unwrap();
    rd.write_summary(&[]).unwrap();
    let empty = fs::read_to_string(rd.path().join(SUMMARY_CSV)).unwrap();
    assert_eq!(empty.trim_end(), SUMMARY_COLUMNS.join(","));
    rd.write_cell(&cell("a", "h3", "cold", "rtt50", 0, &[1.0, 2.0, 3.0]))
        .unwrap();
    rd.write_cell(&cell("b", "h3", "cold", "rtt50", 1, &[4.0]))
        .unwrap();
    let rows = rd.resummarize().unwrap();
    let csv_text = fs::read_to_string(rd.path().join(SUMMARY_CSV)).unwrap();
    let mut lines = csv_text.lines();
    assert_eq!(lines.next().unwrap(), SUMMARY_COLUMNS.join(","));
    assert!(csv_text.starts_with("protocol,workload,link,metric,unit,median,ci_low,ci_high,n,"));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("h3,handshake,rtt50,ttfb_ms,ms,3.0,,,2,cold,n too small,,"),
        "{row}"
    );
    assert_eq!(lines.next(), None);
    assert_eq!(rd.read_summary().unwrap(), rows);
    // Readable back through csv + serde as well.
    let mut r = csv::Reader::from_path(rd.path().join(SUMMARY_CSV)).unwrap();
    let back: Vec<SummaryRow> = r.deserialize().collect::<Result<_, _>>().unwrap();
    assert_eq!(back, rows);
}

/// A plan of 12 cells; shard i of n takes cells i, i+n, ... (the harness's
/// round-robin sharding).
fn plan() -> Vec<CellResult> {
    let mut v = Vec::new();
    for rep in 0..3u32 {
        for proto in ["h2", "h3"] {
            for (var, lnk) in [("cold", "rtt50"), ("resumed", "rtt100")] {
                let base = if proto == "h3" { 100.0 } else { 150.0 } + rep as f64;
                let xs: Vec<f64> = (0..7).map(|i| base + (i * 37 % 11) as f64 * 0.1).collect();
                let mut c = cell(
                    &format!("{proto}-{var}-{lnk}-r{rep}"),
                    proto,
                    var,
                    lnk,
                    rep,
                    &xs,
                );
                c.histograms.insert(
                    "lat".into(),
                    HistogramData::from_values(&[rep as u64 * 10 + 1, 500, 900], "us").unwrap(),
                );
                v.push(c);
            }
        }
    }
    v
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir.join(CELLS_DIR))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn merged_shards_equal_one_whole_run() {
    let base = tempfile::tempdir().unwrap();
    let cells = plan();
    let ids: Vec<String> = cells.iter().map(|c| c.cell_id.clone()).collect();

    let whole = RunDir::create_at(base.path(), "whole", t0()).unwrap();
    whole.write_meta(&meta("m", None, ids.clone())).unwrap();
    for c in &cells {
        whole.write_cell(c).unwrap();
    }
    whole.resummarize().unwrap();

    let n = 3;
    let mut dirs = Vec::new();
    for i in 0..n {
        let rd = RunDir::create_at(base.path(), &format!("shard{i}"), t0()).unwrap();
        let mine: Vec<&CellResult> = cells.iter().skip(i).step_by(n).collect();
        let mut m = meta(
            "m",
            Some((i as u32, n as u32)),
            mine.iter().map(|c| c.cell_id.clone()).collect(),
        );
        m.started = format!("2026-11-24T06:0{i}:00.{}Z", 5 - i);
        m.host.hostname = format!("host{i}");
        rd.write_meta(&m).unwrap();
        for c in mine {
            rd.write_cell(c).unwrap();
        }
        dirs.push(rd.path().to_path_buf());
    }
    // Shards in any order on the command line.
    dirs.swap(0, 2);
    let out = base.path().join("merged");
    let merged_meta = merge(&dirs, &out).unwrap();
    let merged = RunDir::open(&out).unwrap();

    assert_eq!(merged_meta.shard, None);
    assert_eq!(merged_meta.cell_ids, ids, "plan order restored");
    assert_eq!(merged_meta.started, "2026-11-24T06:00:00.5Z");
    assert_eq!(merged.read_meta().unwrap(), merged_meta);
    assert_eq!(merged.read_cells().unwrap(), whole.read_cells().unwrap());
    assert_eq!(files_of(&out), files_of(whole.path()));
    for f in [SUMMARY_CSV, SUMMARY_JSON] {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(whole.path().join(f)).unwrap(),
            "{f}"
        );
    }
    let sources = merged.read_sources().unwrap();
    assert_eq!(sources.len(), 3);
    assert_eq!(sources.iter().map(|s| s.cells).sum::<u64>(), 12);
    assert!(whole.read_sources().unwrap().is_empty());

    // Merging the same shard twice is harmless (identical duplicates).
    let out2 = base.path().join("merged2");
    let mut twice = dirs.clone();
    twice.push(dirs[0].clone());
    merge(&twice, &out2).unwrap();
    assert_eq!(files_of(&out2), files_of(whole.path()));
}

#[test]
fn merge_refuses_inconsistent_shards() {
    let base = tempfile::tempdir().unwrap();
    let mk = |name: &str, m: RunMeta, cells: &[CellResult]| {
        let rd = RunDir::create_at(base.path(), name, t0()).unwrap();
        rd.write_meta(&m).unwrap();
        for c in cells {
            rd.write_cell(c).unwrap();
        }
        rd.path().to_path_buf()
    };
    let c = cell("x", "h3", "cold", "l", 0, &[1.0]);
    let a = mk(
        "a",
        meta("m", Some((0, 2)), vec!["x".into()]),
        std::slice::from_ref(&c),
    );
    let mut c2 = c.clone();
    c2.metrics.get_mut("ttfb_ms").unwrap().samples[0] = 2.0;
    let b = mk("b", meta("m", Some((1, 2)), vec!["x".into()]), &[c2]);
    let err = merge(&[a.clone(), b.clone()], &base.path().join("o1"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cell x differs") && err.contains("-a") && err.contains("-b"),
        "{err}"
    );

    let mut other = meta("m", Some((1, 2)), vec![]);
    other.matrix = serde_json::json!({"protocols": ["h1.1"]});
    let d = mk("d", other, &[]);
    let err = merge(&[a.clone(), d.clone()], &base.path().join("o2"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("different matrix") && err.contains("-d"),
        "{err}"
    );

    let mut seed = meta("m", Some((1, 2)), vec![]);
    seed.seed = 2;
    let e = mk("e", seed, &[]);
    assert!(merge(&[a.clone(), e], &base.path().join("o3"))
        .unwrap_err()
        .to_string()
        .contains("seed"));

    let full = base.path().join("full");
    fs::create_dir_all(full.join("junk")).unwrap();
    let err = merge(std::slice::from_ref(&a), &full)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    assert!(merge(&[], &base.path().join("o4")).is_err());

    // A shard with a broken cell file is an error naming the file.
    fs::write(
        RunDir::open(&a).unwrap().cell_path("y"),
        b"{\"schema_version\": 1, ",
    )
    .unwrap();
    let err = merge(&[a], &base.path().join("o5"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("y.json"), "{err}");
}

#[test]
fn atomic_write_replaces_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.json");
    write_atomic(&p, b"first").unwrap();
    write_atomic(&p, b"second, longer").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"second, longer");
    // Only the file itself remains: no temporary left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    // A write into a missing directory fails naming the temporary path's dir.
    let err = write_atomic(&dir.path().join("nope/f.json"), b"x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn floats_read_back_bit_for_bit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut xs = Vec::new();
    while xs.len() < 5000 {
        let x = f64::from_bits(rng.random::<u64>());
        if x.is_finite() {
            xs.push(x);
        }
    }
    xs.extend([
        0.1 + 0.2,
        3.9699999999999998,
        f64::MIN_POSITIVE,
        f64::MAX,
        -0.0,
        5e-324,
    ]);
    let base = tempfile::tempdir().unwrap();
    let rd = RunDir::create_at(base.path(), "bits", t0()).unwrap();
    let c = cell("bits", "udp", "probe", "l", 0, &xs);
    rd.write_cell(&c).unwrap();
    let back = rd.read_cells().unwrap().remove(0);
    let got = &back.metrics["ttfb_ms"].samples;
    assert_eq!(got.len(), xs.len());
    for (a, b) in xs.iter().zip(got) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a:e} read back as {b:e}");
    }
    // Written again, the file is byte-identical.
    let first = fs::read(rd.cell_path("bits")).unwrap();
    rd.write_cell(&back).unwrap();
    assert_eq!(fs::read(rd.cell_path("bits")).unwrap(), first);
}

/// With `QUICBENCH_RUN_DIR` set to a real run directory: every cell read and
/// written again is byte-identical, and splitting the run into round-robin
/// shards and merging them gives back the same cells and summary.
#[test]
fn real_run_round_trips_and_merges() {
    let Ok(dir) = std::env::var("QUICBENCH_RUN_DIR") else {
        return;
    };
    let src = RunDir::open(Path::new(&dir)).unwrap();
    let meta = src.read_meta().unwrap();
    let cells = src.read_cells().unwrap();
    let base = tempfile::tempdir().unwrap();
    let copy = RunDir::create_at(base.path(), "copy", t0()).unwrap();
    for c in &cells {
        copy.write_cell(c).unwrap();
        let a = fs::read_to_string(copy.cell_path(&c.cell_id)).unwrap();
        let b = fs::read_to_string(src.cell_path(&c.cell_id)).unwrap();
        if a != b {
            let at = a
                .bytes()
                .zip(b.bytes())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            let show = |s: &str| {
                s.get(at.saturating_sub(80)..(at + 80).min(s.len()))
                    .unwrap_or("")
                    .to_string()
            };
            panic!(
                "{} differs at byte {at}:\n{}\n---\n{}",
                c.cell_id,
                show(&a),
                show(&b)
            );
        }
    }
    let n = 3;
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let rd = RunDir::create_at(base.path(), &format!("s{i}"), t0()).unwrap();
            let ids: Vec<String> = meta.cell_ids.iter().skip(i).step_by(n).cloned().collect();
            let mut m = meta.clone();
            m.shard = Some((i as u32, n as u32));
            m.cell_ids = ids.clone();
            rd.write_meta(&m).unwrap();
            for c in cells.iter().filter(|c| ids.contains(&c.cell_id)) {
                rd.write_cell(c).unwrap();
            }
            rd.path().to_path_buf()
        })
        .collect();
    let out = base.path().join("merged");
    let merged = merge(&dirs, &out).unwrap();
    assert_eq!(merged.cell_ids, meta.cell_ids);
    assert_eq!(RunDir::open(&out).unwrap().read_cells().unwrap(), cells);
    assert_eq!(
        RunDir::open(&out).unwrap().read_summary().unwrap(),
        summarize(&cells)
    );
    eprintln!(
        "{} cells round-tripped and merged from {n} shards",
        cells.len()
    );
}

/// With adaptive repetitions, a group's cells must all come from one shard.
#[test]
fn merge_refuses_groups_split_over_adaptive_shards() {
    let base = tempfile::tempdir().unwrap();
    let mk = |name: &str, i: u32, reps: &[u32]| {
        let rd = RunDir::create_at(base.path(), name, t0()).unwrap();
        let cells: Vec<CellResult> = reps
            .iter()
            .map(|r| cell(&format!("g-r{r}"), "h3", "cold", "rtt50", *r, &[1.0]))
            .collect();
        let mut m = meta(
            name,
            Some((i, 2)),
            cells.iter().map(|c| c.cell_id.clone()).collect(),
        );
        m.matrix = serde_json::json!({"resolved": {"adaptive": {"max": 9, "target": 0.05}}});
        rd.write_meta(&m).unwrap();
        for c in &cells {
            rd.write_cell(c).unwrap();
        }
        rd.path().to_path_buf()
    };
    let a = mk("a", 0, &[0, 1]);
    let b = mk("b", 1, &[2]);
    let e = merge(&[a, b], &base.path().join("out")).unwrap_err();
    assert!(e.to_string().contains("must own whole groups"), "{e}");
}
