//! What the harness's real-link tests share: the privilege check and the
//! context cells run in. Included with `mod common;`.
#![allow(dead_code)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use quicbench_harness::cell::CellCtx;
use quicbench_netem::link::Backend;

/// True when links can be built here; false when the test already ran in a
/// child user namespace, or (said loudly) cannot run: see
/// `quicbench_netem::test_gate`.
pub fn can_build_links() -> bool {
    quicbench_netem::test_gate::links("harness test")
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

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
