//! A cell's transport record: the controller it was meant to run, what its
//! connections really ran (read back at both ends), both namespaces' settings,
//! the packet size each transport used, and every drop the link model did not
//! make. It goes into the cell's `transport` field; a controller mismatch fails
//! the cell, unaccounted drops become the `unaccounted_drops` metric.

use std::collections::BTreeMap;

use quicbench_clients::ConnInfo;
use quicbench_netem::link::Link;
use quicbench_results::{CellResult, CellStatus, Metric};
use quicbench_servers::StatsSnapshot;
use quicbench_wire::transport::{self as wt, Transport};
use quicbench_wire::{CongestionControl, Protocol};
use serde::Serialize;

use crate::profile::{self, DropCounters, NsProfile};

/// Drop counters of (client, server) namespaces; an error names what could
/// not be read (the cell then says so rather than claiming zero).
pub type BothDrops = (Result<DropCounters, String>, Result<DropCounters, String>);

/// Both ends' profiles, side by side (three `ip` runs each).
fn read_profiles(link: &Link) -> (profile::NsProfile, profile::NsProfile) {
    std::thread::scope(|s| {
        let server = s.spawn(|| profile::read_profile(link.server_ns()));
        let client = profile::read_profile(link.client_ns());
        let server = server.join().unwrap_or_else(|_| {
            let mut p = profile::NsProfile::default();
            p.unreadable
                .push("reading the server's profile panicked".into());
            p
        });
        (client, server)
    })
}

pub fn read_drops_both(link: &Link) -> BothDrops {
    // Side by side: each end is two `ip`/`tc` runs (~6 ms each), twice a cell.
    std::thread::scope(|s| {
        let server = s.spawn(|| profile::read_drops(link.server_ns()));
        let client = profile::read_drops(link.client_ns());
        let server = server
            .join()
            .unwrap_or_else(|_| Err("reading the server's counters panicked".into()));
        (client, server)
    })
}

/// The QUIC side's settings as configured from `wire::transport` (the same
/// function builds the quinn config both ends use).
#[derive(Debug, Clone, Serialize)]
pub struct QuicSettings {
    pub controller: String,
    /// UDP payload of every datagram from the first (None: quinn's 1200 then
    /// path MTU discovery).
    pub udp_payload: Option<u16>,
    pub mtu_discovery: bool,
    pub stream_window: u32,
    pub conn_window: u32,
    pub send_window: u64,
    /// quinn paces every controller's sending; its max ACK delay is the
    /// RFC 9000 default.
    pub pacing: &'static str,
    pub max_ack_delay_ms: u32,
    /// UDP segmentation offload (GSO): on where the link splits batches
    /// into wire packets before its model (the user-space link, as TCP's
    /// TSO is), off on the kernel backend (`LinkShape::batches`).
    pub gso: bool,
}

impl QuicSettings {
    pub fn of(t: &Transport) -> Self {
        QuicSettings {
            controller: t.cc.name().into(),
            udp_payload: t.quic_udp_payload(),
            mtu_discovery: t.quic_udp_payload().is_none(),
            stream_window: wt::STREAM_WINDOW,
            conn_window: wt::CONN_WINDOW,
            send_window: wt::SEND_WINDOW,
            pacing: "on (quinn paces at cwnd/RTT)",
            max_ack_delay_ms: 25,
            gso: t.quic_gso(),
        }
    }
}

