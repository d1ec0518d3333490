//! The endpoint contract (docs/endpoints.md) end to end, over real
//! namespaces and the emulated link, with a matrix's own `[[endpoints]]`:
//! curl as a contract client, Python's static file server as a contract
//! server for our own client, and clients that crash, hang or write wrong
//! bytes — each a failed cell with its reason, and the cells after it run.

mod common;

use quicbench_harness::cell::execute;
use quicbench_harness::plan;
use quicbench_harness::Matrix;
use quicbench_results::CellStatus;

fn matrix() -> Matrix {
    let src = r#"
name = "contract"
protocols = ["h1.0", "h2"]
cc = "cubic"
cell_timeout_s = 8
servers = ["quicbench", "pyhttp"]
clients = ["quicbench", "curl-h2", "crash", "hang", "liar"]

[[links]]
label = "rtt10ms"
spec = "delay 5ms"

[workloads.goodput]
size = 1000000
duration_ms = 0

[[endpoints]]
name = "curl-h2"
role = "client"
protocols = ["h2"]
cc = ["cubic"]
command = '''
i=0
for u in $QB_REQUESTS; do
  curl -sS --http2 --cacert "$QB_CA" -o "$QB_DOWNLOADS/$(basename "$u")" \
    -w "{\"index\": $i, \"status\": %{http_code}, \"connect_ms\": %{time_connect}, \"tls_ms\": %{time_appconnect}, \"ttfb_ms\": %{time_starttransfer}, \"total_ms\": %{time_total}}\n" \
    "$u" >> "$QB_TIMINGS.s"
  i=$((i + 1))
done
# curl writes seconds: the contract wants ms.
python3 -c '
import json, sys
for l in open(sys.argv[1]):
    t = json.loads(l)
    for k in ("connect_ms", "tls_ms", "ttfb_ms", "total_ms"):
        t[k] *= 1000
    print(json.dumps(t))' "$QB_TIMINGS.s" > "$QB_TIMINGS"
'''
version = "curl --version"

[[endpoints]]
name = "pyhttp"
role = "server"
protocols = ["h1.0"]
command = 'exec python3 -m http.server --bind "$QB_LISTEN_ADDR" --directory "$QB_WWW" "$QB_PORT"'
version = "python3 --version"

[[endpoints]]
name = "crash"
role = "client"
protocols = ["h2"]
cc = ["cubic"]
command = 'echo "boom: cannot reach $QB_SERVER_ADDR" >&2; exit 3'

[[endpoints]]
name = "hang"
role = "client"
protocols = ["h2"]
cc = ["cubic"]
command = 'sleep 60'

[[endpoints]]
name = "liar"
role = "client"
protocols = ["h2"]
cc = ["cubic"]
command = 'for u in $QB_REQUESTS; do head -c 1000 /dev/zero > "$QB_DOWNLOADS/$(basename "$u")"; done'
"#;
    Matrix::parse(src, "<test>").expect("matrix")
}

/// A third-party `role`'s CPU is in extra.cpu, alone and in the role's
/// total; `ours` (our own end) has no process part. Every third-party end
/// here starts python3, which alone costs more than 5 ms of CPU.
fn third_party_cpu(r: &quicbench_results::CellResult, role: &str, ours: &str) {
    let cpu = &r.extra["cpu"];
    eprintln!("FIGURE {role} cpu ({}): {cpu}", r.params[role]);
    let ms = |k: String| cpu[k.as_str()].as_f64().unwrap_or(0.0);
    let proc_ms = ms(format!("{role}_process_cpu_ms"));
    assert!(proc_ms > 5.0, "{cpu}");
    assert!(
        ms(format!("{role}_cpu_ms")) >= proc_ms,
        "the total holds it: {cpu}"
    );
    assert_eq!(ms(format!("{ours}_process_cpu_ms")), 0.0, "{cpu}");
}

