"""ResidualMixer: pairing by step, exactly-once decisions, every fallback rule, hot reload."""

from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest
from helpers import reload_model, replace_model, set_model_metadata
from onnx_builders import (
    OBS_DIM,
    corrupt_file,
    fragile_model,
    known_weights,
    linear_model,
    nan_model,
    truncated_file,
)

from rpl_residual_node import decision as dec
from rpl_residual_node import mixer as m
from rpl_residual_node import step_pairing as pairing
from rpl_residual_node.mixing import GainRamp, ResidualConfig, mix


class FakeClock:
    """Monotonic seconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_mixer(path: pathlib.Path | str = '', clock=None, **config) -> m.ResidualMixer:
    cfg = ResidualConfig(model_path=str(path), **config)
    return m.ResidualMixer(cfg, clock=clock or FakeClock())


OBS = np.linspace(-0.5, 0.5, OBS_DIM)
GOAL = np.array([0.3, -0.2, 0.1])
BASE = np.array([0.5, -0.5, 0.9, -1.0])


def expected_command(base=BASE, obs=OBS, goal=GOAL, weights=None, config=None):
    weights = known_weights() if weights is None else weights
    return mix(base, weights @ np.r_[obs, goal], config or ResidualConfig())


def step(mixer, episode, k, obs=OBS, goal=GOAL, base=BASE, base_first=False):
    """Feed one step's pair; return the decision (which must come from the second message)."""
    if base_first:
        assert mixer.add_base_action(episode, k, base) is None
        return mixer.add_observation(episode, k, obs, goal)
    assert mixer.add_observation(episode, k, obs, goal) is None
    return mixer.add_base_action(episode, k, base)


@pytest.fixture
def model_path(tmp_path):
    return linear_model(tmp_path / 'actor.onnx')


# ------------------------------------------------------------------------- pairing
@pytest.mark.parametrize('base_first', [False, True])
def test_pair_in_either_order_applies_the_residual(model_path, base_first):
    mixer = make_mixer(model_path)
    assert mixer.last_reload.loaded
    decision = step(mixer, 0, 0, base_first=base_first)
    command, applied = expected_command()
    assert (decision.episode, decision.step) == (0, 0)
    assert (decision.source, decision.reason) == ('residual', 'ok')
    np.testing.assert_allclose(decision.command, command, atol=1e-5)
    np.testing.assert_allclose(decision.residual, applied, atol=1e-5)
    assert mixer.counts['ok'] == 1 and mixer.pending == 0


def test_repeated_base_action_gives_no_second_decision(model_path):
    mixer = make_mixer(model_path)
    assert step(mixer, 0, 0) is not None
    assert mixer.add_base_action(0, 0, BASE) is None
    assert mixer.counts[pairing.DUPLICATE] == 1 and mixer.pending == 0


@pytest.mark.parametrize('lost', ['command', 'base_action'])
def test_resent_observation_recovers_a_lost_message_with_the_same_decision(tmp_path, lost):
    """The sim bridge's start-up handshake re-sends observation (0, 0); the controller
    answers each copy with the same base action. 'command': the decision was made but the
    command writer was not matched yet, so the re-sent observation must bring the same
    decision again. 'base_action': the first base action was lost on its way here, so the
    repeated one completes the pair (one decision)."""
    mixer = make_mixer(linear_model(tmp_path / 'a.onnx', two_frame=True))
    if lost == 'command':
        original = step(mixer, 0, 0)
    else:
        assert mixer.add_observation(0, 0, OBS, GOAL) is None  # its base action is lost
        original = None
    resent = []
    for _ in range(3):  # three re-sends: the observation, then the controller's answer
        resent.append(mixer.add_observation(0, 0, OBS.copy(), GOAL.copy()))
        answer = mixer.add_base_action(0, 0, BASE.copy())
        if original is None:
            original = answer
        else:
            assert answer is None  # answered once per re-send, on the observation
    if lost == 'command':
        assert resent == [original] * 3  # the very same Decision: a step never changes
        assert (mixer.counts[pairing.RESENT], mixer.counts[pairing.DUPLICATE]) == (3, 3)
    else:
        assert resent == [None, original, original]
        assert (mixer.counts[pairing.RESENT], mixer.counts[pairing.DUPLICATE]) == (2, 2)
    assert original.reason == 'ok'
    np.testing.assert_allclose(original.command, expected_command()[0], atol=1e-5)
    # One decision counted; the re-emissions are reported apart in the diagnostics.
    _, _, values = mixer.diagnostics()
    assert values['decisions'] == values['count.ok'] == 1
    assert values[f'count.{pairing.RESENT}'] == mixer.counts[pairing.RESENT]
    # The next step is decided normally, with step 0 as its previous observation (the
    # re-sends did not run the two-frame model again).
    second = np.full(OBS_DIM, -0.05)
    d1 = step(mixer, 0, 1, obs=second)
    w = known_weights()
    residual = 0.5 * (w @ np.r_[second, GOAL] + w @ np.r_[OBS, GOAL])
    np.testing.assert_allclose(d1.residual, mix(BASE, residual, ResidualConfig())[1], atol=1e-5)
    assert mixer.counts['ok'] == 2


def test_resent_observation_of_a_fallback_step_repeats_the_fallback(model_path):
    mixer = make_mixer()  # no model: the base action, reason no_model
    first = step(mixer, 0, 0)
    assert mixer.add_observation(0, 0, OBS, GOAL) is first
    mixer = make_mixer(model_path)
    short = OBS[:-1]  # not the model's size: re-sent as it was
    fallback = step(mixer, 0, 1, obs=short)
    assert fallback.reason == dec.OBSERVATION_WRONG_SIZE
    assert mixer.add_observation(0, 1, short.copy(), GOAL) is fallback
    assert mixer.counts[dec.OBSERVATION_WRONG_SIZE] == mixer.counts[pairing.RESENT] == 1


def test_same_step_with_other_values_is_a_restart_not_a_resend(model_path):
    mixer = make_mixer(model_path)
    first = step(mixer, 0, 0)
    other = OBS + 0.01  # a new sim bridge run at (0, 0), another state
    assert mixer.add_observation(0, 0, other, GOAL) is None
    decision = mixer.add_base_action(0, 0, BASE)
    assert decision is not first
    np.testing.assert_allclose(decision.command, expected_command(obs=other)[0], atol=1e-5)
    assert mixer.counts[pairing.STREAM_RESTART] == 1 and mixer.counts[pairing.RESENT] == 0


