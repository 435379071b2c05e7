#!/usr/bin/env bash
# The Autobahn TestSuite's client cases with yamabiko's Dialer speaking HTTP/2 (RFC
# 8441). The suite's fuzzing server speaks HTTP/1.1 only, so HAProxy (2.4 or newer,
# Debian's `haproxy`) sits between: its HTTP/2 front end (cleartext, prior knowledge)
# takes the client's extended CONNECTs — every case a stream of one shared
# connection — and opens each as an HTTP/1.1 upgrade to the fuzzing server. Fails
# unless every case passed.
#
#   scripts/autobahn-client-h2.sh              # all cases; kosoku on 9015, HAProxy on 9016
#   scripts/autobahn-client-h2.sh -i '9.*'     # a selection (kosoku -i/-x)
#
# Environment: AUTOBAHN_CLIENT_PORT (the fuzzing server, default 9015),
# AUTOBAHN_PROXY_PORT (HAProxy, default AUTOBAHN_CLIENT_PORT + 1), and the other
# AUTOBAHN_* of scripts/autobahn-client.sh. Installs haproxy with apt-get when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${AUTOBAHN_CLIENT_HOST:-127.0.0.1}"
PORT="${AUTOBAHN_CLIENT_PORT:-9015}"
PROXY_PORT="${AUTOBAHN_PROXY_PORT:-$((PORT + 1))}"

if ! command -v haproxy >/dev/null 2>&1; then
    echo "autobahn-client-h2: installing haproxy" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq haproxy; else sudo apt-get install -y -qq haproxy; fi
fi
if (exec 3<>"/dev/tcp/$HOST/$PROXY_PORT") 2>/dev/null; then
    echo "autobahn-client-h2: something already listens on $HOST:$PROXY_PORT" >&2
    exit 2
fi

WORK="$(mktemp -d)"
PROXY_PID=""
cleanup() {
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout tunnel 120s
frontend yamabiko
    # HTTP/2 with prior knowledge, extended CONNECT accepted.
    bind $HOST:$PROXY_PORT proto h2
    default_backend autobahn
backend autobahn
    server fuzzingserver $HOST:$PORT
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/$HOST/$PROXY_PORT") 2>/dev/null && break
    sleep 0.1
done

AUTOBAHN_CLIENT_HOST="$HOST" AUTOBAHN_CLIENT_PORT="$PORT" \
    AUTOBAHN_CLIENT_URL="ws://$HOST:$PROXY_PORT" AUTOBAHN_HTTP2=1 \
    "$ROOT/scripts/autobahn-client.sh" "$@"
