//! Fairness: K flows (any mix of protocols and controllers) share one
//! rate-limited link, each downloading for the same time. Measured from the
//! clients (bytes over time per flow) and from the link (bytes delivered per
//! 5-tuple), so both views can be held against each other.
//!
//! A mix is written `2xh3+h2@bbr`: flows joined by `+`, each
//! `[<count>x]<protocol>[@<controller>]`. The mix is the cell's variant.
//! Metric definitions: docs/methodology.md, "Fairness".

pub mod cell;
mod run;
pub mod stats;

use quicbench_wire::{CongestionControl, Protocol};
use serde::{Deserialize, Serialize};

use crate::matrix::OneOrMany;

/// Most flows in one mix (each is a client connection and a server one on a
/// 2-core machine: beyond this the endpoints, not the link, share the CPU).
pub const MAX_FLOWS: usize = 16;

fn d_mixes() -> Vec<String> {
    vec!["h3+h2".into()]
}
fn d_duration_ms() -> u64 {
    10_000
}
fn d_window_ms() -> u64 {
    500
}

/// `[workloads.fairness]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessParams {
    /// The mixes, e.g. `["h3+h2", "h3+4xh1.1", "h3@bbr+h3@cubic"]`.
    #[serde(default = "d_mixes")]
    pub mixes: Vec<String>,
    /// How long each flow downloads, from its own start.
    #[serde(default = "d_duration_ms")]
    pub duration_ms: u64,
    /// Flow i starts i × this after the first (0: all at once).
    #[serde(default)]
    pub stagger_ms: u64,
    /// Throughput is averaged over windows of this length (the chart's
    /// resolution and the convergence test's).
    #[serde(default = "d_window_ms")]
    pub window_ms: u64,
    /// Only these links (by label); all links with a rate by default. A
    /// link without a rate has no bottleneck to share: naming one is an error.
    pub links: Option<Vec<String>>,
    /// Only the links with these buffers (of the matrix's `buffer` sweep).
    pub buffer: Option<OneOrMany>,
    /// Only these of the matrix's controllers, for mixes that name none.
    pub cc: Option<OneOrMany>,
}

/// One flow of a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpec {
    pub protocol: Protocol,
    /// None: the cell's controller (one cell per matrix controller).
    pub cc: Option<CongestionControl>,
}

/// A parsed mix: its flows in order (counts expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    pub flows: Vec<FlowSpec>,
}

impl Mix {
    /// Parse `2xh3+h2@bbr`. Every flow names a controller or none does (a
    /// partly named mix would be half a comparison); at least two flows.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut flows = Vec::new();
        for part in s.split('+') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("mix {s:?}: an empty flow (two `+` in a row?)"));
            }
            let (count, rest) = match part.split_once('x') {
                Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    let n: usize = n
                        .parse()
                        .map_err(|_| format!("mix {s:?}: bad count in {part:?}"))?;
                    (n, rest)
                }
                _ => (1, part),
            };
            if count == 0 {
                return Err(format!("mix {s:?}: a count of 0 in {part:?}"));
            }
            let (proto, cc) = match rest.split_once('@') {
                Some((p, c)) => (p, Some(c)),
                None => (rest, None),
            };
            let protocol: Protocol = proto
                .parse()
                .map_err(|e: quicbench_wire::UnknownName| format!("mix {s:?}: {e}"))?;
            if !protocol.is_http() {
                return Err(format!(
                    "mix {s:?}: {protocol} has no congestion control to share a link with"
                ));
            }
            let cc = cc
                .map(|c| c.parse::<CongestionControl>())
                .transpose()
                .map_err(|e| format!("mix {s:?}: {e}"))?;
            if flows.len() + count > MAX_FLOWS {
                return Err(format!("mix {s:?}: more than {MAX_FLOWS} flows"));
            }
            flows.extend(std::iter::repeat_n(FlowSpec { protocol, cc }, count));
        }
        if flows.len() < 2 {
            return Err(format!(
                "mix {s:?}: a fairness mix needs at least two flows"
            ));
        }
        let named = flows.iter().filter(|f| f.cc.is_some()).count();
        if named != 0 && named != flows.len() {
            return Err(format!(
                "mix {s:?}: name a controller for every flow (`h3@bbr+h2@cubic`) or for none"
            ));
        }
        Ok(Mix { flows })
    }

    /// Whether the flows name their controllers.
    pub fn names_controllers(&self) -> bool {
        self.flows.iter().any(|f| f.cc.is_some())
    }

    /// The flows with `cc` for those that name none.
    pub fn resolved(&self, cc: Option<CongestionControl>) -> Vec<(Protocol, CongestionControl)> {
        self.flows
            .iter()
            .map(|f| (f.protocol, f.cc.or(cc).unwrap_or_default()))
            .collect()
    }

    /// The one controller of every flow, if they share one.
    pub fn common_cc(&self) -> Option<CongestionControl> {
        let first = self.flows.first()?.cc?;
        self.flows
            .iter()
            .all(|f| f.cc == Some(first))
            .then_some(first)
    }

    /// Canonical text (counts merged for runs of equal flows): the variant.
    pub fn name(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut i = 0;
        while i < self.flows.len() {
            let f = self.flows[i];
            let mut n = 1;
            while i + n < self.flows.len() && self.flows[i + n] == f {
                n += 1;
            }
            let count = if n > 1 {
                format!("{n}x")
            } else {
                String::new()
            };
            let cc = f.cc.map(|c| format!("@{}", c.name())).unwrap_or_default();
            parts.push(format!("{count}{}{cc}", f.protocol.name()));
            i += n;
        }
        parts.join("+")
    }

    /// The distinct protocols, in order of first appearance.
    pub fn protocols(&self) -> Vec<Protocol> {
        let mut out: Vec<Protocol> = Vec::new();
        for f in &self.flows {
            if !out.contains(&f.protocol) {
                out.push(f.protocol);
            }
        }
        out
    }
}

