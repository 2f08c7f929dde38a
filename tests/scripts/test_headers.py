"""The fixed header of every Lua script agrees with its body, and bodies avoid banned commands.

Header shape (see the style guide): first line ``--[[ NAME: summary``, then one line per
``KEYS[..]`` / ``ARGV[..]`` slot, a ``Returns`` line and a ``Cost`` line, closed by ``]]``.
Variadic scripts declare slots as expressions of ``i`` (``KEYS[2i-1]``, ``ARGV[1+i]``) or
``...`` for trailing pairs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib import resources

import pytest

from asgi_redis import scripts

ARRAYS = ("KEYS", "ARGV")
# Commands that scan the keyspace, block, or make a script wait on something else.
BANNED_COMMANDS = frozenset(
    {
        "KEYS", "SCAN", "HSCAN", "SSCAN", "ZSCAN",
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "XREAD", "XREADGROUP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
    }
)  # fmt: skip
CALL = re.compile(r"redis\.p?call\(\s*([^,)]*)")
LITERAL_COMMAND = re.compile(r"""^(['"])([A-Za-z]+)\1$""")
HEADER_SLOT = re.compile(r"^\s*(KEYS|ARGV)\[([^\]]+)\]", re.MULTILINE)
VARIADIC_TRIES = range(1, 33)


def lua_files() -> dict[str, str]:
    """Every ``lua/*.lua`` file shipped in the package, by file name."""
    folder = resources.files("asgi_redis").joinpath("lua")
    return {
        entry.name: entry.read_text("utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    }


FILES = lua_files()
SCRIPT_FILES = sorted(name for name in FILES if not name.startswith("_"))


@dataclass(frozen=True)
class Parsed:
    """A script split into its header block and its body."""

    first_line: str
    header: str
    body: str


def parse(text: str) -> Parsed:
    """Split ``text`` at the end of its leading ``--[[ ... ]]`` block."""
    assert text.startswith("--[["), "a script must open with its --[[ header block"
    end = text.index("]]")
    return Parsed(text.splitlines()[0], text[: end + 2], text[end + 2 :])


def strip_comments(body: str) -> str:
    """Drop ``--`` line comments, so prose never counts as code."""
    return "\n".join(line.split("--", 1)[0] for line in body.splitlines())


def subscripts(code: str, array: str) -> list[str]:
    """Every index expression of ``array[...]`` in ``code`` (nested brackets allowed)."""
    found = []
    for match in re.finditer(rf"\b{array}\[", code):
        depth, pos = 1, match.end()
        while depth:
            depth += {"[": 1, "]": -1}.get(code[pos], 0)
            pos += 1
        found.append(code[match.end() : pos - 1])
    return found


def normalize(index: str) -> str:
    """``2 * i - 1`` and ``2i-1`` both become ``2*i-1``."""
    return re.sub(r"(\d)i", r"\1*i", index.replace(" ", ""))


def eval_in_i(index: str, i: int) -> int | None:
    """Value of an index expression of ``i`` (digits, ``i``, + - *), None if not one."""
    if not re.fullmatch(r"[0-9i+\-*]+", index):
        return None

    def walk(node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id == "i":
            return i
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
            return ops[type(node.op)]
        raise ValueError(index)

    return walk(ast.parse(index, mode="eval").body)


def declared(header: str, array: str) -> tuple[set[int], set[str]]:
    """The literal slots and the variadic forms the header declares for ``array``."""
    literal: set[int] = set()
    forms: set[str] = set()
    for name, index in HEADER_SLOT.findall(header):
        if name != array:
            continue
        if index.strip().isdigit():
            literal.add(int(index))
        else:
            forms.add(normalize(index))
    return literal, forms


def covers(literal: set[int], forms: set[str], used: str) -> bool:
    """Whether an index used in a body is covered by the declared slots."""
    index = normalize(used)
    if index.isdigit():
        values = {eval_in_i(form, i) for form in forms for i in VARIADIC_TRIES}
        return int(index) in literal | values
    if eval_in_i(index, 1) is not None:
        return index in forms
    # Any other expression (an index read from ARGV, a loop position): only a variadic
    # script, one that declares a non-literal slot, may use it.
    return bool(forms)


@pytest.mark.parametrize("file_name", SCRIPT_FILES)
def test_first_line_names_the_script(file_name: str) -> None:
    first = parse(FILES[file_name]).first_line
    match = re.fullmatch(r"--\[\[ ([a-z_]+): \S.*", first)
    assert match, f"{file_name}: first line {first!r} is not '--[[ NAME: summary'"
    assert match.group(1) == file_name.removesuffix(".lua")


@pytest.mark.parametrize("file_name", SCRIPT_FILES)
def test_header_has_returns_and_cost(file_name: str) -> None:
    header = parse(FILES[file_name]).header
    for word in ("Returns", "Cost"):
        assert re.search(rf"^\s+{word}\s+\S", header, re.MULTILINE), f"{file_name}: no {word}"


@pytest.mark.parametrize("file_name", SCRIPT_FILES)
@pytest.mark.parametrize("array", ARRAYS)
def test_every_slot_used_is_declared(file_name: str, array: str) -> None:
    parsed = parse(FILES[file_name])
    literal, forms = declared(parsed.header, array)
    for used in subscripts(strip_comments(parsed.body), array):
        assert covers(literal, forms, used), f"{file_name}: {array}[{used}] not in header"


@pytest.mark.parametrize("file_name", SCRIPT_FILES)
@pytest.mark.parametrize("array", ARRAYS)
def test_every_literal_slot_declared_is_used_and_contiguous(file_name: str, array: str) -> None:
    parsed = parse(FILES[file_name])
    literal, _ = declared(parsed.header, array)
    used = {normalize(index) for index in subscripts(strip_comments(parsed.body), array)}
    assert literal == set(range(1, len(literal) + 1)), f"{file_name}: {array} slots have gaps"
    unused = {slot for slot in literal if str(slot) not in used}
    assert not unused, f"{file_name}: {array} slots {sorted(unused)} declared but never read"


def test_helpers_open_with_a_comment_block() -> None:
    helpers = [name for name in FILES if name.startswith("_")]
    assert helpers
    for name in helpers:
        assert FILES[name].startswith("--[["), name


def test_every_script_file_is_loaded() -> None:
    assert sorted(scripts.SCRIPTS) == [name.removesuffix(".lua") for name in SCRIPT_FILES]


@pytest.mark.parametrize("file_name", sorted(FILES))
def test_no_keyspace_scans_or_blocking_commands(file_name: str) -> None:
    code = strip_comments(FILES[file_name])
    commands = CALL.findall(code)
    assert commands or file_name.startswith("_"), f"{file_name}: no redis.call found"
    for argument in commands:
        match = LITERAL_COMMAND.match(argument.strip())
        assert match, f"{file_name}: command name {argument!r} is not a string literal"
        assert match.group(2).upper() not in BANNED_COMMANDS, f"{file_name}: {argument}"


def returned_codes(file_name: str) -> dict[str, int]:
    """The ``Returns  1 word | 0 word`` codes of a script header, by their first word."""
    line = next(line for line in parse(FILES[file_name]).header.splitlines() if "Returns" in line)
    codes = re.findall(r"(-?\d+)\s+(\w+)", line.split("Returns", 1)[1])
    return {word: int(code) for code, word in codes}


def test_send_return_codes_match_errors_module() -> None:
    from asgi_redis import errors

    assert returned_codes("send.lua") == {"queued": errors.SEND_QUEUED, "full": errors.SEND_FULL}
