"""docs/tutorial.md, run as written: its shell blocks on the real services."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from cqrskit import Settings
from examples.shop.demo import clean_up
from tests.integration.conftest import REPO_ROOT

TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"


def shell_blocks_of_step_five() -> list[str]:
    step = TUTORIAL.read_text().split("## 5. Run it", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", step, re.DOTALL)


def test_the_tutorial_runs_as_written(
    postgres_up: None, kafka_up: None, elasticsearch_up: None, tmp_path: Path
) -> None:
    blocks = shell_blocks_of_step_five()
    assert len(blocks) == 2, "step 5 should start the pipeline, then use it"
    run = uuid.uuid4().hex[:6]
    isolation = {
        "CQRSKIT_POSTGRES_SCHEMA": f"tutorial_{run}",
        "CQRSKIT_TOPIC_PREFIX": f"tutorial-{run}",
        "CQRSKIT_INDEX_PREFIX": f"tutorial-{run}-",
    }
    script = tmp_path / "tutorial.sh"
    # Background jobs get SIGTERM when the script ends, as `kill %1 %2` would.
    script.write_text(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + "\n".join(blocks)
    )
    env = {
        **os.environ,
        **isolation,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        done = subprocess.run(
            ["bash", str(script)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        overrides = {k.removeprefix("CQRSKIT_").lower(): v for k, v in isolation.items()}
        clean_up(Settings.load(**overrides))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Books by Frank Herbert" in output
    assert re.search(r"Dune\s.*Frank Herbert\s.*False\s.*2", output), output[-4000:]
    assert "Dune Messiah" in output
    assert re.search(r"on the shelf, matching 'dune':\s+\['Dune Messiah'\]", output)
    assert re.search(r"catalogue: compared 3 documents .* 0 drifted", output), output[-4000:]
