#!/usr/bin/env bash
# Fuzz every parser that takes outside input (fuzz/fuzz_targets/*), each for a
# bounded time, starting from the committed seeds (fuzz/seeds/<target>/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 60
#   FUZZ_TARGETS="netem_spec matrix" scripts/fuzz.sh 300
#   FUZZ_SANITIZER=none scripts/fuzz.sh      no ASan (faster build, fewer bugs seen)
#   FUZZ_LIGHT=1 scripts/fuzz.sh             only the targets that do not pull in
#                                            quinn/hyper (netem, wire, results)
#
# Toolchain: cargo-fuzz passes nightly-only rustc options (-Zsanitizer=address,
# the sancov passes). This machine (and CI) has only a stable toolchain, so
# RUSTC_BOOTSTRAP=1 lets stable rustc accept them; it changes nothing else in
# the compiler. A nightly toolchain works as well (`cargo +nightly fuzz`).
#
# Builds go to fuzz/target (the sanitizer flags make every crate differ from
# the main build, so they cannot share target/). The working corpus is
# fuzz/corpus/<target> (git-ignored; it grows across runs); crashes land in
# fuzz/artifacts/<target>/ and the script exits 1 naming them.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

light=(netem_spec probe_datagram results_reader)
heavy=(matrix pipelined_response)
features=()
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
elif [ "${FUZZ_LIGHT:-0}" = 1 ]; then
  targets=("${light[@]}")
else
  targets=("${light[@]}" "${heavy[@]}")
fi
# The heavy targets need the `heavy` feature (default); leave it out when only
# light targets are asked for, so their crates are not built at all.
need_heavy=0
for t in "${targets[@]}"; do
  for h in "${heavy[@]}"; do [ "$t" = "$h" ] && need_heavy=1; done
done
[ "$need_heavy" = 0 ] && features=(--no-default-features)

# Longest input per target: enough for every seed, small enough to stay fast.
max_len() {
  case "$1" in
    matrix) echo 8192 ;;
    results_reader) echo 16384 ;;
    pipelined_response) echo 4096 ;;
    *) echo 1024 ;;
  esac
}

# ASan builds in cargo-fuzz's default fuzz/target (so `cargo fuzz run` reuses
# them); other sanitizer settings get their own directory instead of
# rebuilding over it.
target_dir=fuzz/target
[ "$sanitizer" != address ] && target_dir="fuzz/target/sanitizer-$sanitizer"

t0=$(date +%s)
echo "fuzz: building ${targets[*]} (sanitizer $sanitizer)"
blog=$(mktemp)
if ! cargo fuzz build -s "$sanitizer" --target-dir "$target_dir" "${features[@]}" >"$blog" 2>&1; then
  grep -v '^ *Compiling' "$blog" | tail -40 >&2
  echo "fuzz: build failed" >&2
  exit 1
fi
rm -f "$blog"
echo "fuzz: build took $(( $(date +%s) - t0 )) s"

# Run the binaries just built (not `cargo fuzz run`, which rebuilds first: a
# source edit in between would make the run differ from the build).
host=$(rustc -vV | sed -n 's/^host: //p')
bindir="$target_dir/$host/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $t for ${secs} s (corpus $(find "$corpus" -type f | wc -l) inputs)"
  log=$(mktemp)
  # -timeout: one input taking > 10 s is a hang; -rss_limit_mb: blow-ups.
  if "$bindir/$t" "$corpus" -artifact_prefix="fuzz/artifacts/$t/" \
      -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" | sed "s/^/  /" || true
  else
    grep -A30 -E 'panicked|ERROR: (libFuzzer|AddressSanitizer)' "$log" | head -60
    failed+=("$t")
  fi
  rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}; crashing inputs:" >&2
  for t in "${failed[@]}"; do ls -1 "fuzz/artifacts/$t" >&2 || true; done
  echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>, then add the input to the owning crate's fuzz_regressions test" >&2
  exit 1
fi
echo "fuzz: ${targets[*]}: no crash in ${secs} s each ($(( $(date +%s) - t0 )) s in all)"
