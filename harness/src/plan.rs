//! From a matrix to the list of cells, and the deterministic shard of it.

use quicbench_wire::transport::TcpFastStart;
use quicbench_wire::{CongestionControl, Protocol};
use serde::{Deserialize, Serialize};

use crate::fairness::Mix;
use crate::matrix::Matrix;

/// The five workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Handshake,
    Hol,
    Migration,
    Goodput,
    Udp,
    /// Many concurrent connections at one server port (`crate::conns`).
    Conns,
    /// Flows of a mix sharing one bottleneck (`crate::fairness`).
    Fairness,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Handshake => "handshake",
            Workload::Hol => "hol",
            Workload::Migration => "migration",
            Workload::Goodput => "goodput",
            Workload::Udp => "udp",
            Workload::Conns => "conns",
            Workload::Fairness => "fairness",
        }
    }
}

/// One unit of measurement: protocol × link × workload (variant) × repetition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable, file-name safe, unique within the matrix.
    pub id: String,
    pub protocol: Protocol,
    pub workload: Workload,
    pub variant: String,
    /// Index into `Matrix::links`.
    pub link: usize,
    /// The congestion controller of both transports (None: a workload with
    /// no congestion control, the raw UDP probe).
    #[serde(default)]
    pub cc: Option<CongestionControl>,
    pub repetition: u32,
    /// Seed of this cell's link model (derived from the matrix seed and the id).
    pub seed: u64,
    /// Server and client implementation (docs/endpoints.md); `quicbench` is ours.
    #[serde(default = "ours")]
    pub server: String,
    #[serde(default = "ours")]
    pub client: String,
}

fn ours() -> String {
    crate::endpoints::OURS.to_string()
}

impl Cell {
    /// TCP Fast Open and TLS early data as the cell asks (both ends): only
    /// the handshake workload's `resumed-tfo*` modes turn them on.
    pub fn fast_start(&self) -> TcpFastStart {
        if self.workload == Workload::Handshake {
            crate::matrix::tcp_fast_start(&self.variant)
        } else {
            TcpFastStart::default()
        }
    }

    /// Both ends are ours.
    pub fn ours(&self) -> bool {
        self.server == crate::endpoints::OURS && self.client == crate::endpoints::OURS
    }
}

/// The cell id part naming a pair that is not ours on both sides.
pub fn pair_part(server: &str, client: &str) -> String {
    if server == crate::endpoints::OURS && client == crate::endpoints::OURS {
        String::new()
    } else {
        format!("__srv={server},cli={client}")
    }
}

/// A shard: `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad shard {s:?}: expected I/N with 0 ≤ I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// FNV-1a: a stable hash (std's hasher may change between Rust versions, and
/// seeds must not).
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// File-name safe form of a label.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => out.push(c),
            '%' => out.push_str("pct"),
            _ => out.push('_'),
        }
    }
    out
}

fn wants(list: &Option<Vec<String>>, p: Protocol) -> bool {
    match list {
        None => true,
        Some(l) => l.iter().any(|x| x.parse::<Protocol>().ok() == Some(p)),
    }
}

fn wants_link(list: &Option<Vec<String>>, label: &str) -> bool {
    match list {
        None => true,
        Some(l) => l.iter().any(|x| x == label),
    }
}

/// Seed of the shuffle of repetition block `rep` (recorded in run.json as
/// `order_seed`, the block's seed derived from it).
pub fn order_seed(m: &Matrix) -> u64 {
    m.seed ^ stable_hash("order")
}

