#!/bin/sh
# One side of the two-container topology (docker/compose.two-host.yml): a
# server container and a client container, each with its own network stack,
# joined by a user-defined bridge network. Each side shapes its own egress with
# tc netem, so a packet crossing the bridge meets the sender's netem only:
# delay on both sides adds up to the round trip (RTT = server + client delay).
#
#   quicbench-two-host server serve ARGS...    tc on this side, then quicbench serve
#   quicbench-two-host client get ARGS...      tc on this side, wait for the
#                                              server, then quicbench get (once
#                                              per protocol and repetition),
#                                              then QB_PROBE_ARGS
#
# Environment:
#   QB_PEER_ADDR      the other container's address; the interface that routes
#                     to it is the one shaped (required)
#   QB_NETEM          netem parameters for this side's egress, e.g.
#                     "delay 25ms loss 1%" (empty: no emulation on this side)
#   QB_NETEM_REQUIRED 1 (default): fail when netem cannot be installed;
#                     0: warn and go on unshaped
#   QB_TRUST          file the server writes its certificate PEM to and the
#                     client trusts (default /shared/trust.pem)
#   QB_WAIT           seconds the client waits for QB_TRUST (default 60)
#   QB_SETTLE         seconds the client waits after that (default 1)
#   QB_PROTOCOLS      client: protocols to loop over; each `{proto}` argument
#                     is replaced by one of them (default: no loop)
#   QB_REPS           client: repetitions per protocol (default 1)
#   QB_PROBE_ARGS     client: quicbench arguments run once per repetition
#                     after the protocol loop, e.g. "udp-probe ADDR:9000 --json"
#                     (word-split; empty: none)
#   QB_OUT            client: directory for each run's output (default
#                     /results/two-host/<UTC timestamp>)
#   QB_ALLOW_ANY_ADDR 1: allow a peer outside the benchmarking ranges
#                     198.18.0.0/15 and 2001:2::/48 (default: refuse)
set -eu

QB=${QUICBENCH_BIN:-/usr/local/bin/quicbench}
say() { printf 'quicbench-two-host: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 2
}

[ "$#" -ge 1 ] || die "usage: quicbench-two-host server|client QUICBENCH-ARGS..."
role=$1
shift
case "$role" in
server | client) ;;
*) die "unknown role '$role' (expected server or client)" ;;
esac

peer=${QB_PEER_ADDR:-}
[ -n "$peer" ] || die "QB_PEER_ADDR is not set (the other container's address)"
# Benchmark traffic goes only to the benchmarking ranges unless the user says
# otherwise: a typo in an address must not aim a load at a real host.
case "$peer" in
198.18.* | 198.19.* | 2001:2:* | 2001:0002:*) ;;
*)
	[ "${QB_ALLOW_ANY_ADDR:-0}" = 1 ] ||
		die "peer $peer is outside 198.18.0.0/15 and 2001:2::/48 (set QB_ALLOW_ANY_ADDR=1 if it is really yours)"
	;;
esac

# `ip route get` only consults the routing table; it sends nothing.
iface=$(ip route get "$peer" | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
[ -n "$iface" ] || die "no route to $peer: is this container on the benchmark network?"

netem=${QB_NETEM:-}
if [ -n "$netem" ]; then
	# shellcheck disable=SC2086 # QB_NETEM is netem's own word list
	if err=$(tc qdisc replace dev "$iface" root netem $netem 2>&1); then
		say "$role: egress of $iface shaped with netem $netem"
	else
		case "$err" in
		*nknown* | *"No such file"*)
			hint="the host kernel has no sch_netem: run 'sudo modprobe sch_netem' on the host"
			;;
		*"Operation not permitted"*)
			hint="the container lacks CAP_NET_ADMIN (cap_add: [NET_ADMIN])"
			;;
		*) hint="see tc's message above" ;;
		esac
		say "$role: tc qdisc replace dev $iface root netem $netem failed: $err"
		if [ "${QB_NETEM_REQUIRED:-1}" = 1 ]; then
			die "$hint"
		fi
		say "warning: $hint; going on WITHOUT link emulation on this side (QB_NETEM_REQUIRED=0)"
	fi
fi
say "$role: qdisc on $iface: $(tc qdisc show dev "$iface" | head -n 1)"

trust=${QB_TRUST:-/shared/trust.pem}

if [ "$role" = server ]; then
	# A stale certificate from an earlier run would let the client start
	# before this server is up, and then fail to verify the new one.
	rm -f "$trust"
	mkdir -p "$(dirname "$trust")"
	exec "$QB" "$@"
fi

# ---- client -------------------------------------------------------------------
wait_s=${QB_WAIT:-60}
waited=0
while [ ! -s "$trust" ]; do
	[ "$waited" -lt "$wait_s" ] || die "the server wrote no certificate to $trust within ${wait_s}s"
	sleep 1
	waited=$((waited + 1))
done

# quicbench serve writes its certificate just before it binds its sockets.
sleep "${QB_SETTLE:-1}"

out=${QB_OUT:-/results/two-host/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
reps=${QB_REPS:-1}
case "$reps" in '' | *[!0-9]*) die "QB_REPS=$reps is not a number" ;; esac
protocols=${QB_PROTOCOLS:-}
[ -n "$protocols" ] || protocols=-

# Runs quicbench with every `{proto}` argument replaced by $1, stdout to $2.
# A function, so the template in the script's own "$@" stays untouched.
run_once() {
	p=$1
	log=$2
	shift 2
	n=$#
	for a in "$@"; do
		if [ "$a" = "{proto}" ]; then a=$p; fi
		set -- "$@" "$a"
	done
	shift "$n"
	"$QB" "$@" >"$log"
}

status=0
for proto in $protocols; do
	rep=1
	while [ "$rep" -le "$reps" ]; do
		log=$out/$proto-$rep.out
		say "client: $proto repetition $rep/$reps -> $log"
		if ! run_once "$proto" "$log" "$@"; then
			say "client: $proto repetition $rep failed"
			status=1
		fi
		rep=$((rep + 1))
	done
done
if [ -n "${QB_PROBE_ARGS:-}" ]; then
	rep=1
	while [ "$rep" -le "$reps" ]; do
		log=$out/udp-probe-$rep.out
		say "client: ${QB_PROBE_ARGS%% *} repetition $rep/$reps -> $log"
		# shellcheck disable=SC2086 # QB_PROBE_ARGS is a word list by design
		if ! "$QB" $QB_PROBE_ARGS >"$log"; then
			say "client: probe repetition $rep failed"
			status=1
		fi
		rep=$((rep + 1))
	done
fi
say "client: outputs in $out"
exit "$status"
