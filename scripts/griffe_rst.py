"""A griffe extension: the reST inside cqrskit's Google-style docstrings, as Markdown.

The docstrings cross-reference with Sphinx roles (``:class:`Envelope```,
``:meth:`~cqrskit.CommandBus.dispatch```) and show code after a ``::``, as
Python's own tooling reads them. mkdocstrings renders Markdown, where a
role would show its colons and a literal block its ``::``. This extension
rewrites both when the API reference is built, so the sources keep one
convention: a role becomes a link to the object's entry (plain code where
the reference has none: the link is optional), a literal block or a
``.. code-block::`` a fenced block.
"""

from __future__ import annotations

import html
import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):`(?P<target>[^`]+)`")
_INDENTED = re.compile(r"^(?P<indent>\s+)\S")
_DIRECTIVE = re.compile(r"^\s*\.\. code(?:-block)?::\s*(?P<language>\w*)\s*$")


def _resolve(obj: griffe.Object | griffe.Alias, target: str) -> str | None:
    """The full path a role's target names in the scope of ``obj``, if any."""
    if target.startswith("cqrskit."):
        return target
    head, _, rest = target.partition(".")
    try:
        path = obj.resolve(head)
    except (griffe.NameResolutionError, griffe.AliasResolutionError, KeyError, ValueError):
        return None
    return f"{path}.{rest}" if rest else path


def _link(obj: griffe.Object | griffe.Alias, match: re.Match[str]) -> str:
    target = match["target"].strip()
    short = target.startswith("~")
    target = target.lstrip("~").removesuffix("()")
    title = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(obj, target)
    code = f"<code>{html.escape(title)}</code>"
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _literal_blocks(text: str) -> str:
    """``text::`` and its indented block become ``text:`` and a fenced block.

    So does a ``.. code-block::`` directive (docstrings of eventsourcing that
    cqrskit exports, like ``event``).
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        if directive is None and not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        language = directive["language"] if directive else "python"
        head = "" if directive else line.rstrip()[:-2].rstrip()
        if head:
            out.append(head + ":")
        base = len(line) - len(line.lstrip())
        i += 1
        block: list[str] = []
        while i < len(lines):
            current = lines[i]
            indented = _INDENTED.match(current)
            if current.strip() and not (indented and len(indented["indent"]) > base):
                break
            block.append(current)
            i += 1
        while block and not block[-1].strip():
            block.pop()
        while block and not block[0].strip():
            block.pop(0)
        if block:
            cut = min(len(b) - len(b.lstrip()) for b in block if b.strip())
            prefix = " " * base
            fence = [prefix + "```" + (language or "text"), *(prefix + b[cut:] for b in block)]
            out += ["", *fence, prefix + "```", ""]
    return "\n".join(out)


def _markdown(obj: griffe.Object | griffe.Alias, text: str) -> str:
    return _ROLE.sub(lambda match: _link(obj, match), _literal_blocks(text))


class ReSTToMarkdown(griffe.Extension):
    """Rewrite roles and literal blocks in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **_: object) -> None:
        """Walk the package once it is loaded, when every name resolves."""
        self._walk(pkg)

    def _walk(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member)  # type: ignore[arg-type]