/// The repetition block in a seeded random order: protocols, links and
/// workloads interleave, so neither a machine's drift nor a neighbour's load
/// can line up with one of them.
fn shuffle_block(m: &Matrix, rep: u32, block: &mut [Cell]) {
    use rand::{seq::SliceRandom as _, SeedableRng as _};
    let seed = order_seed(m) ^ (rep as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    block.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
}

/// The group of a cell: its id without the repetition (protocol, workload
/// variant, link and whatever else names the cell). Repetitions of a group
/// are pooled; a shard owns whole groups.
pub fn group_id(id: &str) -> &str {
    id.rsplit_once("__r").map_or(id, |(g, _)| g)
}

/// Every cell of the matrix's planned repetitions, in run order: repetitions
/// outermost, so a run cut short has covered every cell evenly; within each
/// repetition a seeded shuffle.
pub fn cells(m: &Matrix) -> Vec<Cell> {
    cells_upto(m, m.repetitions)
}

/// The cells of repetitions `0..reps` (beyond the matrix's own, for adaptive
/// repetitions), in run order.
pub fn cells_upto(m: &Matrix, reps: u32) -> Vec<Cell> {
    // (workload, variant, protocols it applies to, link filter)
    type Kind = (Workload, String, Vec<Protocol>, Option<Vec<String>>);
    let mut kinds: Vec<Kind> = Vec::new();
    let w = &m.workloads;
    let ccs_of = |wl: Workload| -> Vec<CongestionControl> {
        let list = match wl {
            Workload::Handshake => w.handshake.as_ref().and_then(|x| x.cc.as_ref()),
            Workload::Hol => w.hol.as_ref().and_then(|x| x.cc.as_ref()),
            Workload::Migration => w.migration.as_ref().and_then(|x| x.cc.as_ref()),
            Workload::Goodput => w.goodput.as_ref().and_then(|x| x.cc.as_ref()),
            Workload::Fairness => w.fairness.as_ref().and_then(|x| x.cc.as_ref()),
            Workload::Udp | Workload::Conns => None,
        };
        crate::matrix::workload_ccs(m, list)
    };
    let http: Vec<Protocol> = m
        .protocols
        .iter()
        .copied()
        .filter(|p| p.is_http())
        .collect();
    if let Some(h) = &m.workloads.handshake {
        for mode in &h.modes {
            let ps = http
                .iter()
                .copied()
                .filter(|p| wants(&h.protocols, *p))
                .filter(|p| crate::matrix::handshake_mode_applies(mode, *p))
                .collect();
            kinds.push((Workload::Handshake, mode.clone(), ps, h.links.clone()));
        }
    }
    if let Some(h) = &m.workloads.hol {
        let ps = http
            .iter()
            .copied()
            .filter(|p| wants(&h.protocols, *p))
            .collect();
        kinds.push((Workload::Hol, "paced".into(), ps, h.links.clone()));
        if h.parallel_objects > 0 {
            // HTTP/1.0 would open K connections one after the other: not a
            // parallel-objects comparison, so it is left out.
            let ps = http
                .iter()
                .copied()
                .filter(|p| {
                    !matches!(p, Protocol::H10 | Protocol::H10Tls) && wants(&h.protocols, *p)
                })
                .collect();
            kinds.push((Workload::Hol, "parallel".into(), ps, h.links.clone()));
        }
    }
    if let Some(mg) = &m.workloads.migration {
        for k in &mg.kinds {
            let ps: Vec<Protocol> = http
                .iter()
                .copied()
                .filter(|p| wants(&mg.protocols, *p) && (k != "active" || *p == Protocol::H3))
                .collect();
            kinds.push((Workload::Migration, k.clone(), ps.clone(), mg.links.clone()));
            if mg.paced {
                kinds.push((
                    Workload::Migration,
                    format!("{k}-paced"),
                    ps,
                    mg.links.clone(),
                ));
            }
        }
    }
    if let Some(g) = &m.workloads.goodput {
        let ps = http
            .iter()
            .copied()
            .filter(|p| wants(&g.protocols, *p))
            .collect();
        kinds.push((Workload::Goodput, "bulk".into(), ps, g.links.clone()));
    }
    if let Some(u) = &m.workloads.udp {
        if m.protocols.contains(&Protocol::Udp) {
            kinds.push((
                Workload::Udp,
                "echo".into(),
                vec![Protocol::Udp],
                u.links.clone(),
            ));
        }
    }
    if let Some(c) = &m.workloads.conns {
        // TCP connections are HTTP/1.1 ones, QUIC connections HTTP/3 ones.
        let ps: Vec<Protocol> = [(Protocol::H11, c.tcp), (Protocol::H3, c.quic)]
            .into_iter()
            .filter(|(p, n)| *n > 0 && m.protocols.contains(p))
            .map(|(p, _)| p)
            .collect();
        kinds.push((Workload::Conns, "hold".into(), ps, c.links.clone()));
    }
    if let Some(f) = &m.workloads.fairness {
        // The variant is the mix; the cell's protocol its first flow's.
        for mix in f.mixes.iter().filter_map(|x| Mix::parse(x).ok()) {
            if let Some(first) = mix.flows.first() {
                kinds.push((
                    Workload::Fairness,
                    mix.name(),
                    vec![first.protocol],
                    f.links.clone(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    for rep in 0..reps {
        let start = out.len();
        for (li, link) in m.links.iter().enumerate() {
            for (w, variant, protos, links) in &kinds {
                if !wants_link(links, &link.label) {
                    continue;
                }
                // A lost flight is the cell's only loss: on a link that also
                // loses at random the timer measured could be any packet's.
                if *w == Workload::Handshake
                    && crate::workloads::lost::Lost::of(variant).is_some()
                    && (link.loss > 0.0 || !lost_flight_link(m, &link.label))
                {
                    continue;
                }
                for p in protos {
                    if *w == Workload::Handshake
                        && crate::workloads::lost::Lost::of(variant).is_some()
                        && !lost_flight_protocol(m, *p)
                    {
                        continue;
                    }
                    // The UDP probe has no controller: one cell, not one per cc.
                    let ccs: Vec<Option<CongestionControl>> = if *p == Protocol::Udp {
                        vec![None]
                    } else if *w == Workload::Fairness {
                        if link.rate_bps.is_none() {
                            continue;
                        }
                        fairness_ccs(variant, ccs_of(*w))
                    } else {
                        ccs_of(*w).into_iter().map(Some).collect()
                    };
                    for (server, client) in pairs(m, *w, *p) {
                        for &cc in &ccs {
                            let cc_part = cc.map(|c| format!("__{}", c.name())).unwrap_or_default();
                            let id = format!(
                                "{}-{}__{}{}{}__{}__r{}",
                                w.name(),
                                id_part(variant),
                                p.name(),
                                cc_part,
                                pair_part(server, client),
                                slug(&link.label),
                                rep
                            );
                            // The link's seed leaves the controller and the
                            // pair out: cells that differ only in them meet
                            // the same loss pattern.
                            let seed_id = format!(
                                "{}-{}__{}__{}__r{}",
                                w.name(),
                                id_part(variant),
                                p.name(),
                                slug(&link.label),
                                rep
                            );
                            let seed = m.seed ^ stable_hash(&seed_id);
                            out.push(Cell {
                                id,
                                protocol: *p,
                                workload: *w,
                                variant: variant.clone(),
                                link: li,
                                cc,
                                repetition: rep,
                                seed,
                                server: server.to_string(),
                                client: client.to_string(),
                            });
                        }
                    }
                }
            }
        }
        shuffle_block(m, rep, &mut out[start..]);
    }
    out
}

/// Whether the handshake's `lost_flight_links` (buffer variants expanded
/// by the matrix) name `label`; all do by default.
fn lost_flight_link(m: &Matrix, label: &str) -> bool {
    let list = m
        .workloads
        .handshake
        .as_ref()
        .and_then(|h| h.lost_flight_links.clone());
    wants_link(&list, label)
}

/// Whether the handshake's `lost_flight_protocols` name `p`; all do by default.
fn lost_flight_protocol(m: &Matrix, p: Protocol) -> bool {
    let list = m
        .workloads
        .handshake
        .as_ref()
        .and_then(|h| h.lost_flight_protocols.clone());
    wants(&list, p)
}

/// A variant as a cell id writes it: ids are file names of a restricted
/// alphabet, so a mix's `@` (its controllers) becomes `=`.
fn id_part(variant: &str) -> String {
    variant.replace('@', "=")
}

/// A fairness mix's cells: one per matrix controller when it names none,
/// else one (its controller when all flows share one, None when they differ).
fn fairness_ccs(variant: &str, matrix: Vec<CongestionControl>) -> Vec<Option<CongestionControl>> {
    match Mix::parse(variant) {
        Ok(mix) if mix.names_controllers() => vec![mix.common_cc()],
        _ => matrix.into_iter().map(Some).collect(),
    }
}

/// The server × client pairs of a workload and protocol: every pair of the
/// matrix's servers and clients that both speak the protocol (a pair that
/// cannot run the workload variant still gets its cell, which says why:
/// `cell::execute`). The UDP probe and `conns` are ours only.
fn pairs(m: &Matrix, w: Workload, p: Protocol) -> Vec<(&str, &str)> {
    use crate::endpoints::{Role, OURS};
    if matches!(w, Workload::Udp | Workload::Conns | Workload::Fairness) {
        return vec![(OURS, OURS)];
    }
    let speaks = |role, name: &str| m.endpoints.get(role, name).is_some_and(|e| e.speaks(p));
    let mut out = Vec::new();
    for s in &m.servers {
        for c in &m.clients {
            if speaks(Role::Server, s) && speaks(Role::Client, c) {
                out.push((s.as_str(), c.as_str()));
            }
        }
    }
    out
}

/// The shard that owns a group: groups are dealt round-robin in a fixed
/// (sorted) order, so every repetition of a group, adaptive ones included,
/// runs in one shard.
pub fn shard_of(groups: &[String], group: &str, count: u32) -> Option<u32> {
    groups
        .binary_search_by(|g| g.as_str().cmp(group))
        .ok()
        .map(|i| (i as u64 % count as u64) as u32)
}

/// The cells of one shard: those of the groups it owns (see [`shard_of`]), in
/// plan order. The union of all shards is the whole plan, each cell exactly once.
pub fn shard(cells: Vec<Cell>, s: Option<Shard>) -> Vec<Cell> {
    let Some(s) = s else {
        return cells;
    };
    let mut groups: Vec<String> = cells.iter().map(|c| group_id(&c.id).to_string()).collect();
    groups.sort();
    groups.dedup();
    cells
        .into_iter()
        .filter(|c| shard_of(&groups, group_id(&c.id), s.count) == Some(s.index))
        .collect()
}

/// Where each group of `groups` stands under adaptive repetitions, from its
/// cells with a repetition below `before` (`u32::MAX`: all of them): how many
/// repetitions it ran, and whether its headline metric's interval is a real
/// 95% one (6 cells or more) with half-width ≤ `target` × median. A group
/// without a headline metric never meets a target (it stays at the minimum:
/// the caller runs more only for groups that have one).
pub fn adaptive_status(
    groups: &[String],
    cells: &[quicbench_results::CellResult],
    before: u32,
    target: f64,
) -> Vec<quicbench_results::AdaptiveGroup> {
    use quicbench_results::{analysis, infer, stats};
    let mut out = Vec::new();
    for g in groups {
        let mine: Vec<&quicbench_results::CellResult> = cells
            .iter()
            .filter(|c| c.repetition < before && group_id(&c.cell_id) == g)
            .collect();
        let metric = mine
            .first()
            .and_then(|c| analysis::headline_metric(&c.workload, &c.variant));
        let values: Vec<infer::CellValue> = mine
            .iter()
            .filter(|c| c.status.is_ok())
            .filter_map(|c| c.metrics.get(metric?))
            .filter_map(|m| infer::CellValue::from_samples(&m.samples).ok())
            .collect();
        let iv = infer::cell_interval(&values, stats::LEVEL, analysis::stable_hash(g)).ok();
        let rel = iv.as_ref().and_then(|iv| iv.relative_half_width());
        let real = iv
            .as_ref()
            .and_then(|iv| iv.confidence)
            .is_some_and(|c| c >= stats::LEVEL - 1e-12);
        out.push(quicbench_results::AdaptiveGroup {
            group: g.clone(),
            metric: metric.unwrap_or_default().to_string(),
            repetitions: mine.len() as u32,
            // No headline metric: nothing to follow, counted as done.
            met_target: metric.is_none() || (real && rel.is_some_and(|r| r <= target)),
            relative_half_width: rel,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn quick_plan_covers_every_workload_and_ids_are_unique() {
        let m = Matrix::preset("quick").unwrap();
        let cs = cells(&m);
        let ids: BTreeSet<_> = cs.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), cs.len());
        for w in [
            Workload::Handshake,
            Workload::Hol,
            Workload::Migration,
            Workload::Goodput,
            Workload::Udp,
        ] {
            assert!(cs.iter().any(|c| c.workload == w), "{w:?}");
        }
        assert!(cs
            .iter()
            .all(|c| c.workload != Workload::Udp || c.protocol == Protocol::Udp));
        assert!(cs
            .iter()
            .all(|c| c.variant != "active" || c.protocol == Protocol::H3));
        // Same matrix, same plan, same seeds.
        assert_eq!(cs, cells(&m));
    }

    #[test]
    fn fast_open_modes_are_planned_for_tls_over_tcp_only() {
        let src = r#"
protocols = ["h1.1", "h1.0-tls", "h1.1-tls", "h2", "h3"]
repetitions = 1
[[links]]
spec = "delay 5ms"
[workloads.handshake]
modes = ["resumed", "resumed-tfo", "resumed-tfo-0rtt"]
"#;
        let m = Matrix::parse(src, "t.toml").unwrap();
        let cs = cells(&m);
        let of = |v: &str| -> Vec<Protocol> {
            cs.iter()
                .filter(|c| c.variant == v)
                .map(|c| c.protocol)
                .collect()
        };
        assert_eq!(of("resumed").len(), 5);
        for v in ["resumed-tfo", "resumed-tfo-0rtt"] {
            let mut ps = of(v);
            ps.sort_by_key(|p| p.name());
            assert_eq!(ps, vec![Protocol::H11Tls, Protocol::H2], "{v}");
        }
        let c = cs.iter().find(|c| c.variant == "resumed-tfo-0rtt").unwrap();
        assert_eq!(c.fast_start(), TcpFastStart::new(true, true));
        let c = cs.iter().find(|c| c.variant == "resumed").unwrap();
        assert_eq!(c.fast_start(), TcpFastStart::default());
        let bad = src.replace("\"resumed-tfo\",", "\"tfo\",");
        let e = Matrix::parse(&bad, "t.toml").unwrap_err().to_string();
        assert!(e.contains("resumed-tfo-0rtt"), "{e}");
    }

    #[test]
    fn a_cc_list_is_an_axis() {
        let src = r#"
protocols = ["h2", "h3", "udp"]
repetitions = 1
cc = ["cubic", "bbr"]
[[links]]
spec = "delay 5ms"
[workloads.goodput]
[workloads.udp]
"#;
        let m = Matrix::parse(src, "t.toml").unwrap();
        let cs = cells(&m);
        let good: Vec<_> = cs
            .iter()
            .filter(|c| c.workload == Workload::Goodput)
            .collect();
        assert_eq!(good.len(), 4, "2 protocols × 2 controllers");
        for p in [Protocol::H2, Protocol::H3] {
            let mine: Vec<_> = good.iter().filter(|c| c.protocol == p).collect();
            assert_eq!(mine.len(), 2);
            assert!(mine
                .iter()
                .any(|c| c.cc == Some(CongestionControl::Cubic) && c.id.contains("__cubic__")));
            assert!(mine
                .iter()
                .any(|c| c.cc == Some(CongestionControl::Bbr) && c.id.contains("__bbr__")));
            // Same loss pattern for both controllers.
            assert_eq!(mine[0].seed, mine[1].seed);
        }
        let udp: Vec<_> = cs.iter().filter(|c| c.workload == Workload::Udp).collect();
        assert_eq!(udp.len(), 1);
        assert_eq!(udp[0].cc, None);
        // One controller by default, and a bad name is named.
        let one = Matrix::parse("[workloads.goodput]\n", "t.toml").unwrap();
        assert_eq!(one.ccs, vec![CongestionControl::Cubic]);
        let e = Matrix::parse(
            "cc = [\"cubic\", \"vegas\"]\n[workloads.goodput]\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("cc", 1));
        assert!(e.message.contains("vegas"), "{e}");
    }

    #[test]
    fn a_workload_cc_keeps_some_of_the_matrix_controllers() {
        let src = r#"
protocols = ["h2", "h3"]
repetitions = 1
cc = ["cubic", "bbr"]
[[links]]
spec = "delay 5ms"
[workloads.handshake]
cc = "cubic"
[workloads.goodput]
"#;
        let m = Matrix::parse(src, "t.toml").unwrap();
        let cs = cells(&m);
        let of = |w: Workload, cc: CongestionControl| {
            cs.iter()
                .filter(|c| c.workload == w && c.cc == Some(cc))
                .count()
        };
        // 2 protocols × 2 modes, Cubic only; goodput on both controllers.
        assert_eq!(of(Workload::Handshake, CongestionControl::Cubic), 4);
        assert_eq!(of(Workload::Handshake, CongestionControl::Bbr), 0);
        assert_eq!(of(Workload::Goodput, CongestionControl::Cubic), 2);
        assert_eq!(of(Workload::Goodput, CongestionControl::Bbr), 2);
        // A controller the matrix does not run, or an unknown one, is named.
        for (bad, what) in [("newreno", "not in the matrix's cc"), ("vegas", "vegas")] {
            let e = Matrix::parse(
                &format!("cc = [\"cubic\", \"bbr\"]\n[workloads.hol]\ncc = \"{bad}\"\n"),
                "t.toml",
            )
            .unwrap_err();
            assert_eq!(e.field, "workloads.hol.cc", "{e}");
            assert!(e.message.contains(what), "{e}");
        }
    }

    #[test]
    fn shards_partition_the_plan() {
        let m = Matrix::preset("quick").unwrap();
        let all = cells(&m);
        for n in 1..6u32 {
            let mut union = Vec::new();
            for i in 0..n {
                union.extend(shard(all.clone(), Some(Shard { index: i, count: n })));
            }
            let a: BTreeSet<_> = all.iter().map(|c| c.id.clone()).collect();
            let b: BTreeSet<_> = union.iter().map(|c| c.id.clone()).collect();
            assert_eq!(a, b);
            assert_eq!(union.len(), all.len());
        }
        assert!("3/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        // A shard owns whole groups.
        let s0 = shard(all.clone(), Some(Shard { index: 0, count: 3 }));
        let s1 = shard(all.clone(), Some(Shard { index: 1, count: 3 }));
        let g0: BTreeSet<&str> = s0.iter().map(|c| group_id(&c.id)).collect();
        assert!(s1.iter().all(|c| !g0.contains(group_id(&c.id))));
    }

    #[test]
    fn repetition_blocks_are_shuffled_and_interleaved() {
        let m = Matrix::preset("quick").unwrap();
        let cs = cells(&m);
        let per = cs.len() / m.repetitions as usize;
        for (rep, block) in cs.chunks(per).enumerate() {
            assert!(block.iter().all(|c| c.repetition == rep as u32));
            // Not grouped by protocol: consecutive cells change protocol often.
            let changes = block
                .windows(2)
                .filter(|w| w[0].protocol != w[1].protocol)
                .count();
            assert!(changes > per / 2, "{changes} of {per}");
        }
        assert_ne!(
            cs[..per]
                .iter()
                .map(|c| group_id(&c.id))
                .collect::<Vec<_>>(),
            cs[per..2 * per]
                .iter()
                .map(|c| group_id(&c.id))
                .collect::<Vec<_>>(),
            "each block has its own order"
        );
        // Extending the repetitions keeps the earlier blocks as they were.
        let more = cells_upto(&m, m.repetitions + 1);
        assert_eq!(&more[..cs.len()], &cs[..]);
        assert_eq!(
            group_id("goodput-bulk__h3__rtt20ms__r12"),
            "goodput-bulk__h3__rtt20ms"
        );
    }

    fn fake(group: &str, rep: u32, samples: &[f64]) -> quicbench_results::CellResult {
        let mut c = quicbench_results::CellResult::new(
            format!("{group}__r{rep}"),
            "h3",
            "goodput",
            "bulk",
            quicbench_results::LinkInfo::default(),
            rep,
            1,
        );
        for v in samples {
            c.push_sample("goodput_mbps", "Mbit/s", *v).unwrap();
        }
        c
    }

    /// Simulated adaptive rounds over fake cells (no I/O): a quiet group
    /// stops at min, a noisy one goes on until max; a run resumed from a
    /// half-finished round decides the same.
    #[test]
    fn adaptive_stopping() {
        use rand::{Rng as _, SeedableRng as _};
        let groups = vec![
            "goodput-bulk__h3__noisy".to_string(),
            "goodput-bulk__h3__quiet".to_string(),
        ];
        let (min, max, target) = (6u32, 12u32, 0.05);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut value = |g: &str| -> f64 {
            if g.ends_with("quiet") {
                100.0 + rng.random_range(-0.5..0.5)
            } else {
                100.0 * rng.random_range(0.3..1.7)
            }
        };
        // Rounds as run() plays them; `stop_after` cells cut a round short.
        let mut play = |cells: &mut Vec<quicbench_results::CellResult>,
                        stop_after: Option<usize>| {
            let mut written = 0;
            for rep in 0..max {
                let todo: Vec<String> = if rep < min {
                    groups.clone()
                } else {
                    adaptive_status(&groups, cells, rep, target)
                        .into_iter()
                        .filter(|g| !g.met_target)
                        .map(|g| g.group)
                        .collect()
                };
                for g in todo {
                    if cells.iter().any(|c| c.cell_id == format!("{g}__r{rep}")) {
                        continue;
                    }
                    if stop_after == Some(written) {
                        return;
                    }
                    cells.push(fake(&g, rep, &[value(&g)]));
                    written += 1;
                }
            }
        };
        let mut whole = Vec::new();
        play(&mut whole, None);
        let st = adaptive_status(&groups, &whole, u32::MAX, target);
        let (noisy, quiet) = (&st[0], &st[1]);
        assert_eq!(
            (quiet.repetitions, quiet.met_target),
            (min, true),
            "{quiet:?}"
        );
        assert_eq!(
            (noisy.repetitions, noisy.met_target),
            (max, false),
            "{noisy:?}"
        );
        assert!(noisy.relative_half_width.unwrap() > target);

        // Interrupted after 13 cells (mid adaptive round), then resumed: the
        // same groups get the same repetitions. Values differ (new random
        // draws) but the quiet group's decision does not hinge on them.
        let mut resumed = Vec::new();
        play(&mut resumed, Some(13));
        assert!(resumed.len() == 13);
        play(&mut resumed, None);
        let st2 = adaptive_status(&groups, &resumed, u32::MAX, target);
        let reps = |s: &[quicbench_results::AdaptiveGroup]| -> Vec<(String, u32, bool)> {
            s.iter()
                .map(|g| (g.group.clone(), g.repetitions, g.met_target))
                .collect()
        };
        assert_eq!(reps(&st2), reps(&st));
        // Decisions read only earlier repetitions: cells of a later round on
        // disk do not change the decision for an earlier one.
        let early = adaptive_status(&groups, &whole, min, target);
        let mut partial = whole.clone();
        partial.retain(|c| c.repetition < min + 1);
        assert_eq!(early, adaptive_status(&groups, &partial, min, target));
    }

    /// The lost-flight handshakes leave out links with random loss and
    /// follow `lost_flight_protocols`: quick runs h2 and h3 on its lossless
    /// link only.
    #[test]
    fn lost_flight_cells_skip_lossy_links_and_follow_their_filters() {
        let q = Matrix::preset("quick").unwrap();
        let lost: Vec<Cell> = cells(&q)
            .into_iter()
            .filter(|c| c.variant.ends_with("flight-lost"))
            .collect();
        assert_eq!(lost.len(), 2 * 2 * 2, "{lost:?}");
        assert!(lost
            .iter()
            .all(|c| matches!(c.protocol, Protocol::H2 | Protocol::H3)
                && q.links[c.link].label == "rtt20ms"));
        let bad = Matrix::parse(
            "[[links]]\nspec = \"delay 1ms\"\n[workloads.handshake]\nlost_flight_protocols = [\"h4\"]\n",
            "<t>",
        )
        .unwrap_err();
        assert!(bad.field.contains("lost_flight_protocols"), "{bad:?}");
    }

    /// The full and grid presets are adaptive: their plan is the minimum (6
    /// repetitions; full: 280 cells each, grid: 7752, docs/matrix.md § wall
    /// time); more come group by group.
    #[test]
    fn full_and_grid_presets_are_adaptive() {
        let f = Matrix::preset("full").unwrap();
        assert_eq!(f.repetitions, 6);
        assert!(f.adaptive.is_some_and(|a| a.max == 8 && a.target == 0.05));
        let cs = cells(&f);
        assert_eq!(cs.len(), 6 * 280);
        // The lost-flight handshakes: 7 protocols × 2 modes, on the one link
        // `lost_flight_links` names (its buffer variant the section keeps).
        let lost: Vec<&Cell> = cs
            .iter()
            .filter(|c| c.variant.ends_with("flight-lost") && c.repetition == 0)
            .collect();
        assert_eq!(lost.len(), 14);
        assert!(lost
            .iter()
            .all(|c| f.links[c.link].label == "rtt50ms-100mbit-buf1bdp"));
        // BBR only where it is asked for: goodput and fairness.
        assert!(cs
            .iter()
            .filter(|c| c.cc == Some(CongestionControl::Bbr))
            .all(|c| matches!(c.workload, Workload::Goodput | Workload::Fairness)));
        // Fairness only on the rate-limited reference link, four mixes, the
        // two that name no controller under both.
        let fair: Vec<&Cell> = cs
            .iter()
            .filter(|c| c.workload == Workload::Fairness && c.repetition == 0)
            .collect();
        assert_eq!(fair.len(), 6, "{fair:?}");
        assert!(fair.iter().all(|c| f.links[c.link].rate_bps.is_some()));
        let g = Matrix::preset("grid").unwrap();
        assert_eq!(g.repetitions, 6);
        assert!(g.adaptive.is_some_and(|a| a.max == 10 && a.target == 0.05));
        assert_eq!(cells(&g).len(), 6 * 7752);
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(slug("rtt20ms-loss2%"), "rtt20ms-loss2pct");
        assert_eq!(slug("up[a b]"), "up_a_b_");
        assert_ne!(stable_hash("a"), stable_hash("b"));
        assert_eq!(stable_hash("quicbench"), stable_hash("quicbench"));
    }
}
