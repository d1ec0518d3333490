#!/usr/bin/env bash
# Behaviour tests of the container scripts (docker/entrypoint.sh, shard.sh,
# merge.sh) against a stub quicbench that records its arguments and fakes run
# directories. They check the scripts' own logic: argument handling, resume
# after a failed shard, idempotent re-runs, waiting, merge cell-count check,
# partial merges. The real quicbench is exercised by the Rust test suites.
# Needs only bash and coreutils; run by scripts/validate-deploy.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

passed=0
failed=0
check() { # check NAME COMMAND...
	local name=$1
	shift
	if "$@" >"$T/check.out" 2>&1; then
		passed=$((passed + 1))
		echo "  ok: $name"
	else
		failed=$((failed + 1))
		echo "  FAILED: $name"
		sed 's/^/    | /' "$T/check.out"
	fi
}

# ---- the stub ------------------------------------------------------------------
# Cells 0..STUB_CELLS-1; shard I of N owns the cells k with k % N == I (the
# harness's rule). STUB_FAIL_AFTER=k makes a fresh run die after writing k
# cells, as a killed pod would.
cat >"$T/quicbench" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
echo "$*" >>"$STUB_LOG"
cmd=$1; shift
total=${STUB_CELLS:-10}
case "$cmd" in
doctor) echo "stub doctor: backend userspace" ;;
run)
	out= name= shard=0/1 resume=
	while [ $# -gt 0 ]; do
		case "$1" in
		--out) out=$2; shift ;;
		--out=*) out=${1#--out=} ;;
		--name) name=$2; shift ;;
		--shard) shard=$2; shift ;;
		--resume) resume=$2; shift ;;
		esac
		shift
	done
	if [ -n "$resume" ]; then
		dir=$resume
		# quicbench refuses to resume with another matrix or shard.
		grep -q "\"shard\": \"$shard\"" "$dir/run.json" || { echo "stub: shard mismatch" >&2; exit 2; }
	else
		dir=$out/$(date -u +%Y%m%dT%H%M%S%N)-$name
		mkdir -p "$dir/cells"
	fi
	printf '{\n  "shard": "%s",\n  "backend": "%s"\n}\n' "$shard" "${STUB_BACKEND:-userspace}" >"$dir/run.json"
	i=${shard%/*} n=${shard#*/} written=0
	for ((k = 0; k < total; k++)); do
		((k % n == i)) || continue
		[ -f "$dir/cells/c$k.json" ] && continue
		if [ -z "$resume" ] && [ -n "${STUB_FAIL_AFTER:-}" ] && ((written >= STUB_FAIL_AFTER)); then
			echo "stub: simulated crash" >&2; exit 3
		fi
		echo "{\"cell\":$k}" >"$dir/cells/c$k.json"
		written=$((written + 1))
	done
	echo "a,b" >"$dir/summary.csv"
	;;
