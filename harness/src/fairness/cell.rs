//! One fairness cell: the link, one set of our servers per controller the
//! mix runs (a server's controller is per listener: `h3@bbr+h3@cubic` needs
//! two), the flows together, then the figures from both views.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quicbench_netem::link::Link;
use quicbench_netem::FlowsReport;
use quicbench_results::CellResult;
use quicbench_servers::StatsSnapshot;
use quicbench_wire::transport::normalize_cc_name;
use quicbench_wire::CongestionControl;

use super::run::{FlowPlan, Run};
use super::stats::{self, Binned, Series};
use super::{FairnessParams, Mix};
use crate::cell::{self as c, CellCtx};
use crate::matrix::{LinkDef, Matrix};
use crate::plan::Cell;
use crate::workloads::Output;

/// A flow is within the fair share when within ±10% of it.
pub const TOLERANCE: f64 = 0.10;
/// Convergence looks at rates averaged over this many windows (2 s at the
/// default 500 ms): one window is too noisy a judge for Cubic's sawtooth.
pub const CONVERGENCE_WINDOWS: u64 = 4;
/// Ask each flow for what the whole link could carry in this many times its
/// download time: no flow runs out of object before its time is up.
const SIZE_MARGIN: f64 = 1.5;

/// Run a fairness cell into `res`.
pub fn execute(
    ctx: &CellCtx,
    m: &Matrix,
    cell: &Cell,
    ldef: &LinkDef,
    res: &mut CellResult,
) -> anyhow::Result<()> {
    let p = m
        .workloads
        .fairness
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("workload parameters missing"))?;
    let mix = Mix::parse(&cell.variant).map_err(|e| anyhow::anyhow!(e))?;
    let rate = ldef
        .rate_bps
        .ok_or_else(|| anyhow::anyhow!("link {} has no rate: nothing to share", ldef.label))?;
    let link = Arc::new(Link::build(c::link_config(ctx, m, cell, ldef))?);
    let flows = mix.resolved(cell.cc);
    let mut ccs: Vec<CongestionControl> = flows.iter().map(|f| f.1).collect();
    ccs.sort_by_key(|c| c.name());
    ccs.dedup();
    let mut servers = Vec::new();
    for (i, cc) in ccs.iter().enumerate() {
        let (t, ports) = c::start_servers(
            &link,
            link.server_ip(),
            ctx.identity.clone(),
            (*cc, Default::default()),
            None,
            100 * i as u16,
        )?;
        servers.push((*cc, t, ports));
    }
    let plans: Vec<FlowPlan> = flows
        .iter()
        .enumerate()
        .map(|(i, (protocol, cc))| FlowPlan {
            protocol: *protocol,
            cc: *cc,
            ports: servers
                .iter()
                .find(|s| s.0 == *cc)
                .map(|s| s.2)
                .unwrap_or_else(|| servers[0].2),
            delay: Duration::from_millis(p.stagger_ms * i as u64),
        })
        .collect();
    let drops_before = crate::transport::read_drops_both(&link);
    let duration = Duration::from_millis(p.duration_ms);
    let size = ((rate as f64 / 8.0 * duration.as_secs_f64() * SIZE_MARGIN) as u64)
        .clamp(1 << 20, quicbench_wire::resource::DEFAULT_MAX_BYTES);
    let env = c::env_of(ctx, m, cell, ldef, &link, plans[0].ports, false);
    let l2 = link.clone();
    let plans2 = plans.clone();
    let run: Run = c::in_client_ns(ctx, m, &link, move || async move {
        super::run::run(&env, &plans2, duration, size, l2).await
    })?;
    let mut stats_by_cc: BTreeMap<&str, (CongestionControl, StatsSnapshot)> = BTreeMap::new();
    for (cc, t, _) in servers {
        if let Some((s, _)) = c::stop_server_thread(t) {
            stats_by_cc.insert(cc.name(), (cc, s));
        }
    }
    let drops_after = crate::transport::read_drops_both(&link);
    let mut out = analyse(&run, link.flows().as_ref(), p, rate, &mix);
    out.extra.insert(
        "fairness".into(),
        serde_json::json!({
            "mix": mix.name(),
            "object_bytes": size,
            "duration_ms": p.duration_ms,
            "stagger_ms": p.stagger_ms,
            "window_ms": p.window_ms,
            "tolerance": TOLERANCE,
        }),
    );
    if let Some(reason) = readback(&run, &stats_by_cc) {
        out.fail_cell(reason);
    }
    let first_conn = run.flows.iter().find_map(|f| f.info.clone());
    out.conn = first_conn;
    let record = crate::transport::CellTransport::collect(
        &link,
        mix.common_cc().or(cell.cc),
        cell.protocol,
        out.conn.as_ref(),
        stats_by_cc.values().next().map(|x| &x.1),
        &drops_before,
        &drops_after,
    );
    c::record_link(res, &link, stats_by_cc.values().next().map(|x| x.1.clone()));
    out.t0_mono_ns = run.t0_mono_ns;
    c::fill(res, out);
    if let Some(f) = link.flows() {
        let k = link.counters();
        let cost = k.up.relay.path_compensation_ns + k.down.relay.path_compensation_ns;
        crate::link_metrics::record(res, &f, cost, 0);
        crate::link_metrics::record_reordering(res, &link.counters());
    }
    record.apply(res);
    ctx.reaper.bury(link);
    Ok(())
}

