#!/usr/bin/env bash
# The Docker image, end to end: build it, run `doctor` and a small matrix in a
# container through compose, check the run directory it wrote on the host, and
# run the two-container topology (docker/compose.two-host.yml) once.
#
#   bash scripts/docker-e2e.sh               build and run (installs and starts
#                                            an engine where none runs; root)
#   bash scripts/docker-e2e.sh --if-changed  the same, unless the inputs below
#                                            are those of a recorded pass (CI)
#   bash scripts/docker-e2e.sh --record      after a pass, write the inputs'
#                                            hash to .ci/docker-e2e.sha256
#   bash scripts/docker-e2e.sh --hash        print the inputs' hash and exit
#
# Inputs (their hash decides --if-changed): every tracked file under docker/,
# .dockerignore, Cargo.lock and this script. A pass is recorded two ways:
# .ci/docker-e2e.sha256 (committed; a clean clone of main sees it) and a stamp
# in $QUICBENCH_E2E_STATE (this machine; the next CI run after a merge that
# changed an input runs once, then skips).
#
# Environment:
#   QUICBENCH_E2E_BASES  auto (default): the official bases (rust:1-bookworm,
#                        debian:bookworm-slim) when the registry answers, local
#                        ones made with debootstrap otherwise; official; local
#   QUICBENCH_E2E_STATE  cache of local bases and pass stamps
#                        (default /var/cache/quicbench-docker-e2e)
#   QUICBENCH_E2E_OUT    results directory mounted at /results
#                        (default target/docker-e2e/<UTC time>)
#   QUICBENCH_E2E_IMAGE  tag of the image built (default quicbench:e2e)
#   QUICBENCH_E2E_MIRROR Debian mirror for debootstrap (default: the host's
#                        apt source, else http://deb.debian.org/debian)
#   QUICBENCH_E2E_CA     CA bundle given to cargo in the build stage as the
#                        build secret `cacerts` (default: the host's
#                        /etc/ssl/certs/ca-certificates.crt when present;
#                        "none": no secret)
#
# Exit status: 0 passed (or skipped because nothing changed, with --if-changed),
# 1 a check failed, 77 cannot run here (says SKIPPED and why).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MODE=run
case "${1:-}" in
"") ;;
--if-changed) MODE=if-changed ;;
--record) MODE=record ;;
--hash) MODE="hash" ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "docker-e2e: unknown argument '$1' (see --help)" >&2
	exit 2
	;;
esac

STATE=${QUICBENCH_E2E_STATE:-/var/cache/quicbench-docker-e2e}
IMAGE=${QUICBENCH_E2E_IMAGE:-quicbench:e2e}
BASES=${QUICBENCH_E2E_BASES:-auto}
RECORD=.ci/docker-e2e.sha256
LOCAL_BASE=quicbench-local/debian:bookworm-minbase
LOCAL_RUST=quicbench-local/rust:bookworm
T0=$(date +%s)
PHASE=
PHASE_T=$T0
TIMINGS=()

say() { printf 'docker-e2e: %s\n' "$*"; }
die() {
	printf 'docker-e2e: FAILED: %s\n' "$*" >&2
	exit 1
}
skip() {
	printf 'SKIPPED: docker-e2e: %s\n' "$*"
	exit 77
}
end_phase() {
	if [ -n "$PHASE" ]; then
		local now
		now=$(date +%s)
		TIMINGS+=("$(printf '%5d s  %s' $((now - PHASE_T)) "$PHASE")")
		say "phase '$PHASE' took $((now - PHASE_T)) s"
	fi
	PHASE=
}
phase() {
	end_phase
	PHASE=$1
	PHASE_T=$(date +%s)
	echo
	say "=== $PHASE (at $((PHASE_T - T0)) s)"
}

