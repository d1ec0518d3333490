//! A whole run: plan, shard, resume, execute cell after cell (each written
//! atomically as it ends), progress, Ctrl-C, summary and headline findings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use quicbench_netem::link::Backend;
use quicbench_results::{CellResult, HostInfo, RunDir, RunMeta, SCHEMA_VERSION};

use crate::cell::{self, CellCtx};
use crate::matrix::Matrix;
use crate::plan::{self, Shard};

/// How to run a matrix.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where run directories go (`<out>/<UTC timestamp>-<name>/`).
    pub out: PathBuf,
    /// Run name (default: the matrix name).
    pub name: Option<String>,
    pub shard: Option<Shard>,
    /// Continue this run directory: skip its finished cells.
    pub resume: Option<PathBuf>,
    pub backend: Backend,
    pub pcap: bool,
    /// Pin the user-space relay to this CPU (`LinkConfig::relay_cpu`).
    pub relay_cpu: Option<usize>,
    /// Keep idle CPUs polling while a link is up (`LinkConfig::idle_poll`).
    pub idle_poll: bool,
    /// Show a progress bar (else one line per cell on stderr).
    pub progress_bar: bool,
    /// Stop after this many cells (tests, smoke runs).
    pub max_cells: Option<usize>,
    /// Calibrate every link of the matrix before the first cell (recorded in run.json).
    pub calibrate: bool,
    /// Identifier of the source tree, if known.
    pub git_commit: Option<String>,
    pub quicbench_version: String,
}

/// What a run did.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub planned: usize,
    pub skipped_finished: usize,
    pub ran: usize,
    pub failed: usize,
    pub interrupted: bool,
    pub elapsed_s: f64,
}

