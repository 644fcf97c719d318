"""The lockstep pacing rule (``lockstep_max_rate_hz``) on a fake clock (seconds)."""

from __future__ import annotations

import pytest

from rpl_sim_bridge.bridge import LOCKSTEP, REALTIME, SimBridge, SimBridgeConfig
from rpl_sim_bridge.pacing import LockstepPacer
from rpl_sim_bridge.tasks import make_task


def test_no_limit_never_waits():
    pacer = LockstepPacer(0.0)
    assert not pacer.paces
    pacer.published(5.0)
    assert pacer.wait_s(5.0) == 0.0


def test_the_next_observation_waits_one_period_after_the_last_publication():
    pacer = LockstepPacer(50.0)  # 20 ms per step at most
    assert pacer.paces and pacer.min_period_s == pytest.approx(0.02)
    assert pacer.wait_s(0.0) == 0.0  # nothing published yet
    pacer.published(10.0)
    assert pacer.wait_s(10.005) == pytest.approx(0.015)  # the nodes answered in 5 ms
    assert pacer.wait_s(10.02) == 0.0
    assert pacer.wait_s(10.5) == 0.0  # a slow step is never delayed further


def test_a_re_send_counts_as_a_publication():
    pacer = LockstepPacer(10.0)
    pacer.published(1.0)
    pacer.published(1.08)  # the same observation published again
    assert pacer.wait_s(1.1) == pytest.approx(0.08)


@pytest.mark.parametrize('rate', [-1.0, float('inf'), float('nan')])
def test_a_bad_rate_is_refused(rate):
    with pytest.raises(ValueError, match='max_rate_hz must be a finite number >= 0'):
        LockstepPacer(rate)


@pytest.mark.parametrize(('mode', 'paces'), [(LOCKSTEP, True), (REALTIME, False)])
def test_the_bridge_paces_only_in_lockstep(mode, paces):
    task = make_task('push', max_episode_steps=4)
    config = SimBridgeConfig(mode=mode, lockstep_max_rate_hz=100.0)
    bridge = SimBridge(task, task.spec, config)
    assert bridge.pacer.paces is paces
    bridge.pacer.published(2.0)
    assert bridge.pacer.wait_s(2.004) == pytest.approx(0.006 if paces else 0.0)
