#!/usr/bin/env bash
# Run the demo (`make demo`): set up .venv with the demo extra, then run asgi_redis.cli.demo.
#
# Python packages only: no root, no system packages. The demo uses redis-server when it is on
# PATH and fakeredis's TCP server (from the demo extra) otherwise, so it also runs on macOS.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

# A .venv that `make test` set up has every extra, the demo's included.
ensure_venv demo "$TEST_EXTRAS"
exec "$VENV/bin/python" -m asgi_redis.cli.demo "$@"
