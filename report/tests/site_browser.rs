//! The generated site, checked in a real browser.
//!
//! Builds the site of a real run (the checked-in fixture
//! `tests/fixtures/tiny-run`, made by `quicbench run --matrix
//! tests/fixtures/tiny.toml`: every workload, a lossless and a lossy link, one
//! repetition), twice compared with itself, then:
//!
//! 1. every `href`/`src` of every page that is not an absolute URL points to
//!    a file of the site;
//! 2. headless Debian `chromium` renders each page; a copy of the page with a
//!    small inline script (run on `load`) opens every `<details>`, and lists
//!    every `<img>` that did not load (`naturalWidth` 0) or has no size on
//!    screen; `--dump-dom` hands that list back. Every chart must have loaded
//!    with a non-zero size;
//! 3. a negative control: with one chart file deleted, the same check must
//!    report that chart (so the check really fails when a chart is missing);
//! 4. screenshots of every page are kept under `target/site-screenshots/`.
//!
//! Without chromium (and no root to install it with
//! `scripts/install-chromium.sh`) the browser part prints a loud
//! `SKIPPED: ...` line and the test returns; as root (CI) it must run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    // SAFETY-free: read the effective uid from /proc (no libc dependency).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The chromium binary, installing it when root and it is missing.
fn chromium() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .into_iter()
            .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Some(p);
    }
    if is_root() {
        let script = manifest().join("../scripts/install-chromium.sh");
        let st = Command::new("bash").arg(&script).status();
        eprintln!("install-chromium.sh: {st:?}");
    }
    find()
}

/// Runs chromium headless with `args` on `url`; stdout, or an error after 90 s.
fn run_chromium(bin: &Path, profile: &Path, args: &[String], url: &str) -> R<String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    if is_root() {
        cmd.arg("--no-sandbox");
    }
    cmd.args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            let out = reader.join().map_err(|_| "reader panicked")?;
            if !st.success() {
                return Err(format!("chromium {args:?} {url}: {st}").into());
            }
            return Ok(out);
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("chromium {args:?} {url}: no answer in 90 s").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every value of `attr="..."` in an HTML text.
fn attrs(html: &str, attr: &str) -> Vec<String> {
    let pat = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&pat) {
        rest = &rest[i + pat.len()..];
        if let Some(j) = rest.find('"') {
            out.push(rest[..j].replace("&amp;", "&"));
            rest = &rest[j..];
        }
    }
    out
}

/// Relative links and sources of every page that do not resolve to a file.
fn broken_links(site: &Path) -> R<Vec<String>> {
    let mut broken = Vec::new();
    for e in std::fs::read_dir(site)? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "html") {
            continue;
        }
        let html = std::fs::read_to_string(&p)?;
        for target in attrs(&html, "href").into_iter().chain(attrs(&html, "src")) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
                || target.starts_with('#')
            {
                continue;
            }
            let file = target.split(['#', '?']).next().unwrap_or("");
            if file.starts_with('/') || file.contains("..") || !site.join(file).is_file() {
                broken.push(format!(
                    "{}: {target}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
    }
    Ok(broken)
}

const CHECK: &str = r#"<script>
window.addEventListener('load', function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var bad = [], ok = 0;
  document.querySelectorAll('img').forEach(function (i) {
    var r = i.getBoundingClientRect();
    if (!i.complete || i.naturalWidth === 0 || i.naturalHeight === 0 || r.width === 0 || r.height === 0) {
      bad.push(i.getAttribute('src'));
    } else { ok++; }
  });
  var p = document.createElement('pre');
  p.id = 'qb-check';
  p.textContent = 'QBCHECK ' + ok + ' ' + JSON.stringify(bad) + ' QBEND';
  document.body.appendChild(p);
});
</script>"#;

