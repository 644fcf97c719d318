"""The trainer node's export / checkpoint schedule, counted in gradient updates."""

from __future__ import annotations

import pytest

from rpl_trainer.schedule import SaveSchedule


def test_an_export_is_due_every_interval_from_the_last_one():
    schedule = SaveSchedule(export_every=100, checkpoint_every=None, updates=0)
    assert not schedule.export_due(99)
    assert schedule.export_due(100)
    schedule.exported(103)  # a tick ran a few updates past the interval
    assert not schedule.export_due(202)
    assert schedule.export_due(203)


def test_any_export_restarts_the_interval():
    schedule = SaveSchedule(export_every=100, checkpoint_every=None, updates=0)
    schedule.exported(40)  # e.g. the end of an offline run
    assert not schedule.export_due(100)
    assert schedule.export_due(140)


def test_a_resumed_learner_counts_from_its_checkpoint():
    schedule = SaveSchedule(export_every=2000, checkpoint_every=10000, updates=50000)
    assert not schedule.export_due(51999) and schedule.export_due(52000)
    assert not schedule.checkpoint_due(59999) and schedule.checkpoint_due(60000)


def test_checkpoints_have_their_own_interval():
    schedule = SaveSchedule(export_every=10, checkpoint_every=25, updates=0)
    due = [(u, schedule.export_due(u), schedule.checkpoint_due(u)) for u in (10, 25)]
    assert due == [(10, True, False), (25, True, True)]
    schedule.checkpointed(25)  # a checkpoint does not count as an export
    assert schedule.export_due(25) and not schedule.checkpoint_due(49)
    assert schedule.checkpoint_due(50)


def test_without_a_checkpoint_path_no_checkpoint_is_ever_due():
    schedule = SaveSchedule(export_every=1, checkpoint_every=None, updates=0)
    assert not schedule.checkpoint_due(10**9)


@pytest.mark.parametrize(('export_every', 'checkpoint_every'), [(0, None), (10, 0)])
def test_an_interval_below_one_update_is_refused(export_every, checkpoint_every):
    with pytest.raises(ValueError, match='at least 1 update'):
        SaveSchedule(export_every, checkpoint_every, updates=0)
