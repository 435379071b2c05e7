#!/usr/bin/env bash
# WebSockets over HTTP/2 (RFC 8441) against implementations that are not ours:
#
#  1. tests/interop/h2_client.py — Python `h2` + `wsproto`'s frame layer — as a client
#     of `yamabiko echo`, over cleartext HTTP/2 with prior knowledge (--h2c) and over
#     TLS with ALPN h2;
#  2. Hypercorn serving tests/interop/asgi_echo.py as the server for yamabiko's
#     Dialer (`yamabiko connect --http2`, `yamabiko bench --http2`), over h2c and TLS.
#
# Installs what it needs (pip: h2 wsproto hypercorn; openssl for the certificate),
# builds the release binary, uses free loopback ports, stops every process it starts
# by PID. Exits non-zero on any failure.
#
#   scripts/h2-interop-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if ! python3 -c "import h2, wsproto, hypercorn" 2>/dev/null; then
    echo "h2-interop: installing h2 wsproto hypercorn"
    python3 -m pip install -q h2 wsproto hypercorn ||
        python3 -m pip install -q --user --break-system-packages h2 wsproto hypercorn
fi
HYPERCORN=(python3 -m hypercorn)
if ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq openssl; else sudo apt-get install -y -qq openssl; fi
fi

echo "h2-interop: building the release binary"
cargo build --release -q -p yamabiko-cli
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
BIN="$TARGET_DIR/release/yamabiko"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null

# A free loopback port (bound, then released for the server to take).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT: until something listens there (at most 10 s).
wait_port() {
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "h2-interop: nothing listens on port $1" >&2
    return 1
}

fail() { echo "h2-interop: FAILED: $*" >&2; exit 1; }

echo "h2-interop: Python h2 + wsproto client against yamabiko echo (h2c, then TLS)"
P1="$(free_port)"
"$BIN" echo --listen "127.0.0.1:$P1" --h2c 2>"$WORK/echo-h2c.log" &
PIDS+=($!)
P2="$(free_port)"
"$BIN" echo --listen "127.0.0.1:$P2" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    2>"$WORK/echo-tls.log" &
PIDS+=($!)
wait_port "$P1"
wait_port "$P2"
timeout 60 python3 tests/interop/h2_client.py 127.0.0.1 "$P1" || fail "h2 client over h2c"
timeout 60 python3 tests/interop/h2_client.py 127.0.0.1 "$P2" --tls "$WORK/cert.pem" ||
    fail "h2 client over TLS"

echo "h2-interop: yamabiko's Dialer against Hypercorn (h2c, then TLS)"
P3="$(free_port)"
(cd tests/interop && exec "${HYPERCORN[@]}" asgi_echo:app --bind "127.0.0.1:$P3") \
    >"$WORK/hypercorn.log" 2>&1 &
PIDS+=($!)
P4="$(free_port)"
(cd tests/interop && exec "${HYPERCORN[@]}" asgi_echo:app --bind "127.0.0.1:$P4" \
    --certfile "$WORK/cert.pem" --keyfile "$WORK/key.pem") >"$WORK/hypercorn-tls.log" 2>&1 &
PIDS+=($!)
wait_port "$P3"
wait_port "$P4"

out="$(printf 'version?\none\n/ping p\ntwo\n' | timeout 20 "$BIN" connect --http2 "ws://127.0.0.1:$P3/" 2>"$WORK/c1.err")" ||
    { cat "$WORK/c1.err" >&2; fail "connect --http2 to Hypercorn (h2c)"; }
[ "$out" = "$(printf 'http_version=2\none\ntwo')" ] || fail "h2c echo: got $out"
grep -q 'pong "p"' "$WORK/c1.err" || fail "no pong from Hypercorn"
echo "ok: connect --http2 over h2c (HTTP/2 on Hypercorn's side, echo, ping/pong)"

out="$(printf 'compressed\n' | timeout 20 "$BIN" connect --http2 --compression -p chat "ws://127.0.0.1:$P3/" 2>"$WORK/c2.err")" ||
    { cat "$WORK/c2.err" >&2; fail "connect --http2 --compression to Hypercorn"; }
[ "$out" = "compressed" ] || fail "compression echo: got $out"
echo "ok: connect --http2 with permessage-deflate offered and a subprotocol"

# Auto (no --http2): ALPN picks h2 and Hypercorn enables extended CONNECT.
out="$(printf 'version?\nsecure\n' | timeout 20 "$BIN" connect --ca "$WORK/cert.pem" "wss://localhost:$P4/" 2>"$WORK/c3.err")" ||
    { cat "$WORK/c3.err" >&2; fail "connect wss:// to Hypercorn"; }
[ "$out" = "$(printf 'http_version=2\nsecure')" ] || fail "TLS echo: got $out"
echo "ok: wss:// with ALPN h2 chose HTTP/2 by itself"

# Eight WebSockets, four per HTTP/2 connection, every echo checked.
timeout 60 "$BIN" bench "ws://127.0.0.1:$P3/" --http2 --streams-per-conn 4 --conns 8 \
    --duration 2 --warmup 0.5 --json >"$WORK/bench.json" || fail "bench --http2 against Hypercorn"
python3 - "$WORK/bench.json" <<'EOF' || fail "bench report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["errors"] == 0 and r["messages"] > 0, r
print(f"ok: bench --http2, 8 WebSockets on 2 connections: {r['messages']} echoes checked, 0 errors")
EOF
echo "h2-interop: all passed"
