#!/usr/bin/env bash
# What HTTP/2 framing costs the server per echoed message, counted rather than timed
# (so a busy machine does not blur it): `yamabiko echo --h2c` runs under valgrind's
# callgrind (user-space instructions) or strace -c (system calls) while
# `yamabiko bench` loads it over HTTP/1.1, over HTTP/2 with a connection per
# WebSocket, and over HTTP/2 with every WebSocket on one connection. Each way runs
# twice, SHORT and LONG seconds; the difference of the counts divided by the
# difference of the messages is the cost per message, without the connection setup.
#
#   bench/h2-cost.sh                 # callgrind, scenarios (a) and (c): ~5 minutes
#   TOOL=strace bench/h2-cost.sh     # system calls per message instead
#
# (a) 100 WebSockets, 20 B, 1 in flight; (c) 10 WebSockets, 64 KiB, 1 in flight.
# Needs valgrind or strace, and python3. Servers are stopped by PID.
set -euo pipefail

TOOL=${TOOL:-callgrind}
SHORT=${SHORT:-3}
LONG=${LONG:-8}
PORT_BASE=${PORT_BASE:-9401}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p yamabiko-cli
bin=$target/release/yamabiko

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$PORT_BASE
results=$work/results
: >"$results"

# measure WAY SCENARIO SECONDS BENCH-ARGS...
measure() {
    local way=$1 sc=$2 secs=$3
    shift 3
    port=$((port + 1))
    local out=$work/$way-$sc-$secs
    local server=("$bin" echo --listen "127.0.0.1:$port" --h2c --single-thread
        --no-compression --max-conns 0)
    case $TOOL in
        callgrind) valgrind -q --tool=callgrind --callgrind-out-file="$out.cg" "${server[@]}" \
                       >/dev/null 2>&1 & ;;
        strace) strace -f -c -o "$out.st" "${server[@]}" >/dev/null 2>&1 & ;;
        *) echo "TOOL must be callgrind or strace" >&2; exit 2 ;;
    esac
    server_pid=$!
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    local extra=()
    case $way in
        h2) extra=(--http2) ;;
        h2-shared) extra=(--http2 --streams-per-conn 100000) ;;
    esac
    echo "== $way ($sc, ${secs}s): bench $* ${extra[*]}" >&2
    "$bin" bench "ws://127.0.0.1:$port/" --json --warmup 0 --duration "$secs" \
        --connect-timeout 120 --drain-timeout 30 "$@" "${extra[@]}" >"$out.json"
    # Stop the server itself (under strace, the traced child), so the tool writes
    # its totals as the server exits.
    local target=$server_pid
    if [ "$TOOL" = strace ]; then target=$(pgrep -P "$server_pid" | head -n 1); fi
    kill -INT "${target:-$server_pid}" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    local count
    case $TOOL in
        callgrind) count=$(awk '/^(summary|totals):/ {print $2; exit}' "$out.cg") ;;
        strace) count=$(awk '$NF == "total" {print $4; exit}' "$out.st") ;;
    esac
    python3 - "$out.json" "$way" "$sc" "$secs" "$count" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"way": sys.argv[2], "sc": sys.argv[3], "secs": float(sys.argv[4]),
                  "sent": r["messages_sent_total"], "errors": r["errors"],
                  "count": int(sys.argv[5])}))
PY
}

for sc in a c; do
    case $sc in
        a) args=(--conns 100 --size 20 --inflight 1) ;;
        c) args=(--conns 10 --size 65536 --inflight 1) ;;
    esac
    for way in h1 h2 h2-shared; do
        measure "$way" "$sc" "$SHORT" "${args[@]}"
        measure "$way" "$sc" "$LONG" "${args[@]}"
    done
done

python3 - "$results" "$TOOL" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
unit = "instructions" if sys.argv[2] == "callgrind" else "system calls"
by = {}
for r in rows:
    by.setdefault((r["way"], r["sc"]), []).append(r)
names = {"a": "(a) 100 WebSockets, 20 B", "c": "(c) 10 WebSockets, 64 KiB"}
ways = {"h1": "HTTP/1.1", "h2": "HTTP/2, a connection each", "h2-shared": "HTTP/2, one connection"}
print(f"| scenario | " + " | ".join(ways.values()) + " | h2 ÷ h1 | h2 one conn ÷ h1 |")
print("|---|" + "---|" * (len(ways) + 2))
for sc, label in names.items():
    per = {}
    for w in ways:
        runs = sorted(by.get((w, sc), []), key=lambda r: r["secs"])
        if len(runs) == 2 and runs[1]["sent"] > runs[0]["sent"]:
            per[w] = (runs[1]["count"] - runs[0]["count"]) / (runs[1]["sent"] - runs[0]["sent"])
    fmt = ",.0f" if sys.argv[2] == "callgrind" else ".2f"
    cells = [format(per[w], fmt) if w in per else "-" for w in ways]
    for w in ("h2", "h2-shared"):
        cells.append(f"{per[w] / per['h1']:.2f}" if w in per and "h1" in per else "-")
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print(f"Server {unit} per echoed message (difference of a {rows[0]['secs']:.0f} s and a"
      f" longer run, so connection setup drops out).")
for r in rows:
    if r["errors"]:
        print(f"warning: errors in {r}")
PY
