#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: format and lint
# checks, the Rust unit and integration tests, the release build, and the
# end-to-end suite against the real AWS CLI and boto3. Exits non-zero on any
# failure. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace --all-targets
echo "==> cargo build --release -p keycard"
cargo build --release -p keycard

KEYCARD_BIN="${CARGO_TARGET_DIR:-target}/release/keycard" exec ./scripts/e2e.sh "$@"
