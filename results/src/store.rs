//! The run directory on disk:
//!
//! ```text
//! <base>/<YYYYMMDDTHHMMSSZ>-<name>/
//!     run.json          RunMeta
//!     cells/<id>.json   one CellResult per cell, written as each cell ends
//!     summary.csv       tidy summary (SummaryRow), one row per group × metric
//!     summary.json      the same rows as a JSON array
//!     sources.json      merged runs only: the shards it was made from
//! ```
//!
//! Every file is written atomically (temporary file in the same directory,
//! fsync, rename, fsync of the directory): after a crash a file is either the
//! old one or the complete new one, never a prefix. Temporary files are named
//! `.<file>.tmp-<pid>-<n>` and ignored by readers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::analysis::{ComparisonRow, COMPARISON_COLUMNS};
use crate::error::ResultsError;
use crate::schema::{
    format_rfc3339, validate_cell_id, CellResult, RunMeta, ShardSource, SummaryRow, SCHEMA_VERSION,
};

pub const META_FILE: &str = "run.json";
pub const CELLS_DIR: &str = "cells";
pub const SUMMARY_CSV: &str = "summary.csv";
pub const SUMMARY_JSON: &str = "summary.json";
pub const COMPARISONS_CSV: &str = "comparisons.csv";
/// Written by [`merge`]: one [`ShardSource`] per merged shard.
pub const SOURCES_FILE: &str = "sources.json";

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

