#!/usr/bin/env bash
# A short smoke of the load generator for CI: builds `yamabiko` and the bench crate's
# peer servers (release), then runs `yamabiko bench` for a few seconds against
# `yamabiko echo` and for one second against each peer echo server (uWebSockets.js
# too), then `yamabiko bench --broadcast` for a second against `yamabiko echo
# --broadcast` and each peer broadcast server (tokio-tungstenite, fastwebsockets,
# uWebSockets.js, gorilla), and fails unless every run delivered messages with zero
# errors, losses and mismatches. Not a measurement: the comparison is
# bench/compare.sh.
#
#   scripts/bench-smoke.sh
#
# Installs what the peers need when missing: uWebSockets.js with npm (bench/uws), and
# Go with gorilla/websocket from Debian (apt-get; GOPATH mode, no module downloads).
# Servers listen on free loopback ports and are stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p yamabiko-cli -p yamabiko-bench-peers
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "bench-smoke: node and npm are needed for the uWebSockets.js peer" >&2
    exit 1
fi
if [ ! -d bench/uws/node_modules/uWebSockets.js ]; then
    (cd bench/uws && npm install --no-audit --no-fund --silent)
fi
node -e 'require("./bench/uws/uws")' # fails unless the native addon loads
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go golang-github-gorilla-websocket-dev >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
              golang-go golang-github-gorilla-websocket-dev >/dev/null; }
fi
(cd bench/gorilla && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= go build -o "$BIN/broadcast-gorilla" .)

server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME SERVER-COMMAND...: starts the server on $port and waits until it listens.
start() {
    local name=$1
    shift
    "$@" >/dev/null 2>&1 &
    server_pid=$!
    local ready=0
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ready=1; break; fi
        sleep 0.1
    done
    if [ "$ready" != 1 ]; then
        echo "bench-smoke: $name did not start listening on $port" >&2
        exit 1
    fi
}

stop() {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# smoke NAME DURATION SERVER-COMMAND...: starts the server on $port, benches it, checks.
smoke() {
    local name=$1 duration=$2
    shift 2
    start "$name" "$@"
    local report
    report=$(timeout 60 "$BIN/yamabiko" bench "ws://127.0.0.1:$port/" --conns 20 --size 256 \
        --inflight 4 --warmup 1 --duration "$duration" --json --server-pid "$server_pid")
    echo "$report" | python3 -c '
import json, sys
name = sys.argv[1]
r = json.load(sys.stdin)
print("bench-smoke: %s: %d messages, %.0f msgs/s, p99 %.0f us, errors %d, lost %d, mismatches %d"
      % (name, r["messages"], r["msgs_per_s"], r["latency_us"]["p99"], r["errors"], r["lost"], r["mismatches"]))
bad = r["messages"] <= 0 or r["errors"] or r["lost"] or r["mismatches"]
sys.exit(1 if bad else 0)
' "$name"
    stop
}

# broadcast NAME SERVER-COMMAND...: starts a broadcast server on $port, loads it with
# 20 subscribers for a second, checks that every delivery arrived.
broadcast() {
    local name=$1
    shift
    start "$name" "$@"
    local report
    report=$(timeout 60 "$BIN/yamabiko" bench "ws://127.0.0.1:$port/" --broadcast --subscribers 20 \
        --size 64 --inflight 4 --warmup 0.5 --duration 1 --json --server-pid "$server_pid")
    echo "$report" | python3 -c '
import json, sys
name = sys.argv[1]
r = json.load(sys.stdin)
print("bench-smoke: %s: %d published, %d of %d deliveries, %.0f/s, fan-out p99 %.0f us, errors %d, lost %d"
      % (name, r["published"], r["deliveries_received"], r["deliveries_expected"], r["deliveries_per_s"],
         r["fanout_us"]["p99"], r["errors"], r["lost"]))
bad = r["published"] <= 0 or r["errors"] or r["lost"] or r["mismatches"]
sys.exit(1 if bad else 0)
' "$name"
    stop
}

port=$(free_port)
smoke "yamabiko echo" 3 "$BIN/yamabiko" echo --listen "127.0.0.1:$port" --single-thread
port=$(free_port)
smoke "tokio-tungstenite echo" 1 "$BIN/echo-tungstenite" "127.0.0.1:$port"
port=$(free_port)
smoke "fastwebsockets echo" 1 "$BIN/echo-fastwebsockets" "127.0.0.1:$port"
port=$(free_port)
smoke "uWebSockets.js echo" 1 node bench/uws/echo.js "$port"
port=$(free_port)
broadcast "yamabiko echo --broadcast" "$BIN/yamabiko" echo --broadcast --listen "127.0.0.1:$port" --single-thread
port=$(free_port)
broadcast "tokio-tungstenite broadcast" "$BIN/broadcast-tungstenite" "127.0.0.1:$port"
port=$(free_port)
broadcast "fastwebsockets broadcast" "$BIN/broadcast-fastwebsockets" "127.0.0.1:$port"
port=$(free_port)
broadcast "uWebSockets.js broadcast" node bench/uws/broadcast.js "$port"
port=$(free_port)
GOMAXPROCS=1 broadcast "gorilla chat hub" "$BIN/broadcast-gorilla" "127.0.0.1:$port"
echo "bench-smoke: all runs clean"
