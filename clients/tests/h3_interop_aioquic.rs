//! Interop: our HTTP/3 client fetches /bytes/N from an aioquic server
//! (scripts/interop/aioquic_h3_server.py, same pattern, our certificate).
//! Needs Python with aioquic (scripts/install-test-deps.sh installs it); as root
//! (CI) a failed install fails the test with the installer's output, otherwise
//! it skips loudly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use quicbench_clients::{Client, ClientOptions, Request};
use quicbench_wire::tls::Identity;
use quicbench_wire::Protocol;
use tokio::io::{AsyncBufReadExt, BufReader};

#[path = "../../tests/support/install_deps.rs"]
mod install_deps;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Python that can import aioquic: the project's venv first, then python3;
/// installed by the project's script when neither has it (as root a failed
/// install fails the test with the installer's output).
fn python() -> Option<PathBuf> {
    find_python().or_else(|| {
        let p = install_deps::provision();
        let py = find_python();
        if py.is_none() {
            install_deps::missing("our_client_fetches_from_aioquic", "Python with aioquic", &p);
        }
        py
    })
}

fn find_python() -> Option<PathBuf> {
    let venv = root().join("target/interop-venv/bin/python3");
    [venv, PathBuf::from("python3")].into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import aioquic"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_fetches_from_aioquic() {
    let Some(py) = python() else {
        return; // skipped loudly by install_deps::missing (not root)
    };
    let id = Identity::generate(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    id.write_trust(&cert).unwrap();
    id.write_key(&key).unwrap();
    let mut child = tokio::process::Command::new(&py)
        .arg(root().join("scripts/interop/aioquic_h3_server.py"))
        .args(["--host", "127.0.0.1", "--port", "0", "--max-seconds", "60"])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("aioquic server ready within 30 s")
        .unwrap()
        .expect("a LISTENING line");
    let port: u16 = line
        .strip_prefix("LISTENING ")
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let mut o = ClientOptions::new(([127, 0, 0, 1], port).into(), id.trust_anchors());
    o.server_name = "localhost".into();
    o.timeout = Duration::from_secs(30);
    let client = Client::new(Protocol::H3, o).unwrap();
    let mut c = client.connect().await.unwrap();
    assert_eq!(c.info().alpn.as_deref(), Some("h3"));
    let recs = c
        .run(&[
            Request::bytes(1 << 20),
            Request::get("/"),
            Request::bytes(12_345),
        ])
        .await;
    assert!(recs.iter().all(|r| r.ok()), "{recs:?}");
    assert_eq!((recs[0].bytes, recs[0].verified), (1 << 20, Some(true)));
    assert_eq!((recs[2].bytes, recs[2].verified), (12_345, Some(true)));
    c.close().await;

    // Closing stdin stops the server; kill it if it lingers.
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
