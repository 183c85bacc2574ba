"""The API reference has a page for every module the README and the docs import from.

Each page lists every name of its module's ``__all__`` (scripts/docs_reference.py
writes them when the site is built, and fails the build if one is missing);
this test makes sure no module the docs send a reader to lacks its page.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = re.compile(r"reference/(cqrskit(?:\.\w+)*)\.md")
IMPORT = re.compile(
    r"^\s*(?:from\s+(cqrskit(?:\.\w+)*)\s+import|import\s+(cqrskit(?:\.\w+)*))", re.M
)
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::\w+)?"', re.M)
MENTION = re.compile(r"`(cqrskit(?:\.\w+)+)")
#: Modules documented elsewhere than in the API reference.
ELSEWHERE = {"cqrskit.cli": "the command line page (docs/cli.md)"}


def referenced() -> set[str]:
    return set(PAGE.findall((ROOT / "mkdocs.yml").read_text()))


def module_of(dotted: str) -> str:
    """The longest importable module that ``dotted`` starts with."""
    parts = dotted.split(".")
    while len(parts) > 1:
        name = ".".join(parts)
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            pass
        parts.pop()
    return "cqrskit"


def imported_in_docs() -> dict[str, str]:
    """Module -> a page that imports or names it, for every public cqrskit module the docs use."""
    found: dict[str, str] = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        code = [text] + [(ROOT / p).read_text() for p in SNIPPET.findall(text)]
        names = [a or b for chunk in code for a, b in IMPORT.findall(chunk)]
        names += [module_of(dotted) for dotted in MENTION.findall(text)]
        for name in names:
            if not any(part.startswith("_") for part in name.split(".")):
                found.setdefault(name, page.name)
    return found


def test_every_module_the_docs_import_has_a_reference_page() -> None:
    missing = {
        name: page
        for name, page in imported_in_docs().items()
        if name not in referenced() and name not in ELSEWHERE
    }
    assert missing == {}, "add reference/<module>.md to the nav of mkdocs.yml"


def test_the_scan_finds_the_modules_the_docs_use() -> None:
    # If the patterns broke, the test above would pass on nothing.
    assert {"cqrskit", "cqrskit.queries", "cqrskit.testing", "cqrskit.fastapi"} <= set(
        imported_in_docs()
    )
