"""Pure tests of the sim bridge core: clock modes, fallbacks, rejections, episode results.

Time is injected (seconds on a fake clock); the task is the real MuJoCo push task with short
episodes, and every expectation is checked against a twin task stepped directly.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import JointState

from rpl_interfaces.codec import MessageError, StampedVector, encode
from rpl_interfaces.contract import COMMAND_FROM_RESIDUAL, EPISODE_FIELDS
from rpl_sim_bridge.action_intake import Source, check_payload
from rpl_sim_bridge.bridge import Due, Handshake, SimBridge
from rpl_sim_bridge.bridge_config import LOCKSTEP, REALTIME, SimBridgeConfig, startup_decision
from rpl_sim_bridge.episode_book import observation_layout
from rpl_sim_bridge.tasks import TaskSpec, make_task

STEPS = 4  # episode length used here (the real push task, shortened)
PUSH_RIGHT = np.array([1.0, 0.0, 0.0, 0.0])
PUSH_LEFT = np.array([-1.0, 0.0, 0.0, 0.0])


def make_bridge(**overrides) -> SimBridge:
    task = make_task('push', max_episode_steps=STEPS)
    return SimBridge(task, task.spec, SimBridgeConfig(**overrides))


def twin_run(seed: int, actions: list[np.ndarray]):
    """Observation payloads and the last (reward sum, info) of the task stepped directly."""
    task = make_task('push', max_episode_steps=STEPS)
    layout = observation_layout(task.spec)
    obs, _ = task.reset(seed=seed)
    payloads, total, info = [], 0.0, {}

    def flat(o):
        out = np.zeros(len(layout.fields))
        out[layout.observation] = o['observation']
        out[layout.achieved_goal] = o['achieved_goal']
        out[layout.desired_goal] = o['desired_goal']
        return out

    payloads.append(flat(obs))
    for action in actions:
        obs, reward, _, _, info = task.step(action)
        total += reward
        payloads.append(flat(obs))
    return payloads, total, info


def test_layout_names_every_payload_entry():
    spec = make_task('push').spec
    layout = observation_layout(spec)
    assert len(layout.fields) == spec.obs_dim + 6
    assert layout.fields[layout.observation] == spec.obs_fields
    assert layout.fields[layout.achieved_goal] == tuple(f'achieved_goal.{a}' for a in 'xyz')
    assert layout.fields[layout.desired_goal] == tuple(f'desired_goal.{a}' for a in 'xyz')


def test_lockstep_steps_on_command_and_matches_direct_stepping():
    bridge = make_bridge(seed=7)
    bridge.begin(now=0.0)
    actions = [PUSH_RIGHT, PUSH_LEFT, PUSH_RIGHT]
    expected, _, _ = twin_run(7, actions)
    np.testing.assert_array_equal(bridge.observation(), expected[0])
    for k, action in enumerate(actions):
        assert not bridge.ready()
        assert bridge.offer_command(0, k, action, now=0.001) is None
        assert bridge.ready()
        outcome = bridge.advance(now=0.002)
        assert outcome.source is Source.COMMAND and outcome.result is None
        np.testing.assert_array_equal(bridge.observation(), expected[k + 1])
    assert bridge.counters.commands == 3
    assert bridge.counters.fallback_base == bridge.counters.fallback_zero == 0


def test_lockstep_base_fallback_after_command_timeout_from_base_arrival():
    """While the residual node is silent (here: the handshake got no command), a command
    gets command_timeout_s after the base action."""
    bridge = make_bridge(
        command_timeout_s=0.05, step_timeout_s=1.0, startup_timeout_s=0.1, handshake_period_s=1.0
    )
    bridge.begin(now=9.9, command_publishers=1)
    assert bridge.poll(now=10.0) is Due.WAIT  # handshake over, without a command
    assert bridge.command_silent and bridge.base_silent
    assert bridge.deadline() == pytest.approx(10.9)  # nothing yet: the step limit
    assert bridge.offer_base(0, 0, PUSH_LEFT, now=10.2) is None
    assert not bridge.base_silent
    assert not bridge.ready()  # a command source exists: give the command its time
    assert bridge.deadline() == pytest.approx(10.25)
    action, source = bridge.choose()
    assert source is Source.BASE
    np.testing.assert_array_equal(action, PUSH_LEFT)
    assert bridge.advance(now=10.25).source is Source.BASE
    assert bridge.counters.fallback_base == 1
    # The late command of step 0 is never applied (counted, not logged).
    rejection = bridge.offer_command(0, 0, PUSH_RIGHT, now=10.26)
    assert rejection is not None and rejection.kind == 'late'
    assert bridge.counters.late_commands == 1
    assert bridge.choose()[1] is Source.ZERO


def test_lockstep_without_command_source_applies_base_at_once():
    bridge = make_bridge()
    bridge.begin(now=0.0)
    bridge.command_source_present = False
    assert not bridge.ready()
    bridge.offer_base(0, 0, PUSH_RIGHT, now=0.001)
    assert bridge.ready()
    assert bridge.advance(now=0.001).source is Source.BASE


def test_lockstep_zero_fallback_after_step_timeout_matches_zero_action():
    bridge = make_bridge(seed=3, step_timeout_s=0.5)
    bridge.begin(now=0.0, command_publishers=0)
    bridge.base_source_present = False  # no controller on the graph either
    assert bridge.deadline() == pytest.approx(0.5)
    assert bridge.advance(now=0.5).source is Source.ZERO
    assert bridge.deadline() == pytest.approx(1.0)  # measured from the new observation
    expected, _, _ = twin_run(3, [np.zeros(4)])
    np.testing.assert_array_equal(bridge.observation(), expected[1])
    assert bridge.counters.fallback_zero == 1


# --- start-up handshake (lockstep) -----------------------------------------------------
def test_handshake_resends_observation_zero_until_its_command_arrives():
    """A link of the command path matches late: observation (0, 0) is re-sent every
    handshake_period_s, the early base action is never applied, and the command that
    finally arrives is."""
    bridge = make_bridge(seed=7, handshake_period_s=0.2, startup_timeout_s=10.0)
    bridge.begin(now=100.0, command_publishers=1)
    assert bridge.handshake is Handshake.WAITING and bridge.handshaking
    first = bridge.observation()
    assert bridge.offer_base(0, 0, PUSH_LEFT, now=100.01) is None
    assert not bridge.ready()
    # Without the handshake this would be the base fallback at 100.06 (command_timeout_s).
    assert bridge.deadline() == pytest.approx(100.2)
    assert bridge.poll(now=100.06) is Due.WAIT
    times = []
    for _ in range(4):
        t = bridge.deadline()  # when the node's timer fires
        times.append(t)
        assert bridge.poll(now=t) is Due.RESEND
        assert bridge.poll(now=t) is Due.WAIT  # once per period
        assert bridge.offer_base(0, 0, PUSH_LEFT, now=t + 0.001) is None  # answered again
        np.testing.assert_array_equal(bridge.observation(), first)  # the same observation
    assert times == pytest.approx([100.2, 100.4, 100.6, 100.8])
    assert bridge.counters.handshake_resends == 4
    assert bridge.offer_command(0, 0, PUSH_RIGHT, now=100.85) is None
    assert bridge.ready() and bridge.poll(now=100.85) is Due.STEP
    assert bridge.advance(now=100.85).source is Source.COMMAND
    assert bridge.handshake is Handshake.DONE and not bridge.handshaking
    counters = bridge.counters
    assert (counters.commands, counters.fallback_base, counters.fallback_zero) == (1, 0, 0)
    expected, _, _ = twin_run(7, [PUSH_RIGHT])
    np.testing.assert_array_equal(bridge.observation(), expected[1])
    # From step 1 on, the normal rules: the answering residual node gets
    # response_timeout_s from the observation, the base action's arrival changes nothing.
    bridge.offer_base(0, 1, PUSH_LEFT, now=101.0)
    assert bridge.deadline() == pytest.approx(100.85 + bridge.config.resend_period_s)
    assert bridge.poll(now=101.05) is Due.WAIT


def test_handshake_never_falls_back_before_its_timeout_then_applies_the_normal_rules():
    bridge = make_bridge(
        handshake_period_s=0.5, startup_timeout_s=2.0, step_timeout_s=1.0, command_timeout_s=0.05
    )
    bridge.begin(now=0.0, command_publishers=2)
    bridge.offer_base(0, 0, PUSH_LEFT, now=0.01)
    dues = []
    now = 0.0
    while bridge.handshaking:  # follow the deadlines, as the node's timer does
        now = bridge.deadline()
        dues.append((now, bridge.poll(now)))
    # Re-sends at 0.5, 1.0, 1.5; at 2.0 the handshake gives up (the step limit of 1 s and
    # the base action's 50 ms are long past, so the base action is applied at once).
    assert [t for t, _ in dues] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert [d for _, d in dues] == [Due.RESEND] * 3 + [Due.STEP]
    assert bridge.handshake is Handshake.TIMED_OUT
    assert bridge.counters.handshake_resends == 3
    assert bridge.advance(now=2.0).source is Source.BASE
    assert bridge.counters.fallback_base == 1
    assert bridge.handshake is Handshake.TIMED_OUT


def test_handshake_timeout_without_any_action_gives_the_zero_action_by_the_normal_rule():
    bridge = make_bridge(handshake_period_s=0.3, startup_timeout_s=0.5, step_timeout_s=1.0)
    bridge.begin(now=0.0, command_publishers=1)
    assert bridge.poll(now=0.3) is Due.RESEND
    assert bridge.deadline() == pytest.approx(0.5)
    assert bridge.poll(now=0.5) is Due.WAIT  # timed out; step_timeout_s runs from 0.0
    assert bridge.handshake is Handshake.TIMED_OUT and not bridge.handshaking
    assert bridge.deadline() == pytest.approx(1.0)
    assert bridge.poll(now=1.0) is Due.STEP
    assert bridge.advance(now=1.0).source is Source.ZERO


def test_no_handshake_without_a_command_publisher_base_action_applied_at_once():
    bridge = make_bridge(response_timeout_s=3.0, resend_period_s=5.0)
    bridge.begin(now=0.0, command_publishers=0)
    assert bridge.handshake is Handshake.OFF and not bridge.command_source_present
    assert bridge.deadline() == pytest.approx(3.0)  # waits for the controller, no re-send
    bridge.offer_base(0, 0, PUSH_RIGHT, now=0.001)
    assert bridge.ready() and bridge.poll(now=0.001) is Due.STEP
    assert bridge.advance(now=0.001).source is Source.BASE
    assert bridge.counters.handshake_resends == 0


def _run_on_base(bridge: SimBridge, commands_at: tuple[int, ...] = ()) -> None:
    """Step one episode: a command at the steps in ``commands_at``; at the others the
    command publisher has gone, so the base action is applied at once."""
    for k in range(STEPS):
        assert bridge.command_path_problem() is None  # not finished yet
        if k in commands_at:
            bridge.offer_command(0, k, PUSH_LEFT, now=0.001)
        else:
            bridge.command_source_present = False
        bridge.offer_base(0, k, PUSH_RIGHT, now=0.001)
        assert bridge.ready()
        bridge.advance(now=0.002)
    assert bridge.finished


def test_a_run_with_a_command_publisher_but_no_applied_command_is_a_problem():
    bridge = make_bridge(episodes=1)
    bridge.begin(now=0.0, command_publishers=1)
    _run_on_base(bridge)  # the publisher went away: every step on the base
    problem = bridge.command_path_problem()
    assert problem is not None
    assert problem.startswith(f'not one of the {STEPS} steps applied a command although')
    assert f'fallbacks base {STEPS} zero 0' in problem


def test_a_silent_command_publisher_that_stays_on_the_graph_is_a_problem():
    bridge = make_bridge(episodes=1, handshake_period_s=0.2, startup_timeout_s=0.5)
    bridge.begin(now=0.0, command_publishers=1)  # it stays there and never answers
    now = 0.0
    while not bridge.finished:
        bridge.offer_base(0, bridge.step, PUSH_RIGHT, now=now)
        now = bridge.deadline()  # follow the deadlines, as the node's timer does
        if bridge.poll(now) is Due.STEP:
            bridge.advance(now)
    assert bridge.command_source_present and bridge.counters.fallback_base == STEPS
    assert 'not one of the 4 steps applied a command' in bridge.command_path_problem()


def test_a_run_without_base_actions_either_names_the_controller_not_the_command_path():
    """The residual node answers a step only with its base action: when no valid base
    action came (a broken controller), the problem says so and that the zero action ran."""
    bridge = make_bridge(episodes=1, handshake_period_s=0.2, startup_timeout_s=0.5)
    bridge.begin(now=0.0, command_publishers=1)
    now = 0.0
    while not bridge.finished:  # neither a command nor a base action ever comes
        now = bridge.deadline()
        if bridge.poll(now) is Due.STEP:
            bridge.advance(now)
    assert bridge.counters.fallback_zero == STEPS
    problem = bridge.command_path_problem()
    assert f'no valid base action came for {STEPS} of them either' in problem
    assert 'the base controller is the first suspect' in problem
    assert 'measured the zero action, not the residual' in problem


def _realtime_run(answer) -> SimBridge:
    """Three realtime episodes at 25 Hz with a command publisher on the graph; after each
    tick ``answer(bridge, now)`` offers what the nodes send. Returns the finished bridge."""
    bridge = make_bridge(episodes=3, mode=REALTIME, max_command_age_steps=1)
    bridge.begin(now=0.0, command_publishers=1)
    k = 0
    while not bridge.finished:
        k += 1
        bridge.advance(now=0.04 * k)
        if not bridge.finished:
            answer(bridge, 0.04 * k + 0.001)
    return bridge


def test_a_realtime_run_whose_answers_all_came_too_late_says_so():
    """push.launch.py mode:=realtime with discrete_mpc_push (~70 ms a step here, 40 ms
    ticks): every base action and command came steps late and was rejected as stale, and
    the exit-3 line sent the user to the controller's log, which said nothing."""

    def behind(bridge: SimBridge, now: float) -> None:  # answers two ticks behind: stale
        if bridge.step >= 2:
            bridge.offer_base(bridge.episode, bridge.step - 2, PUSH_RIGHT, now=now)
            bridge.offer_command(bridge.episode, bridge.step - 2, PUSH_RIGHT, now=now)

    bridge = _realtime_run(behind)
    c = bridge.counters
    assert c.fallback_zero == c.steps == 3 * STEPS and 4 * c.rejected_stale >= c.steps, c
    problem = bridge.command_path_problem()
    assert c.behind_base == 6  # the base actions of steps already past (not the commands)
    assert 'base actions came for steps already past: the controller answers slower than ' in (
        problem
    ), problem
    assert 'tick of 40 ms' in problem and 'mode:=lockstep' in problem
    assert 'its log says why' not in problem