/// Versions of the protocol stacks this binary was built with (from Cargo.lock
/// at build time, see build.rs of the harness).
pub fn crate_versions() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in env!("QUICBENCH_STACK_VERSIONS").split(';') {
        if let Some((k, v)) = line.split_once('=') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

pub fn host_info() -> HostInfo {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let memory_bytes = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    HostInfo {
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model,
        cores: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_bytes,
    }
}

/// Run (or resume) a matrix. Cells are written as they end; Ctrl-C (via `stop`)
/// finishes with everything done so far kept.
pub fn run(m: &Matrix, opts: &RunOptions, stop: Arc<AtomicBool>) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let all = plan::cells(m);
    let planned_total = all.len();
    let mine = plan::shard(all, opts.shard);
    let (backend, backend_reason) = quicbench_netem::link::choose_backend(opts.backend);
    // Before any directory is made: a run that cannot start leaves nothing.
    let endpoints = endpoint_versions(m, &crate::endpoints::cell::Shared::default());
    check_installed(m, &endpoints)?;

    let dir = match &opts.resume {
        Some(p) => RunDir::open(p).with_context(|| format!("resuming {}", p.display()))?,
        None => {
            let name = opts.name.clone().unwrap_or_else(|| m.name.clone());
            RunDir::create(&opts.out, &crate::plan::slug(&name))
                .with_context(|| format!("creating a run directory under {}", opts.out.display()))?
        }
    };
    let finished = dir.finished_cells()?;
    let mut meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        quicbench_version: opts.quicbench_version.clone(),
        git_commit: opts.git_commit.clone(),
        started: quicbench_results::now_rfc3339(),
        finished: None,
        name: opts.name.clone().unwrap_or_else(|| m.name.clone()),
        host: host_info(),
        crate_versions: crate_versions(),
        backend: backend.to_string(),
        privileges: Some(
            quicbench_netem::privileges::privileges()
                .label()
                .to_string(),
        ),
        backend_reason: backend_reason.clone(),
        matrix: serde_json::json!({"resolved": m, "source": m.source}),
        shard: opts.shard.map(|s| (s.index, s.count)),
        seed: m.seed,
        calibration: None,
        transport_profile: None,
        endpoints: Vec::new(),
        planned_cells: planned_total as u64,
        cell_ids: mine.iter().map(|c| c.id.clone()).collect(),
        order_seed: Some(plan::order_seed(m)),
        drift: Vec::new(),
        adaptive: Vec::new(),
    };
    if opts.resume.is_some() {
        // The matrix must be the one the directory was started with. An
        // adaptive run's list grows beyond the plan: the plan is its prefix.
        if let Ok(old) = dir.read_meta() {
            let same = if m.adaptive.is_some() {
                old.cell_ids.starts_with(&meta.cell_ids)
            } else {
                old.cell_ids == meta.cell_ids
            };
            if same {
                meta.cell_ids = old.cell_ids.clone();
            } else {
                anyhow::bail!(
                    "{}: this run directory was made with a different matrix or shard ({} planned cells there, {} now); resume with the same --matrix/--preset and --shard",
                    dir.path().display(),
                    old.cell_ids.len(),
                    meta.cell_ids.len()
                );
            }
        }
    }
    if opts.resume.is_none() && opts.calibrate {
        meta.calibration = Some(calibrate_links(m, backend));
    }
    if opts.resume.is_none() {
        meta.transport_profile = host_transport_profile();
    }
    let pcap_dir = opts.pcap.then(|| dir.path().join("pcap"));
    let mut ctx = CellCtx::new(backend, pcap_dir, stop.clone())?;
    ctx.relay_cpu = opts.relay_cpu;
    ctx.idle_poll = opts.idle_poll;
    meta.endpoints = endpoints;
    dir.write_meta(&meta)?;

    let todo: Vec<_> = mine
        .iter()
        .filter(|c| !finished.contains(&c.id))
        .cloned()
        .collect();
    let skipped_finished = mine.len() - todo.len();
    let limit = opts.max_cells.unwrap_or(usize::MAX).min(todo.len());
    let pb = progress(opts.progress_bar, limit as u64);
    eprintln!(
        "quicbench: run {} — {} cell(s) to run ({} planned{}, {} already done), backend {} ({})",
        dir.path().display(),
        limit,
        planned_total,
        opts.shard
            .map(|s| format!(", shard {}/{}", s.index, s.count))
            .unwrap_or_default(),
        skipped_finished,
        backend,
        backend_reason
    );
    let (mut ran, mut failed, mut interrupted) = (0usize, 0usize, false);
    let mut budget = opts.max_cells.unwrap_or(usize::MAX);
    // Runs `batch` in order (skipping finished cells); false when stopped.
    let mut run_batch = |batch: &[plan::Cell], label: &str| -> anyhow::Result<bool> {
        let done = dir.finished_cells()?;
        let batch: Vec<&plan::Cell> = batch.iter().filter(|c| !done.contains(&c.id)).collect();
        let total = batch.len().min(budget);
        for (i, c) in batch.into_iter().take(total).enumerate() {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                return Ok(false);
            }
            if let Some(pb) = &pb {
                pb.set_message(c.id.clone());
            }
            let res = cell::execute(&ctx, m, c);
            if stop.load(Ordering::Relaxed) && !res.status.is_ok() {
                // Cut short by Ctrl-C: not a result; it will run on --resume.
                interrupted = true;
                return Ok(false);
            }
            use quicbench_results::CellStatus;
            // A skipped cell (not applicable to its pair, a controller the
            // kernel lacks) is a result that says why, not a failure.
            let ok = !matches!(res.status, CellStatus::Failed { .. });
            dir.write_cell(&res)?;
            ran += 1;
            budget -= 1;
            if !ok {
                failed += 1;
            }
            let line = format!(
                "[{label}{}/{}] {} {} ({:.1} s){}",
                i + 1,
                total,
                c.id,
                match &res.status {
                    CellStatus::Ok => "ok",
                    CellStatus::Skipped { .. } => "skipped",
                    CellStatus::Failed { .. } => "FAILED",
                },
                res.duration_s,
                match &res.status {
                    CellStatus::Failed { reason } | CellStatus::Skipped { reason } => {
                        format!(": {reason}")
                    }
                    CellStatus::Ok => String::new(),
                }
            );
            match &pb {
                Some(pb) => {
                    if !ok {
                        pb.println(line);
                    }
                    pb.inc(1);
                }
                None => eprintln!("{line}"),
            }
        }
        Ok(budget > 0)
    };
    let mut go_on = run_batch(&todo, "")?;
    // An adaptive run is finished only once no group needs another round.
    let mut adaptive_done = m.adaptive.is_none();
    if let Some(ad) = m.adaptive {
        // Adaptive rounds: repetition `rep` for every group of this shard that
        // has not met its target, interleaved in the block's seeded order. The
        // decision for round `rep` reads only repetitions < rep, so a resumed
        // run decides exactly as an uninterrupted one.
        let groups: Vec<String> = {
            let mut g: Vec<String> = mine
                .iter()
                .map(|c| plan::group_id(&c.id).to_string())
                .collect();
            g.sort();
            g.dedup();
            g
        };
        let mut rep = m.repetitions;
        while go_on && rep < ad.max {
            let cells = dir.read_cells()?;
            let more: std::collections::BTreeSet<String> =
                plan::adaptive_status(&groups, &cells, rep, ad.target)
                    .into_iter()
                    .filter(|g| !g.met_target)
                    .map(|g| g.group)
                    .collect();
            if more.is_empty() {
                adaptive_done = true;
                break;
            }
            let next: Vec<plan::Cell> = plan::cells_upto(m, rep + 1)
                .into_iter()
                .filter(|c| c.repetition == rep && more.contains(plan::group_id(&c.id)))
                .collect();
            for c in &next {
                if !meta.cell_ids.contains(&c.id) {
                    meta.cell_ids.push(c.id.clone());
                }
            }
            dir.write_meta(&meta)?;
            if let Some(pb) = &pb {
                pb.inc_length(next.len() as u64);
            }
            eprintln!(
                "quicbench: adaptive repetition {} for {} group(s) short of their target",
                rep + 1,
                more.len()
            );
            go_on = run_batch(&next, &format!("r{} ", rep + 1))?;
            rep += 1;
        }
        if go_on && rep >= ad.max {
            adaptive_done = true;
        }
        let cells = dir.read_cells()?;
        meta.adaptive = plan::adaptive_status(&groups, &cells, u32::MAX, ad.target);
    }
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let cells = dir.read_cells()?;
    let complete = meta
        .cell_ids
        .iter()
        .all(|id| cells.iter().any(|c| &c.cell_id == id));
    if complete && adaptive_done {
        meta.finished = Some(quicbench_results::now_rfc3339());
    }
    dir.write_meta(&meta)?;
    // Summary, comparisons and the drift check (into run.json), in one place.
    crate::headline::write_analysis(&dir)?;
    Ok(RunOutcome {
        dir: dir.path().to_path_buf(),
        planned: mine.len(),
        skipped_finished,
        ran,
        failed,
        interrupted,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// What a fresh namespace inherits from this host (a throwaway namespace,
/// read as the cells' are), plus the warnings `doctor` would give.
/// run.json's `endpoints`: the third-party implementations the matrix
/// pairs, with the version each one's version command prints here.
fn endpoint_versions(
    m: &Matrix,
    shared: &crate::endpoints::cell::Shared,
) -> Vec<serde_json::Value> {
    use crate::endpoints::Role;
    let named = m
        .servers
        .iter()
        .map(|n| (Role::Server, n))
        .chain(m.clients.iter().map(|n| (Role::Client, n)));
    named
        .filter_map(|(role, name)| m.endpoints.get(role, name))
        .filter(|e| !e.is_ours())
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "role": e.role.name(),
                "version": shared.version(e),
                "command": e.command,
                "notes": e.notes,
            })
        })
        .collect()
}

