#!/usr/bin/env bash
# The kernel (tc-netem) backend tested against a real sch_netem: boots a stock
# Debian kernel (which has sch_netem) in QEMU with virtme-ng, the host's
# filesystem shared copy-on-write, and runs there the host's already built
# test binaries: netem/tests/backends.rs (one behaviour list, both backends),
# netem/tests/kernel.rs, and tests/backends_run.rs (a small `quicbench run`
# per backend). QUICBENCH_REQUIRE_KERNEL_NETEM=1 in the guest turns any
# kernel-backend skip into a failure. Exits with the tests' status; prints
# "SKIPPED: <reason>" and exits 0 only where no VM can be booted at all.
# Run as root (apt, and the tests need namespaces). See docs/kernel-vm.md.
#
#   bash scripts/kernel-netem-vm.sh            # installs, builds, boots, tests
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_TERM_COLOR=never
OUT="$ROOT/target/kernel-netem-vm"
mkdir -p "$OUT"
# One run at a time: two VMs on one machine would share its log and slow
# each other's emulated CPUs.
exec 8>"$OUT/.lock"
if command -v flock >/dev/null 2>&1; then flock 8; fi
started=$(date +%s)
say() { echo "=== kernel-netem-vm: $* ($(( $(date +%s) - started )) s)"; }
skip() { echo "SKIPPED: kernel-netem-vm: $*"; exit 0; }

# ---------------------------------------------------------------------------
# What a VM needs here. Only these make the script skip: they are about the
# machine, not about quicbench.
# ---------------------------------------------------------------------------
[ "$(uname -m)" = x86_64 ] || skip "the guest kernel is Debian's linux-image-amd64: needs an x86-64 host, this is $(uname -m)"

# One stock kernel that has sch_netem (Debian 12's 6.1); the newest installed.
guest_kernel() {
  local k
  for k in $(printf '%s\n' /boot/vmlinuz-*-amd64 | sort -V -r); do
    [ -e "$k" ] || continue
    local v="${k#/boot/vmlinuz-}"
    if ls "/lib/modules/$v/kernel/net/sched/sch_netem.ko"* >/dev/null 2>&1; then
      echo "$k"
      return 0
    fi
  done
  return 1
}

have_all() {
  guest_kernel >/dev/null && command -v qemu-system-x86_64 >/dev/null && command -v busybox >/dev/null
}

# ------------------------------------------------------------- apt packages
# linux-image-amd64: a kernel and its modules under /boot and /lib/modules;
# nothing here boots it (no bootloader on such a machine), so the host's own
# boot is untouched. --no-install-recommends keeps it to ~40 packages.
install_apt() {
  if have_all; then
    echo "apt: present ($(guest_kernel), $(qemu-system-x86_64 --version | head -n1))"
    return 0
  fi
  [ "$(id -u)" = 0 ] || skip "needs root to install linux-image-amd64, qemu-system-x86 and busybox-static (missing here)"
  command -v apt-get >/dev/null || skip "no apt-get: install a kernel with sch_netem, qemu-system-x86 and busybox yourself"
  say "installing linux-image-amd64 qemu-system-x86 busybox-static with apt"
  apt-get update -qq
  local pkgs=(linux-image-amd64 qemu-system-x86 busybox-static)
  # A qemu-utils newer than the qemu-system-x86 on offer (a backport, as on
  # this project's machines) "Breaks" the older qemu-system-common: take the
  # one release of both.
  local want have
  want=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/{print $2}')
  have=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  if [ -n "$have" ] && [ -n "$want" ] && [ "$have" != "$want" ] \
    && dpkg --compare-versions "$have" gt "$want"; then
    echo "apt: qemu-utils $have is newer than qemu-system-x86 $want: installing qemu-utils $want beside it"
    pkgs+=("qemu-utils=$want")
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades "${pkgs[@]}"
  have_all || { echo "apt: installed, yet no kernel with sch_netem.ko, qemu-system-x86_64 or busybox" >&2; exit 1; }
}
install_apt
GUEST_KERNEL="$(guest_kernel)"
# ------------------------------------------------------------------ end apt

# ---------------------------------------------------------------- virtme-ng
# `vng` from PyPI into a venv under target/ (nothing system-wide changes), as
# scripts/install-test-deps.sh does for aioquic.
VENV="$ROOT/target/vng-venv"
install_vng() {
  if [ -x "$VENV/bin/vng" ] && "$VENV/bin/vng" --version >/dev/null 2>&1; then
    echo "virtme-ng: present ($("$VENV/bin/vng" --version 2>&1 | head -n1))"
    return 0
  fi
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    [ "$(id -u)" = 0 ] || skip "python3 -m venv fails and installing python3-venv needs root"
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "virtme-ng>=1.42,<2"
  echo "virtme-ng: $("$VENV/bin/vng" --version 2>&1 | head -n1) installed in $VENV"
}
install_vng
# vng runs virtme-run from its PATH.
export PATH="$VENV/bin:$PATH"
# ------------------------------------------------------------ end virtme-ng

