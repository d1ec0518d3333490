//! Endpoints: named server and client implementations a matrix pairs
//! (docs/endpoints.md). `quicbench` (ours) runs inside the coordinator; every
//! other endpoint is a command run under the contract of docs/endpoints.md,
//! in the cell's namespaces ([`process`]), fed and checked by [`contract`].
//!
//! The built-in third-party definitions live in one file,
//! `scripts/endpoints/builtins.toml`, beside the wrappers they name; a
//! matrix adds its own with `[[endpoints]]` tables of the same shape.

pub mod cell;
pub mod contract;
pub mod external;
pub mod process;

use std::collections::BTreeMap;

use quicbench_wire::{CongestionControl, Protocol};
use serde::{Deserialize, Serialize};

/// The name of our own implementation, on both sides.
pub const OURS: &str = "quicbench";

/// The built-in third-party endpoints (ngtcp2, quic-go, aioquic, nginx, curl...).
pub const BUILTINS: &str = include_str!("../../../scripts/endpoints/builtins.toml");

/// Which side of a cell an endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

/// What an endpoint can do beyond fresh connections with requests one after
/// another (what a workload variant may need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Several requests in flight at once (`QB_PARALLEL` > 1).
    Parallel,
    /// TLS session resumption across the client's runs (`QB_RESUME`).
    Resume,
    /// 0-RTT / TLS early data (`QB_EARLY_DATA`).
    EarlyData,
}

/// One endpoint as written (builtins.toml or a matrix's `[[endpoints]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDef {
    pub name: String,
    pub role: Role,
    /// quicbench protocol names (`h3`, `h2`, `h1.1-tls`, ...).
    pub protocols: Vec<String>,
    /// Run with `sh -c`; the QB_* variables of docs/endpoints.md are set.
    pub command: String,
    /// Controllers it can run (`cubic`, `bbr`, `newreno`).
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub can: Vec<Capability>,
    /// A shell command printing its version (recorded in run.json).
    #[serde(default)]
    pub version: Option<String>,
    /// The script that installs it (for messages).
    #[serde(default)]
    pub install: Option<String>,
    /// What a reader of its results must know.
    #[serde(default)]
    pub notes: Option<String>,
    /// Seconds to wait for a server's port (default 10).
    #[serde(default)]
    pub ready_timeout_s: Option<u64>,
}

/// A validated endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    pub name: String,
    pub role: Role,
    pub protocols: Vec<Protocol>,
    /// None for ours (in-process).
    pub command: Option<String>,
    pub cc: Vec<CongestionControl>,
    pub can: Vec<Capability>,
    pub version: Option<String>,
    pub install: Option<String>,
    pub notes: Option<String>,
    pub ready_timeout_s: u64,
    /// From builtins.toml (else a matrix's own).
    pub builtin: bool,
}

impl Endpoint {
    /// Ours: every protocol, every controller, everything.
    fn ours(role: Role) -> Endpoint {
        Endpoint {
            name: OURS.into(),
            role,
            protocols: Protocol::ALL.to_vec(),
            command: None,
            cc: vec![
                CongestionControl::Cubic,
                CongestionControl::NewReno,
                CongestionControl::Bbr,
            ],
            can: vec![
                Capability::Parallel,
                Capability::Resume,
                Capability::EarlyData,
            ],
            version: None,
            install: None,
            notes: Some(match role {
                Role::Server => "quinn + h3 for HTTP/3, hyper for HTTP/1.x and HTTP/2".into(),
                Role::Client => {
                    "quinn + h3 for HTTP/3, hyper for HTTP/2, quicbench's own HTTP/1.x".into()
                }
            }),
            ready_timeout_s: 10,
            builtin: true,
        }
    }

    pub fn is_ours(&self) -> bool {
        self.command.is_none()
    }

    pub fn can(&self, c: Capability) -> bool {
        self.can.contains(&c)
    }

