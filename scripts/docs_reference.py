"""A mkdocs hook: the API reference, one page per public module, written from ``__all__``.

Each page of the nav named ``reference/<module>.md`` (``reference/cqrskit.md``,
``reference/cqrskit.testing.md``, ...) is generated when the site is built:
the module's docstring, then one mkdocstrings entry per name of its
``__all__``, grouped by what the name is. A name that an earlier page of the
nav documents (``cqrskit.projections.Projection`` is ``cqrskit.Projection``)
gets a link to that entry instead of a second copy. The reference's index
gets the table of those pages. So a name added to an ``__all__`` has its
entry without anyone writing one, and after the build every page is checked
against its module's ``__all__``: a name with no entry, or whose entry shows
no docstring, fails the build.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic import BaseModel

_INDEX_MARKER = "<!-- reference-modules -->"
_PAGE = re.compile(r"^reference/(?P<module>cqrskit(?:\.\w+)*)\.md$")
#: The sections of the ``cqrskit`` page, in the order an event travels.
_PIPELINE = [
    "domain",
    "commands",
    "eventstore",
    "envelope",
    "relay",
    "projections",
    "queries",
    "errors",
    "settings",
    "doctor",
]
_TITLES = {"eventstore": "Event store", "doctor": "Service checks"}
_HEADING = re.compile(r'<h[2-6] id="(?P<id>cqrskit[\w.]*)" class="doc doc-heading">')
_BASES = re.compile(r'<p class="doc doc-class-bases">.*?</p>', re.S)
_KINDS = ("Classes", "Functions", "Constants and types")


@dataclass
class _Entry:
    name: str
    anchor: str  # the id of the entry that documents it, on this page or an earlier one
    kind: str
    model: bool = False  # a pydantic model
    section: str = ""


@dataclass
class _Page:
    module: str
    path: str
    own: list[_Entry] = field(default_factory=list)
    linked: list[_Entry] = field(default_factory=list)


_pages: list[_Page] = []


def _kind(value: object) -> str:
    if inspect.isclass(value):
        return "Classes"
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return "Functions"
    return "Constants and types"


def _section(package: ModuleType, name: str, value: object) -> str:
    """The submodule of ``cqrskit`` that ``name`` comes from, for the top page."""
    for sub in _PIPELINE:
        module = getattr(package, sub, None)
        if name in getattr(module, "__all__", ()) and getattr(module, name) is value:
            return sub
    return ""


def _summary(module: ModuleType) -> str:
    """The first line of a module's docstring, without the module's name before it."""
    first = (module.__doc__ or "").strip().partition("\n")[0]
    return first.removeprefix(f"{module.__name__}: ")


def _module_of(path: str) -> str:
    match = _PAGE.match(path)
    if match is None:
        raise PluginError(f"{path} is not reference/<module>.md")
    return match["module"]


def _reference_paths(nav: object) -> Iterator[str]:
    """Every ``reference/<module>.md`` the nav names, in its order."""
    if isinstance(nav, str):
        if _PAGE.match(nav):
            yield nav
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _reference_paths(value)
    elif isinstance(nav, list):
        for item in nav:
            yield from _reference_paths(item)


def _plan(nav: object) -> list[_Page]:
    documented: dict[int, str] = {}
    pages = []
    for path in _reference_paths(nav):
        name = _module_of(path)
        module = importlib.import_module(name)
        if not hasattr(module, "__all__"):
            raise PluginError(f"{path}: {name} has no __all__ to document")
        page = _Page(name, path)
        for member in module.__all__:
            value = getattr(module, member)
            anchor = documented.setdefault(id(value), f"{name}.{member}")
            model = inspect.isclass(value) and issubclass(value, BaseModel)
            entry = _Entry(member, anchor, _kind(value), model)
            if anchor == f"{name}.{member}":
                if name == "cqrskit":
                    entry.section = _section(module, member, value)
                page.own.append(entry)
            else:
                page.linked.append(entry)
        pages.append(page)
    return pages


def _entry(entry: _Entry) -> str:
    if not entry.model:
        return f"::: {entry.anchor}\n"
    # A model's fields are its signature, listed under Fields: BaseSettings'
    # own keyword arguments (sources, CLI parsing) are not this class's API.
    return f"::: {entry.anchor}\n    options:\n      merge_init_into_class: false\n"


def _entries(entries: list[_Entry]) -> list[str]:
    lines = []
    for kind in _KINDS:
        chosen = [e for e in entries if e.kind == kind]
        if chosen:
            lines += [f"## {kind}", ""]
            lines += [_entry(e) for e in chosen]
    return lines


def _markdown(page: _Page) -> str:
    module = importlib.import_module(page.module)
    lines = [
        f"# `{page.module}`",
        "",
        f"::: {page.module}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "",
    ]
    if page.linked:
        links = ", ".join(f"[`{e.name}`][{e.anchor}]" for e in page.linked)
        lines += [f"Also here, and documented where they are first exported: {links}.", ""]
    if page.module != "cqrskit":
        return "\n".join(lines + _entries(page.own))
    sections = [s for s in [*_PIPELINE, ""] if any(e.section == s for e in page.own)]
    for section in sections:
        title = _TITLES.get(section, section.capitalize()) if section else "Package"
        lines += [f"## {title}", ""]
        if section:
            lines += [f"From `cqrskit.{section}`. {_summary(getattr(module, section))}", ""]
        if section == "errors":
            lines += _error_tree(module)
        lines += [_entry(e) for e in page.own if e.section == section]
    return "\n".join(lines)


def _error_tree(package: ModuleType) -> list[str]:
    """The error tree as a Mermaid flowchart, drawn from the classes themselves."""
    errors = [getattr(package.errors, name) for name in package.errors.__all__]
    edges = []

    def below(base: type) -> None:
        for error in errors:
            if inspect.isclass(error) and base in error.__bases__:
                edges.append(f"    {base.__name__} --> {error.__name__}")
                below(error)

    below(package.CqrskitError)
    return ["```mermaid", "flowchart LR", *edges, "```", ""]


def _modules_table() -> str:
    """The table of the reference's pages, each with its module's summary line."""
    rows = ["| module | what it holds |", "|---|---|"]
    for page in _pages:
        summary = _summary(importlib.import_module(page.module))
        rows.append(f"| [`{page.module}`]({page.path.removeprefix('reference/')}) | {summary} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, *, page: Page, **_: object) -> str:
    """Put the table of the reference's pages in the reference's index."""
    if page.file.src_uri != "reference/index.md":
        return markdown
    if _INDEX_MARKER not in markdown:
        raise PluginError(f"reference/index.md has no {_INDEX_MARKER} for the table of modules")
    return markdown.replace(_INDEX_MARKER, _modules_table())


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add the generated pages the nav names."""
    _pages[:] = _plan(config.nav)
    for page in _pages:
        files.append(File.generated(config, page.path, content=_markdown(page)))
    return files