def test_exactly_one_decision_per_step_under_random_interleaving(model_path):
    rng = np.random.default_rng(3)
    mixer = make_mixer(model_path)
    # Each topic is ordered; the two topics interleave arbitrarily and repeat messages.
    obs_msgs = [(0, k) for k in range(60) for _ in range(rng.integers(1, 3))]
    base_msgs = [(0, k) for k in range(60) for _ in range(rng.integers(1, 3))]
    decided: dict[int, dec.Decision] = {}
    resent = 0
    while obs_msgs or base_msgs:
        take_obs = base_msgs == [] or (obs_msgs != [] and rng.random() < 0.5)
        if take_obs:
            episode, k = obs_msgs.pop(0)
            decision = mixer.add_observation(episode, k, OBS, GOAL)
        else:
            episode, k = base_msgs.pop(0)
            decision = mixer.add_base_action(episode, k, BASE)
        if decision is None:
            continue
        if decision.step in decided:
            assert decision is decided[decision.step]  # re-emitted, never changed
            resent += 1
        else:
            assert decision.step == len(decided)  # new decisions in step order
            decided[decision.step] = decision
    # Both halves of every step arrive, so every step is decided exactly once, in order.
    assert list(decided) == list(range(60)) and mixer.counts['ok'] == 60
    assert resent == mixer.counts[pairing.RESENT] > 0
    assert mixer.counts[pairing.DUPLICATE] > 0 and mixer.pending == 0


def test_base_action_whose_observation_never_comes_is_dropped(model_path):
    mixer = make_mixer(model_path)
    assert mixer.add_base_action(0, 3, BASE) is None  # observation 3 is lost
    assert mixer.add_observation(0, 4, OBS, GOAL) is None
    assert mixer.counts[pairing.BASE_WITHOUT_OBSERVATION] == 1 and mixer.pending == 1
    decision = mixer.add_base_action(0, 4, BASE)
    assert decision.step == 4 and decision.reason == 'ok'


def test_observation_whose_base_action_never_comes_is_dropped(model_path):
    mixer = make_mixer(model_path)
    assert mixer.add_observation(0, 5, OBS, GOAL) is None  # base action 5 is lost
    assert mixer.add_base_action(0, 6, BASE) is None
    assert mixer.counts[pairing.OBSERVATION_WITHOUT_BASE] == 1
    assert mixer.add_observation(0, 6, OBS, GOAL).step == 6


def test_unpaired_halves_expire_after_the_sync_timeout():
    clock = FakeClock()
    mixer = make_mixer(clock=clock, sync_timeout_s=0.5)
    mixer.add_observation(1, 0, OBS, GOAL)
    clock.now += 0.4
    assert mixer.expire() == 0
    clock.now += 0.2
    assert mixer.expire() == 1 and mixer.pending == 0
    assert mixer.counts[pairing.SYNC_TIMEOUT] == 1
    assert mixer.add_base_action(1, 0, BASE) is None  # its observation is gone


def test_pending_steps_are_bounded():
    mixer = make_mixer()
    for k in range(100):
        mixer.add_observation(0, k, OBS, GOAL)  # the base controller is silent
    assert mixer.pending == 32
    assert mixer.counts[pairing.SYNC_TIMEOUT] == 100 - 32


def test_sim_restart_is_not_mistaken_for_duplicates(model_path):
    mixer = make_mixer(model_path)
    for k in range(3):
        assert step(mixer, 0, k) is not None
    assert step(mixer, 0, 0).step == 0  # the stream started again from (0, 0)
    assert mixer.counts[pairing.STREAM_RESTART] == 1


# ------------------------------------------------------------------------- fallbacks
def test_no_model_gives_the_clipped_base_action_and_says_the_base_is_outside_the_bounds():
    """A base action outside the command bounds is clipped like every command; that it was
    is reported (a torque controller in [-2, 2] behind the default [-1, 1] bounds was cut
    silently), and counted, once per such step."""
    notes = []
    cfg = ResidualConfig()
    mixer = m.ResidualMixer(cfg, clock=FakeClock(), on_reject=lambda *note: notes.append(note))
    decision = step(mixer, 0, 0, base=np.array([0.2, 1.7, -3.0, 0.0]))
    assert (decision.source, decision.reason) == ('base', dec.NO_MODEL)
    np.testing.assert_array_equal(decision.command, [0.2, 1.0, -1.0, 0.0])
    np.testing.assert_array_equal(decision.residual, np.zeros(4))
    level, message, _ = mixer.diagnostics()
    assert level == 'ok' and 'no model configured' in message
    assert [reason for reason, _ in notes] == [m.BASE_OUTSIDE_BOUNDS]
    assert (
        'episode 0 step 0 [0.2, 1.7, -3.0, 0.0] is outside the command bounds [-1, 1]'
        in (notes[0][1])
    )
    assert "set the residual node's action_low / action_high" in notes[0][1]
    step(mixer, 0, 1, base=np.array([0.2, 1.0, -1.0, 0.0]))  # on the bounds: inside
    assert mixer.counts[m.BASE_OUTSIDE_BOUNDS] == 1 and len(notes) == 1


@pytest.mark.parametrize(
    'make',
    [
        lambda p: p / 'missing.onnx',
        lambda p: corrupt_file(p / 'c.onnx'),
        lambda p: truncated_file(p / 't.onnx', linear_model(p / 'full.onnx')),
        lambda p: nan_model(p / 'n.onnx'),
        lambda p: set_model_metadata(  # 3 outputs, 4 action fields in its metadata
            linear_model(p / 'w.onnx', weights=known_weights(action_dim=3)),
            {'action_fields': '["dx", "dy", "dz", "gripper"]'},
        ),
    ],
)
def test_a_model_that_fails_to_load_gives_the_base_action(tmp_path, make):
    path = make(tmp_path)
    mixer = make_mixer(path)
    assert not mixer.last_reload.loaded and str(path) in mixer.model_error
    decision = step(mixer, 0, 0)
    assert (decision.source, decision.reason) == ('base', dec.MODEL_LOAD_FAILED)
    np.testing.assert_array_equal(decision.command, BASE)
    level, message, values = mixer.diagnostics()
    assert level == 'error' and values['model_loaded'] is False
    assert values[f'count.{dec.MODEL_LOAD_FAILED}'] == 1


