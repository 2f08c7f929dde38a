"""Auto-pipelining: script calls issued in one event-loop turn share one round trip.

Many tasks sending at once would otherwise each take a pooled connection and wait for their own
reply. Here a call on a client (one client per event loop and server, see ``connections``) that
has nothing else on the wire is sent at once as a plain EVALSHA, so a lone caller pays nothing
(it writes on the client's dedicated connection, see ``writer``). Otherwise the first call of a
loop turn opens a batch and schedules its flush with ``loop.call_soon``; every call made before
that callback runs joins it. The flush sends a batch of one as a plain EVALSHA from its
caller's own task, and a larger one as one non-transactional pipeline, then hands each caller
its own reply or error.

Nothing changes about what runs: each EVALSHA is still atomic on its own (a pipeline is
not a transaction), a NOSCRIPT reply means that script did not run, so only those calls
are re-sent with EVAL, and a connection error during the pipeline reaches every caller in
it, never retried, exactly as it would reach one lone call whose reply was lost. A
connection error of the EVAL re-send reaches only the re-sent calls: the others ran, and
get their own replies.

Cancelling a caller whose call is already in a flushed batch does not touch the batch:
the others get their replies and the cancelled call may still run, as a lone EVALSHA
already written to the socket would. A call cancelled before its batch is flushed is
left out and does not run.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from . import writer
from .failures import own_copy
from .scripts import SCRIPTS, Arg, Script, ScriptCall, command, run

__all__ = ["run_all", "run_batched", "run_many"]

# For benchmarks only: False sends every call on its own, as before auto-pipelining, so
# one run can compare both paths.
ENABLED = True

# Handed to the only caller of a batch: run your call yourself, in your own task.
_RUN_ALONE = object()


@dataclass
class _Script:
    """One script call: the script, its KEYS and its ARGV."""

    script: Script
    keys: list[str]
    args: list[Arg]


@dataclass
class _Call(_Script):
    """One caller's script call and the future its reply goes to."""

    future: asyncio.Future[Any]


@dataclass
class _State:
    """One client's open batch and how many of its calls are on the wire."""

    batch: list[_Call] | None = None
    in_flight: int = 0


# Per client; a client belongs to one loop, so this is per loop and server.
_states: weakref.WeakKeyDictionary[Redis, _State] = weakref.WeakKeyDictionary()
# Flush tasks in flight: the loop keeps only weak references to tasks.
_flushing: set[asyncio.Task[None]] = set()


async def run_batched(client: Redis, name: str, keys: list[str], args: list[Arg]) -> Any:
    """Run script ``name`` like ``scripts.run``, sharing a round trip with concurrent calls.

    Args:
        client: the running loop's client of one server.
        name: a script in ``lua/``.
        keys: its KEYS.
        args: its ARGV.

    Returns:
        The script's reply, as ``scripts.run`` returns it.

    Raises:
        RedisError: this call's own error reply, or the connection error that failed its batch.
    """
    if not ENABLED:
        return await run(client, name, keys, args)
    state = _states.get(client)
    if state is None:
        state = _states[client] = _State()
    if state.batch is None and state.in_flight == 0:
        # Nothing else going on: waiting for the turn to end would only slow a lone caller.
        return await _run_counted(state, client, name, keys, args)
    if state.batch is None:
        state.batch = []
        asyncio.get_running_loop().call_soon(_flush, client, state)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    state.batch.append(_Call(SCRIPTS[name], keys, args, future))
    reply = await future
    if reply is _RUN_ALONE:
        return await _run_counted(state, client, name, keys, args)
    return reply


async def _run_counted(
    state: _State, client: Redis, name: str, keys: list[str], args: list[Arg]
) -> Any:
    """``scripts.run`` on the client's dedicated connection (``writer``), counted as on the
    wire so calls meanwhile form a batch."""
    state.in_flight += 1
    try:
        return await writer.run_script(client, name, keys, args)
    finally:
        state.in_flight -= 1


