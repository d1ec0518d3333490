#!/bin/sh
# Object-store mode, first step of the merge pod: wait (bounded by
# WAIT_TIMEOUT) until all SHARDS done markers are in $S3_URL/$RUN_NAME/done/,
# then copy shards/ and done/ to the pod-local /results/$RUN_NAME, where the
# markers' paths are valid again. quicbench-merge runs next.
set -eu
say() { printf 'quicbench-download: %s\n' "$*" >&2; }
: "${S3_URL:?set S3_URL (s3://bucket/prefix) in the quicbench-config ConfigMap}"
: "${RUN_NAME:?}"
: "${SHARDS:?}"
local_base=${RESULTS_DIR:-/results}/$RUN_NAME
remote=${S3_URL%/}/$RUN_NAME
timeout=${WAIT_TIMEOUT:-86400}
poll=${WAIT_POLL:-30}

waited=0
while :; do
	have=$(aws s3 ls "$remote/done/" 2>/dev/null | grep -c " shard-[0-9]*-of-$SHARDS\$" || true)
	[ "$have" -ge "$SHARDS" ] && break
	if [ "$waited" -ge "$timeout" ]; then
		if [ "${ALLOW_PARTIAL:-0}" = 1 ]; then
			say "timeout after ${waited}s with $have of $SHARDS shards; merging those (ALLOW_PARTIAL=1)"
			break
		fi
		say "timeout after ${waited}s: $have of $SHARDS shards finished"
		exit 2
	fi
	say "$have of $SHARDS shards finished; waiting"
	sleep "$poll"
	waited=$((waited + poll))
done
mkdir -p "$local_base"
aws s3 sync --no-progress "$remote/shards" "$local_base/shards"
aws s3 sync --no-progress "$remote/done" "$local_base/done"
say "downloaded $remote to $local_base"