@pytest.mark.parametrize(
    ('obs', 'goal', 'reason'),
    [
        (OBS[:-1], GOAL, dec.OBSERVATION_WRONG_SIZE),
        (OBS, np.r_[GOAL, 0.0], dec.OBSERVATION_WRONG_SIZE),
        (np.empty(0), np.empty(0), dec.OBSERVATION_WRONG_SIZE),
    ],
)
def test_bad_observation_gives_the_base_action(model_path, obs, goal, reason):
    mixer = make_mixer(model_path)
    decision = step(mixer, 0, 0, obs=obs, goal=goal)
    assert (decision.source, decision.reason) == ('base', reason)
    np.testing.assert_array_equal(decision.command, BASE)
    assert mixer.counts[reason] == 1 and mixer.last_reason == reason
    # The next good step uses the residual again.
    assert step(mixer, 0, 1).reason == 'ok'
    level, message, _ = make_mixer(model_path).diagnostics()
    assert level == 'ok' and 'residual active' in message


def test_non_finite_residual_and_inference_error_give_the_base_action(tmp_path):
    mixer = make_mixer(fragile_model(tmp_path / 'f.onnx'))
    assert step(mixer, 0, 0).reason == 'ok'
    nan_obs = OBS.copy()
    nan_obs[1] = 500.0  # sqrt of a negative inside the graph
    decision = step(mixer, 0, 1, obs=nan_obs)
    assert (decision.source, decision.reason) == ('base', dec.RESIDUAL_NON_FINITE)
    np.testing.assert_array_equal(decision.command, BASE)
    raising_obs = OBS.copy()
    raising_obs[0] = 50.0  # Gather out of bounds: onnxruntime raises
    decision = step(mixer, 0, 2, obs=raising_obs)
    assert (decision.source, decision.reason) == ('base', dec.INFERENCE_ERROR)
    np.testing.assert_array_equal(decision.command, BASE)
    assert step(mixer, 0, 3).reason == 'ok'
    values = mixer.diagnostics()[2]
    assert values[f'count.{dec.RESIDUAL_NON_FINITE}'] == 1
    assert values[f'count.{dec.INFERENCE_ERROR}'] == 1
    assert values['count.ok'] == 2 and values['decisions'] == 4
    assert values['inference_p50_us'] > 0 and math.isfinite(values['inference_p99_us'])


def test_scale_and_limit_reach_the_command(model_path):
    config = {'residual_gain': 0.5, 'residual_limit': 0.1}
    mixer = make_mixer(model_path, **config)
    decision = step(mixer, 0, 0)
    command, applied = expected_command(config=ResidualConfig(**config))
    np.testing.assert_allclose(decision.command, command, atol=1e-6)
    assert np.max(np.abs(decision.residual)) <= 0.05 + 1e-12


# ------------------------------------------------------------------------- exploration
def varied_inputs(n: int, seed: int = 0, spread: float = 0.3):
    """n steps of (observation, goal, base action); bases partly outside [-1, 1]."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.normal(0.0, spread, OBS_DIM),
            rng.normal(0.0, spread, 3),
            rng.uniform(-1.5, 1.5, 4),
        )
        for _ in range(n)
    ]


def run(mixer, inputs, episode=0):
    return [step(mixer, episode, k, obs, goal, base) for k, (obs, goal, base) in enumerate(inputs)]


def test_exploration_off_keeps_the_commands_bit_identical(model_path):
    inputs = varied_inputs(40)
    today = run(make_mixer(model_path), inputs)
    zero = make_mixer(model_path, explore_noise=0.0, explore_random=0.0, explore_seed=99)
    for (obs, goal, base), before, after in zip(inputs, today, run(zero, inputs), strict=True):
        assert after.reason == 'ok' and not after.explored and not before.explored
        np.testing.assert_array_equal(after.command, before.command)
        np.testing.assert_array_equal(after.residual, before.residual)
        # ... and both are exactly the mixing rule applied to the model's output.
        command, applied = mix(base, zero.actor(obs, goal), zero.config)
        np.testing.assert_array_equal(after.command, command)
        np.testing.assert_array_equal(after.residual, applied)
    level, message, values = zero.diagnostics()
    assert level == 'ok' and 'exploration' not in message
    assert (values['explored_steps'], values['explored_random_steps']) == (0, 0)
    assert (values['explore_noise'], values['explore_random'], values['explore_seed']) == (
        0.0,
        0.0,
        99,
    )


def test_explore_random_one_gives_uniform_residuals_and_bounded_commands(model_path):
    config = {
        'residual_limit': 1.5,
        'residual_gain': 0.8,
        'action_low': -0.8,
        'action_high': 0.6,
        'explore_random': 1.0,
        'explore_seed': 5,
    }
    mixer = make_mixer(model_path, **config)
    inputs = varied_inputs(500)
    decisions = run(mixer, inputs)
    residuals = np.array([d.residual for d in decisions])  # (500, 4)
    for (obs, goal, base), d in zip(inputs, decisions, strict=True):
        assert (d.source, d.reason, d.explored) == ('residual', 'ok', True)
        assert np.all(d.command >= -0.8) and np.all(d.command <= 0.6)
        np.testing.assert_array_equal(d.command, np.clip(base + d.residual, -0.8, 0.6))
        _, model_applied = mix(base, mixer.actor(obs, goal), mixer.config)
        assert np.all(d.residual != model_applied)
    # residual_gain * uniform(-1.5, 1.5): within +-1.2, mean 0, std 1.2 / sqrt(3).
    assert np.all(np.abs(residuals) <= 0.8 * 1.5)
    assert abs(residuals.mean()) < 0.06
    assert abs(residuals.std() - 1.2 / np.sqrt(3)) < 0.04
    assert residuals.min() < -1.15 and residuals.max() > 1.15
    values = mixer.diagnostics()[2]
    assert values['explored_steps'] == values['explored_random_steps'] == 500
    assert values['count.ok'] == 500


def test_a_model_of_smaller_scale_explores_within_its_scale(tmp_path, model_path):
    # A model trained at residual_scale 0.5 behind the default limit 2: its random residuals
    # stay in +-0.5, where the trainer explored and where command - base stays storable.
    small = linear_model(tmp_path / 'small.onnx', scale=0.5)  # 0.5 tanh(W x): keeps to it
    set_model_metadata(small, {'residual_scale': '0.5'})
    mixer = make_mixer(small, explore_random=1.0, explore_seed=3)
    decisions = run(mixer, varied_inputs(300))
    residuals = np.array([d.residual for d in decisions])
    assert all(d.explored for d in decisions)
    assert np.abs(residuals).max() <= 0.5 and np.abs(residuals).max() > 0.45
    set_model_metadata(model_path, {})  # a model that does not say: the limit, 2
    wide = np.array(
        [d.residual for d in run(make_mixer(model_path, explore_random=1.0), varied_inputs(300))]
    )
    assert np.abs(wide).max() > 1.5


def test_a_model_whose_residual_goes_beyond_its_stated_scale_is_refused(model_path):
    """A model stating residual_scale 0.5 whose graph reaches further (a hand-edited or
    mislabelled file) loaded without a word: it explored within +-0.5 and dodged the clamp
    warning while its residuals went past 0.5. The stated scale is inside the graph, so no
    honest model's output is larger: refused in one line, the base action runs."""
    set_model_metadata(model_path, {'residual_scale': '0.5', 'action_fields': '["a","b","c","d"]'})
    mixer = make_mixer(model_path, explore_random=1.0, explore_seed=3)
    assert not mixer.last_reload.loaded
    error = mixer.model_error
    assert error.startswith(f'model {model_path}: on the probe inputs its residual reaches ')
    assert 'beyond the 0.5 its metadata states (residual_scale)' in error, error
    assert re.search(r'reaches \d+\.\d+ on [abcd],', error) and '\n' not in error, error
    decision = step(mixer, 0, 0)
    assert (decision.source, decision.reason) == ('base', dec.MODEL_LOAD_FAILED)
    np.testing.assert_array_equal(decision.command, BASE)
    # Per-axis scales are checked per axis: stated large enough on every axis, it loads.
    set_model_metadata(model_path, {'residual_scale': '50', 'residual_scales': '[50,50,50,50]'})
    assert make_mixer(model_path).last_reload.loaded
    set_model_metadata(model_path, {'residual_scale': '50', 'residual_scales': '[50,50,0.5,50]'})
    refused = make_mixer(model_path)
    assert not refused.last_reload.loaded
    assert 'on axis 2, beyond the 0.5 its metadata states (residual_scales)' in (
        refused.model_error
    ), refused.model_error


