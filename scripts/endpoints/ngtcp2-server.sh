#!/bin/sh
# ngtcp2's example HTTP/3 server (Debian ngtcp2-server: gtlsserver, GnuTLS
# backend) serving QB_WWW as static files. Contract: docs/endpoints.md.
set -eu
export QB_WRAPPER="ngtcp2-server"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_LISTEN_ADDR QB_PORT QB_CERT QB_KEY QB_WWW QB_OUTPUT_DIR
qb_protocol h3
cc=$(qb_cc_map "cubic=cubic newreno=reno bbr=bbr")
server=$(qb_program gtlsserver /usr/sbin/gtlsserver /usr/bin/gtlsserver)
set -- --htdocs="$QB_WWW" --cc="$cc" --quiet
if [ -n "${QB_QLOG_DIR-}" ]; then
  mkdir -p "$QB_QLOG_DIR"
  set -- "$@" --qlog-dir="$QB_QLOG_DIR"
fi
# The key log: GnuTLS appends to SSLKEYLOGFILE by itself (lib.sh exports it).
# --quiet keeps the per-packet debug log out of stderr.log.
exec "$server" "$@" "$QB_LISTEN_ADDR" "$QB_PORT" "$QB_KEY" "$QB_CERT"