# ---- inputs hash ------------------------------------------------------------------
inputs_hash() {
	local files
	if git rev-parse --git-dir >/dev/null 2>&1; then
		files=$(git ls-files -- docker .dockerignore Cargo.lock scripts/docker-e2e.sh | LC_ALL=C sort)
	else
		files=$(find docker .dockerignore Cargo.lock scripts/docker-e2e.sh -type f | LC_ALL=C sort)
	fi
	[ -n "$files" ] || die "no input files found under $ROOT"
	# Names and contents: a renamed file changes the hash too.
	# shellcheck disable=SC2086 # one file name per line, none with spaces
	sha256sum $files | sha256sum | cut -d' ' -f1
}
HASH=$(inputs_hash)
if [ "$MODE" = hash ]; then
	echo "$HASH"
	exit 0
fi
if [ "$MODE" = if-changed ]; then
	recorded=
	if [ -f "$RECORD" ]; then recorded=$(sed -n 's/^\([0-9a-f]\{64\}\).*/\1/p' "$RECORD" | head -n 1); fi
	if [ "$recorded" = "$HASH" ]; then
		echo "SKIPPED: docker-e2e: docker/, .dockerignore, Cargo.lock and scripts/docker-e2e.sh are those of the pass recorded in $RECORD ($HASH)"
		exit 0
	fi
	if [ -f "$STATE/passed-$HASH" ]; then
		echo "SKIPPED: docker-e2e: these inputs ($HASH) passed on this machine at $(cat "$STATE/passed-$HASH") (stamp $STATE/passed-$HASH; $RECORD has ${recorded:-no hash})"
		exit 0
	fi
	say "inputs changed since the recorded pass ($RECORD: ${recorded:-none}, now $HASH): running"
fi

# ---- preconditions ------------------------------------------------------------------
[ "$(uname -s)" = Linux ] || skip "runs on a Linux host (Docker Desktop: see docs/docker.md for the manual recipe)"
is_root() { [ "$(id -u)" = 0 ]; }

