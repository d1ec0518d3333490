#!/usr/bin/env bash
# Cleartext HTTP/1.1 keep-alive: quicbench's server vs nginx under wrk, same
# machine, same run, same response size. Installs wrk and nginx (Debian) if
# missing. Everything on loopback; bounded in time.
#
#   scripts/bench-wrk.sh [SIZE_BYTES=1024] [SECONDS=10] [CONNECTIONS=64] [THREADS=2]
set -euo pipefail
size=${1:-1024}; secs=${2:-10}; conns=${3:-64}; threads=${4:-2}
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq
  if ! apt-get install -y -qq wrk nginx-light; then apt-get install -y -qq wrk nginx; fi
fi
bin=${QUICBENCH_BIN:-target/release/quicbench}
[ -x "$bin" ] || cargo build --release -p quicbench
work=$(mktemp -d)
cleanup() {
  if [ -n "${qpid:-}" ]; then kill "$qpid" 2>/dev/null || true; fi
  if [ -f "$work/nginx.pid" ]; then kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# The same body bytes: fetch them from quicbench itself once it is up.
"$bin" serve --listen 127.0.0.1 --http-port 18081 --tls-port 18443 --quic-port 18443 --udp-port 19000 --duration $((secs * 3 + 30)) >/dev/null 2>&1 &
qpid=$!
for _ in $(seq 50); do curl -s -o "$work/body" "http://127.0.0.1:18081/bytes/$size" && break; sleep 0.1; done
mkdir -p "$work/www/bytes" && cp "$work/body" "$work/www/bytes/$size"
cat > "$work/nginx.conf" <<NGX
worker_processes $threads;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:18082;
    root $work/www;
    location / { default_type application/octet-stream; add_header Cache-Control no-store; }
  }
}
NGX
nginx -c "$work/nginx.conf"
sleep 0.3
run() { wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$1" | tee /dev/stderr | awk '/Requests\/sec/ {print $2}'; }
echo "== quicbench serve (hyper), /bytes/$size" >&2
q=$(run "http://127.0.0.1:18081/bytes/$size")
echo "== nginx, same bytes" >&2
n=$(run "http://127.0.0.1:18082/bytes/$size")
ratio=$(python3 -c "print(f'{$q / $n * 100:.1f}')")
echo "quicbench ${q} req/s, nginx ${n} req/s: quicbench = ${ratio}% of nginx (target >= 70%)"
