#!/bin/sh
# Container entrypoint, run by tini: checks what a benchmark needs, says which
# link backend will run, then hands over to quicbench (exec, so quicbench gets
# the signals tini forwards).
#
#   IMAGE run --preset quick --out /results   -> quicbench run ... --backend $QUICBENCH_BACKEND
#   IMAGE doctor | merge ... | report ...     -> quicbench <that>
#   IMAGE sh | bash | ip ... | tc ...         -> that program (debugging)
#
# Environment:
#   QUICBENCH_BACKEND  auto|userspace|kernel, added to `run` as --backend unless
#                      the arguments already choose one (default: auto)
#   QUICBENCH_DOCTOR   1 (default): print `quicbench doctor` before a run;
#                      0: skip it
set -eu

QB=${QUICBENCH_BIN:-/usr/local/bin/quicbench}

say() { printf 'quicbench-entrypoint: %s\n' "$*" >&2; }

if [ "$#" -eq 0 ]; then
	set -- run --preset quick --out /results
fi

# Something other than a quicbench subcommand that names a program on PATH is
# run as is. Subcommands are matched first because some (`link`) are also
# coreutils programs.
case "$1" in
-* | run | merge | report | doctor | serve | get | link | udp-probe | help) ;;
*)
	if command -v "$1" >/dev/null 2>&1; then
		exec "$@"
	fi
	;;
esac

if [ "$1" = run ]; then
	has_backend=0
	out=/results
	prev=
	for a in "$@"; do
		case "$a" in
		--backend | --backend=*) has_backend=1 ;;
		--out=*) out=${a#--out=} ;;
		esac
		if [ "$prev" = --out ]; then out=$a; fi
		prev=$a
	done
	if [ "$has_backend" -eq 0 ] && [ -n "${QUICBENCH_BACKEND:-}" ]; then
		set -- "$@" --backend "$QUICBENCH_BACKEND"
	fi

	# Say what is missing in words a person can act on, before quicbench
	# fails on it halfway through its first cell.
	if [ "$(id -u)" -ne 0 ]; then
		say "warning: not running as root; network namespaces will fail (run the image as root with CAP_SYS_ADMIN and CAP_NET_ADMIN)"
	fi
	if [ ! -c /dev/net/tun ]; then
		say "warning: /dev/net/tun is missing: the user-space link backend cannot run (docker run --device /dev/net/tun; Kubernetes: hostPath /dev/net/tun)"
	fi
	mkdir -p "$out" 2>/dev/null || true
	if ! touch "$out/.quicbench-write-test" 2>/dev/null; then
		say "error: results directory $out is not writable (mount a volume there: -v \"\$PWD/results:$out\")"
		exit 1
	fi
	rm -f "$out/.quicbench-write-test"

	if [ "${QUICBENCH_DOCTOR:-1}" != 0 ]; then
		# Informational only: doctor's verdict goes to the log, the run
		# itself decides (and records in run.json) which backend ran.
		"$QB" doctor >&2 || say "quicbench doctor exited with status $? (continuing; see above)"
	fi
fi

exec "$QB" "$@"
