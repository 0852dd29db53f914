"""The README and the pages under ``docs/`` stay in step with what they quote: every results
table is what ``benchmarks/readme_tables.py`` renders from ``benchmarks/results/*.json``, the
README's contents list links every section, and every relative link points at a file and
heading that exist."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
tables = importlib.import_module("readme_tables")  # benchmarks/readme_tables.py

README = (ROOT / "README.md").read_text()
DOCUMENTS = tables.documents()


def test_the_docs_pages_are_rendered() -> None:
    names = {d.relative_to(ROOT).as_posix() for d in DOCUMENTS}
    assert {"README.md", "docs/explainer-benchmarks.md"} <= names


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.name)
def test_every_results_table_is_the_one_its_json_renders(doc: Path) -> None:
    text = doc.read_text()
    markers = re.findall(r"<!-- results:([\w-]+) -->", text)
    assert set(markers) <= set(tables.TABLES), "a marker without a renderer"
    for name in markers:
        for source in tables.SOURCES.get(name, (name,)):
            assert (ROOT / "benchmarks" / "results" / f"{source}.json").is_file(), source
    rendered = tables.render(text)
    stale = [
        name
        for name in markers
        if _block(rendered, name) != _block(text, name)  # typed by hand, or the JSON moved
    ]
    assert not stale, f"run `python benchmarks/readme_tables.py`: stale tables {stale}"


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- results:{name} -->", 1)[1].split(f"<!-- /results:{name} -->", 1)[0]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(text: str) -> list[str]:
    """The markdown headings outside fenced code blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.findall(r"^#{1,6} (.+)$", prose, re.M)


def test_the_contents_list_links_every_section() -> None:
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    body = README.split("## Status", 1)[1]
    headings = ["Status"] + re.findall(r"^#{2,3} (.+)$", body, re.M)
    assert sorted(links) == sorted(_anchor(h) for h in headings)


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.name)
def test_relative_links_point_at_existing_files_and_headings(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            if anchor not in {_anchor(h) for h in _headings(file.read_text())}:
                broken.append(target)
    assert not broken, f"{doc.name}: links to missing files or headings: {broken}"
