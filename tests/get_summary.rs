//! `quicbench get` against `quicbench serve` on loopback, over real sockets
//! and TLS: the summary reports the transfer's own rate and the client's
//! set-up on its own line, with either runtime.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

#[path = "support/runs.rs"]
mod runs;
use runs::bin;

/// A `quicbench serve` child on 127.0.0.1, any free ports; killed on drop.
struct Serve {
    child: Child,
    /// "127.0.0.1:PORT" of HTTP/1.x cleartext, HTTP/1.1+2 over TLS, HTTP/3.
    http: String,
    tls: String,
    quic: String,
    /// The server's certificate, for `--cacert`.
    cacert: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("trust.pem");
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1",
            "--http-port",
            "0",
            "--tls-port",
            "0",
            "--quic-port",
            "0",
            "--udp-port",
            "0",
            "--duration",
            "60",
            "--cert-out",
        ])
        .arg(&cert)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start quicbench serve");
    let out = child.stdout.take().expect("serve stdout");
    let (mut http, mut tls, mut quic) = (String::new(), String::new(), String::new());
    // The address lines come first, the "resources" line once all listen.
    for line in BufReader::new(out).lines().take(20) {
        let line = line.expect("serve output");
        let addr = line.rsplit(' ').next().unwrap_or("").to_string();
        if line.contains("HTTP/1.0+1.1 (tcp)") {
            http = addr;
        } else if line.contains("TLS (tcp)") {
            tls = addr;
        } else if line.contains("HTTP/3 (quic/udp)") {
            quic = addr;
        } else if line.contains("resources:") {
            break;
        }
    }
    assert!(
        !http.is_empty() && !tls.is_empty() && !quic.is_empty(),
        "serve did not print its addresses"
    );
    Serve {
        child,
        http,
        tls,
        quic,
        cacert: cert.to_str().expect("utf-8 path").to_string(),
        _dir: dir,
    }
}

fn get(args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("get")
        .args(args)
        .output()
        .expect("run quicbench get");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn line<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

#[test]
fn summary_rates_the_transfer_and_states_the_set_up() {
    let s = serve();
    let cacert = s.cacert.as_str();
    for (proto, addr, threads) in [
        ("h3", &s.quic, "1"),
        ("h3", &s.quic, "0"),
        ("h2", &s.tls, "1"),
        ("h1.1", &s.http, "2"),
    ] {
        let scheme = if proto == "h1.1" { "http" } else { "https" };
        let url = format!("{scheme}://{addr}/bytes/2000000");
        let out = get(&[
            "--proto",
            proto,
            "--threads",
            threads,
            "-n",
            "2",
            "--cacert",
            cacert,
            &url,
        ]);
        let bytes = line(&out, "bytes");
        assert!(
            bytes.contains("4000000 in ")
                && bytes.contains("Mbit/s (first request to last byte)")
                && bytes.contains("verified 2/2"),
            "{proto}: {bytes}"
        );
        let setup = line(&out, "set-up");
        assert!(
            setup.contains("tls config") && setup.contains("runtime") && setup.contains("connect"),
            "{proto}: {setup}"
        );
        // Only QUIC knows where its own set-up ends and the handshake begins.
        assert_eq!(
            setup.contains("handshake"),
            proto == "h3",
            "{proto}: {setup}"
        );
        line(&out, "wall");
    }
}

/// At `-c 1` every protocol carries one request at a time, and each is
/// timed from its own start: the next one starts after the previous one's
/// last byte (HTTP/1.x once timed all of a connection's requests from the
/// first one's start, so their time-to-first-byte counted the queue).
#[test]
fn requests_at_concurrency_one_are_timed_one_after_another() {
    let s = serve();
    let cacert = s.cacert.as_str();
    for (proto, addr) in [
        ("h1.1", &s.http),
        ("h1.1-tls", &s.tls),
        ("h2", &s.tls),
        ("h3", &s.quic),
    ] {
        let scheme = if proto == "h1.1" { "http" } else { "https" };
        let url = format!("{scheme}://{addr}/bytes/500000");
        let out = get(&[
            "--proto", proto, "-n", "4", "--json", "--cacert", cacert, &url,
        ]);
        let mut spans: Vec<(u64, u64)> = out
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).expect("a JSON record");
                let ns = |k: &str| {
                    r[k].as_u64()
                        .unwrap_or_else(|| panic!("{proto}: no {k} in {l}"))
                };
                (ns("start_ns"), ns("last_byte_ns"))
            })
            .collect();
        assert_eq!(spans.len(), 4, "{proto}: {out}");
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "{proto}: a request timed from {} ns, before the previous one's last byte at {} ns",
                w[1].0,
                w[0].1
            );
        }
    }
}
