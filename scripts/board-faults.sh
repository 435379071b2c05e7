#!/usr/bin/env bash
# The board under load and under faults, scripted and repeatable: each scenario starts
# fresh servers, runs `yamabiko bench --board` (viewers and posters that reconnect the
# way the page does), injects its fault at a fixed time into the measuring window, and
# checks the generator's verdict: every acknowledged post is stored once (audit) and
# reached every viewer of its thread once, in order; no post hung without an answer.
#
#   scripts/board-faults.sh                  # every scenario, at CI scale (~2 min)
#   scripts/board-faults.sh storm sqlite-kill
#
# Scenarios:
#   load              one SQLite instance, paced posts, viewers over two threads
#   saturate          one SQLite instance, posts as fast as it acknowledges them
#   instance-kill     two instances on PostgreSQL + Redis, `kill -9` of one (not restarted):
#                     its viewers and posters move to the other
#   redis-outage      two instances, Redis stopped for BOARD_REDIS_DOWN s (5) and started
#   postgres-restart  two instances, PostgreSQL fast shutdown and start
#   postgres-stall    two instances, every PostgreSQL process stopped (SIGSTOP) for
#                     BOARD_STALL s (11): posts get an error within the server's 10 s
#                     storage timeout, never an ack, never silence
#   sqlite-kill       one SQLite instance under a burst of posts, `kill -9`, restarted
#                     1 s later on the same file and port
#   storm             every viewer dropped at once; they reconnect with the page's backoff
#
# Scale (environment; CI defaults in brackets, the README gives full-scale commands):
#   BOARD_VIEWERS [200]  BOARD_RATE posts/s [20]  BOARD_DURATION s [6]
#   BOARD_STORM_VIEWERS [300]  BOARD_SAT_POSTERS [1000]  BOARD_IN_FLIGHT [64]
#   BOARD_FAULT_AT s into the window [2]  BOARD_REDIS_DOWN s [5]  BOARD_STALL s [11]
#   BOARD_GEN_THREADS generator runtime threads [1]
#   BOARD_TASKSET_SERVER / BOARD_TASKSET_GEN  CPU lists to pin to (e.g. 0 and 1)
#   BOARD_FAULTS_REPORT  also append the summary table (Markdown) to this file
#   BOARD_FAULTS_JSON_DIR  keep each scenario's full `bench --board --json` report here
#
# PostgreSQL and Redis are installed when missing and started on free loopback ports
# (scripts/lib/pg-redis.sh). Every process started here is stopped by PID on exit;
# every wait is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
exec </dev/null
START=$SECONDS

VIEWERS="${BOARD_VIEWERS:-200}"
RATE="${BOARD_RATE:-20}"
DURATION="${BOARD_DURATION:-6}"
STORM_VIEWERS="${BOARD_STORM_VIEWERS:-300}"
SAT_POSTERS="${BOARD_SAT_POSTERS:-1000}"
IN_FLIGHT="${BOARD_IN_FLIGHT:-64}"
FAULT_AT="${BOARD_FAULT_AT:-2}"
REDIS_DOWN="${BOARD_REDIS_DOWN:-5}"
STALL="${BOARD_STALL:-11}"
GEN_THREADS="${BOARD_GEN_THREADS:-1}"
ALL=(load saturate load-two instance-kill redis-outage postgres-restart postgres-stall sqlite-kill storm)
SCENARIOS=("$@")
[ "${#SCENARIOS[@]}" -gt 0 ] || SCENARIOS=("${ALL[@]}")
for s in "${SCENARIOS[@]}"; do
    case " ${ALL[*]} " in *" $s "*) ;; *) echo "unknown scenario: $s (one of: ${ALL[*]})" >&2; exit 2 ;; esac
done

log() { echo "board-faults: $* (at $((SECONDS - START))s)"; }

# Many sockets: raise the soft limit to the hard one for us and our children.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building the release binary"
cargo build --release -q -p yamabiko-cli
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/yamabiko"

