#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: format and lint
# checks, the Rust unit and integration tests, the release build, and the
# end-to-end suite against the real AWS CLI, boto3, aws-sdk-rust and the JS
# SDK. Exits non-zero on any failure. Extra arguments go to pytest. The Rust
# tests and the e2e suite each run with a throwaway PostgreSQL server
# (scripts/with-postgres.sh installs Debian's postgresql when missing).
#
# The SDK rotation soaks (tests marked `soak`: boto3's, the JS SDK's and
# aws-sdk-rust's) wait minutes of the SDKs' own refresh timing, mostly idle,
# so they run in the background: boto3's and the JS SDK's from the start,
# aws-sdk-rust's once `cargo test` has built its probe, beside the rest of
# the e2e suite (which skips them). All are waited for at the end.
# KEYCARD_SOAK=0 skips them.
#
# The installs (PostgreSQL, the Python venvs, Chromium) are mostly network
# and disk: they run in the background while the release build compiles.
# Each step prints the minutes and seconds since the start, so a slow CI run
# shows where its time went.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
start=$SECONDS
step() { printf '==> [%02d:%02d] %s\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
mkdir -p "$target"
step "installs (background, log: $target/setup.log): postgresql, .venv, .venv-prowler, chromium"
# One job, in this order: apt-get cannot run twice at once.
( ./scripts/with-postgres.sh --install && E2E_SETUP_ONLY=1 ./scripts/e2e.sh ) >"$target/setup.log" 2>&1 &
setup_pid=$!
step "cargo build --release -p keycard"
cargo build --release -p keycard
export KEYCARD_BIN="$target/release/keycard"
step "waiting for the installs"
if ! wait "$setup_pid"; then
    echo "installs FAILED:"; cat "$target/setup.log"; exit 1
fi
step "installs done"

soak_pid=""
js_soak_pid=""
if [ "${KEYCARD_SOAK:-1}" = 1 ]; then
    step "boto3 rotation soak (background, log: $target/soak.log)"
    KEYCARD_SOAK=1 PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest -m soak tests/e2e/test_boto3_soak.py \
        -q -s -p no:cacheprovider >"$target/soak.log" 2>&1 &
    soak_pid=$!
    # Its own process, so it is over (and its `npm ci` with it) long before
    # the e2e suite's JS tests run `npm ci` again.
    step "JS SDK rotation soak (background, log: $target/soak-js.log)"
    KEYCARD_SOAK=1 PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest -m soak tests/e2e/test_js_sdk.py \
        -q -s -p no:cacheprovider >"$target/soak-js.log" 2>&1 &
    js_soak_pid=$!
fi

# Clippy lints the test build itself: as the workspace wrapper, clippy-driver
# (rustc plus clippy's lint passes, producing the same artifacts) compiles the
# workspace's crates for `cargo test --all-targets`, and CLIPPY_ARGS is how
# `cargo clippy` hands it `-D warnings`. A separate `cargo clippy` compiled
# every dependency a second time, in check mode: 11-13 minutes of CI.
# `--no-default-features` leaves jemalloc (the release binary's allocator)
# out of the debug build: its C build would run a second time for it.
step "cargo test, linted by clippy -D warnings (with a throwaway PostgreSQL for the store suite)"
# This also builds target/debug/sdk-probe (its crate has an integration
# test), with the workspace's features: a separate `cargo build -p` would
# resolve other features and compile the SDK stack a second time.
RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" \
    ./scripts/with-postgres.sh cargo test --workspace --all-targets --no-default-features

export SDK_PROBE_BIN="${SDK_PROBE_BIN:-$target/debug/sdk-probe}"
rust_soak_pid=""
if [ -n "$soak_pid" ]; then
    step "aws-sdk-rust rotation soak (background, log: $target/soak-rust.log)"
    KEYCARD_SOAK=1 PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest -m soak tests/e2e/test_rust_sdk.py \
        -q -s -p no:cacheprovider >"$target/soak-rust.log" 2>&1 &
    rust_soak_pid=$!
fi

status=0
step "e2e suite"
KEYCARD_SOAK=0 ./scripts/e2e.sh "$@" || status=$?
step "e2e suite done"

wait_soak() { # pid log name
    [ -n "$1" ] || return 0
    step "waiting for the $3 soak"
    if wait "$1"; then
        tail -n 5 "$2"
    else
        echo "$3 soak FAILED:"; cat "$2"; status=1
    fi
}
wait_soak "$soak_pid" "$target/soak.log" "boto3 rotation"
wait_soak "$js_soak_pid" "$target/soak-js.log" "JS SDK rotation"
wait_soak "$rust_soak_pid" "$target/soak-rust.log" "aws-sdk-rust rotation"
step "done (status $status)"
exit $status
