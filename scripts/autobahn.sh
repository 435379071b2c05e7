#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases (via the `kosoku` runner) against a WebSocket server
# and fails unless every case passed.
#
#   scripts/autobahn.sh                      # yamabiko echo, all 517 cases
#   scripts/autobahn.sh -i '9.*'             # only the cases you select (kosoku -i/-x)
#   AUTOBAHN_PORT=9101 scripts/autobahn.sh   # another port
#   AUTOBAHN_SERVER_CMD='my-server --port 9001' AUTOBAHN_BUILD=0 scripts/autobahn.sh
#
# Environment:
#   AUTOBAHN_HOST        address the server listens on (default 127.0.0.1)
#   AUTOBAHN_PORT        port (default 9001); it must be free before the run
#   AUTOBAHN_SERVER_CMD  command that starts the server under test in the foreground
#                        (default: the release `yamabiko echo --listen HOST:PORT`)
#   AUTOBAHN_BUILD       1 (default) runs `cargo build --release` first; 0 skips it
#   AUTOBAHN_WORKDIR     where kosoku runs and writes reports/clients/ (default: the
#                        repository root; reports/ is git-ignored)
#   AUTOBAHN_PARALLEL    cases run in parallel (default 2)
#   AUTOBAHN_READY_SECS  how long to wait for the port to open (default 60)
#
# Arguments are passed to kosoku as its case selection; without any, the default is
# `-i '*'`: the whole suite, compression cases (12.*, 13.*) included.
#
# Passing outcomes are OK, NON-STRICT and INFORMATIONAL; the script prints the counts
# per outcome and exits non-zero on anything else (FAILED, UNIMPLEMENTED, ...), when no
# case ran, or when kosoku itself fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${AUTOBAHN_HOST:-127.0.0.1}"
PORT="${AUTOBAHN_PORT:-9001}"
BUILD="${AUTOBAHN_BUILD:-1}"
WORKDIR="${AUTOBAHN_WORKDIR:-$ROOT}"
PARALLEL="${AUTOBAHN_PARALLEL:-2}"
READY_SECS="${AUTOBAHN_READY_SECS:-60}"

if [ "$#" -gt 0 ]; then
    SELECTION=("$@")
else
    SELECTION=(-i '*')
fi

log() { echo "autobahn: $*" >&2; }

if ! command -v kosoku >/dev/null 2>&1; then
    log "kosoku not found; install it with: pip install kosoku"
    exit 2
fi

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

if [ -z "${AUTOBAHN_SERVER_CMD:-}" ]; then
    cd "$ROOT"
    if [ "$BUILD" = 1 ]; then
        log "building: cargo build --release"
        cargo build --release
    fi
    TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    BIN="$TARGET_DIR/release/yamabiko"
    if [ ! -x "$BIN" ]; then
        log "$BIN not found (build it with cargo build --release)"
        exit 2
    fi
    SERVER_CMD="$(printf '%q echo --listen %q' "$BIN" "$HOST:$PORT")"
else
    SERVER_CMD="$AUTOBAHN_SERVER_CMD"
fi

if port_open; then
    log "something already listens on $HOST:$PORT; stop it or set AUTOBAHN_PORT"
    exit 2
fi

mkdir -p "$WORKDIR"
cd "$WORKDIR"
REPORTS="$WORKDIR/reports/clients"
rm -rf "$REPORTS"
SERVER_LOG="$(mktemp "${TMPDIR:-/tmp}/autobahn-server.XXXXXX")"

SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -f "$SERVER_LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting server: $SERVER_CMD"
bash -c "exec $SERVER_CMD" </dev/null >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

deadline=$((SECONDS + READY_SECS))
until port_open; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "server exited before listening; its output:"
        cat "$SERVER_LOG" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        log "server did not listen on $HOST:$PORT within ${READY_SECS}s; its output:"
        cat "$SERVER_LOG" >&2
        exit 1
    fi
    sleep 0.2
done

log "running: kosoku -p $PARALLEL ${SELECTION[*]} $HOST:$PORT (in $WORKDIR)"
started=$SECONDS
kosoku_status=0
kosoku -p "$PARALLEL" "${SELECTION[@]}" "$HOST:$PORT" || kosoku_status=$?
log "kosoku finished in $((SECONDS - started))s (exit status $kosoku_status)"

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server died during the run; its output:"
    tail -n 50 "$SERVER_LOG" >&2
    exit 1
fi

python3 - "$REPORTS/index.json" <<'PY'
import collections
import json
import sys

path = sys.argv[1]
try:
    with open(path) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"autobahn: no usable report at {path}: {e}")

# Autobahn's passing outcomes; anything else (FAILED, UNIMPLEMENTED, WRONG CODE,
# UNCLEAN, ERROR, ...) fails the run.
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]


counts = collections.Counter()
close_counts = collections.Counter()
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
        if behavior not in PASSING or close not in PASSING:
            bad.append(f"{agent} {case_id}: behavior={behavior} behaviorClose={close}")

print(f"autobahn: {total} cases")
print("  behavior:      " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
print("  behaviorClose: " + ", ".join(f"{k} {v}" for k, v in sorted(close_counts.items())))
if total == 0:
    sys.exit("autobahn: no cases ran")
if bad:
    print("autobahn: failing cases:")
    for line in bad:
        print("  " + line)
    sys.exit(1)
print("autobahn: all cases passed")
PY

if [ "$kosoku_status" -ne 0 ]; then
    log "kosoku reported a failure (exit status $kosoku_status)"
    exit 1
fi
