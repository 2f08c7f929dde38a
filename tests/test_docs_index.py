"""Every page of docs/ is listed in docs/README.md (the index) and in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(path.name for path in (ROOT / "docs").glob("*.md") if path.name != "README.md")


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_index_lists_the_page(page: str) -> None:
    assert f"]({page})" in (ROOT / "docs" / "README.md").read_text()


@pytest.mark.parametrize("page", [*PAGES, "README.md"])
def test_the_readme_documentation_list_names_the_page(page: str) -> None:
    section = (ROOT / "README.md").read_text().split("## Documentation", 1)[1]
    assert f"](docs/{page})" in section.split("\n## ", 1)[0]


def test_every_link_of_the_index_leads_to_a_file() -> None:
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "docs" / "README.md").read_text())
    assert len(links) >= len(PAGES)
    for link in links:
        assert (ROOT / "docs" / link).is_file(), link
