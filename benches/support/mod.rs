//! What the benches share: entering a user namespace before criterion starts
//! (so an ordinary user's benches cross the emulated link too, no sudo), and
//! the one check that links can be built. Included with
//! `#[path = "support/mod.rs"] mod support;`.
#![allow(dead_code)]

/// `criterion_main!` with the privileges acquired first: an ordinary user
/// enters a user namespace while the process still has one thread.
#[macro_export]
macro_rules! bench_main {
    ($($group:path),+ $(,)?) => {
        fn main() {
            let p = quicbench_netem::privileges::acquire();
            eprintln!("quicbench bench: privileges: {p}");
            $($group();)+
            criterion::Criterion::default()
                .configure_from_args()
                .final_summary();
        }
    };
}

/// Namespaces can be created and TUN opens here; otherwise says loudly what
/// `what` skips and why.
pub fn can_build_links(what: &str) -> bool {
    let ready = quicbench_netem::ns::can_create()
        .map_err(|e| e.to_string())
        .and_then(|()| quicbench_netem::privileges::tun_access());
    match ready {
        Ok(()) => true,
        Err(e) => {
            eprintln!("SKIPPED: {what}: needs network namespaces and /dev/net/tun: {e}");
            false
        }
    }
}
