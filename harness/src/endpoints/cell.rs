//! A cell's third-party side: whether its pair can run it at all, the
//! server started in the server namespace, the contract client's workload
//! in the client namespace. `crate::cell` calls in here only when one end
//! is not ours.

use quicbench_wire::transport::TcpFastStart;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use quicbench_netem::link::Link;
use quicbench_netem::NetNs;
use quicbench_wire::tls::Identity;
use quicbench_wire::{CongestionControl, Protocol};

use super::contract::{self, Dirs, Object, ObjectStore, ServerEnv};
use super::external;
use super::process::Proc;
use super::{not_applicable, Endpoint, Needs, Role};
use crate::matrix::Matrix;
use crate::plan::{Cell, Workload};
use crate::workloads::{Output, Ports};

/// Port of a third-party server in its namespace (nothing else listens there).
pub const TLS_PORT: u16 = 4433;
pub const CLEAR_PORT: u16 = 8080;

/// What the cells of a run share for third-party endpoints: a work
/// directory (certificate, key, the pattern objects), the scripts and the
/// versions already read.
pub struct Shared {
    work: PathBuf,
    pub scripts: PathBuf,
    objects: ObjectStore,
    cert: Mutex<Option<(PathBuf, PathBuf, PathBuf)>>,
    versions: Mutex<BTreeMap<String, String>>,
}

impl Default for Shared {
    fn default() -> Self {
        // One directory per context, not per process: two contexts in one
        // process (tests running side by side) must not remove each other's
        // certificate files when the first is dropped.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work =
            std::env::temp_dir().join(format!("quicbench-endpoints-{}-{n}", std::process::id()));
        Shared {
            objects: ObjectStore::new(work.join("objects")),
            work,
            scripts: scripts_dir(),
            cert: Mutex::new(None),
            versions: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// `QUICBENCH_SCRIPTS`, else the source tree's `scripts/` (where `cargo run`
/// and the tests find the wrappers).
pub fn scripts_dir() -> PathBuf {
    std::env::var_os("QUICBENCH_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts"))
}

impl Shared {
    /// (chain, key, trust anchors) PEM files of the run's identity.
    fn cert_files(&self, id: &Identity) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
        let mut g = self.cert.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        std::fs::create_dir_all(&self.work)
            .with_context(|| format!("creating {}", self.work.display()))?;
        let files = (
            self.work.join("cert.pem"),
            self.work.join("key.pem"),
            self.work.join("ca.pem"),
        );
        id.write_chain(&files.0)?;
        id.write_key(&files.1)?;
        id.write_trust(&files.2)?;
        *g = Some(files.clone());
        Ok(files)
    }

    /// The endpoint's version line (its `version` command, run once a run).
    pub fn version(&self, e: &Endpoint) -> Option<String> {
        let cmd = e.version.as_deref()?;
        let key = format!("{}:{}", e.role.name(), e.name);
        let mut g = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.get(&key) {
            return Some(v.clone());
        }
        let v = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("QB_SCRIPTS", &self.scripts)
            .output()
            .map(|o| {
                let s = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                let line = s
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                if o.status.success() && !line.is_empty() {
                    line.to_string()
                } else {
                    format!("unknown ({cmd}: {})", o.status)
                }
            })
            .unwrap_or_else(|e| format!("unknown ({cmd}: {e})"));
        g.insert(key, v.clone());
        Some(v)
    }

    /// The cell's endpoint directory (under `capture` when the run keeps
    /// captures, else under the run's work directory, removed at the end).
    pub fn cell_dir(&self, capture: Option<&Path>, cell: &Cell) -> PathBuf {
        match capture {
            Some(d) => d.join("endpoints"),
            None => self.work.join("cells").join(&cell.id),
        }
    }
}

/// The two endpoints of a cell.
pub fn pair<'a>(m: &'a Matrix, cell: &Cell) -> anyhow::Result<(&'a Endpoint, &'a Endpoint)> {
    let get = |role, name: &str| {
        m.endpoints
            .get(role, name)
            .with_context(|| format!("no {} endpoint {name:?}", Role::name(role)))
    };
    Ok((
        get(Role::Server, &cell.server)?,
        get(Role::Client, &cell.client)?,
    ))
}