/// Every flow's controller as read back: the client's end of its connection,
/// and every connection each server set accepted. A mismatch names both.
fn readback(
    run: &Run,
    servers: &BTreeMap<&str, (CongestionControl, StatsSnapshot)>,
) -> Option<String> {
    for (i, f) in run.flows.iter().enumerate() {
        let got = f.info.as_ref().and_then(|i| i.congestion_control.clone());
        if let Some(got) = got {
            if normalize_cc_name(&got) != f.cc.name() {
                return Some(format!(
                    "flow {i} ({}) asked for {} and its client ran {got}",
                    f.protocol,
                    f.cc.name()
                ));
            }
        }
    }
    for (cc, s) in servers.values() {
        for name in s.tcp_congestion.keys().chain(s.quic_congestion.keys()) {
            if normalize_cc_name(name) != cc.name() {
                return Some(format!(
                    "the servers for {} flows ran {name} on some connection",
                    cc.name()
                ));
            }
        }
    }
    None
}

/// The figures: per flow and per protocol (client view, and the link's),
/// Jain's index, convergence, utilisation, the queue.
pub fn analyse(
    run: &Run,
    link: Option<&FlowsReport>,
    p: &FairnessParams,
    rate_bps: u64,
    mix: &Mix,
) -> Output {
    let mut out = Output::default();
    for (i, f) in run.flows.iter().enumerate() {
        if let Some(e) = &f.error {
            out.fail(format!("flow {i} ({}): {e}", f.protocol));
        }
    }
    if out.failures > 0 {
        let why = out.notes.first().cloned().unwrap_or_default();
        out.fail_cell(format!("a flow failed, the share is not a fair one: {why}"));
        return out;
    }
    let series: Vec<Series> = run.flows.iter().map(|f| f.series.clone()).collect();
    let labels = labels(run, mix);
    let Some((a, b)) = stats::common_span(&series) else {
        out.fail_cell("the flows never downloaded at the same time".into());
        return out;
    };
    let w = p.window_ms * 1_000_000;
    client_view(&mut out, &series, &labels, a, b, rate_bps);
    let conv = stats::convergence_ns(&series, a, b, w, CONVERGENCE_WINDOWS, TOLERANCE);
    if let Some(t) = conv {
        out.push("convergence_ms", "ms", t as f64 / 1e6);
    }
    out.push("converged", "fraction", conv.is_some() as u8 as f64);
    let origin = series.iter().map(|s| s.start_ns).min().unwrap_or(0);
    for (i, s) in series.iter().enumerate() {
        out.timelines
            .insert(format!("flow{i}_mbps"), stats::rate_timeline(s, origin, w));
    }
    queue(&mut out, &run.queue, a, b, origin);
    if let Some(rep) = link {
        link_view(&mut out, run, rep, &labels, a, b, w, origin);
    }
    out.extra.insert(
        "flows".into(),
        serde_json::json!(run
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| serde_json::json!({
                "flow": i,
                "protocol": f.protocol.name(),
                "cc": f.cc.name(),
                "label": labels[i],
                "local": f.info.as_ref().and_then(|c| c.local).map(|a| a.to_string()),
                "controller_read_back": f.info.as_ref().and_then(|c| c.congestion_control.clone()),
                "start_ms": (f.series.start_ns.saturating_sub(origin)) as f64 / 1e6,
                "end_ms": (f.series.end_ns.saturating_sub(origin)) as f64 / 1e6,
                "bytes": f.record.as_ref().map(|r| r.bytes),
                "mbps": series[i].bytes_in(a, b) * 8.0 / ((b - a) as f64 / 1e9) / 1e6,
            }))
            .collect::<Vec<_>>()),
    );
    out.extra.insert(
        "common_span_ms".into(),
        serde_json::json!([(a - origin) as f64 / 1e6, (b - origin) as f64 / 1e6]),
    );
    out
}

