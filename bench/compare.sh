#!/usr/bin/env bash
# Runs yamabiko echo and the peer echo servers (tokio-tungstenite, fastwebsockets)
# through one matrix, one server at a time: the server pinned to core 0, the load
# generator (`yamabiko bench`) to core 1. Prints one table: msgs/s, server CPU µs per
# echoed message (utime+stime of the server PID over the measuring window ÷ echoes),
# idle bytes per connection (server VmRSS growth ÷ connections) and yamabiko/peer
# ratios.
#
#   bench/compare.sh                      # full run, about 9 minutes
#   DURATION=3 WARMUP=1 REPEAT=1 IDLE=2000 bench/compare.sh   # quick look
#
# The machine's speed drifts from minute to minute, so the servers take turns: every
# scenario runs REPEAT rounds of yamabiko, tokio-tungstenite, fastwebsockets (a fresh
# server each time) and the table shows each server's median round, with the spread.
#
# FLOOR=1 adds a reference server to scenarios (a) and (b): echo-floor
# (bench/src/bin/echo_floor.rs), the least a tokio server must do to echo small
# frames, with no WebSocket library. Its µs/msg is about what the kernel and the
# runtime take per message; no real server can go much below it. (It handles large
# frames naively, so it is not a reference for (c) and (d).)
#
# Needs Linux, taskset and python3. Servers are stopped by PID on exit. Set
# RESULTS=FILE to keep every run's JSON report (one line per server and scenario).
set -euo pipefail

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
REPEAT=${REPEAT:-3}
IDLE=${IDLE:-19000}
HOLD=${HOLD:-5}
CORE_SERVER=${CORE_SERVER:-0}
CORE_CLIENT=${CORE_CLIENT:-1}
# On a machine with more cores, give the generator several so that it is not the
# limit: CORE_CLIENT=1-3 GEN_THREADS=3 (busy shares then count in cores, 100% = one).
GEN_THREADS=${GEN_THREADS:-1}
FLOOR=${FLOOR:-0}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p yamabiko-cli -p yamabiko-bench-peers
bin=$target/release
ulimit -n "$(ulimit -Hn)"

results=$(mktemp)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    if [ -n "${RESULTS:-}" ] && [ -s "$results" ]; then cp "$results" "$RESULTS"; fi
    rm -f "$results"
}
trap cleanup EXIT

# start NAME PORT: starts server NAME pinned to the server core, waits until it listens.
start() {
    local name=$1 port=$2
    case $name in
        yamabiko) taskset -c "$CORE_SERVER" "$bin/yamabiko" echo --listen "127.0.0.1:$port" \
                      --single-thread --no-compression --max-conns 0 >/dev/null 2>&1 &;;
        tungstenite) taskset -c "$CORE_SERVER" "$bin/echo-tungstenite" "127.0.0.1:$port" >/dev/null 2>&1 &;;
        fastwebsockets) taskset -c "$CORE_SERVER" "$bin/echo-fastwebsockets" "127.0.0.1:$port" >/dev/null 2>&1 &;;
        floor) taskset -c "$CORE_SERVER" "$bin/echo-floor" "127.0.0.1:$port" >/dev/null 2>&1 &;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$name did not start listening on $port" >&2
    exit 1
}

stop() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# run NAME SCENARIO BENCH-ARGS...: one bench run, its JSON appended to $results.
run() {
    local name=$1 scenario=$2
    shift 2
    echo "  $name ($scenario): bench $*" >&2
    local out
    out=$(taskset -c "$CORE_CLIENT" "$bin/yamabiko" bench "ws://127.0.0.1:$port/" \
              --json --threads "$GEN_THREADS" --server-pid "$server_pid" "$@" || true)
    if [ -z "$out" ]; then out='{"errors": -1}'; fi
    printf '{"server":"%s","scenario":"%s","report":%s}\n' "$name" "$scenario" "$out" >> "$results"
}

peers=(yamabiko tungstenite fastwebsockets)
servers=("${peers[@]}")
if [ "$FLOOR" = 1 ]; then servers+=(floor); fi
common=(--warmup "$WARMUP" --duration "$DURATION")
port=9101
# scenario SCENARIO BENCH-ARGS...: REPEAT rounds, each server in turn on a fresh start.
scenario() {
    local sc=$1
    shift
    for round in $(seq "$REPEAT"); do
        for name in "${servers[@]}"; do
            if [ "$name" = floor ] && [ "$sc" != a ] && [ "$sc" != b ]; then continue; fi
            port=$((port + 1))
            echo "== $name ($sc, round $round)" >&2
            start "$name" "$port"
            run "$name" "$sc" "$@"
            stop
        done
    done
}
scenario a --conns 100 --size 20 --inflight 1 "${common[@]}"
scenario b --conns 100 --size 20 --inflight 16 "${common[@]}"
scenario c --conns 10 --size 65536 --inflight 1 "${common[@]}"
scenario d --conns 4 --size 1048576 --inflight 1 "${common[@]}"
# Idle memory is steady, one round each.
for name in "${peers[@]}"; do
    port=$((port + 1))
    start "$name" "$port"
    run "$name" e --idle "$IDLE" --hold "$HOLD" --connect-timeout 120
    stop
