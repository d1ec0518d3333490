//! `[workloads.conns]` of a matrix: one cell per phase (protocol `h1.1`: the
//! TCP phase; `h3`: the QUIC phase), its figures as the cell's metrics.

use quicbench_results::{CellResult, CellStatus, Metric};
use quicbench_wire::Protocol;

use crate::cell::CellCtx;
use crate::matrix::{LinkDef, Matrix};
use crate::plan::Cell;

use super::{ConnsConfig, PhaseReport};

/// Run the cell's phase on a link with the cell's impairments.
pub fn execute(
    ctx: &CellCtx,
    m: &Matrix,
    cell: &Cell,
    ldef: &LinkDef,
    res: &mut CellResult,
) -> anyhow::Result<()> {
    let params = m
        .workloads
        .conns
        .clone()
        .ok_or_else(|| anyhow::anyhow!("workload parameters missing"))?;
    let exe = std::env::current_exe()?;
    let limits = super::sys::raise_nofile(super::fds_needed(&params));
    let mut cfg = ConnsConfig::new(params, exe);
    cfg.backend = ctx.backend;
    cfg.up = ldef.up.clone();
    cfg.down = ldef.down.clone();
    cfg.stop = Some(ctx.stop.clone());
    let phase = super::run_one(&cfg, cell.protocol != Protocol::H3)?;
    res.notes.push(limits.note);
    fill(res, &phase);
    Ok(())
}

fn put(res: &mut CellResult, name: &str, unit: &str, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        res.metrics.insert(
            name.to_string(),
            Metric {
                unit: unit.to_string(),
                samples: vec![v],
            },
        );
    }
}

/// The phase's figures as metrics (one sample each), its checks as notes.
pub fn fill(res: &mut CellResult, ph: &PhaseReport) {
    let n = ph.established as f64;
    put(res, "target", "count", Some(ph.target as f64));
    put(res, "established", "count", Some(n));
    put(
        res,
        "handshake_failures",
        "count",
        Some(ph.handshake_failures as f64),
    );
    put(res, "accept_rate", "conn/s", Some(ph.accept_rate_cps));
    put(res, "establish_time", "s", Some(ph.establish_s));
    put(res, "conn_time_p50", "ms", Some(ph.handshake_ms.p50));
    put(res, "conn_time_p99", "ms", Some(ph.handshake_ms.p99));
    put(res, "held", "s", Some(ph.held_s));
    put(
        res,
        "alive_after_hold",
        "count",
        Some(ph.alive_after_hold as f64),
    );
    put(res, "close_time", "s", Some(ph.close_s));
    let m = &ph.memory;
    put(res, "server_mem_per_conn", "B", m.server_bytes_per_conn);
    put(res, "client_mem_per_conn", "B", m.client_bytes_per_conn);
    put(
        res,
        "kernel_slab_per_conn",
        "B",
        m.kernel_slab_bytes_per_conn,
    );
    put(res, "sockbuf_per_conn", "B", m.sockbuf_bytes_per_conn);
    if let Some(t) = &ph.server_table {
        put(
            res,
            "server_table_established",
            "count",
            Some(t.established as f64),
        );
        put(
            res,
            "distinct_4tuples",
            "count",
            Some(t.distinct_peers as f64),
        );
    }
    let failures = ph.handshake_failures + ph.established.saturating_sub(ph.alive_after_hold);
    put(res, "failures", "count", Some(failures as f64));
    res.timelines
        .insert("established".into(), ph.timeline.clone());
    res.link_counters = ph.link_counters.clone();
    for c in &ph.checks {
        res.notes.push(format!(
            "[{}] {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    res.notes.extend(ph.notes.iter().cloned());
    let mut lean = ph.clone();
    lean.timeline.clear();
    lean.link_counters = None;
    if let Ok(v) = serde_json::to_value(&lean) {
        res.extra.insert("conns".into(), v);
    }
    if ph.established == 0 {
        res.status = CellStatus::Failed {
            reason: format!(
                "no connection established: {:?}",
                ph.failure_kinds.iter().next()
            ),
        };
    }
}

#[cfg(test)]
mod tests {
    use crate::matrix::Matrix;
    use crate::plan::{cells, Workload};

    #[test]
    fn matrix_conns_cells() {
        let src = "protocols = [\"h1.1\", \"h2\", \"h3\"]\nrepetitions = 1\n\
                   [[links]]\nlabel = \"a\"\nspec = \"delay 5ms\"\n[[links]]\nlabel = \"b\"\n\
                   spec = \"delay 1ms\"\n[workloads.conns]\ntcp = 3000\nquic = 0\nlinks = [\"a\"]\n";
        let m = Matrix::parse(src, "t.toml").expect("parses");
        let cs = cells(&m);
        assert_eq!(cs.len(), 1, "{cs:?}");
        assert_eq!(cs[0].workload, Workload::Conns);
        assert_eq!(cs[0].protocol.name(), "h1.1");
        assert_eq!(cs[0].variant, "hold");
        let bad = "protocols = [\"h3\"]\n[workloads.conns]\ntcp = 0\nquic = 0\n";
        assert!(Matrix::parse(bad, "t.toml").is_err());
        let unknown = "protocols = [\"h3\"]\n[workloads.conns]\nquic = 10\nlinks = [\"nope\"]\n";
        assert!(Matrix::parse(unknown, "t.toml").is_err());
    }
}
