//! Metrics measured at the link, the same way for every implementation
//! (ours or a third-party black box): from the relay's per-flow records
//! (`quicbench_netem::flows`), one sample per flow the cell's client opened.
//! Definitions: docs/methodology.md, "Measured at the link".

use quicbench_netem::flows::{Handshake, Proto, ResponsePath, Side};
use quicbench_netem::{FlowReport, FlowsReport};
use quicbench_results::{CellResult, Metric};

use crate::workloads::names;

/// A flow carries a transfer worth a rate when this many payload bytes
/// reached the client.
const MIN_RATE_BYTES: u64 = 64 * 1024;
/// Flows described one by one in `extra.link_flows`.
const MAX_LISTED: usize = 32;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The rate of the server's payload toward the client from its first
/// response byte to its last, Mbit/s (None for small or single-bin flows).
pub fn down_rate_mbps(f: &FlowReport) -> Option<f64> {
    let bytes = f.down.delivered_payload_bytes;
    let from = f.first_response_ns.or(f.down.first_payload_delivered_ns)?;
    let to = f.down.last_payload_delivered_ns?;
    let span = to.checked_sub(from).filter(|s| *s > 0)?;
    (bytes >= MIN_RATE_BYTES).then(|| bytes as f64 * 8.0 / (span as f64 / 1e9) / 1e6)
}

/// The transport handshake as the link saw it, up to the client being
/// able to send application data on a confirmed path: TCP SYN → SYN-ACK
/// delivered; QUIC the client's first Initial → its first 1-RTT packet
/// offered (it has processed the server's flight: its Finished and first
/// request leave together). 0-RTT data does not end it.
pub fn handshake_ns(f: &FlowReport) -> Option<u64> {
    match f.handshake()? {
        Handshake::Tcp(t) => t.syn_ack_after_ns,
        Handshake::Quic(q) => {
            let q1 = f.quic.as_ref()?.up.one_rtt.first_offered_ns?;
            q1.checked_sub(q.initial_ns)
        }
    }
}

/// A flow's first-response path with the path's fixed cost put back on the
/// wire: the relay's clock sees a packet from its arrival at the device to
/// its write, so each transit's cost (`relay.path_compensation_ns`, the
/// write up to the receiving socket) sat in its receiver's turn; moved half
/// from each side's (a round trip has one transit each way), the wire is
/// socket to socket, i.e. the configured delay on a quiet link.
fn corrected(p: &ResponsePath, path_cost_ns: u64) -> ResponsePath {
    let c = path_cost_ns * p.round_trips as u64;
    let from_server = (c / 2).min(p.server_ns);
    let from_client = (c - from_server).min(p.client_ns);
    ResponsePath {
        wire_ns: p.wire_ns + from_server + from_client,
        server_ns: p.server_ns - from_server,
        client_ns: p.client_ns - from_client,
        ..*p
    }
}

/// The flows the cell's client opened (its first packet offered), split
/// into those that started from `measured_from_ns` on (link clock) and the
/// number that started before: warm-up connections, which are not measured.
fn measured_flows(report: &FlowsReport, measured_from_ns: u64) -> (Vec<&FlowReport>, usize) {
    let (measured, warmup): (Vec<&FlowReport>, Vec<&FlowReport>) = report
        .flows
        .iter()
        .filter(|f| f.client_in == Side::ClientNs && f.up.offered_packets > 0)
        .partition(|f| f.start_ns >= measured_from_ns);
    (measured, warmup.len())
}

