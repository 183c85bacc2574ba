"""A mkdocs hook: the CLI reference shows a flag's default as ``false``, not click's sentinel.

click 8.2 marks "no default given" with a sentinel, which mkdocs-click 0.9
prints as ``Sentinel.UNSET``. A boolean flag without a default is off; any
other option without one has none. mkdocs-click writes its tables while
the Markdown is converted, so the hook mends the page's HTML.
"""

from __future__ import annotations

import re
from typing import Any

_UNSET = "<td><code>Sentinel.UNSET</code></td>"
_FLAG = re.compile(r"(<td>boolean</td>\s*<td>(?:(?!</td>).)*</td>\s*)" + re.escape(_UNSET), re.S)


def on_page_content(html: str, **_: Any) -> str:  # noqa: ANN401
    """Replace each sentinel default in the option tables."""
    html = _FLAG.sub(r"\1<td><code>false</code></td>", html)
    return html.replace(_UNSET, "<td>none</td>")
