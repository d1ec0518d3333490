//! Per cell: the CPU time and run-queue wait of our client's threads, our
//! servers' threads and the relay's (`extra.cpu`), so a reader sees when the
//! machine, not the protocol, set a number (docs/methodology.md, "CPU").
//! Third-party endpoints run as child processes: theirs is added to the
//! role's figures when they are reaped (`endpoints::process`), and also
//! given on its own (`client_process_cpu_ms`...).

use std::collections::BTreeMap;
use std::time::Instant;

use quicbench_netem::cpu::{self, ThreadCpu};
use quicbench_netem::LinkCounters;
use quicbench_results::CellResult;

/// The roles the harness's threads report as (`cpu::on_thread_end`).
pub const CLIENT: &str = "client";
pub const SERVER: &str = "server";
/// The roles third-party endpoints' processes report as.
pub const CLIENT_PROCESS: &str = "client-process";
pub const SERVER_PROCESS: &str = "server-process";

/// Endpoints that waited for a core this share of the cell's wall time, and
/// at least [`WAIT_NOTE_MS`], get a note. Below that every short cell on a
/// 2-core machine would get one: starting a cell's runtimes alone costs a
/// few ms of waiting (measured: 3-8 ms in 50-75 ms cells on a 0 ms link).
const WAIT_NOTE_SHARE: f64 = 0.10;
const WAIT_NOTE_MS: f64 = 10.0;

/// Taken when a cell starts.
pub struct CpuMark {
    at: Instant,
    ended: BTreeMap<&'static str, ThreadCpu>,
}

impl CpuMark {
    pub fn now() -> Self {
        CpuMark {
            at: Instant::now(),
            ended: cpu::totals(),
        }
    }

    /// Record the cell's figures (after its servers stopped, while its link
    /// is up).
    pub fn record(self, res: &mut CellResult, link: &LinkCounters) {
        let wall_ms = self.at.elapsed().as_secs_f64() * 1e3;
        let now = cpu::totals();
        let role = |r: &str| {
            let a = now.get(r).copied().unwrap_or_default();
            let b = self.ended.get(r).copied().unwrap_or_default();
            a.saturating_sub(b)
        };
        let (client_proc, server_proc) = (role(CLIENT_PROCESS), role(SERVER_PROCESS));
        let sum = |a: ThreadCpu, b: ThreadCpu| ThreadCpu {
            cpu_ns: a.cpu_ns + b.cpu_ns,
            wait_ns: a.wait_ns + b.wait_ns,
        };
        let (client, server) = (
            sum(role(CLIENT), client_proc),
            sum(role(SERVER), server_proc),
        );
        let relay = ThreadCpu {
            cpu_ns: link.up.relay.cpu_ns + link.down.relay.cpu_ns,
            wait_ns: link.up.relay.run_wait_ns + link.down.relay.run_wait_ns,
        };
        let ms = |ns: u64| ns as f64 / 1e6;
        res.extra.insert(
            "cpu".into(),
            serde_json::json!({
                "wall_ms": wall_ms,
                "client_cpu_ms": ms(client.cpu_ns),
                "client_wait_ms": ms(client.wait_ns),
                "server_cpu_ms": ms(server.cpu_ns),
                "server_wait_ms": ms(server.wait_ns),
                "relay_cpu_ms": ms(relay.cpu_ns),
                "relay_wait_ms": ms(relay.wait_ns),
                "client_process_cpu_ms": ms(client_proc.cpu_ns),
                "client_process_wait_ms": ms(client_proc.wait_ns),
                "server_process_cpu_ms": ms(server_proc.cpu_ns),
                "server_process_wait_ms": ms(server_proc.wait_ns),
            }),
        );
        if let Some(n) = wait_note(wall_ms, ms(client.wait_ns + server.wait_ns)) {
            res.notes.push(n);
        }
    }
}

/// A note when the endpoints spent a noticeable share of the cell waiting
/// for a core.
fn wait_note(wall_ms: f64, endpoint_wait_ms: f64) -> Option<String> {
    (wall_ms > 0.0
        && endpoint_wait_ms >= WAIT_NOTE_MS
        && endpoint_wait_ms >= WAIT_NOTE_SHARE * wall_ms)
        .then(|| {
        format!(
            "the endpoints waited {endpoint_wait_ms:.0} ms for a CPU ({:.0}% of the cell's {wall_ms:.0} ms): \
             the machine, not only the protocol, set this cell's times (extra.cpu)",
            100.0 * endpoint_wait_ms / wall_ms
        )
    })
}

/// For a tokio runtime's builder: `.on_thread_stop(ends_as(CLIENT))`.
pub fn ends_as(role: &'static str) -> impl Fn() + Send + Sync + 'static {
    move || cpu::on_thread_end(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_note_starts_at_ten_percent_and_ten_ms() {
        assert_eq!(wait_note(1000.0, 99.0), None);
        let n = wait_note(1000.0, 100.0).expect("a note");
        assert!(n.contains("100 ms") && n.contains("10%"), "{n}");
        assert_eq!(wait_note(60.0, 9.0), None, "15% but under 10 ms");
        assert!(wait_note(60.0, 10.0).is_some());
        assert_eq!(wait_note(0.0, 10.0), None);
    }
}
