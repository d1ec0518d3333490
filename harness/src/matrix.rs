//! The matrix: what to run. A TOML file or an embedded preset, validated into a
//! [`Matrix`] whose errors name the file, the line and the field.

use std::collections::BTreeSet;
use std::path::Path;

use quicbench_netem::{Buffer, LinkSpec};
use quicbench_wire::transport::TcpFastStart;
use quicbench_wire::{CongestionControl, Protocol};
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub const QUICK: &str = include_str!("../presets/quick.toml");
pub const FULL: &str = include_str!("../presets/full.toml");
pub const GRID: &str = include_str!("../presets/grid.toml");
pub const IMPLS: &str = include_str!("../presets/impls.toml");

/// Most links a `[grid]` may expand to (each becomes at least one cell per
/// repetition; the full preset has a few dozen).
pub const MAX_GRID_LINKS: usize = 10_000;

/// An invalid matrix: where and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct MatrixError {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// The file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixFile {
    pub name: Option<String>,
    pub seed: Option<u64>,
    /// A number, or `{ min, max, target }` for adaptive repetitions.
    pub repetitions: Option<RepetitionsSpec>,
    pub warmup: Option<u32>,
    pub protocols: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub links: Vec<LinkEntry>,
    pub grid: Option<Grid>,
    #[serde(default)]
    pub workloads: Workloads,
    /// Congestion controller of both transports in a cell (QUIC's and
    /// `TCP_CONGESTION`): cubic (default), newreno, bbr, or a list of them
    /// (an axis: cells per controller).
    pub cc: Option<Spanned<OneOrMany>>,
    pub mtu: Option<u32>,
    /// Per-cell time limit, seconds (default 120).
    pub cell_timeout_s: Option<u64>,
    /// Bottleneck buffer of every rate-limited link, in BDPs: `"1bdp"`, or a
    /// sweep `["0.5bdp", "1bdp", "4bdp"]` (one link per value, labelled
    /// `<label>-buf<N>bdp`). Translated to netem's `limit` per direction (see
    /// `LinkSpec::limit_for_buffer`); a direction whose spec sets `limit`
    /// itself keeps it, and links without a rate have no bottleneck and keep
    /// their limit. Default: none (tc's `limit 1000`).
    pub buffer: Option<OneOrMany>,
    /// Server implementations to pair (docs/endpoints.md): names of
    /// built-in endpoints or of this file's `[[endpoints]]`. Default: ours.
    pub servers: Option<Vec<Spanned<String>>>,
    /// Client implementations to pair, likewise.
    pub clients: Option<Vec<Spanned<String>>>,
    /// The matrix's own endpoints, beside the built-in ones.
    #[serde(default)]
    pub endpoints: Vec<crate::endpoints::EndpointDef>,
}

/// `repetitions` as written: a plain number, or adaptive bounds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RepetitionsSpec {
    Fixed(u32),
    Adaptive {
        min: u32,
        max: u32,
        /// Stop a group once its headline metric's 95% interval half-width is
        /// at most `target` × its median (e.g. 0.05).
        target: f64,
    },
}

/// Adaptive repetitions: after `Matrix::repetitions` (the minimum), a group
/// keeps getting repetitions, interleaved with the other unfinished groups,
/// until its headline metric's 95% interval half-width is at most
/// `target` × median, or `max` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Adaptive {
    pub max: u32,
    pub target: f64,
}

/// A name or a list of names, as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    pub label: Option<String>,
    /// Both directions (one-way impairments: `delay 10ms` is a 20 ms RTT).
    pub spec: Option<Spanned<String>>,
    /// Client → server only.
    pub up: Option<Spanned<String>>,
    /// Server → client only.
    pub down: Option<Spanned<String>>,
    /// This link's buffers, instead of the matrix's `buffer` (e.g. a sweep
    /// on one link only).
    pub buffer: Option<OneOrMany>,
}

/// A grid of links: every RTT × loss (× rate) combination. Delay is split
/// evenly between the directions; loss and rate apply to each direction.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub rtt_ms: Vec<f64>,
    #[serde(default)]
    pub loss: Vec<f64>,
    #[serde(default)]
    pub rate_mbit: Vec<f64>,
    /// Extra netem options appended to every grid link, e.g. "limit 500".
    pub extra: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workloads {
    pub handshake: Option<HandshakeParams>,
    pub hol: Option<HolParams>,
    pub migration: Option<MigrationParams>,
    pub goodput: Option<GoodputParams>,
    pub udp: Option<UdpParams>,
    /// >65,535 connections at one server port (slow: not in the presets).
    pub conns: Option<crate::conns::ConnsParams>,
    /// Flows of a mix sharing a rate-limited link.
    pub fairness: Option<crate::fairness::FairnessParams>,
}

/// The handshake workload's modes (docs/matrix.md): `cold` (full
/// handshake), `resumed` (TLS resumption; QUIC 0-RTT), and TCP's answer to
/// 0-RTT: `resumed-tfo` (TCP Fast Open + resumption) and `resumed-tfo-0rtt`
/// (Fast Open + TLS 1.3 early data carrying the request).
/// Also the lost-flight modes (`crate::workloads::lost`): cold, with the
/// link dropping the client's or the server's first packet.
pub const HANDSHAKE_MODES: &[&str] = &[
    "cold",
    "resumed",
    crate::workloads::lost::FIRST_FLIGHT_LOST,
    crate::workloads::lost::SERVER_FLIGHT_LOST,
    "resumed-tfo",
    "resumed-tfo-0rtt",
];

/// What a handshake mode asks of TCP (both ends): Fast Open, early data.
pub fn tcp_fast_start(mode: &str) -> TcpFastStart {
    match mode {
        "resumed-tfo" => TcpFastStart::new(true, false),
        "resumed-tfo-0rtt" => TcpFastStart::new(true, true),
        _ => TcpFastStart::default(),
    }
}

/// Whether a handshake mode applies to a protocol: the Fast Open modes only
/// to TLS over TCP with a connection kept for its request (h1.1-tls, h2).
pub fn handshake_mode_applies(mode: &str, p: Protocol) -> bool {
    tcp_fast_start(mode) == TcpFastStart::default() || matches!(p, Protocol::H11Tls | Protocol::H2)
}