def test_explore_noise_changes_the_residual_reproducibly_per_seed(model_path):
    inputs = varied_inputs(50, seed=1, spread=0.05)
    plain = np.array([d.residual for d in run(make_mixer(model_path), inputs)])

    def explored(seed: int) -> tuple[np.ndarray, m.ResidualMixer]:
        mixer = make_mixer(model_path, explore_noise=0.1, explore_seed=seed)
        decisions = run(mixer, inputs)
        assert all(d.reason == 'ok' and d.explored for d in decisions)
        return np.array([d.residual for d in decisions]), mixer

    first, mixer = explored(7)
    again, _ = explored(7)
    other, _ = explored(8)
    np.testing.assert_array_equal(first, again)
    assert np.all(first != plain) and np.all(first != other)
    assert np.max(np.abs(plain)) < 1.5  # far from the limit 2: the noise is not clamped
    noise = first - plain  # std 0.1 * residual_limit 2 = 0.2
    assert 0.16 < noise.std() < 0.24 and abs(noise.mean()) < 0.05
    level, message, values = mixer.diagnostics()
    assert level == 'ok' and 'exploration on' in message and 'seed 7' in message
    assert (values['explored_steps'], values['explored_random_steps']) == (50, 0)
    assert values['explore_noise'] == 0.1


def test_fallbacks_never_explore_nor_draw_noise(model_path):
    explore = {'explore_noise': 0.3, 'explore_random': 0.5, 'explore_seed': 2}
    good = varied_inputs(2, seed=3)
    mixer = make_mixer(model_path, **explore)
    first = step(mixer, 0, 0, *good[0])
    fallback = step(mixer, 0, 1, obs=OBS[:-1])
    # Rejected messages (a non-finite observation, base action) make no decision at all.
    assert mixer.add_observation(0, 2, np.r_[np.nan, OBS[1:]], GOAL) is None
    assert mixer.add_base_action(0, 2, BASE) is None
    assert mixer.add_observation(0, 3, OBS, GOAL) is None
    assert mixer.add_base_action(0, 3, np.array([0.1, np.inf, 0.0, 0.0])) is None
    last = step(mixer, 0, 4, *good[1])
    assert (fallback.source, fallback.explored) == ('base', False)
    np.testing.assert_array_equal(fallback.command, np.clip(BASE, -1.0, 1.0))
    np.testing.assert_array_equal(fallback.residual, np.zeros(4))
    # The fallbacks drew nothing: the two good steps explore exactly as without them.
    reference = make_mixer(model_path, **explore)
    np.testing.assert_array_equal(step(reference, 0, 0, *good[0]).residual, first.residual)
    np.testing.assert_array_equal(step(reference, 0, 1, *good[1]).residual, last.residual)
    assert mixer.explored_steps == 2
    # No model, or one that failed to load: the clipped base action, never explored.
    for path in ('', model_path.parent / 'missing.onnx'):
        no_model = make_mixer(path, **explore)
        for k, (obs, goal, base) in enumerate(varied_inputs(10)):
            decision = step(no_model, 0, k, obs, goal, base)
            assert decision.source == 'base' and not decision.explored
            np.testing.assert_array_equal(decision.command, np.clip(base, -1.0, 1.0))
        assert no_model.diagnostics()[2]['explored_steps'] == 0


def test_resent_observation_repeats_the_explored_decision(model_path):
    mixer = make_mixer(model_path, explore_noise=0.5, explore_seed=1)
    decision = step(mixer, 0, 0)
    assert decision.explored
    assert mixer.add_observation(0, 0, OBS.copy(), GOAL.copy()) is decision
    assert mixer.explored_steps == 1


# ------------------------------------------------------------------------- two-frame
def test_two_frame_model_gets_the_previous_observation(tmp_path):
    mixer = make_mixer(linear_model(tmp_path / 'a.onnx', two_frame=True))
    w = known_weights()
    base = np.zeros(4)
    first, second = np.full(OBS_DIM, 0.05), np.full(OBS_DIM, -0.05)
    d0 = step(mixer, 0, 0, obs=first, base=base)  # step 0: the current one twice
    np.testing.assert_allclose(d0.residual, w @ np.r_[first, GOAL], atol=1e-5)
    d1 = step(mixer, 0, 1, obs=second, base=base)
    expected = 0.5 * (w @ np.r_[second, GOAL] + w @ np.r_[first, GOAL])
    np.testing.assert_allclose(d1.residual, expected, atol=1e-5)
    d2 = step(mixer, 1, 0, obs=second, base=base)  # new episode: no history
    np.testing.assert_allclose(d2.residual, w @ np.r_[second, GOAL], atol=1e-5)


