"""Rolling a read model back to the index from before its last rebuild, and pruning old ones."""

from __future__ import annotations

from typing import Any

from cqrskit.checkpoints import coverage
from cqrskit.errors import PermanentError
from cqrskit.projections._ports import ReadModel
from cqrskit.projections._projection import Projection
from cqrskit.projections._rebuild import Progress, RebuildPorts, _no_progress, _Rebuilder
from cqrskit.settings import Settings
from cqrskit.topology import partition_key

__all__ = ["prune", "prune_plan", "rollback", "rollback_plan"]


def rollback(
    settings: Settings,
    projection: Projection[Any],
    ports: RebuildPorts,
    *,
    progress: Progress = _no_progress,
) -> str:
    """Serve the previous index again, caught up from Kafka first; return its name.

    The previous index is caught up from its own checkpoints (what it holds
    without a gap), checkpointed as filled, swapped in, and caught up again
    for what the live worker wrote to the other index meanwhile. Run again
    after an interruption, it goes on from the previous index's checkpoints.

    Raises:
        PermanentError: there is no previous index to go back to.
        ServiceUnavailable: a service went away; run it again.
    """
    rebuilder = _Rebuilder(settings, projection, ports, progress)
    _, previous = rollback_plan(settings, projection, ports)
    state = rebuilder.load_state()
    assert state is not None  # rollback_plan found it
    read_model = rebuilder.read_model
    covered = coverage(read_model.checkpoints(previous))
    start = {partition_key(t, p): offset for (t, p), (offset, _) in covered.items()}
    seen = {partition_key(t, p): position for (t, p), (_, position) in covered.items()}
    reached, _ = rebuilder.catch_up(previous, start, "catching up the old index", seen=seen)
    rebuilder.fill(previous, reached, seen, 0)
    read_model.swap(previous)
    reached, _ = rebuilder.catch_up(previous, reached, "catching up after the swap", seen=seen)
    rebuilder.fill(previous, reached, seen, 0)
    state.target, state.previous = previous, state.target
    state.swap_offsets = reached
    rebuilder.save_state(state)
    return state.target


def rollback_plan(
    settings: Settings, projection: Projection[Any], ports: RebuildPorts
) -> tuple[str | None, str]:
    """(the index in service, the one :func:`rollback` would serve again); read-only.

    Raises:
        PermanentError: there is no previous index to go back to.
    """
    rebuilder = _Rebuilder(settings, projection, ports, _no_progress)
    state = rebuilder.read_state()
    if state is None or state.phase != "done" or not state.previous:
        raise PermanentError(f"{projection.name} has no finished rebuild to roll back")
    if state.previous not in rebuilder.read_model.versions():
        raise PermanentError(f"the previous index {state.previous} was deleted")
    return rebuilder.read_model.serving(), state.previous


def prune_plan(read_model: ReadModel) -> list[str]:
    """The indices :func:`prune` would delete (every version not in service); read-only."""
    serving = read_model.serving()
    return [v for v in read_model.versions() if v != serving]


def prune(read_model: ReadModel) -> list[str]:
    """Delete every version of the read model except the one in service; return them.

    Idempotent. Raises ServiceUnavailable when Elasticsearch cannot answer.
    """
    dropped = prune_plan(read_model)
    for index in dropped:
        read_model.delete_index(index)
    return dropped
