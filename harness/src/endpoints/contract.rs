//! The files and variables of the endpoint contract (docs/endpoints.md): a
//! cell's endpoint directories, the document root of pattern objects, the
//! environment of each role, and the checks of what a client left behind
//! (downloads byte for byte, `QB_TIMINGS` lines). No process is started here
//! ([`super::process`] does that).

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context};
use quicbench_wire::{CongestionControl, Protocol};
use serde::{Deserialize, Serialize};

/// ALPN of a protocol as the contract passes it (`QB_ALPN`): the one our
/// own ends offer (`quicbench_wire::tls`); empty without TLS.
pub fn alpn(p: Protocol) -> &'static str {
    use quicbench_wire::tls::{ALPN_H1, ALPN_H1_0, ALPN_H2, ALPN_H3};
    let id: &'static [u8] = match p {
        Protocol::H3 => ALPN_H3,
        Protocol::H2 => ALPN_H2,
        Protocol::H11Tls | Protocol::H11Pipelined => ALPN_H1,
        Protocol::H10Tls => ALPN_H1_0,
        Protocol::H10 | Protocol::H11 | Protocol::Udp => b"",
    };
    std::str::from_utf8(id).unwrap_or("")
}

/// The pattern objects of a run, one file per size, written once and
/// hard-linked into each cell's document root (a 100 MB object is written
/// once a run, not once a cell).
pub struct ObjectStore {
    dir: PathBuf,
    written: Mutex<BTreeMap<u64, PathBuf>>,
}

impl ObjectStore {
    pub fn new(dir: PathBuf) -> ObjectStore {
        ObjectStore {
            dir,
            written: Mutex::new(BTreeMap::new()),
        }
    }

    /// The file of `size` pattern bytes, written on first use.
    pub fn object(&self, size: u64) -> anyhow::Result<PathBuf> {
        let mut g = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = g.get(&size) {
            return Ok(p.clone());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(format!("pattern-{size}"));
        write_pattern(&path, size).with_context(|| format!("writing {}", path.display()))?;
        g.insert(size, path.clone());
        Ok(path)
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_pattern(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("part");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        quicbench_wire::pattern::fill(off, &mut buf[..n]);
        f.write_all(&buf[..n])?;
        off += n as u64;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(tmp, path)
}

/// One request of a contract client: `/bytes/<size>/<tag>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Object {
    pub size: u64,
    pub tag: String,
}

impl Object {
    /// `n` requests of `size`, tagged `first..first+n`.
    pub fn numbered(size: u64, first: usize, n: usize) -> Vec<Object> {
        (first..first + n)
            .map(|i| Object {
                size,
                tag: i.to_string(),
            })
            .collect()
    }

    pub fn path(&self) -> String {
        quicbench_wire::resource::tagged_path(self.size, &self.tag)
    }
}

/// A cell's document root for a third-party server: every object a client
/// may ask for, as `/bytes/<N>/<tag>` (contract clients) or `/bytes/<N>`
/// (ours), each a hard link to the run's pattern file.
pub fn build_www(
    www: &Path,
    store: &ObjectStore,
    tagged: &[Object],
    plain: &[u64],
) -> anyhow::Result<()> {
    let link = |from: &Path, to: &Path| -> anyhow::Result<()> {
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        // A hard link where the file system allows it, else a copy.
        std::fs::hard_link(from, to)
            .or_else(|_| std::fs::copy(from, to).map(|_| ()))
            .with_context(|| format!("linking {} to {}", from.display(), to.display()))
    };
    std::fs::create_dir_all(www).with_context(|| format!("creating {}", www.display()))?;
    std::fs::write(
        www.join("index.html"),
        quicbench_wire::resource::HEALTH_BODY,
    )?;
    for o in tagged {
        if plain.contains(&o.size) {
            return Err(anyhow!(
                "/bytes/{} is both a file and a directory in one document root",
                o.size
            ));
        }
        link(
            &store.object(o.size)?,
            &www.join(o.path().trim_start_matches('/')),
        )?;
    }
    for &size in plain {
        link(&store.object(size)?, &www.join(format!("bytes/{size}")))?;
    }
    Ok(())
}

/// The directories of one endpoint in a cell.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
}

impl Dirs {
    /// `root` (created) with `out/`, `qlog/` and, for a client, `downloads/`.
    pub fn create(root: PathBuf) -> anyhow::Result<Dirs> {
        for sub in ["out", "qlog", "downloads"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(Dirs { root })
    }
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }
    pub fn qlog(&self) -> PathBuf {
        self.root.join("qlog")
    }
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }
    pub fn keylog(&self) -> PathBuf {
        self.root.join("keys.log")
    }
    pub fn timings(&self) -> PathBuf {
        self.root.join("timings.jsonl")
    }
    pub fn www(&self) -> PathBuf {
        self.root.join("www")
    }
    pub fn session(&self) -> PathBuf {
        self.root.join("session.bin")
    }
}

