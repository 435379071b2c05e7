#!/usr/bin/env bash
# Runs yamabiko and peer servers through two matrices, one server at a time: the
# server pinned to core 0, the load generator (`yamabiko bench`) to core 1.
#
# The echo matrix, (a)-(e): yamabiko echo against the echo servers of
# tokio-tungstenite, fastwebsockets and uWebSockets.js (bench/uws): msgs/s, server CPU
# µs per echoed message (utime+stime of the server PID over the measuring window ÷
# echoes), idle bytes per connection (server VmRSS growth ÷ connections).
#
# The broadcast matrix, (f)-(j): `yamabiko echo --broadcast` (the library's hub)
# against broadcast servers on tokio-tungstenite, fastwebsockets, uWebSockets.js and
# gorilla/websocket (its chat hub, bench/gorilla, if Go is installed), loaded by
# `yamabiko bench --broadcast`: S subscribers, one of them publishing 64-byte
# messages, saturating (8 in flight: the next is sent when one has reached every
# subscriber) or at a fixed rate of 100,000 deliveries/s, and one stalled subscriber
# (never reads) among 1,000. Figures: deliveries/s, server CPU µs per delivery,
# publish→receive latency and fan-out completion (publish → last subscriber).
#
#   bench/compare.sh                        # both matrices, about 35 minutes
#   MATRIX=broadcast bench/compare.sh       # one of them (echo, broadcast)
#   DURATION=3 WARMUP=1 REPEAT=1 IDLE=2000 SUBSCRIBERS_BIG=2000 bench/compare.sh   # quick look
#
# The machine's speed drifts from minute to minute, so the servers take turns: every
# scenario runs REPEAT rounds of all servers (a fresh server each time) and the tables
# show each server's median round, with the spread.
#
# FLOOR=1 adds a reference server to scenarios (a) and (b): echo-floor
# (bench/src/bin/echo_floor.rs), the least a tokio server must do to echo small
# frames, with no WebSocket library. Its µs/msg is about what the kernel and the
# runtime take per message; no real server can go much below it.
#
# Needs Linux, taskset and python3; installs uWebSockets.js with npm (bench/uws) when
# node is there, and builds the gorilla server when go and Debian's
# golang-github-gorilla-websocket-dev are (GOPATH mode, no module downloads); a peer
# whose runtime is missing is left out with a warning. Servers are stopped by PID on
# exit. Set RESULTS=FILE to keep every run's JSON report (one line per run).
# PORT_BASE (default 9101) is the first of the loopback ports the servers take, one per run.
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
MATRIX=${MATRIX:-all}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
SUBSCRIBERS_BIG=${SUBSCRIBERS_BIG:-10000}
# Deliveries per second offered in the fixed-rate scenarios.
OFFERED=${OFFERED:-100000}
# Every broadcast server's per-connection queue bound (yamabiko --max-queued, uWS
# maxBackpressure); over it, messages to that connection are dropped.
MAX_QUEUED=${MAX_QUEUED:-1048576}
# In (j) a stalled subscriber gets 64 bytes 100 times a second: the bound there is
# small and the warm-up long, so that it is at its bound before the window opens
# (the kernel's socket buffers take the first ~20 KB).
MAX_QUEUED_STALLED=${MAX_QUEUED_STALLED:-16384}
WARMUP_STALLED=${WARMUP_STALLED:-8}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p yamabiko-cli -p yamabiko-bench-peers
bin=$target/release
ulimit -n "$(ulimit -Hn)"

have_uws=0
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    if [ ! -d bench/uws/node_modules/uWebSockets.js ]; then
        (cd bench/uws && npm install --no-audit --no-fund --silent) || true
    fi
    if node -e 'require("./bench/uws/uws")' >/dev/null 2>&1; then have_uws=1; fi
