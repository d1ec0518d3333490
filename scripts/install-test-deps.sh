#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo. Idempotent; run as root
# (apt) or as a user (the Python part needs no root). Each tool has its own
# clearly separated block below.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# Tests run this themselves when something is missing, possibly several at
# once (nextest): one at a time.
mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/.install-test-deps.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

# ---------------------------------------------------------------------------
# iproute2: the link (netem/) configures namespaces, TUN and veth devices with
# `ip`, and the kernel backend uses `tc`. Also wrk + nginx for the throughput
# comparison script (scripts/bench-wrk.sh) are NOT installed here (benchmarks
# only; that script installs them itself).
# ---------------------------------------------------------------------------
install_iproute2() {
  if command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; then
    echo "iproute2: present ($(ip -V 2>&1 | head -n1))"
    return 0
  fi
  echo "iproute2: missing, installing it with apt"
  apt-get update -qq && apt-get install -y -qq iproute2
}
install_iproute2
# ------------------------------------------------------------- end iproute2


# ---------------------------------------------------------------------------
# nftables (`nft`): NAT rebinding on the kernel backend (netem/src/link/
# kernel_nat.rs) and its tests (netem/tests/kernel.rs). System package; needs
# root when missing.
# ---------------------------------------------------------------------------
install_nftables() {
  if command -v nft >/dev/null 2>&1; then
    echo "nftables: present ($(nft --version 2>&1 | head -n1))"
    return 0
  fi
  echo "nftables: missing, installing it with apt"
  apt-get update -qq && apt-get install -y -qq nftables
}
install_nftables
# ------------------------------------------------------------ end nftables


# ---------------------------------------------------------------------------
# curl: TCP interop tests (servers/tests/tcp_curl.rs): HTTP/1.0, HTTP/1.1 and
# HTTP/2 (curl built with nghttp2, as Debian's and Ubuntu's are) against our
# server. System package; needs root when missing.
# ---------------------------------------------------------------------------
install_curl() {
  if command -v curl >/dev/null 2>&1 && curl --version | grep -qw HTTP2; then
    echo "curl: present ($(curl --version | head -n1 | cut -d' ' -f1-2)) with HTTP/2"
    return 0
  fi
  echo "curl: missing or without HTTP/2, installing it with apt"
  apt-get update -qq && apt-get install -y -qq curl ca-certificates
  curl --version | grep -qw HTTP2 || { echo "curl: installed but without HTTP/2 support" >&2; exit 1; }
}
install_curl
# ------------------------------------------------------------------ end curl


# ---------------------------------------------------------------------------
# aioquic: HTTP/3 interop tests (servers/tests/quic_interop_aioquic.rs,
# clients/tests/h3_interop_aioquic.rs, scripts/interop/*.py).
# Installed into a venv under target/ (nothing system-wide changes); the tests
# look for target/interop-venv/bin/python3 first, then python3 on PATH.
# A failed install fails this script: CI must not silently skip interop.
# ---------------------------------------------------------------------------
install_aioquic() {
  local venv="$ROOT/target/interop-venv"
  if [ -x "$venv/bin/python3" ] && "$venv/bin/python3" -c "import aioquic" 2>/dev/null; then
    echo "aioquic: present in $venv"
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "aioquic: python3 missing, installing it with apt"
    apt-get update -qq && apt-get install -y -qq python3 python3-venv
  fi
  if ! python3 -m venv "$venv" 2>/dev/null; then
    echo "aioquic: python3 -m venv failed, installing python3-venv with apt"
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "aioquic>=1.2,<2"
  "$venv/bin/python3" -c "import aioquic; print('aioquic:', aioquic.__version__, 'installed in $venv')"
}
install_aioquic
# --------------------------------------------------------------- end aioquic


# ---------------------------------------------------------------------------
# chromium: the report's browser test (report/tests/site_browser.rs) renders
# the generated site headless and checks every chart loaded. System package;
# needs root when missing (scripts/install-chromium.sh, a no-op when present).
# ---------------------------------------------------------------------------
bash "$ROOT/scripts/install-chromium.sh"
# ------------------------------------------------------------- end chromium
bash "$ROOT/scripts/install-endpoints.sh"
