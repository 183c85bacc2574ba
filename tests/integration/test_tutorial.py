"""docs/tutorial.md, run as a new user would: the wheel in a fresh virtual environment.

cqrskit's wheel is built from this checkout and installed in a new virtual
environment outside the repository; the tutorial's shell blocks then run
there, in order, as written: ``cqrskit new``, the new project's own tests,
``cqrskit services up``, ``db init``, the relay, a worker, commands and a
read-your-writes query. Only ``pip install cqrskit`` is pointed at the wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cqrskit import Settings
from examples.shop.demo import clean_up
from tests.integration.conftest import REPO_ROOT

TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"


def shell_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", TUTORIAL.read_text(), re.DOTALL)


def build_wheel(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder), "."],
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
    )
    (wheel,) = folder.glob("cqrskit-*.whl")
    return wheel


@pytest.mark.timeout(900)
def test_the_tutorial_runs_from_the_wheel_in_a_fresh_environment(
    postgres_up: None, kafka_up: None, elasticsearch_up: None, tmp_path: Path
) -> None:
    blocks = shell_blocks()
    assert len(blocks) == 3, "the tutorial should install, start the pipeline, then use it"
    assert "pip install cqrskit\n" in blocks[0]
    wheel = build_wheel(tmp_path / "wheels")
    blocks[0] = blocks[0].replace("pip install cqrskit\n", f"pip install --quiet {wheel}\n")
    blocks[0] = blocks[0].replace("pip install -e", "pip install --quiet -e")
    run = uuid.uuid4().hex[:6]
    isolation = {
        "CQRSKIT_POSTGRES_SCHEMA": f"tutorial_{run}",
        "CQRSKIT_TOPIC_PREFIX": f"tutorial-{run}",
        "CQRSKIT_INDEX_PREFIX": f"tutorial-{run}-",
        # The services this test run started: `services up` finds them its own.
        "CQRSKIT_SERVICES_DIR": str(REPO_ROOT / ".services"),
    }
    user = tmp_path / "user"
    user.mkdir()
    script = tmp_path / "tutorial.sh"
    # Background jobs get SIGTERM when the script ends, as `kill %1 %2` would.
    script.write_text(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + "\n".join(blocks)
    )
    # Nothing of this checkout's environment: not its virtualenv, not its path.
    repo_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != repo_bin)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        **isolation,
        "PATH": path,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    try:
        done = subprocess.run(
            ["bash", str(script)],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=840,
            check=False,
        )
    finally:
        overrides = {
            k.removeprefix("CQRSKIT_").lower(): v
            for k, v in isolation.items()
            if k != "CQRSKIT_SERVICES_DIR"
        }
        clean_up(Settings.load(**overrides))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert list(user.glob(".venv/lib/python*/site-packages/cqrskit/_services/kafka.sh"))
    assert re.search(r"\b9 passed\b", output), "the new project's own tests: " + output[-4000:]
    assert re.search(r"\[postgres\] up at", output), output[-4000:]
    assert "Books by Frank Herbert" in output
    assert re.search(r"Dune\s.*Frank Herbert\s.*False\s.*2", output), output[-4000:]
    assert re.search(r"on the shelf, matching 'dune':\s+\['Dune Messiah'\]", output)
    assert re.search(r"catalogue: compared 3 documents .* 0 drifted", output), output[-4000:]
