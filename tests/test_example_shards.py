"""The chat example on two Redis servers: ``CHAT_REDIS_URL`` with two URLs shards the layer.

examples/chat/README.md says the variable takes several servers; this runs the same check as
``make demo ARGS=--check`` (two daphne servers, a worker) on a sharded layer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from asgi_redis.cli import demo_chat
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(120)


def scripts_run(url: str) -> int:
    """How many EVALSHA/EVAL commands the server at ``url`` has run."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


def test_chat_example_runs_on_two_shards(
    redis_url: str, private_redis: RedisServer, tmp_path: Path
) -> None:
    urls = [redis_url, private_redis.url]
    for url in urls:  # the session server has run other tests' scripts
        with redis.Redis.from_url(url) as client:
            client.config_resetstat()
    with demo_chat.chat_stack(",".join(urls), tmp_path, servers=2, workers=1) as stack:
        demo_chat.check(stack)
        # Both servers carry part of the layer (group_send runs a script on each shard).
        assert all(scripts_run(url) for url in urls), [scripts_run(url) for url in urls]
        assert not stack.dead()
