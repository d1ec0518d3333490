#!/usr/bin/env bash
# The short fuzz pass CI runs (.ci/run): the light targets (netem_spec,
# probe_datagram, results_reader) for FUZZ_CI_SECONDS each (default 15), from
# the committed seeds, built without a sanitizer.
#
# Why not everything, with ASan (what scripts/fuzz.sh does): a fuzz build
# compiles every dependency again with coverage instrumentation. Measured on
# the 2-core CI machine from a clean fuzz/target (see docs/security.md):
#   light targets, ASan      ~100 s
#   light targets, no ASan   ~FILL s
#   + matrix, pipelined_response (quinn, hyper, h3...)  +190 s
# A minute or two in all leaves room for the light targets only, and for no
# sanitizer. What is lost: ASan finds memory errors only in unsafe code and C,
# none of which these parsers contain; panics, overflows (debug assertions are
# on) and hangs are still caught. The heavy targets and ASan run in
# scripts/fuzz.sh (run it before a release, or nightly).
#
# FUZZ_CI_SANITIZER=address / FUZZ_CI_ALL=1 opt back in.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_SANITIZER="${FUZZ_CI_SANITIZER:-none}"
if [ "${FUZZ_CI_ALL:-0}" != 1 ]; then
  export FUZZ_LIGHT=1
fi
exec bash scripts/fuzz.sh "${FUZZ_CI_SECONDS:-15}"
