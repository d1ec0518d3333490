//! What the harness's real-link tests share: the privilege check and the
//! context cells run in. Included with `mod common;`.
#![allow(dead_code)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use quicbench_harness::cell::CellCtx;
use quicbench_netem::link::Backend;

/// True when links can be built. As root a failure is a bug (panics);
/// otherwise the test says loudly what it skipped.
pub fn can_build_links() -> bool {
    match quicbench_netem::ns::can_create() {
        Ok(()) => true,
        Err(e) if nix::unistd::Uid::effective().is_root() => {
            panic!("root, but no network namespace: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: needs network namespaces and /dev/net/tun ({e}); run as root");
            false
        }
    }
}

/// A run's shared context on the user-space link, the server's addresses in
/// its certificate.
pub fn ctx() -> CellCtx {
    CellCtx::new(Backend::UserSpace, None, Arc::new(AtomicBool::new(false))).expect("identity")
}

/// The first sample of a cell's metric `k` (one-sample metrics: goodput,
/// migration facts), if the cell has it.
pub fn first(res: &quicbench_results::CellResult, k: &str) -> Option<f64> {
    res.metrics.get(k).and_then(|m| m.samples.first().copied())
}
