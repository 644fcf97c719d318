"""The one checked call of a base controller in the evaluation and training loops
(rpl_base_controllers.base.checked_action): inputs copied, outputs checked, failures one
line, in rpl eval's loop and in rpl train's rollout slots alike."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rpl_base_controllers.base import ControllerFailure, checked_action
from rpl_sim_bridge.tasks import make_task
from rpl_trainer.rollout import SyncVectorEnv


class Zeroing:
    """Gives 0.1 on every axis, then zeroes its inputs in place (an in-place normalisation
    bug), or returns NaN."""

    name = 'zeroing'

    def __init__(self, fault: str = 'mutate') -> None:
        self.fault = fault

    def reset(self) -> None:
        if self.fault == 'reset':
            raise KeyError('no plan yet')

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        observation[:] = 0.0
        desired_goal[:] = 0.0
        return np.full(4, np.nan if self.fault == 'nan' else 0.1)

    def act_batch(self, observations, goals):  # noqa: ANN001, ANN201 (the protocol's)
        return np.stack([self(o, g) for o, g in zip(observations, goals, strict=True)])


def test_the_controller_gets_copies_of_its_inputs():
    """A controller that changed its input left the residual policy (rpl eval) and the
    trainer's stored transition (rpl train) reading what it left there."""
    observation, goal = np.arange(25.0), np.ones(3)
    action = checked_action(Zeroing(), observation, goal, 4, 'episode seed 0, step 0')
    np.testing.assert_array_equal(action, np.full(4, 0.1))
    np.testing.assert_array_equal(observation, np.arange(25.0))
    np.testing.assert_array_equal(goal, np.ones(3))


def test_a_non_finite_action_is_one_line_naming_where():
    with pytest.raises(ControllerFailure, match=r"controller 'zeroing' gave \[nan, nan, nan"):
        checked_action(Zeroing('nan'), np.zeros(25), np.zeros(3), 4, 'episode seed 3, step 7')


@dataclasses.dataclass(frozen=True)
class _Factory:
    fault: str

    def __call__(self):  # noqa: ANN204 (EnvFactory)
        return make_task('push'), Zeroing(self.fault)


@pytest.mark.parametrize(
    ('fault', 'message'),
    [
        ('mutate', None),
        ('nan', r"controller 'zeroing' gave \[nan.*task 'push', training episode seed 5"),
        ('reset', r"controller 'zeroing' raised KeyError: 'no plan yet' \(at test_control"),
    ],
)
def test_training_slots_store_the_task_observation_and_refuse_a_bad_base(fault, message):
    """The rollout stored the observation the controller had zeroed, and NaN base actions
    went into the replay buffer unchecked."""
    env = SyncVectorEnv(_Factory(fault), 1)
    try:
        if message is not None:
            with pytest.raises(ControllerFailure, match=message):
                env.reset([5])
            return
        batch = env.reset([5])
        expected, _ = make_task('push').reset(seed=5)
        np.testing.assert_allclose(batch.obs[0], expected['observation'], rtol=1e-6)
        np.testing.assert_allclose(batch.base[0], np.full(4, 0.1), rtol=1e-6)
    finally:
        env.close()


class Counting:
    """Counts its calls since reset(); a reset can be made to fail after changing it."""

    name = 'counting'

    def __init__(self) -> None:
        self.n = 0
        self.fail_reset = False

    def reset(self) -> None:
        self.n = 0
        if self.fail_reset:
            self.n = 99  # half-way through, then the failure
            raise RuntimeError('reset failed')

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        observation[:] = -1.0  # in place: must not change what a repeat is recognised by
        self.n += 1
        return np.full(4, float(self.n))

    def act_batch(self, observations, goals):  # noqa: ANN001, ANN201 (the protocol's)
        return np.stack([self(o, g) for o, g in zip(observations, goals, strict=True)])


def test_the_node_sequencer_recovers_its_state_after_any_failure():
    """A reset() that raised half-way left the controller's state changed and the sequencer
    believing it held episode 0's step 1: step 2 was computed from the broken state (99 + 1).
    And an in-place change of the input made every re-sent observation a new one."""
    from rpl_base_controllers.base import SequencedController

    controller = Counting()
    sequencer = SequencedController(controller)
    payload = np.zeros(30)

    def ask(episode: int, step: int) -> tuple[float, str]:
        action, kind = sequencer.answer(episode, step, payload, payload[:25], payload[25:28])
        return float(action[0]), kind

    assert ask(0, 0) == (1.0, 'start') and ask(0, 1) == (2.0, 'next')
    assert ask(0, 1) == (2.0, 'repeat')  # the same payload: the same answer, not computed
    controller.fail_reset = True
    with pytest.raises(RuntimeError, match='reset failed'):
        ask(1, 0)
    assert ask(0, 2) == (3.0, 'next')  # from step 1's saved state, not the broken one


def test_the_mixins_take_any_tasks_sizes_and_the_fetch_checks_stay_fetchs():
    """README A.1 offers BatchedCallMixin / LoopedBatchMixin to a user's own controller:
    on a 2-link arm (6 observation values, 2-D goal, 2 torques) both failed at the first
    step with 'obs_dim >= 11', a Fetch controller's minimum."""
    from rpl_base_controllers.base import (
        BatchedCallMixin,
        LoopedBatchMixin,
        check_batch,
        check_single,
    )

    class BatchFirst(BatchedCallMixin):
        def act_batch(self, observations, goals):
            return goals - observations[:, -2:]  # (B, 2): towards the goal

    class RowFirst(LoopedBatchMixin):
        action_dim = 2

        def __call__(self, observation, desired_goal):
            return desired_goal - observation[-2:]

    observations, goals = np.arange(12.0).reshape(2, 6), np.ones((2, 2))
    wanted = goals - observations[:, -2:]
    np.testing.assert_array_equal(BatchFirst()(observations[0], goals[0]), wanted[0])
    np.testing.assert_array_equal(RowFirst().act_batch(observations, goals), wanted)
    assert RowFirst().act_batch(np.zeros((0, 6)), np.zeros((0, 2))).shape == (0, 2)
    with pytest.raises(ValueError, match='desired goal contains NaN'):
        BatchFirst()(observations[0], np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match=r'goals must have shape \(2, goal_dim\)'):
        RowFirst().act_batch(observations, np.ones((3, 2)))
    # A Fetch controller's own checks keep the Fetch sizes.
    with pytest.raises(ValueError, match='obs_dim >= 11'):
        check_single(observations[0], np.ones(3))
    with pytest.raises(ValueError, match=r'goals must have shape \(2, 3\)'):
        check_batch(np.zeros((2, 25)), goals)
