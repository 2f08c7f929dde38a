#!/usr/bin/env bash
# Refresh requirements/lock.txt (`make lock`): resolve every extra of pyproject.toml to the newest
# releases its ranges admit, with pip-tools from .venv (the dev extra). Commit the result with
# the change that needed it; `make test` installs exactly these versions.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

log "resolving every extra of pyproject.toml into $LOCK"
"$VENV/bin/pip-compile" -q --upgrade --strip-extras --no-emit-index-url --no-emit-find-links \
    --all-extras -o "$LOCK" pyproject.toml
