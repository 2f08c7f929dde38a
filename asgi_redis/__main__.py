"""``python -m asgi_redis``: the same as the ``asgi-redis`` console command."""

from __future__ import annotations

import sys

from asgi_redis.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
