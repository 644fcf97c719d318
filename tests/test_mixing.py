"""The mixing rule, its config and the in-process policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml
from onnx_builders import GOAL_DIM, OBS_DIM, known_weights, linear_model

from rpl_interfaces.params import ParameterError, build_config
from rpl_residual_node.mixing import (
    RENAMED_PARAMETERS,
    ResidualConfig,
    check_renamed,
    clamp_residual,
    explore_limit,
    explore_residual,
    mix,
    safe_action,
)
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_residual_node.policy import ResidualPolicy


def test_mix_clamps_scales_adds_and_clips():
    config = ResidualConfig(residual_gain=0.5, residual_limit=1.0)
    base = np.array([0.2, -0.9, 0.0, 0.9])
    residual = np.array([0.4, -3.0, 5.0, 0.6])
    command, applied = mix(base, residual, config)
    # clamp to +-1, then * 0.5: [0.2, -0.5, 0.5, 0.3]
    np.testing.assert_allclose(applied, [0.2, -0.5, 0.5, 0.3])
    # base + applied = [0.4, -1.4, 0.5, 1.2], clipped to [-1, 1]
    np.testing.assert_allclose(command, [0.4, -1.0, 0.5, 1.0])


def test_default_config_is_the_papers_full_override():
    config = ResidualConfig()
    command, _ = mix(np.ones(4), np.full(4, -2.5), config)  # clamped to -2: 1 - 2 = -1
    np.testing.assert_allclose(command, -np.ones(4))
    command, _ = mix(-np.ones(4), np.full(4, 1.5), config)
    np.testing.assert_allclose(command, np.full(4, 0.5))


@pytest.mark.parametrize('field', ['residual_gain', 'residual_limit'])
def test_zero_scale_or_limit_gives_the_base(field):
    config = dataclasses.replace(ResidualConfig(), **{field: 0.0})
    base = np.array([0.3, -0.2, 1.5, -4.0])
    command, applied = mix(base, np.array([1.0, -1.0, 2.0, 0.5]), config)
    np.testing.assert_allclose(applied, np.zeros(4))
    np.testing.assert_allclose(command, np.clip(base, -1, 1))


def test_mix_broadcasts_over_a_batch_and_custom_bounds():
    config = ResidualConfig(action_low=-0.5, action_high=0.25)
    base = np.zeros((3, 4))
    residual = np.array([[-1.0] * 4, [0.1] * 4, [1.0] * 4])
    command, applied = mix(base, residual, config)
    assert command.shape == applied.shape == (3, 4)
    np.testing.assert_allclose(command[:, 0], [-0.5, 0.1, 0.25])
    np.testing.assert_allclose(clamp_residual(residual, config), applied)


def test_safe_action_is_zero():
    np.testing.assert_array_equal(safe_action(4, ResidualConfig()), np.zeros(4))


@pytest.mark.parametrize(
    ('values', 'match'),
    [
        ({'residual_gain': 2.5}, 'outside'),
        ({'residual_limit': -0.1}, 'outside'),
        ({'action_low': 0.0, 'action_high': 0.0}, 'must be below'),
        ({'sync_timeout_s': 0.0}, 'outside'),
        ({'model_path': 3}, 'must be a string'),
        ({'explore_noise': 1.5}, r"'explore_noise' = 1.5 is outside \[0.0, 1.0\]"),
        ({'explore_random': -0.1}, r"'explore_random' = -0.1 is outside \[0.0, 1.0\]"),
        ({'explore_seed': -1}, "'explore_seed' = -1 is outside"),
        ({'explore_seed': 0.5}, "'explore_seed' must be an integer"),
    ],
)
def test_bad_parameters_are_rejected(values, match):
    with pytest.raises(ParameterError, match=match):
        build_config(ResidualConfig, values)


def test_yaml_defaults_match_the_dataclass(repo_root):
    data = yaml.safe_load((repo_root / 'config' / 'residual_node.yaml').read_text())
    params = data['/**/residual_node']['ros__parameters']
    assert set(params) == {f.name for f in dataclasses.fields(ResidualConfig)}
    assert build_config(ResidualConfig, params) == ResidualConfig()


def test_the_gains_old_name_is_refused_with_the_new_name():
    check_renamed({'residual_scale': None})  # not given: nothing to refuse
    with pytest.raises(ParameterError) as caught:
        check_renamed({'residual_scale': 0.5})
    text = str(caught.value)
    assert "'residual_scale' was renamed to 'residual_gain'" in text
    assert 'set residual_gain:=0.5 instead' in text and '\n' not in text
    assert set(RENAMED_PARAMETERS.values()) <= {f.name for f in dataclasses.fields(ResidualConfig)}
    assert not set(RENAMED_PARAMETERS) & {f.name for f in dataclasses.fields(ResidualConfig)}


@pytest.mark.parametrize('stack', ['push', 'pick_and_place', 'slippery_push'])
def test_stack_files_set_only_residual_node_parameters(repo_root, stack):
    data = yaml.safe_load((repo_root / 'config' / f'{stack}.yaml').read_text())
    params = data['/**/residual_node']['ros__parameters']
    assert build_config(ResidualConfig, params).residual_gain == 1.0


# ------------------------------------------------------------------------- exploration
def test_exploration_is_off_by_default():
    config = ResidualConfig()
    assert (config.explore_noise, config.explore_random, config.explore_seed) == (0.0, 0.0, 0)
    assert not config.explores
    assert config.describe_exploration() == 'exploration off'
    assert ResidualConfig(explore_random=0.3).explores
    assert 'seed 4' in ResidualConfig(explore_noise=0.2, explore_seed=4).describe_exploration()


def test_explore_random_one_gives_uniform_residuals_within_the_limit():
    config = ResidualConfig(residual_limit=1.5, explore_random=1.0)
    residual = np.full((20000, 4), 0.7)
    explored, replaced = explore_residual(residual, config, np.random.default_rng(3))
    assert replaced.shape == (20000,) and replaced.all()
    assert explored.shape == (20000, 4)
    assert np.all(np.abs(explored) <= 1.5)
    # Uniform on [-1.5, 1.5]: mean 0, std 1.5 / sqrt(3), reaches both ends, no trace of 0.7.
    assert abs(explored.mean()) < 0.02
    assert abs(explored.std() - 1.5 / np.sqrt(3)) < 0.02
    assert explored.min() < -1.49 and explored.max() > 1.49
    counts, _ = np.histogram(explored, bins=6, range=(-1.5, 1.5))
    assert counts.min() > 0.9 * counts.mean()


def test_explore_random_replaces_that_fraction_of_rows():
    config = ResidualConfig(explore_random=0.3)
    residual = np.full((10000, 4), 0.5)
    explored, replaced = explore_residual(residual, config, np.random.default_rng(0))
    assert abs(replaced.mean() - 0.3) < 0.02
    np.testing.assert_array_equal(explored[~replaced], residual[~replaced])  # noise is 0
    assert np.all(explored[replaced] != 0.5)


def test_explore_noise_is_gaussian_in_units_of_the_limit_and_reproducible():
    config = ResidualConfig(residual_limit=2.0, explore_noise=0.2, explore_seed=11)
    residual = np.zeros((20000, 4))
    explored, replaced = explore_residual(residual, config, np.random.default_rng(11))
    assert not replaced.any()
    assert abs(explored.std() - 0.4) < 0.01  # 0.2 * residual_limit
    assert abs(explored.mean()) < 0.01
    again, _ = explore_residual(residual, config, np.random.default_rng(11))
    np.testing.assert_array_equal(explored, again)
    other, _ = explore_residual(residual, config, np.random.default_rng(12))
    assert not np.any(other == explored)


def test_explored_residual_is_clamped_to_the_limit():
    config = ResidualConfig(residual_limit=0.5, explore_noise=1.0)
    residual = np.array([[3.0, -3.0, 0.49, -0.49]] * 500)
    explored, _ = explore_residual(residual, config, np.random.default_rng(1))
    assert np.all(np.abs(explored) <= 0.5)
    np.testing.assert_array_equal(explored[:, :2], [[0.5, -0.5]] * 500)  # 0.5 std from 3
    assert np.any(explored[:, 2] == 0.5) and np.any(explored[:, 2] < 0.49)


def test_explore_limit_is_the_model_scale_where_that_is_smaller():
    config = ResidualConfig(residual_limit=2.0)
    assert explore_limit(config, None) == 2.0  # the model does not say
    assert explore_limit(config, 0.5) == 0.5
    assert explore_limit(config, 4.0) == 2.0  # the node's clamp stays the bound
    assert explore_limit(config, 0.0) == 2.0  # not a scale
    residual = np.zeros((5000, 4))
    noisy, _ = explore_residual(
        residual, ResidualConfig(explore_noise=0.1), np.random.default_rng(3), limit=0.5
    )
    assert abs(noisy.std() - 0.05) < 0.002  # 0.1 * 0.5, as the trainer's noise_eps * scale
    uniform, replaced = explore_residual(
        residual, ResidualConfig(explore_random=1.0), np.random.default_rng(3), limit=0.5
    )
    assert replaced.all() and np.abs(uniform).max() <= 0.5 and np.abs(uniform).max() > 0.49


def test_explore_one_row_gives_one_flag():
    config = ResidualConfig(explore_random=1.0)
    explored, replaced = explore_residual(np.zeros(4), config, np.random.default_rng(0))
    assert explored.shape == (4,) and replaced.shape == () and bool(replaced)


# ------------------------------------------------------------------------------ policy
def _inputs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, OBS_DIM)),
        rng.normal(size=(n, GOAL_DIM)),
        rng.uniform(-1, 1, size=(n, 4)),
    )


def test_policy_applies_the_same_rule_as_mix(tmp_path):
    config = ResidualConfig(residual_gain=0.7, residual_limit=0.5)
    policy = ResidualPolicy.from_file(str(linear_model(tmp_path / 'a.onnx')), config)
    obs, goal, base = _inputs(6)
    residual = np.concatenate([obs, goal], axis=1) @ known_weights().T
    expected, _ = mix(base, residual, config)
    np.testing.assert_allclose(policy(obs, goal, base), expected, atol=1e-5)
    single = policy(obs[0], goal[0], base[0])
    assert single.shape == (4,)
    np.testing.assert_allclose(single, expected[0], atol=1e-5)


def test_policy_without_actor_returns_the_clipped_base():
    obs, goal, base = _inputs(3)
    base[0, 0] = 3.0
    command = ResidualPolicy(None)(obs, goal, base)
    np.testing.assert_allclose(command, np.clip(base, -1, 1))


def test_policy_falls_back_per_row(tmp_path):
    policy = ResidualPolicy(OnnxActor.load(linear_model(tmp_path / 'a.onnx')))
    obs, goal, base = _inputs(3)
    obs[1, 2] = np.nan  # bad observation -> base
    base[2, 0] = np.inf  # bad base -> safe action
    command, applied = policy.mix(obs, goal, base)
    assert np.all(np.isfinite(command))
    np.testing.assert_allclose(command[1], np.clip(base[1], -1, 1))
    np.testing.assert_array_equal(command[2], np.zeros(4))
    np.testing.assert_array_equal(applied[1:], np.zeros((2, 4)))
    assert np.any(applied[0] != 0)


def test_two_frame_policy_uses_the_previous_call_until_reset(tmp_path):
    actor = OnnxActor.load(linear_model(tmp_path / 'a.onnx', two_frame=True))
    policy = ResidualPolicy(actor, ResidualConfig(residual_limit=2.0))
    w = known_weights()
    goal, base = np.zeros(GOAL_DIM), np.zeros(4)
    first, second = np.full(OBS_DIM, 0.1), np.full(OBS_DIM, -0.1)
    _, applied = policy.mix(first, goal, base)
    np.testing.assert_allclose(applied, w @ np.r_[first, goal], atol=1e-5)
    _, applied = policy.mix(second, goal, base)
    expected = 0.5 * (w @ np.r_[second, goal] + w @ np.r_[first, goal])
    np.testing.assert_allclose(applied, expected, atol=1e-5)
    policy.reset()
    _, applied = policy.mix(second, goal, base)
    np.testing.assert_allclose(applied, w @ np.r_[second, goal], atol=1e-5)


def test_an_exploring_node_refuses_a_gain_above_one_at_start():
    """A learning launch's params_file could give an explorer gain 1.5, which the node
    refuses at runtime: its learner stores (command - base) / scale clipped to +-1, so a
    larger gain would store other actions than the ones run. At most 1 is storable."""
    from rpl_interfaces.params import ParameterError

    ResidualConfig(explore_noise=0.2, residual_gain=0.8, residual_gain_ramp_s=10.0)
    ResidualConfig(residual_gain=1.5)  # not exploring: fine
    with pytest.raises(ParameterError, match='a residual node that explores .* at most 1'):
        ResidualConfig(explore_random=0.3, residual_gain=1.5)