fi
[ "$have_uws" = 1 ] || echo "warning: no native uWebSockets.js (node, npm); leaving uws out" >&2
have_gorilla=0
if command -v go >/dev/null 2>&1 && [ -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
    if (cd bench/gorilla && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= go build -o "$bin/broadcast-gorilla" .); then
        have_gorilla=1
    fi
fi
[ "$have_gorilla" = 1 ] || echo "warning: no Go or gorilla/websocket (apt: golang-go golang-github-gorilla-websocket-dev); leaving gorilla out" >&2

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
    local pin=(taskset -c "$CORE_SERVER")
    case $name in
        yamabiko) "${pin[@]}" "$bin/yamabiko" echo --listen "127.0.0.1:$port" \
                      --single-thread --no-compression --max-conns 0 >/dev/null 2>&1 &;;
        tungstenite) "${pin[@]}" "$bin/echo-tungstenite" "127.0.0.1:$port" >/dev/null 2>&1 &;;
        fastwebsockets) "${pin[@]}" "$bin/echo-fastwebsockets" "127.0.0.1:$port" >/dev/null 2>&1 &;;
        uws) "${pin[@]}" node bench/uws/echo.js "$port" >/dev/null 2>&1 &;;
        floor) "${pin[@]}" "$bin/echo-floor" "127.0.0.1:$port" >/dev/null 2>&1 &;;
        b-yamabiko) "${pin[@]}" "$bin/yamabiko" echo --broadcast --listen "127.0.0.1:$port" \
                        --single-thread --no-compression --max-conns 0 \
                        --max-queued "$bound" --on-slow drop >/dev/null 2>&1 &;;
        b-tungstenite) "${pin[@]}" "$bin/broadcast-tungstenite" "127.0.0.1:$port" >/dev/null 2>&1 &;;
        b-fastwebsockets) "${pin[@]}" "$bin/broadcast-fastwebsockets" "127.0.0.1:$port" >/dev/null 2>&1 &;;
        b-uws) "${pin[@]}" node bench/uws/broadcast.js "$port" "$bound" >/dev/null 2>&1 &;;
        b-gorilla) GOMAXPROCS=1 "${pin[@]}" "$bin/broadcast-gorilla" "127.0.0.1:$port" >/dev/null 2>&1 &;;
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
              --json --threads "$GEN_THREADS" --server-pid "$server_pid" "$@" 2>/dev/null || true)
    if [ -z "$out" ]; then out='{"errors": -1}'; fi
    printf '{"server":"%s","scenario":"%s","report":%s}\n' "${name#b-}" "$scenario" "$out" >> "$results"
}

echo_peers=(yamabiko tungstenite fastwebsockets)
[ "$have_uws" = 1 ] && echo_peers+=(uws)
echo_servers=("${echo_peers[@]}")
[ "$FLOOR" = 1 ] && echo_servers+=(floor)
broadcast_servers=(b-yamabiko b-tungstenite b-fastwebsockets)
[ "$have_uws" = 1 ] && broadcast_servers+=(b-uws)
[ "$have_gorilla" = 1 ] && broadcast_servers+=(b-gorilla)
common=(--warmup "$WARMUP" --duration "$DURATION")
bound=$MAX_QUEUED
port=${PORT_BASE:-9101}
# scenario SCENARIO SERVERS-ARRAY-NAME BENCH-ARGS...: REPEAT rounds, each server in
# turn on a fresh start.
scenario() {
    local sc=$1 list=$2
    shift 2
    local -n names=$list
    for round in $(seq "$REPEAT"); do
        for name in "${names[@]}"; do
            if [ "$name" = floor ] && [ "$sc" != a ] && [ "$sc" != b ]; then continue; fi
            port=$((port + 1))
            echo "== $name ($sc, round $round)" >&2
            start "$name" "$port"
            run "$name" "$sc" "$@"
            stop
        done
    done
}
if [ "$MATRIX" = all ] || [ "$MATRIX" = echo ]; then
    scenario a echo_servers --conns 100 --size 20 --inflight 1 "${common[@]}"
    scenario b echo_servers --conns 100 --size 20 --inflight 16 "${common[@]}"
    scenario c echo_servers --conns 10 --size 65536 --inflight 1 "${common[@]}"
    scenario d echo_servers --conns 4 --size 1048576 --inflight 1 "${common[@]}"
    # Idle memory is steady, one round each.
    for name in "${echo_peers[@]}"; do
        port=$((port + 1))
        start "$name" "$port"
        run "$name" e --idle "$IDLE" --hold "$HOLD" --connect-timeout 120
        stop
    done
fi
if [ "$MATRIX" = all ] || [ "$MATRIX" = broadcast ]; then
    b=(--broadcast --size 64 --connect-timeout 120 --drain-timeout 20 --duration "$DURATION")
    rate=$((OFFERED / SUBSCRIBERS))
    rate_big=$((OFFERED / SUBSCRIBERS_BIG))
    scenario f broadcast_servers --subscribers "$SUBSCRIBERS" --inflight 8 --warmup "$WARMUP" "${b[@]}"
    scenario g broadcast_servers --subscribers "$SUBSCRIBERS_BIG" --inflight 8 --warmup "$WARMUP" "${b[@]}"
    scenario h broadcast_servers --subscribers "$SUBSCRIBERS" --rate "$rate" --warmup "$WARMUP" "${b[@]}"
    scenario i broadcast_servers --subscribers "$SUBSCRIBERS_BIG" --rate "$rate_big" --warmup "$WARMUP" "${b[@]}"
    bound=$MAX_QUEUED_STALLED
    scenario j broadcast_servers --subscribers "$SUBSCRIBERS" --rate "$rate" --stalled 1 \
        --warmup "$WARMUP_STALLED" "${b[@]}"
    bound=$MAX_QUEUED
fi

