#!/usr/bin/env bash
# HTTP/3 (quicbench get against quicbench serve) against quinn's own perf
# tool, on loopback, 100 MiB per request, in alternating rounds. See
# docs/h3.md, "Throughput: HTTP/3 against its own QUIC stack", for how to
# build the perf tool from quinn's sources (outside this tree).
#
#   QUINN_PERF=/tmp/quinn-perf/target/release/quinn-perf \
#   QUICBENCH=target/release/quicbench ROUNDS=5 scripts/h3-vs-quinn-perf.sh
#
# Each round prints Mbit/s: the perf tool's per-stream average (its
# defaults, then with quicbench's transport settings), quicbench h3 against
# `serve --threads 1` (one thread, as the perf server) and against `serve`
# (a worker per core), with h3 as a share of the perf tool. Measurements
# run under `flock $BENCH_LOCK` so that others sharing the host can
# serialise theirs. Servers listen on 127.0.0.1 only and are stopped on exit.
set -euo pipefail

QP=${QUINN_PERF:?set QUINN_PERF to the quinn-perf binary}
QB=${QUICBENCH:-target/release/quicbench}
ROUNDS=${ROUNDS:-5}
LOCK=${BENCH_LOCK:-/tmp/quicbench-bench.lock}
SIZE=104857600
# quicbench's QUIC transport settings (wire::transport) in the perf tool's flags.
MATCHED=(--stream-receive-window 6M --receive-window 24M --send-window 24M
         --send-buffer-size 16M --recv-buffer-size 16M --congestion cubic)

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

"$QP" server --listen 127.0.0.1:14433 >"$tmp/qp.log" 2>&1 & pids+=($!)
"$QP" server --listen 127.0.0.1:14434 "${MATCHED[@]}" >"$tmp/qpm.log" 2>&1 & pids+=($!)
"$QB" serve --threads 1 --listen 127.0.0.1 --http-port 0 --tls-port 14441 --quic-port 14441 \
    --udp-port 0 --cert-out "$tmp/t1.pem" >"$tmp/t1.log" 2>&1 & pids+=($!)
"$QB" serve --listen 127.0.0.1 --http-port 0 --tls-port 14442 --quic-port 14442 \
    --udp-port 0 --cert-out "$tmp/t0.pem" >"$tmp/t0.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do
    [ -s "$tmp/t1.pem" ] && [ -s "$tmp/t0.pem" ] && break
    sleep 0.1
done
sleep 0.5
for p in "${pids[@]}"; do
    # A port already taken ends a server at once: measure nothing else's.
    kill -0 "$p" 2>/dev/null || { tail -n 3 "$tmp"/*.log; echo "a server did not start" >&2; exit 1; }
done

perf_rate() { # per-stream AVG download, Mbit/s
    flock "$LOCK" timeout 30 "$QP" client --download-size 100M --upload-size 0 --duration 4 "$@" 2>&1 |
        awk '/^ AVG /{r=$(NF-1)} END{print r}'
}
h3_rate() { # the transfer's own rate, Mbit/s
    flock "$LOCK" "$QB" get --proto h3 --cacert "$tmp/$1.pem" -n 3 \
        "https://127.0.0.1:$2/bytes/$SIZE" | sed -n 's/^  bytes .*= \([0-9.]*\) Mbit.*/\1/p'
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.0f%%", 100*a/b; else print "-" }'; }

for round in $(seq "$ROUNDS"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    p=$(perf_rate 127.0.0.1:14433)
    pm=$(perf_rate "${MATCHED[@]}" 127.0.0.1:14434)
    t1=$(h3_rate t1 14441)
    t0=$(h3_rate t0 14442)
    echo "round $round load $load: perf $p, perf matched $pm; h3 serve --threads 1 $t1 ($(pct "$t1" "$p") / $(pct "$t1" "$pm")), h3 serve $t0 ($(pct "$t0" "$p"))"
done
