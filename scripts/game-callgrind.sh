#!/usr/bin/env bash
# What one player-tick costs the game server, counted rather than timed, so that it
# can be compared on a busy machine: the server (`yamabiko game --no-bots --threads 1`)
# runs under valgrind's callgrind (user-space instructions) or strace (system calls),
# `yamabiko game-bench` drives it with bot players, and the count over a window is
# divided by the player-ticks the server's /stats reports for the same window.
#
#   scripts/game-callgrind.sh                        # instructions per player-tick
#   MODE=strace scripts/game-callgrind.sh            # system calls per player-tick
#   BIN=/path/to/other/yamabiko scripts/game-callgrind.sh   # another build, to compare
#
# Environment: BIN (the release build of this tree), MODE (callgrind | strace),
# PLAYERS (32; keep it small: under callgrind the server runs ~50× slower and must
# still keep up with its ticks — the script warns when it did not), HZ (30),
# WINDOW (10 s), WARMUP (3 s), PORT (a free one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p yamabiko-cli
    TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    BIN="$TARGET_DIR/release/yamabiko"
fi
MODE="${MODE:-callgrind}"
PLAYERS="${PLAYERS:-32}"
HZ="${HZ:-30}"
WINDOW="${WINDOW:-10}"
WARMUP="${WARMUP:-3}"
port="${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
work=$(mktemp -d)
server_pid=
bench_pid=
cleanup() {
    for pid in $bench_pid $server_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

server=("$BIN" game --listen "127.0.0.1:$port" --no-bots --threads 1 --tick-hz "$HZ" --max-conns 0)
case "$MODE" in
callgrind)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/out" \
        "${server[@]}" >"$work/server.log" 2>&1 &
    ;;
strace)
    # -c counts; started for the window only (attached by PID) further down.
    "${server[@]}" >"$work/server.log" 2>&1 &
    ;;
*)
    echo "MODE is callgrind or strace" >&2
    exit 2
    ;;
esac
server_pid=$!
for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

stats() {
    curl -s "http://127.0.0.1:$port/stats"
}

"$BIN" game-bench "ws://127.0.0.1:$port/ws" --players "$PLAYERS" --warmup 1 \
    --duration $((WARMUP + WINDOW + 30)) --no-stall --connect-timeout 120 --json \
    >"$work/bench.json" 2>"$work/bench.log" &
bench_pid=$!
# Until every player is seated, then the warm-up.
for _ in $(seq 1200); do
    players=$(stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["players"])' 2>/dev/null || echo 0)
    if [ "$players" -ge "$PLAYERS" ]; then break; fi
    sleep 0.1
done
sleep "$WARMUP"

case "$MODE" in
callgrind) callgrind_control -i on "$server_pid" >/dev/null 2>&1 ;;
strace)
    strace -c -f -p "$server_pid" -o "$work/strace" &
    strace_pid=$!
    sleep 0.2
    ;;
esac
stats >"$work/s0.json"
sleep "$WINDOW"
stats >"$work/s1.json"
case "$MODE" in
callgrind) callgrind_control -d "$server_pid" >/dev/null 2>&1 ;;
strace)
    kill -INT "$strace_pid"
    wait "$strace_pid" 2>/dev/null || true
    ;;
esac

kill "$bench_pid" 2>/dev/null || true
wait "$bench_pid" 2>/dev/null || true
bench_pid=
kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

python3 - "$work" "$MODE" "$PLAYERS" "$HZ" "$WINDOW" <<'PY'
import json, re, sys
work, mode, players, hz, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s0, s1 = (json.load(open(f"{work}/{n}.json")) for n in ("s0", "s1"))
d = lambda k: s1[k] - s0[k]
pt = d("player_ticks")
expected = players * hz * window
print(f"{players} players, {hz} Hz, {window:.0f} s window: {d('ticks')} ticks, {pt} player-ticks "
      f"({100 * pt / expected:.0f}% of {expected:.0f}), {d('inputs')} inputs, {d('snapshots')} snapshots")
if pt < 0.9 * expected:
    print("warning: the server did not keep up with its ticks; use fewer PLAYERS", file=sys.stderr)
if mode == "callgrind":
    # The dump taken at the end of the window (out.1): what ran since instrumentation
    # was switched on.
    text = open(f"{work}/out.1").read()
    m = re.search(r"^totals:\s*(\d+)", text, re.M)
    ir = int(m.group(1))
    print(f"instructions (user space): {ir:,}  →  {ir / pt:,.0f} per player-tick")
else:
    calls, rows = 0, []
    for line in open(f"{work}/strace"):
        f = line.split()
        if len(f) >= 5 and f[-1] not in ("syscall", "total") and f[3].isdigit():
            rows.append((int(f[3]), f[-1]))
    rows.sort(reverse=True)
    calls = sum(c for c, _ in rows)
    print(f"system calls: {calls:,}  →  {calls / pt:.2f} per player-tick")
    print("  " + ", ".join(f"{n} {c / pt:.2f}" for c, n in rows[:8]))
PY