done

python3 - "$results" "$IDLE" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
idle = sys.argv[2]
runs = {}
for x in rows:
    runs.setdefault((x["server"], x["scenario"]), []).append(x["report"])
servers = ["yamabiko", "tungstenite", "fastwebsockets"]
names = {
    "a": "(a) 100 conns, 20 B, 1 in flight",
    "b": "(b) 100 conns, 20 B, 16 in flight",
    "c": "(c) 10 conns, 64 KiB",
    "d": "(d) 4 conns, 1 MiB",
}
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}"
def values(s, sc, key):
    return [v for v in (rep.get(key) for rep in runs.get((s, sc), [])) if v is not None]
def median(s, sc, key):
    v = values(s, sc, key)
    return statistics.median(v) if v else None
hdr = "| scenario | " + " | ".join(f"{s} msgs/s | {s} µs/msg" for s in servers) \
    + " | µs/msg ratio y/tung | µs/msg ratio y/fws | msgs/s ratio y/tung | msgs/s ratio y/fws |"
print(hdr)
print("|" + "---|" * (hdr.count("|") - 1))
for sc, label in names.items():
    cells, rate, cpu = [], {}, {}
    for s in servers:
        rate[s] = median(s, sc, "msgs_per_s")
        cpu[s] = median(s, sc, "server_cpu_us_per_msg")
        cells += [f(rate[s], ",.0f"), f(cpu[s], ".2f")]
    cells += [ratio(cpu["yamabiko"], cpu["tungstenite"]), ratio(cpu["yamabiko"], cpu["fastwebsockets"]),
              ratio(rate["yamabiko"], rate["tungstenite"]), ratio(rate["yamabiko"], rate["fastwebsockets"])]
    print(f"| {label} | " + " | ".join(cells) + " |")
cells, per = [], {}
for s in servers:
    rep = (runs.get((s, "e")) or [{}])[0]
    per[s] = rep.get("server_bytes_per_conn")
    cells += [f"{rep.get('idle_opened')} opened", f"{f(per[s], ',.0f')} B/conn"]
print(f"| (e) {idle} idle conns | " + " | ".join(cells)
      + f" | {ratio(per['yamabiko'], per['tungstenite'])} (bytes) | {ratio(per['yamabiko'], per['fastwebsockets'])} (bytes) | - | - |")
print()
rounds = max((len(v) for (s, sc), v in runs.items() if sc != "e"), default=0)
print(f"Medians of {rounds} rounds per cell. µs/msg: server utime+stime over the window ÷ echoed"
      " messages (lower is better); ratios are yamabiko ÷ peer.")
if rounds > 1:
    print()
    print("Spread over the rounds (min–max):")
    print()
    print("| scenario | " + " | ".join(f"{s} msgs/s | {s} µs/msg" for s in servers) + " |")
    print("|---|" + "---|---|" * len(servers))
    for sc, label in names.items():
        cells = []
        for s in servers:
            r, c = values(s, sc, "msgs_per_s"), values(s, sc, "server_cpu_us_per_msg")
            cells.append(f"{min(r):,.0f}–{max(r):,.0f}" if r else "-")
            cells.append(f"{min(c):.2f}–{max(c):.2f}" if c else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
print()
print("Share of a core in use during the window (medians): generator / server. A generator"
      " near 100% limits the rate, and msgs/s then ranks the generator, not the server.")
print()
print("| scenario | " + " | ".join(servers) + " |")
print("|---|" + "---|" * len(servers))
for sc, label in names.items():
    cells = []
    for s in servers:
        g, b = median(s, sc, "generator_busy"), median(s, sc, "server_busy")
        cells.append("-" if g is None or b is None else f"{g * 100:.0f}% / {b * 100:.0f}%")
    print(f"| {label} | " + " | ".join(cells) + " |")
if any(s == "floor" for s, _ in runs):
    print()
    print("Reference: echo-floor, no WebSocket library (FLOOR=1). Server µs/msg, medians;"
          " a peer's ratio to it is the share of that peer's cost the kernel and runtime set.")
    print()
    print("| scenario | floor µs/msg | floor/tung | floor/fws | yamabiko/floor |")
    print("|---|---|---|---|---|")
    for sc, label in names.items():
        fl = median("floor", sc, "server_cpu_us_per_msg")
        if fl is None:
            continue  # the floor runs only where it is a reference: (a) and (b)
        print(f"| {label} | {f(fl, '.2f')} | {ratio(fl, median('tungstenite', sc, 'server_cpu_us_per_msg'))}"
              f" | {ratio(fl, median('fastwebsockets', sc, 'server_cpu_us_per_msg'))}"
              f" | {ratio(median('yamabiko', sc, 'server_cpu_us_per_msg'), fl)} |")
for (s, sc), reps in sorted(runs.items()):
    for rep in reps:
        if rep.get("errors"):
            print(f"warning: {s} ({sc}) reported errors: {json.dumps(rep)}")
PY
