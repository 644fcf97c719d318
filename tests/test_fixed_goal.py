"""A fixed-goal task (no goal fields) end to end without MuJoCo: its spec, the observation
layout, the zero controller, an actor exported with goal_dim 0, the ONNX loader, the
in-process policy, the residual mixer and the residual node process over DDS; a model with
goals on its stream is refused, and so is training the task while its spec declares no
step reward (test_fixed_goal_training.py trains one that does)."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import time

import fixed_goal_task
import numpy as np
import onnx
import pytest
import torch
from helpers import SideNode, ros_args, stop_process
from sensor_msgs.msg import JointState

from rpl_base_controllers.registry import controller_info, make_controller
from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile
from rpl_interfaces.codec import StampedVector, decode, encode
from rpl_residual_node import decision as dec
from rpl_residual_node.mixer import ResidualMixer
from rpl_residual_node.mixing import ResidualConfig
from rpl_residual_node.onnx_actor import ModelError, OnnxActor
from rpl_residual_node.policy import ResidualPolicy
from rpl_trainer.export import export_onnx, task_identity
from rpl_trainer.networks import Actor, Dims

pytestmark = pytest.mark.usefixtures('one_torch_thread')

SPEC = fixed_goal_task.register()
NO_GOAL = np.zeros(0)


def _actor(dims: Dims, two_frame: bool = False) -> Actor:
    torch.manual_seed(0)
    actor = Actor(dims, 32, 2, obs_clip=200.0, norm_clip=5.0, zero_last=False, two_frame=two_frame)
    rng = np.random.default_rng(0)
    actor.obs_norm.set_stats(rng.normal(0, 1, dims.obs_dim), rng.uniform(0.1, 2.0, dims.obs_dim))
    with torch.no_grad():
        actor.body[-1].weight.mul_(5.0)
    return actor


def _torch_residual(actor: Actor, obs: np.ndarray, prev: np.ndarray | None = None) -> np.ndarray:
    with torch.no_grad():
        o = torch.tensor(np.atleast_2d(obs), dtype=torch.float32)
        p = None if prev is None else torch.tensor(np.atleast_2d(prev), dtype=torch.float32)
        return 2.0 * actor(o, o[:, :0], p).numpy()


def _export(tmp_path, dims: Dims, spec=SPEC, two_frame: bool = False):
    actor = _actor(dims, two_frame)
    identity = task_identity(spec, 'zero', residual_scale=2.0)
    path = export_onnx(actor, tmp_path / f'{spec.name}.onnx', scale=2.0, identity=identity)
    return actor, path


def test_the_spec_layout_and_zero_controller_of_a_fixed_goal_task():
    assert (SPEC.obs_dim, SPEC.goal_dim, SPEC.action_dim) == (20, 0, 7)
    assert SPEC.goal_fields == () and not SPEC.has_goal
    names = contract.observation_fields(SPEC.obs_fields, SPEC.goal_fields)
    layout = contract.split_observation_fields(names)
    assert (layout.obs_dim, layout.goal_dim, layout.goal_fields) == (20, 0, ())
    assert SPEC.name in controller_info('zero').tasks
    zero = make_controller('zero', task=SPEC.name)
    np.testing.assert_array_equal(zero(np.ones(20), NO_GOAL), np.zeros(7))
    assert zero.act_batch(np.ones((3, 20)), np.zeros((3, 0))).shape == (3, 7)
    with pytest.raises(ValueError, match='^desired_goal must have 0 entries, got 3$'):
        zero(np.ones(20), np.ones(3))


@pytest.mark.parametrize('two_frame', [False, True])
def test_a_goal_free_export_loads_and_matches_torch(tmp_path, two_frame):
    actor, path = _export(tmp_path, Dims(20, 0, 7), two_frame=two_frame)
    inputs = [i.name for i in onnx.load(str(path)).graph.input]
    assert inputs == ['observation', *(['previous_observation'] if two_frame else [])]
    loaded = OnnxActor.load(path, obs_dim=20, goal_dim=0, action_dim=7)
    assert (loaded.obs_dim, loaded.goal_dim, loaded.action_dim) == (20, 0, 7)
    assert loaded.identity.goal_fields == () and loaded.identity.task == SPEC.name
    rng = np.random.default_rng(3)
    obs, prev = rng.normal(0, 2, (5, 20)), rng.normal(0, 2, (5, 20))
    expected = _torch_residual(actor, obs, prev if two_frame else None)
    np.testing.assert_allclose(loaded(obs, np.zeros((5, 0)), prev), expected, atol=1e-5)
    np.testing.assert_allclose(loaded(obs, None, prev), expected, atol=1e-5)
    one = _torch_residual(actor, obs[0], obs[0] if two_frame else None)[0]
    np.testing.assert_allclose(loaded(obs[0], NO_GOAL), one, atol=1e-5)
    assert np.abs(expected).max() > 0.1
    with pytest.raises(ModelError) as info:
        OnnxActor.load(path, obs_dim=20, goal_dim=3)
    assert str(info.value) == (
        f"model {path}: has no 'desired_goal' input (a fixed-goal model) but 3 goal "
        'features were expected'
    )


def test_the_policy_and_the_mixer_give_base_plus_residual(tmp_path):
    actor, path = _export(tmp_path, Dims(20, 0, 7))
    config = ResidualConfig(model_path=str(path), action_low=-2.0, action_high=2.0)
    rng = np.random.default_rng(4)
    obs = rng.normal(0, 1, 20)
    base = rng.uniform(-0.5, 0.5, 7)
    residual = np.clip(_torch_residual(actor, obs)[0], -2.0, 2.0)
    expected = np.clip(base + residual, -2.0, 2.0)

    policy = ResidualPolicy(OnnxActor.load(path), config)
    np.testing.assert_allclose(policy(obs, None, base), expected, atol=1e-5)
    np.testing.assert_allclose(policy(obs, NO_GOAL, base), expected, atol=1e-5)

    notes: list[tuple[str, str]] = []
    mixer = ResidualMixer(config, on_model_note=lambda *note: notes.append(note))
    assert mixer.actor is not None and mixer.actor.goal_dim == 0
    mixer.note_observation_source(SPEC.name, SPEC.obs_fields, SPEC.goal_fields)
    mixer.note_base_action_source('zero', SPEC.action_fields)
    assert mixer.add_observation(0, 0, obs, NO_GOAL) is None
    decision = mixer.add_base_action(0, 0, base, SPEC.action_fields)
    assert (decision.reason, decision.source) == (dec.OK, 'residual')
    assert decision.fields == SPEC.action_fields
    np.testing.assert_allclose(decision.command, expected, atol=1e-5)
    np.testing.assert_allclose(decision.residual, residual, atol=1e-5)
    assert notes == []


def test_a_model_with_goals_on_a_fixed_goal_stream_is_refused_with_one_line(tmp_path):
    with_goal = dataclasses.replace(SPEC, goal_dim=3, goal_fields=('x', 'y', 'z'))
    _, path = _export(tmp_path, Dims(20, 3, 7), spec=with_goal)
    notes: list[tuple[str, str]] = []
    config = ResidualConfig(model_path=str(path), action_low=-2.0, action_high=2.0)
    mixer = ResidualMixer(config, on_model_note=lambda *note: notes.append(note))
    mixer.note_observation_source(SPEC.name, SPEC.obs_fields, SPEC.goal_fields)
    mixer.note_base_action_source('zero', SPEC.action_fields)
    mixer.add_observation(0, 0, np.ones(20), NO_GOAL)
    base = np.full(7, 0.25)
    decision = mixer.add_base_action(0, 0, base, SPEC.action_fields)
    assert (decision.reason, decision.source) == (dec.MODEL_MISMATCH, 'base')
    np.testing.assert_array_equal(decision.command, base)
    assert mixer.mismatch == (
        "goal fields differ (the model takes goal fields ['x', 'y', 'z'], the stream has "
        'none (fixed goal))'
    )
    [(level, line)] = notes
    assert level == 'error' and '\n' not in line and 'fixed goal' in line


def test_the_trainer_refuses_a_fixed_goal_task_without_a_step_reward_in_one_line():
    from rpl_trainer.problem import registered_problem

    with pytest.raises(ValueError) as info:
        registered_problem(SPEC.name, 'zero')
    assert str(info.value) == (
        f"task '{SPEC.name}' has a fixed goal (goal_dim 0) but declares no step_reward: the "
        'trainer learns a fixed-goal task from its dense reward of a transition'
    )
    with pytest.raises(ValueError, match='has a fixed goal .*not functions of goals$'):
        SPEC.reward(np.zeros((2, 0)), np.zeros((2, 0)))


def test_a_goal_tasks_reward_and_success_come_from_its_spec_without_the_simulator():
    from rpl_trainer.problem import registered_problem

    push = registered_problem('push', 'reactive_push')
    achieved = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    desired = np.array([[0.0, 0.0, 0.04], [0.0, 0.0, 0.05], [0.0, 0.06, 0.0]])
    np.testing.assert_array_equal(push.reward_fn(achieved, desired, None), [0.0, 0.0, -1.0])
    np.testing.assert_array_equal(push.spec.success(achieved, desired), [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"^task 'push': desired_goal must have shape"):
        push.spec.reward(achieved, desired[:, :2])


def test_spec_rewards_need_no_simulator():
    code = (
        "import sys; sys.modules['mujoco'] = None; sys.modules['gymnasium_robotics'] = None\n"
        'import numpy as np\n'
        'from rpl_sim_bridge import tasks\n'
        "spec = tasks.task_spec('slippery_push')\n"
        'print(spec.reward(np.zeros((2, 3)), np.ones((2, 3))).tolist(),'
        ' tasks.sparse_reward(np.zeros(3), np.zeros(3), 0.05).tolist())\n'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['[-1.0,', '-1.0]', '-0.0']


@pytest.mark.integration
def test_the_residual_node_process_mixes_a_fixed_goal_stream(tmp_path):
    """The real residual node over DDS: observations with no goal fields, 7 torques."""
    namespace = '/fixed_goal_test'
    actor, path = _export(tmp_path, Dims(20, 0, 7))
    obs = np.linspace(-1.0, 1.0, 20)
    base = np.linspace(-0.6, 0.6, 7)
    expected = np.clip(base + np.clip(_torch_residual(actor, obs)[0], -2, 2), -2.0, 2.0)
    exe = pathlib.Path(sys.executable).parent / 'residual_node'
    # The input-age guard off, as in a lockstep stack: the test checks what is decided, and
    # on a loaded machine a first callback may run more than 0.1 s after its message came.
    params = (f'model_path:={path}', 'action_low:=-2.0', 'action_high:=2.0')
    params += ('max_input_age_s:=0.0',)
    log = tmp_path / 'node.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen(
            [str(exe), *ros_args(namespace, *params)], stdout=out, stderr=subprocess.STDOUT
        )
    side = SideNode('fixed_goal_driver', namespace)
    try:
        qos = qos_profile(contract.CONTROL_QOS)
        obs_pub = side.node.create_publisher(JointState, contract.OBSERVATION, qos)
        base_pub = side.node.create_publisher(JointState, contract.BASE_ACTION, qos)
        commands: list[tuple[StampedVector, tuple[str, ...]]] = []
        side.node.create_subscription(
            JointState,
            contract.COMMAND,
            lambda msg: commands.append((decode(msg), tuple(msg.name))),
            qos,
        )
        obs_names = contract.observation_fields(SPEC.obs_fields, SPEC.goal_fields)
        deadline, step = time.monotonic() + 30.0, 0
        while not commands and time.monotonic() < deadline:
            for pub, values, names, tag in (
                (base_pub, base, SPEC.action_fields, 'zero'),
                (obs_pub, obs, obs_names, SPEC.name),
            ):
                pub.publish(encode(JointState(), StampedVector(0, step, values, 0, tag), names))
            side.spin_until(lambda: commands, 0.25)
            step += 1
        assert commands, log.read_text()
        command, names = commands[0]
        assert command.tag == 'residual', log.read_text()
        assert names[len(contract.META_FIELDS) :] == SPEC.action_fields
        np.testing.assert_allclose(command.values, expected, atol=1e-5)
    finally:
        side.close()
        stop_process(proc)
    assert 'Traceback' not in log.read_text()