python3 - "$results" "$IDLE" "$SUBSCRIBERS" "$SUBSCRIBERS_BIG" "$OFFERED" "$MAX_QUEUED_STALLED" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
idle, small, big, offered, max_queued = sys.argv[2:7]
runs = {}
for x in rows:
    runs.setdefault((x["server"], x["scenario"]), []).append(x["report"])
order = ["yamabiko", "tungstenite", "fastwebsockets", "uws", "gorilla"]
names = {"tungstenite": "tokio-tungstenite", "fastwebsockets": "fastwebsockets",
         "uws": "uWebSockets.js", "gorilla": "gorilla", "yamabiko": "yamabiko"}
def present(scenarios):
    return [s for s in order if any((s, sc) in runs for sc in scenarios)]
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}"
def values(s, sc, *path):
    out = []
    for rep in runs.get((s, sc), []):
        v = rep
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            out.append(v)
    return out
def median(s, sc, *path):
    v = values(s, sc, *path)
    return statistics.median(v) if v else None
def spread(s, sc, fmt, *path):
    v = values(s, sc, *path)
    return f"{format(min(v), fmt)}–{format(max(v), fmt)}" if v else "-"

echo_names = {
    "a": "(a) 100 conns, 20 B, 1 in flight",
    "b": "(b) 100 conns, 20 B, 16 in flight",
    "c": "(c) 10 conns, 64 KiB",
    "d": "(d) 4 conns, 1 MiB",
}
if any(sc in echo_names or sc == "e" for (_, sc) in runs):
    servers = present(list(echo_names) + ["e"])
    peers = [s for s in servers if s != "yamabiko"]
    print("## Echo")
    print()
    hdr = "| scenario | " + " | ".join(f"{names[s]} msgs/s | µs/msg" for s in servers) \
        + "".join(f" | µs/msg y/{s}" for s in peers) + " |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for sc, label in echo_names.items():
        cells, cpu = [], {}
        for s in servers:
            cpu[s] = median(s, sc, "server_cpu_us_per_msg")
            cells += [f(median(s, sc, "msgs_per_s"), ",.0f"), f(cpu[s], ".2f")]
        cells += [ratio(cpu.get("yamabiko"), cpu[p]) for p in peers]
        print(f"| {label} | " + " | ".join(cells) + " |")
    cells, per = [], {}
    for s in servers:
        rep = (runs.get((s, "e")) or [{}])[0]
        per[s] = rep.get("server_bytes_per_conn")
        cells += [f"{rep.get('idle_opened')} opened", f"{f(per[s], ',.0f')} B/conn"]
    cells += [ratio(per.get("yamabiko"), per[p]) + " (bytes)" for p in peers]
    print(f"| (e) {idle} idle conns | " + " | ".join(cells) + " |")
    print()
    rounds = max((len(v) for (s, sc), v in runs.items() if sc in echo_names), default=0)
    print(f"Medians of {rounds} rounds per cell. µs/msg: server utime+stime over the window ÷ echoed"
          " messages (lower is better); ratios are yamabiko ÷ peer.")
    if rounds > 1:
        print()
        print("Spread over the rounds (min–max), µs/msg:")
        print()
        print("| scenario | " + " | ".join(names[s] for s in servers) + " |")
        print("|---|" + "---|" * len(servers))
        for sc, label in echo_names.items():
            print(f"| {label} | " + " | ".join(spread(s, sc, ".2f", "server_cpu_us_per_msg") for s in servers) + " |")
    print()
    print("Share of a core in use during the window (medians): generator / server.")
    print()
    print("| scenario | " + " | ".join(names[s] for s in servers) + " |")
    print("|---|" + "---|" * len(servers))
    for sc, label in echo_names.items():
        cells = []
        for s in servers:
            g, b = median(s, sc, "generator_busy"), median(s, sc, "server_busy")
            cells.append("-" if g is None or b is None else f"{g * 100:.0f}% / {b * 100:.0f}%")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if any(s == "floor" for s, _ in runs):
        print()
        print("Reference: echo-floor, no WebSocket library (FLOOR=1), server µs/msg:")
        print()
        print("| scenario | floor µs/msg | yamabiko/floor |")
        print("|---|---|---|")
        for sc, label in echo_names.items():
            fl = median("floor", sc, "server_cpu_us_per_msg")
            if fl is not None:
                print(f"| {label} | {f(fl, '.2f')} | {ratio(median('yamabiko', sc, 'server_cpu_us_per_msg'), fl)} |")
    print()

