#!/usr/bin/env bash
# No sudo, proved: as root (CI), make an ordinary user and run quicbench as
# that user -- `doctor`, `link` with ping across `delay 10ms`, a small matrix
# with a cell of every workload, and one test binary through the test gate --
# checking what each wrote. docs/rootless.md says what this covers.
#
#   bash scripts/rootless-check.sh [path/to/quicbench]
#
# Exit status: 0 all checks passed; 1 a check failed; 0 with "SKIPPED:" only
# where it cannot run at all (not root, or this kernel refuses unprivileged
# user namespaces), with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
bin=${1:-$target/debug/quicbench}
user=quicbench-rootless
started=$(date +%s)
say() { echo "rootless: [$(( $(date +%s) - started )) s] $*"; }
fail() { echo "rootless: FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
	echo "SKIPPED: rootless check: needs root to create the ordinary user it runs as"
	exit 0
fi
max=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
if [ "$max" = 0 ]; then
	echo "SKIPPED: rootless check: user.max_user_namespaces = 0 on this kernel (no user namespaces at all)"
	exit 0
fi
[ -x "$bin" ] || cargo build --bin quicbench
[ -x "$bin" ] || fail "no quicbench binary at $bin"

if ! id "$user" >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
	say "created the ordinary user $user"
fi
uid=$(id -u "$user")
gid=$(id -g "$user")

# udev's default rule makes /dev/net/tun 0666 on Debian, Ubuntu and Fedora; a
# machine without udev (this one) keeps the kernel's 0600. That is the one
# thing root must do once (docs/rootless.md); everything after runs as the user.
mode=$(stat -c %a /dev/net/tun)
if [ "$mode" != 666 ]; then
	chmod 0666 /dev/net/tun
	say "/dev/net/tun was mode $mode (no udev here): made 0666 as udev's default rule does"
fi
command -v ping >/dev/null || { apt-get update -qq && apt-get install -y -qq iputils-ping; }

# A directory the user owns, holding its own copy of the binary (the build
# tree may sit under a directory the user cannot enter).
work=$(mktemp -d /tmp/quicbench-rootless.XXXXXX)
trap 'rm -rf "$work"' EXIT
install -m 0755 "$bin" "$work/quicbench"
chown -R "$uid:$gid" "$work"
# An ordinary user's environment: no root PATH, no sbin.
as_user() {
	env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work" LANG=C.UTF-8 \
		setpriv --reuid "$uid" --regid "$gid" --init-groups -- "$@"
}
[ "$(as_user id -u)" != 0 ] || fail "setpriv did not drop root"

say "doctor as $user (uid $uid)"
as_user "$work/quicbench" doctor | tee "$work/doctor.txt"
grep -q "ready (no root needed: user namespace)" "$work/doctor.txt" ||
	fail "doctor did not say it is ready without root"

say "link: ping across delay 10ms each way"
as_user "$work/quicbench" link --spec "delay 10ms" -- \
	ping -c 50 -i 0.02 -q 198.18.1.1 >"$work/ping.txt" 2>&1 || {
	cat "$work/ping.txt"
	fail "quicbench link with ping failed"
}
avg=$(sed -n 's|^rtt min/avg/max/mdev = [0-9.]*/\([0-9.]*\)/.*|\1|p' "$work/ping.txt")
[ -n "$avg" ] || { cat "$work/ping.txt"; fail "no ping summary"; }
say "ping RTT average $avg ms (configured 20 ms)"
awk -v a="$avg" 'BEGIN { exit !(a >= 19.0 && a <= 21.0) }' ||
	fail "ping RTT $avg ms is not within 1 ms of 20 ms"

say "a small matrix: one cell of every workload"
cat >"$work/matrix.toml" <<'EOF'
name = "rootless"
seed = 7
repetitions = 1
warmup = 0
protocols = ["h2", "h3", "udp"]
buffer = "1bdp"
cc = "cubic"

[[links]]
label = "rtt20ms-20mbit"
spec = "delay 10ms rate 20mbit"

[workloads.handshake]
connections = 3
size = 1024
modes = ["cold", "resumed-tfo"]

[workloads.hol]
interval_ms = 20
duration_ms = 400
size = 1024
parallel_objects = 4
parallel_size = 16384

[workloads.migration]
protocols = ["h2", "h3"]
size = 1048576
at_ms = 300
kinds = ["port"]
paced_duration_ms = 800

[workloads.goodput]
size = 524288
duration_ms = 500

[workloads.fairness]
mixes = ["h3+h2"]
duration_ms = 2000

[workloads.udp]
count = 200
interval_us = 1000
size = 200
EOF
chown "$uid:$gid" "$work/matrix.toml"
as_user "$work/quicbench" run --matrix "$work/matrix.toml" --out "$work/results" ||
	fail "the matrix run as $user failed"
dir=$(find "$work/results" -mindepth 1 -maxdepth 1 -type d | head -1)
if [ ! -f "$dir/run.json" ] || [ ! -f "$dir/summary.csv" ]; then
	fail "no run.json or summary.csv in $dir"
fi
python3 - "$dir" <<'EOF' || fail "the run directory is not what a rootless run must write"
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
run = json.loads((d / "run.json").read_text())
assert run.get("privileges") == "user namespace", f"privileges: {run.get('privileges')!r}"
cells = [json.loads(p.read_text()) for p in sorted((d / "cells").glob("*.json"))]
bad = [(c["cell_id"], c["status"]) for c in cells if c["status"].get("kind") != "ok"]
assert cells and not bad, f"cells not ok: {bad}"
workloads = sorted({c["workload"] for c in cells})
need = {"handshake", "hol", "migration", "goodput", "fairness", "udp"}
assert need <= set(workloads), f"workloads run: {workloads}"
owner = {p.stat().st_uid for p in d.rglob("*")}
print(f"rootless: run.json privileges = user namespace; {len(cells)} cells ok; "
      f"workloads {', '.join(workloads)}; files owned by uid {sorted(owner)}")
EOF

say "one test binary as the user (it enters a user namespace before main: quicbench_netem::test_gate)"
testbin=$(cargo test -p quicbench-netem --test link --no-run --message-format=json 2>/dev/null |
	python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "link":
        print(m["executable"])')
[ -n "$testbin" ] || fail "could not find the netem link test binary"
install -m 0755 "$testbin" "$work/link-tests"
as_user env QUICBENCH_REQUIRE_NAMESPACES=1 "$work/link-tests" >"$work/gate.txt" 2>&1 || {
	cat "$work/gate.txt"
	fail "netem's link tests failed as $user"
}
if grep -q "SKIPPED" "$work/gate.txt"; then cat "$work/gate.txt"; fail "a test skipped as $user"; fi
say "netem link tests as $user: $(grep 'test result' "$work/gate.txt" | tail -1)"
say "all rootless checks passed"
