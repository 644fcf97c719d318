"""Small hand-built ONNX residual actors for the tests (``linear_model`` and friends),
shared by the residual node, mixer, bag, launch and demo tests; built with ``onnx.helper``
only, never torch. ``test_onnx_actor.py`` checks what each of them does."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rpl_sim_bridge.layout import FetchObs
from rpl_sim_bridge.tasks import task_spec

OBS_DIM, GOAL_DIM, ACTION_DIM = 5, 3, 4


def known_weights(action_dim: int = ACTION_DIM, in_dim: int = OBS_DIM + GOAL_DIM) -> np.ndarray:
    """A fixed (action_dim, obs_dim + goal_dim) matrix with distinct small entries."""
    return (np.arange(action_dim * in_dim, dtype=np.float32).reshape(action_dim, in_dim) - 7) / 20


def save_graph(path: pathlib.Path, inputs, outputs, nodes, initializers) -> pathlib.Path:
    graph = helper.make_graph(nodes, 'residual_actor', inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def graph_input(name: str, dim, batch='N', dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, [batch, dim])


def linear_model(
    path: pathlib.Path,
    weights: np.ndarray | None = None,
    obs_dim: int = OBS_DIM,
    goal_dim: int = GOAL_DIM,
    two_frame: bool = False,
    batch='N',
    extra_nodes=(),
    output_name: str = 'residual',
    input_names: tuple[str, str] = ('observation', 'desired_goal'),
    extra_initializers=(),
    scale: float | None = None,
) -> pathlib.Path:
    """residual = W @ [observation, desired_goal] (two-frame: mean over both frames).

    ``extra_nodes`` is a list of nodes reading ``lin`` and ``observation`` that must produce
    ``residual`` (to make fragile models); empty means ``residual = lin``, or
    ``scale * tanh(lin)`` with ``scale`` (a model that keeps to the residual_scale it states,
    as the trainer's do). ``extra_initializers`` are more tensors those nodes read.
    """
    weights = known_weights(in_dim=obs_dim + goal_dim) if weights is None else weights
    obs_name, goal_name = input_names
    inputs = [graph_input(obs_name, obs_dim, batch), graph_input(goal_name, goal_dim, batch)]
    init = [numpy_helper.from_array(weights.T.astype(np.float32), 'W_T'), *extra_initializers]
    nodes = [
        helper.make_node('Concat', [obs_name, goal_name], ['x'], axis=1),
        helper.make_node('MatMul', ['x', 'W_T'], ['lin_now']),
    ]
    if two_frame:
        inputs.append(graph_input('previous_observation', obs_dim, batch))
        init.append(numpy_helper.from_array(np.array(0.5, np.float32), 'half'))
        nodes += [
            helper.make_node('Concat', ['previous_observation', goal_name], ['x_prev'], axis=1),
            helper.make_node('MatMul', ['x_prev', 'W_T'], ['lin_prev']),
            helper.make_node('Add', ['lin_now', 'lin_prev'], ['lin_sum']),
            helper.make_node('Mul', ['lin_sum', 'half'], ['lin']),
        ]
    else:
        nodes.append(helper.make_node('Identity', ['lin_now'], ['lin']))
    if extra_nodes:
        nodes += list(extra_nodes)
    elif scale is not None:
        init.append(numpy_helper.from_array(np.array(scale, np.float32), 'scale'))
        nodes.append(helper.make_node('Tanh', ['lin'], ['squashed']))
        nodes.append(helper.make_node('Mul', ['squashed', 'scale'], [output_name]))
    else:
        nodes.append(helper.make_node('Identity', ['lin'], [output_name]))
    out_dim = weights.shape[0]
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, out_dim])]
    return save_graph(path, inputs, outputs, nodes, init)


def nan_model(path: pathlib.Path) -> pathlib.Path:
    """Always emits NaN (fails the probe)."""
    nan = numpy_helper.from_array(np.full((1, ACTION_DIM), np.nan, np.float32), 'nan')
    nodes = [
        helper.make_node('Constant', [], ['nan'], value=nan),
        helper.make_node('Add', ['lin', 'nan'], ['residual']),
    ]
    linear_model(path, extra_nodes=nodes)
    return path


# Slice bounds i0, i1 and the feature axis ax1: Slice(observation, i0, i1, ax1) is
# observation column 0, shape (N, 1).
_SLICE_INDICES = {
    'i0': np.array([0], np.int64),
    'i1': np.array([1], np.int64),
    'ax1': np.array([1], np.int64),
}


def _constant_nodes(**values: np.ndarray) -> list[onnx.NodeProto]:
    """One Constant node per ``name=array``, giving the array under that name."""
    return [
        helper.make_node('Constant', [], [name], value=numpy_helper.from_array(value, name))
        for name, value in values.items()
    ]


def fragile_model(path: pathlib.Path) -> pathlib.Path:
    """Linear, but observation[0] outside [-4, 4) raises in onnxruntime (Gather out of
    bounds) and observation[1] > 100 gives NaN (sqrt of a negative). Passes the probe."""
    nodes = _constant_nodes(
        table=np.zeros(4, np.float32),
        hundred=np.array(100.0, np.float32),
        zero=np.array(0.0, np.float32),
        i2=np.array([2], np.int64),
        **_SLICE_INDICES,
    )
    nodes += [
        helper.make_node('Slice', ['observation', 'i0', 'i1', 'ax1'], ['o0']),  # (N, 1)
        helper.make_node('Cast', ['o0'], ['o0_int'], to=TensorProto.INT64),
        helper.make_node('Gather', ['table', 'o0_int'], ['picked']),  # raises if |index| > 3
        helper.make_node('Slice', ['observation', 'i1', 'i2', 'ax1'], ['o1']),
        helper.make_node('Sub', ['hundred', 'o1'], ['margin']),
        helper.make_node('Sqrt', ['margin'], ['root']),  # NaN if o1 > 100
        helper.make_node('Add', ['picked', 'root'], ['guard']),
        helper.make_node('Mul', ['guard', 'zero'], ['guard0']),
        helper.make_node('Add', ['lin', 'guard0'], ['residual']),
    ]
    return linear_model(path, extra_nodes=nodes)


def nan_in_range_model(
    path: pathlib.Path, low: float = 1.0, high: float = 1.5, **dims: int
) -> pathlib.Path:
    """Linear, but NaN wherever ``low <= observation[0] <= high`` (the log of a negative:
    ``0 * log((o0 - low) * (o0 - high))``). Passes the probe (its inputs miss the range);
    on a Fetch-like stack the gripper x of ~1.3 m is in it: good on the probe, NaN on
    every real observation."""
    nodes = _constant_nodes(
        low=np.array(low, np.float32),
        high=np.array(high, np.float32),
        zero=np.array(0.0, np.float32),
        **_SLICE_INDICES,
    )
    nodes += [
        helper.make_node('Slice', ['observation', 'i0', 'i1', 'ax1'], ['o0']),  # (N, 1)
        helper.make_node('Sub', ['o0', 'low'], ['above']),
        helper.make_node('Sub', ['o0', 'high'], ['below']),
        helper.make_node('Mul', ['above', 'below'], ['product']),  # <= 0 inside the range
        helper.make_node('Log', ['product'], ['log']),  # NaN (or -inf) inside the range
        helper.make_node('Mul', ['log', 'zero'], ['guard']),  # 0 outside, NaN inside
        helper.make_node('Add', ['lin', 'guard'], ['residual']),
    ]
    return linear_model(path, extra_nodes=nodes, **dims)  # dims: obs_dim, goal_dim


def padded_model(path: pathlib.Path, megabytes: float) -> pathlib.Path:
    """A valid linear model about ``megabytes`` large: ``lin`` plus a zero hidden layer
    (``lin @ A @ B @ C`` with zero square ``B``), so loading it takes a while (onnxruntime
    prepacks ``B``), like a big network."""
    hidden = max(2, int(np.sqrt(megabytes * 2**20 / 4)))
    weights = {
        'pad_a': np.zeros((ACTION_DIM, hidden), np.float32),
        'pad_b': np.zeros((hidden, hidden), np.float32),
        'pad_c': np.zeros((hidden, ACTION_DIM), np.float32),
    }
    nodes = [
        helper.make_node('MatMul', ['lin', 'pad_a'], ['pad_1']),
        helper.make_node('MatMul', ['pad_1', 'pad_b'], ['pad_2']),
        helper.make_node('MatMul', ['pad_2', 'pad_c'], ['pad_3']),  # (N, 4) zeros
        helper.make_node('Add', ['lin', 'pad_3'], ['residual']),
    ]
    initializers = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    return linear_model(path, extra_nodes=nodes, extra_initializers=initializers)


def corrupt_file(path: pathlib.Path) -> pathlib.Path:
    """Random bytes with an .onnx name."""
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return path


def truncated_file(path: pathlib.Path, source: pathlib.Path) -> pathlib.Path:
    """The first half of a valid model file."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# The slippery-push residual of test_model_equivalence.py and test_demo.py.
GOAL_SEEKING_TASK = 'slippery_push'
GAIN = 4.0  # residual per metre of block-goal offset (action units / m)


def goal_seeking_weights() -> np.ndarray:
    """(action_dim, obs_dim + goal_dim): (dx, dy, dz) = GAIN * (desired_goal - object_pos)."""
    spec = task_spec(GOAL_SEEKING_TASK)
    weights = np.zeros((spec.action_dim, spec.obs_dim + spec.goal_dim), np.float32)
    for axis in range(3):
        weights[axis, FetchObs.OBJECT_POS.start + axis] = -GAIN
        weights[axis, spec.obs_dim + axis] = GAIN
    return weights