def test_answers_stamped_ahead_are_not_taken_for_a_slow_controller():
    """Stale answers stamped ahead of the bridge (wrong stamps, not a slow node) got the
    'answers slower than the realtime tick, run it in lockstep' hint, which cannot help."""
    bridge = _realtime_run(
        lambda bridge, now: bridge.offer_base(bridge.episode, bridge.step + 1, PUSH_RIGHT, now)
    )
    c = bridge.counters
    assert c.rejected_stale >= c.steps - 3 and c.behind_base == 0, c
    problem = bridge.command_path_problem()
    assert 'its log says why' in problem and 'already past' not in problem, problem


def test_a_run_that_no_node_answered_is_a_problem():
    """A sim bridge that no node heard (every other node in another namespace or remap):
    no command publisher, no base action, every step the zero action, and exit 0 (the
    no-result rule needed a command publisher on the graph)."""
    bridge = make_bridge(episodes=1, step_timeout_s=0.01)
    bridge.begin(now=0.0, command_publishers=0)
    now = 0.0
    while not bridge.finished:
        now = bridge.deadline()
        if bridge.poll(now) is Due.STEP:
            bridge.advance(now)
    assert bridge.counters.fallback_zero == STEPS
    problem = bridge.command_path_problem()
    assert problem.startswith(f'every one of the {STEPS} steps fell back to the zero action')
    assert 'no node of the stack heard this bridge' in problem