def test_two_frame_previous_is_the_last_observation_received_not_the_last_paired(tmp_path):
    """Observations 0..9 all came, base actions only for steps 0, 5 and 9: step 5 was given
    step 0's observation as its previous frame (the last *paired* one), not step 4's."""
    mixer = make_mixer(linear_model(tmp_path / 'a.onnx', two_frame=True))
    w = known_weights()
    frames = [np.full(OBS_DIM, 0.01 * k) for k in range(10)]
    decided = {}
    for k, frame in enumerate(frames):
        mixer.add_observation(0, k, frame, GOAL)
        if k in (0, 5, 9):
            decided[k] = mixer.add_base_action(0, k, np.zeros(4))
    for k in (5, 9):
        expected = 0.5 * (w @ np.r_[frames[k], GOAL] + w @ np.r_[frames[k - 1], GOAL])
        np.testing.assert_allclose(decided[k].residual, expected, atol=1e-5)
    # A base action first, then its observation: the previous frame is still the one before.
    assert mixer.add_base_action(0, 11, np.zeros(4)) is None
    mixer.add_observation(0, 10, frames[1], GOAL)  # step 10 never paired
    late = mixer.add_observation(0, 11, frames[2], GOAL)
    expected = 0.5 * (w @ np.r_[frames[2], GOAL] + w @ np.r_[frames[1], GOAL])
    np.testing.assert_allclose(late.residual, expected, atol=1e-5)
    # The sim re-sends observation k while it waits for base action k: the previous frame
    # stays observation k-1 (the re-send made it "no motion", as at an episode start).
    mixer.add_observation(0, 12, frames[3], GOAL)
    mixer.add_observation(0, 12, frames[3], GOAL)  # the re-send
    resent = mixer.add_base_action(0, 12, np.zeros(4))
    expected = 0.5 * (w @ np.r_[frames[3], GOAL] + w @ np.r_[frames[2], GOAL])
    np.testing.assert_allclose(resent.residual, expected, atol=1e-5)


@pytest.mark.parametrize('base_first', [False, True])
def test_a_step_whose_input_waited_too_long_gets_the_base_action(model_path, base_first):
    """A node behind its input (a slow model, a stalled CPU) sent residuals computed from
    inputs seconds old as if fresh; now such a step gets the base action, model not run."""
    mixer = make_mixer(model_path, max_input_age_s=0.1)
    second = mixer.add_observation if base_first else mixer.add_base_action
    if base_first:
        assert mixer.add_base_action(0, 0, BASE) is None
        late = second(0, 0, OBS, GOAL, waited_s=0.25)
    else:
        assert mixer.add_observation(0, 0, OBS, GOAL) is None
        late = second(0, 0, BASE, waited_s=0.25)
    assert (late.source, late.reason) == ('base', dec.INPUT_LATE)
    np.testing.assert_array_equal(late.command, np.clip(BASE, -1, 1))
    assert not late.residual.any() and len(mixer.inference_latency) == 0  # never ran
    assert mixer.add_observation(0, 1, OBS, GOAL) is None
    fresh = mixer.add_base_action(0, 1, BASE, waited_s=0.05)
    assert (fresh.source, fresh.reason) == ('residual', 'ok')
    assert mixer.counts[dec.INPUT_LATE] == 1
    never = make_mixer(model_path, max_input_age_s=0.0)  # 0: off (the lockstep stacks)
    assert never.add_observation(0, 0, OBS, GOAL) is None
    assert never.add_base_action(0, 0, BASE, waited_s=30.0).reason == 'ok'


# ------------------------------------------------------------------------- hot reload
def test_reload_swaps_a_good_file_and_keeps_the_old_model_on_a_bad_one(tmp_path):
    path = linear_model(tmp_path / 'actor.onnx')
    mixer = make_mixer(path)
    assert reload_model(mixer) is None  # unchanged
    np.testing.assert_allclose(step(mixer, 0, 0).command, expected_command()[0], atol=1e-5)

    doubled = linear_model(tmp_path / 'doubled.onnx', weights=2 * known_weights())
    replace_model(path, doubled, 1_000_000)
    event = reload_model(mixer)
    assert event.loaded and 'actor.onnx' in event.message
    new_command = expected_command(weights=2 * known_weights())[0]
    np.testing.assert_allclose(step(mixer, 0, 1).command, new_command, atol=1e-5)

    bad_files = [
        corrupt_file(tmp_path / 'corrupt.onnx'),
        truncated_file(tmp_path / 'trunc.onnx', doubled),
        nan_model(tmp_path / 'nan.onnx'),
        linear_model(tmp_path / 'obs7.onnx', obs_dim=7),  # other task: obs size changed
    ]
    for i, bad in enumerate(bad_files):
        replace_model(path, bad, 1_000_000 * (i + 2))
        event = reload_model(mixer)
        assert not event.loaded and 'keeping' in event.message, event.message
        assert reload_model(mixer) is None  # a rejected file is not retried until it changes
        decision = step(mixer, 0, 10 + i)
        assert decision.reason == 'ok'
        np.testing.assert_allclose(decision.command, new_command, atol=1e-5)
        assert mixer.diagnostics()[0] == 'warn'

    path.unlink()
    event = reload_model(mixer)
    assert not event.loaded and 'disappeared' in event.message
    assert step(mixer, 0, 20).reason == 'ok'

    replace_model(path, linear_model(tmp_path / 'again.onnx'), 0)
    assert reload_model(mixer).loaded
    np.testing.assert_allclose(step(mixer, 0, 21).command, expected_command()[0], atol=1e-5)
    assert mixer.diagnostics()[0] == 'ok'


def test_a_model_that_appears_later_is_picked_up(tmp_path):
    path = tmp_path / 'later.onnx'
    mixer = make_mixer(path)
    assert step(mixer, 0, 0).reason == dec.MODEL_LOAD_FAILED
    assert reload_model(mixer) is None  # still missing: nothing new to say
    linear_model(path)
    assert reload_model(mixer).loaded
    assert step(mixer, 0, 1).reason == 'ok'
    assert mixer.model_error is None


def test_reload_without_a_model_path_does_nothing():
    assert make_mixer().check_reload() is None


# ------------------------------------------------------------------------- helpers
def test_latency_window_percentiles():
    window = dec.LatencyWindow(size=100)
    assert math.isnan(window.percentile_us(50))
    for us in range(1, 201):
        window.add(us * 1e-6)
    assert len(window) == 100  # only the last 100 (101..200 us)
    assert window.percentile_us(50) == pytest.approx(150.5)