server_pin=()
gen_pin=()
[ -z "${BOARD_TASKSET_SERVER:-}" ] || server_pin=(taskset -c "$BOARD_TASKSET_SERVER")
[ -z "${BOARD_TASKSET_GEN:-}" ] || gen_pin=(taskset -c "$BOARD_TASKSET_GEN")

WORK="$(mktemp -d /tmp/yamabiko-faults.XXXXXX)"
# PostgreSQL runs as another user when we are root: it must reach its directory.
chmod 755 "$WORK"
declare -A PID=() PORT=()
BENCH_PID=""
NEED_PG=0
for s in "${SCENARIOS[@]}"; do
    case "$s" in load-two | instance-kill | redis-outage | postgres-*) NEED_PG=1 ;; esac
done

# shellcheck source=lib/pg-redis.sh
. "$ROOT/scripts/lib/pg-redis.sh"

stop_boards() {
    local name
    for name in "${!PID[@]}"; do
        kill -TERM "${PID[$name]}" 2>/dev/null || true
    done
    for name in "${!PID[@]}"; do
        for _ in $(seq 1 50); do kill -0 "${PID[$name]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${PID[$name]}" 2>/dev/null || true
        wait "${PID[$name]}" 2>/dev/null || true
        unset "PID[$name]"
    done
}

cleanup() {
    local rc=$?
    set +e
    [ -z "$BENCH_PID" ] || kill -TERM "$BENCH_PID" 2>/dev/null
    stop_boards
    log "stopping PostgreSQL and Redis"
    pgr_stop "$rc"
    if [ "$rc" -ne 0 ]; then
        for f in "$WORK"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $(basename "$f") (tail)"
            tail -n 15 "$f"
        done
    fi
    rm -rf "$WORK"
    log "done, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$NEED_PG" -eq 1 ]; then
    pgr_install
    mkdir -p "$WORK/services"
    pgr_start "$WORK/services"
fi

# start_board NAME ARGS...: starts `yamabiko serve` on PORT[NAME] (a free port the
# first time, the same one on a restart) and waits until it listens.
start_board() {
    local name=$1
    shift
    [ -n "${PORT[$name]:-}" ] || PORT[$name]="$(pgr_free_port)"
    "${server_pin[@]}" "$BIN" serve --listen "127.0.0.1:${PORT[$name]}" --max-conns 0 "$@" \
        >"$WORK/$name.out" 2>>"$WORK/$name.log" &
    PID[$name]=$!
    for _ in $(seq 1 100); do
        grep -q "listening" "$WORK/$name.out" 2>/dev/null && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "board-faults: server $name did not start" >&2
    cat "$WORK/$name.log" >&2
    return 1
}

kill9() {
    local name=$1
    kill -KILL "${PID[$name]}"
    wait "${PID[$name]}" 2>/dev/null || true
    unset "PID[$name]"
    log "killed $name with SIGKILL"
}

url() { echo "ws://127.0.0.1:${PORT[$1]}/ws"; }

# bench NAME ARGS...: starts the generator in the background (JSON to NAME.json).
bench() {
    local name=$1
    shift
    rm -f "$WORK/$name.ready"
    "${gen_pin[@]}" timeout 600 "$BIN" bench --board --json --threads "$GEN_THREADS" \
        --ready-file "$WORK/$name.ready" "$@" >"$WORK/$name.json" 2>"$WORK/$name.bench.log" &
    BENCH_PID=$!
}

# Waits until the generator's window opens, then FAULT_AT (or $2) more seconds.
at_fault_time() {
    local name=$1 at="${2:-$FAULT_AT}"
    for _ in $(seq 1 1200); do
        [ -f "$WORK/$name.ready" ] && break
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -f "$WORK/$name.ready" ] || { echo "board-faults: $name: the window never opened" >&2; return 1; }
    sleep "$at"
}

SUMMARY="$WORK/summary.tsv"
FAILED=()