def test_realtime_commands_applied_a_tick_late_are_applied_commands():
    bridge = make_bridge(episodes=1, mode=REALTIME, max_command_age_steps=1)
    bridge.begin(now=0.0, command_publishers=1)
    sources = []
    for k in range(STEPS):  # command k always arrives just after tick k: held at k + 1
        sources.append(bridge.advance(now=0.04 * (k + 1)).source)
        bridge.offer_command(0, k, PUSH_RIGHT, now=0.04 * (k + 1) + 0.001)
    assert sources == [Source.ZERO] + [Source.HELD] * (STEPS - 1)
    assert bridge.finished and bridge.counters.commands == 0
    assert bridge.command_path_problem() is None


def test_a_base_only_run_or_one_with_some_commands_is_no_problem():
    bridge = make_bridge(episodes=1)
    bridge.begin(now=0.0, command_publishers=0)  # no residual node at all: on purpose
    _run_on_base(bridge)
    assert bridge.command_path_problem() is None
    bridge = make_bridge(episodes=1)
    bridge.begin(now=0.0, command_publishers=1)
    _run_on_base(bridge, commands_at=(0, 1))  # two commands, then its publisher went away
    assert bridge.counters.commands == 2
    assert bridge.command_path_problem() is None  # half the steps: some fallbacks


