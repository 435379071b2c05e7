#!/usr/bin/env bash
# What keepalive costs per idle connection: `yamabiko echo --single-thread` holding N
# idle connections (opened by `yamabiko bench --idle`), its RSS growth per connection,
# with keepalive off, on at its default (20 s / 20 s: armed, no ping during the hold),
# and on and pinging (every second during the hold; the idle clients do not read, so
# the timeout is long enough not to end them).
#
#   bench/keepalive-memory.sh            # N=10000 HOLD=15, the README's figures
#   N=2000 HOLD=8 bench/keepalive-memory.sh
#
# PORT (default 9101) is the loopback port the echo server takes. Needs Linux (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
HOLD=${HOLD:-15}
PORT=${PORT:-9101}
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p yamabiko-cli
BIN=${CARGO_TARGET_DIR:-target}/release/yamabiko

run() { # name, echo's keepalive flags...
    local name=$1
    shift
    "$BIN" echo --single-thread --listen "127.0.0.1:$PORT" --max-conns 0 "$@" 2>/dev/null &
    local pid=$!
    trap "kill $pid 2>/dev/null" EXIT
    # Bounded: at most 10 s for the server to listen.
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    local per
    per=$("$BIN" bench "ws://127.0.0.1:$PORT/" --idle "$N" --hold "$HOLD" \
        --connect-timeout 120 --server-pid "$pid" --json 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print("%d opened, %.0f B/conn" % (r["idle_opened"], r["server_bytes_per_conn"]))')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    printf '%-34s %s\n' "$name" "$per"
}

echo "yamabiko echo --single-thread, $N idle connections, held ${HOLD} s:"
# Awake connections (--hibernate-after 0): what keepalive adds to a connection in its
# task. (Asleep, keepalive is a few dozen bytes in the hibernator: bench/idle-memory.sh.)
run "keepalive off (--ping-interval 0)" --hibernate-after 0 --ping-interval 0
run "keepalive on (20 s / 20 s)" --hibernate-after 0 --ping-interval 20s --ping-timeout 20s
run "keepalive pinging (1 s / 60 s)" --hibernate-after 0 --ping-interval 1s --ping-timeout 60s
