//! One cell's life: build its link, start the servers in the server namespace,
//! run the workload in the client namespace, collect, tear down. Nothing
//! survives a cell but the result (and, inside a workload, what it asks for:
//! the resumption ticket of a warm handshake).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use quicbench_netem::link::{Backend, Link, LinkConfig};
use quicbench_results::{CellResult, CellStatus, LinkInfo, Metric};
use quicbench_servers::{ServerOptions, StatsSnapshot};
use quicbench_wire::sockinfo::TransportRecord;
use quicbench_wire::tls::Identity;
use quicbench_wire::transport::TcpFastStart;
use quicbench_wire::CongestionControl;

use crate::matrix::{LinkDef, Matrix};
use crate::plan::{Cell, Workload};
use crate::transport;
use crate::workloads::{self, Env, Output, Ports};

/// What every cell of a run shares.
pub struct CellCtx {
    pub identity: Identity,
    pub backend: Backend,
    /// Capture each cell's link traffic under this directory (`<dir>/<cell id>/`).
    pub pcap_dir: Option<PathBuf>,
    /// Set on Ctrl-C: the cell in flight is abandoned quickly.
    pub stop: Arc<AtomicBool>,
    /// Tears the cells' links down beside the next cell.
    pub reaper: Reaper,
    /// Certificate files, pattern objects and versions for third-party
    /// endpoints (docs/endpoints.md).
    pub endpoints: crate::endpoints::cell::Shared,
    /// Pin the user-space relay to this CPU (`LinkConfig::relay_cpu`).
    pub relay_cpu: Option<usize>,
    /// Keep idle CPUs polling while a link is up (`LinkConfig::idle_poll`).
    pub idle_poll: bool,
}

impl CellCtx {
    /// A run's context: a fresh identity whose certificate names the link's
    /// server addresses (every cell's server has the same ones).
    pub fn new(
        backend: Backend,
        pcap_dir: Option<PathBuf>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<CellCtx> {
        use quicbench_netem::link::addr;
        let names = [addr::SERVER_V4.to_string(), addr::SERVER_V6.to_string()];
        Ok(CellCtx {
            identity: Identity::generate(&names)?,
            backend,
            pcap_dir,
            stop,
            reaper: Reaper::default(),
            endpoints: Default::default(),
            relay_cpu: None,
            idle_poll: true,
        })
    }
}

/// Tears links down on a thread of its own. Closing a TUN device waits for
/// the kernel's RCU grace periods (~20 ms each, two devices a link): 65-75 ms
/// a cell, the largest part of its fixed cost (benches/cell.rs), all of it
/// sleeping, so the next cell runs meanwhile. Dropping the reaper waits for
/// every link handed to it: a run leaves nothing behind when it returns.
#[derive(Default)]
pub struct Reaper {
    inner: std::sync::Mutex<Option<ReaperThread>>,
}

/// The reaper's queue and thread, started with the first link.
type ReaperThread = (mpsc::Sender<Arc<Link>>, std::thread::JoinHandle<()>);

impl Reaper {
    /// Hand `link` over; it is dropped (devices, namespaces, relay threads)
    /// on the reaper's thread, or here if that thread cannot start.
    pub fn bury(&self, link: Arc<Link>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            let (tx, rx) = mpsc::channel::<Arc<Link>>();
            match std::thread::Builder::new()
                .name("qb-reaper".into())
                .spawn(move || rx.into_iter().for_each(drop))
            {
                Ok(j) => *g = Some((tx, j)),
                Err(_) => return drop(link),
            }
        }
        if let Some((tx, _)) = g.as_ref() {
            if let Err(mpsc::SendError(link)) = tx.send(link) {
                drop(link);
            }
        }
    }

