# shellcheck shell=sh
# Shared helpers of the endpoint wrappers (sourced, POSIX sh).
# The contract: docs/endpoints.md.

qb_die() {
  echo "$QB_WRAPPER: $*" >&2
  exit 2
}

# qb_need VAR...: every named QB_* variable must be set and non-empty.
qb_need() {
  for qb_v in "$@"; do
    eval "qb_val=\${$qb_v-}"
    [ -n "$qb_val" ] || qb_die "environment variable $qb_v is not set (see docs/endpoints.md)"
  done
}

# qb_program NAME [PATH...]: print the first executable among PATH... or NAME
# on PATH; fail naming it.
qb_program() {
  qb_name=$1
  shift
  for qb_p in "$@"; do
    if [ -x "$qb_p" ]; then
      echo "$qb_p"
      return 0
    fi
  done
  if command -v "$qb_name" >/dev/null 2>&1; then
    command -v "$qb_name"
    return 0
  fi
  qb_die "program $qb_name not found (install it with scripts/install-endpoints.sh)"
}

# qb_protocol P...: QB_PROTOCOL must be one of P...
qb_protocol() {
  for qb_p in "$@"; do
    [ "$QB_PROTOCOL" = "$qb_p" ] && return 0
  done
  qb_die "QB_PROTOCOL=$QB_PROTOCOL is not one of: $*"
}

# qb_cc_map "cubic=X newreno=Y ...": print the program's name for QB_CC (empty
# QB_CC means cubic); fail when the program cannot run that controller.
qb_cc_map() {
  qb_want=${QB_CC:-cubic}
  for qb_pair in $1; do
    if [ "${qb_pair%%=*}" = "$qb_want" ]; then
      echo "${qb_pair#*=}"
      return 0
    fi
  done
  qb_can=""
  for qb_pair in $1; do
    qb_can="$qb_can ${qb_pair%%=*}"
  done
  qb_die "congestion controller QB_CC=$qb_want is not available here (can run:$qb_can)"
}

# qb_request_count: how many URLs QB_REQUESTS holds.
qb_request_count() {
  set -f
  # shellcheck disable=SC2086
  set -- $QB_REQUESTS
  set +f
  echo $#
}

# qb_check_sizes: every URL /bytes/<N>/<i> of QB_REQUESTS has a body of N
# bytes in QB_DOWNLOADS/<i>, or fail (for clients that print no status).
qb_check_sizes() {
  set -f
  for qb_url in $QB_REQUESTS; do
    qb_i=${qb_url##*/}
    qb_n=${qb_url%/*}
    qb_n=${qb_n##*/}
    qb_f=$QB_DOWNLOADS/$qb_i
    [ -f "$qb_f" ] || qb_die "no body saved for $qb_url"
    qb_size=$(wc -c < "$qb_f" | tr -d ' ')
    [ "$qb_size" = "$qb_n" ] || qb_die "$qb_url: body of $qb_size bytes, want $qb_n (status not 200?)"
  done
  set +f
}

# The key log: the harness exports SSLKEYLOGFILE too; make sure it is.
if [ -n "${QB_KEYLOG-}" ]; then
  SSLKEYLOGFILE=$QB_KEYLOG
  export SSLKEYLOGFILE
fi
