"""noisy_hook_learn.launch.py: the live-learning launch of the noisy hook task, planned
(no process starts; well under a second).

What it launches (the trainer, then the watched stack, then the explorers, every stack on
config/noisy_hook.yaml with ReactiveHook), that its trainer learns two-frame with the
shipped training config's settings, and that its explorers use the hook action noise. The
end-to-end run of the same launch code is test_learn_launch.py (slippery_push); the live
noisy_hook run is benchmarks/live_learning.py --task noisy_hook.
"""

from __future__ import annotations

import pytest
from helpers import plan_rpl_launch

from rpl_trainer.config import read_config_file, shipped_config
from rpl_trainer.trainer_node_config import TrainerNodeConfig, parse_overrides

STACK = ['sim_bridge', 'base_controller', 'residual_node']
# slippery_push_learn's default train_overrides (stack_arguments.LEARN_TRAIN_OVERRIDES).
LEARN_TRAIN_OVERRIDES = 'burn_in_window=500,target_update_interval=1'


def plans_by_name(file_name: str, **arguments: str) -> dict[str, object]:
    """Node name (``-2``, ``-3`` for the explorers' copies) -> its plan."""
    return {p.name: p for p in plan_rpl_launch(file_name, **arguments)}


def test_noisy_hook_learn_launch_plans_the_trainer_and_the_hook_stacks(repo_root):
    plans = plans_by_name('noisy_hook_learn.launch.py', explorers='2', namespace='/hk')
    assert list(plans) == ['trainer', *STACK, *[f'{n}-2' for n in STACK]] + [
        f'{n}-3' for n in STACK
    ]
    config = str(repo_root / 'config' / 'noisy_hook.yaml')
    for name, plan in plans.items():
        if name != 'trainer':
            assert plan.node.parameter_files[-1] == config, name
    namespaces = [plans[f'sim_bridge{s}'].node.namespace for s in ('', '-2', '-3')]
    assert namespaces == ['/hk', '/hk/explore_0', '/hk/explore_1']
    for suffix in ('', '-2', '-3'):
        assert plans[f'base_controller{suffix}'].node.parameters['controller'] == 'reactive_hook'
    # The watched stack does not explore; the explorers use the paper's hook noise 0.1.
    assert 'explore_noise' not in plans['residual_node'].node.parameters
    for suffix in ('-2', '-3'):
        assert plans[f'residual_node{suffix}'].node.parameters['explore_noise'] == 0.1
    trainer = plans['trainer'].node.parameters
    assert trainer['task'] == 'noisy_hook' and trainer['controller'] == 'reactive_hook'
    assert trainer['namespaces'] == '/hk,/hk/explore_0,/hk/explore_1'
    # Every residual node reads the model the trainer writes.
    models = {plans[f'residual_node{s}'].node.parameters['model_path'] for s in ('', '-2', '-3')}
    assert models == {trainer['model_path']}


def test_the_noisy_hook_trainer_learns_two_frame_with_the_shipped_settings():
    trainer = plans_by_name('noisy_hook_learn.launch.py')['trainer'].node.parameters
    node = TrainerNodeConfig(**trainer)
    config = node.train_config()  # valid: make_config checks every value
    assert config.two_frame is True and config.critic_action == 'executed'
    assert config.goal_consistent_her is False and config.residual_scale == 0.5
    assert config.residual_axis_scales == 'gripper:2'
    # Each override is the shipped training config's value of that setting.
    shipped = read_config_file(shipped_config('noisy_hook'))
    overrides = parse_overrides(trainer['train_overrides'])
    assert set(overrides) == {
        'burn_in_window', 'target_update_interval', 'two_frame', 'goal_consistent_her',
        'noise_eps', 'residual_scale', 'critic_action', 'residual_axis_scales',
    }  # fmt: skip
    assert overrides == {key: shipped[key] for key in overrides}
    assert trainer['updates_per_step'] == shipped['updates_per_env_step']


@pytest.mark.parametrize('explore_noise', ['', '0.3'])
def test_slippery_push_learn_keeps_its_defaults_and_arguments_still_override(explore_noise):
    arguments = {'explore_noise': explore_noise} if explore_noise else {}
    plans = plans_by_name('slippery_push_learn.launch.py', **arguments)
    assert plans['trainer'].node.parameters['train_overrides'] == LEARN_TRAIN_OVERRIDES
    assert plans['residual_node-2'].node.parameters['explore_noise'] == float(explore_noise or 0.2)


@pytest.mark.parametrize(
    ('given', 'expected'),
    [
        ({}, '/tmp/live/actor.ckpt'),  # beside the model, named after it
        ({'checkpoint': '/tmp/other/learner.ckpt'}, '/tmp/other/learner.ckpt'),
        ({'checkpoint': 'none'}, ''),
    ],
)
def test_the_learning_launch_keeps_a_checkpoint_beside_the_model_unless_told(given, expected):
    """Without `checkpoint:=` the learner was lost at Ctrl-C, and the same command was then
    refused (a new learner would write over the model it left)."""
    plans = plans_by_name(
        'slippery_push_learn.launch.py', model_path='/tmp/live/actor.onnx', **given
    )
    assert plans['trainer'].node.parameters['checkpoint_path'] == expected
