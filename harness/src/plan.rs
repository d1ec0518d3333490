//! From a matrix to the list of cells, and the deterministic shard of it.

use quicbench_wire::{CongestionControl, Protocol};
use serde::{Deserialize, Serialize};

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

/// Every cell of the matrix, in run order: repetitions outermost, so a run cut
/// short has covered every cell evenly, and slow drift of the machine spreads
/// over all protocols instead of biasing one.
pub fn cells(m: &Matrix) -> Vec<Cell> {
    // (workload, variant, protocols it applies to, link filter)
    type Kind = (Workload, String, Vec<Protocol>, Option<Vec<String>>);
    let mut kinds: Vec<Kind> = Vec::new();
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
    let mut out = Vec::new();
    for rep in 0..m.repetitions {
        for (li, link) in m.links.iter().enumerate() {
            for (w, variant, protos, links) in &kinds {
                if !wants_link(links, &link.label) {
                    continue;
                }
                for p in protos {
                    // The UDP probe has no controller: one cell, not one per cc.
                    let ccs: Vec<Option<CongestionControl>> = if *p == Protocol::Udp {
                        vec![None]
                    } else {
                        m.ccs.iter().copied().map(Some).collect()
                    };
                    for cc in ccs {
                        let cc_part = cc.map(|c| format!("__{}", c.name())).unwrap_or_default();
                        let id = format!(
                            "{}-{}__{}{}__{}__r{}",
                            w.name(),
                            variant,
                            p.name(),
                            cc_part,
                            slug(&link.label),
                            rep
                        );
                        // The link's seed leaves the controller out: cells that
                        // differ only in cc meet the same loss pattern.
                        let seed_id = format!(
                            "{}-{}__{}__{}__r{}",
                            w.name(),
                            variant,
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
                        });
                    }
                }
            }
        }
    }
    out
}

/// The cells of one shard: every `count`-th cell starting at `index`, in plan
/// order. The union of all shards is the whole plan, each cell exactly once.
pub fn shard(cells: Vec<Cell>, s: Option<Shard>) -> Vec<Cell> {
    match s {
        None => cells,
        Some(s) => cells
            .into_iter()
            .enumerate()
            .filter(|(i, _)| (*i as u64 % s.count as u64) == s.index as u64)
            .map(|(_, c)| c)
            .collect(),
    }
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
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(slug("rtt20ms-loss2%"), "rtt20ms-loss2pct");
        assert_eq!(slug("up[a b]"), "up_a_b_");
        assert_ne!(stable_hash("a"), stable_hash("b"));
        assert_eq!(stable_hash("quicbench"), stable_hash("quicbench"));
    }
}
