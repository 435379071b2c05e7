#!/usr/bin/env bash
# End-to-end browser tests of the bulletin board (`yamabiko serve`) and of the chat
# example: builds the release binaries, installs Debian's chromium and the npm
# dependencies when missing, and runs tests/browser/board.test.mjs (HTTP/1.1),
# board-h2.test.mjs (HTTPS, the page and its WebSocket on one HTTP/2 connection) and
# chat.test.mjs with node's test runner. Writes docs/board-screenshot.png.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
  if ! command -v "$1" >/dev/null 2>&1; then
    shift
    if [ "$apt_updated" -eq 0 ]; then
      as_root apt-get update -qq
      apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  fi
}

need_pkg chromium chromium
need_pkg node nodejs
need_pkg npm npm
need_pkg openssl openssl
# Japanese glyphs for the screenshot (the board's default name is 名無しさん).
if ! fc-list :lang=ja 2>/dev/null | grep -q .; then
  need_pkg __no_such_command__ fonts-ipafont-gothic
fi

echo "browser-test: building the release binaries"
cargo build --release -p yamabiko-cli
cargo build --release -p yamabiko --example chat
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
BIN="$TARGET_DIR/release/yamabiko"
[ -x "$BIN" ] || { echo "browser-test: $BIN not found" >&2; exit 1; }
CHAT_BIN="$TARGET_DIR/release/examples/chat"
[ -x "$CHAT_BIN" ] || { echo "browser-test: $CHAT_BIN not found" >&2; exit 1; }

cd "$ROOT/tests/browser"
if [ ! -d node_modules/playwright-core ]; then
  echo "browser-test: installing npm dependencies"
  npm ci --no-audit --no-fund
fi

echo "browser-test: running (chromium $(chromium --version 2>/dev/null | awk '{print $2}'))"
YAMABIKO_BIN="$BIN" CHAT_BIN="$CHAT_BIN" CHROMIUM="$(command -v chromium)" \
  timeout 300 node --test --test-concurrency=1 board.test.mjs board-h2.test.mjs chat.test.mjs