/// Check `[workloads.fairness]`: the mixes parse, the windows make sense.
pub fn validate(p: &FairnessParams) -> Result<(), (String, String)> {
    let field = |f: &str| format!("workloads.fairness.{f}");
    if p.mixes.is_empty() {
        return Err((field("mixes"), "the list is empty".into()));
    }
    for m in &p.mixes {
        Mix::parse(m).map_err(|e| (field("mixes"), e))?;
    }
    if p.duration_ms < 1000 {
        return Err((field("duration_ms"), "must be ≥ 1000".into()));
    }
    if p.window_ms == 0 || p.window_ms * 2 > p.duration_ms {
        return Err((
            field("window_ms"),
            "must be > 0 and at most half of duration_ms".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_print_canonically() {
        let m = Mix::parse("h3+h2").unwrap();
        assert_eq!(m.flows.len(), 2);
        assert_eq!(m.name(), "h3+h2");
        assert_eq!(m.common_cc(), None);
        let m = Mix::parse("2xh3 + 2xh2").unwrap();
        assert_eq!(m.flows.len(), 4);
        assert_eq!(m.name(), "2xh3+2xh2");
        let m = Mix::parse("h3+h3+4xh1.1").unwrap();
        assert_eq!(m.name(), "2xh3+4xh1.1");
        assert_eq!(m.protocols(), vec![Protocol::H3, Protocol::H11]);
        let m = Mix::parse("h3@bbr+h2@CUBIC").unwrap();
        assert_eq!(m.name(), "h3@bbr+h2@cubic");
        assert!(m.names_controllers());
        assert_eq!(
            m.resolved(Some(CongestionControl::NewReno)),
            vec![
                (Protocol::H3, CongestionControl::Bbr),
                (Protocol::H2, CongestionControl::Cubic)
            ]
        );
        let m = Mix::parse("h3@bbr+h3@bbr").unwrap();
        assert_eq!(m.common_cc(), Some(CongestionControl::Bbr));
        assert_eq!(m.name(), "2xh3@bbr");
        assert_eq!(Mix::parse(&m.name()).unwrap(), m);
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        for (s, want) in [
            ("h3", "at least two"),
            ("h3++h2", "empty flow"),
            ("0xh3+h2", "count of 0"),
            ("h3+h4", "h4"),
            ("h3+udp", "no congestion control"),
            ("h3@bbr+h2", "every flow"),
            ("h3@vegas+h2@bbr", "vegas"),
            ("17xh3", "more than 16"),
        ] {
            let e = Mix::parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
            assert!(e.contains(s), "{s}: {e}");
        }
    }

    #[test]
    fn params_are_checked() {
        let mut p: FairnessParams = toml::from_str("").unwrap();
        assert!(validate(&p).is_ok());
        p.window_ms = 6000;
        assert_eq!(validate(&p).unwrap_err().0, "workloads.fairness.window_ms");
        p.window_ms = 500;
        p.mixes = vec!["h3".into()];
        assert_eq!(validate(&p).unwrap_err().0, "workloads.fairness.mixes");
        p.mixes.clear();
        assert!(validate(&p).is_err());
    }
}