/// Variables of both roles.
fn common(
    role: &str,
    p: Protocol,
    cc: Option<CongestionControl>,
    d: &Dirs,
    scripts: &Path,
) -> Vec<(String, String)> {
    let s = |p: PathBuf| p.display().to_string();
    vec![
        ("QB_ROLE".into(), role.into()),
        ("QB_PROTOCOL".into(), p.name().into()),
        ("QB_ALPN".into(), alpn(p).into()),
        ("QB_CC".into(), cc.unwrap_or_default().name().into()),
        ("QB_KEYLOG".into(), s(d.keylog())),
        ("SSLKEYLOGFILE".into(), s(d.keylog())),
        ("QB_QLOG_DIR".into(), s(d.qlog())),
        ("QB_OUTPUT_DIR".into(), s(d.out())),
        ("QB_SCRIPTS".into(), scripts.display().to_string()),
    ]
}

/// A server's environment.
pub struct ServerEnv<'a> {
    pub protocol: Protocol,
    pub cc: Option<CongestionControl>,
    pub listen: IpAddr,
    pub port: u16,
    pub cert: &'a Path,
    pub key: &'a Path,
}

pub fn server_vars(s: &ServerEnv, d: &Dirs, scripts: &Path) -> Vec<(String, String)> {
    let mut v = common("server", s.protocol, s.cc, d, scripts);
    v.extend([
        ("QB_LISTEN_ADDR".into(), s.listen.to_string()),
        ("QB_PORT".into(), s.port.to_string()),
        ("QB_CERT".into(), s.cert.display().to_string()),
        ("QB_KEY".into(), s.key.display().to_string()),
        ("QB_WWW".into(), d.www().display().to_string()),
    ]);
    v
}

/// One run of a contract client.
pub struct ClientEnv<'a> {
    pub protocol: Protocol,
    pub cc: Option<CongestionControl>,
    pub server: IpAddr,
    pub port: u16,
    pub ca: &'a Path,
    pub objects: &'a [Object],
    pub parallel: usize,
    pub resume: bool,
    pub early_data: bool,
}

fn url(p: Protocol, server: IpAddr, port: u16, o: &Object) -> String {
    let scheme = if p.uses_tls() { "https" } else { "http" };
    let host = match server {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    format!("{scheme}://{host}:{port}{}", o.path())
}

pub fn client_vars(c: &ClientEnv, d: &Dirs, scripts: &Path) -> Vec<(String, String)> {
    let mut v = common("client", c.protocol, c.cc, d, scripts);
    let urls: Vec<String> = c
        .objects
        .iter()
        .map(|o| url(c.protocol, c.server, c.port, o))
        .collect();
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    v.extend([
        ("QB_SERVER_ADDR".into(), c.server.to_string()),
        ("QB_SERVER_PORT".into(), c.port.to_string()),
        ("QB_SERVER_NAME".into(), c.server.to_string()),
        ("QB_CA".into(), c.ca.display().to_string()),
        ("QB_REQUESTS".into(), urls.join(" ")),
        ("QB_PARALLEL".into(), c.parallel.max(1).to_string()),
        ("QB_DOWNLOADS".into(), d.downloads().display().to_string()),
        ("QB_RESUME".into(), flag(c.resume)),
        ("QB_EARLY_DATA".into(), flag(c.early_data)),
        ("QB_SESSION_FILE".into(), d.session().display().to_string()),
        ("QB_TIMINGS".into(), d.timings().display().to_string()),
    ]);
    v
}

/// Check every object's download byte for byte; returns the bytes verified.
/// The error names the first object that is missing, short, long or wrong.
pub fn verify_downloads(dir: &Path, objects: &[Object]) -> Result<u64, String> {
    let mut total = 0;
    for o in objects {
        let path = dir.join(&o.tag);
        let f =
            std::fs::File::open(&path).map_err(|e| format!("{}: no download ({e})", o.path()))?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        let mut check = quicbench_wire::pattern::Verifier::new(0);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| format!("{}: reading {}: {e}", o.path(), path.display()))?;
            if n == 0 {
                break;
            }
            check.update(&buf[..n]);
        }
        if let Some(at) = check.first_error() {
            return Err(format!("{}: wrong byte at offset {at}", o.path()));
        }
        let got = check.offset();
        if got != o.size {
            return Err(format!("{}: {got} bytes, expected {}", o.path(), o.size));
        }
        total += got;
    }
    Ok(total)
}

/// One `QB_TIMINGS` line (docs/endpoints.md): ms from the start of the
/// request's connection attempt (or of the request on an open connection).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub index: usize,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub connect_ms: Option<f64>,
    #[serde(default)]
    pub tls_ms: Option<f64>,
    #[serde(default)]
    pub ttfb_ms: Option<f64>,
    #[serde(default)]
    pub total_ms: Option<f64>,
    #[serde(default)]
    pub resumed: Option<bool>,
    #[serde(default)]
    pub early_data: Option<bool>,
}

