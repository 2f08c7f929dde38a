# Thin wrappers; the work happens in scripts/. Pass pytest/demo arguments with ARGS="...".
.PHONY: test demo bench lint setup lock test-matrix

test:
	scripts/test.sh $(ARGS)

demo:
	scripts/demo.sh $(ARGS)

setup:
	scripts/test.sh --setup-only

bench: setup
	.venv/bin/python benchmarks/bench.py $(ARGS)

lint: setup
	.venv/bin/ruff check asgi_redis tests benchmarks examples
	.venv/bin/mypy

# Re-resolve requirements/lock.txt from pyproject.toml's ranges (newest releases that fit).
lock: setup
	scripts/lock.sh

# The claimed version range, tested (noxfile.py): the lock (= make test), the lowest supported
# versions (requirements/lowest.txt) and the newest releases. One session: ARGS="-s lowest".
test-matrix: setup
	.venv/bin/nox $(ARGS)
