#!/usr/bin/env bash
# The board on several servers, against real PostgreSQL and Redis:
#
#   scripts/multi-instance-test.sh
#
# Installs postgresql and redis-server from the distribution when missing (Debian/
# Ubuntu, apt-get), starts both on 127.0.0.1 on free ports with throwaway data
# directories (scripts/lib/pg-redis.sh), and runs the tests behind the `multi-instance-tests` feature of
# yamabiko-cli (the PostgreSQL store's unit tests and tests/multi_instance.rs, which
# runs two `yamabiko serve` instances). The servers are stopped by PID on exit.
#
# Environment: CARGO_TARGET_DIR (passed through), MULTI_INSTANCE_TIMEOUT (seconds for
# each cargo test run, default 900).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
exec </dev/null
TIMEOUT="${MULTI_INSTANCE_TIMEOUT:-900}"
START=$SECONDS

log() { echo "multi-instance-test: $* (at $((SECONDS - START))s)"; }

# shellcheck source=lib/pg-redis.sh
. "$ROOT/scripts/lib/pg-redis.sh"
pgr_install

WORK="$(mktemp -d /tmp/yamabiko-multi.XXXXXX)"

cleanup() {
    local rc=$?
    set +e
    pgr_stop "$rc"
    rm -rf "$WORK"
    log "done, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pgr_start "$WORK"
pgr_create_db board_test

export YAMABIKO_TEST_POSTGRES="postgres://board@127.0.0.1:$PG_PORT/board_test"
export YAMABIKO_TEST_REDIS="redis://127.0.0.1:$REDIS_PORT/"
# The test restarts Redis with the same binary and options.
export YAMABIKO_TEST_REDIS_SERVER="$(command -v redis-server)"
export YAMABIKO_TEST_REDIS_DIR="$WORK/redis"

log "PostgreSQL store tests"
timeout "$TIMEOUT" cargo test -p yamabiko-board --features multi-instance-tests --lib -- postgres
log "two instances sharing PostgreSQL and Redis"
timeout "$TIMEOUT" cargo test -p yamabiko-cli --features multi-instance-tests --test multi_instance
