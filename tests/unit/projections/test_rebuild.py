"""What a rebuild does to the process around it."""

from __future__ import annotations

import gc

import pytest

from cqrskit.projections import _rebuild


def test_a_rebuild_collects_less_often_and_restores_the_collector_after() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with _rebuild._fewer_collections():
        assert gc.get_threshold() == _rebuild._REBUILD_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # start-up objects are not scanned
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_a_rebuild_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), _rebuild._fewer_collections():
        raise RuntimeError("Elasticsearch went away")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_objects_the_caller_froze_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _rebuild._fewer_collections():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