    /// Speaks `p`. A server that speaks HTTP/1.1 over TLS also serves a
    /// pipelining client (pipelining is the client's behaviour).
    pub fn speaks(&self, p: Protocol) -> bool {
        self.protocols.contains(&p)
            || (self.role == Role::Server
                && p == Protocol::H11Pipelined
                && self.protocols.contains(&Protocol::H11Tls))
    }

    fn from_def(d: &EndpointDef, builtin: bool) -> Result<Endpoint, String> {
        let ok_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if d.name.is_empty() || d.name.len() > 32 || !d.name.chars().all(ok_name) {
            return Err(format!(
                "name {:?}: 1-32 characters of [A-Za-z0-9.-]",
                d.name
            ));
        }
        if d.name == OURS {
            return Err(format!("name {OURS:?} is ours, built in: choose another"));
        }
        if d.command.trim().is_empty() {
            return Err(format!("{}: command is empty", d.name));
        }
        let mut protocols = Vec::new();
        for p in &d.protocols {
            let proto: Protocol = p
                .parse()
                .map_err(|e: quicbench_wire::UnknownName| format!("{}: protocols: {e}", d.name))?;
            if proto == Protocol::Udp {
                return Err(format!(
                    "{}: protocols: udp is the raw probe, ours only",
                    d.name
                ));
            }
            protocols.push(proto);
        }
        if protocols.is_empty() {
            return Err(format!("{}: protocols is empty", d.name));
        }
        let mut cc = Vec::new();
        for c in &d.cc {
            cc.push(
                c.parse::<CongestionControl>()
                    .map_err(|e: quicbench_wire::UnknownName| format!("{}: cc: {e}", d.name))?,
            );
        }
        Ok(Endpoint {
            name: d.name.clone(),
            role: d.role,
            protocols,
            command: Some(d.command.clone()),
            cc,
            can: d.can.clone(),
            version: d.version.clone(),
            install: d.install.clone(),
            notes: d.notes.clone(),
            ready_timeout_s: d.ready_timeout_s.unwrap_or(10).clamp(1, 300),
            builtin,
        })
    }
}

/// `[[endpoints]]` tables of a TOML text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefsFile {
    #[serde(default)]
    endpoints: Vec<EndpointDef>,
}

/// Every endpoint a matrix may name, by (role, name). Serialised as a list
/// (run.json's resolved matrix): JSON keys must be strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    by_key: BTreeMap<(Role, String), Endpoint>,
}

impl Serialize for Registry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.by_key.values())
    }
}

impl Registry {
    /// Ours and the built-ins.
    pub fn builtin() -> Result<Registry, String> {
        let mut r = Registry::default();
        for role in [Role::Server, Role::Client] {
            r.by_key.insert((role, OURS.into()), Endpoint::ours(role));
        }
        let f: DefsFile = toml::from_str(BUILTINS)
            .map_err(|e| format!("scripts/endpoints/builtins.toml: {}", e.message().trim()))?;
        for d in &f.endpoints {
            let e = Endpoint::from_def(d, true)
                .map_err(|m| format!("scripts/endpoints/builtins.toml: {m}"))?;
            r.by_key.insert((e.role, e.name.clone()), e);
        }
        Ok(r)
    }

    /// The built-ins plus a matrix's own (`[[endpoints]]`); a matrix's own
    /// may not shadow a built-in (results would name two things alike).
    pub fn with(defs: &[EndpointDef]) -> Result<Registry, (usize, String)> {
        let mut r = Registry::builtin().map_err(|m| (0, m))?;
        for (i, d) in defs.iter().enumerate() {
            let e = Endpoint::from_def(d, false).map_err(|m| (i, m))?;
            if let Some(old) = r.by_key.get(&(e.role, e.name.clone())) {
                let what = if old.builtin {
                    "a built-in"
                } else {
                    "an earlier"
                };
                return Err((
                    i,
                    format!(
                        "{} {} {:?} is already {what} endpoint",
                        e.role.name(),
                        e.name,
                        e.name
                    ),
                ));
            }
            r.by_key.insert((e.role, e.name.clone()), e);
        }
        Ok(r)
    }

