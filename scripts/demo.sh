#!/usr/bin/env bash
# Run the demo (`make demo`): set up .venv like the tests do, then run asgi_redis.cli.demo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/test.sh --setup-only
exec .venv/bin/python -m asgi_redis.cli.demo "$@"
