//! Interop: aioquic's HTTP/3 client fetches /bytes/N from our server and checks
//! every byte. Needs Python with aioquic (scripts/install-test-deps.sh installs
//! it); as root (CI) a failed install fails the test with the installer's
//! output, otherwise it skips loudly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use quicbench_servers::ServerOptions;
use quicbench_wire::tls::Identity;

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
            install_deps::missing(
                "aioquic_client_fetches_from_our_server",
                "Python with aioquic",
                &p,
            );
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
async fn aioquic_client_fetches_from_our_server() {
    let Some(py) = python() else {
        return; // skipped loudly by install_deps::missing (not root)
    };
    let id = Identity::generate(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("trust.pem");
    id.write_trust(&ca).unwrap();
    let s = quicbench_servers::start(ServerOptions::ephemeral(id))
        .await
        .unwrap();
    let port = s.addrs.quic[0].port().to_string();
    for path in ["/bytes/1048576", "/bytes/0", "/"] {
        let out = tokio::process::Command::new(&py)
            .arg(root().join("scripts/interop/aioquic_h3_client.py"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--path",
                path,
                "--server-name",
                "localhost",
            ])
            .arg("--cafile")
            .arg(&ca)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .expect("aioquic client within 60 s")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{path}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["verified"], true, "{v}");
        if path == "/bytes/1048576" {
            assert_eq!(v["bytes"], 1_048_576);
        }
    }
    let st = s.stats();
    assert_eq!((st.quic_accepted, st.requests), (3, 3));
    s.shutdown(Duration::from_secs(1)).await;
}

// An ordinary user: a user and network namespace of its own, before main
// (quicbench_netem::test_gate).
quicbench_netem::test_binary_enters_user_namespace!();
