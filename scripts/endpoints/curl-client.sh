#!/bin/sh
# curl (Debian's 7.88, OpenSSL + nghttp2) for HTTP/1.0, HTTP/1.1 and HTTP/2,
# over TLS 1.3 or cleartext. Contract: docs/endpoints.md.
#
# One curl for all of QB_REQUESTS, each saved with its own -o
# QB_DOWNLOADS/<i>; QB_PARALLEL > 1 runs them with --parallel --parallel-max
# (h2: streams of one connection, curl waits to multiplex; h1.x: up to that
# many connections). -w writes one line per transfer, turned into QB_TIMINGS
# lines (curl's times count from the start of each transfer; connect_ms and
# tls_ms only where the transfer opened its connection).
# No resumption across runs: curl 7.88 keeps TLS sessions only in its own
# process memory (no session file), and sends no TLS early data.
set -eu
export QB_WRAPPER="curl-client"
# shellcheck source=/dev/null
. "$(dirname "$0")/lib.sh"
qb_need QB_PROTOCOL QB_REQUESTS QB_DOWNLOADS QB_OUTPUT_DIR
qb_protocol h2 h1.1-tls h1.0-tls h1.1 h1.0
# TCP: the harness sets the namespace's controller; any of them runs.
qb_cc_map "cubic=cubic newreno=reno bbr=bbr" >/dev/null
if [ "${QB_RESUME:-0}" = 1 ] || [ "${QB_EARLY_DATA:-0}" = 1 ]; then
  qb_die "curl 7.88 cannot resume a TLS session across runs nor send early data (QB_RESUME=${QB_RESUME:-0} QB_EARLY_DATA=${QB_EARLY_DATA:-0})"
fi
curl=$(qb_program curl /usr/bin/curl)

case $QB_PROTOCOL in
  h2) want=2; set -- --http2 ;;
  h1.1 | h1.1-tls) want=1.1; set -- --http1.1 ;;
  h1.0 | h1.0-tls) want=1.0; set -- --http1.0 ;;
esac
case $QB_PROTOCOL in
  h2 | *-tls)
    qb_need QB_CA
    # The key log: curl (OpenSSL) appends to SSLKEYLOGFILE (lib.sh exports it).
    # --no-sessionid: every connection a full handshake (curl would
    # otherwise resume its in-memory sessions on a run's later connections,
    # while QB_RESUME=1 is what asks for resumption, which it cannot do).
    set -- "$@" --tlsv1.3 --cacert "$QB_CA" --no-sessionid ;;
esac
parallel=${QB_PARALLEL:-1}
if [ "$parallel" -gt 1 ]; then
  set -- "$@" --parallel --parallel-max "$parallel"
fi
mkdir -p "$QB_DOWNLOADS"
set -f
for url in $QB_REQUESTS; do
  set -- "$@" -o "$QB_DOWNLOADS/${url##*/}" "$url"
done
set +f
raw=$QB_OUTPUT_DIR/curl-write-out.txt
# One line per transfer: index, status, HTTP version, new connections, then
# connect / TLS done / first byte / total in seconds from the transfer's start.
"$curl" --silent --show-error --fail --no-progress-meter \
  -w '%{urlnum} %{response_code} %{http_version} %{num_connects} %{time_connect} %{time_appconnect} %{time_starttransfer} %{time_total}\n' \
  "$@" > "$raw" || qb_die "curl failed (exit $?); its lines: $(tr '\n' ';' < "$raw")"

n=$(qb_request_count)
awk -v n="$n" -v want="$want" -v timings="${QB_TIMINGS-}" '
  function ms(s) { return sprintf("%.3f", s * 1000) }
  {
    seen[$1] = 1
    if ($2 != 200) { printf "curl-client: request %d: status %s\n", $1, $2 > "/dev/stderr"; bad = 1 }
    # %{http_version} is the response status line'"'"'s: a server may answer an
    # HTTP/1.0 request with "HTTP/1.1" (nginx does; RFC 9110 allows it).
    if ($3 != want && !(want == "1.0" && ($3 == "1" || $3 == "1.1"))) { printf "curl-client: request %d: HTTP/%s, want HTTP/%s\n", $1, $3, want > "/dev/stderr"; bad = 1 }
    line = sprintf("{\"index\": %d, \"status\": %d", $1, $2)
    if ($4 > 0) {
      line = line ", \"connect_ms\": " ms($5)
      if ($6 > 0) line = line ", \"tls_ms\": " ms($6)
    }
    line = line ", \"ttfb_ms\": " ms($7) ", \"total_ms\": " ms($8) ", \"new_connections\": " $4 "}"
    if (timings != "") print line >> timings
  }
  END {
    for (i = 0; i < n; i++) if (!(i in seen)) { printf "curl-client: request %d: no transfer\n", i > "/dev/stderr"; bad = 1 }
    exit bad
  }' "$raw" || qb_die "not every request got status 200 over HTTP/$want"
