#!/usr/bin/env bash
# End-to-end suite only: drives a running keycard with the real AWS CLI and
# boto3 (pinned in tests/requirements.txt, installed into .venv).
#
#   ./scripts/e2e.sh                    # build the release binary if missing, run all
#   ./scripts/e2e.sh -k s3 -x           # extra arguments go to pytest
#   KEYCARD_BIN=target/debug/keycard ./scripts/e2e.sh
#   KEYCARD_SKIP_PG=1 ./scripts/e2e.sh  # no PostgreSQL: skip test_postgres.py
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
req=tests/requirements.txt
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    python3 -m venv "$venv"
fi
# Reinstall only when the pinned requirements change.
stamp="$venv/.keycard-requirements"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "==> installing $req into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi

# Prowler (the governance acceptance test) pins its own boto3: its own venv.
pvenv=.venv-prowler
preq=tests/requirements-prowler.txt
if [ ! -x "$pvenv/bin/python" ]; then
    echo "==> creating $pvenv"
    python3 -m venv "$pvenv"
fi
pstamp="$pvenv/.keycard-requirements"
pwant=$(sha256sum "$preq" | cut -d' ' -f1)
if [ "$(cat "$pstamp" 2>/dev/null || true)" != "$pwant" ] || [ ! -x "$pvenv/bin/prowler" ]; then
    echo "==> installing $preq into $pvenv"
    "$pvenv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$pvenv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$preq"
    echo "$pwant" > "$pstamp"
fi

# The console's browser tests (test_console.py): the distribution's
# Chromium and its WebDriver, installed when missing.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "==> installing chromium and chromium-driver"
        pkgs=(chromium chromium-driver)
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
    else
        echo "==> chromium / chromedriver missing (need root and apt-get): test_console.py cannot run"
    fi
fi

[ "${E2E_SETUP_ONLY:-0}" = 1 ] && exit 0

export KEYCARD_BIN="${KEYCARD_BIN:-${CARGO_TARGET_DIR:-target}/release/keycard}"
if [ ! -x "$KEYCARD_BIN" ]; then
    echo "==> building $KEYCARD_BIN"
    cargo build --release -p keycard
fi

# The aws-sdk-rust program the tests run on instances.
export SDK_PROBE_BIN="${SDK_PROBE_BIN:-${CARGO_TARGET_DIR:-target}/debug/sdk-probe}"
if [ ! -x "$SDK_PROBE_BIN" ] && [ "${E2E_BUILD_PROBE:-1}" = 1 ]; then
    echo "==> building $SDK_PROBE_BIN"
    cargo build -p keycard-sdk-probe
fi

echo "==> e2e: pytest tests/e2e (KEYCARD_BIN=$KEYCARD_BIN)"
export PYTHONDONTWRITEBYTECODE=1
# test_postgres.py needs a server: a throwaway one unless KEYCARD_TEST_PG
# names one (KEYCARD_SKIP_PG=1 skips those tests instead).
if [ "${KEYCARD_SKIP_PG:-0}" = 1 ]; then
    exec "$venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"
fi
exec ./scripts/with-postgres.sh "$venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@"