WORK=$(mktemp -d /tmp/quicbench-docker-e2e.XXXXXX)
DOCKERD_PID=
COMPOSE_PROJECTS=()
DOCKER=docker
cleanup() {
	local rc=$?
	set +e
	for p in "${COMPOSE_PROJECTS[@]}"; do
		for f in docker/compose.yml docker/compose.two-host.yml; do
			compose_t 120 "$p" -f "$f" down -v --remove-orphans >/dev/null 2>&1
		done
	done
	if [ -n "$DOCKERD_PID" ]; then
		say "stopping the dockerd this script started (pid $DOCKERD_PID)"
		kill "$DOCKERD_PID" 2>/dev/null
		for _ in $(seq 1 30); do
			kill -0 "$DOCKERD_PID" 2>/dev/null || break
			sleep 1
		done
		if kill -0 "$DOCKERD_PID" 2>/dev/null; then
			say "dockerd (pid $DOCKERD_PID) still running after 30 s; sending SIGKILL"
			kill -9 "$DOCKERD_PID" 2>/dev/null
		fi
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'printf "docker-e2e: FAILED: unexpected error at line %s (exit status %s)\n" "$LINENO" "$?" >&2' ERR
trap 'exit 130' INT TERM

# ---- engine -------------------------------------------------------------------------
phase "engine"
engine_up() { timeout 20 "$DOCKER" info >/dev/null 2>&1; }
if ! command -v docker >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
if command -v "$DOCKER" >/dev/null 2>&1 && engine_up; then
	say "using the running engine ($($DOCKER info --format '{{.ServerVersion}}' 2>/dev/null))"
else
	if ! is_root; then
		why=$(timeout 20 "$DOCKER" info 2>&1 >/dev/null | grep -v '^$' | tail -n 1 | cut -c1-200 || true)
		skip "no Docker engine answers this user ($(id -un): ${why:-no docker client}), and installing or starting one needs root"
	fi
	if ! command -v dockerd >/dev/null 2>&1; then
		command -v apt-get >/dev/null 2>&1 || skip "no Docker engine is reachable and no apt-get to install Debian's docker.io"
		say "no engine: installing Debian's docker.io (apt-get)"
		export DEBIAN_FRONTEND=noninteractive
		if ! timeout 600 apt-get install -y --no-install-recommends docker.io >"$WORK/apt.log" 2>&1; then
			timeout 300 apt-get update >>"$WORK/apt.log" 2>&1 || true
			timeout 600 apt-get install -y --no-install-recommends docker.io >>"$WORK/apt.log" 2>&1 ||
				{
					tail -n 5 "$WORK/apt.log" >&2
					skip "no Docker engine is reachable and 'apt-get install docker.io' failed (log above)"
				}
		fi
	fi
	# No init system here to start it: run it in the background for this
	# script only. No iptables rules, no masquerading and no default bridge:
	# the matrix container has no network, the two-host network is internal.
	say "starting dockerd --iptables=false --ip-masq=false --bridge=none (log $STATE/dockerd.log)"
	mkdir -p "$STATE"
	dockerd --iptables=false --ip-masq=false --bridge=none >"$STATE/dockerd.log" 2>&1 &
	DOCKERD_PID=$!
	for _ in $(seq 1 60); do
		engine_up && break
		kill -0 "$DOCKERD_PID" 2>/dev/null || break
		sleep 1
	done
	if ! engine_up; then
		tail -n 15 "$STATE/dockerd.log" >&2
		die "dockerd did not answer within 60 s (log above)"
	fi
	say "dockerd $($DOCKER info --format '{{.ServerVersion}}') started (pid $DOCKERD_PID); it is stopped when this script ends"
fi

# A client that builds with BuildKit: the buildx plugin where installed, else
# a client older than 23 with DOCKER_BUILDKIT=1 (its built-in BuildKit). A
# newer client without buildx silently uses the legacy builder, which fails on
# the Dockerfile's RUN --mount.
client_major() { "$1" version --format '{{.Client.Version}}' 2>/dev/null | sed 's/^\([0-9]*\).*/\1/'; }
BUILD=()
for c in "$DOCKER" /usr/bin/docker; do
	command -v "$c" >/dev/null 2>&1 || continue
	if "$c" buildx version >/dev/null 2>&1; then
		BUILD=("$c" buildx build --load)
		DOCKER=$c
		break
	fi
	m=$(client_major "$c")
	if [ -n "$m" ] && [ "$m" -lt 23 ]; then
		BUILD=(env DOCKER_BUILDKIT=1 "$c" build)
		DOCKER=$c
		break
	fi
done
[ "${#BUILD[@]}" -gt 0 ] ||
	die "no Docker client here can build with BuildKit: install the buildx plugin (docker-buildx-plugin) or use Debian's docker.io client (/usr/bin/docker); $(command -v docker) is $($DOCKER version --format '{{.Client.Version}}' 2>/dev/null) without buildx"
say "builder: ${BUILD[*]} (client $($DOCKER version --format '{{.Client.Version}}'), engine $($DOCKER version --format '{{.Server.Version}}'))"

# Compose v2 (the plugin) or v1 (docker-compose); the compose files suit both.
if "$DOCKER" compose version >/dev/null 2>&1; then
	COMPOSE=("$DOCKER" compose)
elif command -v docker-compose >/dev/null 2>&1; then
	COMPOSE=(docker-compose)
elif is_root && command -v apt-get >/dev/null 2>&1 &&
	timeout 600 apt-get install -y --no-install-recommends docker-compose >"$WORK/apt-compose.log" 2>&1; then
	COMPOSE=(docker-compose)
else
	die "neither 'docker compose' (v2) nor docker-compose (v1) is available (Debian: apt-get install docker-compose)"
fi
say "compose: ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null)"
# compose_t SECONDS PROJECT ARGS...: compose, bounded in time, with this run's
# image and results directory (QUICBENCH_IMAGE, QUICBENCH_RESULTS exported).
compose_t() {
	local t=$1 p=$2
	shift 2
	timeout "$t" "${COMPOSE[@]}" -p "$p" "$@"
}
export QUICBENCH_IMAGE=$IMAGE

# ---- base images ------------------------------------------------------------------------
phase "base images"
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
if [ "$BASES" = auto ]; then
	if have_image rust:1-bookworm && have_image debian:bookworm-slim; then
		BASES=official
		say "official bases already present: rust:1-bookworm, debian:bookworm-slim"
	elif timeout 90 "$DOCKER" pull -q debian:bookworm-slim >"$WORK/pull.log" 2>&1; then
		BASES=official
	else
		BASES=local
		say "the registry does not answer ('docker pull debian:bookworm-slim': $(tail -n 1 "$WORK/pull.log" | cut -c1-160))"
	fi
fi
case "$BASES" in
official)
	say "building FROM the OFFICIAL bases rust:1-bookworm and debian:bookworm-slim (registry)"
	for i in rust:1-bookworm debian:bookworm-slim; do
		have_image "$i" || timeout 900 "$DOCKER" pull -q "$i" || die "docker pull $i failed"
	done
	RUST_IMAGE=rust:1-bookworm
	RUNTIME_IMAGE=debian:bookworm-slim
	;;
