"""A loop that ends (asyncio.run, async_to_sync) with messages in its buffer loses none."""

from __future__ import annotations

import asyncio

from asgi_redis import RedisChannelLayer


def test_messages_in_flight_when_the_loop_ends_are_not_lost(redis_url: str) -> None:
    layer = RedisChannelLayer(hosts=[redis_url])
    sender = RedisChannelLayer(hosts=[redis_url])
    rounds = 20

    got: list[int] = []

    async def leave_a_message_in_flight(number: int) -> None:
        waiting = asyncio.create_task(layer.receive("shutdown.test"))
        await asyncio.sleep(0.05)  # the reader now blocks on the queue
        if waiting.done():  # it got a message an earlier round put back
            got.append(waiting.result()["n"])
        waiting.cancel()
        # Redis hands this to the blocked reader at once; the loop ends before the reader
        # reads the reply, and asyncio.run cancels the reader.
        await sender.send("shutdown.test", {"type": "m", "n": number})

    for number in range(rounds):
        asyncio.run(leave_a_message_in_flight(number))

    async def drain() -> None:
        try:
            while len(got) < rounds:
                message = await asyncio.wait_for(layer.receive("shutdown.test"), 5)
                got.append(message["n"])
        finally:
            await layer.close()

    asyncio.run(drain())
    assert sorted(got) == list(range(rounds))
