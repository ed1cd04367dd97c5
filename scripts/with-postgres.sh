#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server on a private port:
#
#   ./scripts/with-postgres.sh cargo test -p keycard-store
#
# Installs Debian's `postgresql` when no server binaries are found, creates a
# cluster in a temporary directory (as the `postgres` user when run as root:
# initdb refuses root), starts it on a free loopback port, exports
# KEYCARD_TEST_PG=postgres://postgres@127.0.0.1:PORT/postgres (and
# KEYCARD_TEST_PG_DATA / _BIN / _LOG / _OPTS, to restart it), runs the
# command, and always stops the server and removes the cluster. The
# command's exit status is the script's. When KEYCARD_TEST_PG is already set,
# the command just runs against that server.
#
#   ./scripts/with-postgres.sh --install   # only install the server if missing
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...] | --install" >&2
    exit 2
fi
install_only=0
[ "$1" = --install ] && install_only=1
if [ -n "${KEYCARD_TEST_PG:-}" ]; then
    [ "$install_only" = 1 ] && exit 0
    exec "$@"
fi

started=$(date +%s%N)
# The newest server's bin directory: one with initdb (postgresql-client alone
# leaves a bin directory without it).
pg_bindir() {
    # `|| true`: no match is an answer (none), not a failure under pipefail.
    { ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null || true; } | sort -V | tail -n 1 | xargs -r dirname
}

pgbin=$(pg_bindir)
if [ -z "$pgbin" ]; then
    echo "==> installing postgresql (Debian package)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        postgresql >/dev/null
    pgbin=$(pg_bindir)
    [ -n "$pgbin" ] || { echo "postgresql installed no server binaries" >&2; exit 1; }
fi
[ "$install_only" = 1 ] && exit 0

dir=$(mktemp -d "${TMPDIR:-/tmp}/keycard-pg.XXXXXX")
# As root the cluster belongs to `postgres` (created by the package).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}
[ "$(id -u)" = 0 ] && chown postgres: "$dir"

cleanup() {
    as_pg "'$pgbin/pg_ctl' -D '$dir/data' -m immediate -w stop" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg "'$pgbin/initdb' -D '$dir/data' -A trust -U postgres --no-sync -E UTF8" >/dev/null

# A free port: a few random ones, skipping any that accepts a connection.
port=""
for _ in 1 2 3 4 5 6 7 8; do
    try=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$try") 2>/dev/null && continue
    # Throwaway data: no fsync, and room for many parallel test pools.
    opts="-p $try -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 \
-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if as_pg "'$pgbin/pg_ctl' -D '$dir/data' -l '$dir/log' -w -o '$opts' start" >/dev/null; then
        port=$try
        break
    fi
done
if [ -z "$port" ]; then
    echo "could not start PostgreSQL; its log:" >&2
    cat "$dir/log" >&2 || true
    exit 1
fi

export KEYCARD_TEST_PG="postgres://postgres@127.0.0.1:$port/postgres"
# Where the cluster is, for tests that restart it (pg_ctl -D … restart,
# as the cluster's owner; test_nodes_failure.py).
export KEYCARD_TEST_PG_DATA="$dir/data" KEYCARD_TEST_PG_BIN="$pgbin" KEYCARD_TEST_PG_LOG="$dir/log" \
    KEYCARD_TEST_PG_OPTS="$opts"
ms=$((($(date +%s%N) - started) / 1000000))
echo "==> PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (ready in ${ms} ms)" >&2

status=0
"$@" || status=$?
exit $status