# ------------------------------------------------------------------------- forged messages
NAN_BASE = np.array([0.1, np.nan, 0.0, 0.2])
BAD_BASES = [
    NAN_BASE,
    np.array([0.1, 0.2, -np.inf, 0.0]),
    np.array([0.1, 1e40, 0.0, 0.0]),  # finite in the message's float64, inf as float32
    np.array([0.1, 0.2, 0.3]),
    np.zeros(5),
]
BAD_BASE_REASONS = [
    m.REJECTED_BASE_NON_FINITE,
    m.REJECTED_BASE_NON_FINITE,
    m.REJECTED_BASE_NON_FINITE,
    m.REJECTED_BASE_WRONG_SIZE,
    m.REJECTED_BASE_WRONG_SIZE,
]


@pytest.mark.parametrize(('bad', 'reason'), list(zip(BAD_BASES, BAD_BASE_REASONS, strict=True)))
@pytest.mark.parametrize('order', ['obs_bad_good', 'bad_obs_good', 'bad_good_obs'])
def test_a_forged_base_action_never_takes_the_step_from_the_real_one(
    model_path, bad, reason, order
):
    """A forged invalid base action for the current step is rejected: it makes no (zero)
    command, marks nothing as seen, and the real base action that follows still wins."""
    rejected = []
    mixer = m.ResidualMixer(
        ResidualConfig(model_path=str(model_path)),
        clock=FakeClock(),
        on_reject=lambda r, text: rejected.append((r, text)),
    )
    messages = {
        'obs': lambda: mixer.add_observation(1, 7, OBS, GOAL),
        'bad': lambda: mixer.add_base_action(1, 7, bad),
        'good': lambda: mixer.add_base_action(1, 7, BASE),
    }
    names = order.split('_')
    answers = [messages[name]() for name in names]
    assert answers[:2] == [None, None]
    decision = answers[2]
    assert decision is not None and (decision.source, decision.reason) == ('residual', 'ok')
    np.testing.assert_allclose(decision.command, expected_command()[0], atol=1e-5)
    assert mixer.counts[reason] == 1 and mixer.counts[pairing.DUPLICATE] == 0
    assert [r for r, _ in rejected] == [reason]
    assert 'episode 1 step 7' in rejected[0][1]
    # Once decided, a forged base action is still only a rejection (not a duplicate).
    assert mixer.add_base_action(1, 7, bad) is None
    assert mixer.counts[reason] == 2 and mixer.counts[pairing.DUPLICATE] == 0
    assert mixer.counts[pairing.STREAM_RESTART] == 0


FIELDS = ('dx', 'dy', 'dz', 'gripper')


@pytest.mark.parametrize('fields', [FIELDS[:3], (*FIELDS, 'extra')])
def test_a_base_action_of_another_size_than_model_and_stream_agree_on_is_rejected(
    model_path, fields
):
    """As the node feeds it (field names and frame_id with every base action), with a model
    that fits the stream: a base action of another size was noted as the stream's first, so
    the size check passed and it went out as a command of that size; now it is rejected and
    the real base action of the step still wins."""
    mixer = make_mixer(model_path)
    assert mixer.add_observation(0, 0, OBS, GOAL) is None
    first = mixer.add_base_action(0, 0, BASE, FIELDS, controller='my_controller')
    assert (first.source, first.reason) == ('residual', 'ok')
    assert mixer.add_observation(0, 1, OBS, GOAL) is None
    forged = np.resize(BASE, len(fields))
    assert mixer.add_base_action(0, 1, forged, fields, controller='my_controller') is None
    assert mixer.counts[m.REJECTED_BASE_WRONG_SIZE] == 1
    assert mixer.live.action_fields == FIELDS  # the stream is still the valid messages'
    real = mixer.add_base_action(0, 1, BASE, FIELDS, controller='my_controller')
    assert (real.source, real.reason) == ('residual', 'ok') and real.command.shape == (4,)
    np.testing.assert_allclose(real.command, expected_command()[0], atol=1e-5)


def test_a_stream_of_another_size_than_the_model_falls_back_to_its_base_actions(model_path):
    """The first valid base action sets the stream's size, not the model: a model of another
    size is a mismatch (the base action goes out), not a reason to refuse every message."""
    mixer = make_mixer(model_path)
    assert mixer.add_observation(0, 0, OBS, GOAL) is None
    decision = mixer.add_base_action(0, 0, BASE[:3], FIELDS[:3], controller='c')
    assert decision.source == 'base' and decision.reason != 'ok'
    np.testing.assert_array_equal(decision.command, BASE[:3])
    assert mixer.counts[m.REJECTED_BASE_WRONG_SIZE] == 0


@pytest.mark.parametrize('bad', BAD_BASES)
@pytest.mark.parametrize('with_model', [True, False])
def test_an_invalid_base_action_alone_gives_no_command(model_path, bad, with_model):
    """Never a zero command because of an invalid base action: nothing is published for
    the step (the sim bridge then falls back to the real base action it received)."""
    clock = FakeClock()
    mixer = make_mixer(model_path if with_model else '', clock=clock)
    mixer.note_base_action_source('c', ('dx', 'dy', 'dz', 'gripper'))  # the stream's size
    assert mixer.add_observation(1, 3, OBS, GOAL) is None
    assert mixer.add_base_action(1, 3, bad) is None
    assert mixer.pending == 1  # the observation still waits for a valid base action
    clock.now += 2.0
    assert mixer.expire() == 1
    assert step(mixer, 1, 4).command.shape == (4,)  # the loop goes on
    assert mixer.diagnostics()[2]['decisions'] == 1


@pytest.mark.parametrize(
    ('obs', 'goal'),
    [
        (np.r_[np.nan, OBS[1:]], GOAL),
        (OBS, np.array([0.0, np.inf, 0.0])),
        (np.r_[-1e40, OBS[1:]], GOAL),  # the model's float32 input would be -inf
    ],
)
@pytest.mark.parametrize('forged_step', [0, 6, 7, 8, 500])
def test_invalid_observations_never_clear_pending_steps(model_path, obs, goal, forged_step):
    """Forged non-finite observations with any step id are rejected: no restart, no
    pending step dropped, and the real observation of the same step still wins."""
    mixer = make_mixer(model_path)
    decided = step(mixer, 1, 5)
    assert mixer.add_base_action(1, 6, BASE) is None  # waits for observation 6
    assert mixer.add_observation(1, forged_step, obs, goal) is None
    assert mixer.add_observation(1, 7, obs, goal) is None
    assert mixer.pending == 1 and mixer.counts[pairing.STREAM_RESTART] == 0
    assert mixer.counts[m.REJECTED_OBSERVATION_NON_FINITE] == 2
    assert mixer.counts[pairing.BASE_WITHOUT_OBSERVATION] == 0
    # The decided step 5 is still known: its re-sent observation gets the same answer.
    assert mixer.add_observation(1, 5, OBS, GOAL) is decided
    assert mixer.counts[pairing.RESENT] == 1 and mixer.counts[pairing.STREAM_RESTART] == 0
    decision = mixer.add_observation(1, 6, OBS, GOAL)
    assert decision is not None and (decision.step, decision.reason) == (6, 'ok')
    # The next real step is decided from its real observation, not the forged one.
    assert step(mixer, 1, 7).reason == 'ok'


