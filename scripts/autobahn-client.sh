#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases against yamabiko's *client*: `kosoku -m
# fuzzingserver` plays the server, and the example `autobahn-client` connects to it and
# echoes every case. Fails unless every case passed.
#
#   scripts/autobahn-client.sh                 # all 517 cases
#   scripts/autobahn-client.sh -i '9.*'        # only the cases you select (kosoku -i/-x)
#   AUTOBAHN_CLIENT_PORT=9102 scripts/autobahn-client.sh
#
# Environment:
#   AUTOBAHN_CLIENT_HOST     address the fuzzing server listens on (default 127.0.0.1)
#   AUTOBAHN_CLIENT_PORT     its port (default 9002); it must be free before the run
#   AUTOBAHN_BUILD           1 (default) builds the example in release mode first; 0 skips
#   AUTOBAHN_CLIENT_WORKDIR  where kosoku writes reports/servers/ (default: a fresh
#                            temporary directory, removed afterwards)
#   AUTOBAHN_CLIENT_TIMEOUT  seconds the whole client run may take (default 900)
#   AUTOBAHN_READY_SECS      how long to wait for the port to open (default 60)
#   AUTOBAHN_CLIENT_URL      where the client connects (default ws://HOST:PORT; a proxy
#                            in front of the fuzzing server, see autobahn-client-h2.sh)
#
# Arguments are passed to kosoku as its case selection; without any, the default is
# `-i '*'`: the whole suite, compression cases (12.*, 13.*) included.
#
# Passing outcomes are OK, NON-STRICT and INFORMATIONAL; the script prints the counts
# per outcome and per section and exits non-zero on anything else (FAILED,
# UNIMPLEMENTED, ...), when no case ran, or when the client or kosoku fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${AUTOBAHN_CLIENT_HOST:-127.0.0.1}"
PORT="${AUTOBAHN_CLIENT_PORT:-9002}"
BUILD="${AUTOBAHN_BUILD:-1}"
RUN_TIMEOUT="${AUTOBAHN_CLIENT_TIMEOUT:-900}"
READY_SECS="${AUTOBAHN_READY_SECS:-60}"

if [ "$#" -gt 0 ]; then
    SELECTION=("$@")
else
    SELECTION=(-i '*')
fi

log() { echo "autobahn-client: $*" >&2; }

if ! command -v kosoku >/dev/null 2>&1; then
    log "kosoku not found; install it with: pip install kosoku"
    exit 2
fi

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    log "building: cargo build --release -p yamabiko --example autobahn-client"
    cargo build --release -p yamabiko --example autobahn-client
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
CLIENT="$TARGET_DIR/release/examples/autobahn-client"
if [ ! -x "$CLIENT" ]; then
    log "$CLIENT not found (build it with cargo build --release -p yamabiko --example autobahn-client)"
    exit 2
fi

if port_open; then
    log "something already listens on $HOST:$PORT; stop it or set AUTOBAHN_CLIENT_PORT"
    exit 2
fi

if [ -n "${AUTOBAHN_CLIENT_WORKDIR:-}" ]; then
    WORKDIR="$AUTOBAHN_CLIENT_WORKDIR"
    REMOVE_WORKDIR=0
    mkdir -p "$WORKDIR"
else
    WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/autobahn-client.XXXXXX")"
    REMOVE_WORKDIR=1
fi
cd "$WORKDIR"
REPORTS="$WORKDIR/reports/servers"
rm -rf "$REPORTS"
KOSOKU_LOG="$WORKDIR/kosoku.log"

KOSOKU_PID=""
cleanup() {
    if [ -n "$KOSOKU_PID" ] && kill -0 "$KOSOKU_PID" 2>/dev/null; then
        kill "$KOSOKU_PID" 2>/dev/null || true
        wait "$KOSOKU_PID" 2>/dev/null || true
    fi
    if [ "$REMOVE_WORKDIR" = 1 ]; then
        rm -rf "$WORKDIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting: kosoku -m fuzzingserver ${SELECTION[*]} $HOST:$PORT (in $WORKDIR)"
kosoku -m fuzzingserver "${SELECTION[@]}" "$HOST:$PORT" </dev/null >"$KOSOKU_LOG" 2>&1 &
KOSOKU_PID=$!

deadline=$((SECONDS + READY_SECS))
until port_open; do
    if ! kill -0 "$KOSOKU_PID" 2>/dev/null; then
        log "kosoku exited before listening; its output:"
        cat "$KOSOKU_LOG" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        log "kosoku did not listen on $HOST:$PORT within ${READY_SECS}s; its output:"
        cat "$KOSOKU_LOG" >&2
        exit 1
    fi
    sleep 0.2
done

CLIENT_URL="${AUTOBAHN_CLIENT_URL:-ws://$HOST:$PORT}"
log "running: $CLIENT $CLIENT_URL"
started=$SECONDS
client_status=0
timeout "$RUN_TIMEOUT" "$CLIENT" "$CLIENT_URL" </dev/null || client_status=$?
log "client finished in $((SECONDS - started))s (exit status $client_status)"

# The fuzzing server writes its reports on /updateReports and then exits; give it a
# moment, then stop it.
for _ in $(seq 1 100); do
    kill -0 "$KOSOKU_PID" 2>/dev/null || break
    sleep 0.2
done
kosoku_status=0
if kill -0 "$KOSOKU_PID" 2>/dev/null; then
    kill "$KOSOKU_PID" 2>/dev/null || true
    wait "$KOSOKU_PID" 2>/dev/null || true
else
    wait "$KOSOKU_PID" || kosoku_status=$?
fi
KOSOKU_PID=""

python3 - "$REPORTS/index.json" <<'PY'
import collections
import json
import sys

path = sys.argv[1]
try:
    with open(path) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"autobahn-client: no usable report at {path}: {e}")

# Autobahn's passing outcomes; anything else (FAILED, UNIMPLEMENTED, WRONG CODE,
# UNCLEAN, ERROR, ...) fails the run.
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


counts = collections.Counter()
close_counts = collections.Counter()
sections = collections.defaultdict(collections.Counter)
bad = []
total = 0
for agent, cases in sorted(index.items()):
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id]
        total += 1
        behavior = result.get("behavior", "MISSING")
        close = result.get("behaviorClose", "MISSING")
        counts[behavior] += 1
        close_counts[close] += 1
        sections[case_id.split(".")[0]][behavior] += 1
        if behavior not in PASSING or close not in PASSING:
            bad.append(f"{agent} {case_id}: behavior={behavior} behaviorClose={close}")

print(f"autobahn-client: {total} cases")
print("  behavior:      " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
print("  behaviorClose: " + ", ".join(f"{k} {v}" for k, v in sorted(close_counts.items())))
for section in sorted(sections, key=case_key):
    print(f"  {section}.*: " + ", ".join(f"{k} {v}" for k, v in sorted(sections[section].items())))
if total == 0:
    sys.exit("autobahn-client: no cases ran")
if bad:
    print("autobahn-client: failing cases:")
    for line in bad:
        print("  " + line)
    sys.exit(1)
print("autobahn-client: all cases passed")
PY

if [ "$client_status" -ne 0 ]; then
    log "the client failed (exit status $client_status)"
    exit 1
fi
if [ "$kosoku_status" -ne 0 ]; then
    log "kosoku reported a failure (exit status $kosoku_status); its output:"
    tail -n 20 "$KOSOKU_LOG" >&2
    exit 1
fi
