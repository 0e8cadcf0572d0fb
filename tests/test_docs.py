"""The docs stay tied to the code: settings, problem types and links."""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest

from idempotency.conf import DEFAULTS
from idempotency.problems import Problem

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
DEFAULT_LINE = re.compile(r"^- \*\*Default:\*\* `(.+)`$", re.MULTILINE)


def without_code(text: str) -> str:
    return FENCE.sub("", text)


def sections(text: str, level: int) -> dict[str, str]:
    """Heading text -> body, for the headings of exactly ``level``."""
    text = without_code(text)
    found = [m for m in HEADING.finditer(text) if len(m.group(1)) == level]
    return {
        match.group(2): text[match.end() : found[i + 1].start() if i + 1 < len(found) else None]
        for i, match in enumerate(found)
    }


def slugify(heading: str) -> str:
    """MkDocs' (Python-Markdown toc) anchor for a heading; GitHub's agrees for ours."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    return {slugify(m.group(2)) for m in HEADING.finditer(without_code(page.read_text()))}


def links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", without_code(page.read_text()))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def all_problems(cls: type[Problem] = Problem) -> list[type[Problem]]:
    found = []
    for subclass in cls.__subclasses__():
        if subclass.__module__.startswith("idempotency."):
            found.append(subclass)
        found.extend(all_problems(subclass))
    return found


SETTINGS_PAGE = (DOCS / "settings.md").read_text()
SETTINGS_SECTIONS = sections(SETTINGS_PAGE, level=2)
HTTP_PAGE = (DOCS / "http.md").read_text()


def test_every_setting_heading_is_a_setting():
    assert set(SETTINGS_SECTIONS) == set(DEFAULTS)


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_setting_is_documented_with_its_default(name):
    assert name in SETTINGS_SECTIONS, f"docs/settings.md has no '## {name}' heading"
    body = SETTINGS_SECTIONS[name]
    assert "**Type:**" in body, f"docs/settings.md: {name} states no type"
    stated = DEFAULT_LINE.findall(body)
    assert len(stated) == 1, f"docs/settings.md: {name} needs one '- **Default:** `...`' line"
    # The stated default is a Python expression: it must evaluate to DEFAULTS[name].
    value = eval(stated[0], {"__builtins__": {}, "timedelta": timedelta})
    default = DEFAULTS[name]
    if isinstance(default, tuple):
        value = tuple(value)
    assert value == default, f"docs/settings.md: {name} default {stated[0]} != {default!r}"


def test_problem_classes_are_found():
    assert len(all_problems()) >= 9


@pytest.mark.parametrize("problem", all_problems(), ids=lambda problem: problem.slug)
def test_problem_type_is_documented(problem):
    rows = [line for line in HTTP_PAGE.splitlines() if f"| `{problem.slug}` |" in line]
    assert rows, f"docs/http.md has no table row for `{problem.slug}`"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == str(problem.status), f"{problem.slug}: status {cells[1]}"
    assert cells[2] == problem.title, f"{problem.slug}: title {cells[2]!r}"
    if problem.retry_after is not None:
        assert f"Retry-After: {problem.retry_after}" in rows[0]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if SCHEME.match(target):
            continue  # https:, mailto:, tag: ...
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file():
            broken.append(f"{target} (no file {os.path.relpath(linked, ROOT)})")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no heading #{fragment})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"
