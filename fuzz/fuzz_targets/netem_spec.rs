//! `LinkSpec::from_str` takes user text (matrix files, `--spec`): it must never
//! panic, and whatever it accepts must print (Display) to text that parses back
//! to an equal spec — run.json and cell files store specs as that text.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use quicbench_netem::LinkSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = LinkSpec::from_str(text) else {
        return;
    };
    // The derived figures the harness reads must not panic either.
    let _ = spec.validate();
    let _ = (
        spec.base_delay_ns(),
        spec.jitter_ns(),
        spec.rate_bps(),
        spec.loss_probability(),
        spec.is_lossless(),
        spec.limit(),
    );
    let printed = spec.to_string();
    let back = LinkSpec::from_str(&printed)
        .unwrap_or_else(|e| panic!("{text:?} parsed, printed as {printed:?}, which fails: {e}"));
    assert_eq!(back, spec, "{text:?} → {printed:?} → a different spec");
    assert_eq!(back.to_string(), printed, "printing is not stable");
});
