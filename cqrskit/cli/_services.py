"""``cqrskit services``: the local PostgreSQL, Kafka and Elasticsearch, no Docker.

The scripts that ``make services`` runs in cqrskit's own repository ship inside
the package (``cqrskit/_services``). The services listen on fixed ports, so
there is one set per machine, whichever project starts it: its data is in
``~/.local/share/cqrskit/services`` and its downloads in ``~/.cache/cqrskit``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import click

__all__ = ["services"]

_SERVICES = ("postgres", "kafka", "elasticsearch")


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _run(action: str, names: tuple[str, ...]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        raise click.ClickException("the local services' scripts need bash, which is not on PATH")
    env = dict(os.environ)
    env.setdefault("CQRSKIT_SERVICES_DIR", str(_data_home() / "cqrskit" / "services"))
    with resources.as_file(resources.files("cqrskit") / "_services") as scripts:
        if not names:
            command = [bash, str(scripts / "services.sh"), action]
            sys.exit(subprocess.run(command, env=env, check=False).returncode)
        codes = [
            subprocess.run([bash, str(scripts / f"{name}.sh"), action], env=env, check=False)
            for name in names
        ]
        sys.exit(max(c.returncode for c in codes))


_NAMES = click.argument("names", nargs=-1, type=click.Choice(_SERVICES), metavar="[SERVICE]...")


@click.group()
def services() -> None:
    """The local PostgreSQL, Kafka and Elasticsearch on 127.0.0.1, without Docker.

    PostgreSQL from Debian's package, Kafka (KRaft) and Elasticsearch on the JVM
    (Java 17; Maven fetches Kafka's jars once). One set per machine: data in
    ``~/.local/share/cqrskit/services`` (CQRSKIT_SERVICES_DIR), downloads in
    ``~/.cache/cqrskit`` (CQRSKIT_CACHE_DIR). With Docker, a project's
    docker-compose.yml runs the same versions.
    """


@services.command("up")
@_NAMES
def up(names: tuple[str, ...]) -> None:
    """Start the services (all, or those named) and wait until each is healthy.

    Idempotent: a service already up is left as it is. Exits 1, naming the
    service and the tail of its log, when one does not start.
    """
    _run("start", names)


@services.command("down")
@_NAMES
def down(names: tuple[str, ...]) -> None:
    """Stop the services (all, or those named): SIGTERM, then SIGKILL after 60 s."""
    _run("stop", names)


@services.command("status")
@_NAMES
def status(names: tuple[str, ...]) -> None:
    """Say which services are up; exits 3 when any is down."""
    _run("status", names)
