#!/bin/sh
# Wait until every shard of a run has finished (docker/shard.sh writes one
# marker per shard), merge the shard run directories into one run, check that
# no cell was lost or duplicated, and build the static report site.
#
# Output under $RESULTS_DIR/$RUN_NAME/:
#   merged/   the merged run directory (run.json, cells/, summary.csv)
#   site/     the HTML report (quicbench report)
#
# Environment (the same ConfigMap as the shards):
#   SHARDS        shard count N (required)
#   RUN_NAME      common run name (default: quicbench)
#   RESULTS_DIR   shared results directory (default: /results)
#   WAIT_TIMEOUT  seconds to wait for the shards (default: 86400); the wait is
#                 bounded so a shard that failed for good ends this job too
#   WAIT_POLL     seconds between looks (default: 15)
#   ALLOW_PARTIAL 1: after the timeout, merge the shards that did finish
#                 instead of failing (the report then lacks cells; default 0)
#   ALLOW_MIXED_BACKENDS  1: merge shards that used different link backends
#                 (default 0: refuse, the run would not be comparable)
set -eu

QB=${QUICBENCH_BIN:-/usr/local/bin/quicbench}
say() { printf 'quicbench-merge: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 2
}
is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac }

count=${SHARDS:-}
run_name=${RUN_NAME:-quicbench}
results=${RESULTS_DIR:-/results}
timeout=${WAIT_TIMEOUT:-86400}
poll=${WAIT_POLL:-15}

if ! is_uint "$count" || [ "$count" -lt 1 ]; then
	die "SHARDS=${count:-<unset>} must be a positive number"
fi
is_uint "$timeout" || die "WAIT_TIMEOUT=$timeout must be a number of seconds"
if ! is_uint "$poll" || [ "$poll" -lt 1 ]; then
	die "WAIT_POLL=$poll must be a positive number of seconds"
fi
case "$run_name" in
'' | */* | .*) die "RUN_NAME '$run_name' must be a plain directory name" ;;
esac
base=$results/$run_name

# Prints the indices of the shards without a done marker.
missing() {
	i=0
	while [ "$i" -lt "$count" ]; do
		[ -f "$base/done/shard-$i-of-$count" ] || printf '%s ' "$i"
		i=$((i + 1))
	done
}

waited=0
last_said=-1
while :; do
	left=$(missing)
	[ -z "$left" ] && break
	if [ "$waited" -ge "$timeout" ]; then
		if [ "${ALLOW_PARTIAL:-0}" = 1 ]; then
			say "timeout after ${waited}s; shards still missing: $left; merging the others (ALLOW_PARTIAL=1)"
			break
		fi
		die "timeout after ${waited}s; shards still missing: $left (see the shard job's pods)"
	fi
	if [ $((waited / 300)) -ne "$last_said" ]; then
		say "waiting for shards of $run_name: missing $left"
		last_said=$((waited / 300))
	fi
	sleep "$poll"
	waited=$((waited + poll))
done

# Shard run directories in index order, as recorded by each shard.
set --
expected=0
i=0
while [ "$i" -lt "$count" ]; do
	m=$base/done/shard-$i-of-$count
	if [ -f "$m" ]; then
		d=$(cat "$m")
		[ -f "$d/run.json" ] || die "marker $m names $d, which has no run.json"
		n=$(find "$d/cells" -maxdepth 1 -name '*.json' | wc -l)
		expected=$((expected + n))
		set -- "$@" "$d"
	fi
	i=$((i + 1))
done
[ "$#" -ge 1 ] || die "no finished shard to merge"

# Shards that ran on different link backends (nodes with and without
# sch_netem under QUICBENCH_BACKEND=auto) do not make one comparable run.
backends=$(for d in "$@"; do
	grep -o '"backend": *"[^"]*"' "$d/run.json" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/'
done | sort -u | tr '\n' ' ')
case "$backends" in
*" "?*)
	if [ "${ALLOW_MIXED_BACKENDS:-0}" != 1 ]; then
		die "shards ran on different link backends ($backends); pin QUICBENCH_BACKEND and re-run the odd shards, or set ALLOW_MIXED_BACKENDS=1"
	fi
	say "warning: shards ran on different link backends: $backends(ALLOW_MIXED_BACKENDS=1)"
	;;
esac

# Merge into a fresh directory (quicbench merge wants a new or empty one),
# then swap it in: a re-run replaces the old
# merge whole instead of mixing into it.
tmp=$base/merged.tmp
rm -rf "$tmp"
say "merging $# shard(s) of $run_name"
"$QB" merge "$@" --out "$tmp"

got=$(find "$tmp/cells" -maxdepth 1 -name '*.json' | wc -l)
if [ "$got" -ne "$expected" ]; then
	die "merged run has $got cell files, the shards have $expected together"
fi
rm -rf "$base/merged"
mv "$tmp" "$base/merged"
say "merged $got cells into $base/merged"

"$QB" report "$base/merged" --out "$base/site"
say "report written to $base/site"