    pub fn get(&self, role: Role, name: &str) -> Option<&Endpoint> {
        self.by_key.get(&(role, name.to_string()))
    }

    /// Names of `role`'s endpoints, for messages.
    pub fn names(&self, role: Role) -> Vec<&str> {
        self.by_key
            .iter()
            .filter(|((r, _), _)| *r == role)
            .map(|((_, n), _)| n.as_str())
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Endpoint> {
        self.by_key.values()
    }
}

/// What a cell asks of its pair (see [`not_applicable`]).
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub protocol: Protocol,
    pub cc: Option<CongestionControl>,
    pub parallel: bool,
    pub resume: bool,
    pub early_data: bool,
    /// The workload runs only with our own client (paced requests, the UDP
    /// probe, many connections): the contract has no way to ask for it.
    pub ours_only_client: bool,
    /// Likewise for the server side (the UDP probe's echo, `conns`).
    pub ours_only_server: bool,
}

/// Why a server × client pair cannot run a cell, or None when it can. Not
/// applicable is a result (the cell says so), never a failure or a gap.
pub fn not_applicable(server: &Endpoint, client: &Endpoint, n: &Needs) -> Option<String> {
    for e in [server, client] {
        if !e.speaks(n.protocol) {
            return Some(format!(
                "{} {} does not speak {}",
                e.role.name(),
                e.name,
                n.protocol.name()
            ));
        }
        if let Some(cc) = n.cc {
            // Ours sets every socket's controller; a TCP endpoint gets the
            // namespace's (the harness sets it), so only QUIC ones can lack one.
            let settable = e.is_ours() || n.protocol != Protocol::H3 || e.cc.contains(&cc);
            if !settable {
                return Some(format!(
                    "{} {} cannot run {} (it runs {})",
                    e.role.name(),
                    e.name,
                    cc.name(),
                    names(&e.cc)
                ));
            }
        }
    }
    if n.ours_only_client && !client.is_ours() {
        return Some(format!(
            "this workload needs quicbench's own client (the endpoint contract cannot ask {} for it)",
            client.name
        ));
    }
    if n.ours_only_server && !server.is_ours() {
        return Some(format!(
            "this workload needs quicbench's own server, not {}",
            server.name
        ));
    }
    for (wanted, cap, what) in [
        (n.parallel, Capability::Parallel, "parallel requests"),
        (n.resume, Capability::Resume, "session resumption"),
        (n.early_data, Capability::EarlyData, "0-RTT / early data"),
    ] {
        if !wanted {
            continue;
        }
        // Every server takes concurrent requests; parallelism is the client's.
        let ends: &[&Endpoint] = if cap == Capability::Parallel {
            &[client]
        } else {
            &[server, client]
        };
        for e in ends {
            if !e.can(cap) {
                return Some(format!("{} {} has no {what}", e.role.name(), e.name));
            }
        }
    }
    None
}