    /// Wait until every link handed over is gone.
    pub fn finish(&self) {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((tx, j)) = taken {
            drop(tx);
            let _ = j.join();
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.finish();
    }
}

pub fn link_info(l: &LinkDef) -> LinkInfo {
    LinkInfo {
        label: l.label.clone(),
        up: l.up.to_string(),
        down: l.down.to_string(),
        rtt_ms: l.rtt_ms,
        loss: l.loss,
        rate_bps: l.rate_bps,
    }
}

/// What the servers leave behind: their counters and each connection's
/// transport record.
type ServerReport = (StatsSnapshot, Vec<TransportRecord>);

pub(crate) struct ServerThread {
    stop: tokio::sync::oneshot::Sender<()>,
    join: std::thread::JoinHandle<std::io::Result<Option<ServerReport>>>,
}

/// Start the servers on a thread inside the server namespace; returns their ports.
/// Let both namespaces use TCP Fast Open (`net.ipv4.tcp_fastopen`: client
/// and server); each end's profile reads the value back.
fn allow_fast_open(link: &Link) -> anyhow::Result<()> {
    let (name, value) = quicbench_wire::transport::TFO_SYSCTL;
    for ns in [link.client_ns(), link.server_ns()] {
        ns.set_sysctl(name, value)
            .map_err(|e| anyhow::anyhow!("TCP Fast Open in namespace {}: {e}", ns.label()))?;
    }
    Ok(())
}

pub(crate) fn start_servers(
    link: &Link,
    ip: IpAddr,
    identity: Identity,
    (cc, fast): (CongestionControl, TcpFastStart),
    transport_sample: Option<Duration>,
    port_shift: u16,
) -> anyhow::Result<(ServerThread, Ports)> {
    let shape = quicbench_wire::transport::LinkShape::of(link);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Ports, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let join = link.server_ns().spawn_thread("qb-servers", move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_stop(crate::cpu_use::ends_as(crate::cpu_use::SERVER))
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("server runtime: {e}")));
                return None;
            }
        };
        let r = rt.block_on(async move {
            let mut o = ServerOptions::new(identity);
            o.listen = vec![ip];
            o.cc = cc;
            // Another set of servers beside the first (a fairness mix runs
            // one per controller) listens `port_shift` higher.
            for p in [
                &mut o.http_port,
                &mut o.tls_port,
                &mut o.quic_port,
                &mut o.udp_port,
            ] {
                if *p != 0 {
                    *p = p.saturating_add(port_shift);
                }
            }
            o.link = Some(shape);
            o.record_transport = true;
            o.transport_sample = transport_sample;
            o.tcp_fast_start = fast;
            let servers = match quicbench_servers::start(o).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return None;
                }
            };
            let a = &servers.addrs;
            let port = |v: &Vec<std::net::SocketAddr>| v.first().map(|a| a.port()).unwrap_or(0);
            let _ = ready_tx.send(Ok(Ports {
                http: port(&a.http),
                tls: port(&a.tls),
                quic: port(&a.quic),
                udp: port(&a.udp),
            }));
            let _ = stop_rx.await;
            let stats = servers.stats();
            let ctx = servers.ctx.clone();
            servers.shutdown(Duration::from_millis(500)).await;
            // After the shutdown: connections closed by then have their final snapshot.
            Some((stats, ctx.transport_records()))
        });
        // Its workers end (and are counted) with it; then this thread.
        drop(rt);
        quicbench_netem::cpu::on_thread_end(crate::cpu_use::SERVER);
        r
    })?;
    let ports = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow::anyhow!("servers did not start within 10 s"))?
        .map_err(|e| anyhow::anyhow!("servers: {e}"))?;
    Ok((
        ServerThread {
            stop: stop_tx,
            join,
        },
        ports,
    ))
}

/// Run one cell to a result. Never panics on a workload failure: the cell is
/// marked failed with the reason.
pub fn execute(ctx: &CellCtx, m: &Matrix, cell: &Cell) -> CellResult {
    let ldef = &m.links[cell.link];
    let mut res = CellResult::new(
        cell.id.clone(),
        cell.protocol.name(),
        cell.workload.name(),
        cell.variant.clone(),
        link_info(ldef),
        cell.repetition,
        cell.seed,
    );
    res.params = params_of(m, cell);
    let t0 = Instant::now();
    // A controller the kernel lacks: the cell cannot be a matched comparison,
    // and falling back to another would be a silent lie.
    // A fairness mix may name a controller per flow.
    let wanted: Vec<CongestionControl> = match crate::fairness::Mix::parse(&cell.variant) {
        Ok(mix) if cell.workload == Workload::Fairness => {
            mix.resolved(cell.cc).into_iter().map(|f| f.1).collect()
        }
        _ => cell.cc.into_iter().collect(),
    };
    for cc in wanted {
        if let Err(e) = quicbench_wire::transport::check_tcp_congestion(cc) {
            res.status = CellStatus::Skipped {
                reason: e.to_string(),
            };
            res.finished = quicbench_results::now_rfc3339();
            return res;
        }
    }
    if !cell.ours() {
        if let Some(why) = crate::endpoints::cell::applicability(m, cell) {
            res.status = CellStatus::Skipped {
                reason: format!("not applicable: {why}"),
            };
            res.finished = quicbench_results::now_rfc3339();
            return res;
        }
    }
    // A panic in a workload, client or server code (a bug, or a peer provoking
    // one) fails this cell, not the whole run: the unwind drops the cell's
    // link and servers like an error return does.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute_inner(ctx, m, cell, ldef, &mut res)
    }));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(panic) => Some(format!("panicked: {}", panic_message(panic.as_ref()))),
    };
    if let Some(reason) = failure {
        res.status = CellStatus::Failed { reason };
    }
    res.finished = quicbench_results::now_rfc3339();
    res.duration_s = t0.elapsed().as_secs_f64();
    res
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".into()
    }
}