# ------------------------------------------------------------------------- action layout
JOINTS = tuple(f'j{i}' for i in range(7))


def test_the_mixer_learns_a_seven_field_action_from_the_model_and_the_stream(tmp_path):
    """No action size or names are built in: a 7-output model stating j0..j6 runs on a
    j0..j6 base action; the Decision carries the base action's names; a base action with
    other names (Fetch's) falls back to the base action with one note."""
    weights = known_weights(action_dim=7) * 3.0
    path = set_model_metadata(
        linear_model(tmp_path / 'arm.onnx', weights=weights),
        {'action_fields': '["j0", "j1", "j2", "j3", "j4", "j5", "j6"]'},
    )
    notes = []
    cfg = ResidualConfig(model_path=str(path))
    mixer = m.ResidualMixer(cfg, clock=FakeClock(), on_model_note=lambda *n: notes.append(n))
    assert mixer.actor.action_dim == 7
    base = np.array([0.95, -0.95, 0.5, -0.5, 0.0, 1.0, -1.0])
    mixer.note_base_action_source('hold', JOINTS)
    mixer.add_observation(0, 0, OBS, GOAL)
    decision = mixer.add_base_action(0, 0, base, JOINTS)
    expected, applied = mix(base, weights @ np.r_[OBS, GOAL], cfg)
    assert (decision.reason, decision.fields) == (dec.OK, JOINTS)
    np.testing.assert_allclose(decision.command, expected, atol=1e-5)
    np.testing.assert_allclose(decision.residual, applied, atol=1e-5)
    assert np.all(np.abs(decision.command) <= 1.0) and decision.command.shape == (7,)
    fetch = ('dx', 'dy', 'dz', 'gripper')
    mixer.note_base_action_source('hold', fetch)
    mixer.add_observation(0, 1, OBS, GOAL)
    decision = mixer.add_base_action(0, 1, BASE, fetch)
    expected = ('base', dec.MODEL_MISMATCH, fetch)
    assert (decision.source, decision.reason, decision.fields) == expected
    np.testing.assert_array_equal(decision.command, BASE)
    np.testing.assert_array_equal(decision.residual, np.zeros(4))
    assert len(notes) == 1 and 'action fields differ' in notes[0][1]


def test_a_model_without_action_names_falls_back_on_another_size():
    """A base action of another size than a model that names no fields: base fallback."""
    mixer = make_mixer()
    mixer.add_observation(0, 0, OBS, GOAL)
    decision = mixer.add_base_action(0, 0, np.array([0.2, -0.2]), ('a', 'b'))
    assert (decision.reason, decision.fields) == (dec.NO_MODEL, ('a', 'b'))  # no model: any size
    np.testing.assert_array_equal(decision.residual, np.zeros(2))


def test_the_graph_sets_the_size_and_must_agree_with_the_metadata(tmp_path):
    path = linear_model(tmp_path / 'seven.onnx', weights=known_weights(action_dim=7))
    mixer = make_mixer(path)
    assert mixer.actor.action_dim == 7
    mixer.add_observation(0, 0, OBS, GOAL)
    assert mixer.add_base_action(0, 0, BASE) is None  # 4 values for 7: rejected
    assert mixer.counts[m.REJECTED_BASE_WRONG_SIZE] == 1
    mixer.note_base_action_source('c', ('dx', 'dy', 'dz', 'gripper'))  # the stream's size
    decision = mixer.add_base_action(0, 0, BASE)
    assert (decision.source, decision.reason) == ('base', dec.BASE_ACTION_WRONG_SIZE)


@pytest.mark.parametrize('base_first', [False, True])
def test_a_terminal_observation_gets_no_command_and_is_neither_a_drop_nor_a_fallback(
    model_path, base_first
):
    """o_T (step T after the last step) is not a step: no Decision, nothing waits for it, and
    a base action answering it (a controller that did) never makes a command."""
    mixer = make_mixer(model_path)
    decisions = [step(mixer, 0, k) for k in range(3)]
    if base_first:
        assert mixer.add_base_action(0, 3, BASE) is None
    assert mixer.add_terminal_observation(0, 3) is None
    if not base_first:
        assert mixer.add_base_action(0, 3, BASE) is None
    assert mixer.pending == 0
    assert mixer.counts[pairing.TERMINAL] == 1 and mixer.counts[pairing.BASE_FOR_TERMINAL] == 1
    others = {r: n for r, n in mixer.counts.items() if r not in (pairing.TERMINAL, 'ok')}
    assert others == {pairing.BASE_FOR_TERMINAL: 1}  # no rejection, drop, restart, fallback
    assert mixer.add_observation(0, 2, OBS, GOAL) is decisions[2]  # a re-send still answered
    assert step(mixer, 1, 0).reason == 'ok'  # the next episode's step 0
    mixer.expire()
    assert mixer.counts[pairing.SYNC_TIMEOUT] == 0


# ------------------------------------------------------------ runtime residual_gain
def test_gain_ramp_moves_linearly_from_the_gain_of_the_moment():
    clock = FakeClock()
    at_once = GainRamp(1.0, 0.0, clock)
    at_once.set(0.25)
    assert at_once.now() == at_once.target == 0.25
    ramp = GainRamp(0.0, 4.0, clock)
    assert ramp.now() == 0.0
    ramp.set(1.0)
    for elapsed, gain in ((0.0, 0.0), (1.0, 0.25), (2.0, 0.5), (4.0, 1.0), (9.0, 1.0)):
        clock.now = 100.0 + elapsed
        assert ramp.now() == pytest.approx(gain)
    ramp.set(0.5)  # lower: at once (taking a residual out is never slowed)
    assert ramp.now() == 0.5
    ramp.set(1.5)
    clock.now += 1.0
    assert ramp.now() == pytest.approx(0.75)
    ramp.set(1.5)  # the same target again: the ramp goes on (it used to restart and creep)
    clock.now += 1.0
    assert ramp.now() == pytest.approx(1.0)
    ramp.set(2.0)  # raised half-way: from 1.0 where it was
    clock.now += 2.0
    assert ramp.now() == pytest.approx(1.0 + (2.0 - 1.0) * 0.5)
    ramp.set(0.0)
    assert ramp.now() == 0.0


