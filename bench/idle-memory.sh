#!/usr/bin/env bash
# Server memory per idle connection, the echo matrix's scenario (e) on its own and in
# interleaved rounds: `yamabiko echo` as it runs by default (idle connections
# hibernate: yamabiko::Hibernator), the same with `--hibernate-after 0` (every
# connection keeps its task), and uWebSockets.js's echo server (bench/uws, when its
# npm packages are installed). Each server runs on core 0, `yamabiko bench --idle N`
# on core 1; the figure is the server's RSS growth divided by the connections.
#
#   bench/idle-memory.sh                    # N=19000 HOLD=5 ROUNDS=3, as compare.sh's (e)
#   N=5000 ROUNDS=1 bench/idle-memory.sh
#
# PORT (default 9301) is the first loopback port used (one per server run). Needs
# Linux (/proc) and taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-19000}
HOLD=${HOLD:-5}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-9301}
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p yamabiko-cli
BIN=${CARGO_TARGET_DIR:-target}/release/yamabiko
servers=(${SERVERS:-hibernating awake})
if [ -z "${SERVERS:-}" ] && [ -d bench/uws/node_modules/uWebSockets.js ] && command -v node >/dev/null; then
    servers+=(uws)
fi

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT

run() { # name port
    local name=$1 port=$2
    local yamabiko=("$BIN" echo --single-thread --no-compression --max-conns 0 --listen "127.0.0.1:$port")
    case $name in
        hibernating) taskset -c 0 "${yamabiko[@]}" >/dev/null 2>&1 & ;;
        awake) taskset -c 0 "${yamabiko[@]}" --hibernate-after 0 >/dev/null 2>&1 & ;;
        uws) taskset -c 0 node bench/uws/echo.js "$port" >/dev/null 2>&1 & ;;
    esac
    pid=$!
    # Bounded: at most 10 s for the server to listen.
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    local per
    per=$(taskset -c 1 "$BIN" bench "ws://127.0.0.1:$port/" --idle "$N" --hold "$HOLD" \
        --connect-timeout 120 --server-pid "$pid" --json 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print("%d opened in %.1f s, %.0f B/conn" % (r["idle_opened"], r["open_seconds"], r["server_bytes_per_conn"]))')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    printf '  %-12s %s\n' "$name" "$per"
}

echo "server RSS growth per idle connection, $N connections held ${HOLD} s:"
port=$PORT
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    for name in "${servers[@]}"; do
        run "$name" "$port"
        port=$((port + 1))
    done
done