/// The client's timings, if it wrote any; a malformed line is an error that
/// names the file and the line (the cell keeps what else it measured).
pub fn read_timings(path: &Path) -> Result<Vec<Timing>, String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let t: Timing = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        for (name, v) in [
            ("connect_ms", t.connect_ms),
            ("tls_ms", t.tls_ms),
            ("ttfb_ms", t.ttfb_ms),
            ("total_ms", t.total_ms),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!(
                        "{}:{}: {name} must be a finite number of ms ≥ 0, got {v}",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_links_pattern_objects_and_downloads_verify() {
        let t = tempfile::tempdir().unwrap();
        let store = ObjectStore::new(t.path().join("objects"));
        let www = t.path().join("www");
        let objs = Object::numbered(100_000, 0, 3);
        build_www(&www, &store, &objs, &[]).unwrap();
        let f = www.join("bytes/100000/2");
        let body = std::fs::read(&f).unwrap();
        assert_eq!(body, quicbench_wire::pattern::chunk(0, 100_000));
        // One pattern file, linked three times.
        assert_eq!(
            std::fs::read_dir(t.path().join("objects")).unwrap().count(),
            1
        );
        // The same size plain and tagged cannot share a root.
        let e = build_www(&t.path().join("w2"), &store, &objs, &[100_000]).unwrap_err();
        assert!(e.to_string().contains("both a file and a directory"), "{e}");
        build_www(&t.path().join("w3"), &store, &[], &[100_000, 5]).unwrap();
        assert_eq!(std::fs::read(t.path().join("w3/bytes/5")).unwrap().len(), 5);

        let dl = t.path().join("dl");
        std::fs::create_dir_all(&dl).unwrap();
        for o in &objs {
            std::fs::copy(&f, dl.join(&o.tag)).unwrap();
        }
        assert_eq!(verify_downloads(&dl, &objs), Ok(300_000));
        // Short, wrong and missing downloads are named.
        std::fs::write(dl.join("1"), &body[..99_999]).unwrap();
        let e = verify_downloads(&dl, &objs).unwrap_err();
        assert!(
            e.contains("/bytes/100000/1: 99999 bytes, expected 100000"),
            "{e}"
        );
        let mut bad = body.clone();
        bad[77_777] ^= 1;
        std::fs::write(dl.join("1"), &bad).unwrap();
        let e = verify_downloads(&dl, &objs).unwrap_err();
        assert!(e.contains("wrong byte at offset 77777"), "{e}");
        std::fs::remove_file(dl.join("1")).unwrap();
        assert!(verify_downloads(&dl, &objs)
            .unwrap_err()
            .contains("no download"));
    }

    #[test]
    fn variables_follow_the_contract() {
        let d = Dirs {
            root: PathBuf::from("/c"),
        };
        let objs = Object::numbered(1024, 0, 2);
        let c = ClientEnv {
            protocol: Protocol::H3,
            cc: Some(CongestionControl::Bbr),
            server: "198.18.1.1".parse().unwrap(),
            port: 4433,
            ca: Path::new("/c/ca.pem"),
            objects: &objs,
            parallel: 2,
            resume: true,
            early_data: false,
        };
        let v: BTreeMap<String, String> =
            client_vars(&c, &d, Path::new("/s")).into_iter().collect();
        assert_eq!(
            v["QB_REQUESTS"],
            "https://198.18.1.1:4433/bytes/1024/0 https://198.18.1.1:4433/bytes/1024/1"
        );
        assert_eq!(v["QB_ALPN"], "h3");
        assert_eq!(v["QB_CC"], "bbr");
        assert_eq!(v["QB_PARALLEL"], "2");
        assert_eq!(v["QB_RESUME"], "1");
        assert_eq!(v["QB_EARLY_DATA"], "0");
        assert_eq!(v["QB_DOWNLOADS"], "/c/downloads");
        assert_eq!(v["SSLKEYLOGFILE"], v["QB_KEYLOG"]);
        let mut c6 = c;
        c6.protocol = Protocol::H11;
        c6.server = "2001:2::1:0:0:1".parse().unwrap();
        let v: BTreeMap<String, String> =
            client_vars(&c6, &d, Path::new("/s")).into_iter().collect();
        assert!(v["QB_REQUESTS"].starts_with("http://[2001:2::1:0:0:1]:4433/bytes/1024/0"));
        assert_eq!(v["QB_ALPN"], "");
    }

    #[test]
    fn timings_are_read_and_bad_lines_named() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("t.jsonl");
        assert_eq!(read_timings(&p), Ok(vec![]));
        std::fs::write(
            &p,
            "{\"index\":0,\"ttfb_ms\":41.5,\"total_ms\":42}\n\n{\"index\":1,\"status\":200}\n",
        )
        .unwrap();
        let v = read_timings(&p).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].ttfb_ms, Some(41.5));
        assert_eq!(v[1].status, Some(200));
        std::fs::write(&p, "{\"index\":0}\n{\"index\":1,\"ttfb_ms\":-3}\n").unwrap();
        let e = read_timings(&p).unwrap_err();
        assert!(e.contains("t.jsonl:2: ttfb_ms"), "{e}");
        std::fs::write(&p, "{\"index\":0}\nnot json\n").unwrap();
        assert!(read_timings(&p).unwrap_err().contains("t.jsonl:2:"));
    }
}
