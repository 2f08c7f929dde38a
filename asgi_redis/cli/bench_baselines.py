"""Raw redis-py baselines for the benchmarks: what Redis itself allows, without any layer."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from .bench import RAW_PREFIX, LayerSpec, Metrics, Sizes, Workload

RAW = "raw redis-py"
PAYLOAD = b"x" * 120
PIPELINE_BATCH = 100
# One script, K keys in KEYS: the limit for any fan-out that names every member's key.
PUSH_EACH_LUA = """
for i = 1, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[1])
end
return #KEYS
"""


async def _with_client(url: str, keys: list[str]) -> aioredis.Redis:
    client = aioredis.Redis.from_url(url)
    if keys:
        await client.delete(*keys)
    return client


def rpush_loop(sizes: Sizes) -> Workload:
    """One awaited RPUSH per message (one round trip each): msgs/s."""

    async def run(spec: LayerSpec) -> Metrics:
        key = f"{RAW_PREFIX}queue"
        client = await _with_client(spec.url, [key])
        try:
            for _ in range(50):
                await client.rpush(key, b"warmup")
            started = time.perf_counter()
            for _ in range(sizes.messages):
                await client.rpush(key, PAYLOAD)
            rate = sizes.messages / (time.perf_counter() - started)
            await client.delete(key)
        finally:
            await client.aclose()
        return {"raw_rpush": rate}

    return Workload("raw rpush", run, ("raw_rpush",), (RAW,))


def pipelined_writes(sizes: Sizes) -> Workload:
    """RPUSH in pipelines of ``PIPELINE_BATCH`` (no MULTI): msgs/s."""

    async def run(spec: LayerSpec) -> Metrics:
        key = f"{RAW_PREFIX}pipelined"
        client = await _with_client(spec.url, [key])
        try:
            started = time.perf_counter()
            for start in range(0, sizes.messages, PIPELINE_BATCH):
                pipe = client.pipeline(transaction=False)
                for _ in range(min(PIPELINE_BATCH, sizes.messages - start)):
                    pipe.rpush(key, PAYLOAD)
                await pipe.execute()
            rate = sizes.messages / (time.perf_counter() - started)
            await client.delete(key)
        finally:
            await client.aclose()
        return {"raw_pipelined": rate}

    return Workload("raw pipelined", run, ("raw_pipelined",), (RAW,))


def script_keys(sizes: Sizes, count: int) -> Workload:
    """EVALSHA of one script that RPUSHes to ``count`` keys passed in KEYS: calls/s."""
    metric = f"raw_script_{count}"

    async def run(spec: LayerSpec) -> Metrics:
        keys = [f"{RAW_PREFIX}k{index}" for index in range(count)]
        client = await _with_client(spec.url, keys)
        try:
            script = client.register_script(PUSH_EACH_LUA)
            await script(keys=keys, args=[PAYLOAD])
            started = time.perf_counter()
            for _ in range(sizes.script_calls):
                await script(keys=keys, args=[PAYLOAD])
            rate = sizes.script_calls / (time.perf_counter() - started)
            for start in range(0, count, 1000):
                await client.delete(*keys[start : start + 1000])
        finally:
            await client.aclose()
        return {metric: rate}

    return Workload(f"raw script {count} keys", run, (metric,), (RAW,))
