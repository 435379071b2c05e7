#!/usr/bin/env bash
# A short smoke of the load generator for CI: builds `yamabiko` and the bench crate's
# peer echo servers (release), then runs `yamabiko bench` for a few seconds against
# `yamabiko echo` and for one second against each peer, and fails unless every run
# echoed messages with zero errors, losses and mismatches. Not a measurement: the
# comparison is bench/compare.sh.
#
#   scripts/bench-smoke.sh
#
# Servers listen on free loopback ports and are stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p yamabiko-cli -p yamabiko-bench-peers
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release"

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

# smoke NAME DURATION SERVER-COMMAND...: starts the server on $port, benches it, checks.
smoke() {
    local name=$1 duration=$2
    shift 2
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
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

port=$(free_port)
smoke "yamabiko echo" 3 "$BIN/yamabiko" echo --listen "127.0.0.1:$port" --single-thread
port=$(free_port)
smoke "tokio-tungstenite echo" 1 "$BIN/echo-tungstenite" "127.0.0.1:$port"
port=$(free_port)
smoke "fastwebsockets echo" 1 "$BIN/echo-fastwebsockets" "127.0.0.1:$port"
echo "bench-smoke: all runs clean"