fn d_connections() -> u32 {
    5
}
fn d_small() -> u64 {
    1024
}
fn d_modes() -> Vec<String> {
    vec!["cold".into(), "resumed".into()]
}
fn d_interval_ms() -> u64 {
    20
}
fn d_duration_ms() -> u64 {
    2000
}
fn d_parallel() -> u32 {
    12
}
fn d_parallel_size() -> u64 {
    32 * 1024
}
fn d_mig_size() -> u64 {
    8 << 20
}
fn d_at_ms() -> u64 {
    500
}
fn d_kinds() -> Vec<String> {
    vec!["port".into(), "address".into(), "active".into()]
}
fn d_true() -> bool {
    true
}
fn d_paced_duration_ms() -> u64 {
    2000
}
fn d_stall_ms() -> u64 {
    1000
}
fn d_goodput_size() -> u64 {
    4 << 20
}
fn d_goodput_duration_ms() -> u64 {
    10_000
}
fn d_steady_after_rtts() -> u32 {
    10
}
fn d_count() -> u32 {
    500
}
fn d_interval_us() -> u64 {
    1000
}
fn d_probe_size() -> u32 {
    200
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeParams {
    /// Measured fresh connections per cell.
    #[serde(default = "d_connections")]
    pub connections: u32,
    /// Size of the object fetched on each connection.
    #[serde(default = "d_small")]
    pub size: u64,
    /// Any of [`HANDSHAKE_MODES`]: "cold" (no session state), "resumed" (TLS
    /// ticket; QUIC 0-RTT), "first-flight-lost" / "server-flight-lost" (cold,
    /// with the client's / the server's first packet of each measured
    /// connection dropped by the link's `drop-nth 1`), "resumed-tfo" and
    /// "resumed-tfo-0rtt" (TCP Fast Open, and TLS 1.3 early data too: TLS over
    /// TCP only). Default: cold and resumed.
    #[serde(default = "d_modes")]
    pub modes: Vec<String>,
    pub protocols: Option<Vec<String>>,
    pub links: Option<Vec<String>>,
    /// The lost-flight modes only on these of `links` (labels as written;
    /// default: all of them). Links with random loss never run them.
    pub lost_flight_links: Option<Vec<String>>,
    /// The lost-flight modes only for these of `protocols` (default: all).
    pub lost_flight_protocols: Option<Vec<String>>,
    /// Only the links with these buffers (of the matrix's `buffer` sweep;
    /// links without a rate always qualify).
    pub buffer: Option<OneOrMany>,
    /// Only these of the matrix's controllers (its `cc` list); all by default.
    pub cc: Option<OneOrMany>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HolParams {
    /// Paced: one request every `interval_ms`...
    #[serde(default = "d_interval_ms")]
    pub interval_ms: u64,
    /// ...for `duration_ms`.
    #[serde(default = "d_duration_ms")]
    pub duration_ms: u64,
    /// Size of each paced request's object.
    #[serde(default = "d_small")]
    pub size: u64,
    /// Parallel objects: K objects requested at once (0 disables the variant).
    #[serde(default = "d_parallel")]
    pub parallel_objects: u32,
    #[serde(default = "d_parallel_size")]
    pub parallel_size: u64,
    pub protocols: Option<Vec<String>>,
    pub links: Option<Vec<String>>,
    /// Only the links with these buffers (of the matrix's `buffer` sweep;
    /// links without a rate always qualify).
    pub buffer: Option<OneOrMany>,
    /// Only these of the matrix's controllers (its `cc` list); all by default.
    pub cc: Option<OneOrMany>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationParams {
    /// Size of the long transfer.
    #[serde(default = "d_mig_size")]
    pub size: u64,
    /// When the event happens, after the transfer starts.
    #[serde(default = "d_at_ms")]
    pub at_ms: u64,
    /// "port" (NAT port rebinding), "address" (NAT address rebinding),
    /// "active" (the HTTP/3 client migrates to a new socket).
    #[serde(default = "d_kinds")]
    pub kinds: Vec<String>,
    /// A TCP client gives up on a response that brings no byte for this long
    /// (a NAT rebinding leaves a TCP flow silently stalled), then reconnects
    /// and resumes with a Range request. Part of the measured recovery cost.
    #[serde(default = "d_stall_ms")]
    pub stall_timeout_ms: u64,
    /// Also run each kind during a paced request stream (variant `<kind>-paced`):
    /// a small request every `paced_interval_ms` for `paced_duration_ms`.
    #[serde(default = "d_true")]
    pub paced: bool,
    #[serde(default = "d_interval_ms")]
    pub paced_interval_ms: u64,
    #[serde(default = "d_paced_duration_ms")]
    pub paced_duration_ms: u64,
    pub protocols: Option<Vec<String>>,
    pub links: Option<Vec<String>>,
    /// Only the links with these buffers (of the matrix's `buffer` sweep;
    /// links without a rate always qualify).
    pub buffer: Option<OneOrMany>,
    /// Only these of the matrix's controllers (its `cc` list); all by default.
    pub cc: Option<OneOrMany>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoodputParams {
    /// The object whose time to complete is measured (slow start included).
    #[serde(default = "d_goodput_size")]
    pub size: u64,
    /// Then a transfer of about this long (at the link's rate, or at the
    /// object's rate without one) for the steady-state goodput; 0: none.
    #[serde(default = "d_goodput_duration_ms")]
    pub duration_ms: u64,
    /// The steady state starts this many RTTs after the long transfer's first byte.
    #[serde(default = "d_steady_after_rtts")]
    pub steady_after_rtts: u32,
    pub protocols: Option<Vec<String>>,
    pub links: Option<Vec<String>>,
    /// Only the links with these buffers (of the matrix's `buffer` sweep;
    /// links without a rate always qualify).
    pub buffer: Option<OneOrMany>,
    /// Only these of the matrix's controllers (its `cc` list); all by default.
    pub cc: Option<OneOrMany>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UdpParams {
    #[serde(default = "d_count")]
    pub count: u32,
    #[serde(default = "d_interval_us")]
    pub interval_us: u64,
    #[serde(default = "d_probe_size")]
    pub size: u32,
    pub links: Option<Vec<String>>,
    /// Only the links with these buffers (of the matrix's `buffer` sweep;
    /// links without a rate always qualify).
    pub buffer: Option<OneOrMany>,
}

/// One link of the matrix, both directions parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkDef {
    pub label: String,
    pub up: LinkSpec,
    pub down: LinkSpec,
    /// Configured base RTT (sum of both directions' base delays), ms.
    pub rtt_ms: f64,
    /// Configured nominal loss probability per packet (up direction).
    pub loss: f64,
    /// Configured rate, bits/s (up direction).
    pub rate_bps: Option<u64>,
    /// The matrix `buffer` this link got (None: no rate, limits set by hand,
    /// or no `buffer` setting).
    pub buffer: Option<Buffer>,
}

/// A validated matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub name: String,
    pub seed: u64,
    /// Repetitions planned up front (the minimum when adaptive).
    pub repetitions: u32,
    /// Adaptive repetitions beyond `repetitions`, if asked for.
    pub adaptive: Option<Adaptive>,
    pub warmup: u32,
    pub protocols: Vec<Protocol>,
    pub links: Vec<LinkDef>,
    pub workloads: Workloads,
    /// Congestion controllers, each applied to both transports of a cell
    /// (never empty; one per cell, and the cell id names it).
    pub ccs: Vec<CongestionControl>,
    pub mtu: u32,
    pub cell_timeout_s: u64,
    /// Server and client implementations to pair (never empty; `quicbench`
    /// alone unless the file names others).
    pub servers: Vec<String>,
    pub clients: Vec<String>,
    /// Every endpoint the matrix may name (built-ins and its own).
    pub endpoints: crate::endpoints::Registry,
    /// The source text, for run.json.
    pub source: String,
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

impl Matrix {
    /// An embedded preset by name.
    pub fn preset(name: &str) -> Result<Matrix, MatrixError> {
        let src = match name {
            "quick" => QUICK,
            "full" => FULL,
            "grid" => GRID,
            "impls" => IMPLS,
            other => {
                return Err(MatrixError {
                    file: "<preset>".into(),
                    line: 0,
                    field: "preset".into(),
                    message: format!(
                        "unknown preset {other:?}: expected quick, full, grid or impls"
                    ),
                })
            }
        };
        Self::parse(src, &format!("<preset {name}>"))
    }

    /// Load a matrix file.
    pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
        let src = std::fs::read_to_string(path).map_err(|e| MatrixError {
            file: path.display().to_string(),
            line: 0,
            field: "-".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&src, &path.display().to_string())
    }

    /// Parse and validate TOML text; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Matrix, MatrixError> {
        let err = |line: usize, field: &str, message: String| MatrixError {
            file: file.to_string(),
            line,
            field: field.to_string(),
            message,
        };
        let f: MatrixFile = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start)).unwrap_or(0);
            // toml's message names the field (e.g. "unknown field `x`, expected ...").
            err(line, "toml", e.message().trim().to_string())
        })?;

        let protocols = match &f.protocols {
            None => Protocol::ALL.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for p in list {
                    let proto: Protocol =
                        p.get_ref()
                            .parse()
                            .map_err(|e: quicbench_wire::UnknownName| {
                                err(line_of(src, p.span().start), "protocols", e.to_string())
                            })?;
                    if !out.contains(&proto) {
                        out.push(proto);
                    }
                }
                if out.is_empty() {
                    return Err(err(0, "protocols", "the list is empty".into()));
                }
                out
            }
        };

        let parse_spec = |s: &Spanned<String>, field: &str| -> Result<LinkSpec, MatrixError> {
            s.get_ref()
                .parse::<LinkSpec>()
                .map_err(|e| err(line_of(src, s.span().start), field, e.to_string()))
        };

        let mut links = Vec::new();
        // Per link: (up, down) spec text sets `limit` itself.
        let mut explicit: Vec<(bool, bool)> = Vec::new();
        // Per link: its own `buffer` list, if it has one.
        let mut own_buffers: Vec<Option<Vec<Buffer>>> = Vec::new();
        for (i, l) in f.links.iter().enumerate() {
            let field = format!("links[{i}]");
            let (up, down) = match (&l.spec, &l.up, &l.down) {
                (Some(s), None, None) => {
                    let s = parse_spec(s, &format!("{field}.spec"))?;
                    (s.clone(), s)
                }
                (None, up, down) if up.is_some() || down.is_some() => {
                    let up = match up {
                        Some(u) => parse_spec(u, &format!("{field}.up"))?,
                        None => LinkSpec::default(),
                    };
                    let down = match down {
                        Some(d) => parse_spec(d, &format!("{field}.down"))?,
                        None => LinkSpec::default(),
                    };
                    (up, down)
                }
                (Some(s), _, _) => {
                    return Err(err(
                        line_of(src, s.span().start),
                        &field,
                        "give either `spec` (both directions) or `up`/`down`, not both".into(),
                    ))
                }
                _ => {
                    return Err(err(
                        0,
                        &field,
                        "a link needs `spec`, or `up` and/or `down`".into(),
                    ))
                }
            };
            let label = l.label.clone().unwrap_or_else(|| default_label(&up, &down));
            let sets = |t: &Option<Spanned<String>>| {
                t.as_ref()
                    .is_some_and(|t| quicbench_netem::sets_limit(t.get_ref()))
            };
            let both = sets(&l.spec);
            explicit.push((both || sets(&l.up), both || sets(&l.down)));
            own_buffers.push(match &l.buffer {
                Some(b) => Some(
                    parse_buffers(Some(b)).map_err(|m| err(0, &format!("{field}.buffer"), m))?,
                ),
                None => None,
            });
            links.push(link_def(label, up, down));
        }
        if let Some(g) = &f.grid {
            if g.rtt_ms.is_empty() {
                return Err(err(0, "grid.rtt_ms", "needs at least one RTT".into()));
            }
            let losses = if g.loss.is_empty() {
                vec![0.0]
            } else {
                g.loss.clone()
            };
            let rates: Vec<Option<f64>> = if g.rate_mbit.is_empty() {
                vec![None]
            } else {
                g.rate_mbit.iter().map(|r| Some(*r)).collect()
            };
            // Checked before building them: a few KiB of TOML can ask for
            // millions of grid links (found by fuzz/fuzz_targets/matrix.rs).
            let points = g
                .rtt_ms
                .len()
                .saturating_mul(losses.len())
                .saturating_mul(rates.len());
            if points > MAX_GRID_LINKS {
                return Err(err(
                    0,
                    "grid",
                    format!(
                        "{points} links (rtt_ms × loss × rate_mbit), more than {MAX_GRID_LINKS}"
                    ),
                ));
            }
            for &rtt in &g.rtt_ms {
                if !(rtt.is_finite() && rtt >= 0.0) {
                    return Err(err(
                        0,
                        "grid.rtt_ms",
                        format!("RTT must be ≥ 0 ms, got {rtt}"),
                    ));
                }
                for &loss in &losses {
                    if !(0.0..1.0).contains(&loss) {
                        return Err(err(
                            0,
                            "grid.loss",
                            format!("loss is a probability in [0, 1), got {loss}"),
                        ));
                    }
                    for rate in &rates {
                        let text = grid_spec_text(rtt, loss, *rate, g.extra.as_deref());
                        let spec: LinkSpec =
                            text.parse().map_err(|e: quicbench_netem::SpecError| {
                                err(0, "grid", format!("{text:?}: {e}"))
                            })?;
                        let mut label =
                            format!("rtt{}ms-loss{}%", fmt_num(rtt), fmt_num(loss * 100.0));
                        if let Some(r) = rate {
                            label.push_str(&format!("-{}mbit", fmt_num(*r)));
                        }
                        let own = quicbench_netem::sets_limit(&text);
                        explicit.push((own, own));
                        links.push(link_def(label, spec.clone(), spec));
                    }
                }
            }
        }
        if links.is_empty() {
            explicit.push((false, false));
            links.push(link_def(
                "direct".into(),
                LinkSpec::default(),
                LinkSpec::default(),
            ));
        }
        let mtu = f.mtu.unwrap_or(1500);
        let buffers = parse_buffers(f.buffer.as_ref()).map_err(|m| err(0, "buffer", m))?;
        own_buffers.resize(links.len(), None);
        let per_link: Vec<Vec<Buffer>> = own_buffers
            .into_iter()
            .map(|o| o.unwrap_or_else(|| buffers.clone()))
            .collect();
        // Every buffer some link runs: what a workload's `buffer` may name.
        let mut buffers = buffers;
        for b in per_link.iter().flatten() {
            if !buffers.contains(b) {
                buffers.push(*b);
            }
        }
        let (links, expanded) = with_buffers(links, &explicit, &per_link, mtu);
        let mut seen = BTreeSet::new();
        for l in &links {
            if !seen.insert(l.label.clone()) {
                return Err(err(
                    0,
                    "links",
                    format!("duplicate link label {:?}", l.label),
                ));
            }
        }

        let ccs = match &f.cc {
            None => vec![CongestionControl::default()],
            Some(s) => {
                let mut out = Vec::new();
                for name in s.get_ref().items() {
                    let cc: CongestionControl =
                        name.parse().map_err(|e: quicbench_wire::UnknownName| {
                            err(line_of(src, s.span().start), "cc", e.to_string())
                        })?;
                    if !out.contains(&cc) {
                        out.push(cc);
                    }
                }
                if out.is_empty() {
                    return Err(err(
                        line_of(src, s.span().start),
                        "cc",
                        "the list is empty".into(),
                    ));
                }
                out
            }
        };

        let mut workloads = f.workloads.clone();
        filter_buffers(&mut workloads, &links, &expanded, &buffers)
            .map_err(|(field, m)| err(0, &field, m))?;
        check_workload_ccs(&workloads, &ccs).map_err(|(field, m)| err(0, &field, m))?;
        let wl = &workloads;
        if wl.handshake.is_none()
            && wl.hol.is_none()
            && wl.migration.is_none()
            && wl.goodput.is_none()
            && wl.udp.is_none()
            && wl.conns.is_none()
            && wl.fairness.is_none()
        {
            return Err(err(0, "workloads", "no workload: add at least one of [workloads.handshake], .hol, .migration, .goodput, .udp, .conns, .fairness".into()));
        }
        let labels: BTreeSet<&str> = links.iter().map(|l| l.label.as_str()).collect();
        let check_subset = |field: &str,
                            protos: &Option<Vec<String>>,
                            ls: &Option<Vec<String>>|
         -> Result<(), MatrixError> {
            for p in protos.iter().flatten() {
                p.parse::<Protocol>()
                    .map_err(|e| err(0, field, e.to_string()))?;
            }
            for l in ls.iter().flatten() {
                if !labels.contains(l.as_str()) {
                    return Err(err(
                        0,
                        field,
                        format!("unknown link label {l:?}; links are {labels:?}"),
                    ));
                }
            }
            Ok(())
        };
        if let Some(h) = &wl.handshake {
            check_subset("workloads.handshake", &h.protocols, &h.links)?;
            check_subset(
                "workloads.handshake.lost_flight_links",
                &None,
                &h.lost_flight_links,
            )?;
            check_subset(
                "workloads.handshake.lost_flight_protocols",
                &h.lost_flight_protocols,
                &None,
            )?;
            for m in &h.modes {
                if !HANDSHAKE_MODES.contains(&m.as_str()) {
                    return Err(err(
                        0,
                        "workloads.handshake.modes",
                        format!(
                            "unknown mode {m:?}: expected {}",
                            HANDSHAKE_MODES.join(", ")
                        ),
                    ));
                }
            }
            if h.connections == 0 {
                return Err(err(
                    0,
                    "workloads.handshake.connections",
                    "must be ≥ 1".into(),
                ));
            }
        }
        if let Some(h) = &wl.hol {
            check_subset("workloads.hol", &h.protocols, &h.links)?;
            if h.interval_ms == 0 || h.duration_ms < h.interval_ms {
                return Err(err(
                    0,
                    "workloads.hol",
                    "need interval_ms ≥ 1 and duration_ms ≥ interval_ms".into(),
                ));
            }
        }
        if let Some(m) = &wl.migration {
            check_subset("workloads.migration", &m.protocols, &m.links)?;
            for k in &m.kinds {
                if !["port", "address", "active"].contains(&k.as_str()) {
                    return Err(err(
                        0,
                        "workloads.migration.kinds",
                        format!("unknown kind {k:?}: expected port, address, active"),
                    ));
                }
            }
        }
        if let Some(g) = &wl.goodput {
            check_subset("workloads.goodput", &g.protocols, &g.links)?;
            if g.size == 0 {
                return Err(err(0, "workloads.goodput.size", "must be ≥ 1 byte".into()));
            }
        }
        if let Some(u) = &wl.udp {
            check_subset("workloads.udp", &None, &u.links)?;
            if u.size < 48 || u.size > 65_507 {
                return Err(err(
                    0,
                    "workloads.udp.size",
                    format!("datagram size must be 48..=65507, got {}", u.size),
                ));
            }
        }
        if let Some(c) = &wl.conns {
            check_subset("workloads.conns", &None, &c.links)?;
            c.validate().map_err(|e| err(0, "workloads.conns", e))?;
        }
        if let Some(fw) = &wl.fairness {
            check_subset("workloads.fairness", &None, &fw.links)?;
            crate::fairness::validate(fw).map_err(|(field, m)| err(0, &field, m))?;
            // The names as written (a `buffer` filter adds rateless links back).
            let raw = f.workloads.fairness.as_ref().unwrap_or(fw);
            check_fairness_links(raw, &links).map_err(|m| err(0, "workloads.fairness.links", m))?;
        }
        let (repetitions, adaptive) = match f.repetitions {
            None => (3, None),
            Some(RepetitionsSpec::Fixed(n)) => (n, None),
            Some(RepetitionsSpec::Adaptive { min, max, target }) => {
                if max < min {
                    return Err(err(0, "repetitions", format!("max {max} < min {min}")));
                }
                if !(target > 0.0 && target < 1.0) {
                    return Err(err(
                        0,
                        "repetitions.target",
                        format!("a fraction of the median in (0, 1), got {target}"),
                    ));
                }
                (min, Some(Adaptive { max, target }))
            }
        };
        if repetitions == 0 {
            return Err(err(0, "repetitions", "must be ≥ 1".into()));
        }
        if !(1280..=65_535).contains(&mtu) {
            return Err(err(
                0,
                "mtu",
                format!("must be 1280..=65535 (IPv6 minimum is 1280), got {mtu}"),
            ));
        }
        let endpoints = crate::endpoints::Registry::with(&f.endpoints)
            .map_err(|(i, m)| err(0, &format!("endpoints[{i}]"), m))?;
        let pick = |field: &str,
                    role: crate::endpoints::Role,
                    list: &Option<Vec<Spanned<String>>>|
         -> Result<Vec<String>, MatrixError> {
            let Some(list) = list else {
                return Ok(vec![crate::endpoints::OURS.to_string()]);
            };
            let mut out: Vec<String> = Vec::new();
            for s in list {
                let name = s.get_ref();
                if endpoints.get(role, name).is_none() {
                    return Err(err(
                        line_of(src, s.span().start),
                        field,
                        format!(
                            "unknown {} endpoint {name:?}; known: {}",
                            role.name(),
                            endpoints.names(role).join(", ")
                        ),
                    ));
                }
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            if out.is_empty() {
                return Err(err(0, field, "the list is empty".into()));
            }
            Ok(out)
        };
        let servers = pick("servers", crate::endpoints::Role::Server, &f.servers)?;
        let clients = pick("clients", crate::endpoints::Role::Client, &f.clients)?;
        Ok(Matrix {
            name: f.name.clone().unwrap_or_else(|| "matrix".into()),
            seed: f.seed.unwrap_or(1),
            repetitions,
            adaptive,
            warmup: f.warmup.unwrap_or(1),
            protocols,
            links,
            workloads,
            ccs,
            mtu,
            cell_timeout_s: f.cell_timeout_s.unwrap_or(120),
            servers,
            clients,
            endpoints,
            source: src.to_string(),
        })
    }

    pub fn link(&self, label: &str) -> Option<&LinkDef> {
        self.links.iter().find(|l| l.label == label)
    }
}

