#!/usr/bin/env bash
# The board on several servers, against real PostgreSQL and Redis:
#
#   scripts/multi-instance-test.sh
#
# Installs postgresql and redis-server from the distribution when missing (Debian/
# Ubuntu, apt-get), starts both on 127.0.0.1 on free ports with throwaway data
# directories, and runs the tests behind the `multi-instance-tests` feature of
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

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

pg_bin() {
    # Debian keeps the server binaries out of PATH, one directory per major version.
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

missing=()
[ -n "$(pg_bin)" ] || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
PGBIN="$(pg_bin)"
[ -n "$PGBIN" ] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK="$(mktemp -d /tmp/yamabiko-multi.XXXXXX)"
chmod 755 "$WORK"
PG_PID=""
REDIS_PID=""

# PostgreSQL refuses to run as root: run it as the `postgres` user (created by the
# Debian package), or as whoever runs this script otherwise.
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir "$WORK" --shell /usr/sbin/nologin postgres
    fi
    RUNAS=(runuser -u postgres --)
fi

cleanup() {
    local rc=$?
    set +e
    # The server started by this script; the test restarts Redis itself and stops its
    # own copy, but a crashed test could leave one: it is found by the pid file.
    for pidfile in "$WORK/pg/postmaster.pid" "$WORK/redis/redis.pid"; do
        if [ -f "$pidfile" ]; then
            pid="$(head -n 1 "$pidfile")"
            [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
        fi
    done
    [ -n "$REDIS_PID" ] && kill -TERM "$REDIS_PID" 2>/dev/null
    [ -n "$PG_PID" ] && kill -TERM "$PG_PID" 2>/dev/null
    for _ in $(seq 1 50); do
        alive=0
        for pid in $PG_PID $REDIS_PID; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in $PG_PID $REDIS_PID; do kill -KILL "$pid" 2>/dev/null; done
    if [ "$rc" -ne 0 ]; then
        echo "---- postgres log (tail)"; tail -n 30 "$WORK/pg.log" 2>/dev/null
        echo "---- redis log (tail)"; tail -n 30 "$WORK/redis.log" 2>/dev/null
    fi
    rm -rf "$WORK"
    log "done, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- PostgreSQL
PG_PORT="$(free_port)"
mkdir -p "$WORK/pg" "$WORK/pgsock"
[ "${#RUNAS[@]}" -eq 0 ] || chown postgres "$WORK/pg" "$WORK/pgsock"
log "initdb ($PGBIN)"
"${RUNAS[@]}" "$PGBIN/initdb" -D "$WORK/pg" -U board --auth=trust -E UTF8 --no-sync \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; exit 1; }
touch "$WORK/pg.log"
[ "${#RUNAS[@]}" -eq 0 ] || chown postgres "$WORK/pg.log"
"${RUNAS[@]}" "$PGBIN/postgres" -D "$WORK/pg" -p "$PG_PORT" -k "$WORK/pgsock" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 \
    >>"$WORK/pg.log" 2>&1 &
PG_PID=$!
for _ in $(seq 1 100); do
    # postmaster.pid's first line is the server's own PID (runuser may sit between).
    if [ -f "$WORK/pg/postmaster.pid" ] && "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U board -d postgres; then
        break
    fi
    kill -0 "$PG_PID" 2>/dev/null || { cat "$WORK/pg.log"; exit 1; }
    sleep 0.2
done
"$PGBIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U board -d postgres
PG_PID="$(head -n 1 "$WORK/pg/postmaster.pid")"
psql -q -h 127.0.0.1 -p "$PG_PORT" -U board -d postgres -c "CREATE DATABASE board_test"
log "postgres $PG_PID on 127.0.0.1:$PG_PORT"

# ---- Redis
REDIS_PORT="$(free_port)"
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK/redis" --pidfile "$WORK/redis/redis.pid" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$WORK/redis.log"; exit 1; }
    sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
log "redis $REDIS_PID on 127.0.0.1:$REDIS_PORT"

export YAMABIKO_TEST_POSTGRES="postgres://board@127.0.0.1:$PG_PORT/board_test"
export YAMABIKO_TEST_REDIS="redis://127.0.0.1:$REDIS_PORT/"
# The test restarts Redis with the same binary and options.
export YAMABIKO_TEST_REDIS_SERVER="$(command -v redis-server)"
export YAMABIKO_TEST_REDIS_DIR="$WORK/redis"

log "PostgreSQL store tests"
timeout "$TIMEOUT" cargo test -p yamabiko-cli --features multi-instance-tests --bin yamabiko -- postgres
log "two instances sharing PostgreSQL and Redis"
timeout "$TIMEOUT" cargo test -p yamabiko-cli --features multi-instance-tests --test multi_instance
