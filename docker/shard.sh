#!/bin/sh
# Run one shard of a matrix into a shared results directory, the way a pod of
# the Kubernetes Indexed Job does (deploy/k8s). Safe to run again for the same
# shard: a finished shard is skipped, an interrupted one is resumed.
#
# Layout under $RESULTS_DIR/$RUN_NAME/ (one RUN_NAME for all shards of a run):
#   shards/<UTC timestamp>-shard-I-of-N/   the run directory of shard I
#   done/shard-I-of-N                      written when shard I finished; holds
#                                          the path of its run directory
#
# Environment (deploy/k8s/kustomization.yaml sets it from one ConfigMap):
#   JOB_COMPLETION_INDEX  shard index I, 0..N-1 (Kubernetes sets it in an
#                         Indexed Job); or pass I as the first argument
#   SHARDS                shard count N; or pass N as the second argument
#   RUN_NAME              common run name (default: quicbench)
#   RESULTS_DIR           shared results directory (default: /results)
#   PRESET                quick|full (default: quick), unless MATRIX is set
#   MATRIX                path of a matrix TOML file (e.g. from a ConfigMap)
#   SEED                  --seed for every shard (optional; the matrix has one)
#   QUICBENCH_BACKEND     auto|userspace|kernel (default: auto)
#   RUN_ARGS              extra arguments for `quicbench run` (word-split)
set -eu

QB=${QUICBENCH_BIN:-/usr/local/bin/quicbench}
say() { printf 'quicbench-shard: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 2
}
is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac }

index=${1:-${JOB_COMPLETION_INDEX:-}}
count=${2:-${SHARDS:-}}
run_name=${RUN_NAME:-quicbench}
results=${RESULTS_DIR:-/results}
backend=${QUICBENCH_BACKEND:-auto}

is_uint "$index" || die "shard index ${index:-<unset>} is not a number (set JOB_COMPLETION_INDEX or pass I N)"
is_uint "$count" || die "shard count ${count:-<unset>} is not a number (set SHARDS or pass I N)"
[ "$count" -ge 1 ] || die "shard count must be at least 1, got $count"
[ "$index" -lt "$count" ] || die "shard index $index is out of range for $count shards (0..$((count - 1)))"
case "$run_name" in
'' | */* | .*) die "RUN_NAME '$run_name' must be a plain directory name" ;;
esac

base=$results/$run_name
tag=shard-$index-of-$count
marker=$base/done/$tag
mkdir -p "$base/shards" "$base/done"

if [ -f "$marker" ]; then
	say "shard $index/$count already finished: $(cat "$marker")"
	exit 0
fi

if [ -n "${MATRIX:-}" ]; then
	[ -r "$MATRIX" ] || die "matrix file $MATRIX is not readable"
	set -- --matrix "$MATRIX"
else
	set -- --preset "${PRESET:-quick}"
fi
if [ -n "${SEED:-}" ]; then
	set -- "$@" --seed "$SEED"
fi

# The newest run directory of this shard: <UTC stamp>-<tag>, or
# <stamp>-<tag>-<n> when quicbench found the name taken within one second.
# The glob sorts by stamp, so the last match is the newest.
newest_dir() {
	found=
	for d in "$base"/shards/*-"$tag"*; do
		case "${d##*/}" in
		*-"$tag" | *-"$tag"-[0-9]*) ;;
		*) continue ;;
		esac
		if [ -f "$d/run.json" ]; then found=$d; fi
	done
	printf '%s' "$found"
}

# An earlier attempt at this shard, if a pod died mid-run.
previous=$(newest_dir)

if [ -n "$previous" ]; then
	# --resume skips the cells already in that run directory. quicbench
	# checks that the matrix and shard given match the ones it was started
	# with, so they are given again, exactly as the first time.
	say "resuming shard $index/$count in $previous"
	# shellcheck disable=SC2086 # RUN_ARGS is a word list by design
	"$QB" run "$@" --resume "$previous" --shard "$index/$count" \
		--backend "$backend" ${RUN_ARGS:-}
	dir=$previous
else
	say "running shard $index/$count of $run_name (backend $backend)"
	# shellcheck disable=SC2086 # RUN_ARGS is a word list by design
	"$QB" run "$@" --out "$base/shards" --name "$tag" --shard "$index/$count" \
		--backend "$backend" ${RUN_ARGS:-}
	dir=$(newest_dir)
	[ -n "$dir" ] || die "quicbench run succeeded but left no $base/shards/*-$tag/run.json"
fi

# Written last and renamed into place, so the merge step never sees a marker
# for a shard that has not finished.
printf '%s\n' "$dir" >"$marker.tmp.$$"
mv "$marker.tmp.$$" "$marker"
say "shard $index/$count finished: $dir ($(find "$dir/cells" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l) cell files)"
