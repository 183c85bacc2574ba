"""``cqrskit new``: the project it writes, the repository's example, and the tutorial."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cqrskit.cli import main
from cqrskit.cli._new import render

ROOT = Path(__file__).resolve().parents[2]
#: The project's files the repository keeps as its example, and where.
EXAMPLE = {
    **{
        f"library/{module}": ROOT / "examples" / "library" / module
        for module in ("__init__.py", "domain.py", "app.py", "views.py", "queries.py")
    },
    "library/api.py": ROOT / "examples" / "library" / "api.py",
    "library/try_it.py": ROOT / "examples" / "library" / "try_it.py",
    "tests/test_library.py": ROOT / "tests" / "unit" / "examples" / "test_library.py",
    "tests/test_api.py": ROOT / "tests" / "unit" / "examples" / "test_library_api.py",
    "docker-compose.yml": ROOT / "docker-compose.yml",
}


def without_snippet_markers(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if "# --8<--" not in line)


def test_the_example_library_is_what_cqrskit_new_writes() -> None:
    files = render("library", package="examples.library")
    for path, kept in EXAMPLE.items():
        assert without_snippet_markers(kept.read_text()) == files[path], (
            f"{kept.relative_to(ROOT)} differs from {path} of `cqrskit new library`: "
            "change the template in cqrskit/_project and render the example again"
        )


def test_the_tutorial_shows_every_file_of_the_project_as_written() -> None:
    files = render("library")
    tutorial = (ROOT / "docs" / "tutorial.md").read_text()
    shown = dict(re.findall(r'```\w+ title="([^"]+)"\n(.*?)```\n', tutorial, re.DOTALL))
    python_files = {p for p in files if p.endswith(".py") and not p.endswith("__init__.py")}
    assert python_files <= set(shown), f"not in the tutorial: {python_files - set(shown)}"
    for path, text in shown.items():
        assert text == files[path], f"{path} in docs/tutorial.md: run scripts/tutorial_code.py"


def test_a_new_project_passes_its_own_tests(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new", "shelf", "--directory", str(tmp_path / "shelf")])
    assert result.exit_code == 0, result.output
    project = tmp_path / "shelf"
    pyproject = (project / "pyproject.toml").read_text()
    assert 'app = "shelf.app:ShelfApp"' in pyproject
    assert 'projections = "shelf.views"' in pyproject
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\b9 passed\b", done.stdout), done.stdout[-2000:]


def test_a_name_that_is_not_a_package_is_one_line_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new", "My-Shop", "--directory", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "'My-Shop' is not a Python package name" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_a_folder_that_is_not_empty_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["new", "shelf", "--directory", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path} is not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
