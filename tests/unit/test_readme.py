"""The README's Python examples run as written."""

import re
import sys
import types
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "the README has no Python example"
    for number, block in enumerate(blocks):
        # A real module, because event classes are found again by module name.
        module = types.ModuleType(f"readme_example_{number}")
        sys.modules[module.__name__] = module
        try:
            exec(compile(block, str(README), "exec"), module.__dict__)
        finally:
            del sys.modules[module.__name__]