/// One cell's transport record.
#[derive(Debug, Clone, Serialize)]
pub struct CellTransport {
    /// The controller both transports were set to (None: the UDP probe).
    pub controller: Option<String>,
    /// Controllers read back: client connection, server connections by name.
    pub client_connection: Option<String>,
    pub server_tcp: BTreeMap<String, u64>,
    pub server_quic: BTreeMap<String, u64>,
    /// Every read-back equals `controller`.
    pub matched: bool,
    /// Socket buffers granted (receive, send), read back: the client's
    /// connection socket, and the server's QUIC socket (TCP's autotune).
    pub client_socket_buffers: Option<(u64, u64)>,
    pub server_quic_socket_buffers: Option<(u64, u64)>,
    /// What differed, if anything.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<String>,
    /// The link MTU, the TCP MSS it implies, and QUIC's datagram payload.
    pub link_mtu: u32,
    pub tcp_mss_max: u32,
    pub quic: QuicSettings,
    pub client: NsProfile,
    pub server: NsProfile,
    /// Drops outside the link model during the cell, per end: counter → count.
    pub unaccounted_drops: BTreeMap<String, BTreeMap<String, u64>>,
    /// Counters that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl CellTransport {
    #[allow(clippy::too_many_arguments)]
    pub fn collect(
        link: &Link,
        cc: Option<CongestionControl>,
        protocol: Protocol,
        conn: Option<&ConnInfo>,
        servers: Option<&StatsSnapshot>,
        before: &BothDrops,
        after: &BothDrops,
    ) -> Self {
        let mtu = link.mtu();
        let t = Transport {
            cc: cc.unwrap_or_default(),
            link: Some(quicbench_wire::transport::LinkShape::of(link)),
        };
        let mut unreadable = Vec::new();
        let mut drops = BTreeMap::new();
        for (end, b, a) in [
            ("client", &before.0, &after.0),
            ("server", &before.1, &after.1),
        ] {
            match (b, a) {
                (Ok(b), Ok(a)) => {
                    drops.insert(end.to_string(), a.since(b));
                }
                (Err(e), _) | (_, Err(e)) => unreadable.push(format!("{end} drop counters: {e}")),
            }
        }
        let server_tcp = servers
            .map(|s| s.tcp_congestion.clone())
            .unwrap_or_default();
        let server_quic = servers
            .map(|s| s.quic_congestion.clone())
            .unwrap_or_default();
        let client_connection = conn.and_then(|c| c.congestion_control.clone());
        let (client, server) = read_profiles(link);
        let mut mismatches = cc
            .map(|cc| {
                mismatches(
                    cc,
                    protocol,
                    client_connection.as_deref(),
                    &server_tcp,
                    &server_quic,
                )
            })
            .unwrap_or_default();
        // Against our own server only: another's may advertise a smaller
        // datagram limit (quic-go's is 1452), which quinn then honours.
        let payload = servers.and(conn.and_then(|c| c.quic_mtu));
        if let (Some(got), Some(want)) = (payload, t.quic_udp_payload()) {
            if got != want {
                mismatches.push(format!(
                    "the client's QUIC datagrams carried {got} bytes, the link's MTU allows {want}"
                ));
            }
        }
        CellTransport {
            controller: cc.map(|c| c.name().to_string()),
            client_connection,
            server_tcp,
            server_quic,
            matched: mismatches.is_empty(),
            mismatches,
            client_socket_buffers: conn.and_then(|c| c.socket_buffers),
            server_quic_socket_buffers: servers
                .map(|s| (s.quic_socket_rcvbuf, s.quic_socket_sndbuf)),
            link_mtu: mtu,
            // IPv4 + TCP headers; timestamps take 12 more bytes of it.
            tcp_mss_max: mtu.saturating_sub(40),
            quic: QuicSettings::of(&t),
            client,
            server,
            unaccounted_drops: drops,
            unreadable,
        }
    }

    /// Total drops outside the link model, both ends.
    pub fn unaccounted_total(&self) -> u64 {
        self.unaccounted_drops
            .values()
            .flat_map(|m| m.values())
            .sum()
    }

    /// Put the record into the cell: the `transport` field, the
    /// `unaccounted_drops` metric, a note naming the counters, and a failed
    /// status when the transports did not match.
    pub fn apply(self, res: &mut CellResult) {
        let total = self.unaccounted_total();
        if self.unreadable.is_empty() {
            res.metrics.insert(
                "unaccounted_drops".into(),
                Metric {
                    unit: "count".into(),
                    samples: vec![total as f64],
                },
            );
        } else {
            res.notes.extend(self.unreadable.iter().cloned());
        }
        if total > 0 {
            let named: Vec<String> = self
                .unaccounted_drops
                .iter()
                .flat_map(|(end, m)| m.iter().map(move |(k, v)| format!("{end} {k} +{v}")))
                .collect();
            res.notes.push(format!(
                "{total} packet(s) dropped outside the link model: {}",
                named.join(", ")
            ));
        }
        if !self.matched && res.status.is_ok() {
            res.status = CellStatus::Failed {
                reason: format!("transports did not match: {}", self.mismatches.join("; ")),
            };
        }
        res.transport = serde_json::to_value(&self).ok();
    }
}

/// Every read-back that differs from `cc`, for the transport `protocol` uses.
pub fn mismatches(
    cc: CongestionControl,
    protocol: Protocol,
    client: Option<&str>,
    server_tcp: &BTreeMap<String, u64>,
    server_quic: &BTreeMap<String, u64>,
) -> Vec<String> {
    let want = cc.name();
    let mut out = Vec::new();
    if protocol == Protocol::Udp {
        return out;
    }
    if let Some(c) = client {
        if c != want {
            out.push(format!(
                "client connection ran {c}, the cell asked for {want}"
            ));
        }
    }
    let server = if protocol == Protocol::H3 {
        server_quic
    } else {
        server_tcp
    };
    for (name, n) in server {
        if name != want {
            out.push(format!(
                "{n} server connection(s) ran {name}, the cell asked for {want}"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_the_end_and_the_controller() {
        let mut tcp = BTreeMap::new();
        tcp.insert("cubic".to_string(), 3);
        let quic = BTreeMap::new();
        assert!(mismatches(
            CongestionControl::Cubic,
            Protocol::H2,
            Some("cubic"),
            &tcp,
            &quic
        )
        .is_empty());
        let m = mismatches(
            CongestionControl::Bbr,
            Protocol::H2,
            Some("cubic"),
            &tcp,
            &quic,
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("client connection ran cubic"));
        assert!(m[1].contains("3 server connection(s) ran cubic"));
        // h3 is judged on QUIC's read-backs, not the TCP listeners'.
        let mut q = BTreeMap::new();
        q.insert("bbr".to_string(), 1);
        assert!(mismatches(CongestionControl::Bbr, Protocol::H3, Some("bbr"), &tcp, &q).is_empty());
        assert!(mismatches(CongestionControl::Bbr, Protocol::Udp, Some("x"), &tcp, &q).is_empty());
    }
}