def test_a_run_that_fell_back_at_most_steps_is_a_problem():
    """One command, then the command path went away: the run measured the base controller
    at 3 steps of 4 and exited 0 (only a run without any command was a problem)."""
    bridge = make_bridge(episodes=1)
    bridge.begin(now=0.0, command_publishers=1)
    _run_on_base(bridge, commands_at=(0,))
    assert bridge.counters.commands == 1
    problem = bridge.command_path_problem()
    assert problem is not None and problem.startswith(
        f'{STEPS - 1} of the {STEPS} steps fell back, most of them to the base action'
    ), problem
    assert 'only 1 applied a command' in problem and 'measured mostly the fallback' in problem


@pytest.mark.parametrize(
    ('expect_model', 'tags', 'problem'),
    [
        (True, ('base',) * STEPS, True),  # the residual node passed the base through
        # The model gave 1 command of 4: the run measured mostly the base (it was no problem)
        (True, ('base', COMMAND_FROM_RESIDUAL, 'base', 'base'), True),
        (True, ('base', COMMAND_FROM_RESIDUAL, COMMAND_FROM_RESIDUAL, 'base'), False),  # half
        (False, ('base',) * STEPS, False),  # no model was asked for
    ],
    ids=['no-model-command', 'one-model-command', 'half-model-commands', 'not-expected'],
)
def test_a_run_that_expected_a_model_but_got_none_of_its_commands_is_a_problem(
    expect_model, tags, problem
):
    bridge = make_bridge(episodes=1, expect_model=expect_model)
    bridge.begin(now=0.0, command_publishers=1)
    for k, tag in enumerate(tags):
        assert bridge.model_problem() is None  # not finished yet
        assert bridge.offer_command(0, k, PUSH_LEFT, now=0.001, source=tag) is None
        bridge.offer_base(0, k, PUSH_RIGHT, now=0.001)
        bridge.advance(now=0.002)
    assert bridge.finished and bridge.counters.commands == STEPS
    assert bridge.command_path_problem() is None  # commands were applied: the path works
    found = bridge.model_problem()
    assert (found is not None) == problem
    if problem and COMMAND_FROM_RESIDUAL in tags:
        assert found.startswith(f'only 1 of the {STEPS} applied commands came from the residual')
        assert 'measured mostly the base controller' in found
    elif problem:
        assert found.startswith(f'not one of the {STEPS} steps got a command from the residual')


def test_handshake_ends_when_the_command_publisher_goes_away():
    bridge = make_bridge(handshake_period_s=0.2)
    bridge.begin(now=0.0, command_publishers=1)
    bridge.offer_base(0, 0, PUSH_RIGHT, now=0.01)
    assert bridge.poll(now=0.2) is Due.RESEND
    bridge.command_source_present = False  # the node saw the only command publisher go
    assert not bridge.handshaking
    assert bridge.ready() and bridge.poll(now=0.25) is Due.STEP
    assert bridge.advance(now=0.25).source is Source.BASE
    assert bridge.handshake is Handshake.ABANDONED


def test_realtime_has_no_handshake():
    bridge = make_bridge(mode=REALTIME)
    bridge.begin(now=0.0, command_publishers=1)
    assert bridge.handshake is Handshake.OFF
    assert bridge.advance(now=0.04).source is Source.ZERO


@pytest.mark.parametrize(
    ('episode', 'step', 'values', 'kind'),
    [
        (0, 0, np.array([np.nan, 0.0, 0.0, 0.0]), 'malformed'),
        (0, 0, np.array([0.0, np.inf, 0.0, 0.0]), 'malformed'),
        (0, 0, np.zeros(3), 'malformed'),
        (0, 0, np.zeros(5), 'malformed'),
        (1, 0, PUSH_RIGHT, 'stale'),
        (0, 1, PUSH_RIGHT, 'stale'),
    ],
)
def test_bad_commands_and_base_actions_are_rejected_and_never_applied(episode, step, values, kind):
    bridge = make_bridge(seed=5)
    bridge.begin(now=0.0)
    for offer in (bridge.offer_command, bridge.offer_base):
        rejection = offer(episode, step, values, now=0.0)
        assert rejection is not None and rejection.kind == kind
        assert str(step) in rejection.reason or 'non-finite' in rejection.reason
    counters = bridge.counters
    assert (counters.rejected_malformed, counters.rejected_stale) == (
        (2, 0) if kind == 'malformed' else (0, 2)
    )
    assert not bridge.ready()
    assert bridge.advance(now=1.0).source is Source.ZERO
    expected, _, _ = twin_run(5, [np.zeros(4)])
    np.testing.assert_array_equal(bridge.observation(), expected[1])
    assert np.isfinite(bridge.observation()).all()


def test_out_of_range_command_is_clipped_to_the_action_bounds():
    bridge = make_bridge(seed=2)
    bridge.begin(now=0.0)
    bridge.offer_command(0, 0, np.array([7.0, 0.0, -3.0, 0.0]), now=0.0)
    bridge.advance(now=0.0)
    expected, _, _ = twin_run(2, [np.array([1.0, 0.0, -1.0, 0.0])])
    np.testing.assert_array_equal(bridge.observation(), expected[1])