def test_a_runtime_gain_reaches_the_commands_over_the_ramp(model_path):
    """residual_gain set while running (the node's ros2 param set) changes the commands of
    the steps decided after it, over residual_gain_ramp_s: a residual brought in on a robot
    from 0 never jumps; /diagnostics gives the gain of the moment and its target."""
    clock = FakeClock()
    mixer = make_mixer(model_path, clock=clock, residual_gain=0.0, residual_gain_ramp_s=10.0)
    residual = known_weights() @ np.r_[OBS, GOAL]
    np.testing.assert_array_equal(step(mixer, 0, 1).command, np.clip(BASE, -1, 1))  # gain 0
    mixer.set_gain(1.0)
    got = []
    for k, elapsed in enumerate((0.0, 2.5, 5.0, 10.0, 20.0), start=2):
        clock.now = 100.0 + elapsed
        got.append(step(mixer, 0, k).command)
    for command, gain in zip(got, (0.0, 0.25, 0.5, 1.0, 1.0), strict=True):
        wanted = mix(BASE, residual, ResidualConfig(residual_gain=gain))[0]
        np.testing.assert_allclose(command, wanted, atol=1e-6)
    assert not np.allclose(got[1], got[2])  # the ramp shows in the commands
    _, _, values = mixer.diagnostics()
    assert values['residual_gain'] == 1.0 and values['residual_gain_target'] == 1.0
    mixer.set_gain(0.5)  # lower: at once
    _, message, values = mixer.diagnostics()
    assert values['residual_gain'] == 0.5 and values['residual_gain_target'] == 0.5
    assert message.startswith('residual active at residual_gain 0.5: '), message
    mixer.set_gain(1.0)
    clock.now += 2.5
    assert mixer.diagnostics()[1].startswith('residual active at residual_gain 0.625, ramping')
    mixer.set_gain(0.0)  # the status line says the residual is out (it said 'active')
    level, message, _ = mixer.diagnostics()
    assert (level, message.split(':')[0]) == ('ok', 'residual out (residual_gain 0)')


def test_with_a_ramp_the_residual_comes_in_from_zero_at_the_first_step(model_path):
    """A runtime gain lasts until the node restarts: a respawned node starts at its launch
    gain. With a ramp it came back at that gain in one step; now it comes in from 0 over
    the ramp, counted from its first decided step (not from the node's start)."""
    clock = FakeClock()
    mixer = make_mixer(model_path, clock=clock, residual_gain=1.0, residual_gain_ramp_s=10.0)
    clock.now += 100.0  # the stack starts long after the node
    residual = known_weights() @ np.r_[OBS, GOAL]
    assert mixer.gain_target == 1.0
    np.testing.assert_array_equal(step(mixer, 0, 0).command, np.clip(BASE, -1, 1))  # gain 0
    clock.now += 5.0
    wanted = mix(BASE, residual, ResidualConfig(residual_gain=0.5))[0]
    np.testing.assert_allclose(step(mixer, 0, 1).command, wanted, atol=1e-6)
    clock.now += 5.0
    assert mixer.gain == 1.0
    # Without a ramp: the launch gain from the first step, as before.
    plain = make_mixer(model_path, clock=FakeClock(), residual_gain=0.5)
    np.testing.assert_allclose(step(plain, 0, 0).command, wanted, atol=1e-6)


def test_a_residual_beyond_the_stated_scale_falls_back_to_the_base_at_that_step(model_path):
    """A model stating scale 20 passes the load check (its probe stays within it) and ran,
    at start, past 20 on the robot's own larger observations: the load and reload checks
    see no such input. Such a step gets the base action, as a non-finite one does, and the
    in-process policy (rpl eval, replay-model) does the same."""
    from rpl_residual_node.policy import ResidualPolicy

    set_model_metadata(model_path, {'residual_scale': '20'})
    mixer = make_mixer(model_path, residual_limit=100.0)
    assert mixer.last_reload.loaded
    big = np.r_[60.0, np.zeros(OBS_DIM - 1)]  # residual ~ 60 * W[:, 0]: up to ~70
    decision = step(mixer, 0, 0, obs=big)
    assert (decision.source, decision.reason) == ('base', dec.RESIDUAL_BEYOND_SCALE)
    np.testing.assert_array_equal(decision.command, BASE)
    assert step(mixer, 0, 1).reason == dec.OK  # within its scale: the model's residual
    assert mixer.diagnostics()[2][f'count.{dec.RESIDUAL_BEYOND_SCALE}'] == 1
    assert mixer.beyond_scale.startswith('its residual reaches ')  # the node logs it
    assert 'beyond the 20 its metadata states (residual_scale)' in mixer.beyond_scale
    policy = ResidualPolicy.from_file(str(model_path), ResidualConfig(residual_limit=100.0))
    commands = policy(np.stack([big, OBS]), np.stack([GOAL, GOAL]), np.stack([BASE, BASE]))
    assert policy.last_beyond_scale.tolist() == [True, False]
    np.testing.assert_array_equal(commands[0], BASE)
    np.testing.assert_allclose(commands[1], step(mixer, 0, 2).command, atol=1e-6)


def test_a_model_that_loads_late_still_comes_in_over_the_ramp(tmp_path):
    """The ramp in was spent on the first decided step even when no model ran (its file
    not there yet: a live trainer exports it seconds later); the model then came in at
    full gain in one step. It starts at the model's first step."""
    path = tmp_path / 'actor.onnx'
    clock = FakeClock()
    mixer = make_mixer(path, clock=clock, residual_gain=1.0, residual_gain_ramp_s=10.0)
    assert step(mixer, 0, 0).reason == dec.MODEL_LOAD_FAILED
    clock.now += 60.0
    replace_model(path, linear_model(tmp_path / 'made.onnx'))
    assert reload_model(mixer).loaded
    residual = known_weights() @ np.r_[OBS, GOAL]
    np.testing.assert_array_equal(step(mixer, 0, 1).command, np.clip(BASE, -1, 1))  # gain 0
    clock.now += 5.0
    wanted = mix(BASE, residual, ResidualConfig(residual_gain=0.5))[0]
    np.testing.assert_allclose(step(mixer, 0, 2).command, wanted, atol=1e-6)