/// Each flow's group: its protocol, and its controller when the mix runs
/// more than one (`h3@bbr`).
fn labels(run: &Run, mix: &Mix) -> Vec<String> {
    let mut ccs: Vec<CongestionControl> = run.flows.iter().map(|f| f.cc).collect();
    ccs.dedup();
    let many = ccs.len() > 1 || mix.names_controllers() && mix.common_cc().is_none();
    run.flows
        .iter()
        .map(|f| {
            if many {
                format!("{}@{}", f.protocol.name(), f.cc.name())
            } else {
                f.protocol.name().to_string()
            }
        })
        .collect()
}

fn client_view(out: &mut Output, s: &[Series], labels: &[String], a: u64, b: u64, rate: u64) {
    let rates = stats::rates_mbps(s, a, b);
    for r in &rates {
        out.push("flow_mbps", "Mbit/s", *r);
    }
    if let Some(j) = stats::jain(&rates) {
        out.push("jain_index", "index", j);
    }
    let total: f64 = rates.iter().sum();
    out.push("total_mbps", "Mbit/s", total);
    out.push("utilisation", "fraction", total * 1e6 / rate as f64);
    for (g, share, norm) in stats::group_shares(s, labels, a, b) {
        out.push(&format!("share_{g}"), "fraction", share);
        out.push(&format!("norm_share_{g}"), "ratio", norm);
    }
}

/// The down direction's queueing delay over the common span.
fn queue(out: &mut Output, q: &[(u64, u64)], a: u64, b: u64, origin: u64) {
    let in_span: Vec<f64> = q
        .iter()
        .filter(|(t, _)| *t >= a && *t < b)
        .map(|(_, w)| *w as f64 / 1e6)
        .collect();
    if let Some(v) = stats::quantile(&in_span, 0.5) {
        out.push("queue_delay_p50_ms", "ms", v);
    }
    if let Some(v) = stats::quantile(&in_span, 0.99) {
        out.push("queue_delay_p99_ms", "ms", v);
    }
    if !q.is_empty() {
        let step = q.len().div_ceil(500).max(1);
        out.timelines.insert(
            "queue_delay_ms".into(),
            q.iter()
                .step_by(step)
                .map(|(t, w)| ((t.saturating_sub(origin)) as f64 / 1e6, *w as f64 / 1e6))
                .collect(),
        );
    }
}

/// The same figures from the link's per-flow curves (payload bytes toward
/// the client per 5-tuple, so transport and TLS framing are included).
#[allow(clippy::too_many_arguments)]
fn link_view(
    out: &mut Output,
    run: &Run,
    rep: &FlowsReport,
    labels: &[String],
    a: u64,
    b: u64,
    w: u64,
    origin: u64,
) {
    let mut series = Vec::new();
    for f in &run.flows {
        let Some(local) = f.info.as_ref().and_then(|i| i.local) else {
            out.notes
                .push("a flow's local address is unknown: no link view".into());
            return;
        };
        // A QUIC client's socket is bound to the unspecified address: the
        // port (and the transport) tell its flow.
        let proto = if f.protocol == quicbench_wire::Protocol::H3 {
            quicbench_netem::flows::Proto::Udp
        } else {
            quicbench_netem::flows::Proto::Tcp
        };
        let Some(lf) = rep
            .flows
            .iter()
            .find(|x| x.protocol == proto && x.client.port() == local.port())
        else {
            out.notes
                .push(format!("the link saw no flow from {local}: no link view"));
            return;
        };
        let start = lf.start_ns as i128 - run.link_minus_epoch_ns;
        let binned = Binned {
            start_ns: start.max(0) as u64,
            bin_ns: lf.goodput_down.bin_ns,
            bytes: lf.goodput_down.bytes.clone(),
        };
        series.push(binned.series(f.series.end_ns));
    }
    let rates = stats::rates_mbps(&series, a, b);
    if let Some(j) = stats::jain(&rates) {
        out.push("link_jain_index", "index", j);
    }
    for (g, share, _) in stats::group_shares(&series, labels, a, b) {
        out.push(&format!("link_share_{g}"), "fraction", share);
    }
    for (i, s) in series.iter().enumerate() {
        let mut tl = stats::rate_timeline(s, origin, w);
        // The link's curve runs past the client's end (the tail in flight).
        let end_ms = (run.flows[i].series.end_ns.saturating_sub(origin)) as f64 / 1e6;
        tl.retain(|(t, _)| *t < end_ms);
        out.timelines.insert(format!("link_flow{i}_mbps"), tl);
    }
}