def test_realtime_holds_fresh_commands_then_falls_back():
    bridge = make_bridge(mode=REALTIME, max_command_age_steps=1)
    bridge.begin(now=0.0)
    assert bridge.advance(now=0.04).source is Source.ZERO  # nothing arrived in time
    assert bridge.offer_command(0, 0, PUSH_RIGHT, now=0.05) is None  # late but fresh
    assert bridge.offer_base(0, 1, PUSH_LEFT, now=0.05) is None
    assert bridge.choose()[1] is Source.HELD
    assert bridge.advance(now=0.08).source is Source.HELD  # step 1 uses command of step 0
    # At step 2 the command of step 0 is too old; the base action of step 1 is fresh.
    action, source = bridge.choose()
    assert source is Source.BASE
    np.testing.assert_array_equal(action, PUSH_LEFT)
    assert bridge.offer_command(0, 0, PUSH_RIGHT, now=0.09).kind == 'stale'
    assert bridge.advance(now=0.12).source is Source.BASE
    counters = bridge.counters
    assert (counters.held, counters.fallback_base, counters.fallback_zero) == (1, 1, 1)
    assert counters.rejected_stale == 1


def test_realtime_keeps_the_newest_command():
    bridge = make_bridge(mode=REALTIME)
    bridge.begin(now=0.0)
    bridge.advance(now=0.04)
    assert bridge.offer_command(0, 1, PUSH_LEFT, now=0.05) is None
    rejection = bridge.offer_command(0, 0, PUSH_RIGHT, now=0.06)  # older than the held one
    assert rejection is not None and rejection.kind == 'stale'
    action, source = bridge.choose()
    assert source is Source.COMMAND
    np.testing.assert_array_equal(action, PUSH_LEFT)


def test_episode_results_and_seed_rule_over_two_episodes():
    bridge = make_bridge(seed=11, episodes=2, step_timeout_s=0.1)
    bridge.begin(now=0.0)
    # Episode 0: command, base fallback, zero fallback, command.
    sources_0 = [Source.COMMAND, Source.BASE, Source.ZERO, Source.COMMAND]
    applied_0 = [PUSH_RIGHT, PUSH_LEFT, np.zeros(4), PUSH_RIGHT]
    results = []
    for k, source in enumerate(sources_0):
        if source is Source.COMMAND:
            bridge.offer_command(0, k, applied_0[k], now=0.0)
        elif source is Source.BASE:
            bridge.offer_base(0, k, applied_0[k], now=0.0)
        outcome = bridge.advance(now=0.0)
        assert outcome.source is source
        results.append(outcome.result)
    assert results[:-1] == [None] * (STEPS - 1)
    result = results[-1]
    _, total, info = twin_run(11, applied_0)
    assert result.episode == 0 and result.steps == STEPS
    assert result.episode_return == pytest.approx(total)
    assert result.final_distance == pytest.approx(info['distance'])
    assert result.success == bool(info['is_success'])
    assert (result.fallback_base, result.fallback_zero) == (1, 1)
    vector = result.as_vector()
    assert vector.shape == (len(EPISODE_FIELDS),)
    assert dict(zip(EPISODE_FIELDS, vector, strict=True))['steps'] == STEPS
    # Episode 1 is reset with seed 11 + 1, and its counts start from zero.
    assert (bridge.episode, bridge.step) == (1, 0)
    expected_1, _, _ = twin_run(12, [])
    np.testing.assert_array_equal(bridge.observation(), expected_1[0])
    assert bridge.offer_command(0, STEPS - 1, PUSH_RIGHT, now=0.0).kind == 'late'
    for k in range(STEPS):
        bridge.offer_command(1, k, PUSH_RIGHT, now=0.0)
        outcome = bridge.advance(now=0.0)
    assert outcome.finished and bridge.finished
    assert outcome.result.episode == 1
    assert (outcome.result.fallback_base, outcome.result.fallback_zero) == (0, 0)
    assert bridge.counters.episodes == 2 and bridge.counters.steps == 2 * STEPS
    assert not bridge.ready()
    with pytest.raises(RuntimeError, match='last episode'):
        bridge.advance(now=0.0)


def test_episodes_zero_runs_forever():
    bridge = make_bridge(episodes=0, mode=REALTIME)
    bridge.begin(now=0.0)
    for _ in range(3 * STEPS):
        outcome = bridge.advance(now=0.0)
    assert not outcome.finished and bridge.episode == 3 and bridge.step == 0


def test_startup_waits_for_subscribers_and_command_publisher_then_times_out():
    config = SimBridgeConfig(min_subscribers=2, startup_timeout_s=5.0)
    assert startup_decision(2, 1, 0.1, config) == 'ready'
    assert startup_decision(1, 1, 0.1, config) is None
    assert startup_decision(2, 0, 4.9, config) is None
    assert startup_decision(2, 0, 5.0, config) == 'timeout'


def test_check_payload_names_the_problem():
    assert check_payload(np.zeros(4), 4) is None
    assert 'expected 4 values' in check_payload(np.zeros(2), 4)
    assert 'non-finite' in check_payload(np.array([0.0, np.nan]), 2)


def test_yaml_defaults_match_the_config_dataclass(repo_root: pathlib.Path):
    data = yaml.safe_load((repo_root / 'config' / 'sim_bridge.yaml').read_text())
    params = data['/**/sim_bridge']['ros__parameters']
    defaults = {f.name: f.default for f in dataclasses.fields(SimBridgeConfig)}
    assert params == defaults
    assert SimBridgeConfig().mode == LOCKSTEP


def test_the_config_files_name_the_classes_where_they_are_defined(repo_root: pathlib.Path):
    # A comment 'Mirrors the defaults of pkg.module.Class' must name the defining module
    # (before: sim_bridge.yaml named rpl_sim_bridge.bridge, which only re-exports it).
    import importlib
    import re

    named = []
    for path in sorted((repo_root / 'config').glob('*.yaml')):
        comments = ' '.join(line for line in path.read_text().splitlines() if line[:1] == '#')
        for module, name in re.findall(r'\b(rpl_\w+(?:\.\w+)*)\.([A-Z]\w*)', comments):
            cls = getattr(importlib.import_module(module), name)
            assert cls.__module__ == module, f'{path.name}: {module}.{name} is {cls.__module__}'
            named.append(name)
    assert 'SimBridgeConfig' in named


