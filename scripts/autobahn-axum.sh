#!/usr/bin/env bash
# Runs the whole Autobahn TestSuite (517 cases, compression included) against the echo
# route of the axum example (yamabiko/examples/axum.rs: yamabiko's WebSocketUpgrade
# extractor, routed at "/" because kosoku connects to the root of host:port) through
# scripts/autobahn.sh, and fails unless every case passed.
#
#   scripts/autobahn-axum.sh              # all cases, port 9012
#   scripts/autobahn-axum.sh -i '12.*'    # a selection (kosoku -i/-x)
#
# Environment: AUTOBAHN_PORT (default 9012), AUTOBAHN_BUILD (1 builds the example in
# release mode first, default), and the other AUTOBAHN_* of scripts/autobahn.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HOST="${AUTOBAHN_HOST:-127.0.0.1}"
PORT="${AUTOBAHN_PORT:-9012}"
if [ "${AUTOBAHN_BUILD:-1}" = 1 ]; then
    echo "autobahn-axum: building: cargo build --release -p yamabiko --example axum" >&2
    cargo build --release -p yamabiko --example axum
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/examples/axum"
if [ ! -x "$BIN" ]; then
    echo "autobahn-axum: $BIN not found" >&2
    exit 2
fi
AUTOBAHN_SERVER_CMD="$(printf '%q %q' "$BIN" "$HOST:$PORT")" \
    AUTOBAHN_HOST="$HOST" AUTOBAHN_PORT="$PORT" AUTOBAHN_BUILD=0 \
    AUTOBAHN_WORKDIR="${AUTOBAHN_WORKDIR:-$ROOT/reports/axum}" \
    exec "$ROOT/scripts/autobahn.sh" "$@"
