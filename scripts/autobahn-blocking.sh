#!/usr/bin/env bash
# Runs the whole Autobahn TestSuite (517 cases, compression included) against
# `yamabiko echo --blocking` (the blocking driver, a thread per connection) through
# scripts/autobahn.sh, and fails unless every case passed.
#
#   scripts/autobahn-blocking.sh              # all cases, port 9011
#   scripts/autobahn-blocking.sh -i '9.*'     # a selection (kosoku -i/-x)
#
# Environment: AUTOBAHN_PORT (default 9011), AUTOBAHN_BUILD (1 builds the release
# binary first, default), and the other AUTOBAHN_* of scripts/autobahn.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HOST="${AUTOBAHN_HOST:-127.0.0.1}"
PORT="${AUTOBAHN_PORT:-9011}"
if [ "${AUTOBAHN_BUILD:-1}" = 1 ]; then
    echo "autobahn-blocking: building: cargo build --release -p yamabiko-cli" >&2
    cargo build --release -p yamabiko-cli
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/yamabiko"
if [ ! -x "$BIN" ]; then
    echo "autobahn-blocking: $BIN not found" >&2
    exit 2
fi
# --max-conns bounds the threads; kosoku runs 2 cases at a time.
AUTOBAHN_SERVER_CMD="$(printf '%q echo --blocking --max-conns 64 --listen %q' "$BIN" "$HOST:$PORT")" \
    AUTOBAHN_HOST="$HOST" AUTOBAHN_PORT="$PORT" AUTOBAHN_BUILD=0 \
    AUTOBAHN_WORKDIR="${AUTOBAHN_WORKDIR:-$ROOT/reports/blocking}" \
    exec "$ROOT/scripts/autobahn.sh" "$@"
