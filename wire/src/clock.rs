//! Monotonic nanosecond clock shared by every process on the machine, and the
//! kernel's receive stamps on it ([`stamp`]).

pub use quicbench_netem::stamp;

/// `CLOCK_MONOTONIC` in ns. Namespaces on one host share this clock, so a server
/// and a client in different network namespaces can compute one-way delays.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_and_nonzero() {
        let a = super::mono_ns();
        let b = super::mono_ns();
        assert!(a > 0);
        assert!(b >= a);
    }
}
