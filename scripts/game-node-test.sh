#!/usr/bin/env bash
# The game page's code under node's test runner, without a browser: its simulation
# and prediction against the vectors the server's simulation wrote, its protocol codec
# against the server's bytes, and its netcode (yamabiko-game/tests/js/). Installs
# nodejs when missing. The Rust test `vectors` (cargo test) checks that the vectors
# are what the server computes today.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs
fi
node --test yamabiko-game/tests/js/