b_names = {
    "f": f"(f) {int(small):,} subscribers, saturating (8 in flight)",
    "g": f"(g) {int(big):,} subscribers, saturating (8 in flight)",
    "h": f"(h) {int(small):,} subscribers, {int(offered):,} deliveries/s",
    "i": f"(i) {int(big):,} subscribers, {int(offered):,} deliveries/s",
    "j": f"(j) as (h), plus 1 stalled subscriber (bound {int(max_queued):,} B)",
}
if any(sc in b_names for (_, sc) in runs):
    servers = present(list(b_names))
    peers = [s for s in servers if s != "yamabiko"]
    print("## Broadcast (64-byte messages)")
    print()
    print("Saturating: deliveries/s and server CPU µs per delivery (the ranking figure);"
          " the ratio is yamabiko ÷ the best peer's µs/delivery.")
    print()
    hdr = "| scenario | " + " | ".join(f"{names[s]} deliveries/s | µs/delivery" for s in servers) + " | y ÷ best peer |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for sc in ["f", "g"]:
        cells, cpu = [], {}
        for s in servers:
            cpu[s] = median(s, sc, "server_cpu_us_per_delivery")
            cells += [f(median(s, sc, "deliveries_per_s"), ",.0f"), f(cpu[s], ".3f")]
        best = min((cpu[p] for p in peers if cpu[p]), default=None)
        cells.append(ratio(cpu.get("yamabiko"), best))
        print(f"| {b_names[sc]} | " + " | ".join(cells) + " |")
    print()
    print("Fixed rate: fan-out completion (publish → last subscriber) p99 and"
          " publish→receive latency p99, in ms; the ratio is yamabiko ÷ the best peer's fan-out p99.")
    print()
    hdr = "| scenario | " + " | ".join(f"{names[s]} fan-out p99 | latency p99" for s in servers) + " | y ÷ best peer |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for sc in ["h", "i", "j"]:
        cells, fo = [], {}
        for s in servers:
            fo[s] = median(s, sc, "fanout_us", "p99")
            lat = median(s, sc, "latency_us", "p99")
            cells += [f(fo[s] and fo[s] / 1000, ".2f"), f(lat and lat / 1000, ".2f")]
        best = min((fo[p] for p in peers if fo[p]), default=None)
        cells.append(ratio(fo.get("yamabiko"), best))
        print(f"| {b_names[sc]} | " + " | ".join(cells) + " |")
    print()
    print(f"The stalled subscriber (j): the others' latency p99 over their p99 in (h) (within 1.10 is the target),"
          f" the server's RSS growth during the run (the bound is {int(max_queued):,} bytes), and whether the"
          " server closed the stalled connection (every server here drops for it instead: yamabiko --on-slow drop,"
          " uWS maxBackpressure; gorilla closes a client whose 256-message channel is full).")
    print()
    print("| | " + " | ".join(names[s] for s in servers) + " |")
    print("|---|" + "---|" * len(servers))
    cells = []
    for s in servers:
        a, b = median(s, "j", "latency_us", "p99"), median(s, "h", "latency_us", "p99")
        cells.append(ratio(a, b))
    print("| p99 (j) ÷ p99 (h) | " + " | ".join(cells) + " |")
    print("| RSS growth, bytes | " + " | ".join(f(median(s, "j", "server_rss_growth"), ",.0f") for s in servers) + " |")
    print("| stalled closed | " + " | ".join(f(median(s, "j", "stalled_closed_by_server"), "d") for s in servers) + " |")
    print()
    rounds = max((len(v) for (s, sc), v in runs.items() if sc in b_names), default=0)
    print(f"Medians of {rounds} rounds. Every delivery is checked (order, content) and counted: lost"
          " deliveries, if any, are listed below as errors.")
    if rounds > 1:
        print()
        print("Spread over the rounds (min–max), µs/delivery (f, g) and fan-out p99 in µs (h, i, j):")
        print()
        print("| scenario | " + " | ".join(names[s] for s in servers) + " |")
        print("|---|" + "---|" * len(servers))
        for sc in b_names:
            key = ("server_cpu_us_per_delivery",) if sc in "fg" else ("fanout_us", "p99")
            fmt = ".3f" if sc in "fg" else ",.0f"
            print(f"| {sc} | " + " | ".join(spread(s, sc, fmt, *key) for s in servers) + " |")
    print()
    print("Share of a core in use during the window (medians): generator / server. A generator"
          " near 100% limits the rate; then rank by µs/delivery.")
    print()
    print("| scenario | " + " | ".join(names[s] for s in servers) + " |")
    print("|---|" + "---|" * len(servers))
    for sc in b_names:
        cells = []
        for s in servers:
            g, b = median(s, sc, "generator_busy"), median(s, sc, "server_busy")
            cells.append("-" if g is None or b is None else f"{g * 100:.0f}% / {b * 100:.0f}%")
        print(f"| {sc} | " + " | ".join(cells) + " |")
for (s, sc), reps in sorted(runs.items()):
    for rep in reps:
        if rep.get("errors"):
            print(f"warning: {s} ({sc}) reported errors: {json.dumps(rep)}")
PY
