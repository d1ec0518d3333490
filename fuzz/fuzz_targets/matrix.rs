//! `Matrix::parse` reads user TOML: it must never panic, whatever the text,
//! and its errors must name the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicbench_harness::Matrix;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Matrix::parse(text, "fuzz.toml") {
        Ok(m) => {
            // What `run` does next with a valid matrix: plan the cells (when the
            // plan is small: a matrix may legitimately ask for millions of cells).
            if u64::from(m.repetitions) * m.links.len() as u64 <= 1000 {
                let cells = quicbench_harness::plan::cells(&m);
                let _ = cells.len();
            }
        }
        Err(e) => assert_eq!(e.file, "fuzz.toml"),
    }
});
