#!/usr/bin/env bash
# The project's test command (`make test` runs it, and so does CI).
#
# On a fresh machine it creates .venv, installs the package with its test extras, installs
# redis-server/redis-sentinel/redis-cli when they are missing (and chromium for the browser
# test), then runs ruff, mypy and pytest.
# Extra arguments go to pytest:   scripts/test.sh tests/test_fixtures.py -k restart -x
# `scripts/test.sh --setup-only` stops after the set-up (used by the demo and bench targets).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.installed-pyproject.toml"
EXTRAS="test,bench,cryptography,dev,demo"
REDIS_PACKAGES=(redis-server redis-sentinel redis-tools)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Print the first python3 interpreter that is at least 3.10.
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
        [[ -n "$candidate" ]] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        local python
        python="$(find_python)" || die "Python >= 3.10 is required (set PYTHON=/path/to/python3)"
        log "creating $VENV with $python"
        "$python" -m venv "$VENV"
        rm -f "$STAMP"
    fi
    # Reinstall only when pyproject.toml changed since the last successful install.
    if ! cmp -s pyproject.toml "$STAMP"; then
        log "installing the package with extras [$EXTRAS]"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[$EXTRAS]"
        cp pyproject.toml "$STAMP"
    fi
}

missing_redis_binaries() {
    local binary
    for binary in redis-server redis-sentinel redis-cli; do
        command -v "$binary" >/dev/null 2>&1 || printf '%s ' "$binary"
    done
}

# apt_install WHAT PACKAGE...: install Debian packages as root (or with password-less sudo).
apt_install() {
    local what="$1" sudo=()
    shift
    local install="apt-get install -y $*"
    if ! command -v apt-get >/dev/null 2>&1; then
        die "missing: ${what} - install it and rerun"
    fi
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "missing: ${what} - run: sudo apt-get update && sudo $install"
        fi
    fi
    log "installing $* (missing: ${what})"
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

ensure_redis() {
    local missing
    missing="$(missing_redis_binaries)"
    [[ -z "$missing" ]] && return 0
    # The packages may start a system Redis service; the tests never use it.
    apt_install "${missing% } (Redis >= 7: server, sentinel and redis-cli)" "${REDIS_PACKAGES[@]}"
    missing="$(missing_redis_binaries)"
    [[ -z "$missing" ]] || die "still missing after apt-get: $missing"
}

# The browser test drives the system's Chromium through Playwright (no browser download).
ensure_chromium() {
    command -v chromium >/dev/null 2>&1 && return 0
    apt_install "chromium (for tests/test_browser.py)" chromium
    command -v chromium >/dev/null 2>&1 || die "still missing after apt-get: chromium"
}

# Run one step; remember its name if it fails so every step still runs.
FAILED=()
step() {
    local name="$1"
    shift
    log "$name"
    local code=0
    "$@" || code=$?
    if [[ "$name" == pytest && "$code" -eq 5 ]]; then
        printf 'error: pytest collected no tests\n' >&2
    fi
    [[ "$code" -eq 0 ]] || FAILED+=("$name (exit $code)")
}

main() {
    ensure_venv
    ensure_redis
    if [[ "${1:-}" == "--setup-only" ]]; then
        return 0
    fi
    ensure_chromium
    export ASGI_REDIS_REQUIRE_REDIS=1
    local lint_paths=() path
    for path in asgi_redis tests benchmarks examples; do
        [[ -e "$path" ]] && lint_paths+=("$path")
    done
    step ruff "$VENV/bin/ruff" check "${lint_paths[@]}"
    step mypy "$VENV/bin/mypy"
    step pytest "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
    if ((${#FAILED[@]})); then
        printf 'FAILED: %s\n' "${FAILED[@]}" >&2
        exit 1
    fi
    log "all checks passed"
}

main "$@"