/// Why the cell's pair cannot run it (None: it can).
pub fn applicability(m: &Matrix, cell: &Cell) -> Option<String> {
    let (s, c) = match pair(m, cell) {
        Ok(p) => p,
        Err(e) => return Some(e.to_string()),
    };
    let v = cell.variant.as_str();
    if cell.fast_start() != TcpFastStart::default() {
        // The endpoint contract has no capability for either yet.
        return Some(format!(
            "handshake mode {v} (TCP Fast Open, TLS early data over TCP) needs quicbench's own client and server: the endpoint contract cannot ask for them"
        ));
    }
    let resumed = cell.workload == Workload::Handshake && v == "resumed";
    let n = Needs {
        protocol: cell.protocol,
        cc: cell.cc,
        parallel: cell.workload == Workload::Hol && v == "parallel",
        resume: resumed,
        early_data: resumed && cell.protocol == Protocol::H3,
        // Paced requests, paced or active migration: the contract cannot
        // ask a third-party client for them.
        ours_only_client: (cell.workload == Workload::Hol && v == "paced")
            || (cell.workload == Workload::Migration
                && (v.ends_with("-paced") || v.starts_with("active"))),
        ours_only_server: false,
    };
    not_applicable(s, c, &n)
}

fn server_port(p: Protocol) -> (u16, bool) {
    match p {
        Protocol::H3 => (TLS_PORT, true),
        p if p.uses_tls() => (TLS_PORT, false),
        _ => (CLEAR_PORT, false),
    }
}

