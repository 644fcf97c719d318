"""OnnxActor: contract validation, probe, and inference on small hand-built ONNX models.

The model builders (``linear_model`` and friends) are in onnx_builders.py, shared with the
other residual tests; they use ``onnx.helper`` only, never torch.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import (
    ACTION_DIM,
    GOAL_DIM,
    OBS_DIM,
    corrupt_file,
    fragile_model,
    graph_input,
    known_weights,
    linear_model,
    nan_in_range_model,
    nan_model,
    padded_model,
    save_graph,
    truncated_file,
)

from rpl_residual_node.onnx_actor import ModelError, ModelTooLargeError, OnnxActor


# ------------------------------------------------------------------------------ tests
def test_linear_model_computes_known_residual(tmp_path):
    actor = OnnxActor.load(linear_model(tmp_path / 'a.onnx'), OBS_DIM, GOAL_DIM, ACTION_DIM)
    assert (actor.obs_dim, actor.goal_dim, actor.action_dim) == (OBS_DIM, GOAL_DIM, ACTION_DIM)
    assert not actor.two_frame and actor.batched
    rng = np.random.default_rng(1)
    obs, goal = rng.normal(size=(3, OBS_DIM)), rng.normal(size=(3, GOAL_DIM))
    expected = np.concatenate([obs, goal], axis=1) @ known_weights().T
    np.testing.assert_allclose(actor(obs, goal), expected, rtol=1e-5, atol=1e-5)
    single = actor(obs[0], goal[0])
    assert single.shape == (ACTION_DIM,) and single.dtype == np.float64
    np.testing.assert_allclose(single, expected[0], rtol=1e-5, atol=1e-5)


def test_dims_are_taken_from_the_model_when_not_given(tmp_path):
    actor = OnnxActor.load(linear_model(tmp_path / 'a.onnx', obs_dim=7, goal_dim=2))
    assert (actor.obs_dim, actor.goal_dim) == (7, 2)


def test_two_frame_model_averages_current_and_previous(tmp_path):
    actor = OnnxActor.load(linear_model(tmp_path / 'a.onnx', two_frame=True))
    assert actor.two_frame
    obs, prev, goal = np.ones(OBS_DIM), -np.ones(OBS_DIM), np.full(GOAL_DIM, 0.5)
    w = known_weights()
    expected = 0.5 * (w @ np.r_[obs, goal] + w @ np.r_[prev, goal])
    np.testing.assert_allclose(actor(obs, goal, prev), expected, rtol=1e-5, atol=1e-5)
    # No previous observation (episode start): the current one is fed twice.
    np.testing.assert_allclose(actor(obs, goal), w @ np.r_[obs, goal], rtol=1e-5, atol=1e-5)


def test_fixed_batch_one_model_still_serves_batches(tmp_path):
    actor = OnnxActor.load(linear_model(tmp_path / 'a.onnx', batch=1))
    assert not actor.batched
    obs, goal = np.ones((3, OBS_DIM)), np.zeros((3, GOAL_DIM))
    assert actor(obs, goal).shape == (3, ACTION_DIM)


def test_wrong_input_size_at_call_is_a_value_error(tmp_path):
    actor = OnnxActor.load(linear_model(tmp_path / 'a.onnx'))
    with pytest.raises(ValueError, match='observation must have shape'):
        actor(np.zeros(OBS_DIM + 1), np.zeros(GOAL_DIM))


@pytest.mark.parametrize(
    ('make', 'match'),
    [
        (lambda p: p / 'missing.onnx', 'does not exist'),
        (lambda p: p, 'does not exist'),  # a directory
        (lambda p: corrupt_file(p / 'c.onnx'), 'not a valid ONNX model'),
        (
            lambda p: truncated_file(p / 't.onnx', linear_model(p / 'full.onnx')),
            'not a valid ONNX model',
        ),
        (lambda p: nan_model(p / 'n.onnx'), 'probe output is not finite'),
        (
            lambda p: linear_model(p / 'w.onnx', weights=known_weights(action_dim=3)),
            r'must have shape \(N, 4\)',
        ),
        (
            lambda p: linear_model(p / 'i.onnx', input_names=('obs', 'desired_goal')),
            'inputs must be',
        ),
        (lambda p: linear_model(p / 'o.onnx', output_name='action'), "one output 'residual'"),
        (lambda p: linear_model(p / 'b.onnx', batch=2), 'batch dimension must be'),
    ],
)
def test_bad_models_are_rejected_with_one_clear_sentence(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ModelError, match=match) as info:
        OnnxActor.load(path, OBS_DIM, GOAL_DIM, ACTION_DIM)
    message = str(info.value)
    assert str(path) in message and '\n' not in message
    assert isinstance(info.value, ValueError)


def test_expected_dims_are_enforced(tmp_path):
    path = linear_model(tmp_path / 'a.onnx')
    with pytest.raises(ModelError, match='has 5 features but 25 were expected'):
        OnnxActor.load(path, obs_dim=25, goal_dim=GOAL_DIM)
    with pytest.raises(ModelError, match='has 3 features but 6 were expected'):
        OnnxActor.load(path, obs_dim=OBS_DIM, goal_dim=6)


def test_double_precision_inputs_are_rejected(tmp_path):
    inputs = [
        graph_input('observation', OBS_DIM, dtype=TensorProto.DOUBLE),
        graph_input('desired_goal', GOAL_DIM, dtype=TensorProto.DOUBLE),
    ]
    w = numpy_helper.from_array(known_weights().T.astype(np.float64), 'W_T')
    nodes = [
        helper.make_node('Concat', ['observation', 'desired_goal'], ['x'], axis=1),
        helper.make_node('MatMul', ['x', 'W_T'], ['r64']),
        helper.make_node('Cast', ['r64'], ['residual'], to=TensorProto.FLOAT),
    ]
    out = [helper.make_tensor_value_info('residual', TensorProto.FLOAT, ['N', ACTION_DIM])]
    path = save_graph(tmp_path / 'd.onnx', inputs, out, nodes, [w])
    with pytest.raises(ModelError, match='must be float32, got tensor\\(double\\)'):
        OnnxActor.load(path)


def test_symbolic_feature_dim_needs_an_expected_size(tmp_path):
    inputs = [graph_input('observation', 'obs_dim'), graph_input('desired_goal', GOAL_DIM)]
    nodes = [
        helper.make_node('ReduceSum', ['observation', 'axis1'], ['s'], keepdims=1),  # (N, 1)
        helper.make_node('ReduceSum', ['desired_goal', 'axis1'], ['g'], keepdims=1),
        helper.make_node('Add', ['s', 'g'], ['sg']),
        helper.make_node('Expand', ['sg', 'shape'], ['residual']),
    ]
    init = [
        numpy_helper.from_array(np.array([1, ACTION_DIM], np.int64), 'shape'),
        numpy_helper.from_array(np.array([1], np.int64), 'axis1'),
    ]
    out = [helper.make_tensor_value_info('residual', TensorProto.FLOAT, ['N', ACTION_DIM])]
    path = save_graph(tmp_path / 's.onnx', inputs, out, nodes, init)
    with pytest.raises(ModelError, match='symbolic feature dimension'):
        OnnxActor.load(path)
    actor = OnnxActor.load(path, obs_dim=6)
    np.testing.assert_allclose(actor(np.ones(6), np.ones(GOAL_DIM)), np.full(ACTION_DIM, 9.0))


def test_fragile_model_passes_probe_but_fails_on_extreme_inputs(tmp_path):
    actor = OnnxActor.load(fragile_model(tmp_path / 'f.onnx'), OBS_DIM, GOAL_DIM)
    obs, goal = np.zeros(OBS_DIM), np.zeros(GOAL_DIM)
    assert np.all(np.isfinite(actor(obs, goal)))
    obs[1] = 200.0
    assert np.all(np.isnan(actor(obs, goal)))
    obs[0] = 50.0
    with pytest.raises(Exception, match='out of bounds|indices'):
        actor(obs, goal)


def test_model_that_ignores_the_batch_fails_the_probe(tmp_path):
    inputs = [graph_input('observation', OBS_DIM), graph_input('desired_goal', GOAL_DIM)]
    nodes = [  # sums over the whole batch: always (1, 4), whatever N is
        helper.make_node('ReduceSum', ['observation'], ['s'], keepdims=1),
        helper.make_node('ReduceSum', ['desired_goal'], ['g'], keepdims=1),
        helper.make_node('Add', ['s', 'g'], ['sg']),
        helper.make_node('Expand', ['sg', 'shape'], ['residual']),
    ]
    shape = numpy_helper.from_array(np.array([1, ACTION_DIM], np.int64), 'shape')
    out = [helper.make_tensor_value_info('residual', TensorProto.FLOAT, ['N', ACTION_DIM])]
    path = save_graph(tmp_path / 'x.onnx', inputs, out, nodes, [shape])
    with pytest.raises(ModelError, match=r'probe output has shape \(1, 4\), expected \(2, 4\)'):
        OnnxActor.load(path)


def test_nan_in_range_model_passes_the_probe_but_is_nan_on_real_observations(tmp_path):
    actor = OnnxActor.load(nan_in_range_model(tmp_path / 'r.onnx'), OBS_DIM, GOAL_DIM)
    obs, goal = np.zeros(OBS_DIM), np.zeros(GOAL_DIM)
    assert np.all(np.isfinite(actor(obs, goal)))
    obs[0] = 1.3  # a Fetch gripper x, m
    assert np.all(np.isnan(actor(obs, goal)))


def test_padded_model_is_large_and_still_linear(tmp_path):
    path = padded_model(tmp_path / 'p.onnx', 2.0)
    assert path.stat().st_size > 2 * 2**20
    actor = OnnxActor.load(path, OBS_DIM, GOAL_DIM)
    obs, goal = np.full(OBS_DIM, 0.1), np.full(GOAL_DIM, -0.2)
    np.testing.assert_allclose(actor(obs, goal), known_weights() @ np.r_[obs, goal], atol=1e-5)


def test_a_file_above_max_bytes_is_refused_with_one_clear_sentence(tmp_path):
    path = linear_model(tmp_path / 'a.onnx')
    size = path.stat().st_size
    assert OnnxActor.load(path, max_bytes=size).obs_dim == OBS_DIM  # exactly at the limit
    with pytest.raises(ModelTooLargeError, match=f'is {size} bytes, more than the limit of'):
        OnnxActor.load(path, max_bytes=size - 1)
    big = tmp_path / 'big.onnx'
    with open(big, 'wb') as handle:
        handle.truncate(2**30)  # 1 GiB, sparse: takes no disk space
    with pytest.raises(ModelTooLargeError, match='max_model_bytes') as info:
        OnnxActor.load(big, max_bytes=64 * 2**20)
    assert str(big) in str(info.value) and '\n' not in str(info.value)
    assert isinstance(info.value, ModelError)


def test_the_action_size_comes_from_the_graph_and_must_match_the_metadata(tmp_path):
    """No action size is built into the loader: the graph's output says it (7 here), and
    a model whose metadata names another number of action fields is refused."""
    from helpers import set_model_metadata

    seven = linear_model(tmp_path / 'seven.onnx', weights=known_weights(action_dim=7))
    actor = OnnxActor.load(seven)
    assert actor.action_dim == 7 and 'action 7' in actor.describe()
    assert actor(np.zeros(OBS_DIM), np.zeros(GOAL_DIM)).shape == (7,)
    joints = json.dumps([f'j{i}' for i in range(7)])
    assert OnnxActor.load(set_model_metadata(seven, {'action_fields': joints})).action_dim == 7
    with pytest.raises(ModelError, match=r'must have shape \(N, 4\), got \[.N., 7\]'):
        OnnxActor.load(seven, action_dim=4)
    set_model_metadata(seven, {'action_fields': json.dumps(['dx', 'dy', 'dz', 'gripper'])})
    with pytest.raises(ModelError, match='metadata names 4 action_fields but the graph has 7'):
        OnnxActor.load(seven)


def fixed_goal_model(path: pathlib.Path, obs_dim: int = OBS_DIM, two_frame: bool = False):
    """residual = W @ observation (two-frame: mean over both frames); no desired_goal input."""
    weights = known_weights(in_dim=obs_dim)
    inputs = [graph_input('observation', obs_dim)]
    init = [numpy_helper.from_array(weights.T.astype(np.float32), 'W_T')]
    nodes = [helper.make_node('MatMul', ['observation', 'W_T'], ['lin_now'])]
    if two_frame:
        inputs.append(graph_input('previous_observation', obs_dim))
        init.append(numpy_helper.from_array(np.array(0.5, np.float32), 'half'))
        nodes += [
            helper.make_node('MatMul', ['previous_observation', 'W_T'], ['lin_prev']),
            helper.make_node('Add', ['lin_now', 'lin_prev'], ['lin_sum']),
            helper.make_node('Mul', ['lin_sum', 'half'], ['residual']),
        ]
    else:
        nodes.append(helper.make_node('Identity', ['lin_now'], ['residual']))
    outputs = [helper.make_tensor_value_info('residual', TensorProto.FLOAT, ['N', ACTION_DIM])]
    return save_graph(path, inputs, outputs, nodes, init), weights


@pytest.mark.parametrize('two_frame', [False, True])
def test_a_fixed_goal_model_has_no_goal_input_and_goal_dim_0(tmp_path, two_frame):
    path, weights = fixed_goal_model(tmp_path / 'f.onnx', two_frame=two_frame)
    actor = OnnxActor.load(path, OBS_DIM, 0, ACTION_DIM)
    assert (actor.goal_dim, actor.two_frame) == (0, two_frame)
    assert 'goal 0' in actor.describe()
    obs = np.linspace(-1.0, 1.0, OBS_DIM)
    prev = obs[::-1].copy()
    expected = weights @ ((obs + prev) / 2 if two_frame else obs)
    np.testing.assert_allclose(actor(obs, np.zeros(0), prev), expected, atol=1e-6)
    np.testing.assert_allclose(actor(obs[None], None, prev[None])[0], expected, atol=1e-6)
    assert OnnxActor.load(path).goal_dim == 0  # sizes taken from the model
    with pytest.raises(ValueError, match=r'desired_goal must have shape \(1, 0\)'):
        actor(obs, np.ones(3))
    with pytest.raises(ModelError) as info:
        OnnxActor.load(path, OBS_DIM, GOAL_DIM, ACTION_DIM)
    assert str(info.value) == (
        f"model {path}: has no 'desired_goal' input (a fixed-goal model) but 3 goal features "
        'were expected'
    )
    with pytest.raises(ModelError, match="'desired_goal' has 3 features but 0 were expected"):
        OnnxActor.load(linear_model(tmp_path / 'g.onnx'), OBS_DIM, 0, ACTION_DIM)
