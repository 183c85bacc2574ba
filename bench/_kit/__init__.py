"""The plumbing every benchmark of ``bench/`` shares; nothing here is timed.

- :mod:`_kit.measure`: rounds, medians and spreads, ratios to a same-run
  baseline, loops timed in a thread, time splits and what limits a run;
- :mod:`_kit.report`: the console, tables, the JSON document, charts;
- :mod:`_kit.machine`: the machine, the services and the settings a result records;
- :mod:`_kit.stack`: schemas, orders, topics and clean-up on the real services;
- :mod:`_kit.harness`: the relay and workers as processes (on ``tests/processes.py``);
- :mod:`_kit.cli`: the options and the frame of every script's ``main``;
- :mod:`_kit.product`: the product's names the benchmarks use, in one place to re-point.

The scripts run as ``python bench/<script>.py``, so ``bench/`` is on their
path; importing this package puts the repository root there too, for the
example shop (``examples``), its projections and the shared process harness.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench" / "results"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
