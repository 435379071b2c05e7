#!/usr/bin/env bash
# The game server under load: builds the release binary, starts
# `yamabiko game --no-bots --threads 1` pinned to one core on a free loopback port,
# runs `yamabiko game-bench` pinned to another, and prints the report (server CPU per
# player-tick, tick duration and lateness, bytes per player, input→snapshot latency,
# and the same with one bot that stops reading). The server is stopped by PID.
#
#   scripts/game-bench.sh                             # 64 players, 30 Hz
#   PLAYERS=2000 scripts/game-bench.sh                # the issue's targets, 30 Hz
#   PLAYERS=1000 HZ=60 scripts/game-bench.sh          # … and 60 Hz
#   SMOKE=1 scripts/game-bench.sh                     # CI: small and short, checked
#
# Environment: PLAYERS (64), HZ (30), DURATION (10 s), STALL_DURATION (15 s),
# WARMUP (3 s), CORE_SERVER (0), CORE_CLIENT (1), JSON=FILE (keep the JSON report),
# SMOKE=1 (16 players, 2 s windows; fails on any error or an empty report).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p yamabiko-cli
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/yamabiko"

PLAYERS="${PLAYERS:-64}"
HZ="${HZ:-30}"
DURATION="${DURATION:-10}"
STALL_DURATION="${STALL_DURATION:-15}"
WARMUP="${WARMUP:-3}"
if [ -n "${SMOKE:-}" ]; then
    PLAYERS=16 DURATION=2 STALL_DURATION=2 WARMUP=1
fi
# taskset when there is more than one core to pin to (it execs the command, so $! is
# the server's PID).
pin_server=()
pin_client=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -gt 1 ]; then
    pin_server=(taskset -c "${CORE_SERVER:-0}")
    pin_client=(taskset -c "${CORE_CLIENT:-1}")
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
"${pin_server[@]}" "$BIN" game --listen "127.0.0.1:$port" --no-bots --threads 1 \
    --tick-hz "$HZ" --max-conns 0 >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

report=$(mktemp)
"${pin_client[@]}" "$BIN" game-bench "ws://127.0.0.1:$port/ws" --players "$PLAYERS" \
    --duration "$DURATION" --stall-duration "$STALL_DURATION" --warmup "$WARMUP" --json > "$report"
if [ -n "${JSON:-}" ]; then cp "$report" "$JSON"; fi
python3 - "$report" "${SMOKE:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
smoke = sys.argv[2]
print(f"{r['players']} players in {r['rooms']} rooms of {r['room_size']}, {r['tick_hz']} Hz")
names = [w["name"] for w in r["windows"]]
print(f"{'':44}" + "".join(f"{n:>16}" for n in names))
rows = [
    ("server CPU µs per player-tick", lambda w: f"{w['server_cpu_us_per_player_tick']:.2f}"),
    ("server busy (share of one core)", lambda w: f"{100 * w['server_busy']:.1f}%"),
    ("generator busy (share of one core)", lambda w: f"{100 * w['generator_busy']:.1f}%"),
    ("tick duration p50 / p99 (µs)", lambda w: f"{w['tick_us']['p50']} / {w['tick_us']['p99']}"),
    ("tick start lateness p50 / p99 (µs)", lambda w: f"{w['tick_late_us']['p50']} / {w['tick_late_us']['p99']}"),
    ("bytes per player per second", lambda w: f"{w['bytes_per_player_per_s']:.0f}"),
    ("input→snapshot p50 / p99 (ms)", lambda w: f"{w['input_to_snapshot_ms']['p50']:.1f} / {w['input_to_snapshot_ms']['p99']:.1f}"),
    ("inputs applied at the next tick", lambda w: f"{100 * w['applied_next_tick']:.1f}%"),
    ("snapshot arrival jitter p99 (ms)", lambda w: f"{w['snapshot_interval_jitter_ms']['p99']:.2f}"),
    ("snapshots missed (measured bots)", lambda w: f"{w['snapshots_missed']}"),
    ("snapshots replaced (server)", lambda w: f"{w['snapshots_replaced_server']}"),
    ("pages closed as too slow", lambda w: f"{w['slow_closed']}"),
    ("server RSS growth (KiB)", lambda w: f"{w['rss_growth_bytes'] // 1024}"),
]
for name, f in rows:
    print(f"{name:44}" + "".join(f"{f(w):>16}" for w in r["windows"]))
bad = r["errors"] > 0 or any(w["snapshots_received"] == 0 or w["inputs_answered"] == 0 for w in r["windows"])
if bad:
    print(f"game-bench: errors {r['errors']}, or a window without snapshots or answered inputs", file=sys.stderr)
    sys.exit(1)
if smoke:
    print("game-bench smoke: clean")
PY