merge)
	dirs=()
	while [ $# -gt 0 ]; do
		case "$1" in --out) out=$2; shift ;; *) dirs+=("$1") ;; esac
		shift
	done
	mkdir -p "$out/cells"
	for d in "${dirs[@]}"; do cp "$d"/cells/*.json "$out/cells/"; done
	if [ -n "${STUB_MERGE_DROP:-}" ]; then rm -f "$out/cells/c0.json"; fi
	echo merged >"$out/run.json"
	;;
report)
	# Only `report RUN --out DIR` writes a site (other argument lists, such as
	# the two-host client's, are just logged: nothing lands in the cwd).
	if [ "${2:-}" = --out ]; then
		run=$1 out=$3
		mkdir -p "$out"
		echo "<html>$(find "$run/cells" -name '*.json' | wc -l) cells</html>" >"$out/index.html"
	fi
	;;
*) echo "stub: unknown command $cmd" >&2; exit 2 ;;
esac
EOF
chmod +x "$T/quicbench"
export QUICBENCH_BIN=$T/quicbench STUB_LOG=$T/log RESULTS_DIR=$T/results
: >"$STUB_LOG"

shard() { RUN_NAME=$1 SHARDS=$2 JOB_COMPLETION_INDEX=$3 bash "$ROOT/docker/shard.sh"; }
merge() { RUN_NAME=$1 SHARDS=$2 WAIT_TIMEOUT=${WAIT_TIMEOUT:-0} WAIT_POLL=1 bash "$ROOT/docker/merge.sh"; }
cells() { find "$1" -name '*.json' | wc -l; }

# ---- shard.sh --------------------------------------------------------------------
echo "shard.sh / merge.sh:"
check "shard 0/3 runs fresh with --shard 0/3 --preset quick --backend auto" \
	bash -c "$(declare -f shard); shard r1 3 0 && grep -q -- 'run --preset quick --out $T/results/r1/shards --name shard-0-of-3 --shard 0/3 --backend auto' $STUB_LOG"
check "a crashed shard leaves no done marker" \
	bash -c "$(declare -f shard); ! STUB_FAIL_AFTER=1 shard r1 3 1 && [ ! -e $T/results/r1/done/shard-1-of-3 ]"
check "the retried shard resumes its run directory" \
	bash -c "$(declare -f shard); shard r1 3 1 && grep -q -- 'run --preset quick --resume $T/results/r1/shards/.*-shard-1-of-3 --shard 1/3 --backend auto' $STUB_LOG && [ -f $T/results/r1/done/shard-1-of-3 ]"
check "shard 2/3 with MATRIX and SEED" \
	bash -c "$(declare -f shard); echo 'x=1' > $T/m.toml; MATRIX=$T/m.toml SEED=7 shard r1 3 2 && grep -q -- 'run --matrix $T/m.toml --seed 7 --out' $STUB_LOG"
check "a finished shard is not run again" \
	bash -c "$(declare -f shard); n=\$(wc -l < $STUB_LOG); shard r1 3 0 && [ \$(wc -l < $STUB_LOG) = \$n ]"
check "a collision-suffixed run directory (-2) is found and resumed" \
	bash -c "$(declare -f shard); d=$T/results/r5/shards/20260101T000000Z-shard-0-of-1-2; mkdir -p \$d/cells;
		printf '{\"shard\": \"0/1\"}' > \$d/run.json; mkdir -p $T/results/r5/shards/20260101T000000Z-shard-0-of-10;
		shard r5 1 0 && grep -q -- \"--resume \$d --shard 0/1\" $STUB_LOG && grep -qx \$d $T/results/r5/done/shard-0-of-1"
check "index out of range is refused" bash -c "$(declare -f shard); ! shard r1 3 3"
check "a missing index is refused" bash -c "! RUN_NAME=r1 SHARDS=3 bash $ROOT/docker/shard.sh"
check "a RUN_NAME with a slash is refused" bash -c "$(declare -f shard); ! shard ../x 3 0"

# ---- merge.sh --------------------------------------------------------------------
check "merge: all 10 cells merged, report written" \
	bash -c "$(declare -f merge cells); merge r1 3 && [ \$(cells $T/results/r1/merged/cells) = 10 ] && grep -q '10 cells' $T/results/r1/site/index.html"
check "merge again replaces the merge whole" \
	bash -c "$(declare -f merge cells); touch $T/results/r1/merged/cells/stale.json; merge r1 3 && [ \$(cells $T/results/r1/merged/cells) = 10 ]"
check "merge: a lost cell is detected and the previous merge kept" \
	bash -c "$(declare -f merge cells); ! STUB_MERGE_DROP=1 merge r1 3 && [ \$(cells $T/results/r1/merged/cells) = 10 ]"
check "merge: shards on different backends are refused" \
	bash -c "$(declare -f shard merge); shard r4 2 0 && STUB_BACKEND=kernel shard r4 2 1 && ! merge r4 2 2> $T/err && grep -q 'different link backends' $T/err"
check "merge: ALLOW_MIXED_BACKENDS=1 merges them anyway" \
	bash -c "$(declare -f merge); ALLOW_MIXED_BACKENDS=1 merge r4 2"
check "merge: a missing shard fails after the timeout" \
	bash -c "$(declare -f shard merge); shard r2 2 0 && ! WAIT_TIMEOUT=1 merge r2 2"
check "merge: ALLOW_PARTIAL=1 merges the finished shards" \
	bash -c "$(declare -f merge cells); ALLOW_PARTIAL=1 merge r2 2 && [ \$(cells $T/results/r2/merged/cells) = 5 ]"
check "merge: waits for a shard that finishes meanwhile" \
	bash -c "$(declare -f shard merge cells); shard r3 2 0; (sleep 2; shard r3 2 1) & WAIT_TIMEOUT=20 merge r3 2; s=\$?; wait; [ \$s = 0 ] && [ \$(cells $T/results/r3/merged/cells) = 10 ]"

# ---- object-store component (upload.sh, download.sh) -----------------------------
# A stub `aws` maps s3://bucket/key to $T/s3/bucket/key (ls and sync only), so
# the pods' sequence runs as in the cluster, each "pod" with its own
# pod-local results directory (the emptyDir).
echo "object-store component:"
mkdir -p "$T/bin"
cat >"$T/bin/aws" <<'EOF2'
#!/usr/bin/env bash
set -euo pipefail
[ "$1" = s3 ] || { echo "stub aws: only s3" >&2; exit 2; }
shift
local_path() { case "$1" in s3://*) echo "$STUB_S3/${1#s3://}" ;; *) echo "$1" ;; esac; }
cmd=$1; shift
args=()
for a in "$@"; do case "$a" in --*) ;; *) args+=("$a") ;; esac; done
case "$cmd" in
ls)
	d=$(local_path "${args[0]}")
	[ -d "$d" ] || exit 1
	for f in "$d"/*; do [ -e "$f" ] && echo "2026-01-01 00:00:00 $(wc -c < "$f") $(basename "$f")"; done
	;;
sync)
	src=$(local_path "${args[0]}") dst=$(local_path "${args[1]}")
	[ -d "$src" ] || exit 0
	mkdir -p "$dst" && cp -R "$src"/. "$dst"/
	;;
*) echo "stub aws: $cmd unsupported" >&2; exit 2 ;;
esac
EOF2
chmod +x "$T/bin/aws"
OS=$ROOT/deploy/k8s/components/object-store
pod() { # pod NAME COMMAND...: a pod with its own emptyDir at RESULTS_DIR
	PATH=$T/bin:$PATH STUB_S3=$T/s3 S3_URL=s3://bucket/runs RUN_NAME=os SHARDS=2 \
		RESULTS_DIR=$T/pods/$1 WAIT_TIMEOUT=${WAIT_TIMEOUT:-0} WAIT_POLL=1 "${@:2}"
}
check "shard pods: quicbench-shard, then upload.sh shard" bash -c "$(declare -f pod); OS=$OS T=$T
	for i in 0 1; do
		JOB_COMPLETION_INDEX=\$i pod shard\$i bash $ROOT/docker/shard.sh &&
			pod shard\$i sh $OS/upload.sh shard || exit 1
	done
	[ -f $T/s3/bucket/runs/os/done/shard-1-of-2 ] && ls $T/s3/bucket/runs/os/shards | grep -q shard-0-of-2"
check "merge pod: download.sh, quicbench-merge (no wait), upload.sh merge" bash -c "$(declare -f pod); OS=$OS T=$T
	pod merge sh $OS/download.sh && pod merge bash $ROOT/docker/merge.sh && pod merge sh $OS/upload.sh merge &&
	[ \$(ls $T/s3/bucket/runs/os/merged/cells | wc -l) = 10 ] && [ -f $T/s3/bucket/runs/os/site/index.html ]"
check "download.sh gives up after WAIT_TIMEOUT when a shard never arrives" bash -c "$(declare -f pod); OS=$OS T=$T
	rm $T/s3/bucket/runs/os/done/shard-1-of-2
	! WAIT_TIMEOUT=1 pod merge2 sh $OS/download.sh"

# ---- entrypoint.sh ---------------------------------------------------------------
echo "entrypoint.sh:"
ep() { QUICBENCH_BACKEND=${QUICBENCH_BACKEND-auto} bash "$ROOT/docker/entrypoint.sh" "$@"; }
check "run gets --backend \$QUICBENCH_BACKEND and doctor runs first" \
	bash -c "$(declare -f ep); : > $STUB_LOG; ep run --preset quick --out $T/ep && sed -n 1p $STUB_LOG | grep -qx doctor && sed -n 2p $STUB_LOG | grep -qx -- 'run --preset quick --out $T/ep --backend auto'"
check "an explicit --backend is kept as is" \
	bash -c "$(declare -f ep); : > $STUB_LOG; ep run --out=$T/ep --backend kernel && tail -n 1 $STUB_LOG | grep -qx -- 'run --out=$T/ep --backend kernel'"
check "QUICBENCH_DOCTOR=0 skips doctor" \
	bash -c "$(declare -f ep); : > $STUB_LOG; QUICBENCH_DOCTOR=0 ep run --out $T/ep && ! grep -q doctor $STUB_LOG"
check "an unwritable results directory stops the run" \
	bash -c "$(declare -f ep); : > $STUB_LOG; touch $T/file; ! ep run --out $T/file/sub && [ ! -s $STUB_LOG ]"
check "'link' goes to quicbench, not coreutils' link" \
	bash -c "$(declare -f ep); : > $STUB_LOG; ep link --spec x 2>/dev/null; grep -qx -- 'link --spec x' $STUB_LOG"
check "another program runs as is" bash -c "$(declare -f ep); [ \"\$(ep echo hello)\" = hello ]"
check "merge passes through untouched" \
	bash -c "$(declare -f ep); : > $STUB_LOG; ep merge a b --out c; grep -qx -- 'merge a b --out c' $STUB_LOG"

# ---- two-host.sh ----------------------------------------------------------------
# In a network namespace of our own (nothing leaves it): a veth with the
# client's address of the two-host network, so `ip route get` and `tc` act on
# a real interface. Where the kernel lacks sch_netem (as on the project's CI
# machine) this exercises the failure path; elsewhere the qdisc is checked.
echo "two-host.sh:"
# in_ns 'SHELL CODE': runs it in a fresh network namespace with the veth up
# and `th` = docker/two-host.sh with the test's trust file and output dir.
in_ns() {
	cat >"$T/ns-body.sh" <<EOF2
set -eu
ip link add qbv0 type veth peer name qbv1
ip addr add 198.18.100.20/24 dev qbv0
ip link set qbv0 up
ip link set qbv1 up
th() { QB_PEER_ADDR=\${QB_PEER_ADDR-198.18.100.10} QB_TRUST=$T/shared/trust.pem QB_OUT=$T/th bash "$ROOT/docker/two-host.sh" "\$@"; }
$1
EOF2
	unshare --net bash "$T/ns-body.sh"
}
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v tc >/dev/null &&
	unshare --net true 2>/dev/null; then
	mkdir -p "$T/shared"
	if unshare --net sh -c "ip link add a type veth peer name b && tc qdisc add dev a root netem delay 1ms" 2>/dev/null; then
		check "netem is installed on the interface routing to the peer" in_ns "
			echo x > $T/shared/trust.pem
			QB_NETEM='delay 5ms' th client doctor
			tc qdisc show dev qbv0 | grep -q netem"
	else
		check "without sch_netem: QB_NETEM_REQUIRED=1 fails and says to load sch_netem" in_ns "
			echo x > $T/shared/trust.pem
			! QB_NETEM='delay 5ms' th client doctor 2> $T/err
			grep -q 'modprobe sch_netem' $T/err"
	fi
	: >"$STUB_LOG"
	check "client loops over protocols and repetitions, then the probe" in_ns "
		echo x > $T/shared/trust.pem
		QB_NETEM='delay 5ms' QB_NETEM_REQUIRED=0 QB_PROTOCOLS='h2 h3' QB_REPS=2 \\
			QB_PROBE_ARGS='doctor --probe' th client report --proto {proto} url
		[ \$(grep -c -x -- 'report --proto h2 url' $STUB_LOG) = 2 ]
		[ \$(grep -c -x -- 'report --proto h3 url' $STUB_LOG) = 2 ]
		[ \$(grep -c -x -- 'doctor --probe' $STUB_LOG) = 2 ]
		[ -f $T/th/h3-2.out ] && [ -f $T/th/udp-probe-1.out ]"
	: >"$STUB_LOG"
	check "server removes a stale certificate and execs quicbench" in_ns "
		echo old > $T/shared/trust.pem
		QB_PEER_ADDR=198.18.100.20 th server doctor --x
		[ ! -e $T/shared/trust.pem ]
		grep -qx -- 'doctor --x' $STUB_LOG"
	check "a peer outside the benchmarking ranges is refused" in_ns "
		! QB_PEER_ADDR=10.1.2.3 th client doctor 2> $T/err
		grep -q 'outside 198.18.0.0/15' $T/err"
	check "the client gives up when the server never writes its certificate" in_ns "
		rm -f $T/shared/trust.pem
		! QB_WAIT=1 th client doctor"
else
	echo "  SKIPPED: two-host.sh checks need root, unshare and tc (a network namespace of their own)"
fi

# ---- end to end with the real quicbench ---------------------------------------
# QUICBENCH_E2E_BIN=path/to/quicbench (tests/deploy_files.rs passes the binary
# cargo just built): a 3-cell matrix in 2 shards through shard.sh and merge.sh,
# with a first attempt of shard 0 that stops after one cell, as a pod that
# died would. Needs root (namespaces, TUN); a few seconds.
echo "end to end (real quicbench):"
E2E=${QUICBENCH_E2E_BIN:-}
if [ -n "$E2E" ] && [ -x "$E2E" ] && [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ]; then
	# The smoke matrix the image ships: 3 cells (h2, h3 goodput; udp echo).
	cp "$ROOT/docker/smoke.toml" "$T/smoke.toml"
	e2e() { # the environment the Kubernetes ConfigMap would give
		QUICBENCH_BIN=$E2E RESULTS_DIR=$T/e2e RUN_NAME=smoke SHARDS=2 MATRIX=$T/smoke.toml \
			QUICBENCH_BACKEND=userspace WAIT_TIMEOUT=0 "$@"
	}
	check "a first attempt of shard 0 dies after one cell" \
		timeout 300 "$E2E" run --matrix "$T/smoke.toml" --out "$T/e2e/smoke/shards" --name shard-0-of-2 \
		--shard 0/2 --backend userspace --max-cells 1
	check "shard.sh resumes shard 0 and skips its finished cell" \
		bash -c "$(declare -f e2e); E2E=$E2E T=$T; JOB_COMPLETION_INDEX=0 e2e timeout 300 bash $ROOT/docker/shard.sh > $T/e2e-s0.log 2>&1 && grep -q '1 skipped (already done)' $T/e2e-s0.log"
	check "shard.sh runs shard 1" \
		bash -c "$(declare -f e2e); E2E=$E2E T=$T; JOB_COMPLETION_INDEX=1 e2e timeout 300 bash $ROOT/docker/shard.sh"
	merge_status=0
	e2e timeout 300 bash "$ROOT/docker/merge.sh" >"$T/e2e-merge.log" 2>&1 || merge_status=$?
	check "merge.sh merges all 3 cells into one run (shard: null)" bash -c "cat $T/e2e-merge.log; 
		[ \$(ls $T/e2e/smoke/merged/cells | wc -l) = 3 ] &&
		grep -q 'merged 3 cells' $T/e2e-merge.log &&
		grep -q '\"shard\": null' $T/e2e/smoke/merged/run.json"
	if [ "$merge_status" = 0 ]; then
		check "merge.sh built the report site" test -n "$(ls -A "$T/e2e/smoke/site")"
	elif report_err=$("$E2E" report "$T/e2e/smoke/merged" --out "$T/site-direct" 2>&1); then
		check "merge.sh failed although quicbench report works" false
	else
		echo "  SKIPPED: report step: quicbench report fails on its own: $report_err"
	fi
	check "entrypoint.sh: doctor, then run with QUICBENCH_BACKEND recorded in run.json" bash -c "
		QUICBENCH_BIN=$E2E QUICBENCH_BACKEND=userspace timeout 300 bash $ROOT/docker/entrypoint.sh \
			run --matrix $T/smoke.toml --out $T/ep-e2e --max-cells 1 > $T/ep-e2e.log 2>&1 || { cat $T/ep-e2e.log; exit 1; }
		grep -q 'quicbench doctor' $T/ep-e2e.log && grep -q '\"backend\": \"userspace\"' $T/ep-e2e/*-smoke/run.json"

	# The two-container topology with the commands and defaults of
	# docker/compose.two-host.yml, in two anonymous network namespaces joined
	# by a veth pair (as the bridge would join two containers): serve in one,
	# get for each protocol and udp-probe in the other. No netem here (the
	# project's CI kernel has none), so QB_NETEM is empty.
	if command -v nsenter >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
		python3 - "$ROOT/docker/compose.two-host.yml" "$T/shared" >"$T/two-host-args.sh" <<'EOF2'
import re, shlex, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
shared = sys.argv[2]
def default(v):  # "${VAR:-default}" -> default
    m = re.fullmatch(r"\$\{\w+:-(.*)\}", str(v))
    return m.group(1) if m else str(v)
def args(cmd):
    return " ".join(shlex.quote(a.replace("/shared/", shared + "/")) for a in cmd)
s, c = doc["services"]["server"], doc["services"]["client"]
print(f"server_cmd=({args(s['command'])})")
print(f"client_cmd=({args(c['command'])})")
print(f"server_addr={shlex.quote(s['networks']['bench']['ipv4_address'])}")
print(f"client_addr={shlex.quote(c['networks']['bench']['ipv4_address'])}")
print(f"protocols={shlex.quote(default(c['environment']['QB_PROTOCOLS']))}")
print(f"probe_args={shlex.quote(default(c['environment']['QB_PROBE_ARGS']).replace('/shared/', shared + '/'))}")
EOF2
		cat >"$T/two-host-e2e.sh" <<EOF2
set -eu
. $T/two-host-args.sh
ip link set lo up
unshare --net sleep 120 &
peer=\$!
# Wait until the child is in its own namespace (bounded).
for _ in \$(seq 100); do
	[ "\$(readlink /proc/\$peer/ns/net)" != "\$(readlink /proc/self/ns/net)" ] && break
	sleep 0.05
done
ip link add qbs type veth peer name qbc
ip link set qbc netns \$peer
ip addr add \$server_addr/24 dev qbs
ip link set qbs up
nsenter --net=/proc/\$peer/ns/net sh -c "ip link set lo up; ip addr add \$client_addr/24 dev qbc; ip link set qbc up"
rm -rf $T/shared $T/two-host-out
mkdir -p $T/shared
QUICBENCH_BIN=$E2E QB_PEER_ADDR=\$client_addr QB_NETEM= QB_TRUST=$T/shared/trust.pem \\
	bash $ROOT/docker/two-host.sh "\${server_cmd[@]}" > $T/two-host-server.log 2>&1 &
srv=\$!
rc=0
nsenter --net=/proc/\$peer/ns/net env QUICBENCH_BIN=$E2E QB_PEER_ADDR=\$server_addr QB_NETEM= \\
	QB_TRUST=$T/shared/trust.pem QB_OUT=$T/two-host-out QB_REPS=1 QB_WAIT=30 \\
	QB_PROTOCOLS="\$protocols" QB_PROBE_ARGS="\$probe_args" \\
	bash $ROOT/docker/two-host.sh "\${client_cmd[@]}" || rc=\$?
kill \$srv \$peer 2>/dev/null || true
wait 2>/dev/null || true
exit \$rc
EOF2
		check "two-host topology with compose.two-host.yml's commands: 20 verified GETs per protocol, udp-probe" bash -c "
			timeout 120 unshare --net bash $T/two-host-e2e.sh || { cat $T/two-host-server.log; exit 1; }
			. $T/two-host-args.sh
			for p in \$protocols; do
				n=\$(grep -c '\"status\":200,\"verified\":true' $T/two-host-out/\$p-1.out || true)
				[ \"\$n\" = 20 ] || { echo \"\$p: \$n of 20 verified 200 responses\"; cat $T/two-host-out/\$p-1.out; exit 1; }
			done
			grep -q '\"received\": [1-9]' $T/two-host-out/udp-probe-1.out || { cat $T/two-host-out/udp-probe-1.out; exit 1; }"
	else
		echo "  SKIPPED: two-host end to end: needs nsenter and python3 with PyYAML"
	fi
else
	echo "  SKIPPED: needs QUICBENCH_E2E_BIN (a quicbench binary), root and /dev/net/tun"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