#[test]
fn contract_endpoints_run_fail_and_say_why() {
    if !common::can_build_links() {
        return;
    }
    let m = matrix();
    let cells = plan::cells_upto(&m, 1);
    let ctx = common::ctx();
    let find = |proto: &str, server: &str, client: &str| {
        cells
            .iter()
            .find(|c| c.protocol.name() == proto && c.server == server && c.client == client)
            .unwrap_or_else(|| panic!("no cell {proto} {server}->{client}"))
    };
    // pyhttp speaks h1.0 only: no h2 cell pairs it (not a gap: the protocol
    // is not its), and the h2-only clients have no h1.1 cell.
    assert!(!cells
        .iter()
        .any(|c| c.server == "pyhttp" && c.protocol.name() == "h2"));
    assert!(!cells
        .iter()
        .any(|c| c.client == "crash" && c.protocol.name() == "h1.0"));

    // curl over h2 against our server: bytes verified, timings read.
    let r = execute(&ctx, &m, find("h2", "quicbench", "curl-h2"));
    assert_eq!(r.status, CellStatus::Ok, "{:?} {:?}", r.status, r.notes);
    let gp = common::first(&r, "goodput_mbps").expect("goodput from curl's timings");
    assert!(gp > 1.0, "{gp}");
    let ep = &r.extra["endpoints"]["client"];
    assert_eq!(ep["name"], "curl-h2");
    assert!(
        ep["version"].as_str().unwrap_or("").starts_with("curl "),
        "{ep}"
    );
    let routes = ep["namespace_tcp_cc"].as_str().unwrap_or("");
    assert!(
        routes.contains("198.18.0.0/15") && routes.contains("congctl cubic"),
        "{routes}"
    );
    assert_eq!(r.params["client"], "curl-h2");
    // The shell's loop, curl and python3 (reaped by the shell), from
    // wait4's rusage.
    third_party_cpu(&r, "client", "server");
    // Read back from curl's own socket (ss), not assumed: no mismatch, and
    // a 1 MB transfer at 10 ms RTT (~9 RTTs) lasts long enough to be seen.
    assert!(
        !r.notes.iter().any(|n| n.contains("not read back")),
        "{:?}",
        r.notes
    );

    // Our client against a static file server of the document root.
    let r = execute(&ctx, &m, find("h1.0", "pyhttp", "quicbench"));
    assert_eq!(r.status, CellStatus::Ok, "{:?} {:?}", r.status, r.notes);
    assert!(
        common::first(&r, "goodput_mbps").is_some(),
        "{:?}",
        r.metrics.keys()
    );
    assert_eq!(r.extra["endpoints"]["server"]["name"], "pyhttp");
    // Read from its group's threads before it was stopped and from its
    // rusage when reaped.
    third_party_cpu(&r, "server", "client");

    // A crash: the exit status and stderr are the reason.
    let r = execute(&ctx, &m, find("h2", "quicbench", "crash"));
    match &r.status {
        CellStatus::Failed { reason } => {
            assert!(reason.contains("exit status: 3"), "{reason}");
            assert!(reason.contains("boom: cannot reach 198.18.1.1"), "{reason}");
        }
        s => panic!("crash: {s:?}"),
    }
    // A hang: killed at the limit, said so.
    let t0 = std::time::Instant::now();
    let r = execute(&ctx, &m, find("h2", "quicbench", "hang"));
    match &r.status {
        CellStatus::Failed { reason } => {
            assert!(
                reason.contains("still running after") && reason.contains("killed"),
                "{reason}"
            )
        }
        s => panic!("hang: {s:?}"),
    }
    assert!(t0.elapsed().as_secs() < 20, "{:?}", t0.elapsed());
    // Wrong bytes with exit status 0: the download check fails the cell.
    let r = execute(&ctx, &m, find("h2", "quicbench", "liar"));
    match &r.status {
        CellStatus::Failed { reason } => {
            assert!(
                reason.contains("client liar: /bytes/1000000/object: wrong byte"),
                "{reason}"
            )
        }
        s => panic!("liar: {s:?}"),
    }
    // And the next cell runs as if nothing happened.
    let r = execute(&ctx, &m, find("h2", "quicbench", "quicbench"));
    assert_eq!(r.status, CellStatus::Ok, "{:?}", r.status);
}

#[test]
fn a_pair_that_cannot_run_a_variant_is_not_applicable() {
    if !common::can_build_links() {
        return;
    }
    let src = r#"
protocols = ["h2"]
cc = "bbr"
clients = ["c"]
[[links]]
spec = "delay 1ms"
[workloads.handshake]
connections = 1
modes = ["resumed"]
[[endpoints]]
name = "c"
role = "client"
protocols = ["h2"]
command = "true"
"#;
    let m = Matrix::parse(src, "<test>").expect("matrix");
    let cells = plan::cells_upto(&m, 1);
    assert_eq!(cells.len(), 1);
    assert!(
        cells[0].id.contains("__srv=quicbench,cli=c__"),
        "{}",
        cells[0].id
    );
    let r = execute(&common::ctx(), &m, &cells[0]);
    match &r.status {
        CellStatus::Skipped { reason } => {
            assert_eq!(reason, "not applicable: client c has no session resumption")
        }
        s => panic!("{s:?}"),
    }
}