fn names(ccs: &[CongestionControl]) -> String {
    if ccs.is_empty() {
        return "its own only".into();
    }
    ccs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, role: Role, protocols: &[&str]) -> EndpointDef {
        EndpointDef {
            name: name.into(),
            role,
            protocols: protocols.iter().map(|s| s.to_string()).collect(),
            command: "true".into(),
            cc: vec!["cubic".into()],
            can: vec![],
            version: None,
            install: None,
            notes: None,
            ready_timeout_s: None,
        }
    }

    fn needs(p: Protocol) -> Needs {
        Needs {
            protocol: p,
            cc: Some(CongestionControl::Cubic),
            parallel: false,
            resume: false,
            early_data: false,
            ours_only_client: false,
            ours_only_server: false,
        }
    }

    #[test]
    fn builtins_parse_and_are_complete() {
        let r = Registry::builtin().unwrap();
        // run.json holds the resolved matrix, endpoints included.
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.as_array().is_some_and(|a| a.len() >= 10), "{v}");
        assert!(r.get(Role::Server, OURS).is_some());
        assert!(r.get(Role::Client, OURS).is_some());
        for e in r.all().filter(|e| !e.is_ours()) {
            assert!(
                e.version.is_some(),
                "{} {} has no version command",
                e.role.name(),
                e.name
            );
            assert!(e.install.is_some(), "{} has no install script", e.name);
        }
    }

    #[test]
    fn a_matrix_endpoint_may_not_shadow_or_be_malformed() {
        let e = Registry::with(&[def(OURS, Role::Client, &["h3"])]).unwrap_err();
        assert!(e.1.contains("ours"), "{e:?}");
        let e = Registry::with(&[def("x", Role::Client, &["h9"])]).unwrap_err();
        assert!(e.1.contains("protocols"), "{e:?}");
        let e = Registry::with(&[def("x", Role::Client, &["udp"])]).unwrap_err();
        assert!(e.1.contains("udp"), "{e:?}");
        let e = Registry::with(&[def("a b", Role::Client, &["h3"])]).unwrap_err();
        assert!(e.1.contains("name"), "{e:?}");
        let mut d = def("x", Role::Client, &["h3"]);
        d.cc = vec!["vegas".into()];
        assert!(Registry::with(&[d]).unwrap_err().1.contains("cc"));
        let two = [
            def("x", Role::Client, &["h3"]),
            def("x", Role::Client, &["h2"]),
        ];
        assert_eq!(Registry::with(&two).unwrap_err().0, 1);
        // The same name on both sides is two endpoints.
        let pair = [
            def("x", Role::Client, &["h3"]),
            def("x", Role::Server, &["h3"]),
        ];
        assert!(Registry::with(&pair).is_ok());
    }

    #[test]
    fn applicability_names_the_reason() {
        let r = Registry::with(&[
            def("q", Role::Client, &["h3"]),
            def("t", Role::Server, &["h2", "h1.1-tls"]),
        ])
        .unwrap();
        let ours_s = r.get(Role::Server, OURS).unwrap();
        let ours_c = r.get(Role::Client, OURS).unwrap();
        let q = r.get(Role::Client, "q").unwrap();
        let t = r.get(Role::Server, "t").unwrap();
        assert_eq!(not_applicable(ours_s, q, &needs(Protocol::H3)), None);
        let why = not_applicable(ours_s, q, &needs(Protocol::H2)).unwrap();
        assert!(why.contains("client q does not speak h2"), "{why}");
        // The controller: a QUIC endpoint must run it, a TCP one gets the namespace's.
        let mut n = needs(Protocol::H3);
        n.cc = Some(CongestionControl::Bbr);
        let why = not_applicable(ours_s, q, &n).unwrap();
        assert!(why.contains("cannot run bbr (it runs cubic)"), "{why}");
        let mut n = needs(Protocol::H2);
        n.cc = Some(CongestionControl::Bbr);
        assert_eq!(not_applicable(t, ours_c, &n), None);
        // Pipelining is the client's: a server of h1.1 over TLS serves it.
        assert_eq!(
            not_applicable(t, ours_c, &needs(Protocol::H11Pipelined)),
            None
        );
        // Capabilities, on either side.
        let mut n = needs(Protocol::H3);
        n.early_data = true;
        let why = not_applicable(ours_s, q, &n).unwrap();
        assert!(why.contains("client q has no 0-RTT"), "{why}");
        let mut n = needs(Protocol::H2);
        n.ours_only_client = true;
        assert_eq!(not_applicable(t, ours_c, &n), None);
        let mut n = needs(Protocol::H3);
        n.ours_only_client = true;
        assert!(not_applicable(ours_s, q, &n)
            .unwrap()
            .contains("own client"));
    }
}
