#!/bin/sh
# Caddy (HTTP/3 by quic-go) serving QB_WWW as static files. Contract:
# docs/endpoints.md. The config is generated as JSON (QB_OUTPUT_DIR/caddy.json:
# the Caddyfile has no key-log setting): admin endpoint off, automatic HTTPS
# (certificates, redirects) off, QB_CERT/QB_KEY loaded as files, h3 on UDP
# QB_LISTEN_ADDR:QB_PORT (Caddy also serves h1/h2 on the TCP port of the same
# number; the h3 cells use only UDP).
set -eu
export QB_WRAPPER="quic-go-server"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_LISTEN_ADDR QB_PORT QB_CERT QB_KEY QB_WWW QB_OUTPUT_DIR QB_SCRIPTS
qb_protocol h3
# quic-go has one controller (its Cubic, with Reno as an internal mode that
# nothing exposes); Caddy sets none.
qb_cc_map "cubic=cubic" >/dev/null
caddy=$(qb_program caddy "$QB_SCRIPTS/../target/endpoints-venv/bin/caddy")

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
keylog=""
if [ -n "${QB_KEYLOG-}" ]; then
  keylog=", \"insecure_secrets_log\": $(json_str "$QB_KEYLOG")"
fi
cfg=$QB_OUTPUT_DIR/caddy.json
cat > "$cfg" <<JSON
{
  "admin": {"disabled": true, "config": {"persist": false}},
  "logging": {"logs": {"default": {"level": "WARN",
    "writer": {"output": "file", "filename": $(json_str "$QB_OUTPUT_DIR/caddy.log")}}}},
  "storage": {"module": "file_system", "root": $(json_str "$QB_OUTPUT_DIR/caddy-storage")},
  "apps": {
    "http": {
      "servers": {
        "qb": {
          "listen": [$(json_str "$QB_LISTEN_ADDR:$QB_PORT")],
          "protocols": ["h1", "h2", "h3"],
          "automatic_https": {"disable": true, "disable_redirects": true},
          "tls_connection_policies": [{"certificate_selection": {"any_tag": ["qb"]}$keylog}],
          "routes": [{"handle": [{"handler": "file_server", "root": $(json_str "$QB_WWW")}]}]
        }
      }
    },
    "tls": {
      "certificates": {"load_files": [{"certificate": $(json_str "$QB_CERT"), "key": $(json_str "$QB_KEY"), "tags": ["qb"]}]}
    }
  }
}
JSON
# Caddy writes its state under XDG_DATA_HOME / XDG_CONFIG_HOME: keep it here.
XDG_DATA_HOME=$QB_OUTPUT_DIR/caddy-data
XDG_CONFIG_HOME=$QB_OUTPUT_DIR/caddy-config
export XDG_DATA_HOME XDG_CONFIG_HOME
if [ -n "${QB_QLOG_DIR-}" ]; then
  # quic-go writes qlogs to QLOGDIR where the application installs its
  # default tracer (README.md: whether Caddy does).
  mkdir -p "$QB_QLOG_DIR"
  QLOGDIR=$QB_QLOG_DIR
  export QLOGDIR
fi
exec "$caddy" run --config "$cfg" --adapter ""
