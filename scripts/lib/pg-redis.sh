# PostgreSQL and Redis on loopback for the board's multi-instance tests and fault
# scripts, sourced (not run) by scripts/multi-instance-test.sh and
# scripts/board-faults.sh:
#
#   . scripts/lib/pg-redis.sh
#   pgr_install              # apt-get postgresql, postgresql-client, redis-server if missing
#   pgr_start "$WORK"        # initdb + postgres + redis-server on free ports under $WORK
#   pgr_create_db NAME       # CREATE DATABASE NAME
#   pgr_pg_stop_fast / pgr_pg_start     # a restart, as `pg_ctl stop -m fast` then start
#   pgr_pg_pause / pgr_pg_resume        # SIGSTOP / SIGCONT the server and its backends
#   pgr_redis_stop / pgr_redis_start    # by PID, then again on the same port
#   pgr_stop                 # both, by PID (call from the caller's EXIT trap)
#
# After pgr_start: PG_PORT, REDIS_PORT, PG_PID, REDIS_PID, PGBIN are set. PostgreSQL
# runs with fsync=off (throwaway data; a "restart" is a fast shutdown, which flushes
# anyway). Every wait is bounded.

pgr_log() { echo "pg-redis: $* (at ${SECONDS}s)"; }

pgr_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

pgr_bin() {
    # Debian keeps the server binaries out of PATH, one directory per major version.
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

pgr_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pgr_install() {
    local missing=()
    [ -n "$(pgr_bin)" ] || missing+=(postgresql)
    command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    if [ "${#missing[@]}" -gt 0 ]; then
        pgr_log "installing ${missing[*]}"
        pgr_as_root apt-get update -qq
        pgr_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    PGBIN="$(pgr_bin)"
    [ -n "$PGBIN" ] || { echo "PostgreSQL server binaries not found" >&2; return 1; }
}

# pgr_start WORK: WORK must exist; data, sockets and logs go under it.
pgr_start() {
    PGR_WORK="$1"
    PG_PID=""
    REDIS_PID=""
    chmod 755 "$PGR_WORK"
    # PostgreSQL refuses to run as root: run it as the `postgres` user (created by the
    # Debian package), or as whoever runs the script otherwise.
    PGR_RUNAS=()
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --home-dir "$PGR_WORK" --shell /usr/sbin/nologin postgres
        fi
        PGR_RUNAS=(runuser -u postgres --)
    fi
    PG_PORT="$(pgr_free_port)"
    mkdir -p "$PGR_WORK/pg" "$PGR_WORK/pgsock"
    [ "${#PGR_RUNAS[@]}" -eq 0 ] || chown postgres "$PGR_WORK/pg" "$PGR_WORK/pgsock"
    pgr_log "initdb ($PGBIN)"
    "${PGR_RUNAS[@]}" "$PGBIN/initdb" -D "$PGR_WORK/pg" -U board --auth=trust -E UTF8 --no-sync \
        >"$PGR_WORK/initdb.log" 2>&1 || { cat "$PGR_WORK/initdb.log"; return 1; }
    touch "$PGR_WORK/pg.log"
    [ "${#PGR_RUNAS[@]}" -eq 0 ] || chown postgres "$PGR_WORK/pg.log"
    pgr_pg_start
    REDIS_PORT="$(pgr_free_port)"
    mkdir -p "$PGR_WORK/redis"
    pgr_redis_start
}

pgr_pg_start() {
    "${PGR_RUNAS[@]}" "$PGBIN/postgres" -D "$PGR_WORK/pg" -p "$PG_PORT" -k "$PGR_WORK/pgsock" \
        -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 \
        >>"$PGR_WORK/pg.log" 2>&1 &
    PG_PID=$!
    # The process started here: runuser when run as root, else PostgreSQL itself.
    PGR_LAUNCHER=$PG_PID
    local i
    for i in $(seq 1 150); do
        # postmaster.pid's first line is the server's own PID (runuser may sit between).
        if [ -f "$PGR_WORK/pg/postmaster.pid" ] &&
            "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U board -d postgres; then
            break
        fi
        kill -0 "$PG_PID" 2>/dev/null || { cat "$PGR_WORK/pg.log"; return 1; }
        sleep 0.2
    done
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U board -d postgres ||
        { cat "$PGR_WORK/pg.log"; return 1; }
    PG_PID="$(head -n 1 "$PGR_WORK/pg/postmaster.pid")"
    pgr_log "postgres $PG_PID on 127.0.0.1:$PG_PORT"
}

# A fast shutdown (SIGINT to the postmaster: active transactions roll back, clients
# are disconnected), waited for.
pgr_pg_stop_fast() {
    [ -n "$PG_PID" ] || return 0
    kill -INT "$PG_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 150); do
        kill -0 "$PG_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PG_PID" 2>/dev/null; then
        pgr_log "postgres $PG_PID did not stop in 15 s"
        return 1
    fi
    pgr_log "postgres $PG_PID stopped (fast shutdown)"
    PG_PID=""
}

# The postmaster and its children (backends, checkpointer, …), by PID.
pgr_pg_pids() {
    [ -n "$PG_PID" ] || return 0
    echo "$PG_PID"
    ps -o pid= --ppid "$PG_PID" 2>/dev/null || true
}

# A database that stops answering (a hung disk, a partition): every PostgreSQL process
# is stopped until pgr_pg_resume.
pgr_pg_pause() {
    PGR_PAUSED="$(pgr_pg_pids | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill -STOP $PGR_PAUSED
    pgr_log "postgres paused (SIGSTOP to $PGR_PAUSED)"
}

pgr_pg_resume() {
    [ -n "${PGR_PAUSED:-}" ] || return 0
    # shellcheck disable=SC2086
    kill -CONT $PGR_PAUSED 2>/dev/null || true
    # runuser stops itself when its child stops (as su does for job control) and would
    # stay stopped, unable to reap PostgreSQL when it exits: continue it too.
    if [ -n "${PGR_LAUNCHER:-}" ]; then kill -CONT "$PGR_LAUNCHER" 2>/dev/null || true; fi
    pgr_log "postgres resumed"
    PGR_PAUSED=""
}

pgr_create_db() {
    psql -q -h 127.0.0.1 -p "$PG_PORT" -U board -d postgres -c "CREATE DATABASE $1"
}

pgr_redis_start() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$PGR_WORK/redis" --pidfile "$PGR_WORK/redis/redis.pid" >>"$PGR_WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    local i
    for i in $(seq 1 100); do
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        kill -0 "$REDIS_PID" 2>/dev/null || { cat "$PGR_WORK/redis.log"; return 1; }
        sleep 0.1
    done
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null
    pgr_log "redis $REDIS_PID on 127.0.0.1:$REDIS_PORT"
}