fn params_of(m: &Matrix, cell: &Cell) -> serde_json::Value {
    let w = &m.workloads;
    let v = match cell.workload {
        Workload::Handshake => serde_json::to_value(&w.handshake),
        Workload::Hol => serde_json::to_value(&w.hol),
        Workload::Migration => serde_json::to_value(&w.migration),
        Workload::Goodput => serde_json::to_value(&w.goodput),
        Workload::Udp => serde_json::to_value(&w.udp),
        Workload::Conns => serde_json::to_value(&w.conns),
        Workload::Fairness => serde_json::to_value(&w.fairness),
    };
    let mut v = v.unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("warmup".into(), m.warmup.into());
        if let Some(cc) = cell.cc {
            o.insert("cc".into(), cc.name().into());
        }
        o.insert("mtu".into(), m.mtu.into());
        o.insert("server".into(), cell.server.clone().into());
        o.insert("client".into(), cell.client.clone().into());
    }
    v
}

fn execute_inner(
    ctx: &CellCtx,
    m: &Matrix,
    cell: &Cell,
    ldef: &LinkDef,
    res: &mut CellResult,
) -> anyhow::Result<()> {
    if cell.workload == Workload::Conns {
        // Builds its own link (extra client addresses, sysctls) and runs the
        // server in a child process.
        return crate::conns::cell::execute(ctx, m, cell, ldef, res);
    }
    if cell.workload == Workload::Fairness {
        // Several server sets (one per controller) and several flows.
        return crate::fairness::cell::execute(ctx, m, cell, ldef, res);
    }
    let mut phases = Phases::start();
    let cpu = crate::cpu_use::CpuMark::now();
    let link = Arc::new(Link::build(link_config(ctx, m, cell, ldef))?);
    let fast = cell.fast_start();
    if fast.fast_open {
        allow_fast_open(&link)?;
    }
    phases.mark("link_up");
    let ends = Ends::of(ctx, m, cell)?;
    let server_ip = link.server_ip();
    // The UDP probe has no controller; its servers run the default.
    let cc = cell.cc.unwrap_or_default();
    let servers = match &ends.server {
        None => {
            // The server samples the transfers whose charts show the window over time.
            let sample = matches!(cell.workload, Workload::Goodput | Workload::Migration)
                .then_some(workloads::TRANSPORT_SAMPLE);
            let (t, ports) = start_servers(
                &link,
                server_ip,
                ctx.identity.clone(),
                (cc, fast),
                sample,
                0,
            )?;
            Servers::Ours(t, ports)
        }
        Some(e) => {
            let objects =
                crate::endpoints::cell::objects_of(m, cell, ldef.rate_bps, ldef.rtt_ms, ldef.loss);
            let s = crate::endpoints::cell::start_server(
                &ctx.endpoints,
                &ctx.identity,
                &link,
                e,
                cell,
                &ends.dir,
                &objects,
                server_ip,
            )?;
            Servers::Theirs(s)
        }
    };
    phases.mark("servers_up");
    let drops_before = transport::read_drops_both(&link);
    phases.mark("counters_before");
    let (ran, readback) = crate::endpoints::cell::with_tcp_readback(
        &link,
        cell.protocol,
        ends.server.is_some(),
        ends.client.is_some(),
        || -> anyhow::Result<(Output, Option<String>)> {
            match &ends.client {
                None => Ok((
                    run_ours(
                        ctx,
                        m,
                        cell,
                        ldef,
                        &link,
                        servers.ports(),
                        ends.server.is_some(),
                    )?,
                    None,
                )),
                Some(e) => crate::endpoints::cell::run_client(
                    &ctx.endpoints,
                    &ctx.identity,
                    &link,
                    m,
                    cell,
                    e,
                    &ends.dir,
                    server_ip,
                    &servers.ports(),
                    ctx.stop.clone(),
                ),
            }
        },
    );
    let (mut out, client_tcp_cc) = ran?;
    let (mismatch, cc_notes) = readback.check(cell.cc);
    out.notes.extend(cc_notes);
    if let Some(m) = mismatch {
        out.fail_cell(m);
    }
    phases.mark("workload");
    drain_link(&link);
    phases.mark("link_drained");
    let (server_stats, server_transport, server_tcp_cc) = servers.stop(&mut out);
    phases.mark("servers_down");
    let drops_after = transport::read_drops_both(&link);
    phases.mark("counters_after");
    let record = transport::CellTransport::collect(
        &link,
        cell.cc,
        cell.protocol,
        out.conn.as_ref(),
        server_stats.as_ref(),
        &drops_before,
        &drops_after,
    );
    record_link(res, &link, server_stats);
    let link_now = link.counters();
    let (t0, client_transport) = (out.t0_mono_ns, std::mem::take(&mut out.transport));
    let measured_from = out.measured_from;
    fill(res, out);
    cpu.record(res, &link_now);
    record_flows(res, &link, cell, measured_from);
    record.apply(res);
    crate::ground_truth::record(res, t0, client_transport, server_transport);
    ends.record(ctx, res, server_tcp_cc, client_tcp_cc);
    phases.mark("transport_record");
    // The link goes last (namespaces, devices, relay threads), beside the
    // next cell: "link_down" is the hand-over.
    ctx.reaper.bury(link);
    phases.mark("link_down");
    phases.record(res);
    Ok(())
}