/// A workload's `cc`: known names, each one of the matrix's controllers.
fn check_workload_ccs(wl: &Workloads, ccs: &[CongestionControl]) -> Result<(), (String, String)> {
    let lists = [
        (
            "workloads.handshake.cc",
            wl.handshake.as_ref().and_then(|w| w.cc.as_ref()),
        ),
        (
            "workloads.hol.cc",
            wl.hol.as_ref().and_then(|w| w.cc.as_ref()),
        ),
        (
            "workloads.migration.cc",
            wl.migration.as_ref().and_then(|w| w.cc.as_ref()),
        ),
        (
            "workloads.goodput.cc",
            wl.goodput.as_ref().and_then(|w| w.cc.as_ref()),
        ),
        (
            "workloads.fairness.cc",
            wl.fairness.as_ref().and_then(|w| w.cc.as_ref()),
        ),
    ];
    for (field, list) in lists {
        let Some(list) = list else { continue };
        if list.items().is_empty() {
            return Err((field.into(), "the list is empty".into()));
        }
        for name in list.items() {
            let cc: CongestionControl = name
                .parse()
                .map_err(|e: quicbench_wire::UnknownName| (field.to_string(), e.to_string()))?;
            if !ccs.contains(&cc) {
                return Err((
                    field.into(),
                    format!("{name} is not in the matrix's cc setting"),
                ));
            }
        }
    }
    Ok(())
}