/// Add the link's metrics (`link_*`) and `extra.link_flows` to a cell, of
/// the flows opened from `measured_from_ns` (link clock; 0: all).
/// `path_cost_ns`: one round trip's fixed path cost taken off by the relay
/// (up + down `relay.path_compensation_ns`).
pub fn record(
    res: &mut CellResult,
    report: &FlowsReport,
    path_cost_ns: u64,
    measured_from_ns: u64,
) {
    let (flows, warmup) = measured_flows(report, measured_from_ns);
    let rtt_ms = res.link.rtt_ms;
    let mut push = |name: &str, unit: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            res.metrics
                .entry(name.to_string())
                .or_insert_with(|| Metric::new(unit))
                .samples
                .push(v);
        }
    };
    push("link_flows", "count", Some(flows.len() as f64));
    for f in &flows {
        push("link_connect_ms", "ms", f.connect_ns().map(ms));
        push("link_handshake_ms", "ms", handshake_ns(f).map(ms));
        push("link_completion_ms", "ms", f.completion_ns().map(ms));
        push("link_goodput_mbps", "Mbit/s", down_rate_mbps(f));
        push("link_wire_overhead", "ratio", f.wire_overhead());
        push(
            "link_retransmitted_share",
            "fraction",
            f.retransmitted_share(),
        );
        if let Some(p) = f.response_path.map(|p| corrected(&p, path_cost_ns)) {
            push(names::LINK_ROUND_TRIPS, "count", Some(p.round_trips as f64));
            push(names::LINK_WIRE_MS, "ms", Some(ms(p.wire_ns)));
            let rtts = (rtt_ms > 0.0).then(|| ms(p.wire_ns) / rtt_ms);
            push(names::LINK_WIRE_RTTS, "RTT", rtts);
            push(names::LINK_CLIENT_MS, "ms", Some(ms(p.client_ns)));
            push(names::LINK_SERVER_MS, "ms", Some(ms(p.server_ns)));
        }
    }
    let listed: Vec<serde_json::Value> = flows
        .iter()
        .take(MAX_LISTED)
        .map(|f| {
            serde_json::json!({
                "protocol": match f.protocol { Proto::Tcp => "tcp", Proto::Udp => "udp" },
                "client": f.client.to_string(),
                "server": f.server.to_string(),
                "connect_ms": f.connect_ns().map(ms),
                "handshake_ms": handshake_ns(f).map(ms),
                "completion_ms": f.completion_ns().map(ms),
                "down_payload_bytes": f.down.delivered_payload_bytes,
                "down_wire_bytes": f.down.delivered_bytes,
                "up_wire_bytes": f.up.delivered_bytes,
                "retransmitted_bytes": f.up.retransmitted_bytes + f.down.retransmitted_bytes,
                "dropped_packets": f.up.dropped_loss_packets + f.down.dropped_loss_packets
                    + f.up.dropped_queue_packets + f.down.dropped_queue_packets,
                "quic_version": f.quic.as_ref().and_then(|q| q.version),
                "zero_rtt": f.quic.as_ref().map(|q| q.up.zero_rtt.offered > 0),
                "goodput_mbps": down_rate_mbps(f),
                "response_path": f.response_path.map(|p| corrected(&p, path_cost_ns)).map(|p| serde_json::json!({
                    "round_trips": p.round_trips,
                    "wire_ms": ms(p.wire_ns),
                    "client_ms": ms(p.client_ns),
                    "server_ms": ms(p.server_ns),
                    "packets": p.packets,
                })),
            })
        })
        .collect();
    res.extra.insert(
        "link_flows".into(),
        serde_json::json!({
            "flows": listed,
            "listed": listed.len(),
            "total": flows.len(),
            "warmup": warmup,
            "overflowed": report.overflowed,
            "unattributed_packets": report.unattributed_packets,
        }),
    );
    // The busiest flow's bytes toward the client over time (its goodput curve).
    if let Some(f) = flows
        .iter()
        .max_by_key(|f| f.down.delivered_payload_bytes)
        .filter(|f| f.down.delivered_payload_bytes >= MIN_RATE_BYTES)
    {
        let c = &f.goodput_down;
        let bin_s = c.bin_ns as f64 / 1e9;
        if bin_s > 0.0 {
            let pts: Vec<(f64, f64)> = c
                .bytes
                .iter()
                .enumerate()
                .map(|(i, b)| (ms(c.bin_ns * i as u64), *b as f64 * 8.0 / bin_s / 1e6))
                .collect();
            res.timelines.insert("link_goodput_mbps".into(), pts);
        }
    }
}

/// One flow's chosen drop (`drop-nth`) in one direction, as the link saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChosenDrop {
    pub protocol: &'static str,
    pub client: String,
    /// "up" (the client's packet) or "down" (the server's).
    pub dir: &'static str,
    /// Packets `drop-nth` dropped in this direction of the flow.
    pub dropped: u64,
    /// The first of them was the direction's first packet.
    pub first_packet: bool,
    /// TCP: it was the client's SYN (up) / a SYN-ACK-time first packet (down).
    pub tcp_syn: bool,
    /// QUIC: a datagram starting with an Initial.
    pub quic_initial: bool,
    /// QUIC: the type of the dropped datagram's first packet.
    pub quic_kind: Option<&'static str>,
    /// Dropped → its resend offered (the sender's timer on the wire).
    pub resent_after_ms: Option<f64>,
}

