"""Base controllers on hand-made observations, the registry, and the MPC's planning copy."""

from __future__ import annotations

import numpy as np
import pytest

from rpl_base_controllers import (
    BaseController,
    ControllerSpec,
    ReactivePickAndPlace,
    ReactivePickAndPlaceConfig,
    ReactivePush,
    ReactivePushConfig,
    UnknownControllerError,
    available_controllers,
    controller_config,
    controller_info,
    make_controller,
    parse_controller_params,
    register_controller,
    registry,
)
from rpl_base_controllers.base import SequencedController
from rpl_base_controllers.discrete_mpc_push import UNIT_MOVES
from rpl_base_controllers.registry import params_from_text
from rpl_interfaces.params import ParameterError
from rpl_sim_bridge.layout import FetchObs
from rpl_sim_bridge.tasks import make_task

BLOCK = np.array([1.3, 0.75, 0.425])
GOAL = np.array([1.4, 0.75, 0.425])  # 10 cm along +x from the block
# ReactivePush: push point 7.5 cm behind the block (on the goal->block line), 0.5 cm up.
PUSH_POINT = np.array([1.225, 0.75, 0.43])


def observation(gripper, block=BLOCK, fingers=(0.0, 0.0)) -> np.ndarray:
    """A 25-D observation with the named parts set and every velocity zero."""
    obs = np.zeros(FetchObs.DIM)
    obs[FetchObs.GRIP_POS] = gripper
    obs[FetchObs.OBJECT_POS] = block
    obs[FetchObs.OBJECT_REL_POS] = np.asarray(block) - np.asarray(gripper)
    obs[FetchObs.GRIPPER_STATE] = fingers
    return obs


