//! Transport ground truth in a cell: each connection's own view (TCP_INFO,
//! quinn's stats) from both ends, beside the link's counters. Written under
//! `extra.ground_truth` of the cell (docs/results-schema.md), with the
//! sender's summary as metrics. (The cell's `transport` field, from
//! [`crate::transport`], is the controller and settings that were meant to
//! run and their read-back.)
//!
//! Every download's sender is the server, so the server's records carry the
//! window and the retransmissions that explain a transfer; the client's show
//! the receiving side (and TCP's options as the client set them).

use quicbench_results::{CellResult, Metric};
use quicbench_wire::sockinfo::{SenderSummary, TransportRecord};

/// Where in a cell's `extra` the records go.
pub const EXTRA_KEY: &str = "ground_truth";

/// Metrics of the sender's (server's) view, summed over the cell's connections.
pub const M_RETRANS_BYTES: &str = "tx_retrans_bytes";
/// Retransmitted (TCP) or lost (QUIC) bytes over bytes sent.
pub const M_RETRANS_SHARE: &str = "tx_retrans_share";
/// QUIC only: quinn's congestion events (TCP_INFO has no such count).
pub const M_CONGESTION_EVENTS: &str = "tx_congestion_events";
/// Largest congestion window seen, bytes.
pub const M_MAX_CWND: &str = "tx_max_cwnd_bytes";
/// Smoothed RTT at the end, ms (largest over connections).
pub const M_SRTT: &str = "tx_srtt_ms";

/// Put the client's and the server's records on the workload's time axis
/// (`t0_mono_ns`: the zero of its timelines) and into the cell:
/// `extra.ground_truth` and the sender metrics. Nothing happens without records (UDP cells).
pub fn record(
    res: &mut CellResult,
    t0_mono_ns: u64,
    mut client: Vec<TransportRecord>,
    mut server: Vec<TransportRecord>,
) {
    if client.is_empty() && server.is_empty() {
        return;
    }
    for r in client.iter_mut().chain(server.iter_mut()) {
        r.rebase(t0_mono_ns);
    }
    if let Some(sum) = server
        .iter()
        .filter_map(SenderSummary::of)
        .reduce(SenderSummary::combine)
    {
        for (name, unit, v) in sender_metrics(&sum) {
            res.metrics.insert(
                name.to_string(),
                Metric {
                    unit: unit.to_string(),
                    samples: vec![v],
                },
            );
        }
    }
    res.extra.insert(
        EXTRA_KEY.into(),
        serde_json::json!({
            "t0_mono_ns": t0_mono_ns,
            "client": client,
            "server": server,
        }),
    );
}

/// The sender metrics of a summary: (name, unit, value).
pub fn sender_metrics(s: &SenderSummary) -> Vec<(&'static str, &'static str, f64)> {
    let mut v = vec![
        (M_RETRANS_BYTES, "bytes", s.retrans_bytes as f64),
        (M_MAX_CWND, "bytes", s.max_cwnd as f64),
        (M_SRTT, "ms", s.end_srtt_us as f64 / 1e3),
    ];
    if s.sent_bytes > 0 {
        v.push((
            M_RETRANS_SHARE,
            "fraction",
            s.retrans_bytes as f64 / s.sent_bytes as f64,
        ));
    }
    if let Some(e) = s.congestion_events {
        v.push((M_CONGESTION_EVENTS, "count", e as f64));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicbench_wire::sockinfo::{QuicStats, Sample, Side, Snapshot};

    fn quic_record(origin: u64, lost: u64, sent: u64) -> TransportRecord {
        TransportRecord {
            side: Side::Server,
            transport: "quic".into(),
            conn_id: None,
            local: None,
            peer: None,
            controller: Some("cubic".into()),
            sockopts: None,
            origin_mono_ns: origin,
            start_ns: 0,
            end_ns: Some(2_000_000),
            closed: true,
            end: Some(Snapshot::Quic(QuicStats {
                cwnd: 20_000,
                congestion_events: 2,
                lost_bytes: lost,
                udp_tx_bytes: sent,
                srtt_us: 21_000,
                ..Default::default()
            })),
            sample_period_ms: 10.0,
            samples: vec![Sample {
                t_ns: 1_000_000,
                cwnd: 50_000,
                ..Default::default()
            }],
        }
    }

    fn cell() -> CellResult {
        CellResult::new(
            "c",
            "h3",
            "goodput",
            "default",
            quicbench_results::LinkInfo {
                label: "l".to_string(),
                up: String::new(),
                down: String::new(),
                rtt_ms: 20.0,
                loss: 0.0,
                rate_bps: None,
            },
            0,
            1,
        )
    }

    #[test]
    fn sender_metrics_and_time_axis() {
        let mut res = cell();
        let server = vec![quic_record(1_000, 100, 1_000), quic_record(1_000, 0, 1_000)];
        record(&mut res, 500, Vec::new(), server);
        let m = |n: &str| res.metrics.get(n).map(|m| m.samples[0]);
        assert_eq!(m(M_RETRANS_BYTES), Some(100.0));
        assert_eq!(m(M_RETRANS_SHARE), Some(0.05));
        assert_eq!(m(M_CONGESTION_EVENTS), Some(4.0));
        assert_eq!(m(M_MAX_CWND), Some(50_000.0));
        assert_eq!(m(M_SRTT), Some(21.0));
        let t = &res.extra[EXTRA_KEY];
        assert_eq!(t["t0_mono_ns"], 500);
        // Rebased: 1_000 + 1_000_000 - 500.
        assert_eq!(t["server"][0]["samples"][0]["t_ns"], 1_000_500);
    }

    #[test]
    fn nothing_without_records() {
        let mut res = cell();
        record(&mut res, 0, Vec::new(), Vec::new());
        assert!(res.extra.is_empty());
        assert!(res.metrics.is_empty());
    }
}