/// (images loaded with a size, sources of those that did not) of one page.
fn check_images(bin: &Path, profile: &Path, site: &Path, page: &str) -> R<(usize, Vec<String>)> {
    let html = std::fs::read_to_string(site.join(page))?;
    let probe = site.join(format!("qbcheck-{page}"));
    std::fs::write(&probe, html.replace("</body>", &format!("{CHECK}</body>")))?;
    let dom = run_chromium(
        bin,
        profile,
        &["--dump-dom".into(), "--window-size=1400,1000".into()],
        &format!("file://{}", probe.display()),
    );
    let _ = std::fs::remove_file(&probe);
    let dom = dom?;
    // The script's own text holds the marker too: take the element's.
    let marker = "<pre id=\"qb-check\">QBCHECK ";
    let start = dom
        .find(marker)
        .ok_or_else(|| format!("{page}: the check script did not run"))?
        + marker.len();
    let end = dom[start..].find(" QBEND").ok_or("no QBEND")? + start;
    let body = &dom[start..end];
    let (n, list) = body.split_once(' ').ok_or("bad check output")?;
    let list = list.replace("&quot;", "\"");
    let bad: Vec<String> = serde_json::from_str(&list)?;
    Ok((n.parse()?, bad))
}

#[test]
fn site_renders_in_chromium() -> R<()> {
    let fixture = manifest().join("tests/fixtures/tiny-run");
    let tmp = tempfile::tempdir()?;
    let site = tmp.path().join("site");
    quicbench_report::build_site(&[fixture.clone(), fixture.clone()], &site)?;

    let pages: Vec<String> = std::fs::read_dir(&site)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".html"))
        .collect();
    for want in [
        "index.html",
        "handshake.html",
        "hol.html",
        "migration.html",
        "goodput.html",
        "udp.html",
        "methodology.html",
    ] {
        assert!(pages.iter().any(|p| p == want), "{want} not in {pages:?}");
    }
    let broken = broken_links(&site)?;
    assert!(broken.is_empty(), "broken links: {broken:?}");
    // Nothing is loaded from elsewhere: no external scripts, styles or fonts.
    for p in &pages {
        let html = std::fs::read_to_string(site.join(p))?;
        for bad in ["<script", "<link ", "@import", "url(http", "src=\"http"] {
            assert!(!html.contains(bad), "{p} contains {bad}");
        }
    }

    let Some(bin) = chromium() else {
        println!(
            "SKIPPED: site_renders_in_chromium: no chromium (run scripts/install-chromium.sh as root); link checks passed"
        );
        assert!(
            !is_root(),
            "root, yet chromium is missing after scripts/install-chromium.sh"
        );
        return Ok(());
    };
    let profile = tmp.path().join("profile");
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../target"))
        .join("site-screenshots");
    std::fs::create_dir_all(&shots)?;
    let mut total = 0;
    for page in &pages {
        let html = std::fs::read_to_string(site.join(page))?;
        let imgs = html.matches("<img ").count();
        let (ok, bad) = check_images(&bin, &profile, &site, page)?;
        assert!(bad.is_empty(), "{page}: charts that did not load: {bad:?}");
        assert_eq!(ok, imgs, "{page}: {ok} of {imgs} images loaded");
        total += ok;
        let shot = shots.join(page.replace(".html", ".png"));
        let _ = std::fs::remove_file(&shot);
        run_chromium(
            &bin,
            &profile,
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1400,3000".into(),
            ],
            &format!("file://{}", site.join(page).display()),
        )?;
        let len = std::fs::metadata(&shot)
            .map_err(|e| format!("{}: {e}", shot.display()))?
            .len();
        assert!(len > 10_000, "{}: only {len} bytes", shot.display());
    }
    assert!(total >= 20, "only {total} charts in the whole site");

    // Negative control: a missing chart must be caught by both checks.
    let hol = std::fs::read_to_string(site.join("hol.html"))?;
    let victim = attrs(&hol, "src")
        .into_iter()
        .find(|s| s.starts_with("charts/"))
        .ok_or("hol.html has no chart")?;
    std::fs::remove_file(site.join(&victim))?;
    let (_, bad) = check_images(&bin, &profile, &site, "hol.html")?;
    assert!(
        bad.contains(&victim),
        "the browser check did not notice {victim} missing: {bad:?}"
    );
    assert!(broken_links(&site)?.iter().any(|b| b.ends_with(&victim)));
    println!(
        "site_renders_in_chromium: {} pages, {total} charts loaded; screenshots in {}",
        pages.len(),
        shots.display()
    );
    Ok(())
}