local)
	say "building FROM LOCAL bases made with debootstrap: $LOCAL_BASE and $LOCAL_RUST (Debian's rustc-web/cargo-web)"
	mkdir -p "$STATE"
	tarball=$STATE/bookworm-minbase.tar
	if have_image "$LOCAL_BASE"; then
		say "reusing $LOCAL_BASE ($(${DOCKER} image inspect -f '{{.Created}}' "$LOCAL_BASE"))"
	else
		if [ -s "$tarball" ]; then
			say "importing the cached root file system $tarball"
		else
			is_root || skip "making a base image with debootstrap needs root"
			command -v debootstrap >/dev/null 2>&1 ||
				timeout 600 apt-get install -y --no-install-recommends debootstrap >"$WORK/apt-debootstrap.log" 2>&1 ||
				die "debootstrap is missing and could not be installed"
			mirror=${QUICBENCH_E2E_MIRROR:-$(cat /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null |
				sed -n 's|^URIs: \(http[^ ]*/debian\)$|\1|p; s|^deb \(http[^ ]*/debian\) bookworm main.*|\1|p' | head -n 1 || true)}
			mirror=${mirror:-http://deb.debian.org/debian}
			say "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
			rootfs=$WORK/rootfs
			timeout 900 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
				{
					tail -n 10 "$WORK/debootstrap.log" >&2
					die "debootstrap failed (log above)"
				}
			# Security and point updates too, as the official images have.
			security=${mirror%/debian}/debian-security
			cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
			rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
			tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
			rm -rf "$rootfs"
			say "root file system cached in $tarball ($(du -h "$tarball" | cut -f1))"
		fi
		"$DOCKER" import --change 'CMD ["/bin/bash"]' "$tarball" "$LOCAL_BASE" >/dev/null ||
			die "docker import $tarball failed"
	fi
	if have_image "$LOCAL_RUST"; then
		say "reusing $LOCAL_RUST ($("$DOCKER" run --rm --network none "$LOCAL_RUST" rustc --version))"
	else
		say "building $LOCAL_RUST: $LOCAL_BASE + Debian's rustc-web, cargo-web, gcc"
		mkdir -p "$WORK/rust"
		cat >"$WORK/rust/Dockerfile" <<EOF
FROM $LOCAL_BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      rustc-web cargo-web gcc libc6-dev ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
# Where the official rust image keeps cargo's home; the project's Dockerfile
# mounts its registry cache there.
ENV CARGO_HOME=/usr/local/cargo
EOF
		"${BUILD[@]}" --network host -t "$LOCAL_RUST" "$WORK/rust" >"$WORK/rust-build.log" 2>&1 ||
			{
				tail -n 20 "$WORK/rust-build.log" >&2
				die "building $LOCAL_RUST failed (log above)"
			}
		say "$LOCAL_RUST: $("$DOCKER" run --rm --network none "$LOCAL_RUST" sh -c 'rustc --version; cargo --version' | tr '\n' ' ')"
	fi
	RUST_IMAGE=$LOCAL_RUST
	RUNTIME_IMAGE=$LOCAL_BASE
	;;
*) die "QUICBENCH_E2E_BASES=$BASES: expected auto, official or local" ;;
esac