/// The controllers a workload runs: its own `cc` (checked at parse time to
/// be among the matrix's), else all of the matrix's.
pub fn workload_ccs(m: &Matrix, list: Option<&OneOrMany>) -> Vec<CongestionControl> {
    match list {
        None => m.ccs.clone(),
        Some(l) => m
            .ccs
            .iter()
            .copied()
            .filter(|cc| l.items().iter().any(|n| n.parse().ok() == Some(*cc)))
            .collect(),
    }
}

/// The `buffer` values of a matrix or workload, checked.
fn parse_buffers(b: Option<&OneOrMany>) -> Result<Vec<Buffer>, String> {
    let Some(b) = b else { return Ok(Vec::new()) };
    let mut out: Vec<Buffer> = Vec::new();
    for s in b.items() {
        let v: Buffer = s.parse()?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err("the list is empty".into());
    }
    Ok(out)
}

/// Every rate-limited link once per buffer, its `limit` set from the buffer
/// (directions with their own `limit` or without a rate keep theirs). With a
/// sweep, labels get `-buf<N>bdp`. Also returns base label -> its links.
fn with_buffers(
    links: Vec<LinkDef>,
    explicit: &[(bool, bool)],
    per_link: &[Vec<Buffer>],
    mtu: u32,
) -> (Vec<LinkDef>, Vec<(String, Vec<String>)>) {
    let mut out = Vec::new();
    let mut expanded = Vec::new();
    for ((l, &(own_up, own_down)), buffers) in links.into_iter().zip(explicit).zip(per_link) {
        if buffers.is_empty() {
            expanded.push((l.label.clone(), vec![l.label.clone()]));
            out.push(l);
            continue;
        }
        let rtt_ns = l.up.base_delay_ns() + l.down.base_delay_ns();
        let sized = |spec: &LinkSpec, own: bool, b: Buffer| -> Option<LinkSpec> {
            if own {
                return None;
            }
            let limit = spec.limit_for_buffer(b, rtt_ns, mtu)?;
            Some(LinkSpec {
                limit,
                ..spec.clone()
            })
        };
        if sized(&l.up, own_up, buffers[0]).is_none()
            && sized(&l.down, own_down, buffers[0]).is_none()
        {
            // No rate, or limits given by hand: the buffer does not apply.
            expanded.push((l.label.clone(), vec![l.label.clone()]));
            out.push(l);
            continue;
        }
        let mut names = Vec::new();
        for &b in buffers {
            let up = sized(&l.up, own_up, b).unwrap_or_else(|| l.up.clone());
            let down = sized(&l.down, own_down, b).unwrap_or_else(|| l.down.clone());
            let label = if buffers.len() > 1 {
                format!("{}-buf{b}", l.label)
            } else {
                l.label.clone()
            };
            names.push(label.clone());
            let mut d = link_def(label, up, down);
            d.buffer = Some(b);
            out.push(d);
        }
        expanded.push((l.label, names));
    }
    (out, expanded)
}

