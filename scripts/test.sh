#!/usr/bin/env bash
# The project's test command (`make test` runs it, and so does CI).
#
# On a fresh machine it creates .venv, installs the package with its test extras, installs
# redis-server/redis-sentinel/redis-cli when they are missing (and chromium for the browser
# test), a Redis 6.2 server in .venv/redis-6.2 (requirements/redis-6.2.txt), then runs ruff,
# mypy and pytest.
# Extra arguments go to pytest:   scripts/test.sh tests/test_fixtures.py -k restart -x
# `scripts/test.sh --setup-only` stops after the set-up (used by the bench targets).
#
# Without root or apt-get a missing chromium skips only tests/test_browser.py (with a message
# saying how to enable it); under CI, or when the caller sets ASGI_REDIS_REQUIRE_REDIS, the
# browser test must run, so a missing chromium is an error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

REDIS_PACKAGES=(redis-server redis-sentinel redis-tools)
# Read before this script exports ASGI_REDIS_REQUIRE_REDIS for pytest.
CALLER_REQUIRES_ALL="${CI:-}${ASGI_REDIS_REQUIRE_REDIS:-}"
# Recommended packages would add systemd, CUPS and more: 115 packages for chromium alone.
APT_INSTALL="apt-get install -y --no-install-recommends"

missing_redis_binaries() {
    local binary
    for binary in redis-server redis-sentinel redis-cli; do
        command -v "$binary" >/dev/null 2>&1 || printf '%s ' "$binary"
    done
}

# Print how to run apt-get as root here ("" as root, "sudo -n" with password-less sudo);
# fail when there is no apt-get or no way to become root.
apt_prefix() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if [[ "$(id -u)" -eq 0 ]]; then
        printf '\n'
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        printf 'sudo -n\n'
    else
        return 1
    fi
}

# apt_install WHAT PACKAGE...: install Debian packages as root (or with password-less sudo).
apt_install() {
    local what="$1" prefix
    shift
    if ! prefix="$(apt_prefix)"; then
        command -v apt-get >/dev/null 2>&1 || die "missing: ${what} - install it and rerun"
        die "missing: ${what} - run: sudo apt-get update && sudo $APT_INSTALL $*"
    fi
    local sudo=()
    [[ -n "$prefix" ]] && read -r -a sudo <<<"$prefix"
    log "installing $* (missing: ${what})"
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # shellcheck disable=SC2086  # APT_INSTALL is a command line
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive $APT_INSTALL -q "$@"
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
# Sets BROWSER_SKIPPED (and tells tests/test_browser.py) when it cannot be had here.
BROWSER_SKIPPED=""
ensure_chromium() {
    command -v chromium >/dev/null 2>&1 && return 0
    if [[ -n "$CALLER_REQUIRES_ALL" ]] || apt_prefix >/dev/null; then
        apt_install "chromium (for tests/test_browser.py)" chromium
        command -v chromium >/dev/null 2>&1 || die "still missing after apt-get: chromium"
        return 0
    fi
    BROWSER_SKIPPED="chromium is missing and cannot be installed here (needs apt-get as root);"
    BROWSER_SKIPPED+=" to run this test: sudo apt-get update && sudo $APT_INSTALL chromium"
    BROWSER_SKIPPED+=" (or put a chromium on PATH), then rerun make test"
    export ASGI_REDIS_SKIP_BROWSER="$BROWSER_SKIPPED"
    log "skipping tests/test_browser.py: $BROWSER_SKIPPED"
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
    ensure_venv "$TEST_EXTRAS"
    ensure_redis
    ensure_old_redis
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
    if [[ -n "$BROWSER_SKIPPED" ]]; then
        log "skipped tests/test_browser.py: $BROWSER_SKIPPED"
    fi
    if ((${#FAILED[@]})); then
        printf 'FAILED: %s\n' "${FAILED[@]}" >&2
        exit 1
    fi
    log "all checks passed"
}

main "$@"