# ---- image ------------------------------------------------------------------------------
phase "build $IMAGE"
SECRET=()
ca=${QUICBENCH_E2E_CA:-/etc/ssl/certs/ca-certificates.crt}
if [ "$ca" != none ] && [ -s "$ca" ]; then
	SECRET=(--secret "id=cacerts,src=$ca")
	say "cargo in the build stage trusts $ca ($(grep -c 'BEGIN CERTIFICATE' "$ca") certificates; build secret, not in the image)"
else
	say "no CA bundle given to the build stage (QUICBENCH_E2E_CA=${QUICBENCH_E2E_CA:-unset}): cargo uses the build image's roots"
fi
commit=$(git rev-parse HEAD 2>/dev/null || true)
# --network host: RUN steps fetch crates and Debian packages, and an engine
# started without a default bridge has no other network for them.
if ! timeout 3600 "${BUILD[@]}" --progress plain --network host -f docker/Dockerfile -t "$IMAGE" \
	--build-arg "RUST_IMAGE=$RUST_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
	--build-arg "QUICBENCH_GIT_COMMIT=$commit" "${SECRET[@]}" . >"$WORK/build.log" 2>&1; then
	tail -n 40 "$WORK/build.log" >&2
	die "docker build failed (last lines above)"
fi
grep -E '^#[0-9]+ .*(Finished|Compiling quicbench )' "$WORK/build.log" | tail -n 2 | sed 's/^/    /' || true
say "image $IMAGE: $("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'), bases $RUST_IMAGE -> $RUNTIME_IMAGE"
# The runtime image must not carry the CA bundle given to the build stage.
if [ "${#SECRET[@]}" -gt 0 ] && "$DOCKER" run --rm --network none --entrypoint sh "$IMAGE" -c 'test -e /run/secrets/cacerts'; then
	die "the build secret is present in the runtime image"
fi
# Keep the builder's cache bounded (the cargo target cache mount is the bulk);
# drop images this script's earlier builds left untagged.
"$DOCKER" builder prune -f --keep-storage 8gb >/dev/null 2>&1 || true
"$DOCKER" image prune -f --filter "label=org.opencontainers.image.title=quicbench" >/dev/null 2>&1 || true