# ---------------------------------------------------------- test deps
# The guest sees the host's filesystem read-only: a test that finds a tool
# missing (nft for the kernel NAT) cannot install it from inside. Install
# on the host first, as `cargo test` would on its own.
say "installing the tests' own dependencies on the host"
bash "$ROOT/scripts/install-test-deps.sh"
# ------------------------------------------------------ end test deps

# ------------------------------------------------------------------- build
# The host builds; the guest runs these exact files (shared filesystem). The
# paths come from cargo itself (--message-format=json), not guessed.
say "building the test binaries on the host"
build() {
  cargo test --no-run --message-format=json "$@" \
    | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"].get("test"):
        print(m["target"]["name"] + " " + m["executable"])
'
}
BINS="$OUT/binaries.txt"
{
  build -p quicbench-netem --test backends --test kernel
  build -p quicbench --test backends_run
} > "$BINS"
cat "$BINS"
[ "$(wc -l < "$BINS")" = 3 ] || { echo "expected 3 test binaries, got: $(cat "$BINS")" >&2; exit 1; }
bin() { awk -v n="$1" '$1 == n {print $2}' "$BINS"; }
# ------------------------------------------------------------------ end build

# ------------------------------------------------------------------- guest
# What runs inside: the modules the tests need (sch_netem is the point; tun
# for the user-space backend; veth and nftables NAT for the kernel one), then
# each binary, one test at a time (its output readable, and the checks never
# share the two emulated CPUs), every binary run even after a failure.
GUEST="$OUT/guest.sh"
cat > "$GUEST" <<EOF
#!/bin/sh
echo "guest: up, kernel \$(uname -r)"
# The nftables NAT's modules too: autoloaded, they cost the first rebind of
# the boot ~9 s here (nft replays its transaction after each load), long
# enough for a migration cell's transfer to finish before the NAT changed.
modprobe -a sch_netem tun veth nf_tables nft_chain_nat nf_nat nft_nat nft_ct nft_objref nf_conntrack_netlink \
  || { echo "guest: modprobe failed"; exit 90; }
export QUICBENCH_REQUIRE_KERNEL_NETEM=1 QUICBENCH_REQUIRE_NAMESPACES=1 RUST_BACKTRACE=1
status=0
run() { dir="\$1"; shift; echo "guest: running \$*"; ( cd "\$dir" && "\$@" ) || { echo "guest: FAILED: \$*"; status=1; }; }
# The scheduled-rebind test there checks timing to 20 ms, a host-only check
# (the emulated guest runs late by up to a second); backends.rs checks the
# same behaviour with a VM-sized schedule.
run "$ROOT/netem" "$(bin kernel)" --test-threads=1 --nocapture --skip kernel_nat_scheduled_rebinds_change_a_live_udp_flow
run "$ROOT/netem" "$(bin backends)" --test-threads=1 --nocapture
# The kernel run only: the user-space run is checked on the host.
run "$ROOT" "$(bin backends_run)" --test-threads=1 --nocapture kernel_backend
echo "guest: done, status \$status"
exit \$status
EOF
chmod +x "$GUEST"

LOG="$OUT/vm.log"
say "booting $GUEST_KERNEL in QEMU (no KVM: the CPU is emulated, ~20 s to boot)"
set +e
# QEMU opens stdout and stderr separately: one pipe for both keeps the order.
# 15 minutes at most (a normal run takes ~2-3).
timeout --kill-after=30 900 vng --run "$GUEST_KERNEL" --disable-kvm --cpus 2 --memory 2G \
  --exec "$GUEST" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# ------------------------------------------------------------------ end guest

grep -ho "FIGURE .*" "$LOG" > "$OUT/figures.txt" || true
say "figures (also in $OUT/figures.txt)"
cat "$OUT/figures.txt"
if ! grep -q "^guest: up" "$LOG"; then
  echo "kernel-netem-vm: the guest never ran its command (vng exit $status); log: $LOG" >&2
  exit 1
fi
if [ "$status" != 0 ]; then
  echo "kernel-netem-vm: FAILED (guest exit $status); log: $LOG" >&2
  grep -h "^guest: FAILED\|panicked at" "$LOG" >&2 || true
  exit "$status"
fi
grep -q "^guest: done, status 0" "$LOG" || { echo "kernel-netem-vm: no clean end in $LOG" >&2; exit 1; }
say "passed"