def test_base_action_for_a_step_already_taken_is_late_not_stale():
    bridge = make_bridge()
    bridge.begin(now=0.0)
    assert bridge.offer_command(0, 0, PUSH_RIGHT, now=0.001) is None
    bridge.advance(now=0.002)
    late = bridge.offer_base(0, 0, PUSH_LEFT, now=0.003)  # command 0 beat base action 0
    assert late is not None and late.kind == 'late'
    assert bridge.counters.late_base == 1 and bridge.counters.rejected_stale == 0
    future = bridge.offer_base(0, 3, PUSH_LEFT, now=0.004)  # a future step is still stale
    assert future is not None and future.kind == 'stale'
    assert bridge.counters.rejected_stale == 1
    # ... and says why: an answer stamped ahead of its observation (a controller answering
    # observation k as step k + 1 had every action applied a step late; "does not match")
    assert 'is for a step the bridge has not observed yet (it is at step 1)' in future.reason


# --- lockstep response waits: no fallback while a live node is on its way ---------------
def test_a_late_base_action_of_a_live_controller_is_waited_for_never_zero():
    """Issue 9 (frozen residual node): a stopped process can block other nodes' publish
    calls; the controller's base action then arrives after step_timeout_s. While the
    controller is on the graph the step waits for it (up to response_timeout_s) instead of
    applying zero; the limits run from when the observation's publish call returned."""
    bridge = make_bridge(seed=4, step_timeout_s=1.0, response_timeout_s=5.0)
    bridge.begin(now=0.0, command_publishers=1)
    assert bridge.offer_command(0, 0, PUSH_RIGHT, now=0.01) is None  # handshake done
    bridge.advance(now=0.01)
    bridge.observation_sent(3.0)  # the publish call of observation 1 blocked for 3 s
    assert bridge.poll(now=3.0) is Due.WAIT  # before: the zero action at once
    assert bridge.deadline() == pytest.approx(4.0)  # the first re-send
    assert bridge.poll(now=4.0) is Due.RESEND  # step_timeout_s after the publish: a re-send
    assert bridge.offer_base(0, 1, PUSH_LEFT, now=4.2) is None
    assert bridge.poll(now=4.3) is Due.WAIT  # the residual node is answering: its command
    assert bridge.offer_command(0, 1, PUSH_LEFT, now=4.4) is None
    assert bridge.poll(now=4.4) is Due.STEP
    assert bridge.advance(now=4.4).source is Source.COMMAND
    counters = bridge.counters
    assert (counters.fallback_base, counters.fallback_zero, counters.response_timeouts) == (
        0,
        0,
        0,
    )
    expected, _, _ = twin_run(4, [PUSH_RIGHT, PUSH_LEFT])
    np.testing.assert_array_equal(bridge.observation(), expected[2])


def test_a_slow_residual_node_under_load_still_commands_every_step():
    """Machine load: the command comes 0.3 s after the base action (six times the old
    50 ms limit); lockstep applies it, so the episode equals the idle one."""
    bridge = make_bridge(seed=6)
    bridge.begin(now=0.0, command_publishers=1)
    actions = [PUSH_RIGHT, PUSH_LEFT, PUSH_RIGHT, PUSH_LEFT]
    now = 0.0
    for k, action in enumerate(actions):
        bridge.offer_base(0, k, PUSH_LEFT, now=now + 0.01)
        assert bridge.poll(now=now + 0.01 + 0.05) is Due.WAIT
        now += 0.31
        assert bridge.offer_command(0, k, action, now=now) is None
        assert bridge.poll(now=now) is Due.STEP
        outcome = bridge.advance(now=now)
        assert outcome.source is Source.COMMAND
    assert outcome.result is not None and outcome.result.fallback_base == 0
    _, total, _ = twin_run(6, actions)
    assert outcome.result.episode_return == pytest.approx(total)


def test_a_hung_residual_node_costs_one_response_timeout_then_command_timeout_per_step():
    bridge = make_bridge(response_timeout_s=2.0, command_timeout_s=0.05)
    bridge.begin(now=0.0, command_publishers=1)
    bridge.offer_command(0, 0, PUSH_RIGHT, now=0.01)
    bridge.advance(now=0.01)  # handshake done: the residual node answered once
    bridge.offer_base(0, 1, PUSH_LEFT, now=0.02)
    assert bridge.deadline() == pytest.approx(1.01)  # resend_period_s
    assert bridge.poll(now=1.01) is Due.RESEND
    assert bridge.deadline() == pytest.approx(2.01)
    assert bridge.poll(now=2.01) is Due.STEP
    assert bridge.advance(now=2.01).source is Source.BASE
    assert bridge.silenced == ('command',) and bridge.command_silent
    assert bridge.counters.response_timeouts == 1
    bridge.offer_base(0, 2, PUSH_LEFT, now=2.02)
    assert bridge.deadline() == pytest.approx(2.07)  # silent: command_timeout_s
    assert bridge.advance(now=2.07).source is Source.BASE
    assert bridge.silenced == ()
    # It answers again: from the next step on it is waited for again.
    bridge.offer_base(0, 3, PUSH_LEFT, now=2.08)
    assert bridge.offer_command(0, 3, PUSH_RIGHT, now=2.09) is None
    assert not bridge.command_silent
    assert bridge.advance(now=2.09).source is Source.COMMAND
    assert bridge.deadline() == pytest.approx(2.09 + 1.0)  # awaited again: first re-send


