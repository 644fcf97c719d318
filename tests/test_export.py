"""ONNX export: the contract's names and shapes, torch == onnxruntime, the node's loader."""

from __future__ import annotations

import copy
import json
import pathlib

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rpl_residual_node.onnx_actor import OnnxActor
from rpl_trainer.export import (
    TOLERANCE,
    ResidualModel,
    export_onnx,
    read_metadata,
    scaled_difference,
)
from rpl_trainer.networks import Actor, Dims

pytestmark = pytest.mark.usefixtures('one_torch_thread')

DIMS = Dims(25, 3, 4)


def trained_looking_actor(two_frame: bool, seed: int = 0) -> Actor:
    """A non-zero actor with non-trivial normaliser statistics."""
    torch.manual_seed(seed)
    actor = Actor(DIMS, 64, 3, obs_clip=200.0, norm_clip=5.0, zero_last=False, two_frame=two_frame)
    rng = np.random.default_rng(seed)
    actor.obs_norm.set_stats(rng.normal(0, 1, 25), rng.uniform(0.01, 2.0, 25))
    actor.goal_norm.set_stats(rng.normal(0, 1, 3), rng.uniform(0.01, 2.0, 3))
    with torch.no_grad():
        actor.body[-1].weight.mul_(5.0)  # outputs spread over the tanh range
    return actor


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(['residual'], feeds)[0]


@pytest.mark.parametrize('two_frame', [False, True])
def test_onnxruntime_matches_torch_on_random_inputs(tmp_path, two_frame):
    actor = trained_looking_actor(two_frame)
    path = export_onnx(actor, tmp_path / 'actor.onnx', scale=2.0, metadata={'task': 'push'})
    rng = np.random.default_rng(7)
    for batch in (1, 7, 300):
        obs = rng.normal(0, 3, (batch, 25)).astype(np.float32)
        obs[0, 0] = 1e4  # beyond the raw clip
        goal = rng.normal(0, 3, (batch, 3)).astype(np.float32)
        prev = rng.normal(0, 3, (batch, 25)).astype(np.float32)
        feeds = {'observation': obs, 'desired_goal': goal}
        if two_frame:
            feeds['previous_observation'] = prev
        got = run_onnx(path, feeds)
        with torch.no_grad():
            expected = 2.0 * actor(
                torch.from_numpy(obs),
                torch.from_numpy(goal),
                torch.from_numpy(prev) if two_frame else None,
            )
        assert got.shape == (batch, 4) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)
        assert np.abs(got).max() <= 2.0
    assert np.abs(got).max() > 0.5  # not a trivially small output
    assert scaled_difference(path, ResidualModel(actor, 2.0)) <= 1e-5 / 2.0


def test_a_trained_actor_near_saturation_exports(tmp_path):
    """A NoisyHook actor of a real run at 100k steps (`rpl train --task noisy_hook --seed 2
    --set privileged_goal=true ...`, stop 32), fingers at scale 2 near saturation: float32
    rounding put ONNX and torch 1.06e-5 apart on the fingers, and an absolute 1e-5 check
    stopped that run. The check is relative to each axis's scale."""
    actor = Actor(Dims(40, 3, 4), 256, 3, 200.0, 5.0, zero_last=True, two_frame=True)
    state = torch.load(pathlib.Path(__file__).parent / 'data' / 'noisy_hook_actor_s2_100k.pt')
    actor.load_state_dict(state)
    scale = np.array([0.5, 0.5, 0.5, 2.0])
    path = export_onnx(actor, tmp_path / 'actor.onnx', scale)
    assert scaled_difference(path, ResidualModel(actor, scale)) <= TOLERANCE


def test_the_export_check_sees_a_graph_one_percent_off(tmp_path):
    """The relative check still catches a slightly wrong graph: one of the 25 observation
    normaliser means moved by 1 % of its std is about ten times the tolerance (9.7e-4)."""
    actor = trained_looking_actor(two_frame=True)
    path = export_onnx(actor, tmp_path / 'actor.onnx', 2.0)
    wrong = copy.deepcopy(actor)
    with torch.no_grad():
        wrong.obs_norm.mean[0] += 0.01 * wrong.obs_norm.std[0]
    assert scaled_difference(path, ResidualModel(wrong, 2.0)) > 5 * TOLERANCE