/// The cell's link: the matrix's, with the handshake's lost-flight modes'
/// `drop-nth 1` on the side whose first packet is lost.
pub(crate) fn link_config(ctx: &CellCtx, m: &Matrix, cell: &Cell, ldef: &LinkDef) -> LinkConfig {
    let mut cfg = match lost_flight(cell) {
        Some(lost) => {
            let (up, down) = lost.link(&ldef.up, &ldef.down);
            LinkConfig::new(up, down)
        }
        None => LinkConfig::new(ldef.up.clone(), ldef.down.clone()),
    };
    cfg.seed = cell.seed;
    cfg.mtu = m.mtu;
    cfg.backend = ctx.backend;
    cfg.relay_cpu = ctx.relay_cpu;
    cfg.idle_poll = ctx.idle_poll;
    if let Some(d) = &ctx.pcap_dir {
        cfg.pcap_dir = Some(d.join(&cell.id));
    }
    cfg
}

/// Let what the client sent last reach the servers before they stop. A
/// server stopped while the client's close is still in the link closes that
/// connection itself, and the link took that packet (QUIC's
/// CONNECTION_CLOSE, TLS's close_notify) as the end of the last connection's
/// answer: its response path read one delay more of server turn (11 ms on a
/// 20 ms link, in every cell). User-space link: until the relay holds no
/// packet in either direction (a 1 ms pause first, for a packet not read
/// yet); kernel netem: the longest one-way delay. Bounded either way.
fn drain_link(link: &Link) {
    let cfg = link.config();
    let one_way = |s: &quicbench_netem::LinkSpec| {
        Duration::from_nanos(
            s.base_delay_ns()
                .saturating_add(s.jitter_ns().saturating_mul(2)),
        )
    };
    let longest = one_way(&cfg.up).max(one_way(&cfg.down)) + Duration::from_millis(1);
    std::thread::sleep(Duration::from_millis(1));
    // Rate-limited queues drain within their buffer's time; a second more
    // is a bound, not a wait.
    let deadline = Instant::now() + longest + Duration::from_secs(1);
    loop {
        match link.queued() {
            None => return std::thread::sleep(longest),
            Some((0, 0)) => return,
            Some(_) if Instant::now() >= deadline => return,
            Some(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// The link's per-flow metrics (of the flows opened from `measured_from`
/// on, when warm-up connections came first), and in the lost-flight modes
/// its chosen drops and the link as it was.
fn record_flows(res: &mut CellResult, link: &Link, cell: &Cell, measured_from: Option<Instant>) {
    let flows = link.flows();
    if let Some(f) = &flows {
        let k = link.counters();
        let cost = k.up.relay.path_compensation_ns + k.down.relay.path_compensation_ns;
        // On the link's clock (monotonic ns since the link was built).
        let from_ns = measured_from.map_or(0, |t| {
            t.saturating_duration_since(link.clock().epoch()).as_nanos() as u64
        });
        crate::link_metrics::record(res, f, cost, from_ns);
        crate::link_metrics::record_reordering(res, &link.counters());
    }
    if lost_flight(cell).is_some() {
        crate::link_metrics::record_chosen(res, &link.counters(), flows.as_ref());
        let c = link.config();
        res.notes.push(format!(
            "lost flight: the cell's link was up \"{}\", down \"{}\"",
            c.up, c.down
        ));
    }
}

/// The handshake's lost-flight mode of a cell, if it is one.
fn lost_flight(cell: &Cell) -> Option<workloads::lost::Lost> {
    (cell.workload == Workload::Handshake)
        .then(|| workloads::lost::Lost::of(&cell.variant))
        .flatten()
}

/// `link_counters`: the link's own counters, the backend, its rebinding
/// log, and our servers' counters when they ran.
pub(crate) fn record_link(res: &mut CellResult, link: &Link, server_stats: Option<StatsSnapshot>) {
    res.link_counters = serde_json::to_value(link.counters()).ok();
    if let Some(o) = res.link_counters.as_mut().and_then(|v| v.as_object_mut()) {
        if let Some(s) = server_stats {
            o.insert(
                "servers".into(),
                serde_json::to_value(&s).unwrap_or_default(),
            );
        }
        o.insert("backend".into(), link.backend().to_string().into());
        if let Ok(ev) = serde_json::to_value(link.rebind_events()) {
            o.insert("rebind_events".into(), ev);
        }
    }
}

/// Stop our servers: their counters and transport records (None if the
/// thread failed).
pub(crate) fn stop_server_thread(t: ServerThread) -> Option<(StatsSnapshot, Vec<TransportRecord>)> {
    let _ = t.stop.send(());
    match t.join.join() {
        Ok(Ok(Some(x))) => Some(x),
        _ => None,
    }
}

/// The servers of a cell: ours (in-process) or a third-party one.
enum Servers {
    Ours(ServerThread, Ports),
    Theirs(crate::endpoints::cell::ExternalServer),
}

impl Servers {
    /// Stop them: ours leave their counters and transport records; a
    /// third-party server that died during the cell fails it. Also returns
    /// the third-party server's namespace route controller, as read back.
    fn stop(
        self,
        out: &mut Output,
    ) -> (Option<StatsSnapshot>, Vec<TransportRecord>, Option<String>) {
        match self {
            Servers::Ours(t, _) => match stop_server_thread(t) {
                Some((s, t)) => (Some(s), t, None),
                None => (None, Vec::new(), None),
            },
            Servers::Theirs(s) => {
                let tcp_cc = s.tcp_cc.clone();
                if let Err(reason) = s.stop() {
                    out.fail_cell(reason);
                }
                (None, Vec::new(), tcp_cc)
            }
        }
    }

    fn ports(&self) -> Ports {
        match self {
            Servers::Ours(_, p) => *p,
            Servers::Theirs(s) => s.ports,
        }
    }
}

/// A cell's endpoints when not ours (None: ours), and their directory.
struct Ends<'a> {
    server: Option<&'a crate::endpoints::Endpoint>,
    client: Option<&'a crate::endpoints::Endpoint>,
    dir: PathBuf,
}

impl<'a> Ends<'a> {
    fn of(ctx: &CellCtx, m: &'a Matrix, cell: &Cell) -> anyhow::Result<Ends<'a>> {
        let (s, c) = crate::endpoints::cell::pair(m, cell)?;
        let capture = ctx.pcap_dir.as_ref().map(|d| d.join(&cell.id));
        Ok(Ends {
            server: (!s.is_ours()).then_some(s),
            client: (!c.is_ours()).then_some(c),
            dir: ctx.endpoints.cell_dir(capture.as_deref(), cell),
        })
    }

    /// `extra.endpoints`: who ran each side, its version, and where its
    /// controller came from; then the cell's endpoint directory goes
    /// (unless the run keeps captures).
    fn record(
        &self,
        ctx: &CellCtx,
        res: &mut CellResult,
        server_tcp_cc: Option<String>,
        client_tcp_cc: Option<String>,
    ) {
        if self.server.is_none() && self.client.is_none() {
            return;
        }
        let side = |e: Option<&crate::endpoints::Endpoint>, tcp_cc: Option<String>| match e {
            None => serde_json::json!({"name": crate::endpoints::OURS}),
            Some(e) => serde_json::json!({
                "name": e.name,
                "version": ctx.endpoints.version(e),
                "command": e.command,
                "notes": e.notes,
                "namespace_tcp_cc": tcp_cc,
            }),
        };
        res.extra.insert(
            "endpoints".into(),
            serde_json::json!({
                "server": side(self.server, server_tcp_cc),
                "client": side(self.client, client_tcp_cc),
            }),
        );
        if ctx.pcap_dir.is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Our own client's workload, in the client namespace.
fn run_ours(
    ctx: &CellCtx,
    m: &Matrix,
    cell: &Cell,
    ldef: &LinkDef,
    link: &Arc<Link>,
    ports: Ports,
    static_server: bool,
) -> anyhow::Result<Output> {
    // The NAT the migration workload rebinds (and asks to confirm the
    // event); the chosen drops the lost-flight handshakes arm.
    let nat: Option<Arc<dyn workloads::LinkControl>> = if (cell.workload == Workload::Migration
        && !cell.variant.starts_with("active"))
        || lost_flight(cell).is_some()
    {
        Some(link.clone())
    } else {
        None
    };
    let mut env = env_of(ctx, m, cell, ldef, link, ports, static_server);
    env.link = nat;
    let w = m.workloads.clone();
    let c = cell.clone();
    in_client_ns(ctx, m, link, move || async move {
        run_workload(&env, &c, &w).await
    })
}

/// A workload's environment for our client in a cell.
pub(crate) fn env_of(
    ctx: &CellCtx,
    m: &Matrix,
    cell: &Cell,
    ldef: &LinkDef,
    link: &Arc<Link>,
    ports: Ports,
    static_server: bool,
) -> Env {
    Env {
        server_ip: link.server_ip(),
        ports,
        trust: ctx.identity.trust_anchors(),
        cc: cell.cc.unwrap_or_default(),
        rtt_ms: ldef.rtt_ms,
        rate_bps: ldef.rate_bps,
        loss: ldef.loss,
        warmup: m.warmup,
        timeout: Duration::from_secs(m.cell_timeout_s.clamp(5, 3600)),
        link: None,
        link_shape: Some(quicbench_wire::transport::LinkShape::of(link)),
        capture_dir: ctx.pcap_dir.as_ref().map(|d| d.join(&cell.id)),
        stall_timeout: None,
        transport_sample: None,
        static_server,
    }
}

/// Run `work` on a runtime of its own in the client namespace, within the
/// cell's time limit; Ctrl-C abandons it.
pub(crate) fn in_client_ns<T, F, W>(
    ctx: &CellCtx,
    m: &Matrix,
    link: &Arc<Link>,
    work: W,
) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
    W: FnOnce() -> F + Send + 'static,
{
    let cell_limit = Duration::from_secs(m.cell_timeout_s.max(5));
    let stop = ctx.stop.clone();
    link.client_ns().try_run(move || -> anyhow::Result<T> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_stop(crate::cpu_use::ends_as(crate::cpu_use::CLIENT))
            .build()?;
        let r = rt.block_on(async move {
            let stopper = async {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                r = tokio::time::timeout(cell_limit, work()) => r.map_err(|_| anyhow::anyhow!("cell timed out after {} s (cell_timeout_s)", cell_limit.as_secs())),
                _ = stopper => Err(anyhow::anyhow!("interrupted")),
            }
        });
        // Its workers end (and are counted) with it; then this thread.
        drop(rt);
        quicbench_netem::cpu::on_thread_end(crate::cpu_use::CLIENT);
        r
    })?
}

/// Wall time of a cell's phases, in order (`extra.fixed_cost`): what set-up
/// and teardown cost beside the workload (docs/matrix.md, wall time).
struct Phases {
    last: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Phases {
    fn start() -> Self {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done
            .push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }

    fn record(self, res: &mut CellResult) {
        let mut o = serde_json::Map::new();
        let mut fixed = 0.0;
        for (name, ms) in &self.done {
            o.insert(format!("{name}_ms"), (*ms).into());
            if *name != "workload" {
                fixed += ms;
            }
        }
        o.insert("total_fixed_ms".into(), fixed.into());
        res.extra
            .insert("fixed_cost".into(), serde_json::Value::Object(o));
    }
}

async fn run_workload(env: &Env, c: &Cell, w: &crate::matrix::Workloads) -> Output {
    let missing = || {
        let mut o = Output::default();
        o.notes.push("workload parameters missing".into());
        o.failures = 1;
        o
    };
    match c.workload {
        Workload::Handshake => match &w.handshake {
            Some(p) => workloads::handshake(env, c.protocol, &c.variant, p).await,
            None => missing(),
        },
        Workload::Hol => match &w.hol {
            Some(p) if c.variant == "parallel" => workloads::hol_parallel(env, c.protocol, p).await,
            Some(p) => workloads::hol_paced(env, c.protocol, p).await,
            None => missing(),
        },
        Workload::Migration => match &w.migration {
            Some(p) => match c.variant.strip_suffix("-paced") {
                Some(kind) => workloads::migration_paced(env, c.protocol, kind, p).await,
                None => workloads::migration(env, c.protocol, &c.variant, p).await,
            },
            None => missing(),
        },
        Workload::Goodput => match &w.goodput {
            Some(p) => workloads::goodput(env, c.protocol, p).await,
            None => missing(),
        },
        Workload::Udp => match &w.udp {
            Some(p) => workloads::udp(env, p).await,
            None => missing(),
        },
        // Dispatched before the link is built (execute_inner).
        Workload::Conns | Workload::Fairness => missing(),
    }
}

/// Records above this many are summarised, not kept raw.
const MAX_RAW_RECORDS: usize = 2000;

pub(crate) fn fill(res: &mut CellResult, out: Output) {
    for (name, (unit, samples)) in out.metrics {
        // Latencies also as HdrHistograms under the same name, in µs (mergeable
        // across cells and runs; the summary uses the exact samples).
        if unit == "ms" && !samples.is_empty() {
            let us: Vec<u64> = samples
                .iter()
                .map(|v| (v * 1000.0).round().max(0.0) as u64)
                .collect();
            if let Ok(h) = quicbench_results::HistogramData::from_values(&us, "us") {
                res.histograms.insert(name.clone(), h);
            }
        }
        res.metrics.insert(name, Metric { unit, samples });
    }
    res.timelines = out.timelines;
    res.theory = out.theory;
    res.notes = out.notes;
    if out.records.len() <= MAX_RAW_RECORDS {
        // Progress is in timelines already; keep records lean.
        let lean: Vec<_> = out
            .records
            .into_iter()
            .map(|mut r| {
                r.progress.clear();
                r
            })
            .collect();
        res.records = serde_json::to_value(lean).ok();
    }
    if let Some(ci) = out.conn {
        // congestion_control in it is read back from the connection.
        res.tls = serde_json::to_value(&ci).ok();
    }
    // Structured output (a migration's event, the UDP probe's report) goes
    // where docs/results-schema.md says: `extra`, not a note.
    res.extra = out.extra;
    let measured = res.metrics.values().any(|m| !m.samples.is_empty());
    if out.failures > 0 {
        res.notes
            .push(format!("{} request(s)/step(s) failed", out.failures));
        if !measured {
            res.status = CellStatus::Failed {
                reason: res
                    .notes
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "nothing measured".into()),
            };
        }
    }
    if let Some(f) = res.metrics.get_mut("failures") {
        f.samples.push(out.failures as f64);
    } else {
        res.metrics.insert(
            "failures".into(),
            Metric {
                unit: "count".into(),
                samples: vec![out.failures as f64],
            },
        );
    }
}