# finish NAME WHAT: waits for the generator, prints its verdict and a summary row.
finish() {
    local name=$1 what=$2 rc=0
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=""
    if ! python3 - "$name" "$what" "$WORK/$name.json" "$rc" >>"$SUMMARY" <<'PY'
import json, sys
name, what, path, rc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    r = json.load(open(path))
except Exception as e:
    print(f"board-faults: {name}: no report ({e})", file=sys.stderr)
    sys.exit(1)
a = r.get("audit") or {}
p, d, c = r["posts"], r["delivery"], r["connections"]
refusals = ", ".join(f"{k} {v}" for k, v in sorted(p["refusals"].items())) or "none"
episodes = c["episodes"]
back = max((e["all_back_live_s"] or float("inf") for e in episodes), default=None)
back_s = "-" if back is None else ("never" if back == float("inf") else f"{back:.2f} s")
row = [name, what, str(r["viewers_connected"]), str(p["acked"]), str(a.get("found", "-")),
       str(a.get("lost", "-")), str(a.get("duplicated", "-")), str(d["lost"]), str(d["duplicates"]),
       refusals, f'{p["refusal_max_ms"]:.0f} ms' if p["refused"] else "-", str(p["hung"]), back_s,
       f'{d["ms"]["p99"]:.0f} ms',
       f'{d["cross_instance_ms"]["p99"]:.0f} ms' if d.get("cross_instance_ms") else "-",
       f'{p["acked_per_s_saturated"]:.0f} (saturated)' if p.get("acked_per_s_saturated") else f'{p["acked_per_s"]:.0f}',
       str(p["resent"])]
print("\t".join(row))
problems = r.get("problems", [])
status = "ok" if rc == 0 and not problems else "FAILED: " + "; ".join(problems)
print(f"board-faults: {name}: acked {p['acked']}, found {a.get('found')}, lost {a.get('lost')}, "
      f"duplicated {a.get('duplicated')}; deliveries lost {d['lost']}, duplicated {d['duplicates']}, "
      f"out of order {d['out_of_order']}, early {d['early']}; refused {refusals}; hung {p['hung']}; "
      f"viewers back live {back_s}; {status}", file=sys.stderr)
sys.exit(0 if rc == 0 and not problems else 1)
PY
    then
        FAILED+=("$name")
    fi
    if [ -n "${BOARD_FAULTS_JSON_DIR:-}" ]; then
        mkdir -p "$BOARD_FAULTS_JSON_DIR"
        cp "$WORK/$name.json" "$BOARD_FAULTS_JSON_DIR/" 2>/dev/null || true
    fi
    stop_boards
}

db_no=0
pg_args() {
    db_no=$((db_no + 1))
    local db="faults_${db_no}_$$"
    pgr_create_db "$db" >/dev/null
    PG_ARGS=(--database "postgres://board@127.0.0.1:$PG_PORT/$db"
        --redis "redis://127.0.0.1:$REDIS_PORT/" --redis-prefix "$db")
}

common=(--warmup 1 --duration "$DURATION" --drain-timeout 20 --connect-timeout 60)

scenario_load() {
    start_board load --db "$WORK/load.db"
    bench load "$(url load)" --viewers "$VIEWERS" --board-threads 2 --post-rate "$RATE" \
        --server-pid "${PID[load]}" "${common[@]}"
    finish load "paced posts, one SQLite instance"
}

scenario_saturate() {
    start_board saturate --db "$WORK/saturate.db"
    # Each poster may post 5 times per 10 s: the burst of SAT_POSTERS × 5 posts is
    # what saturates; the window covers it.
    bench saturate "$(url saturate)" --viewers 20 --board-threads 4 --saturate \
        --posters "$SAT_POSTERS" --posts-in-flight "$IN_FLIGHT" --server-pid "${PID[saturate]}" \
        --warmup 0 --duration 3 --drain-timeout 20 --connect-timeout 60
    finish saturate "posts as fast as acknowledged"
}

scenario_load_two() {
    pg_args
    start_board a "${PG_ARGS[@]}"
    start_board b "${PG_ARGS[@]}"
    bench load-two "$(url a)" --also-url "$(url b)" --viewers "$VIEWERS" --board-threads 2 \
        --post-rate "$RATE" --server-pid "${PID[a]}" --also-server-pid "${PID[b]}" "${common[@]}"
    finish load-two "paced posts, two instances on PostgreSQL + Redis"
}