/// The QUIC packet type whose first datagram was offered at `at`.
fn quic_kind_at(q: &quicbench_netem::flows::QuicDirStats, at: u64) -> Option<&'static str> {
    [
        ("initial", &q.initial),
        ("0rtt", &q.zero_rtt),
        ("handshake", &q.handshake),
        ("retry", &q.retry),
        ("version_negotiation", &q.version_negotiation),
        ("other_long", &q.other_long),
        ("1rtt", &q.one_rtt),
    ]
    .into_iter()
    .find(|(_, s)| s.first_offered_ns == Some(at))
    .map(|(k, _)| k)
}

/// The chosen drops of a client flow, per direction that had any.
pub fn chosen_drops(f: &FlowReport) -> Vec<ChosenDrop> {
    let mut v = Vec::new();
    for (dir, d, up) in [("up", &f.up, true), ("down", &f.down, false)] {
        let Some(at) = d.chosen_drop_ns else { continue };
        let quic = f.quic.as_ref().map(|q| if up { &q.up } else { &q.down });
        v.push(ChosenDrop {
            protocol: match f.protocol {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            },
            client: f.client.to_string(),
            dir,
            dropped: d.dropped_chosen_packets,
            first_packet: d.first_offered_ns == Some(at),
            tcp_syn: f.tcp.as_ref().is_some_and(|t| !up || t.syn_ns == Some(at)),
            quic_initial: quic.is_some_and(|q| q.initial.first_offered_ns == Some(at)),
            quic_kind: quic.and_then(|q| quic_kind_at(q, at)),
            resent_after_ms: d.chosen_resent_ns.and_then(|r| r.checked_sub(at)).map(ms),
        });
    }
    v
}

/// The lost-flight handshakes' link figures: `chosen_drops{,_up,_down}` (one
/// sample each, from the link's counters: what `drop-nth` dropped) and
/// `retransmit_gap_ms` (per flow: the dropped packet → its resend, offered
/// times), with each flow's drops in `extra.chosen_drops`.
pub fn record_chosen(
    res: &mut CellResult,
    counters: &quicbench_netem::LinkCounters,
    report: Option<&FlowsReport>,
) {
    let (up, down) = (
        counters.up.model.dropped_chosen,
        counters.down.model.dropped_chosen,
    );
    let mut push = |name: &str, unit: &str, v: f64| {
        res.metrics
            .entry(name.to_string())
            .or_insert_with(|| Metric::new(unit))
            .samples
            .push(v);
    };
    push(names::CHOSEN_DROPS, "count", (up + down) as f64);
    push(names::CHOSEN_DROPS_UP, "count", up as f64);
    push(names::CHOSEN_DROPS_DOWN, "count", down as f64);
    let Some(report) = report else { return };
    let drops: Vec<ChosenDrop> = report
        .flows
        .iter()
        .filter(|f| f.client_in == Side::ClientNs)
        .flat_map(chosen_drops)
        .collect();
    for d in &drops {
        if let Some(g) = d.resent_after_ms {
            push(names::RETRANSMIT_GAP_MS, "ms", g);
        }
    }
    res.extra.insert(
        "chosen_drops".into(),
        serde_json::to_value(&drops).unwrap_or_default(),
    );
}

/// `link_reordered_down_share`, `link_reordered_up_share`: the copies that
/// left ahead of an earlier one (the reorder branch, or jitter) ÷ the copies
/// delivered, per direction. User-space link only (tc counts no such thing).
/// After the workload's own metrics: a cell whose workload measured nothing
/// has failed, whatever the link counted.
pub fn record_reordering(res: &mut CellResult, c: &quicbench_netem::link::LinkCounters) {
    for (name, d) in [
        ("link_reordered_down_share", &c.down.model),
        ("link_reordered_up_share", &c.up.model),
    ] {
        if d.delivered > 0 {
            res.metrics
                .entry(name.to_string())
                .or_insert_with(|| Metric::new("fraction"))
                .samples
                .push(d.overtaking as f64 / d.delivered as f64);
        }
    }
}
