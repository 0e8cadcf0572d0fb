"""The docs stay tied to the code: settings, problem types and links."""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest

from idempotency.checks import LEDGER, RETIRED
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


CHECKS_PAGE = (DOCS / "checks.md").read_text()
CHECKS_SECTIONS = sections(CHECKS_PAGE, level=2)
CHECKS_SOURCE = "\n".join(
    path.read_text() for path in sorted((ROOT / "idempotency" / "checks").glob("*.py"))
)
CHECK_ID = re.compile(r"\bidempotency\.[EW]\d{3}\b")


def test_check_ids_in_the_code_are_in_the_ledger_or_retired():
    assert set(CHECK_ID.findall(CHECKS_SOURCE)) == set(LEDGER) | RETIRED
    assert not set(LEDGER) & RETIRED, "a retired check id is never reused"


def test_each_check_id_is_emitted_for_one_problem_only():
    # One ledger entry plus one call site (a check's message, or one outcome
    # of the rules table): a second call site would be a second problem under
    # the same id. A retired id is named once, in RETIRED, and emitted nowhere.
    counts = {check_id: CHECKS_SOURCE.count(f'"{check_id}"') for check_id in {*LEDGER, *RETIRED}}
    assert counts == {**dict.fromkeys(LEDGER, 2), **dict.fromkeys(RETIRED, 1)}
    assert len(set(LEDGER.values())) == len(LEDGER), "two ids describe the same problem"


def test_new_check_ids_take_the_next_free_numbers():
    # Ids are never reused, so the numbers of each level run from 1 without gaps.
    for level in "EW":
        numbers = sorted(int(i[-3:]) for i in set(LEDGER) | RETIRED if i[12] == level)
        assert numbers == list(range(1, len(numbers) + 1)), f"{level} ids: {numbers}"


def test_every_check_heading_is_a_check_id():
    assert set(CHECKS_SECTIONS) == set(LEDGER) | RETIRED


def test_every_check_id_is_in_the_table_of_the_checks_page():
    for check_id in set(LEDGER) | RETIRED:
        short = check_id.removeprefix("idempotency.")
        anchor = check_id.replace(".", "").lower()
        assert f"| [{short}](#{anchor}) |" in CHECKS_PAGE, (
            f"docs/checks.md: {short} not in the table"
        )


@pytest.mark.parametrize("check_id", sorted(LEDGER))
def test_check_id_is_documented(check_id):
    assert check_id in CHECKS_SECTIONS, f"docs/checks.md has no '## {check_id}' heading"
    body = CHECKS_SECTIONS[check_id]
    level = "Error" if ".E" in check_id else "Warning"
    assert f"- **Level:** {level}" in body, f"docs/checks.md: {check_id} is not marked {level}"
    for part in ("**Trigger:**", "**Message:**", "**Hint:**", "**Fix:**"):
        assert part in body, f"docs/checks.md: {check_id} has no {part}"


@pytest.mark.parametrize("check_id", sorted(RETIRED))
def test_retired_check_id_is_documented_as_retired(check_id):
    body = CHECKS_SECTIONS[check_id]
    assert "- **Retired:**" in body, f"docs/checks.md: {check_id} does not say it is retired"


NAV_ENTRY = re.compile(r"^\s*-\s+[^:\n]+:\s*(\S+\.md)\s*$", re.MULTILINE)


def test_mkdocs_nav_lists_every_page_once_and_only_pages_that_exist():
    # `mkdocs build --strict` fails on the same problems; this catches them
    # where the docs build does not run.
    nav = NAV_ENTRY.findall((ROOT / "mkdocs.yml").read_text())
    pages = sorted(page.name for page in DOCS.glob("*.md"))
    assert sorted(nav) == pages, f"mkdocs.yml nav {sorted(nav)} != docs/ {pages}"