def test_a_dead_controller_still_on_the_graph_costs_one_response_timeout_then_step_timeout():
    bridge = make_bridge(response_timeout_s=2.0, step_timeout_s=0.5, resend_period_s=5.0)
    bridge.begin(now=0.0, command_publishers=0)
    assert bridge.deadline() == pytest.approx(2.0)
    assert bridge.advance(now=2.0).source is Source.ZERO
    assert bridge.silenced == ('base',) and bridge.base_silent
    assert bridge.deadline() == pytest.approx(2.5)  # silent: step_timeout_s
    assert bridge.advance(now=2.5).source is Source.ZERO
    assert bridge.offer_base(0, 2, PUSH_LEFT, now=2.6) is None  # respawned, answers
    assert not bridge.base_silent
    assert bridge.advance(now=2.6).source is Source.BASE
    assert bridge.deadline() == pytest.approx(4.6)
    assert (bridge.counters.fallback_zero, bridge.counters.response_timeouts) == (2, 1)


def test_invalid_or_foreign_actions_never_clear_a_valid_one_and_a_later_valid_one_wins():
    """Forged messages (NaN for the current step, other step ids) neither clear an
    accepted action nor block the real one that follows."""
    bridge = make_bridge(seed=8)
    bridge.begin(now=0.0, command_publishers=1)
    assert bridge.offer_base(0, 0, PUSH_LEFT, now=0.01) is None
    assert bridge.offer_base(0, 0, np.full(4, np.nan), now=0.02).kind == 'malformed'
    assert bridge.offer_base(3, 9, PUSH_RIGHT, now=0.03).kind == 'stale'
    assert bridge.offer_command(0, 0, np.array([np.nan, 0, 0, 0]), now=0.04).kind == 'malformed'
    assert bridge.offer_command(0, 5, PUSH_LEFT, now=0.05).kind == 'stale'
    assert not bridge.ready()
    action, source = bridge.choose()
    assert source is Source.BASE  # the valid base action is still there
    np.testing.assert_array_equal(action, PUSH_LEFT)
    assert bridge.offer_command(0, 0, PUSH_RIGHT, now=0.06) is None  # the real command
    assert bridge.advance(now=0.06).source is Source.COMMAND
    expected, _, _ = twin_run(8, [PUSH_RIGHT])
    np.testing.assert_array_equal(bridge.observation(), expected[1])


def test_a_lost_message_of_a_live_node_is_recovered_by_re_sending_the_observation():
    """A reader that was stopped can lose a message for good (the residual node drops an
    observation that waited sync_timeout_s for its base action). While a live node is
    awaited, the observation is re-sent every resend_period_s, with the same values, from
    the first publication on; the limits still run from the first publication."""
    bridge = make_bridge(seed=9, resend_period_s=0.5, response_timeout_s=1.6)
    bridge.begin(now=0.0, command_publishers=1)
    bridge.offer_command(0, 0, PUSH_RIGHT, now=0.01)
    bridge.advance(now=0.01)
    bridge.observation_sent(0.02)
    first = bridge.observation()
    bridge.offer_base(0, 1, PUSH_LEFT, now=0.03)
    dues = []
    for _ in range(3):
        now = bridge.deadline()
        dues.append((round(now, 3), bridge.poll(now)))
        np.testing.assert_array_equal(bridge.observation(), first)
    assert dues == [(0.52, Due.RESEND), (1.02, Due.RESEND), (1.52, Due.RESEND)]
    assert bridge.counters.resends == 3
    assert bridge.offer_command(0, 1, PUSH_LEFT, now=1.55) is None  # the answer to it
    assert bridge.poll(now=1.55) is Due.STEP
    assert bridge.advance(now=1.55).source is Source.COMMAND
    # Re-sent answers for the step just taken are late, not stale (no log line).
    assert bridge.offer_command(0, 1, PUSH_LEFT, now=1.56).kind == 'late'
    assert bridge.counters.fallback_base == bridge.counters.fallback_zero == 0


class _PlanarReach:
    """A point moved in the plane by (vx, vy) towards a goal named by the spec's goal_fields:
    (x, y), or none (a fixed goal at the origin: no goal parts in the observation); the
    actions applied are kept."""

    def __init__(self, goal_fields: tuple[str, ...]) -> None:
        self.spec = TaskSpec(
            name='planar_reach',
            description='a point moved in the plane towards a goal (bridge test)',
            obs_dim=2,
            goal_dim=len(goal_fields),
            action_dim=2,
            max_episode_steps=2,
            distance_threshold=0.05,
            obs_fields=('point.x', 'point.y'),
            action_low=-1.0,
            action_high=1.0,
            control_dt=0.04,
            action_fields=('vx', 'vy'),
            goal_fields=goal_fields,
        )
        self.point = np.zeros(2)
        self.applied: list[np.ndarray] = []

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {'observation': self.point.copy()}
        if self.spec.goal_dim:
            obs.update(achieved_goal=self.point.copy(), desired_goal=np.array([0.3, -0.1]))
        return obs

    def reset(self, seed=None):
        self.point = np.zeros(2)
        return self._obs(), {}

    def step(self, action):
        self.applied.append(np.array(action))
        self.point = self.point + 0.1 * np.asarray(action)
        return self._obs(), 0.0, False, False, {'is_success': 0.0, 'distance': 1.0}


def test_the_core_decodes_actions_under_the_task_s_declared_fields():
    # Not Fetch's (dx, dy, dz, gripper): the names and size come from the task spec.
    task = _PlanarReach(('x', 'y'))
    bridge = SimBridge(task, task.spec, SimBridgeConfig(seed=1))
    assert bridge.action_fields == ('vx', 'vy')
    bridge.begin(now=0.0)

    def message(values, fields) -> JointState:
        return encode(JointState(), StampedVector(0, 0, np.array(values), 5, 'residual'), fields)

    vec = bridge.decode_action(message([0.5, -0.25], ('vx', 'vy')))
    assert (vec.episode, vec.step, vec.tag) == (0, 0, 'residual')
    with pytest.raises(MessageError, match=r"expected 2 fields \['vx', 'vy'\]"):
        bridge.decode_action(message([0.0, 0.0, 0.0, 0.0], ('dx', 'dy', 'dz', 'gripper')))
    assert bridge.offer_command(0, 0, np.zeros(4), now=0.0).kind == 'malformed'
    assert bridge.offer_command(vec.episode, vec.step, vec.values, now=0.0) is None
    assert bridge.advance(now=0.0).source is Source.COMMAND
    np.testing.assert_array_equal(task.applied[-1], [0.5, -0.25])
    np.testing.assert_allclose(bridge.observation()[:2], [0.05, -0.025])


