//! Cell files and run.json are read back by `--resume`, `merge` and `report`
//! (and may come from other machines, shards, or a crash). Parsing, checking,
//! summarising and decoding their histograms must never panic; a cell that
//! validates must survive a write/read round trip unchanged (merge relies on it).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use quicbench_results::{hist, CellResult, HistogramData, RunMeta};

fuzz_target!(|data: &[u8]| {
    // 1. The bytes as a cell file.
    if let Ok(cell) = serde_json::from_slice::<CellResult>(data) {
        for h in cell.histograms.values() {
            let _ = h.decode();
        }
        let _ = hist::merge_all(cell.histograms.values());
        if cell.validate().is_ok() {
            let bytes = serde_json::to_vec_pretty(&cell).expect("a valid cell serialises");
            let back: CellResult =
                serde_json::from_slice(&bytes).expect("a written cell reads back");
            assert_eq!(back, cell, "cell changed through write/read");
            let _ = quicbench_results::summarize(&[cell.clone(), back]);
        }
    }
    // 2. The bytes as run.json.
    if let Ok(meta) = serde_json::from_slice::<RunMeta>(data) {
        let bytes = serde_json::to_vec(&meta).expect("run meta serialises");
        let back: RunMeta = serde_json::from_slice(&bytes).expect("run meta reads back");
        assert_eq!(back, meta);
    }
    // 3. The bytes as the payload of a histogram (V2 or V2+deflate after
    // base64): the HdrHistogram decoder on hostile input.
    let h = HistogramData {
        unit: "us".into(),
        encoding: hist::ENCODING.into(),
        count: 0,
        data: base64::engine::general_purpose::STANDARD.encode(data),
    };
    if let Ok(decoded) = h.decode() {
        let _ = (decoded.len(), decoded.max(), decoded.value_at_quantile(0.5));
        let again = HistogramData::encode(&decoded, "us").expect("a decoded histogram encodes");
        let _ = hist::merge_all([&h, &again]);
    }
});
