#!/bin/sh
# ngtcp2's example HTTP/3 client (Debian ngtcp2-client: gtlsclient, GnuTLS
# backend). Contract: docs/endpoints.md.
#
# gtlsclient opens every request at once on its one connection (it has no
# limit of its own), so QB_PARALLEL is honoured only when it covers every
# request or there is a single request; anything else fails loudly instead
# of running with more requests in flight than asked.
# It saves each body as --download DIR/<last path segment>: QB_DOWNLOADS/<i>.
set -eu
export QB_WRAPPER="ngtcp2-client"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_SERVER_ADDR QB_SERVER_PORT QB_SERVER_NAME QB_CA QB_REQUESTS QB_DOWNLOADS QB_OUTPUT_DIR
qb_protocol h3
cc=$(qb_cc_map "cubic=cubic newreno=reno bbr=bbr")
client=$(qb_program gtlsclient /usr/bin/gtlsclient)
n=$(qb_request_count)
parallel=${QB_PARALLEL:-1}
if [ "$n" -gt 1 ] && [ "$parallel" -lt "$n" ]; then
  qb_die "gtlsclient sends all $n requests at once on one connection; QB_PARALLEL=$parallel would be exceeded (it has no way to queue requests)"
fi
mkdir -p "$QB_DOWNLOADS"
# QB_CA is not used: gtlsclient (an example client) loads the system store
# but never verifies the server's certificate (README.md).
set -- --download="$QB_DOWNLOADS" --exit-on-all-streams-close --cc="$cc" \
  --no-quic-dump --no-http-dump
# Its debug log (every packet; ~0.4 MB of stderr per MiB received) costs CPU
# during the measurement: quiet unless QB_VERBOSE=1 (for debugging; the
# resumption and early-data checks in README.md were read from it).
if [ "${QB_VERBOSE:-0}" != 1 ]; then
  set -- "$@" --quiet
fi
if [ -n "${QB_QLOG_DIR-}" ]; then
  mkdir -p "$QB_QLOG_DIR"
  set -- "$@" --qlog-dir="$QB_QLOG_DIR"
fi
if [ "${QB_RESUME:-0}" = 1 ] || [ "${QB_EARLY_DATA:-0}" = 1 ]; then
  qb_need QB_SESSION_FILE
  # The TLS session (ticket) and, for 0-RTT, the server's transport
  # parameters (gtlsclient sends 0-RTT only with both files).
  set -- "$@" --session-file="$QB_SESSION_FILE"
  if [ "${QB_EARLY_DATA:-0}" = 1 ]; then
    set -- "$@" --tp-file="$QB_SESSION_FILE.tp"
  else
    # No 0-RTT packets then (GnuTLS may still offer the early_data extension
    # in its ClientHello: the server may log "early data accepted" although
    # no request was sent early).
    set -- "$@" --disable-early-data
  fi
fi
# The key log: GnuTLS appends to SSLKEYLOGFILE by itself (lib.sh exports it).
set -f
# shellcheck disable=SC2086
"$client" "$@" "$QB_SERVER_ADDR" "$QB_SERVER_PORT" $QB_REQUESTS || qb_die "gtlsclient failed (exit $?)"
# gtlsclient exits 0 whatever the status and saves error pages too; with
# --quiet it prints no status. A body whose length is not the N of its URL
# (/bytes/<N>/<i>) means the request failed.
qb_check_sizes
