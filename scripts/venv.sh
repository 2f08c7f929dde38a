# Sourced by scripts/test.sh and scripts/demo.sh: create .venv and install the package with
# some extras. Python packages only: nothing here needs root or a system package manager.

VENV=.venv
# What `make test` installs (every extra); `make demo` needs only "demo".
TEST_EXTRAS="test,bench,cryptography,dev,demo"

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

# The pinned versions every install here uses (`make lock` refreshes them; see the README).
LOCK=requirements/lock.txt

# stamp EXTRAS: the file recording which pyproject.toml and lock EXTRAS were last installed from.
stamp() { printf '%s/.installed-%s\n' "$VENV" "${1//,/-}"; }

# What an install depends on: the package's metadata and the pinned versions.
inputs() { cat pyproject.toml "$LOCK"; }

# ensure_venv EXTRAS [SUPERSET]: install ".[EXTRAS]" at the locked versions unless neither
# pyproject.toml nor the lock changed since the last install of EXTRAS (or of SUPERSET,
# extras that include them).
ensure_venv() {
    local extras="$1" superset="${2:-}"
    if [[ ! -x "$VENV/bin/python" ]]; then
        local python
        python="$(find_python)" || die "Python >= 3.10 is required (set PYTHON=/path/to/python3)"
        log "creating $VENV with $python"
        "$python" -m venv "$VENV"
        rm -f "$VENV"/.installed-*
    fi
    inputs | cmp -s - "$(stamp "$extras")" && return 0
    [[ -n "$superset" ]] && inputs | cmp -s - "$(stamp "$superset")" && return 0
    log "installing the package with extras [$extras] at the versions in $LOCK"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$LOCK" -e ".[$extras]"
    inputs >"$(stamp "$extras")"
}

# The Redis 6.2 server of tests/test_old_redis.py, beside the virtualenv (not on its PATH).
OLD_REDIS_DIR="$VENV/redis-6.2"
OLD_REDIS_PIN=requirements/redis-6.2.txt

# ensure_old_redis: install it unless the pin is unchanged since the last install.
ensure_old_redis() {
    if cmp -s "$OLD_REDIS_PIN" "$OLD_REDIS_DIR/.installed" \
        && [[ -x "$OLD_REDIS_DIR/bin/redis-server" ]]; then
        return 0
    fi
    log "installing Redis 6.2 for tests/test_old_redis.py into $OLD_REDIS_DIR ($OLD_REDIS_PIN)"
    rm -rf "$OLD_REDIS_DIR"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
        --target "$OLD_REDIS_DIR" -r "$OLD_REDIS_PIN"
    [[ -x "$OLD_REDIS_DIR/bin/redis-server" ]] || die "no redis-server in $OLD_REDIS_DIR"
    cp "$OLD_REDIS_PIN" "$OLD_REDIS_DIR/.installed"
}
