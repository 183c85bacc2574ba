"""cqrskit commands run as processes: started, signalled, stopped, their memory read.

The one process harness of the repository's drivers: the fault suite
(``tests/chaos``) kills and pauses the relay and the workers with it, and
the benchmarks (``bench/``) run them with it to read their memory and their
metrics. It lives under ``tests/`` because both import ``tests`` already
(the fault suite is ``python -m tests.chaos.run``; the benchmarks put the
repository root on their path for ``examples``), and it is not part of the
installed package: it starts this checkout's ``cqrskit.cli`` with this
interpreter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Poll ``condition`` until it holds; the seconds it took.

    Raises:
        TimeoutError: it did not hold within ``timeout`` seconds.
    """
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def cli_env(tag: str, app: str = "examples.shop:ShopApp", **settings: Any) -> dict[str, str]:
    """The environment of one run's processes: its own schema, topics and indices.

    ``tag`` names them (schema ``tag`` with ``_`` for ``-``, topics
    ``<tag>.*``, indices ``<tag>-*``), like ``examples/shop/demo.py``;
    ``settings`` become further ``CQRSKIT_<NAME>`` variables.
    """
    return {
        **os.environ,
        "CQRSKIT_APP": app,
        "CQRSKIT_PROJECTIONS": "projections",
        "CQRSKIT_POSTGRES_SCHEMA": tag.replace("-", "_"),
        "CQRSKIT_TOPIC_PREFIX": tag,
        "CQRSKIT_INDEX_PREFIX": f"{tag}-",
        **{f"CQRSKIT_{name.upper()}": str(value) for name, value in settings.items()},
    }


def cli_run(
    args: Sequence[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``cqrskit <args>`` to its end, whatever its exit status; what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run ``cqrskit <args>`` to its end; what it printed on stdout.

    Raises:
        subprocess.CalledProcessError: it exited with an error.
    """
    done = cli_run(args, env, timeout)
    done.check_returncode()
    return done.stdout


def proc_status_kb(pid: int, *fields: str) -> dict[str, int]:
    """Fields of ``/proc/<pid>/status`` given in kB (``VmRSS``, ``VmHWM``, ...); {} if gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            found[name] = int(value.split()[0])
    return found


class RssSampler:
    """Samples the resident memory of one process from a thread, every ``interval`` s.

    ``VmRSS`` is the memory resident now; ``VmHWM`` the kernel's own peak of it
    since the process started, so a peak between two samples is not missed.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.started = time.monotonic()
        self.timeline: list[tuple[float, int]] = []
        self.peak_hwm_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Take one sample now."""
        found = proc_status_kb(self.pid, "VmRSS", "VmHWM")
        if "VmRSS" in found:  # not there while the process is starting or gone
            self.timeline.append((time.monotonic() - self.started, found["VmRSS"]))
            self.peak_hwm_kb = max(self.peak_hwm_kb, found.get("VmHWM", 0))

    def stop(self) -> dict[str, Any]:
        """Stop sampling (take a last sample first); the figures in MB (10^6 bytes)."""
        self.sample()
        self._stop.set()
        self._thread.join(timeout=5)
        rss = [kb * 1024 / 1e6 for _, kb in self.timeline]
        step = max(1, len(self.timeline) // 200)
        thinned = [*self.timeline[::step], *self.timeline[-1:]] if self.timeline else []
        return {
            "peak_rss_mb": self.peak_hwm_kb * 1024 / 1e6,
            "max_sampled_rss_mb": max(rss, default=0),
            "first_rss_mb": rss[0] if rss else None,
            "last_rss_mb": rss[-1] if rss else None,
            "samples": len(rss),
            "interval_seconds": self.interval,
            "timeline_mb": [(round(t, 2), round(kb * 1024 / 1e6, 1)) for t, kb in thinned],
        }


@dataclass
class CliProcess:
    """One ``cqrskit <args>`` process, its output appended to ``log``; restartable."""

    args: list[str]
    env: dict[str, str]
    log: Path
    name: str = ""
    #: Sample its resident memory from its start (see :meth:`memory`).
    sample_memory: bool = False
    proc: subprocess.Popen[bytes] | None = None
    rss: RssSampler | None = field(default=None, repr=False)
    metrics_url: str | None = None

    def start(self) -> None:
        """Start it (again, after a kill: the log is appended to)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cqrskit.cli", *self.args],
                env=self.env,
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if self.sample_memory:
            self.rss = RssSampler(self.proc.pid)

    def running(self) -> subprocess.Popen[bytes]:
        """The process; raises if it was never started."""
        if self.proc is None:
            raise RuntimeError(f"{self.name or self.args} was never started")
        return self.proc

    def kill9(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        self.running().send_signal(signal.SIGKILL)
        self.running().wait(timeout=30)

    def signal(self, number: int) -> None:
        """Send it a signal (SIGSTOP, SIGCONT, ...)."""
        self.running().send_signal(number)

    def instance_suffix(self) -> str:
        """The end of the instance name (host:pid) this process reports as a relay."""
        return f":{self.running().pid}"

    def output(self, last: int = 4000) -> str:
        """The end of what the process printed."""
        return self.log.read_text(errors="replace")[-last:]

    def wait_for_metrics(self, timeout: float = 60) -> str:
        """The URL of its Prometheus endpoint, read from the line it prints at start."""

        def announced() -> bool:
            if self.running().poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            found = re.search(r"metrics at http://([\d.:]+)/metrics", self.output(20_000))
            if found:
                self.metrics_url = f"http://{found.group(1)}/metrics"
            return found is not None

        wait_until(announced, timeout, f"{self.name} to serve its metrics")
        assert self.metrics_url is not None
        return self.metrics_url

    def memory(self) -> dict[str, Any]:
        """Stop sampling its memory; what :meth:`RssSampler.stop` gives ({} if not sampled)."""
        return self.rss.stop() if self.rss is not None else {}

    def stop(self, timeout: float = 120) -> int | None:
        """SIGCONT and SIGTERM, wait (SIGKILL after ``timeout``); its exit code.

        None if it was not running. A paused process cannot act on SIGTERM,
        hence the SIGCONT first.
        """
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)