/// Workload link filters name links as written: each base label stands for
/// all its buffer variants; a workload `buffer` keeps only those variants.
fn filter_buffers(
    wl: &mut Workloads,
    links: &[LinkDef],
    expanded: &[(String, Vec<String>)],
    buffers: &[Buffer],
) -> Result<(), (String, String)> {
    let expand = |ls: &mut Option<Vec<String>>| {
        if let Some(list) = ls.as_mut() {
            *list = list
                .iter()
                .flat_map(|x| match expanded.iter().find(|(base, _)| base == x) {
                    Some((_, names)) => names.clone(),
                    None => vec![x.clone()],
                })
                .collect();
        }
    };
    let restrict = |field: &str,
                    ls: &mut Option<Vec<String>>,
                    b: &Option<OneOrMany>|
     -> Result<(), (String, String)> {
        expand(ls);
        let Some(b) = b else { return Ok(()) };
        let want = parse_buffers(Some(b)).map_err(|m| (field.to_string(), m))?;
        if let Some(x) = want.iter().find(|w| !buffers.contains(w)) {
            return Err((
                field.to_string(),
                format!("buffer {x} is not in the matrix's buffer setting"),
            ));
        }
        let keep = |l: &LinkDef| l.buffer.is_none_or(|lb| want.contains(&lb));
        let all: Vec<String> = match ls.take() {
            Some(list) => list,
            None => links.iter().map(|l| l.label.clone()).collect(),
        };
        *ls = Some(
            all.into_iter()
                .filter(|x| {
                    links.iter().any(|l| &l.label == x && keep(l))
                        || !links.iter().any(|l| &l.label == x)
                })
                .collect(),
        );
        Ok(())
    };
    if let Some(h) = wl.handshake.as_mut() {
        restrict("workloads.handshake.buffer", &mut h.links, &h.buffer)?;
        expand(&mut h.lost_flight_links);
    }
    if let Some(h) = wl.hol.as_mut() {
        restrict("workloads.hol.buffer", &mut h.links, &h.buffer)?;
    }
    if let Some(m) = wl.migration.as_mut() {
        restrict("workloads.migration.buffer", &mut m.links, &m.buffer)?;
    }
    if let Some(g) = wl.goodput.as_mut() {
        restrict("workloads.goodput.buffer", &mut g.links, &g.buffer)?;
    }
    if let Some(u) = wl.udp.as_mut() {
        restrict("workloads.udp.buffer", &mut u.links, &u.buffer)?;
    }
    if let Some(c) = wl.conns.as_mut() {
        expand(&mut c.links);
    }
    if let Some(f) = wl.fairness.as_mut() {
        restrict("workloads.fairness.buffer", &mut f.links, &f.buffer)?;
    }
    Ok(())
}