/// A built-in endpoint whose version command fails is not installed: say
/// so before the first cell, naming the script that installs it (a user's
/// own endpoint is the user's to judge: its cells will say what failed).
fn check_installed(m: &Matrix, found: &[serde_json::Value]) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for v in found {
        let (Some(name), Some(role)) = (v["name"].as_str(), v["role"].as_str()) else {
            continue;
        };
        let role = if role == "server" {
            crate::endpoints::Role::Server
        } else {
            crate::endpoints::Role::Client
        };
        let Some(e) = m.endpoints.get(role, name) else {
            continue;
        };
        let version = v["version"].as_str().unwrap_or("");
        if e.builtin && version.starts_with("unknown (") {
            missing.push(format!(
                "{} {name}: {version}; install with `sudo bash {}`",
                role.name(),
                e.install
                    .as_deref()
                    .unwrap_or("scripts/install-endpoints.sh")
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "the matrix pairs endpoints that are not installed here:\n  {}",
            missing.join("\n  ")
        )
    }
}

fn host_transport_profile() -> Option<serde_json::Value> {
    let ns = quicbench_netem::ns::NetNs::with_label("qb-profile").ok()?;
    let p = crate::profile::read_profile(&ns);
    serde_json::to_value(p).ok()
}

/// A short calibration of every distinct link (1 s of probes at 2000/s each):
/// what the link really did on this machine, recorded before any cell runs.
fn calibrate_links(m: &Matrix, backend: Backend) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for l in &m.links {
        let mut cfg = quicbench_netem::link::LinkConfig::new(l.up.clone(), l.down.clone());
        cfg.backend = backend;
        cfg.mtu = m.mtu;
        cfg.seed = m.seed;
        let o = crate::calibrate::CalibrateOptions {
            pps: 2000,
            seconds: 1.0,
            size: 200,
            tcp_seconds: 0.0,
        };
        let v = match crate::calibrate::calibrate(&cfg, o) {
            Ok(c) => {
                eprintln!(
                    "quicbench: calibrated link {}: {}{}",
                    l.label,
                    if c.pass {
                        "matches its spec"
                    } else {
                        "does NOT match its spec (see run.json calibration)"
                    },
                    c.hint
                        .as_ref()
                        .map(|h| format!("\n  hint: {h}"))
                        .unwrap_or_default()
                );
                let mut v = serde_json::to_value(&c).unwrap_or_default();
                // The raw samples are in the probe report; keep run.json small.
                if let Some(p) = v.get_mut("probe").and_then(|p| p.as_object_mut()) {
                    p.remove("samples_us");
                    p.remove("histogram_v2_hex");
                }
                v
            }
            Err(e) => serde_json::json!({"error": format!("{e:#}")}),
        };
        out.insert(l.label.clone(), v);
    }
    serde_json::Value::Object(out)
}

