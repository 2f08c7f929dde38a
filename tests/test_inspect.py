"""``asgi-redis inspect`` on a known state built with the layer, and on 100,000 keys."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from asgi_redis import config, keys
from asgi_redis.buffers import now_ms
from asgi_redis.cli.inspect import inspect_once
from asgi_redis.cli.inspect_report import Settings
from asgi_redis.cli.main import main
from tests.layer_helpers import make_layer, sync_client

SECRET = "payload-that-must-never-be-printed"
DEAD_CLIENT = "specific.deadbeef!"


async def build_known_state(url: str) -> str:
    """Queues jobs (3), mail (1), a local queue (1); groups room and lobby; one dead client."""
    async with make_layer(url) as layer:
        for number in range(3):
            await layer.send("jobs", {"n": number, "secret": SECRET})
        await layer.send("mail", {"secret": SECRET})
        local = await layer.new_channel()
        await layer.group_add("room", local)
        await layer.group_add("room", "jobs")
        await layer.group_add("room", DEAD_CLIENT + "x1")
        await layer.group_add("room", DEAD_CLIENT + "x2")
        await layer.group_add("lobby", "mail")
        await layer.send(local, {"secret": SECRET})
    with sync_client(url) as client:
        # Its process was killed: its last beat is long past on its tag's uptime clock.
        client.set(keys.heartbeat_key("asgi:", DEAD_CLIENT), -(10**9))
    return keys.split_channel(local)[0]


def known_group_keys(head: str) -> dict[str, int]:
    """How many ``g:`` (named members per tag), ``l:`` (clients per tag) and ``m:`` (one per
    client) keys the groups of the known state have."""
    clients = {keys.tag_of(unit) for unit in (head, DEAD_CLIENT)}
    # room's jobs and lobby's mail; two clients; no group_send, so no cached member list
    return {"g": 2, "l": len(clients), "m": 2, "j": 0}


def known_clocks(head: str) -> int:
    """How many tag uptime clocks (``u:`` keys) the known state ticked: its clients' tags."""
    return len({keys.tag_of(head), keys.tag_of(DEAD_CLIENT)})


