#!/usr/bin/env bash
# Bulk TCP through the user-space link against a plain veth pair: iperf3
# (host default congestion control, MTU 1500), 4 s a run, through
# `quicbench link --spec "delay 0ms"` (each given binary, interleaved) and
# through a veth pair between two fresh namespaces (198.18.0.1 -> 198.18.1.1,
# deleted on exit). Prints Gbit/s, retransmits, the controller iperf3 read
# back, and the relay's CPU per Gbit (its threads' schedstat, from the
# link's counters). Each run holds /work/.bench-lock when that exists, so
# runs on a shared machine do not measure each other. Needs root; installs
# iperf3 with apt when it is missing.
#
#   scripts/relay-vs-veth.sh [ROUNDS=3] [QUICBENCH_BINARY...]
#   (default binary: target/release/quicbench)
set -uo pipefail
rounds=${1:-3}; shift || true
bins=("$@"); [ ${#bins[@]} -gt 0 ] || bins=(target/release/quicbench)
cd "$(dirname "$0")/.." || exit 1
if ! command -v iperf3 >/dev/null; then
  echo "iperf3: missing, installing it with apt"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; } \
    || { echo "iperf3 missing and apt could not install it" >&2; exit 1; }
fi
lock() { if [ -e /work/.bench-lock ]; then flock /work/.bench-lock "$@"; else "$@"; fi; }
err=$(mktemp); trap 'rm -f "$err"; ip netns del qbr-c 2>/dev/null; ip netns del qbr-s 2>/dev/null' EXIT
rate() {
  python3 -c 'import json,sys
e=json.load(sys.stdin)["end"]
print("%.2f Gbit/s, %s retransmits, %s" % (e["sum_received"]["bits_per_second"]/1e9,
      e["sum_sent"].get("retransmits"), e.get("sender_tcp_congestion", "?")), end="")' 2>/dev/null ||
    printf "failed"
}
relay_cpu() {
  python3 -c 'import json,sys
s=open(sys.argv[1]).read(); m="quicbench link: counters "
k=json.JSONDecoder().raw_decode(s[s.index(m)+len(m):])[0]
cpu=k["up"]["relay"]["cpu_ns"]+k["down"]["relay"]["cpu_ns"]
print(", relay %.1f ms CPU per Gbit (offload %s)" % (cpu/1e6/(k["up"]["relay"]["bytes_written"]*8/1e9), k["up"]["relay"]["offload"]))' "$err" 2>/dev/null || echo
}
link_run() {
  # The client command expands QUICBENCH_SERVER_IP in the link's namespace.
  # shellcheck disable=SC2016
  lock timeout 40 "$1" link --spec "delay 0ms" --server "iperf3 -s -1 >/dev/null" -- \
    sh -c 'iperf3 -c "$QUICBENCH_SERVER_IP" -t 4 -J' 2>"$err" | rate
  relay_cpu
}
ip netns add qbr-c && ip netns add qbr-s || exit 1
ip link add qbvc netns qbr-c type veth peer name qbvs netns qbr-s
ip -n qbr-c addr add 198.18.0.1/15 dev qbvc && ip -n qbr-c link set qbvc up && ip -n qbr-c link set lo up
ip -n qbr-s addr add 198.18.1.1/15 dev qbvs && ip -n qbr-s link set qbvs up && ip -n qbr-s link set lo up
veth_run() {
  timeout 10 ip netns exec qbr-s iperf3 -s -1 -B 198.18.1.1 >/dev/null 2>&1 &
  local sp=$!
  sleep 0.3
  lock timeout 30 ip netns exec qbr-c iperf3 -c 198.18.1.1 -t 4 -J | rate; echo
  wait $sp
}
echo "veth: $(ip netns exec qbr-c cat /proc/sys/net/ipv4/tcp_congestion_control)," \
  "$(ip -n qbr-c -o link show qbvc | grep -o 'mtu [0-9]*')"
for i in $(seq 1 "$rounds"); do
  for b in "${bins[@]}"; do echo "round $i $b: $(link_run "$b") | load $(cut -d' ' -f1 /proc/loadavg)"; done
  echo "round $i veth: $(veth_run) | load $(cut -d' ' -f1 /proc/loadavg)"
done
