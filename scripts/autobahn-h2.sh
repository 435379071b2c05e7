#!/usr/bin/env bash
# The Autobahn TestSuite against `yamabiko echo` over HTTP/2 (RFC 8441). The suite's
# client speaks HTTP/1.1 only, so HAProxy (2.4 or newer, Debian's `haproxy`) sits in
# front: it takes the suite's HTTP/1.1 upgrade and opens the WebSocket on the backend
# as an HTTP/2 extended CONNECT stream (cleartext, prior knowledge: `proto h2`); every
# frame then travels as DATA of that stream into `yamabiko echo --h2c`. Fails unless
# every case passed, and unless the backend saw the WebSockets come over HTTP/2.
#
#   scripts/autobahn-h2.sh               # all cases; HAProxy on 9013, backend on 9014
#   scripts/autobahn-h2.sh -i '12.*'     # a selection (kosoku -i/-x)
#
# Environment: AUTOBAHN_PORT (HAProxy, default 9013), AUTOBAHN_BACKEND_PORT (yamabiko,
# default AUTOBAHN_PORT + 1), AUTOBAHN_BUILD (1 builds the release binary first,
# default), and the other AUTOBAHN_* of scripts/autobahn.sh. Installs haproxy with
# apt-get when it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HOST="${AUTOBAHN_HOST:-127.0.0.1}"
PORT="${AUTOBAHN_PORT:-9013}"
BACKEND_PORT="${AUTOBAHN_BACKEND_PORT:-$((PORT + 1))}"

if ! command -v haproxy >/dev/null 2>&1; then
    echo "autobahn-h2: installing haproxy" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq haproxy; else sudo apt-get install -y -qq haproxy; fi
fi
HAPROXY="$(command -v haproxy)"

if [ "${AUTOBAHN_BUILD:-1}" = 1 ]; then
    echo "autobahn-h2: building: cargo build --release -p yamabiko-cli" >&2
    cargo build --release -p yamabiko-cli
fi
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/yamabiko"
[ -x "$BIN" ] || { echo "autobahn-h2: $BIN not found" >&2; exit 2; }

WORK="$(mktemp -d)"
BACKEND_PID=""
cleanup() {
    if [ -n "$BACKEND_PID" ]; then
        kill "$BACKEND_PID" 2>/dev/null || true
        wait "$BACKEND_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if (exec 3<>"/dev/tcp/$HOST/$BACKEND_PORT") 2>/dev/null; then
    echo "autobahn-h2: something already listens on $HOST:$BACKEND_PORT" >&2
    exit 2
fi
# Compression accepted with threshold 0, like scripts/autobahn.sh's echo.
RUST_LOG=yamabiko::echo_http2=debug NO_COLOR=1 \
    "$BIN" echo --listen "$HOST:$BACKEND_PORT" --h2c >"$WORK/backend.log" 2>&1 &
BACKEND_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$HOST/$BACKEND_PORT") 2>/dev/null && break
    sleep 0.1
done

cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout tunnel 120s
frontend autobahn
    bind $HOST:$PORT
    default_backend yamabiko
backend yamabiko
    # HTTP/2 with prior knowledge: WebSocket upgrades become extended CONNECTs.
    server echo $HOST:$BACKEND_PORT proto h2
EOF

status=0
AUTOBAHN_SERVER_CMD="$(printf '%q -f %q -db' "$HAPROXY" "$WORK/haproxy.cfg")" \
    AUTOBAHN_HOST="$HOST" AUTOBAHN_PORT="$PORT" AUTOBAHN_BUILD=0 \
    AUTOBAHN_WORKDIR="${AUTOBAHN_WORKDIR:-$ROOT/reports/h2}" \
    "$ROOT/scripts/autobahn.sh" "$@" || status=$?

h2=$(grep -c "WebSocket over HTTP/2 (extended CONNECT)" "$WORK/backend.log" || true)
echo "autobahn-h2: the backend took $h2 WebSockets as HTTP/2 extended CONNECTs"
if [ "$h2" -eq 0 ]; then
    echo "autobahn-h2: no WebSocket reached the backend over HTTP/2" >&2
    exit 1
fi
exit "$status"
