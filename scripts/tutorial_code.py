"""Write the files of ``cqrskit new library`` into docs/tutorial.md, in full.

The tutorial shows every file of the project inline, so that it reads
complete on any Markdown viewer; ``tests/unit/test_new_project.py`` fails when
a block differs from what ``cqrskit new`` writes. After changing the
templates in ``cqrskit/_project``, run ``python scripts/tutorial_code.py``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cqrskit.cli._new import render

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
#: A block of the tutorial that shows one file of the project.
BLOCK = re.compile(r'```(\w+) title="([^"]+)"\n.*?```\n', re.DOTALL)
LANGUAGES = {".py": "python", ".toml": "toml"}


def block(path: str, text: str) -> str:
    """The Markdown block showing ``path`` of the project."""
    return f'```{LANGUAGES[Path(path).suffix]} title="{path}"\n{text}```\n'


def main() -> None:
    """Rewrite every file block of the tutorial (or ``@@path`` line) from the templates."""
    files = render("library")
    text = TUTORIAL.read_text()
    text = BLOCK.sub(lambda m: block(m.group(2), files[m.group(2)]), text)
    text = re.sub(r"^@@(\S+)\n", lambda m: block(m.group(1), files[m.group(1)]), text, flags=re.M)
    TUTORIAL.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