def run_inspect(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the command in this process; returns stdout (stderr must stay empty: no TTY)."""
    assert main(["inspect", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the fields that depend on the clock."""
    timed = {"oldest_age_s", "last_heartbeat_age_s", "expires_in_s"}
    return [{key: value for key, value in row.items() if key not in timed} for row in rows]


def test_json_on_a_known_state(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = asyncio.run(build_known_state(redis_url))
    out = run_inspect(capsys, "--hosts", redis_url, "--json", "--capacity", "100")
    assert SECRET not in out
    report = json.loads(out)
    assert (report["schema"], report["prefix"], report["capacity_note"]) == (1, "asgi:", None)
    (server,) = report["servers"]
    assert server["drops"] is None and "not recorded" in report["drops_note"]
    group_keys = known_group_keys(head)
    clocks = known_clocks(head)
    assert server["keys"] == {
        **{"q": 3, "n": 1, "c": 0, "d": 2, "w": 0, "r": 0, "h": 2, "u": clocks},
        **group_keys,
    }
    assert server["queues"]["total"] == 3
    assert without_times(server["queues"]["rows"]) == [
        {"queue": "jobs", "local": False, "depth": 3, "counted": 3, "capacity": 100},
        {"queue": "mail", "local": False, "depth": 1, "counted": 1, "capacity": 100},
        {"queue": head, "local": True, "depth": 1, "counted": 1, "capacity": 100},
    ]
    for row in server["queues"]["rows"]:
        assert 0 <= row["oldest_age_s"] < 60
    room, lobby = server["groups"]["rows"]
    assert room == {
        "group": "room",
        "members": 4,
        "named": 1,
        "local": 3,
        "local_dead": 2,
        "clients": 2,
        "dead_clients": 1,
    }
    assert (lobby["group"], lobby["members"], lobby["named"]) == ("lobby", 1, 1)
    (client,) = [row for row in server["clients"]["rows"] if row["client"] == head]
    assert without_times([client]) == [{"client": head, "queue_depth": 1}]
    assert 0 <= client["last_heartbeat_age_s"] <= 15
    assert 0 < client["expires_in_s"] <= 60  # a mark lives 12 heartbeats


def test_table_on_a_known_state(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = asyncio.run(build_known_state(redis_url))
    out = run_inspect(capsys, "--hosts", redis_url, "--limit", "2")
    assert SECRET not in out
    lines = [line.split() for line in out.splitlines()]
    assert ["QUEUE", "DEPTH", "COUNTED", "CAPACITY", "OLDEST", "s"] in lines
    assert any(line[:4] == ["jobs", "3", "3", "-"] for line in lines)
    assert not any(line[:1] == [head] and line[1] == "1" and len(line) == 5 for line in lines)
    assert "Queues, busiest first: 3 (first 2 shown, see --limit)" in out
    assert any(line[:6] == ["room", "4", "1", "3", "2", "1"] for line in lines)
    assert any(line[:1] == [head] for line in lines)  # the clients section
    assert "drops are not recorded in Redis" in out
    assert "pass --capacity" in out


def test_watch_prints_count_reports(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(build_known_state(redis_url))
    out = run_inspect(capsys, "--hosts", redis_url, "--json", "--watch", "0.01", "--count", "2")
    reports = [json.loads(line) for line in out.splitlines()]
    assert len(reports) == 2
    assert all(report["servers"][0]["queues"]["total"] == 3 for report in reports)


class FakeTerminal(io.StringIO):
    """A stderr that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_goes_to_stderr_only_on_a_terminal(redis_url: str) -> None:
    head = asyncio.run(build_known_state(redis_url))
    # Queues, counts, the groups' keys and directories, liveness marks, uptime clocks.
    found = 3 + 1 + sum(known_group_keys(head).values()) + 2 + 2 + known_clocks(head)
    layer_config = config.parse(hosts=[redis_url])
    settings = Settings("asgi:", 60, 86400, 5.0, None, 20)
    terminal, pipe = FakeTerminal(), io.StringIO()
    asyncio.run(inspect_once(layer_config, settings, terminal))
    asyncio.run(inspect_once(layer_config, settings, pipe))
    assert "scanning " in terminal.getvalue() and f"{found} keys" in terminal.getvalue()
    assert pipe.getvalue() == ""


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--hosts", "redis://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("asgi-redis inspect: ") and err.count("\n") == 1


QUEUES = 90_000
GROUPS = 5_000
CLIENTS = 5_000


def plant_group(pipe: Any, group: str, members: list[str]) -> int:
    """Queue on ``pipe`` a group's members in their tags' copies and its directory, as
    group_add would; returns how many keys that makes."""
    by_tag: dict[str, list[str]] = {}
    for member in members:
        by_tag.setdefault(keys.tag_of(keys.split_channel(member)[0]), []).append(member)
    for tag, tag_members in by_tag.items():
        pipe.zadd(keys.group_key("asgi:", group, tag), dict.fromkeys(tag_members, now_ms()))
    pipe.sadd(keys.directory_key("asgi:", group), *by_tag)
    return len(by_tag) + 1


def fill_100k_keys(url: str) -> int:
    """Over 100,000 keys of the prefix, written with pipelines: queues, groups (their copies
    and directories), liveness marks. Returns how many."""
    deadline_ms = now_ms() + 60_000
    written = 0
    with sync_client(url) as client:
        pipe = client.pipeline(transaction=False)
        for number in range(QUEUES):
            entries = [keys.make_entry(deadline_ms, "", b"x")] * (1 + number % 3)
            pipe.rpush(keys.queue_key("asgi:", f"queue{number}"), *entries)
            if number % 10_000 == 0:
                pipe.execute()
        pipe.rpush(keys.queue_key("asgi:", "busiest"), *[b"garbage"] * 10)
        written += QUEUES + 1
        for number in range(GROUPS - 1):
            written += plant_group(pipe, f"group{number}", [f"queue{number}"])
        for number in range(CLIENTS):
            # Long enough to outlive filling and scanning on a loaded machine (15 s did not).
            pipe.set(keys.heartbeat_key("asgi:", f"specific.c{number}!"), 1, px=55_000)
        written += CLIENTS
        written += plant_group(pipe, "biggest", [f"m{n}" for n in range(50)])
        pipe.execute()
    return written


def test_100k_keys_are_scanned_and_limited(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    written = fill_100k_keys(redis_url)
    assert written > 100_000
    report = json.loads(run_inspect(capsys, "--hosts", redis_url, "--json", "--limit", "5"))
    (server,) = report["servers"]
    assert sum(server["keys"].values()) == written
    assert server["keys"]["d"] == GROUPS
    assert server["queues"]["total"] == QUEUES + 1
    assert [len(server[name]["rows"]) for name in ("queues", "groups", "clients")] == [5, 5, 5]
    assert server["queues"]["rows"][0]["queue"] == "busiest"
    assert server["queues"]["rows"][0]["oldest_age_s"] is None  # a malformed head
    assert server["queues"]["rows"][1]["depth"] == 3
    assert server["groups"]["rows"][0] == {
        "group": "biggest",
        "members": 50,
        "named": 50,
        "local": 0,
        "local_dead": 0,
        "clients": 0,
        "dead_clients": 0,
    }
    assert (server["groups"]["total"], server["clients"]["total"]) == (GROUPS, CLIENTS)


def test_inspect_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["inspect", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "group_expiry in s (default 86400)" in text
    assert f"heartbeat ages (default {config.DEFAULT_HEARTBEAT_S})" in text
