"""docker-compose.yml runs the same versions as the local service scripts."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pinned(script: str, variable: str) -> str:
    text = (ROOT / "cqrskit" / "_services" / script).read_text()
    match = re.search(rf'^{variable}="?([0-9.]+)"?', text, re.MULTILINE)
    assert match, f"{variable} is not pinned in cqrskit/_services/{script}"
    return match.group(1)


def test_compose_versions_match_the_scripts() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"apache/kafka:{_pinned('kafka.sh', 'KAFKA_VERSION')}" in compose
    assert f"elasticsearch:{_pinned('elasticsearch.sh', 'ES_VERSION')}" in compose
