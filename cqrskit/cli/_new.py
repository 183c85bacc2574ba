"""``cqrskit new NAME``: a small working project of one's own.

The project is rendered from the templates in ``cqrskit/_project``: a
``pyproject.toml`` with its ``[tool.cqrskit]`` table, a package with a domain,
commands, a projection, queries and an HTTP API, tests on the testing kit,
and a docker-compose file. Its sample domain is the tutorial's library, so
the tutorial walks through exactly what ``cqrskit new`` writes.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

import click

from cqrskit._version import __version__

__all__ = ["new", "render"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _files(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _files(entry, f"{prefix}{entry.name}/")
        elif not entry.name.endswith((".pyc", ".pyo")):
            found.append((f"{prefix}{entry.name}", entry))
    return found


def _target(template: str, name: str) -> str:
    path = template.removesuffix(".tmpl")
    if path == "gitignore":
        return ".gitignore"
    if path.startswith("package/"):
        return f"{name}/{path.removeprefix('package/')}"
    if path == "tests/test_domain.py":
        return f"tests/test_{name}.py"
    return path


def render(name: str, package: str | None = None) -> dict[str, str]:
    """The files of project ``name``: relative path -> text.

    ``package`` is the import path of the project's package (``name`` by
    default); cqrskit's own repository renders it as ``examples.library`` to
    check that its example is what ``cqrskit new library`` writes.
    """
    values = {
        "name": name,
        "Name": "".join(part.capitalize() for part in name.split("_")),
        "package": package or name,
        "version": __version__,
    }
    rendered = {}
    for template, entry in _files(resources.files("cqrskit") / "_project"):
        text = entry.read_text(encoding="utf-8")
        if template.endswith(".tmpl"):
            text = Template(text).substitute(values)
        rendered[_target(template, name)] = text
    return rendered


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise click.BadParameter(
            f"{name!r} is not a Python package name: use lower-case letters, digits "
            "and underscores, starting with a letter (for example 'library')",
            param_hint="NAME",
        )


@click.command()
@click.argument("name")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the project (default: ./NAME).",
)
def new(name: str, directory: Path | None) -> None:
    """Write a small working project NAME: domain, commands, a projection, queries, tests.

    It passes its own tests at once (``pip install -e '.[dev]' && pytest``),
    and runs on the local services (``cqrskit services up``). Refuses to write
    into a folder that is not empty.
    """
    _check_name(name)
    root = directory if directory is not None else Path(name)
    if root.exists() and any(root.iterdir()):
        raise click.ClickException(f"{root} is not empty; choose a new folder with --directory")
    for path, text in render(name).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    click.echo(f"wrote project {name!r} in {root}; next:")
    click.echo(f"  cd {root} && pip install -e '.[dev]' && pytest")
    click.echo("  cqrskit services up && cqrskit db init")
