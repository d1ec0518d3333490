//! The same behaviour list (tests/common/behaviours.rs) on both backends:
//! `kernel_*` (tc-netem on veth) and `userspace_*` (TUN relay). Where the
//! kernel has no sch_netem the kernel variants say SKIPPED with the reason;
//! with QUICBENCH_REQUIRE_KERNEL_NETEM=1 (set by scripts/kernel-netem-vm.sh
//! inside its VM) they fail instead. Needs root (namespaces, veth, TUN).

mod common;

use common::behaviours;
use quicbench_netem::Backend;

/// The probe runs share a 2-core machine (or an emulated VM): one at a time,
/// so no check's receiver or relay waits behind another's.
static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One test per (behaviour, backend), each a call of the one body.
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {
        mod kernel {
            $(
                #[test]
                fn $behaviour() {
                    super::run(quicbench_netem::Backend::Kernel, stringify!($behaviour), super::behaviours::$behaviour);
                }
            )*
        }
        mod userspace {
            $(
                #[test]
                fn $behaviour() {
                    super::run(quicbench_netem::Backend::UserSpace, stringify!($behaviour), super::behaviours::$behaviour);
                }
            )*
        }
    };
}

fn run(backend: Backend, behaviour: &str, check: fn(Backend)) {
    let test = format!("{}::{behaviour}", behaviours::name(backend));
    if !behaviours::ready(backend, &test) {
        return;
    }
    let _alone = MACHINE.lock().unwrap_or_else(|p| p.into_inner());
    check(backend);
}

on_both_backends!(
    loss_rate,
    duplicate_rate,
    corrupt_rate,
    reorder_rate,
    rate_10mbit,
    queue_drops_are_not_loss,
    nat_rebinding,
);
