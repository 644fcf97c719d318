"""Per-axis residual scales (``residual_axis_scales``): the setting, the trainer's composition
and executed-action critic, the exported graph and its metadata, and the node's exploration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import run_tool

from rpl_interfaces.contract import EpisodeResult
from rpl_interfaces.params import ParameterError
from rpl_residual_node.decision import DecisionRule
from rpl_residual_node.mixing import ResidualConfig, explore_limit, explore_residual
from rpl_residual_node.model_identity import IdentityError, ModelIdentity
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.cli import main
from rpl_trainer.config import make_config
from rpl_trainer.ddpg import DDPGAgent
from rpl_trainer.episodes import EpisodeRecord, stored_residual
from rpl_trainer.export import export_onnx, read_metadata, task_identity
from rpl_trainer.networks import Actor, Dims
from rpl_trainer.residual import ActionComposer, residual_explaining, residual_scales

pytestmark = pytest.mark.usefixtures('one_torch_thread')

FIELDS = ('dx', 'dy', 'dz', 'gripper')
SCALES = np.array([0.5, 0.5, 0.5, 2.0])
SPEC = task_spec('noisy_hook')
DIMS = Dims(SPEC.obs_dim, SPEC.goal_dim, SPEC.action_dim)


def hook_config(**values):
    return make_config({'task': 'noisy_hook', 'residual_scale': 0.5, **values})


def test_the_named_axes_get_their_own_scale():
    assert SPEC.action_fields == FIELDS
    assert residual_scales(hook_config(), FIELDS) == 0.5
    grip = residual_scales(hook_config(residual_axis_scales='gripper:2'), FIELDS)
    np.testing.assert_array_equal(grip, SCALES)
    two = residual_scales(hook_config(residual_axis_scales='  dz:1   gripper:2 '), FIELDS)
    np.testing.assert_array_equal(two, [0.5, 0.5, 1.0, 2.0])
    # The same scale everywhere is one number again; the scratch learners ignore the setting.
    assert residual_scales(hook_config(residual_axis_scales='gripper:0.5'), FIELDS) == 0.5
    scratch = hook_config(algo='scratch', residual_axis_scales='gripper:2')
    assert residual_scales(scratch, FIELDS) == 0.5


@pytest.mark.parametrize(
    'text, match',
    [
        ('grip:2', r"no action field 'grip'; its action fields: \['dx', 'dy', 'dz', 'gripper'\]"),
        ('gripper=2', "'gripper=2' is not ACTION_FIELD:SCALE"),
        (
            'gripper:2,dz:1',
            r'gripper:2,dz:1 is not a positive number \(items are separated by spaces',
        ),
        ('gripper:x', 'gripper:x is not a positive number'),
        ('gripper:-1', 'gripper:-1 is not a positive number'),
        ('gripper:0', 'gripper:0 is not a positive number'),
        ('gripper:nan', 'gripper:nan is not a positive number'),
        ('gripper:2 gripper:1', "'gripper' is named twice"),
        (':2', "':2' is not ACTION_FIELD:SCALE"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line(text, match):
    with pytest.raises(ParameterError, match=match) as info:
        residual_scales(hook_config(residual_axis_scales=text), FIELDS)
    assert str(info.value).startswith('residual_axis_scales: ') and '\n' not in str(info.value)


def test_names_without_the_task_fields_are_refused():
    with pytest.raises(ParameterError, match='names action fields, and none are known'):
        residual_scales(hook_config(residual_axis_scales='gripper:2'), None)


def test_rpl_train_refuses_an_unknown_axis_before_creating_the_run(tmp_path, capsys):
    out = tmp_path / 'run'
    argv = ['train', '--task', 'noisy_hook', '--steps', '100', '--out', str(out)]
    assert main([*argv, '--set', 'residual_axis_scales=fingers:2']) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert (
        error[-1].startswith('rpl train: error: residual_axis_scales:') and 'fingers' in error[-1]
    )
    assert not out.exists()


def test_composer_scales_each_axis_and_stores_the_residual_that_explains_the_command():
    rng = np.random.default_rng(0)
    composer = ActionComposer('rpl', SCALES, -1.0, 1.0, noise_eps=0.1, random_eps=1.0)
    base = np.tile([0.2, -0.3, 0.0, 1.0], (4000, 1))  # fingers at full strength, as ReactiveHook
    u = rng.uniform(-1.0, 1.0, base.shape)
    executed = composer.executed(u, base)
    np.testing.assert_allclose(executed, np.clip(base + SCALES * u, -1, 1), atol=1e-6)
    stored, explored = composer.explore(np.zeros_like(u, dtype=np.float32), base, rng)
    np.testing.assert_allclose(explored, composer.executed(stored, base), atol=1e-6)
    # Motion explores within +-0.5 of the base; only the fingers can be reversed.
    assert np.abs(explored[:, :3] - base[:, :3]).max() <= 0.5 + 1e-6
    assert 0.2 < np.mean(explored[:, 3] < 0.0) < 0.3  # u < -0.5: a quarter of the draws
    inside = np.abs(explored) < 1.0
    again = residual_explaining(explored, base, SCALES)
    np.testing.assert_allclose(again[inside], stored[inside], atol=1e-5)
    np.testing.assert_allclose(stored_residual(explored, base, SCALES), again, atol=0)


def test_the_executed_action_critic_sees_the_per_axis_command():
    config = make_config({'algo': 'rpl', 'hidden_size': 32, 'critic_action': 'executed'})
    agent = DDPGAgent(DIMS, config, episode_steps=100, residual_scale=SCALES)
    generator = torch.Generator().manual_seed(0)
    u = torch.rand(64, 4, generator=generator) * 2 - 1
    base = torch.rand(64, 4, generator=generator) * 2 - 1
    expected = np.clip(base.numpy() + SCALES * u.numpy(), -1, 1)
    np.testing.assert_allclose(agent._critic_action(u, base).numpy(), expected, atol=1e-6)
    low = agent._critic_action(u.bfloat16(), base.bfloat16())
    assert low.dtype == torch.bfloat16  # the update's precision, as with one scale
    uniform = DDPGAgent(DIMS, config, episode_steps=100, residual_scale=0.5)
    expected = np.clip(base.numpy() + 0.5 * u.numpy(), -1, 1)
    np.testing.assert_allclose(uniform._critic_action(u, base).numpy(), expected, atol=1e-6)


def spread_actor(seed: int = 0) -> Actor:
    """A non-zero actor whose outputs cover the tanh range."""
    torch.manual_seed(seed)
    actor = Actor(DIMS, 32, 2, obs_clip=200.0, norm_clip=5.0, zero_last=False)
    with torch.no_grad():
        actor.body[-1].weight.mul_(20.0)
    return actor


def test_export_holds_the_scales_in_the_graph_and_states_them(tmp_path):
    actor = spread_actor()
    identity = task_identity(
        SPEC, 'reactive_hook', residual_scale=2.0, residual_scales=tuple(SCALES)
    )
    path = export_onnx(actor, tmp_path / 'grip.onnx', SCALES, identity=identity)
    meta = read_metadata(path)
    assert meta['residual_scale'] == '2.0'
    assert json.loads(meta['residual_scales']) == [0.5, 0.5, 0.5, 2.0]
    loaded = OnnxActor.load(path)
    assert loaded.identity.residual_scales == (0.5, 0.5, 0.5, 2.0)
    rng = np.random.default_rng(1)
    obs = rng.normal(0.0, 3.0, (500, DIMS.obs_dim)).astype(np.float32)
    goal = rng.normal(0.0, 3.0, (500, DIMS.goal_dim)).astype(np.float32)
    residual = loaded(obs, goal)
    with torch.no_grad():
        expected = SCALES * actor(torch.from_numpy(obs), torch.from_numpy(goal)).numpy()
    np.testing.assert_allclose(residual, expected, atol=1e-5)
    reach = np.abs(residual).max(axis=0)
    assert np.all(reach <= SCALES + 1e-6) and np.all(reach > 0.9 * SCALES)
    # One scale on every axis: the file looks as before (no per-axis key).
    plain = export_onnx(actor, tmp_path / 'plain.onnx', np.full(4, 0.5), identity=identity)
    assert 'residual_scales' not in read_metadata(plain)
    assert read_metadata(plain)['residual_scale'] == '0.5'
    with pytest.raises(ValueError, match='3 residual scales for an actor of 4 actions'):
        export_onnx(actor, tmp_path / 'bad.onnx', [0.5, 0.5, 2.0])


@pytest.mark.parametrize(
    'text, problem',
    [
        ('[0.5, 2.0]', 'one scale per action field'),
        ('[0.5, 0.5, 0.5, -2.0]', 'a JSON list of positive numbers'),
        ('[0.5, 0.5, 0.5, "a"]', 'a JSON list of positive numbers'),
        ('[]', 'a JSON list of positive numbers'),
        ('2.0', 'a JSON list of positive numbers'),
        ('[0.5, 0.5, 0.5, NaN]', 'a JSON list of positive numbers'),
        ('[true, true, true, true]', 'a JSON list of positive numbers'),
    ],
)
def test_malformed_per_axis_metadata_is_refused(text, problem):
    props = ModelIdentity(action_fields=FIELDS, residual_scales=tuple(SCALES)).to_props()
    assert ModelIdentity.from_props(props).residual_scales == tuple(SCALES)
    with pytest.raises(IdentityError, match=f"'residual_scales' must be {problem}"):
        ModelIdentity.from_props({**props, 'residual_scales': text})


def test_the_node_explores_each_axis_within_its_own_scale(tmp_path):
    config = ResidualConfig(residual_limit=1.0, explore_random=1.0)
    limit = explore_limit(config, 2.0, (0.5, 0.5, 0.5, 2.0))
    np.testing.assert_array_equal(limit, [0.5, 0.5, 0.5, 1.0])  # the node's clamp still binds
    explored, replaced = explore_residual(
        np.zeros((5000, 4)), config, np.random.default_rng(0), limit
    )
    reach = np.abs(explored).max(axis=0)
    assert replaced.all() and np.all(reach <= limit) and np.all(reach > 0.98 * limit)
    # Through the node's decision rule with an exported per-axis model.
    actor = Actor(DIMS, 32, 2, obs_clip=200.0, norm_clip=5.0, zero_last=True)
    identity = task_identity(
        SPEC, 'reactive_hook', residual_scale=2.0, residual_scales=tuple(SCALES)
    )
    model = OnnxActor.load(export_onnx(actor, tmp_path / 'zero.onnx', SCALES, identity=identity))
    rule = DecisionRule(ResidualConfig(residual_limit=2.0, explore_random=1.0))
    base = np.array([0.0, 0.0, 0.0, 0.0])
    applied = np.array(
        [
            rule.decide(
                (0, step),
                np.zeros(DIMS.obs_dim),
                np.zeros(DIMS.goal_dim),
                base,
                None,
                FIELDS,
                model,
                '',
                False,
            ).residual
            for step in range(2000)
        ]
    )
    reach = np.abs(applied).max(axis=0)
    assert np.all(reach <= SCALES) and np.all(reach > 0.95 * SCALES)


def test_a_training_run_exports_and_reports_its_per_axis_scales(tmp_path, repo_root, capsys):
    out = tmp_path / 'grip'
    argv = [
        'train', '--task', 'noisy_hook', '--steps', '200', '--out', str(out), '--no-progress',
        '--eval-episodes', '2', '--set', 'base_eval_episodes=2', '--set', 'two_frame=false',
        '--set', 'residual_axis_scales=gripper:2',
    ]  # fmt: skip
    threads = torch.get_num_threads()
    assert main(argv) == 0
    torch.set_num_threads(threads)
    meta = read_metadata(out / 'actor.onnx')
    assert meta['residual_scale'] == '2.0' and meta['residual_scales'] == '[0.5, 0.5, 0.5, 2.0]'
    done = run_tool(repo_root, 'residual_size', str(out / 'checkpoint.pt'), '--states', '50')
    assert done.returncode == 0, done.stderr
    assert '(x scales [0.5 0.5 0.5 2. ])' in done.stdout
    # The scales are the learner's: a resumed run may not change them.
    other = [*argv[:-1], 'residual_axis_scales=gripper:1', '--resume']
    capsys.readouterr()
    assert main(other) == 2
    assert 'residual_axis_scales' in capsys.readouterr().err


def test_the_trainer_node_learner_takes_the_scales_from_train_overrides(tmp_path):
    from rpl_interfaces.params import build_config
    from rpl_trainer import offline
    from rpl_trainer.trainer_node_config import TrainerNodeConfig

    node = build_config(
        TrainerNodeConfig,
        {
            'task': 'noisy_hook',
            'controller': 'reactive_hook',
            'train_overrides': 'residual_scale=0.5,residual_axis_scales=dz:1 gripper:2,'
            'hidden_size=16,critic_action=residual',
        },
    )
    learner = offline.OfflineLearner.for_task(node.train_config(), 0.25)
    scales = [0.5, 0.5, 1.0, 2.0]
    np.testing.assert_array_equal(learner.residual_scale, scales)
    np.testing.assert_array_equal(learner.sampler.scale, scales)  # goal-consistent HER's
    np.testing.assert_allclose(learner.agent._exec_scale.numpy(), scales)  # executed critic's
    # A recorded episode is stored as (command - base) / scale, axis by axis.
    steps, rng = SPEC.max_episode_steps, np.random.default_rng(0)
    base = np.tile([0.1, -0.2, 0.0, -1.0], (steps, 1))
    record = EpisodeRecord(
        episode=0,
        observation=rng.normal(size=(steps + 1, DIMS.obs_dim)),
        achieved_goal=rng.normal(size=(steps + 1, DIMS.goal_dim)),
        desired_goal=np.zeros((steps, DIMS.goal_dim)),
        base_action=base,
        command=base + [0.25, 0.0, 0.5, 1.5],  # the fingers reversed: -1 + 1.5
        result=EpisodeResult(0, False, 0.2, -100.0, steps, 0, 0),
    )
    assert learner.add([record]) == steps
    np.testing.assert_allclose(learner.buffer._data.action[0], [[0.5, 0.0, 0.5, 0.75]] * steps)
    meta = read_metadata(learner.export(tmp_path / 'node.onnx'))
    assert json.loads(meta['residual_scales']) == scales


def test_an_agent_is_not_built_from_per_axis_settings_without_their_scales():
    config = make_config({'algo': 'rpl', 'hidden_size': 16, 'residual_axis_scales': 'gripper:2'})
    with pytest.raises(ValueError, match='needs the resolved per-axis scale'):
        DDPGAgent(DIMS, config, episode_steps=100)


def test_a_residual_reaching_beyond_the_tasks_action_range_is_a_warning():
    """A plug-in task of [-0.5, 0.5] trained at the default residual_scale 2 let the
    residual reach four times the range without a word; the shipped settings stay quiet."""
    import dataclasses

    from rpl_sim_bridge.tasks import task_spec
    from rpl_trainer.config import make_config
    from rpl_trainer.residual import scale_range_note

    push, pusher = task_spec('push'), task_spec('mbrl_pusher')
    assert scale_range_note(make_config({'task': 'push'}), push) is None  # 2 on [-1, 1]
    assert scale_range_note(make_config({'task': 'mbrl_pusher'}), pusher) is None  # 2 on 4
    half = dataclasses.replace(push, action_low=-0.5, action_high=0.5)
    note = scale_range_note(make_config({'task': 'push'}), half)
    assert note == (
        "residual_scale 2 reaches beyond the whole action range of task 'push' (1 = 0.5 - "
        '(-0.5)): the residual needs at most 1 to override any base action, and exploration '
        'noise is in units of the scale; --set residual_scale=1 fits it'
    )
    fits = make_config({'task': 'push', 'residual_scale': 1.0})
    assert scale_range_note(fits, half) is None
    wide_fingers = make_config(
        {'task': 'push', 'residual_scale': 1.0, 'residual_axis_scales': 'gripper:2'}
    )
    note = scale_range_note(wide_fingers, half)
    assert note.startswith('the residual scale of gripper (2 at most) reaches beyond'), note
    assert note.endswith(
        "--set residual_axis_scales='gripper:1' (its other items as they are) fits it"
    ), note
    assert scale_range_note(make_config({'task': 'push', 'algo': 'scratch'}), half) is None