# ---- a matrix in a container ----------------------------------------------------------------
OUT=${QUICBENCH_E2E_OUT:-$ROOT/target/docker-e2e/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export QUICBENCH_RESULTS=$OUT
P1=quicbench-e2e
COMPOSE_PROJECTS+=("$P1")

phase "doctor in a container (docker/compose.yml)"
compose_t 300 "$P1" -f docker/compose.yml run --rm -T quicbench doctor >"$WORK/doctor.log" 2>&1 ||
	{
		sed 's/^/    /' "$WORK/doctor.log"
		die "quicbench doctor failed in the container (output above)"
	}
grep -v -E '^(Creating|Starting) |^[0-9]+$' "$WORK/doctor.log" | sed 's/^/    /'
grep -q 'backend that .run. will use' "$WORK/doctor.log" || die "quicbench doctor did not say which backend run will use"
grep -q . "$WORK/doctor.log" || die "quicbench doctor printed nothing"

phase "calibrate in a container"
# The verdict depends on the machine (a loaded 2-core host makes the relay
# late): it is reported, not judged. Failing to measure at all is a failure.
calibrate_rc=0
compose_t 300 "$P1" -f docker/compose.yml run --rm -T quicbench calibrate --spec "delay 5ms" --seconds 1 --pps 2000 \
	>"$WORK/calibrate.log" 2>&1 || calibrate_rc=$?
grep -v -E '^(Creating|Starting) |^[0-9]+$' "$WORK/calibrate.log" | sed 's/^/    /'
CALIBRATION=$(grep -m1 '^ *verdict:' "$WORK/calibrate.log" | sed 's/^ *//' || true)
[ -n "$CALIBRATION" ] || die "quicbench calibrate printed no verdict (exit status $calibrate_rc; output above)"
if [ "$calibrate_rc" -ne 0 ]; then
	say "NOTE: calibrate exited with $calibrate_rc: the link missed its spec on this machine now (reported, not a failure of the image)"
fi

phase "smoke matrix in a container (docker/compose.yml)"
compose_t 300 "$P1" -f docker/compose.yml run --rm -T quicbench \
	run --matrix /usr/local/share/quicbench/smoke.toml --out /results >"$WORK/run.log" 2>&1 ||
	{
		tail -n 40 "$WORK/run.log" >&2
		die "the smoke matrix failed in the container (last lines above)"
	}
tail -n 15 "$WORK/run.log" | sed 's/^/    /'

phase "check the run directory on the host"
rundir=$(find "$OUT" -mindepth 2 -maxdepth 2 -name run.json -printf '%h\n' | LC_ALL=C sort | tail -n 1)
[ -n "$rundir" ] || die "no run directory with a run.json under $OUT (the /results volume)"
say "run directory: $rundir"
[ -s "$rundir/summary.csv" ] || die "$rundir/summary.csv is missing or empty"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to check $rundir/run.json"
python3 - "$rundir" <<'EOF' | tee "$WORK/rundir-check.txt" || die "the run directory $rundir failed its checks (above)"
import csv, glob, json, os, sys
rundir = sys.argv[1]
problems = []
run = json.load(open(os.path.join(rundir, "run.json")))
backend = run.get("backend")
if backend not in ("kernel", "userspace"):
    problems.append(f"run.json: backend is {backend!r}, not kernel or userspace")
cells = sorted(glob.glob(os.path.join(rundir, "cells", "*.json")))
# docker/smoke.toml: one link, protocols h2, h3 (goodput) and udp -> 3 cells.
want = 3
if len(cells) != want:
    problems.append(f"{len(cells)} cell files in cells/, the smoke matrix has {want}")
bad = []
for c in cells:
    d = json.load(open(c))
    status = d.get("status") or {}
    if status.get("kind") != "ok":
        bad.append(f"{os.path.basename(c)}: {status.get('kind')!r} {status.get('reason', '')}".strip())
if bad:
    problems.append("cells not ok: " + "; ".join(bad))
rows = list(csv.DictReader(open(os.path.join(rundir, "summary.csv"))))
if not rows:
    problems.append("summary.csv has no rows")
print(f"    backend: {backend} ({run.get('backend_reason', '')})")
print(f"    cells: {len(cells)} of {want}, {len(cells) - len(bad)} ok; summary.csv rows: {len(rows)}")
print(f"    git commit: {run.get('git_commit')}")
for p in problems:
    print(f"    problem: {p}")
sys.exit(1 if problems else 0)
EOF

# ---- two containers ---------------------------------------------------------------------------
phase "two-host compose (docker/compose.two-host.yml)"
P2=quicbench-e2e-two-host
COMPOSE_PROJECTS+=("$P2")
# Kernel netem on each side where the host kernel has sch_netem; otherwise the
# two-host topology runs unshaped (it has no user-space link of its own) and
# says so.
netem_probe() {
	local ns=qb-e2e-netem-$$ ok=1
	ip netns add "$ns" 2>/dev/null || return 1
	ip netns exec "$ns" tc qdisc add dev lo root netem delay 1ms 2>/dev/null && ok=0
	ip netns del "$ns" 2>/dev/null
	return "$ok"
}
if netem_probe; then
	NETEM_REQUIRED=1
	TWO_HOST_LINK="tc netem delay 10ms on each side (20 ms RTT)"
	say "the host kernel has sch_netem: each side shapes its egress with netem (delay 10ms + 10ms)"
else
	NETEM_REQUIRED=0
	TWO_HOST_LINK="UNSHAPED (host kernel has no sch_netem)"
	say "NOTE: the host kernel has no sch_netem: the two containers run UNSHAPED (QB_NETEM_REQUIRED=0); the user-space link lives in the coordinator, not in this topology"
fi
before=$( (find "$OUT/two-host" -mindepth 1 -maxdepth 1 2>/dev/null || true) | wc -l)
if ! QB_REPS=1 QB_NETEM_REQUIRED=$NETEM_REQUIRED compose_t 600 "$P2" -f docker/compose.two-host.yml \
	up --no-build --no-color --abort-on-container-exit --exit-code-from client >"$WORK/two-host.log" 2>&1; then
	tail -n 40 "$WORK/two-host.log" >&2
	die "the two-host compose failed (last lines above)"
fi
grep -E 'quicbench-two-host: .*(netem|qdisc|failed|warning)' "$WORK/two-host.log" | sed 's/^/    /' | head -n 8
compose_t 120 "$P2" -f docker/compose.two-host.yml down -v --remove-orphans >/dev/null 2>&1 || true
thdir=$(find "$OUT/two-host" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | LC_ALL=C sort | tail -n 1)
if [ -z "$thdir" ] || [ "$(find "$OUT/two-host" -mindepth 1 -maxdepth 1 | wc -l)" -le "$before" ]; then
	die "the two-host client wrote no output directory under $OUT/two-host"
fi
python3 - "$thdir" <<'EOF' | tee "$WORK/two-host-check.txt" || die "the two-host outputs in $thdir failed their checks (above)"
import json, os, statistics, sys
d = sys.argv[1]
problems = []
for proto in ("h1.1", "h1.1-tls", "h2", "h3"):
    name = f"{proto}-1.out"
    p = os.path.join(d, name)
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        problems.append(f"{name} missing or empty")
        continue
    # JSON lines, one per GET, then get's human-readable summary.
    gets = [json.loads(l) for l in open(p) if l.startswith("{")]
    ok = [g for g in gets if g.get("verified") and g.get("status") == 200 and not g.get("error")]
    if not gets or len(ok) != len(gets):
        problems.append(f"{name}: {len(ok)} of {len(gets)} GETs verified with status 200")
        continue
    ms = statistics.median((g["last_byte_ns"] - g["request_sent_ns"]) / 1e6 for g in ok)
    print(f"    {proto:9} {len(ok)} GETs of {ok[0]['bytes']} bytes, all verified; median request-to-last-byte {ms:.2f} ms")
p = os.path.join(d, "udp-probe-1.out")
try:
    probe = json.load(open(p))
    print(f"    udp-probe  sent {probe['sent']}, received {probe['received']}, loss {probe['loss_rate']:.2%}, RTT p50 {probe['rtt']['p50_us']:.0f} us, p99 {probe['rtt']['p99_us']:.0f} us")
    if probe["received"] == 0:
        problems.append("udp-probe-1.out: nothing received")
except (OSError, ValueError, KeyError) as e:
    problems.append(f"udp-probe-1.out: {e}")
for p in problems:
    print(f"    problem: {p}")
sys.exit(1 if problems else 0)
EOF

end_phase
mkdir -p "$STATE"
date -u +%Y-%m-%dT%H:%M:%SZ >"$STATE/passed-$HASH"
if [ "$MODE" = record ]; then
	printf '%s  docker/ .dockerignore Cargo.lock scripts/docker-e2e.sh (passed %s, bases %s)\n' \
		"$HASH" "$(date -u +%Y-%m-%d)" "$BASES" >"$RECORD"
	say "recorded $HASH in $RECORD (commit it)"
fi
echo
say "timings:"
printf '    %s\n' "${TIMINGS[@]}"
say "summary:"
echo "    image: $IMAGE from bases $RUST_IMAGE -> $RUNTIME_IMAGE ($BASES)"
grep -E '^ +(backend|cells):' "$WORK/rundir-check.txt"
echo "    calibrate (delay 5ms): $CALIBRATION"
echo "    two-host: $TWO_HOST_LINK"
sed 's/^    /      /' "$WORK/two-host-check.txt"
say "PASSED in $(($(date +%s) - T0)) s (bases: $BASES, inputs $HASH); results in $OUT"