/// What [`RunDir::scan_cells`] found in `cells/`.
#[derive(Debug, Default)]
pub struct CellScan {
    /// Ids of complete, valid cell files (whatever their status).
    pub finished: BTreeSet<String>,
    /// Of those, the ids whose status is `failed`.
    pub failed: BTreeSet<String>,
    /// Files that do not parse or do not match their name: treated as not
    /// finished, to be run again (and overwritten).
    pub invalid: Vec<(PathBuf, String)>,
    /// Leftover temporary files of an interrupted write.
    pub temp_files: Vec<PathBuf>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| ResultsError::invalid(format!("path {}", path.display()), "no file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| ResultsError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| ResultsError::io(&tmp, e))?;
        f.sync_all().map_err(|e| ResultsError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| ResultsError::io(path, e))?;
        // The rename is durable only once the directory entry is on disk.
        let d = fs::File::open(dir).map_err(|e| ResultsError::io(dir, e))?;
        d.sync_all().map_err(|e| ResultsError::io(dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn to_json<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>, ResultsError> {
    let mut v = serde_json::to_vec_pretty(value).map_err(|source| ResultsError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    v.push(b'\n');
    Ok(v)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ResultsError> {
    let bytes = fs::read(path).map_err(|e| ResultsError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| ResultsError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The schema version of a JSON file, read before the full parse so a file of
/// another version gets a version error, not a confusing field error.
fn check_version(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let v: Version = serde_json::from_slice(bytes).map_err(|source| ResultsError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if v.schema_version != SCHEMA_VERSION {
        return Err(ResultsError::SchemaVersion {
            path: path.to_path_buf(),
            found: v.schema_version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Reads and checks one cell file: version, JSON, the id matching the file name.
pub fn read_cell_file(path: &Path) -> Result<CellResult, ResultsError> {
    let bytes = fs::read(path).map_err(|e| ResultsError::io(path, e))?;
    check_version(path, &bytes)?;
    let cell: CellResult = serde_json::from_slice(&bytes).map_err(|source| ResultsError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if stem.as_deref() != Some(cell.cell_id.as_str()) {
        return Err(ResultsError::invalid(
            format!("cell file {}", path.display()),
            format!("holds cell_id {:?}, not its file name", cell.cell_id),
        ));
    }
    Ok(cell)
}

impl RunDir {
    /// Creates `<base>/<UTC now as YYYYMMDDTHHMMSSZ>-<name>/cells/`. Two runs
    /// of the same name in the same second get `-2`, `-3`... suffixes.
    pub fn create(base: &Path, name: &str) -> Result<RunDir, ResultsError> {
        Self::create_at(base, name, time::OffsetDateTime::now_utc())
    }

    /// [`RunDir::create`] with an explicit time (tests, reproducible names).
    pub fn create_at(
        base: &Path,
        name: &str,
        t: time::OffsetDateTime,
    ) -> Result<RunDir, ResultsError> {
        validate_cell_id(name).map_err(|_| {
            ResultsError::invalid(
                format!("run name {name:?}"),
                "must be 1-200 characters of [A-Za-z0-9._+=,-], not starting with '.'",
            )
        })?;
        let stamp = t
            .to_offset(time::UtcOffset::UTC)
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| ResultsError::invalid("run time", e.to_string()))?;
        fs::create_dir_all(base).map_err(|e| ResultsError::io(base, e))?;
        for attempt in 1..=1000u32 {
            let dir_name = if attempt == 1 {
                format!("{stamp}-{name}")
            } else {
                format!("{stamp}-{name}-{attempt}")
            };
            let path = base.join(dir_name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    let cells = path.join(CELLS_DIR);
                    fs::create_dir(&cells).map_err(|e| ResultsError::io(&cells, e))?;
                    return Ok(RunDir { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ResultsError::io(&path, e)),
            }
        }
        Err(ResultsError::invalid(
            format!("run directory {stamp}-{name} in {}", base.display()),
            "1000 directories of that name already exist",
        ))
    }

    /// Opens an existing run directory (to resume it, or to read it). It must
    /// hold `cells/`.
    pub fn open(path: &Path) -> Result<RunDir, ResultsError> {
        let cells = path.join(CELLS_DIR);
        let md = fs::metadata(&cells).map_err(|e| ResultsError::io(&cells, e))?;
        if !md.is_dir() {
            return Err(ResultsError::invalid(
                format!("run directory {}", path.display()),
                "cells/ is not a directory",
            ));
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta_path(&self) -> PathBuf {
        self.path.join(META_FILE)
    }

    pub fn cells_dir(&self) -> PathBuf {
        self.path.join(CELLS_DIR)
    }

    pub fn cell_path(&self, cell_id: &str) -> PathBuf {
        self.cells_dir().join(format!("{cell_id}.json"))
    }

    /// Writes `run.json` (atomically; call again to set `finished`).
    pub fn write_meta(&self, meta: &RunMeta) -> Result<(), ResultsError> {
        let path = self.meta_path();
        if meta.schema_version != SCHEMA_VERSION {
            return Err(ResultsError::invalid(
                "run meta",
                format!(
                    "schema_version {} (this build writes {SCHEMA_VERSION})",
                    meta.schema_version
                ),
            ));
        }
        write_atomic(&path, &to_json(meta, &path)?)
    }

    pub fn read_meta(&self) -> Result<RunMeta, ResultsError> {
        let path = self.meta_path();
        let bytes = fs::read(&path).map_err(|e| ResultsError::io(&path, e))?;
        check_version(&path, &bytes)?;
        serde_json::from_slice(&bytes).map_err(|source| ResultsError::Json { path, source })
    }

    /// Validates and writes `cells/<cell_id>.json` atomically, replacing any
    /// earlier file of that cell.
    pub fn write_cell(&self, cell: &CellResult) -> Result<(), ResultsError> {
        cell.validate()?;
        let path = self.cell_path(&cell.cell_id);
        write_atomic(&path, &to_json(cell, &path)?)
    }

    /// Sorted paths of the `*.json` files in `cells/` (temporary files excluded).
    fn cell_files(&self) -> Result<(Vec<PathBuf>, Vec<PathBuf>), ResultsError> {
        let dir = self.cells_dir();
        let mut files = Vec::new();
        let mut temps = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| ResultsError::io(&dir, e))? {
            let entry = entry.map_err(|e| ResultsError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                temps.push(entry.path());
            } else if name.ends_with(".json") {
                files.push(entry.path());
            }
        }
        files.sort();
        temps.sort();
        Ok((files, temps))
    }

    /// Classifies every file in `cells/` (never fails on a bad cell file: it
    /// lands in `invalid`).
    pub fn scan_cells(&self) -> Result<CellScan, ResultsError> {
        let (files, temp_files) = self.cell_files()?;
        let mut scan = CellScan {
            temp_files,
            ..CellScan::default()
        };
        for path in files {
            match read_cell_file(&path) {
                Ok(cell) => {
                    if matches!(cell.status, crate::CellStatus::Failed { .. }) {
                        scan.failed.insert(cell.cell_id.clone());
                    }
                    scan.finished.insert(cell.cell_id);
                }
                Err(e) => scan.invalid.push((path, e.to_string())),
            }
        }
        Ok(scan)
    }

    /// Ids of the cells with a complete, valid file: those a resumed run skips.
    /// Invalid files (truncated, wrong version...) are not in the set; see
    /// [`RunDir::scan_cells`] to report them.
    pub fn finished_cells(&self) -> Result<BTreeSet<String>, ResultsError> {
        Ok(self.scan_cells()?.finished)
    }

    /// Removes temporary files left by an interrupted write; returns them.
    pub fn remove_temp_files(&self) -> Result<Vec<PathBuf>, ResultsError> {
        let (_, temps) = self.cell_files()?;
        for t in &temps {
            fs::remove_file(t).map_err(|e| ResultsError::io(t, e))?;
        }
        Ok(temps)
    }

    /// Every cell, sorted by id. Any unreadable file is an error naming it
    /// (with serde's line and column for bad JSON).
    pub fn read_cells(&self) -> Result<Vec<CellResult>, ResultsError> {
        let (files, _) = self.cell_files()?;
        let mut cells = files
            .iter()
            .map(|p| read_cell_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        cells.sort_by(|a, b| a.cell_id.cmp(&b.cell_id));
        Ok(cells)
    }

    /// Writes `summary.csv` and `summary.json`.
    pub fn write_summary(&self, rows: &[SummaryRow]) -> Result<(), ResultsError> {
        let csv_path = self.path.join(SUMMARY_CSV);
        let csv_err = |source| ResultsError::Csv {
            path: csv_path.clone(),
            source,
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in rows {
            w.serialize(r).map_err(csv_err)?;
        }
        if rows.is_empty() {
            // serde writes the header with the first row; an empty summary
            // still gets its header.
            w.write_record(SUMMARY_COLUMNS).map_err(csv_err)?;
        }
        let bytes = w.into_inner().map_err(|e| ResultsError::Csv {
            path: csv_path.clone(),
            source: e.into_error().into(),
        })?;
        write_atomic(&csv_path, &bytes)?;
        let json_path = self.path.join(SUMMARY_JSON);
        write_atomic(&json_path, &to_json(&rows, &json_path)?)
    }

    /// Writes `comparisons.csv` (atomically).
    pub fn write_comparisons(&self, rows: &[ComparisonRow]) -> Result<(), ResultsError> {
        let path = self.path.join(COMPARISONS_CSV);
        let csv_err = |source| ResultsError::Csv {
            path: path.clone(),
            source,
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in rows {
            w.serialize(r).map_err(csv_err)?;
        }
        if rows.is_empty() {
            w.write_record(COMPARISON_COLUMNS).map_err(csv_err)?;
        }
        let bytes = w.into_inner().map_err(|e| ResultsError::Csv {
            path: path.clone(),
            source: e.into_error().into(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// The rows of `comparisons.csv`; empty when the file does not exist.
    pub fn read_comparisons(&self) -> Result<Vec<ComparisonRow>, ResultsError> {
        let path = self.path.join(COMPARISONS_CSV);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut r = csv::Reader::from_path(&path).map_err(|source| ResultsError::Csv {
            path: path.clone(),
            source,
        })?;
        r.deserialize()
            .collect::<Result<Vec<ComparisonRow>, _>>()
            .map_err(|source| ResultsError::Csv { path, source })
    }

    /// Provenance of a merged run (`sources.json`); empty for a run made in one
    /// directory.
    pub fn read_sources(&self) -> Result<Vec<ShardSource>, ResultsError> {
        let path = self.path.join(SOURCES_FILE);
        if !path.exists() {
            return Ok(Vec::new());
        }
        read_json(&path)
    }

    /// The rows of `summary.json`.
    pub fn read_summary(&self) -> Result<Vec<SummaryRow>, ResultsError> {
        read_json(&self.path.join(SUMMARY_JSON))
    }

    /// Reads the cells, summarizes them and writes the summary files.
    pub fn resummarize(&self) -> Result<Vec<SummaryRow>, ResultsError> {
        let rows = summarize(&self.read_cells()?);
        self.write_summary(&rows)?;
        Ok(rows)
    }
}

/// Column names of `summary.csv`, in order (must match [`SummaryRow`]).
pub const SUMMARY_COLUMNS: [&str; 24] = [
    "protocol",
    "workload",
    "link",
    "metric",
    "unit",
    "median",
    "ci_low",
    "ci_high",
    "n",
    "variant",
    "ci_method",
    "ci_confidence",
    "mean",
    "std",
    "min",
    "p90",
    "p99",
    "max",
    "cells",
    "source",
    "samples",
    "cc",
    "server",
    "client",
];

/// The tidy summary of the `Ok` cells with no derived figures: see
/// [`crate::analysis::summarize_with`]. Rows are sorted, so the result does
/// not depend on the order of `cells`.
pub fn summarize(cells: &[CellResult]) -> Vec<SummaryRow> {
    crate::analysis::summarize_with(cells, &[])
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Combines shard run directories into one run at `out` (which must not exist
/// or be an empty directory): the union of their cells (a cell present in two
/// shards must be identical in both), `run.json` with `shard: None`, the union
/// of the planned cell ids, the shards' provenance in `sources.json`, and a fresh
/// summary. All shards must share schema version, matrix, seed and planned cell
/// count. Cell ids are listed in plan order when the shards come from the
/// harness's round-robin sharding (cell i in shard i mod count): shards are
/// interleaved in shard-index order.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<RunMeta, ResultsError> {
    if dirs.is_empty() {
        return Err(ResultsError::Merge("no shard directories given".into()));
    }
    let mut shards = Vec::new();
    for d in dirs {
        let rd = RunDir::open(d)?;
        let meta = rd.read_meta()?;
        let cells = rd.read_cells().map_err(|e| {
            ResultsError::Merge(format!(
                "{e} (finish that shard with `quicbench run --resume {}`, which runs such cells again)",
                d.display()
            ))
        })?;
        shards.push((d.clone(), rd, meta, cells));
    }
    let first = &shards[0].2;
    for (d, _, m, _) in &shards[1..] {
        let differs = |what: &str| {
            ResultsError::Merge(format!(
                "{} has a different {what} from {}: shards of one run must share it",
                d.display(),
                dirs[0].display()
            ))
        };
        if m.matrix != first.matrix {
            return Err(differs("matrix"));
        }
        if m.seed != first.seed {
            return Err(differs("seed"));
        }
        if m.planned_cells != first.planned_cells {
            return Err(differs("planned_cells"));
        }
        if let (Some((_, a)), Some((_, b))) = (m.shard, first.shard) {
            if a != b {
                return Err(differs("shard count"));
            }
        }
    }

    // Adaptive repetitions decide per group from the group's own cells: a
    // group split over shards would have been decided twice, on partial data.
    let adaptive = shards.iter().any(|s| {
        !s.2.adaptive.is_empty()
            || s.2
                .matrix
                .pointer("/resolved/adaptive")
                .is_some_and(|v| !v.is_null())
    });
    if adaptive {
        let mut owner: BTreeMap<crate::analysis::Group, &PathBuf> = BTreeMap::new();
        for (d, _, _, cs) in &shards {
            for c in cs {
                let g = crate::analysis::Group::of(c);
                if let Some(other) = owner.get(&g) {
                    if *other != d {
                        return Err(ResultsError::Merge(format!(
                            "group {} has cells in {} and {}: with adaptive repetitions a shard must own whole groups (shard with this quicbench's --shard)",
                            g.label(),
                            other.display(),
                            d.display()
                        )));
                    }
                }
                owner.insert(g, d);
            }
        }
    }

    // Union of cells, refusing conflicting duplicates.
    let mut cells: BTreeMap<String, (CellResult, PathBuf)> = BTreeMap::new();
    for (d, rd, _, cs) in &shards {
        for c in cs {
            match cells.get(&c.cell_id) {
                Some((prev, prev_dir)) if prev != c => {
                    return Err(ResultsError::Merge(format!(
                        "cell {} differs between {} and {}",
                        c.cell_id,
                        prev_dir.display(),
                        rd.cell_path(&c.cell_id).display()
                    )));
                }
                Some(_) => {}
                None => {
                    cells.insert(c.cell_id.clone(), (c.clone(), d.clone()));
                }
            }
        }
    }

    // Planned ids: interleave shards by index (plan order for round-robin
    // shards), then any cell present but not planned, sorted.
    let mut order: Vec<&(PathBuf, RunDir, RunMeta, Vec<CellResult>)> = shards.iter().collect();
    order.sort_by_key(|s| s.2.shard.map(|(i, _)| i));
    let mut seen = BTreeSet::new();
    let mut cell_ids = Vec::new();
    let longest = order.iter().map(|s| s.2.cell_ids.len()).max().unwrap_or(0);
    for r in 0..longest {
        for s in &order {
            if let Some(id) = s.2.cell_ids.get(r) {
                if seen.insert(id.clone()) {
                    cell_ids.push(id.clone());
                }
            }
        }
    }
    for id in cells.keys() {
        if seen.insert(id.clone()) {
            cell_ids.push(id.clone());
        }
    }

    let started = shards
        .iter()
        .map(|s| s.2.started.clone())
        .min_by(|a, b| match (parse_time(a), parse_time(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.cmp(b),
        })
        .unwrap_or_default();
    let finished = if shards.iter().all(|s| s.2.finished.is_some()) {
        shards
            .iter()
            .filter_map(|s| s.2.finished.clone())
            .max_by(|a, b| match (parse_time(a), parse_time(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => a.cmp(b),
            })
    } else {
        None
    };
    let backends: BTreeSet<&str> = shards.iter().map(|s| s.2.backend.as_str()).collect();
    let (backend, backend_reason) = if backends.len() == 1 {
        (first.backend.clone(), first.backend_reason.clone())
    } else {
        (
            "mixed".to_string(),
            format!(
                "shards used different backends ({}); see merged_from",
                backends.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    };
    let privileges: BTreeSet<Option<&str>> =
        shards.iter().map(|s| s.2.privileges.as_deref()).collect();
    let privileges = match privileges.len() {
        1 => first.privileges.clone(),
        _ => Some("mixed".to_string()),
    };
    let merged_from: Vec<ShardSource> = shards
        .iter()
        .map(|(d, _, m, cs)| ShardSource {
            dir: d.display().to_string(),
            shard: m.shard,
            host: m.host.clone(),
            backend: m.backend.clone(),
            backend_reason: m.backend_reason.clone(),
            privileges: m.privileges.clone(),
            started: m.started.clone(),
            finished: m.finished.clone(),
            calibration: m.calibration.clone(),
            cells: cs.len() as u64,
        })
        .collect();
    let mut adaptive_groups: Vec<crate::schema::AdaptiveGroup> =
        shards.iter().flat_map(|s| s.2.adaptive.clone()).collect();
    adaptive_groups.sort_by(|a, b| a.group.cmp(&b.group));
    let meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        shard: None,
        adaptive: adaptive_groups,
        // Recomputed over the merged cells by the caller (the harness).
        drift: Vec::new(),
        started,
        finished,
        backend,
        backend_reason,
        privileges,
        cell_ids,
        ..first.clone()
    };

    // Output directory.
    match fs::read_dir(out) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(ResultsError::Merge(format!(
                    "output directory {} is not empty",
                    out.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(|e| ResultsError::io(out, e))?;
        }
        Err(e) => return Err(ResultsError::io(out, e)),
    }
    let cells_dir = out.join(CELLS_DIR);
    fs::create_dir(&cells_dir).map_err(|e| ResultsError::io(&cells_dir, e))?;
    let rd = RunDir::open(out)?;
    for (c, _) in cells.values() {
        rd.write_cell(c)?;
    }
    rd.write_meta(&meta)?;
    let sources_path = rd.path().join(SOURCES_FILE);
    write_atomic(&sources_path, &to_json(&merged_from, &sources_path)?)?;
    let all: Vec<CellResult> = cells.into_values().map(|(c, _)| c).collect();
    rd.write_summary(&summarize(&all))?;
    Ok(meta)
}

/// The current time as written in `run.json`.
pub fn now() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests;