/// Give the namespace's routes to the peer the cell's TCP controller
/// (`ip route replace ... congctl <cc>`): a third-party TCP endpoint cannot
/// be asked for one per socket, and the namespace default
/// (`net.ipv4.tcp_congestion_control`) may only name controllers in the
/// host's `tcp_allowed_congestion_control` outside the initial namespace
/// (here "reno bbr": writing cubic is EPERM). A route's controller applies
/// to every connection over it that does not choose its own, active and
/// passive. Returns the route as it reads back.
fn set_tcp_cc(ns: &NetNs, cc: Option<CongestionControl>) -> anyhow::Result<Option<String>> {
    let Some(cc) = cc else { return Ok(None) };
    let name = quicbench_wire::transport::tcp_name(cc);
    let ip = |args: &[&str]| -> anyhow::Result<String> {
        let out = ns
            .command("ip")
            .args(args)
            .output()
            .with_context(|| format!("ip {}", args.join(" ")))?;
        if !out.status.success() {
            anyhow::bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    use quicbench_netem::link::addr::{ROUTE_V4, ROUTE_V6};
    let mut back = Vec::new();
    for (family, prefix) in [("-4", ROUTE_V4), ("-6", ROUTE_V6)] {
        let route = ip(&[family, "route", "show", prefix])?;
        let Some(line) = route.lines().next() else {
            anyhow::bail!("no route to {prefix} in the namespace");
        };
        let mut words: Vec<&str> = Vec::new();
        let mut it = line.split_whitespace();
        while let Some(w) = it.next() {
            if w == "congctl" {
                // Its value (and an optional "lock" before it).
                if it.next() == Some("lock") {
                    it.next();
                }
                continue;
            }
            words.push(w);
        }
        let mut args = vec![family, "route", "replace"];
        args.extend(words);
        args.extend(["congctl", name]);
        ip(&args)?;
        let now = ip(&[family, "route", "show", prefix])?;
        if !now.contains(&format!("congctl {name}")) {
            anyhow::bail!(
                "the route to {prefix} reads back {now:?}, the cell asked for congctl {name}"
            );
        }
        back.push(now);
    }
    Ok(Some(back.join("; ")))
}

/// The TCP controllers seen on a third-party end's sockets during the
/// workload (None: that end is ours, or the protocol is not over TCP).
#[derive(Debug, Default)]
pub struct TcpReadback {
    pub server: Option<std::collections::BTreeSet<String>>,
    pub client: Option<std::collections::BTreeSet<String>>,
}

impl TcpReadback {
    /// A mismatch with the cell's controller, naming the end; a note when
    /// no connection was seen (too short for the sampler).
    pub fn check(&self, cc: Option<CongestionControl>) -> (Option<String>, Vec<String>) {
        let Some(cc) = cc else {
            return (None, Vec::new());
        };
        let want = quicbench_wire::transport::tcp_name(cc);
        let mut notes = Vec::new();
        for (end, seen) in [("server", &self.server), ("client", &self.client)] {
            let Some(seen) = seen else { continue };
            if seen.is_empty() {
                notes.push(format!(
                    "{end}: no established TCP connection seen by ss (sampled every 20 ms): controller not read back"
                ));
            }
            let other: Vec<&String> = seen.iter().filter(|c| c.as_str() != want).collect();
            if !other.is_empty() {
                return (
                    Some(format!(
                        "the third-party {end}'s TCP connections ran {other:?}, the cell asked for {want}"
                    )),
                    notes,
                );
            }
        }
        (None, notes)
    }
}

/// Run `f` (the workload) while the third-party TCP ends' controllers are
/// read back from their sockets.
pub fn with_tcp_readback<R>(
    link: &Link,
    protocol: Protocol,
    server_theirs: bool,
    client_theirs: bool,
    f: impl FnOnce() -> R,
) -> (R, TcpReadback) {
    use super::process::sampling_cc;
    let period = Duration::from_millis(20);
    let tcp = protocol != Protocol::H3 && protocol != Protocol::Udp;
    let mut rb = TcpReadback::default();
    let r = match (tcp && server_theirs, tcp && client_theirs) {
        (false, false) => f(),
        (true, false) => {
            let (r, s) = sampling_cc(link.server_ns(), period, f);
            rb.server = Some(s);
            r
        }
        (false, true) => {
            let (r, c) = sampling_cc(link.client_ns(), period, f);
            rb.client = Some(c);
            r
        }
        (true, true) => {
            let ((r, c), s) = sampling_cc(link.server_ns(), period, || {
                sampling_cc(link.client_ns(), period, f)
            });
            rb.server = Some(s);
            rb.client = Some(c);
            r
        }
    };
    (r, rb)
}

/// A third-party server, running.
pub struct ExternalServer {
    proc: Proc,
    pub ports: Ports,
    pub tcp_cc: Option<String>,
}

impl ExternalServer {
    /// Stop it; a server that died during the cell is a failure of the cell.
    pub fn stop(mut self) -> Result<(), String> {
        let early = self.proc.exited().map(|s| self.proc.exit_reason(s));
        self.proc.stop(Duration::from_secs(2));
        match early {
            Some(reason) => Err(format!("the server died during the cell: {reason}")),
            None => Ok(()),
        }
    }
}

/// The objects a client of this cell will ask for: `tagged` for a contract
/// client, `/bytes/N` sizes for ours.
pub fn objects_of(
    m: &Matrix,
    cell: &Cell,
    rate_bps: Option<u64>,
    rtt_ms: f64,
    loss: f64,
) -> (Vec<Object>, Vec<u64>) {
    let w = &m.workloads;
    if cell.client != super::OURS {
        let tagged = match cell.workload {
            Workload::Handshake => w
                .handshake
                .as_ref()
                .map(|h| Object::numbered(h.size, 0, h.connections as usize))
                .unwrap_or_default(),
            Workload::Hol => w
                .hol
                .as_ref()
                .map(|h| Object::numbered(h.parallel_size, 0, h.parallel_objects.max(1) as usize))
                .unwrap_or_default(),
            Workload::Goodput => w
                .goodput
                .as_ref()
                .map(|g| external::one_object(g.size))
                .unwrap_or_default(),
            Workload::Migration => w
                .migration
                .as_ref()
                .map(|g| external::one_object(g.size))
                .unwrap_or_default(),
            Workload::Udp | Workload::Conns | Workload::Fairness => Vec::new(),
        };
        return (tagged, Vec::new());
    }
    // Ours asks `/bytes/N`: every size its workloads request.
    let mut sizes = vec![1024u64];
    match cell.workload {
        Workload::Handshake => sizes.extend(w.handshake.as_ref().map(|h| h.size)),
        Workload::Hol => {
            if let Some(h) = &w.hol {
                sizes.extend([h.size, h.parallel_size]);
            }
        }
        Workload::Migration => sizes.extend(w.migration.as_ref().map(|g| g.size)),
        Workload::Goodput => {
            if let Some(g) = &w.goodput {
                sizes.push(g.size);
                sizes.push(crate::workloads::static_long_size(
                    g, rate_bps, rtt_ms, loss,
                ));
            }
        }
        Workload::Udp | Workload::Conns | Workload::Fairness => {}
    }
    sizes.sort_unstable();
    sizes.dedup();
    (Vec::new(), sizes)
}

/// Start the cell's third-party server in the server namespace.
#[allow(clippy::too_many_arguments)]
pub fn start_server(
    shared: &Shared,
    identity: &Identity,
    link: &Link,
    endpoint: &Endpoint,
    cell: &Cell,
    dir: &Path,
    objects: &(Vec<Object>, Vec<u64>),
    listen: IpAddr,
) -> anyhow::Result<ExternalServer> {
    let command = endpoint
        .command
        .as_deref()
        .context("start_server: not a contract endpoint")?;
    let (cert, key, _) = shared.cert_files(identity)?;
    let dirs = Dirs::create(dir.join("server"))?;
    contract::build_www(&dirs.www(), &shared.objects, &objects.0, &objects.1)?;
    let (port, udp) = server_port(cell.protocol);
    let tcp_cc = if cell.protocol == Protocol::H3 {
        None
    } else {
        set_tcp_cc(link.server_ns(), cell.cc)?
    };
    let env = ServerEnv {
        protocol: cell.protocol,
        cc: cell.cc,
        listen,
        port,
        cert: &cert,
        key: &key,
    };
    let vars = contract::server_vars(&env, &dirs, &shared.scripts);
    let what = format!("server {}", endpoint.name);
    let mut proc = Proc::start(
        link.server_ns(),
        &what,
        crate::cpu_use::SERVER_PROCESS,
        command,
        &vars,
        &dirs.root,
        &dirs.out(),
    )?;
    proc.wait_bound(port, udp, Duration::from_secs(endpoint.ready_timeout_s))?;
    Ok(ExternalServer {
        proc,
        ports: Ports {
            http: port,
            tls: port,
            quic: port,
            udp: port,
        },
        tcp_cc,
    })
}

/// Run the cell's workload with its contract client.
#[allow(clippy::too_many_arguments)]
pub fn run_client(
    shared: &Shared,
    identity: &Identity,
    link: &Link,
    m: &Matrix,
    cell: &Cell,
    endpoint: &Endpoint,
    dir: &Path,
    server: IpAddr,
    ports: &Ports,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<(Output, Option<String>)> {
    let (_, _, ca) = shared.cert_files(identity)?;
    let tcp_cc = if cell.protocol == Protocol::H3 {
        None
    } else {
        set_tcp_cc(link.client_ns(), cell.cc)?
    };
    let ldef = &m.links[cell.link];
    let port = crate::workloads::port_of(cell.protocol, ports);
    let client_dir = dir.join("client");
    std::fs::create_dir_all(&client_dir)
        .with_context(|| format!("creating {}", client_dir.display()))?;
    let ctx = external::Ctx {
        ns: link.client_ns(),
        endpoint,
        protocol: cell.protocol,
        cc: cell.cc,
        server,
        port,
        ca,
        dir: client_dir,
        scripts: shared.scripts.clone(),
        stop,
        deadline: std::time::Instant::now() + Duration::from_secs(m.cell_timeout_s.clamp(5, 3600)),
        rtt_ms: ldef.rtt_ms,
        rate_bps: ldef.rate_bps,
    };
    let w = &m.workloads;
    let missing = || {
        let mut o = Output::default();
        o.fail_cell("workload parameters missing".into());
        o
    };
    let out = match cell.workload {
        Workload::Handshake => match &w.handshake {
            Some(p) => external::handshake(&ctx, &cell.variant, p),
            None => missing(),
        },
        Workload::Hol => match &w.hol {
            Some(p) => external::hol_parallel(&ctx, p),
            None => missing(),
        },
        Workload::Goodput => match &w.goodput {
            Some(p) => external::goodput(&ctx, p),
            None => missing(),
        },
        Workload::Migration => match &w.migration {
            Some(p) => external::migration(&ctx, link, &cell.variant, p),
            None => missing(),
        },
        Workload::Udp | Workload::Conns | Workload::Fairness => missing(),
    };
    Ok((out, tcp_cc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_open_modes_are_not_applicable_to_third_party_pairs() {
        let src = r#"
protocols = ["h2"]
servers = ["quicbench", "nginx"]
clients = ["quicbench", "curl"]
repetitions = 1
[[links]]
spec = "delay 5ms"
[workloads.handshake]
modes = ["resumed", "resumed-tfo", "resumed-tfo-0rtt"]
"#;
        let m = Matrix::parse(src, "t.toml").unwrap();
        let cells = crate::plan::cells(&m);
        let tfo: Vec<_> = cells
            .iter()
            .filter(|c| c.variant.starts_with("resumed-tfo") && !c.ours())
            .collect();
        assert!(!tfo.is_empty());
        for c in tfo {
            let why = applicability(&m, c).expect("not applicable");
            assert!(why.contains("TCP Fast Open"), "{why}");
        }
        // Plain resumption is judged by the pair's own capabilities.
        for c in cells.iter().filter(|c| c.variant == "resumed" && !c.ours()) {
            let why = applicability(&m, c).unwrap_or_default();
            assert!(!why.contains("Fast Open"), "{why}");
        }
    }
}