pgr_redis_stop() {
    [ -n "$REDIS_PID" ] || return 0
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    pgr_log "redis $REDIS_PID stopped"
    REDIS_PID=""
}

# Stops both (by PID; the pid files catch a server a test restarted itself) and, with
# a non-zero $1, prints the tails of their logs.
pgr_stop() {
    local rc="${1:-0}" pidfile pid
    [ -n "${PGR_WORK:-}" ] || return 0
    pgr_pg_resume
    for pidfile in "$PGR_WORK/pg/postmaster.pid" "$PGR_WORK/redis/redis.pid"; do
        if [ -f "$pidfile" ]; then
            pid="$(head -n 1 "$pidfile")"
            [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
        fi
    done
    [ -n "${REDIS_PID:-}" ] && kill -TERM "$REDIS_PID" 2>/dev/null
    # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave).
    [ -n "${PG_PID:-}" ] && kill -INT "$PG_PID" 2>/dev/null
    local i alive
    for i in $(seq 1 50); do
        alive=0
        for pid in ${PG_PID:-} ${REDIS_PID:-}; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in ${PG_PID:-} ${REDIS_PID:-}; do kill -KILL "$pid" 2>/dev/null; done
    # The launcher (runuser) ends with PostgreSQL; reap it if it was ours.
    if [ -n "${PGR_LAUNCHER:-}" ]; then
        kill -CONT "$PGR_LAUNCHER" 2>/dev/null || true
        wait "$PGR_LAUNCHER" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ]; then
        echo "---- postgres log (tail)"; tail -n 30 "$PGR_WORK/pg.log" 2>/dev/null
        echo "---- redis log (tail)"; tail -n 30 "$PGR_WORK/redis.log" 2>/dev/null
    fi
    return 0
}
