#!/usr/bin/env bash
# What HTTP/2 framing (RFC 8441) costs per echoed message: one `yamabiko echo --h2c`
# server, pinned to core 0, loaded by `yamabiko bench` on core 1 in three ways —
# HTTP/1.1 WebSockets (a TCP connection each), HTTP/2 WebSockets with a connection
# each (--http2), and HTTP/2 WebSockets all on one connection (--http2
# --streams-per-conn CONNS). Cleartext throughout, so TLS does not blur the
# comparison. Prints msgs/s and server CPU µs per echo (utime+stime over the window ÷
# echoes), the medians of REPEAT interleaved rounds, and the HTTP/2 ÷ HTTP/1.1 ratios.
#
#   bench/h2-compare.sh                                    # about 4 minutes
#   DURATION=2 WARMUP=1 REPEAT=1 bench/h2-compare.sh       # quick look
#
# Scenarios as in bench/compare.sh: (a) 100 conns, 20 B, 1 in flight; (b) the same
# with 16 in flight; (c) 10 conns, 64 KiB. Needs Linux, taskset and python3; the
# server is stopped by PID on exit. RESULTS=FILE keeps every run's JSON report.
set -euo pipefail

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
REPEAT=${REPEAT:-3}
CORE_SERVER=${CORE_SERVER:-0}
CORE_CLIENT=${CORE_CLIENT:-1}
GEN_THREADS=${GEN_THREADS:-1}
PORT_BASE=${PORT_BASE:-9301}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p yamabiko-cli
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

port=$PORT_BASE
start() {
    port=$((port + 1))
    taskset -c "$CORE_SERVER" "$bin/yamabiko" echo --listen "127.0.0.1:$port" --h2c \
        --single-thread --no-compression --max-conns 0 >/dev/null 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "yamabiko echo did not start listening on $port" >&2
    exit 1
}
stop() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# run WAY SCENARIO BENCH-ARGS...: one bench run on a fresh server.
run() {
    local way=$1 sc=$2
    shift 2
    local extra=()
    case $way in
        h1) ;;
        h2) extra=(--http2) ;;
        h2-shared) extra=(--http2 --streams-per-conn 100000) ;;
    esac
    echo "== $way ($sc): bench $* ${extra[*]}" >&2
    start
    local out
    out=$(taskset -c "$CORE_CLIENT" "$bin/yamabiko" bench "ws://127.0.0.1:$port/" --json \
              --threads "$GEN_THREADS" --server-pid "$server_pid" "$@" "${extra[@]}" || true)
    stop
    if [ -z "$out" ]; then out='{"errors": -1}'; fi
    printf '{"way":"%s","scenario":"%s","report":%s}\n' "$way" "$sc" "$out" >>"$results"
}

common=(--warmup "$WARMUP" --duration "$DURATION")
scenario() {
    local sc=$1
    shift
    for _ in $(seq "$REPEAT"); do
        for way in h1 h2 h2-shared; do
            run "$way" "$sc" "$@"
        done
    done
}
scenario a --conns 100 --size 20 --inflight 1 "${common[@]}"
scenario b --conns 100 --size 20 --inflight 16 "${common[@]}"
scenario c --conns 10 --size 65536 --inflight 1 "${common[@]}"

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = {}
for x in rows:
    runs.setdefault((x["way"], x["scenario"]), []).append(x["report"])
names = {"a": "(a) 100 conns, 20 B, 1 in flight", "b": "(b) 100 conns, 20 B, 16 in flight",
         "c": "(c) 10 conns, 64 KiB"}
ways = {"h1": "HTTP/1.1", "h2": "HTTP/2, a connection each", "h2-shared": "HTTP/2, one connection"}
def med(way, sc, key):
    v = [r[key] for r in runs.get((way, sc), []) if r.get(key) is not None]
    return statistics.median(v) if v else None
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
print("| scenario | " + " | ".join(f"{w} msgs/s | µs/msg" for w in ways.values())
      + " | µs/msg h2 ÷ h1 | µs/msg h2 one conn ÷ h1 |")
print("|---|" + "---|---|" * len(ways) + "---|---|")
for sc, label in names.items():
    cells = []
    for w in ways:
        cells += [f(med(w, sc, "msgs_per_s"), ",.0f"), f(med(w, sc, "server_cpu_us_per_msg"), ".2f")]
    h1 = med("h1", sc, "server_cpu_us_per_msg")
    for w in ("h2", "h2-shared"):
        v = med(w, sc, "server_cpu_us_per_msg")
        cells.append("-" if not v or not h1 else f"{v / h1:.2f}")
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print(f"Medians of {max((len(v) for v in runs.values()), default=0)} rounds. Busy shares"
      " (generator / server), medians:")
print()
print("| scenario | " + " | ".join(ways.values()) + " |")
print("|---|" + "---|" * len(ways))
for sc, label in names.items():
    cells = []
    for w in ways:
        g, s = med(w, sc, "generator_busy"), med(w, sc, "server_busy")
        cells.append("-" if g is None or s is None else f"{g * 100:.0f}% / {s * 100:.0f}%")
    print(f"| {label} | " + " | ".join(cells) + " |")
for (w, sc), reps in sorted(runs.items()):
    for rep in reps:
        if rep.get("errors"):
            print(f"warning: {w} ({sc}) reported errors: {json.dumps(rep)}")
PY