scenario_instance_kill() {
    pg_args
    start_board a "${PG_ARGS[@]}"
    start_board b "${PG_ARGS[@]}"
    bench instance-kill "$(url a)" --also-url "$(url b)" --faults --viewers "$VIEWERS" \
        --board-threads 2 --post-rate "$RATE" "${common[@]}"
    at_fault_time instance-kill
    kill9 a
    finish instance-kill "kill -9 of one of two instances"
}

scenario_redis_outage() {
    pg_args
    start_board a "${PG_ARGS[@]}"
    start_board b "${PG_ARGS[@]}"
    bench redis-outage "$(url a)" --also-url "$(url b)" --faults --viewers "$VIEWERS" \
        --board-threads 2 --post-rate "$RATE" "${common[@]}"
    at_fault_time redis-outage
    pgr_redis_stop
    sleep "$REDIS_DOWN"
    pgr_redis_start
    finish redis-outage "Redis stopped ${REDIS_DOWN} s"
}

scenario_postgres_restart() {
    pg_args
    start_board a "${PG_ARGS[@]}"
    start_board b "${PG_ARGS[@]}"
    bench postgres-restart "$(url a)" --also-url "$(url b)" --faults --viewers "$VIEWERS" \
        --board-threads 2 --post-rate "$RATE" "${common[@]}"
    at_fault_time postgres-restart
    pgr_pg_stop_fast
    pgr_pg_start
    finish postgres-restart "PostgreSQL fast shutdown + start"
}

scenario_postgres_stall() {
    pg_args
    start_board a "${PG_ARGS[@]}"
    start_board b "${PG_ARGS[@]}"
    bench postgres-stall "$(url a)" --also-url "$(url b)" --faults --viewers "$VIEWERS" \
        --board-threads 2 --post-rate "$RATE" "${common[@]}"
    at_fault_time postgres-stall
    pgr_pg_pause
    sleep "$STALL"
    pgr_pg_resume
    finish postgres-stall "PostgreSQL stopped (SIGSTOP) ${STALL} s"
}

scenario_sqlite_kill() {
    start_board sqlite --db "$WORK/sqlite.db"
    # Killed 0.3 s into the burst of SAT_POSTERS × 5 posts: posts are in flight.
    bench sqlite-kill "$(url sqlite)" --faults --viewers 50 --board-threads 2 --saturate \
        --posters "$SAT_POSTERS" --posts-in-flight "$IN_FLIGHT" --warmup 0 \
        --duration "$DURATION" --drain-timeout 20 --connect-timeout 60
    at_fault_time sqlite-kill 0.3
    kill9 sqlite
    sleep 1
    start_board sqlite --db "$WORK/sqlite.db"
    log "restarted sqlite on the same file and port"
    finish sqlite-kill "kill -9 of the SQLite instance mid-burst"
}

scenario_storm() {
    start_board storm --db "$WORK/storm.db"
    bench storm "$(url storm)" --viewers "$STORM_VIEWERS" --board-threads 2 --post-rate 10 \
        --storm-at "$FAULT_AT" --server-pid "${PID[storm]}" "${common[@]}"
    finish storm "every viewer dropped at once"
}

for s in "${SCENARIOS[@]}"; do
    log "scenario $s"
    "scenario_${s//-/_}"
done

table="$(python3 - "$SUMMARY" <<'PY'
import sys
head = ["scenario", "fault", "viewers", "acked", "found", "lost", "duplicated",
        "deliveries lost", "deliveries twice", "refused", "slowest refusal", "hung",
        "all viewers back live", "delivery p99", "between instances p99", "acked/s", "re-sent"]
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
)"
echo
echo "$table"
[ -z "${BOARD_FAULTS_REPORT:-}" ] || echo "$table" >>"$BOARD_FAULTS_REPORT"
if [ "${#FAILED[@]}" -gt 0 ]; then
    log "FAILED: ${FAILED[*]}"
    exit 1
fi
log "all scenarios passed"
