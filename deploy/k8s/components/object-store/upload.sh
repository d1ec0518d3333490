#!/bin/sh
# Object-store mode, last step of a pod: copy this pod's part of the run from
# the pod-local /results/$RUN_NAME to $S3_URL/$RUN_NAME.
#   upload.sh shard   the shard's run directory, then its done marker (last,
#                     so the merge step never sees a marker before the data)
#   upload.sh merge   merged/ and site/
# Environment: RUN_NAME, S3_URL (s3://bucket/prefix), RESULTS_DIR, and the AWS
# CLI's own (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
# AWS_ENDPOINT_URL for S3-compatible stores) from the quicbench-s3 Secret.
set -eu
say() { printf 'quicbench-upload: %s\n' "$*" >&2; }
: "${S3_URL:?set S3_URL (s3://bucket/prefix) in the quicbench-config ConfigMap}"
: "${RUN_NAME:?}"
local_base=${RESULTS_DIR:-/results}/$RUN_NAME
remote=${S3_URL%/}/$RUN_NAME

case "${1:-}" in
shard)
	[ -d "$local_base/shards" ] || { say "no $local_base/shards: did the shard run?"; exit 2; }
	aws s3 sync --no-progress "$local_base/shards" "$remote/shards"
	aws s3 sync --no-progress "$local_base/done" "$remote/done"
	;;
merge)
	aws s3 sync --no-progress --delete "$local_base/merged" "$remote/merged"
	aws s3 sync --no-progress --delete "$local_base/site" "$remote/site"
	;;
*)
	say "usage: upload.sh shard|merge"
	exit 2
	;;
esac
say "uploaded to $remote"
