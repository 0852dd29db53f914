"""The README stays in step with what it quotes: every results table is what
``benchmarks/readme_tables.py`` renders from ``benchmarks/results/*.json``, and the contents
list links every section."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
tables = importlib.import_module("readme_tables")  # benchmarks/readme_tables.py

README = (ROOT / "README.md").read_text()


def test_every_results_table_is_the_one_its_json_renders() -> None:
    markers = re.findall(r"<!-- results:([\w-]+) -->", README)
    assert set(markers) <= set(tables.TABLES), "a marker without a renderer"
    for name in markers:
        for source in tables.SOURCES.get(name, (name,)):
            assert (ROOT / "benchmarks" / "results" / f"{source}.json").is_file(), source
    rendered = tables.render(README)
    stale = [
        name
        for name in markers
        if _block(rendered, name) != _block(README, name)  # typed by hand, or the JSON moved
    ]
    assert not stale, f"run `python benchmarks/readme_tables.py`: stale tables {stale}"


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- results:{name} -->", 1)[1].split(f"<!-- /results:{name} -->", 1)[0]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_list_links_every_section() -> None:
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    body = README.split("## Status", 1)[1]
    headings = ["Status"] + re.findall(r"^#{2,3} (.+)$", body, re.M)
    assert sorted(links) == sorted(_anchor(h) for h in headings)