/// A fairness workload needs a bottleneck: a link it names must have a
/// rate, and without `links` at least one link must.
fn check_fairness_links(
    f: &crate::fairness::FairnessParams,
    links: &[LinkDef],
) -> Result<(), String> {
    match &f.links {
        Some(names) => {
            for n in names {
                if let Some(l) = links.iter().find(|l| &l.label == n) {
                    if l.rate_bps.is_none() {
                        return Err(format!(
                            "link {n:?} has no rate: fairness needs a bottleneck (add `rate ...` to its spec)"
                        ));
                    }
                }
            }
            Ok(())
        }
        None if links.iter().any(|l| l.rate_bps.is_some()) => Ok(()),
        None => Err(
            "no link has a rate: fairness needs a bottleneck (add `rate ...` to a link's spec)"
                .into(),
        ),
    }
}

fn fmt_num(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The netem text of one grid point (one direction).
pub fn grid_spec_text(
    rtt_ms: f64,
    loss: f64,
    rate_mbit: Option<f64>,
    extra: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    let one_way_us = (rtt_ms * 1000.0 / 2.0).round() as u64;
    if one_way_us > 0 {
        parts.push(format!("delay {one_way_us}us"));
    }
    if loss > 0.0 {
        parts.push(format!("loss random {}%", fmt_num(loss * 100.0)));
    }
    if let Some(r) = rate_mbit {
        parts.push(format!("rate {}kbit", (r * 1000.0).round() as u64));
    }
    if let Some(e) = extra {
        parts.push(e.to_string());
    }
    parts.join(" ")
}

fn default_label(up: &LinkSpec, down: &LinkSpec) -> String {
    if up == down {
        let s = up.to_string();
        if s.is_empty() {
            "direct".into()
        } else {
            s
        }
    } else {
        format!("up[{up}] down[{down}]")
    }
}

/// A link with its derived figures.
pub fn link_def(label: String, up: LinkSpec, down: LinkSpec) -> LinkDef {
    let rtt_ms = (up.base_delay_ns() + down.base_delay_ns()) as f64 / 1e6;
    LinkDef {
        label,
        rtt_ms,
        loss: up.loss_probability(),
        rate_bps: up.rate_bps(),
        buffer: None,
        up,
        down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lost-flight modes are handshake modes, each its own cell variant;
    /// an unknown mode names them all.
    #[test]
    fn handshake_modes_include_the_lost_flights() {
        let text = |modes: &str| {
            format!(
                "name = \"t\"\nprotocols = [\"h2\", \"h3\"]\n[[links]]\nlabel = \"l\"\n\
                 spec = \"delay 10ms\"\n[workloads.handshake]\nmodes = {modes}\n"
            )
        };
        let m = Matrix::parse(
            &text("[\"cold\", \"first-flight-lost\", \"server-flight-lost\"]"),
            "<t>",
        )
        .unwrap();
        let variants: std::collections::BTreeSet<String> = crate::plan::cells(&m)
            .into_iter()
            .map(|c| c.variant)
            .collect();
        assert_eq!(
            variants.into_iter().collect::<Vec<_>>(),
            ["cold", "first-flight-lost", "server-flight-lost"]
        );
        let e = Matrix::parse(&text("[\"lost\"]"), "<t>")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected cold, resumed, first-flight-lost, server-flight-lost"),
            "{e}"
        );
    }

    #[test]
    fn presets_parse() {
        let q = Matrix::preset("quick").unwrap();
        assert_eq!(q.protocols.len(), 8);
        assert!(q.links.len() >= 2);
        assert!((q.links[0].rtt_ms - 20.0).abs() < 1e-9);
        let g = Matrix::preset("grid").unwrap();
        // 3 RTTs × 4 losses × 2 rates, each at 0.5, 1 and 4 BDP.
        assert_eq!(g.links.len(), 3 * 4 * 2 * 3);
        // 10 links, two of them swept over 3 buffers.
        let f = Matrix::preset("full").unwrap();
        assert_eq!(f.links.len(), 10 + 2 * 2);
        assert!(f.link("rtt50ms-loss2%-100mbit-buf4bdp").is_some());
        assert!(f.link("rtt150ms-100mbit").is_some());
        assert!(Matrix::preset("nope").is_err());
        let i = Matrix::preset("impls").unwrap();
        assert!(
            i.servers.len() >= 5 && i.clients.len() >= 4,
            "{:?} {:?}",
            i.servers,
            i.clients
        );
        // Every h3 server × client pair, every h2 one, and ours in both.
        let cells = crate::plan::cells_upto(&i, 1);
        let pairs: std::collections::BTreeSet<(&str, &str, &str)> = cells
            .iter()
            .map(|c| (c.protocol.name(), c.server.as_str(), c.client.as_str()))
            .collect();
        assert!(pairs.contains(&("h3", "quic-go", "ngtcp2")));
        assert!(pairs.contains(&("h2", "nginx", "curl")));
        assert!(pairs.contains(&("h2", "quicbench", "quicbench")));
        assert!(!pairs.iter().any(|(p, s, _)| *p == "h2" && *s == "ngtcp2"));
    }

    /// Presets state their buffers in BDP: no rate-limited link keeps tc's
    /// 1000-packet default (~600 ms at 20 Mbit/s).
    #[test]
    fn presets_size_buffers_in_bdp() {
        let q = Matrix::preset("quick").unwrap();
        let l = q.link("rtt20ms-20mbit").unwrap();
        // 20 Mbit/s, 20 ms: 17 packets in the 10 ms delay line + 34 (one BDP).
        assert_eq!((l.up.limit, l.down.limit), (51, 51));
        assert_eq!(l.buffer.map(|b| b.to_string()).as_deref(), Some("1bdp"));
        assert_eq!(
            q.link("rtt20ms").unwrap().up.limit,
            1000,
            "no rate: no bottleneck"
        );
        // The quick preset's cells: 180 before issue 14's reordering link
        // (goodput: 7 protocols, udp: 1) and fairness mix (1), and the two
        // lost-flight handshakes (h2 and h3, the lossless link) and the two
        // Fast Open ones (h1.1-tls and h2, both links), 2 repetitions.
        assert_eq!(
            crate::plan::cells(&q).len(),
            180 + 2 * (7 + 1 + 1) + 2 * 2 * 2 + 2 * 2 * 2 * 2
        );
        let f = Matrix::preset("grid").unwrap();
        let full = Matrix::preset("full").unwrap();
        // Every link with a rate (all but the full preset's jitter link,
        // which reorders only without one) has its buffer in BDP.
        for l in f.links.iter().chain(&full.links) {
            if l.label == "rtt50ms-jitter5ms" {
                assert_eq!((l.rate_bps, l.buffer), (None, None));
                continue;
            }
            let b = l
                .buffer
                .expect("every other full- and grid-preset link has a rate");
            let rtt = l.up.base_delay_ns() + l.down.base_delay_ns();
            assert_eq!(
                Some(l.up.limit),
                l.up.limit_for_buffer(b, rtt, 1500),
                "{}",
                l.label
            );
        }
        let sweep: Vec<String> = f
            .links
            .iter()
            .filter(|l| l.label.starts_with("rtt50ms-loss0%-20mbit"))
            .map(|l| format!("{} {}", l.label, l.up))
            .collect();
        assert_eq!(
            sweep,
            [
                "rtt50ms-loss0%-20mbit-buf0.5bdp limit 84 delay 25ms rate 20mbit",
                "rtt50ms-loss0%-20mbit-buf1bdp limit 126 delay 25ms rate 20mbit",
                "rtt50ms-loss0%-20mbit-buf4bdp limit 376 delay 25ms rate 20mbit",
            ]
        );
        // Handshake and UDP at 1 BDP only; the others sweep.
        let hs = f
            .workloads
            .handshake
            .as_ref()
            .unwrap()
            .links
            .clone()
            .unwrap();
        assert!(
            hs.len() == 24 && hs.iter().all(|l| l.ends_with("-buf1bdp")),
            "{hs:?}"
        );
        assert!(f.workloads.hol.as_ref().unwrap().links.is_none());
        eprintln!("full preset: {} cells", crate::plan::cells(&f).len());
    }

    #[test]
    fn buffer_setting_rules() {
        let src = "buffer = [\"1bdp\", \"4bdp\"]\n\
                   [[links]]\nlabel = \"norate\"\nspec = \"delay 10ms\"\n\
                   [[links]]\nlabel = \"raw\"\nspec = \"delay 10ms rate 10mbit limit 50\"\n\
                   [[links]]\nlabel = \"half\"\nup = \"delay 5ms rate 10mbit lim 70\"\ndown = \"delay 5ms rate 10mbit\"\n\
                   [[links]]\nlabel = \"r\"\nspec = \"delay 10ms rate 10mbit\"\n\
                   [workloads.goodput]\nlinks = [\"r\", \"norate\"]\n\
                   [workloads.udp]\nbuffer = \"4bdp\"\n";
        let m = Matrix::parse(src, "b.toml").unwrap();
        let labels: Vec<&str> = m.links.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "norate",
                "raw",
                "half-buf1bdp",
                "half-buf4bdp",
                "r-buf1bdp",
                "r-buf4bdp"
            ]
        );
        assert_eq!(m.link("norate").unwrap().up.limit, 1000);
        assert_eq!(m.link("norate").unwrap().buffer, None);
        // A raw limit wins, per direction.
        assert_eq!(m.link("raw").unwrap().up.limit, 50);
        assert_eq!(m.link("raw").unwrap().buffer, None);
        let h = m.link("half-buf4bdp").unwrap();
        // 10 Mbit/s, 10 ms RTT: 5 in the delay line + max(16, 4 × 8.3 → 34).
        assert_eq!((h.up.limit, h.down.limit), (70, 5 + 34));
        let r = m.link("r-buf1bdp").unwrap();
        // 10 Mbit/s, 20 ms RTT: 9 in the delay line + 17 (one BDP).
        assert_eq!(r.up.limit, 9 + 17);
        // Filters name links as written; a workload buffer keeps its variants.
        assert_eq!(
            m.workloads.goodput.as_ref().unwrap().links.as_deref(),
            Some(&["r-buf1bdp".to_string(), "r-buf4bdp".into(), "norate".into()][..])
        );
        assert_eq!(
            m.workloads.udp.as_ref().unwrap().links.as_deref(),
            Some(
                &[
                    "norate".to_string(),
                    "raw".into(),
                    "half-buf4bdp".into(),
                    "r-buf4bdp".into()
                ][..]
            )
        );
        // Errors.
        let bad = Matrix::parse("buffer = \"1mb\"\n[workloads.goodput]\n", "b.toml").unwrap_err();
        assert_eq!(bad.field, "buffer", "{bad}");
        let bad = Matrix::parse(
            "buffer = \"1bdp\"\n[workloads.goodput]\nbuffer = \"2bdp\"\n",
            "b.toml",
        )
        .unwrap_err();
        assert!(bad.message.contains("2bdp"), "{bad}");
    }

    #[test]
    fn errors_name_file_line_field() {
        let src = "name = \"x\"\nprotocols = [\"h3\", \"h4\"]\n[workloads.goodput]\n";
        let e = Matrix::parse(src, "m.toml").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("m.toml", 2, "protocols")
        );
        assert!(e.message.contains("h4"), "{e}");

        let src =
            "protocols = [\"h3\"]\n\n[[links]]\nspec = \"delay 10 parsecs\"\n[workloads.goodput]\n";
        let e = Matrix::parse(src, "m.toml").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (4, "links[0].spec"), "{e}");

        let src = "protocols = [\"h3\"]\nrepetitons = 3\n[workloads.goodput]\n";
        let e = Matrix::parse(src, "m.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("repetitons"), "{e}");

        let src = "protocols = [\"h3\"]\n[workloads.hol]\ninterval_ms = \"fast\"\n";
        let e = Matrix::parse(src, "m.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");

        let src = "protocols = [\"h3\"]\n";
        let e = Matrix::parse(src, "m.toml").unwrap_err();
        assert_eq!(e.field, "workloads");

        let src = "[workloads.migration]\nkinds = [\"teleport\"]\n";
        assert!(Matrix::parse(src, "m.toml")
            .unwrap_err()
            .message
            .contains("teleport"));
        let src = "[workloads.goodput]\nlinks = [\"nowhere\"]\n";
        assert!(Matrix::parse(src, "m.toml")
            .unwrap_err()
            .message
            .contains("nowhere"));
        let src = "[[links]]\nspec = \"delay 1ms\"\nup = \"delay 2ms\"\n[workloads.goodput]\n";
        assert!(Matrix::parse(src, "m.toml")
            .unwrap_err()
            .message
            .contains("not both"));
    }

    #[test]
    fn grid_expands_and_labels() {
        let src =
            "[grid]\nrtt_ms = [20, 100]\nloss = [0, 0.01]\nrate_mbit = [10]\n[workloads.goodput]\n";
        let m = Matrix::parse(src, "g.toml").unwrap();
        assert_eq!(m.links.len(), 4);
        let l = m.link("rtt100ms-loss1%-10mbit").unwrap();
        assert!((l.rtt_ms - 100.0).abs() < 1e-9);
        assert!((l.loss - 0.01).abs() < 1e-9);
        assert_eq!(l.rate_bps, Some(10_000_000));
        assert_eq!(grid_spec_text(20.0, 0.0, None, None), "delay 10000us");
    }

    #[test]
    fn repetitions_plain_or_adaptive() {
        let m = Matrix::parse("repetitions = 4\n[workloads.goodput]\n", "r.toml").unwrap();
        assert_eq!((m.repetitions, m.adaptive), (4, None));
        let src = "repetitions = { min = 6, max = 30, target = 0.05 }\n[workloads.goodput]\n";
        let m = Matrix::parse(src, "r.toml").unwrap();
        assert_eq!(m.repetitions, 6);
        assert_eq!(
            m.adaptive,
            Some(Adaptive {
                max: 30,
                target: 0.05
            })
        );
        let bad = "repetitions = { min = 6, max = 3, target = 0.05 }\n[workloads.goodput]\n";
        assert!(Matrix::parse(bad, "r.toml").is_err());
        let bad = "repetitions = { min = 6, max = 9, target = 5 }\n[workloads.goodput]\n";
        assert!(Matrix::parse(bad, "r.toml").is_err());
    }

    #[test]
    fn up_down_links() {
        let src = "[[links]]\nlabel = \"asym\"\nup = \"delay 5ms\"\ndown = \"delay 15ms rate 10mbit\"\n[workloads.goodput]\n";
        let m = Matrix::parse(src, "a.toml").unwrap();
        assert!((m.links[0].rtt_ms - 20.0).abs() < 1e-9);
    }

    /// Found by `fuzz/fuzz_targets/matrix.rs`: 2.6 KiB of TOML asking for
    /// 199 × 200 × 199 grid links ran for minutes building them.
    #[test]
    fn fuzz_regression_huge_grid_is_refused_at_once() {
        let list = |f: &dyn Fn(usize) -> String| (1..200).map(f).collect::<Vec<_>>().join(",");
        let src = format!(
            "[grid]\nrtt_ms = [{}]\nloss = [0.0,{}]\nrate_mbit = [{}]\n[workloads.goodput]\n",
            list(&|i| i.to_string()),
            list(&|i| format!("0.{i:03}")),
            list(&|i| i.to_string()),
        );
        let t = std::time::Instant::now();
        let e = Matrix::parse(&src, "g.toml").unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(e.field, "grid");
        assert!(e.message.contains("7920200 links"), "{e}");
        // The largest grid allowed still parses.
        let src = format!(
            "[grid]\nrtt_ms = [{}]\nloss = [0.0, 0.01]\n[workloads.goodput]\n",
            (0..MAX_GRID_LINKS / 2)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            Matrix::parse(&src, "g.toml").unwrap().links.len(),
            MAX_GRID_LINKS
        );
    }
}
