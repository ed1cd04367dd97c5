#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: format and lint
# checks, the Rust unit and integration tests, the release build, and the
# end-to-end suite against the real AWS CLI, boto3, aws-sdk-rust and the JS
# SDK. Exits non-zero on any failure. Extra arguments go to pytest. The Rust
# tests and the e2e suite each run with a throwaway PostgreSQL server
# (scripts/with-postgres.sh installs Debian's postgresql when missing).
#
# The boto3 rotation soak (tests/e2e/test_boto3_soak.py) takes minutes of
# botocore's own refresh timing, so it starts first, in the background, and
# is waited for at the end. KEYCARD_SOAK=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo build --release -p keycard"
cargo build --release -p keycard
export KEYCARD_BIN="$target/release/keycard"

soak_pid=""
if [ "${KEYCARD_SOAK:-1}" = 1 ]; then
    E2E_SETUP_ONLY=1 ./scripts/e2e.sh
    echo "==> boto3 rotation soak (background, log: $target/soak.log)"
    KEYCARD_SOAK=1 PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest tests/e2e/test_boto3_soak.py \
        -q -s -p no:cacheprovider >"$target/soak.log" 2>&1 &
    soak_pid=$!
fi

echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test (with a throwaway PostgreSQL for the store suite)"
# This also builds target/debug/sdk-probe (its crate has an integration
# test), with the workspace's features: a separate `cargo build -p` would
# resolve other features and compile the SDK stack a second time.
./scripts/with-postgres.sh cargo test --workspace --all-targets

status=0
KEYCARD_SOAK=0 ./scripts/e2e.sh "$@" || status=$?

if [ -n "$soak_pid" ]; then
    echo "==> waiting for the boto3 rotation soak"
    if wait "$soak_pid"; then
        tail -n 5 "$target/soak.log"
    else
        echo "boto3 rotation soak FAILED:"; cat "$target/soak.log"; status=1
    fi
fi
exit $status