def random_observations(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations and goals scattered over and around the table (B, 25), (B, 3)."""
    centre = np.array([1.3, 0.75, 0.45])
    grippers = centre + rng.uniform(-0.3, 0.3, (n, 3))
    blocks = centre + rng.uniform(-0.2, 0.2, (n, 3))
    fingers = rng.uniform(0.0, 0.05, (n, 2))
    obs = np.stack(
        [observation(g, b, f) for g, b, f in zip(grippers, blocks, fingers, strict=True)]
    )
    goals = centre + rng.uniform(-0.2, 0.2, (n, 3))
    return obs, goals


# ---------------------------------------------------------------- ReactivePush


def test_push_far_away_goes_above_the_push_point_with_gain_10():
    gripper = np.array([1.18, 0.7, 0.6])  # 6.7 cm from the push point in xy
    action = ReactivePush()(observation(gripper), GOAL)
    hover = PUSH_POINT + [0.0, 0.0, 0.1]
    np.testing.assert_allclose(action, np.r_[np.clip(10 * (hover - gripper), -1, 1), 0.0])
    assert action[2] == pytest.approx(-0.7)  # unsaturated: 10 * (0.53 - 0.6)


def test_push_above_the_push_point_descends():
    gripper = PUSH_POINT + [0.01, 0.0, 0.1]
    action = ReactivePush()(observation(gripper), GOAL)
    np.testing.assert_allclose(action, [-0.1, 0.0, -1.0, 0.0], atol=1e-12)


def test_push_at_push_height_and_aligned_pushes_towards_the_goal_with_gain_5():
    gripper = PUSH_POINT.copy()
    action = ReactivePush()(observation(gripper), GOAL)
    np.testing.assert_allclose(action, [5 * (GOAL[0] - gripper[0]), 0.0, 0.0, 0.0], atol=1e-12)


def test_push_does_not_push_from_the_wrong_side_of_the_block():
    gripper = np.array([1.36, 0.75, 0.43])  # at push height, but between block and goal
    action = ReactivePush()(observation(gripper), GOAL)
    assert action[0] == -1.0 and action[2] > 0.0  # back off, up towards the hover point


def test_push_stops_when_the_block_is_at_the_goal():
    action = ReactivePush()(observation([1.0, 0.5, 0.6], block=GOAL + 0.01), GOAL)
    np.testing.assert_array_equal(action, np.zeros(4))


def test_push_push_point_follows_the_goal_direction():
    goal = BLOCK + [0.0, -0.2, 0.0]  # goal along -y: push point 7.5 cm behind along +y
    gripper = BLOCK + [0.0, 0.075, 0.005]
    action = ReactivePush()(observation(gripper), goal)
    np.testing.assert_allclose(action, [0.0, -1.0, 0.0, 0.0], atol=1e-12)  # 5 * -0.275 clipped


# ------------------------------------------------------- ReactivePickAndPlace


def test_pick_and_place_far_away_goes_above_the_grasp_pose():
    gripper = np.array([1.35, 0.7, 0.6])
    action = ReactivePickAndPlace()(observation(gripper), GOAL)
    hover = BLOCK + [0.0, 0.0, -0.02 + 0.1]
    np.testing.assert_allclose(action, np.r_[10 * (hover - gripper), 0.0])


def test_pick_and_place_above_the_block_opens_then_descends():
    gripper = BLOCK + [0.0, 0.0, 0.1]
    controller = ReactivePickAndPlace()
    np.testing.assert_array_equal(controller(observation(gripper), GOAL), [0, 0, 0, 1.0])
    action = controller(observation(gripper, fingers=(0.05, 0.05)), GOAL)
    np.testing.assert_allclose(action, [0.0, 0.0, -1.0, 0.0])  # 10 * -0.12, clipped


def test_pick_and_place_closes_at_the_grasp_pose():
    gripper = BLOCK + [0.0, 0.0, -0.005]  # fingertips on the table, 1.5 cm above the pose
    action = ReactivePickAndPlace()(observation(gripper, fingers=(0.05, 0.05)), GOAL)
    np.testing.assert_array_equal(action, [0.0, 0.0, 0.0, -1.0])


@pytest.mark.parametrize(
    ('name', 'gain'),
    [('reactive_pick_and_place', 83.0), ('reactive_pick_and_place_calibrated', 10.0)],
)
def test_pick_and_place_carries_a_grasped_block_with_its_gain(name, gain):
    controller = make_controller(name)
    carry_target = GOAL + [0.0, 0.0, -0.02 + 0.05]
    gripper = carry_target + [-0.004, 0.002, 0.0]
    block = gripper + [0.0, 0.0, 0.005]
    action = controller(observation(gripper, block, fingers=(0.024, 0.024)), GOAL)
    np.testing.assert_allclose(action, [gain * 0.004, gain * -0.002, 0.0, -1.0], atol=1e-12)


def test_pick_and_place_gain_50_saturates_at_the_action_bound():
    controller = make_controller('reactive_pick_and_place', carry_gain=50.0)
    gripper = np.array([1.3, 0.75, 0.455])  # at carry height, 10 cm short of the goal
    block = gripper + [0.0, 0.0, 0.005]
    action = controller(observation(gripper, block, fingers=(0.024, 0.024)), GOAL)
    np.testing.assert_allclose(action, [1.0, 0.0, 0.0, -1.0], atol=1e-12)  # 50 * 0.1 -> 1


# ------------------------------------------------------------- shared contract


@pytest.mark.parametrize(
    'name', ['reactive_push', 'reactive_pick_and_place', 'reactive_pick_and_place_calibrated']
)
def test_reactive_controllers_are_bounded_pure_and_batch_consistent(name):
    controller = make_controller(name)
    assert isinstance(controller, BaseController) and controller.name == name
    obs, goals = random_observations(np.random.default_rng(0), 300)
    batch = controller.act_batch(obs, goals)
    assert batch.shape == (300, 4) and batch.dtype == np.float64
    assert np.all(np.isfinite(batch)) and np.all(np.abs(batch) <= 1.0)
    single = np.stack([controller(o, g) for o, g in zip(obs, goals, strict=True)])
    np.testing.assert_array_equal(single, batch)
    np.testing.assert_array_equal(controller.act_batch(obs[::-1], goals[::-1]), batch[::-1])


def test_controllers_reject_bad_inputs_with_the_expected_shape_in_the_message():
    controller = ReactivePush()
    with pytest.raises(ValueError, match=r'obs_dim >= 11'):
        controller(np.zeros(5), GOAL)
    with pytest.raises(ValueError, match=r'desired_goal must have shape \(3,\)'):
        controller(observation(BLOCK), np.zeros(2))
    with pytest.raises(ValueError, match='NaN or inf'):
        controller(observation([np.nan, 0.0, 0.0]), GOAL)


# -------------------------------------------------------------------- registry


def test_registry_lists_and_describes_the_built_in_controllers():
    names = available_controllers()
    for name in (
        'reactive_push',
        'reactive_pick_and_place',
        'reactive_pick_and_place_calibrated',
        'discrete_mpc_push',
    ):
        assert name in names
    assert controller_info('reactive_push').tasks == ('push', 'slippery_push')
    assert controller_info('reactive_pick_and_place').tasks == ('pick_and_place',)


def test_unknown_controller_error_lists_the_known_names():
    with pytest.raises(UnknownControllerError, match='reactive_push') as caught:
        make_controller('reactive_puhs')
    assert isinstance(caught.value, ValueError)
    with pytest.raises(UnknownControllerError):
        controller_info('nope')


def test_make_controller_checks_task_and_parameters():
    with pytest.raises(ValueError, match='meant for tasks'):
        make_controller('reactive_push', task='pick_and_place')
    with pytest.raises(ParameterError, match='push_gian'):
        make_controller('reactive_push', push_gian=3.0)
    with pytest.raises(ParameterError, match='outside'):
        make_controller('reactive_push', push_gain=-1.0)
    controller = make_controller('reactive_pick_and_place', task='pick_and_place', carry_gain=50)
    assert controller.config == ReactivePickAndPlaceConfig(carry_gain=50.0)


def test_controllers_declare_typed_parameters_with_their_registered_defaults():
    params = {p.name: p for p in controller_info('reactive_pick_and_place_calibrated').params}
    carry = params['carry_gain']
    assert (carry.kind, carry.default, carry.range) == (float, 10.0, (0.0, 1e3))
    assert controller_info('reactive_pick_and_place').params[-1].default == 83.0
    assert controller_info('zero').params == ()
    mpc = [p.name for p in controller_info('discrete_mpc_push').params]
    assert 'task' not in mpc and 'expansions' in mpc  # the task comes from the running one
    assert controller_config('discrete_mpc_push', 'slippery_push').task == 'slippery_push'


def test_controller_params_are_parsed_from_text_by_type():
    assert parse_controller_params('discrete_mpc_push', ['expansions=20', 'push_offset=0.1']) == {
        'expansions': 20,
        'push_offset': 0.1,
    }
    assert params_from_text('reactive_pick_and_place', 'carry_gain=50, approach_gain=5') == {
        'carry_gain': 50.0,
        'approach_gain': 5.0,
    }
    assert params_from_text('zero', '') == {}
    # A text value may hold a comma (it was split into a second item, refused as not
    # NAME=VALUE): a piece without '=' continues the value before it.
    assert params_from_text('cached_pets', 'cache_file=/d/a,b.npz,neighbours=2') == {
        'cache_file': '/d/a,b.npz',
        'neighbours': 2,
    }
    # A blank piece is no item (a trailing comma, two in a row): as before the comma rule
    assert params_from_text('cached_pets', 'neighbours=2,, cache_size=5, ') == {
        'neighbours': 2,
        'cache_size': 5,
    }
    with pytest.raises(ParameterError, match="controller parameter 'b.npz' is not NAME=VALUE"):
        params_from_text('cached_pets', 'b.npz,neighbours=2')
    with pytest.raises(ParameterError, match="expansions='2.5' is not an integer"):
        parse_controller_params('discrete_mpc_push', ['expansions=2.5'])
    with pytest.raises(ParameterError, match="controller 'zero' has no parameter 'gain'"):
        params_from_text('zero', 'gain=1')
    with pytest.raises(ParameterError, match="carry_gain='inf' is not a number"):
        params_from_text('reactive_pick_and_place', 'carry_gain=inf')


def _spec(**changes):
    fields = {
        'factory': lambda name, task, config: ReactivePush(config, name=name),
        'description': 'test',
        'tasks': ('push',),
        'config': ReactivePushConfig,
    }
    return ControllerSpec(**{**fields, **changes})


def test_register_controller_checks_the_declaration():
    with pytest.raises(ValueError, match="'reactive_push' is already registered"):
        register_controller('reactive_push', _spec())
    with pytest.raises(ValueError, match='must name a tuple of the tasks'):
        register_controller('test_no_tasks', _spec(tasks=()))
    with pytest.raises(ParameterError, match='unknown parameter'):
        register_controller('test_bad_default', _spec(defaults={'push_gian': 1.0}))
    with pytest.raises(ValueError, match='expected a ControllerSpec'):
        register_controller('test_not_a_spec', object())
    assert 'test_no_tasks' not in available_controllers()


def test_a_factory_that_returns_no_controller_is_refused_by_name():
    register_controller('test_returns_none', _spec(factory=lambda name, task, config: None))
    try:
        with pytest.raises(ValueError, match="'test_returns_none': its factory returned a "):
            make_controller('test_returns_none')
    finally:
        registry._REGISTRY.pop('test_returns_none')


# ---------------------------------------------------------- DiscreteMPCPush


@pytest.fixture(scope='module')
def push_run():
    """Observations of a real push episode driven by random actions (seeded)."""
    task = make_task('push')
    obs, _ = task.reset(seed=3)
    rng = np.random.default_rng(3)
    observations, actions = [obs], []
    for _ in range(8):
        action = rng.uniform(-1, 1, 4)
        obs, *_ = task.step(action)
        observations.append(obs)
        actions.append(action)
    return observations, actions


@pytest.fixture(scope='module')
def mpc():
    return make_controller('discrete_mpc_push', task='push')


def test_mpc_returns_a_scaled_unit_move_deterministically(mpc, push_run):
    observations, _ = push_run
    obs = observations[0]
    mpc.reset()
    first = mpc(obs['observation'], obs['desired_goal'])
    assert any(np.array_equal(first, move) for move in np.clip(10 * UNIT_MOVES, -1, 1))
    assert mpc.stats.simulated_steps == 60  # 10 expansions x 6 moves
    mpc.reset()
    np.testing.assert_array_equal(mpc(obs['observation'], obs['desired_goal']), first)


def test_planning_copy_rebuilds_the_observed_state_from_a_cold_start(mpc, push_run):
    """From its initial posture, the copy reproduces an observation 8 random steps later,
    and predicts the next real step to within 2 mm (the arm's null-space posture is not
    observed, so a cold start may differ there)."""
    observations, actions = push_run
    copy = mpc.copy
    before = observations[-2]['observation']
    report = copy.sync(before, copy.initial_state)
    assert report.gripper_error < 1e-5
    rebuilt = copy.task.observe()['observation']
    np.testing.assert_allclose(rebuilt, before, atol=1e-6)
    copy.task.simulate(actions[-1])
    predicted = copy.task.observe()['observation']
    after = observations[-1]['observation']
    np.testing.assert_allclose(predicted[FetchObs.GRIP_POS], after[FetchObs.GRIP_POS], atol=2e-3)
    np.testing.assert_allclose(
        predicted[FetchObs.OBJECT_POS], after[FetchObs.OBJECT_POS], atol=2e-3
    )


def test_zero_controller_holds_still_and_still_validates():
    zero = make_controller('zero')
    observation = np.linspace(-1.0, 1.0, 25)
    np.testing.assert_array_equal(zero(observation, np.ones(3)), np.zeros(4))
    np.testing.assert_array_equal(
        zero.act_batch(np.tile(observation, (3, 1)), np.ones((3, 3))), np.zeros((3, 4))
    )
    with pytest.raises(ValueError):
        zero(np.full(25, np.nan), np.ones(3))


# ------------------------------------------------------ SequencedController


class Counting:
    """A stateful test controller: its action is the number of calls since reset and the
    first observation entry, so any state change shows in the action."""

    name = 'counting'

    def __init__(self) -> None:
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        if not np.isfinite(observation).all():
            raise ValueError('non-finite observation')
        self.calls += 1
        return np.array([self.calls, observation[0], 0.0, 0.0])


def ask(sequencer: SequencedController, episode: int, step: int, value: float):
    payload = np.full(4, value)
    return sequencer.answer(episode, step, payload, payload[:1], payload[1:])


def test_sequenced_controller_other_step_ids_never_reset_the_real_sequence():
    """Issue 9: forged observations with other step ids reset the controller's state.
    Interleaved foreign messages get answers of their own; the real steps give the same
    actions as without them."""
    sequencer = SequencedController(Counting())
    real = [ask(sequencer, 3, k, 0.5)[0][0] for k in range(3)]
    assert real == [1, 2, 3]
    forged = SequencedController(Counting())
    actions = []
    for k in range(3):
        ask(forged, 9, 7, 0.1)  # another episode, mid-way
        ask(forged, 3, 0, 0.2)  # step 0 of this episode again, other values
        ask(forged, 3, k + 5, 0.3)  # a future step
        ask(forged, 0, 0, 0.4)  # a restarted sim
        actions.append(ask(forged, 3, k, 0.5))
    # Step 0 itself was sent again with other values by the forger before each real one:
    # the later one (the real one, 0.5) wins, computed from the reset state.
    assert [a[0][0] for a in actions] == [1, 2, 3]
    assert [a[1] for a in actions] == ['again', 'next', 'next']
    assert forged.counts['jump'] == 2  # (9, 7) and (3, 5); (3, 6) follows (3, 5)


def test_sequenced_controller_repeats_and_later_messages_for_the_same_step_win():
    sequencer = SequencedController(Counting())
    ask(sequencer, 0, 0, 0.5)
    action, kind = ask(sequencer, 0, 0, 0.5)  # a re-sent observation: no call
    assert kind == 'repeat' and action[0] == 1
    assert ask(sequencer, 0, 1, 0.6)[0].tolist() == [2, 0.6, 0, 0]
    # Another observation for step 1 (a forger's, then the real one again): each is
    # computed from the state before step 1, the last one wins for step 2.
    assert ask(sequencer, 0, 1, 0.9)[0].tolist() == [2, 0.9, 0, 0]
    assert ask(sequencer, 0, 1, 0.6) == (pytest.approx([2, 0.6, 0, 0]), 'again')
    assert ask(sequencer, 0, 2, 0.6)[0][0] == 3


def test_sequenced_controller_refusal_changes_nothing():
    sequencer = SequencedController(Counting())
    ask(sequencer, 0, 0, 0.5)
    with pytest.raises(ValueError, match='non-finite'):
        ask(sequencer, 0, 1, np.nan)
    assert ask(sequencer, 0, 1, 0.5)[0][0] == 2
    assert ask(sequencer, 0, 2, 0.5) == (pytest.approx([3, 0.5, 0, 0]), 'next')


def test_sequenced_planner_gives_the_same_actions_with_foreign_messages_interleaved(push_run):
    """The stateful planner (its predicted arm posture carries over between steps): the
    real steps' actions do not change when other steps' observations come in between."""
    observations, _ = push_run
    payloads = [np.concatenate([o['observation'], o['desired_goal']]) for o in observations]

    def run(foreign: bool) -> list[np.ndarray]:
        sequencer = SequencedController(make_controller('discrete_mpc_push', task='push'))
        actions = []
        for k, payload in enumerate(payloads[:5]):
            if foreign:
                other = payloads[-1 - k]
                sequencer.answer(4, 0, other, other[:25], other[25:])
                sequencer.answer(0, k + 3, other, other[:25], other[25:])
            action, _ = sequencer.answer(0, k, payload, payload[:25], payload[25:])
            actions.append(action.copy())
        return actions

    np.testing.assert_array_equal(run(True), run(False))


def test_sequenced_controller_a_terminal_observation_is_not_a_step():
    """The terminal observation o_T (step T after the last step T - 1) gets no action, the
    controller is not called and the sequence goes on as if it had not come."""
    controller = Counting()
    sequencer = SequencedController(controller)
    assert [ask(sequencer, 0, k, 0.5)[0][0] for k in range(2)] == [1, 2]
    payload = np.full(4, 0.7)
    terminal = sequencer.answer(0, 2, payload, payload[:1], payload[1:], terminal=True)
    assert terminal == (None, 'terminal') and controller.calls == 2
    assert ask(sequencer, 0, 1, 0.5) == (pytest.approx([2, 0.5, 0, 0]), 'repeat')
    # Had o_T been answered as step 2, step 2 would be a repeat or an 'again'.
    assert ask(sequencer, 0, 2, 0.7) == (pytest.approx([3, 0.7, 0, 0]), 'next')
    assert ask(sequencer, 1, 0, 0.1) == (pytest.approx([1, 0.1, 0, 0]), 'start')
    assert sequencer.counts['terminal'] == 1
