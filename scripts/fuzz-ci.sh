#!/usr/bin/env bash
# The short fuzz pass CI runs (.ci/run): the light targets (netem_spec,
# probe_datagram, results_reader) for FUZZ_CI_SECONDS each (default 10), from
# the committed seeds plus whatever fuzz/corpus holds, without a sanitizer.
#
# Why not everything with ASan (what scripts/fuzz.sh does): a fuzz build
# compiles every dependency again with coverage instrumentation. Measured on
# this 2-core machine (shared, so ±20%), from an empty target directory:
#   light targets, no sanitizer   89 s  (netem_spec runs ~630k inputs/s)
#   light targets, ASan           98 s  (netem_spec runs ~110k inputs/s)
#   light targets, --dev          107 s (no gain: debug info, slow runs)
#   + matrix, pipelined_response  +190 s (quinn, h3, hyper, rustls again)
#   cargo-fuzz install, if absent  32 s
# So CI builds the light targets only (about 2 minutes in all), and without
# ASan: it costs about the same to build but runs 5x fewer inputs in the short
# window, and it finds memory errors only in unsafe code or C, which these
# parsers do not reach; panics, arithmetic overflow (debug assertions are on),
# failed round-trip assertions and hangs are caught either way. The heavy
# targets and ASan run in scripts/fuzz.sh (before a release, or nightly).
#
# FUZZ_CI_SANITIZER=address and FUZZ_CI_ALL=1 opt back in.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_SANITIZER="${FUZZ_CI_SANITIZER:-none}"
if [ "${FUZZ_CI_ALL:-0}" != 1 ]; then
  export FUZZ_LIGHT=1
fi
exec bash scripts/fuzz.sh "${FUZZ_CI_SECONDS:-10}"
