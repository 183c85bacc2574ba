"""The saga tests run on the projections' pipeline fixture (store, relay, topics)."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline, pipeline

__all__ = ["Runner", "pipeline"]


class Runner:
    """``cqrskit sagas run <saga>`` as a process that can be killed."""

    def __init__(
        self,
        pipeline: Pipeline,
        sagas: str = "tests.integration.sagas.quick",
        saga: str = "order_workflow",
        env: dict[str, str] | None = None,
    ):
        self.pipeline = pipeline
        self.sagas = sagas
        self.saga = saga
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = pipeline.tmp / f"saga-{saga}.log"

    def start(self) -> None:
        env = {**self.pipeline.env(), "CQRSKIT_SAGAS": self.sagas, **self.env}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cqrskit.cli", "sagas", "run", self.saga],
                env=env,
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")