def _flush(client: Redis, state: _State) -> None:
    """End the turn's batch: a lone call runs in its caller's task, more get one pipeline."""
    batch, state.batch = state.batch or [], None
    calls = [call for call in batch if not call.future.done()]  # drop the cancelled
    if len(calls) == 1:
        calls[0].future.set_result(_RUN_ALONE)
    elif calls:
        state.in_flight += 1
        task = asyncio.get_running_loop().create_task(_send(client, calls))
        _flushing.add(task)
        task.add_done_callback(_flushing.discard)
        task.add_done_callback(lambda _: _landed(state))


def _landed(state: _State) -> None:
    """A pipeline is off the wire."""
    state.in_flight -= 1


async def run_many(client: Redis, calls: list[ScriptCall]) -> list[Any]:
    """Several script calls in one pipeline, for a caller that has them all at hand.

    Returns each call's reply, or its error reply as an exception, in order (calls answered
    NOSCRIPT did not run and are sent once more with their text; if that re-send fails, its
    error is their reply); a connection error of the first pipeline raises.
    """
    return await _replies(
        client, [_Script(SCRIPTS[name], keys, args) for name, keys, args in calls]
    )


async def run_all(client: Redis, calls: list[ScriptCall]) -> list[Any]:
    """``run_many``, raising the first error reply instead of returning it."""
    replies = await run_many(client, calls)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _replies(client: Redis, calls: Sequence[_Script]) -> list[Any]:
    """One pipeline of ``calls`` (and one more for those the server had no script for)."""
    replies = await _pipeline(client, [(call.script.sha, call) for call in calls])
    missing = [
        call for call, reply in zip(calls, replies, strict=True) if isinstance(reply, NoScriptError)
    ]
    if missing:
        # These did not run (the server lost its script cache): send their text once. If that
        # pipeline fails, only these calls get its error: the others ran and keep their
        # replies (an error there would make a caller that retries run them twice).
        try:
            retried = await _pipeline(client, [(None, call) for call in missing])
        except Exception as exc:
            retried = [own_copy(exc) for _ in missing]
        replies = _merge(calls, replies, dict(zip(map(id, missing), retried, strict=True)))
    return replies


async def _send(client: Redis, calls: list[_Call]) -> None:
    """Send ``calls`` as one pipeline and resolve each caller's future."""
    try:
        replies = await _replies(client, calls)
    except BaseException as exc:
        for call in calls:
            _resolve(call.future, own_copy(exc))
        if not isinstance(exc, Exception):
            raise  # cancelled with its loop: let the task end as cancelled
        return
    for call, reply in zip(calls, replies, strict=True):
        _resolve(call.future, reply)


async def _pipeline(client: Redis, sends: list[tuple[str | None, _Script]]) -> list[Any]:
    """One non-transactional pipeline: EVALSHA when a SHA is given, else EVAL of the text.

    Error replies come back in the list; a connection error raises. Written in one write on
    the client's dedicated connection (``writer``), or for clients without one as a redis-py
    pipeline on a pooled connection (``connections.FreshConnectionsMixin`` checks it first).
    """
    commands = [
        command(call.script, call.keys, call.args, by_sha=sha is not None) for sha, call in sends
    ]
    own = writer.writer_for(client)
    if own is not None:
        return await own.call_many(commands)
    async with client.pipeline(transaction=False) as pipe:
        for each in commands:
            pipe.execute_command(*each)
        return await pipe.execute(raise_on_error=False)


def _merge(calls: Sequence[_Script], replies: list[Any], retried: dict[int, Any]) -> list[Any]:
    """The first replies with the re-sent calls' replies in their place."""
    return [retried.get(id(call), reply) for call, reply in zip(calls, replies, strict=True)]


def _resolve(future: asyncio.Future[Any], reply: Any) -> None:
    """Hand ``reply`` to a caller still waiting (a cancelled caller has gone)."""
    if future.done():
        return
    if isinstance(reply, asyncio.CancelledError):
        future.cancel()
    elif isinstance(reply, BaseException):
        future.set_exception(reply)
    else:
        future.set_result(reply)