def _documented(html: str) -> dict[str, bool]:
    """Every entry of a built page: its id, and whether its docstring shows."""
    entries = {}
    headings = list(_HEADING.finditer(html))
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        body = html[heading.end() : following.start() if following else len(html)]
        body = body.partition('<div class="doc doc-contents')[2]
        # Not the docstring: the bases, griffe-pydantic's config and fields, the members.
        body = _BASES.sub("", body)
        body = re.split(r"<p>(?:Config|Fields):</p>|<div class=\"doc doc-children\">", body)[0]
        entries[heading["id"]] = bool(re.sub(r"<[^>]+>|\s", "", body.partition(">")[2]))
    return entries


def _missing(nav: object, site_dir: str) -> Iterator[str]:
    """Check the built pages against each module's ``__all__``, not against the plan."""
    built = {
        path: Path(site_dir, path.removesuffix(".md"), "index.html").read_text()
        for path in _reference_paths(nav)
    }
    entries = {
        anchor: shown for html in built.values() for anchor, shown in _documented(html).items()
    }
    for path, html in built.items():
        name = _module_of(path)
        links = set(re.findall(r'href="[^"]*#([\w.]+)"', html))
        for member in importlib.import_module(name).__all__:
            anchor = f"{name}.{member}"
            if anchor in entries:
                if not entries[anchor]:
                    yield f"{path}: {anchor} shows no docstring"
            elif not any(a.endswith(f".{member}") and entries.get(a) for a in links):
                yield f"{path}: {anchor} has no entry, nor a link to one"


def on_post_build(*, config: MkDocsConfig) -> None:
    """Fail the build when a public name has no entry with its docstring."""
    problems = list(_missing(config.nav, config.site_dir))
    if problems:
        raise PluginError("the API reference misses public names:\n  " + "\n  ".join(problems))
