//! Interop: curl (HTTP/1.0, HTTP/1.1, HTTP/2 over TLS 1.3) fetches `/bytes/N`
//! from our server and the bytes match the pattern. Installs curl with
//! `scripts/install-test-deps.sh` when missing; as root (CI) a failed install
//! fails the test with the installer's output, otherwise it skips loudly.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use quicbench_servers::ServerOptions;
use quicbench_wire::pattern;
use quicbench_wire::tls::Identity;

#[path = "../../tests/support/install_deps.rs"]
mod install_deps;

fn curl_runs() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// curl, installed by the project's script when missing; as root a failed
/// install fails the test with the installer's output.
fn have_curl() -> bool {
    if curl_runs() {
        return true;
    }
    let p = install_deps::provision();
    if curl_runs() {
        return true;
    }
    install_deps::missing("tcp_curl", "curl", &p);
    false
}

/// The helper every interop test uses: as root a peer the installer could not
/// provide fails the test, with the installer's output in the message.
#[test]
fn a_missing_peer_fails_as_root_with_the_installer_output() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fake-installer.sh");
    std::fs::write(
        &script,
        "echo 'fake: apt-get refused'; echo 'to stderr' >&2; exit 3\n",
    )
    .unwrap();
    let p = install_deps::provision_with(&script);
    assert!(
        p.output.contains("fake: apt-get refused") && p.output.contains("to stderr"),
        "{p:?}"
    );
    assert!(p.status.contains('3'), "{p:?}");
    let e = std::panic::catch_unwind(|| install_deps::missing_as(true, "t", "curl", &p))
        .expect_err("as root a missing peer must fail the test");
    let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("curl is missing") && msg.contains("fake: apt-get refused"),
        "{msg}"
    );
    // Without root: a loud skip, no panic.
    install_deps::missing_as(false, "t", "curl", &p);
}

/// Run curl with `args` plus `-o out`; returns what `-w` printed.
async fn curl(args: &[&str], out: &Path) -> String {
    let o = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o"])
        .arg(out)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        o.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_pattern_bytes_over_every_tcp_protocol() {
    if !have_curl() {
        return;
    }
    let id = Identity::generate(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("trust.pem");
    id.write_trust(&ca).unwrap();
    let ca = ca.to_str().unwrap().to_string();
    let srv = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let http = format!("http://{}", srv.addrs.http[0]);
    let https = format!("https://{}", srv.addrs.tls[0]);
    let out = dir.path().join("body");
    let w = "%{http_code} %{http_version} %{size_download}";

    // curl's %{http_version} prints "1" for an HTTP/1.0 response (hyper answers
    // an HTTP/1.0 request with an HTTP/1.0 status line).
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["--http1.0"], &http, "1"),
        (vec!["--http1.1"], &http, "1.1"),
        (vec!["--http1.0", "--cacert", &ca, "--tlsv1.3"], &https, "1"),
        (
            vec!["--http1.1", "--cacert", &ca, "--tlsv1.3"],
            &https,
            "1.1",
        ),
        (vec!["--http2", "--cacert", &ca, "--tlsv1.3"], &https, "2"),
    ];
    for (flags, base, version) in &cases {
        for n in [0u64, 1, 5 << 20] {
            let url = format!("{base}/bytes/{n}");
            let mut args = flags.clone();
            args.extend(["-w", w, &url]);
            let got = curl(&args, &out).await;
            assert_eq!(got, format!("200 {version} {n}"), "{args:?}");
            let body = std::fs::read(&out).unwrap();
            assert_eq!(body.len() as u64, n);
            assert_eq!(pattern::verify(0, &body), Ok(()), "{args:?}");
        }
        // A resumed transfer (what migration recovery over TCP does).
        let url = format!("{base}/bytes/100000");
        let mut args = flags.clone();
        args.extend(["-r", "40000-", "-w", w, &url]);
        let got = curl(&args, &out).await;
        assert_eq!(got, format!("206 {version} 60000"), "{args:?}");
        assert_eq!(
            pattern::verify(40000, &std::fs::read(&out).unwrap()),
            Ok(())
        );
        // Errors come back with their status.
        let url = format!("{base}/bytes/nope");
        let mut args = flags.clone();
        args.extend(["-w", "%{http_code}", &url]);
        assert_eq!(curl(&args, &out).await, "400");
    }
    // HEAD: headers only, Content-Length of the whole body.
    let o = tokio::process::Command::new("curl")
        .args(["-sS", "-I", "--http2", "--cacert", &ca])
        .arg(format!("{https}/bytes/777"))
        .output()
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("content-length: 777"), "{head}");
    assert!(head.contains("server: quicbench"), "{head}");
    assert!(!head.contains("date:"), "{head}");
    let st = srv.stats();
    assert!(st.tls_failures == 0, "{st:?}");
    srv.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