# --- the terminal observation o_T ---------------------------------------------------------
@pytest.mark.parametrize('mode', [LOCKSTEP, REALTIME])
def test_each_episode_ends_with_its_terminal_observation_then_the_next_starts(mode):
    """After step T - 1 the outcome carries o_T (the state the episode ended in, as the
    task stepped directly reports it) with the result; the next episode starts as before
    and nothing waits on o_T."""
    bridge = make_bridge(seed=5, episodes=2, mode=mode)
    bridge.begin(now=0.0)
    layout = bridge.layout
    for episode in range(2):
        actions = [PUSH_RIGHT, PUSH_LEFT, PUSH_RIGHT, PUSH_RIGHT]
        expected, _, info = twin_run(5 + episode, actions)
        for k, action in enumerate(actions):
            assert bridge.offer_command(episode, k, action, now=0.0) is None
            outcome = bridge.advance(now=0.0)
            assert outcome.source is Source.COMMAND
            if k < STEPS - 1:
                assert outcome.result is None and outcome.terminal is None
        assert outcome.result.steps == STEPS
        np.testing.assert_array_equal(outcome.terminal, expected[STEPS])
        achieved = outcome.terminal[layout.achieved_goal]
        desired = outcome.terminal[layout.desired_goal]
        assert np.linalg.norm(achieved - desired) == pytest.approx(outcome.result.final_distance)
        assert outcome.result.final_distance == pytest.approx(info['distance'])
        assert outcome.finished is (episode == 1)
        if episode == 0:
            assert (bridge.episode, bridge.step) == (1, 0)
            np.testing.assert_array_equal(bridge.observation(), twin_run(6, [])[0][0])
            outcome.terminal[:] = 0.0  # a copy: the bridge's observation is its own
            assert np.abs(bridge.observation()).sum() > 0.0
    counters = bridge.counters
    assert counters.fallback_base == counters.fallback_zero == counters.response_timeouts == 0
    assert counters.resends == counters.handshake_resends == 0


@pytest.mark.parametrize('mode', [LOCKSTEP, REALTIME])
def test_an_answer_to_the_terminal_observation_is_counted_and_changes_nothing(mode):
    """A controller or residual node that answers o_T (episode e, step T) anyway: the
    answer is rejected as 'terminal' (counted, never applied, no late/stale count), and the
    next episode's step 0 still needs its own action."""
    bridge = make_bridge(episodes=3, mode=mode)
    bridge.begin(now=0.0)
    for k in range(STEPS):
        bridge.offer_command(0, k, PUSH_RIGHT, now=0.0)
        outcome = bridge.advance(now=1.0)
    assert outcome.result is not None and outcome.terminal is not None
    deadline = bridge.deadline()
    for offer in (bridge.offer_command, bridge.offer_base):
        rejection = offer(0, STEPS, PUSH_LEFT, now=1.01)
        assert rejection is not None and rejection.kind == 'terminal'
    counters = bridge.counters
    assert counters.terminal_answers == 2
    assert counters.late_commands == counters.late_base == counters.rejected_stale == 0
    assert not bridge.ready()
    assert bridge.choose()[1] is Source.ZERO  # nothing of episode 0 is held into episode 1
    if mode == LOCKSTEP:
        assert bridge.deadline() == deadline  # still measured from observation 0
        assert not bridge.command_silent and not bridge.base_silent
    assert bridge.offer_command(1, 0, PUSH_LEFT, now=1.02) is None
    assert bridge.advance(now=1.03).source is Source.COMMAND


def test_the_last_episode_s_terminal_observation_comes_with_the_finished_outcome():
    bridge = make_bridge(seed=2, episodes=1)
    bridge.begin(now=0.0)
    for k in range(STEPS):
        bridge.offer_command(0, k, PUSH_LEFT, now=0.0)
        outcome = bridge.advance(now=0.0)
    assert outcome.finished and outcome.result.steps == STEPS
    expected, _, _ = twin_run(2, [PUSH_LEFT] * STEPS)
    np.testing.assert_array_equal(outcome.terminal, expected[STEPS])
    rejection = bridge.offer_base(0, STEPS, PUSH_LEFT, now=0.0)
    assert rejection is not None and rejection.kind == 'terminal'
    assert bridge.poll(now=100.0) is Due.WAIT


@pytest.mark.parametrize('goal_fields', [('x', 'y'), ()], ids=['planar goal', 'fixed goal'])
def test_the_observation_names_its_goal_by_the_task_s_goal_fields(goal_fields):
    task = _PlanarReach(goal_fields)
    bridge = SimBridge(task, task.spec, SimBridgeConfig(episodes=1))
    expected = (
        'point.x',
        'point.y',
        *(f'achieved_goal.{g}' for g in goal_fields),
        *(f'desired_goal.{g}' for g in goal_fields),
    )
    assert bridge.layout.fields == expected == observation_layout(task.spec).fields
    assert bridge.layout.goal_dim == len(goal_fields)
    bridge.begin(now=0.0)
    for k in range(2):
        assert bridge.offer_command(0, k, np.array([1.0, 0.5]), now=0.0) is None
        outcome = bridge.advance(now=0.0)
    assert outcome.finished
    goal = [0.2, 0.1, 0.3, -0.1] if goal_fields else []
    np.testing.assert_allclose(outcome.terminal, [0.2, 0.1, *goal])