def test_contract_names_opset_metadata_and_atomic_write(tmp_path):
    import onnx

    path = export_onnx(
        trained_looking_actor(False), tmp_path / 'sub' / 'actor.onnx', 2.0, {'seed': '3'}
    )
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ['observation', 'desired_goal']
    assert [o.name for o in proto.graph.output] == ['residual']
    assert {o.domain: o.version for o in proto.opset_import}[''] == 17
    assert read_metadata(path)['seed'] == '3'
    assert read_metadata(path)['residual_scale'] == '2.0'
    assert sorted(p.name for p in path.parent.iterdir()) == ['actor.onnx']  # no temp file left


@pytest.mark.parametrize('two_frame', [False, True])
def test_the_residual_nodes_loader_accepts_the_export(tmp_path, two_frame):
    actor = trained_looking_actor(two_frame)
    path = export_onnx(actor, tmp_path / 'actor.onnx', scale=2.0)
    loaded = OnnxActor.load(path, obs_dim=25, goal_dim=3, action_dim=4)
    assert loaded.two_frame == two_frame and loaded.batched
    obs = np.linspace(-1, 1, 25)
    goal = np.array([1.3, 0.7, 0.42])
    with torch.no_grad():
        expected = 2.0 * actor(
            torch.tensor(obs[None], dtype=torch.float32),
            torch.tensor(goal[None], dtype=torch.float32),
            torch.tensor(obs[None], dtype=torch.float32) if two_frame else None,
        )
    np.testing.assert_allclose(loaded(obs, goal), expected.numpy()[0], atol=1e-5)


def test_export_writes_what_the_model_is(tmp_path):
    from rpl_interfaces import __version__, contract
    from rpl_residual_node.model_identity import StackIdentity, check_identity
    from rpl_sim_bridge.bridge import observation_layout
    from rpl_sim_bridge.tasks import task_spec
    from rpl_trainer.export import task_identity

    spec = task_spec('push')
    identity = task_identity(
        spec, 'reactive_push', residual_scale=2.0, training_steps=1234, eval_success=0.75
    )
    path = export_onnx(trained_looking_actor(False), tmp_path / 'a.onnx', 2.0, identity=identity)
    props = read_metadata(path)
    assert props['task'] == 'push' and props['controller'] == 'reactive_push'
    assert json.loads(props['observation_fields']) == list(spec.obs_fields)
    assert json.loads(props['goal_fields']) == ['x', 'y', 'z']
    assert json.loads(props['action_fields']) == list(contract.ACTION_FIELDS)
    assert (props['training_steps'], props['eval_success']) == ('1234', '0.75')
    assert (props['residual_scale'], props['rpl_version']) == ('2.0', __version__)
    # What the node reads back fits the names the sim bridge publishes for the task.
    loaded = OnnxActor.load(path).identity
    assert loaded == identity
    names = observation_layout(spec).fields
    live = StackIdentity.of_stream('push', 'reactive_push', names, contract.ACTION_FIELDS)
    assert check_identity(loaded, live) == []
    bare = read_metadata(export_onnx(trained_looking_actor(False), tmp_path / 'b.onnx', 2.0))
    assert bare['rpl_version'] == __version__ and 'task' not in bare


def test_rpl_train_exports_carry_the_run_facts(tmp_path):
    from helpers import toy_trainer

    trainer = toy_trainer(tmp_path, total_env_steps=40)
    trainer.run()
    props = read_metadata(tmp_path / 'actor.onnx')
    assert (props['task'], props['controller']) == ('toy_reach', 'toy_biased')
    assert json.loads(props['observation_fields']) == ['point_x', 'point_y']
    # The toy task declares no goal names: its spec's generic ones, as the bridge publishes.
    assert json.loads(props['goal_fields']) == ['g0', 'g1']
    assert props['training_steps'] == '40'
    assert float(props['eval_success']) == trainer.last_eval['eval/success_rate']


def test_an_export_that_does_not_reproduce_the_actor_keeps_the_last_model(tmp_path, monkeypatch):
    """The check's failure (forced here: a real mismatch needs a broken exporter) is one
    ExportError, and the model already there stays as it was, with no scratch file."""
    from rpl_trainer import export

    path = export_onnx(trained_looking_actor(False), tmp_path / 'actor.onnx', 2.0)
    before = path.read_bytes()
    monkeypatch.setattr(export, 'scaled_difference', lambda *_: 10 * TOLERANCE)
    with pytest.raises(export.ExportError, match='differs from torch by 0.001'):
        export_onnx(trained_looking_actor(True), path, 2.0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['actor.onnx']
