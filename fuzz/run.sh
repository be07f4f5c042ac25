#!/usr/bin/env bash
# Builds and runs the fuzz targets (docs/operations.md, "Fuzzing").
#
#   fuzz/run.sh smoke          build every target, run each briefly from its seeds (CI)
#   fuzz/run.sh long N [T...]  run each target (or only T...) for N executions
#
# Stable Rust: no sanitizer (`-s none`). The code under test is safe Rust
# (`#![forbid(unsafe_code)]` in core), so what AddressSanitizer would add is already a panic;
# what is left to find is panics, failed assertions, hangs and unbounded allocation, which
# the limits below turn into failures. Runs at the lowest priority, one job at a time.
set -euo pipefail
cd "$(dirname "$0")"

HOST="$(rustc -vV | sed -n 's/^host: //p')"
TARGETS=(spiffe_id svid path token bearer policy_file config proxy_protocol bundle)
# An input slower than this, or a run allocating more than this, is a failure. One
# in-process job per target, one target at a time (not `-jobs=1`: libFuzzer's fork mode would
# send the report to ./fuzz-0.log instead of this script's output).
LIMITS=(-rss_limit_mb=512 -malloc_limit_mb=256 -timeout=5)

cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz

# The config and policy targets write their inputs to files under TMPDIR: in memory where
# there is a tmpfs (a disk-backed one makes each input a block write, a tenth of the speed).
TMPDIR="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

# fuzz TARGET ARGS...: fuzz TARGET from a fresh working corpus seeded with seeds/TARGET
# (target/corpus is not committed; the seeds are). Crashes go to artifacts/TARGET/.
fuzz() {
  local target=$1
  shift
  local corpus="target/corpus/$target"
  mkdir -p "$corpus" "artifacts/$target"
  nice -n 19 "target/$HOST/$PROFILE/$target" "${LIMITS[@]}" \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@" "$corpus" "seeds/$target" </dev/null
}

case "${1:-}" in
  smoke)
    # A smoke run needs no speed, and the unoptimised build takes about 30% less CPU time than
    # the optimised one: each target runs its seeds, then mutates for a few seconds.
    PROFILE=debug
    nice -n 19 cargo fuzz build -s none --target "$HOST" --dev
    for target in "${TARGETS[@]}"; do
      echo "== fuzz $target (smoke)"
      fuzz "$target" -max_total_time=8
    done
    ;;
  long)
    runs=${2:?usage: fuzz/run.sh long N [TARGET...]}
    shift 2
    [ "$#" -gt 0 ] && TARGETS=("$@")
    PROFILE=release
    nice -n 19 cargo fuzz build -s none --target "$HOST"
    for target in "${TARGETS[@]}"; do
      echo "== fuzz $target ($runs runs)"
      fuzz "$target" -runs="$runs" 2>&1 | tee "target/$target.log"
    done
    ;;
  *)
    echo "usage: fuzz/run.sh smoke | fuzz/run.sh long N [TARGET...]" >&2
    exit 64
    ;;
esac
