#!/usr/bin/env bash
# Run the `scan` cargo-fuzz target (keycard-scan) on the stable toolchain.
#
#   crates/scan/fuzz/run.sh [SECONDS] [extra libFuzzer args...]     (default 60 s)
#
# RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags cargo-fuzz passes, so no
# nightly is needed. SANITIZER=none (default) or SANITIZER=address (ASan; ~4x slower).
# Corpus: crates/scan/fuzz/corpus/scan, crashes: crates/scan/fuzz/artifacts/scan (both git-ignored).
# Reproduce a crash: crates/scan/fuzz/run.sh 0 crates/scan/fuzz/artifacts/scan/crash-<hash>
#   (or: RUSTC_BOOTSTRAP=1 cargo fuzz run scan --sanitizer none <file>)
set -euo pipefail
secs="${1:-60}"
shift || true
args=()
for a in "$@"; do
    if [ -e "$a" ]; then a="$(realpath "$a")"; fi   # paths are relative to the caller
    args+=("$a")
done
set -- "${args[@]+"${args[@]}"}"
cd "$(dirname "$0")"
sanitizer="${SANITIZER:-none}"
target_dir="${CARGO_TARGET_DIR:-../../../target-fuzz}"
if [ "$sanitizer" != none ]; then target_dir="$target_dir-$sanitizer"; fi
if [ "$#" -gt 0 ] && [ -f "$1" ]; then
    # Reproduce a single input (no time budget).
    exec env RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
        cargo fuzz run scan --sanitizer "$sanitizer" "$@"
fi
exec env RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
    cargo fuzz run scan --sanitizer "$sanitizer" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 "$@"