fn progress(enabled: bool, len: u64) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} cells, ETA {eta} — {msg}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    Some(pb)
}

/// Read a finished run's cells (for headline tables and reports).
pub fn load_cells(dir: &Path) -> anyhow::Result<Vec<CellResult>> {
    Ok(RunDir::open(dir)?.read_cells()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_names_each_third_party_endpoint_with_its_version() {
        let src = r#"
protocols = ["h3"]
servers = ["quicbench", "mine"]
clients = ["quicbench"]
[[links]]
spec = "delay 1ms"
[workloads.goodput]
size = 1024
[[endpoints]]
name = "mine"
role = "server"
protocols = ["h3"]
command = "true"
version = "echo mine 1.2.3; echo second line"
notes = "a test server"
"#;
        let m = Matrix::parse(src, "<test>").unwrap();
        let shared = crate::endpoints::cell::Shared::default();
        let v = endpoint_versions(&m, &shared);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0]["name"], "mine");
        assert_eq!(v[0]["role"], "server");
        assert_eq!(v[0]["version"], "mine 1.2.3");
        assert_eq!(v[0]["notes"], "a test server");
        // A version command that fails says so instead of inventing one.
        let bad = src.replace("echo mine 1.2.3; echo second line", "exit 3");
        let m = Matrix::parse(&bad, "<test>").unwrap();
        let v = endpoint_versions(&m, &crate::endpoints::cell::Shared::default());
        assert!(
            v[0]["version"]
                .as_str()
                .unwrap()
                .starts_with("unknown (exit 3"),
            "{v:?}"
        );
        // A user's own endpoint is not refused for it; a built-in is.
        assert!(check_installed(&m, &v).is_ok());
        let src =
            "protocols = [\"h3\"]\nservers = [\"ngtcp2\"]\n[workloads.goodput]\nsize = 1024\n";
        let m = Matrix::parse(src, "<test>").unwrap();
        let gone = vec![serde_json::json!({"name": "ngtcp2", "role": "server",
            "version": "unknown (gtlsserver: exit status: 127)"})];
        let e = check_installed(&m, &gone).unwrap_err().to_string();
        assert!(e.contains("server ngtcp2: unknown (gtlsserver"), "{e}");
        assert!(e.contains("sudo bash scripts/install-endpoints.sh"), "{e}");
    }
}
