"""End to end in a real browser: the chat example on two daphne servers and a worker.

Headless Chromium (Debian's ``chromium`` package, never a downloaded build) driven by
Playwright opens one page on each server. Without a browser or Playwright the test is
skipped, except under CI or ``make test`` (``CI`` / ``ASGI_REDIS_REQUIRE_REDIS``), where
it fails. ``make test`` on a machine where it cannot install chromium (no root, no apt-get)
sets ``ASGI_REDIS_SKIP_BROWSER`` to the reason and how to enable the test: then it is skipped
with that message, except under CI. ``ASGI_REDIS_SCREENSHOT=docs/demo.png`` also writes the
screenshot there.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from asgi_redis.cli import demo_chat
from tests.conftest import redis_required

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 560, "height": 520}
TIMEOUT_MS = 10_000


def skipped_by_make_test() -> str:
    """The reason ``make test`` gave for skipping this test ("" to run it; never under CI)."""
    if os.environ.get("CI"):
        return ""
    return os.environ.get("ASGI_REDIS_SKIP_BROWSER", "")


def unavailable(reason: str) -> NoReturn:
    """Fail (under CI or make test) or skip (elsewhere) because the browser cannot run."""
    if redis_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright."""
    if reason := skipped_by_make_test():
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is missing: pip install -e '.[test]' (or run make test)")
    executable = shutil.which("chromium")
    if executable is None:
        unavailable("chromium is missing: apt-get install -y chromium (or run make test)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def open_room(browser: Any, url: str, name: str) -> Any:
    """A page on ``url`` whose websocket is connected, with ``name`` as the chat name."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("body[data-ready=yes]")
    page.fill("#name", name)
    return page


def say(page: Any, text: str) -> None:
    """Type a chat line and press Enter, as a user does."""
    page.fill("#text", text)
    page.press("#text", "Enter")


def expect_line(page: Any, kind: str, text: str) -> None:
    """Wait until the page's log shows a line of ``kind`` containing ``text``."""
    from playwright.sync_api import expect

    expect(page.locator(f"#log li.{kind}", has_text=text)).to_have_count(1, timeout=TIMEOUT_MS)


def side_by_side(browser: Any, pages: list[tuple[str, Any]], path: Path) -> None:
    """Save one screenshot showing each page, captioned, next to each other."""
    cells = []
    for caption, page in pages:
        data = base64.b64encode(page.screenshot()).decode()
        cells.append(
            f'<figure><figcaption>{caption}</figcaption><img src="data:image/png;base64,{data}">'
            "</figure>"
        )
    style = (
        "body{margin:0;display:flex;gap:12px;padding:12px;background:#c9ced8;"
        "font:600 15px system-ui,sans-serif}figure{margin:0}figcaption{padding:0 0 6px}"
        "img{display:block;border:1px solid #8a91a2}"
    )
    width = len(pages) * (VIEWPORT["width"] + 14) + 12
    sheet = browser.new_page(viewport={"width": width, "height": VIEWPORT["height"] + 50})
    sheet.set_content(f"<style>{style}</style>{''.join(cells)}")
    sheet.screenshot(path=str(path), full_page=True)
    sheet.close()


def test_chat_across_two_servers(browser: Any, redis_url: str, tmp_path: Path) -> None:
    """Type on server A's page, read on B's; a view broadcast and a worker shout reach both."""
    with demo_chat.chat_stack(redis_url, tmp_path, servers=2, workers=1) as stack:
        url_a, url_b = stack.urls
        alice, bob = open_room(browser, url_a, "alice"), open_room(browser, url_b, "bob")

        say(alice, "hello from server A")
        expect_line(bob, "chat", "hello from server A")
        say(bob, "hi alice, this is B")
        expect_line(alice, "chat", "hi alice, this is B")

        bob.fill("#announce-text", "deploy at 5 pm")
        bob.click("#announce-form button")
        for page in (alice, bob):
            expect_line(page, "announce", "deploy at 5 pm")

        say(alice, "/shout coffee is ready")
        for page in (alice, bob):
            expect_line(page, "shout", "alice: COFFEE IS READY")

        screenshot = tmp_path / "demo.png"
        side_by_side(
            browser, [(f"server A: {url_a}", alice), (f"server B: {url_b}", bob)], screenshot
        )
        assert screenshot.stat().st_size > 10_000
        if target := os.environ.get("ASGI_REDIS_SCREENSHOT"):
            shutil.copyfile(screenshot, target)
        assert not stack.dead()
