"""The launch arguments the stack and live-learning launch files declare.

:func:`launch_arguments` (one stack) and :func:`learn_launch_arguments` (live learning):
``DeclareLaunchArgument`` actions with their defaults and descriptions, then one argument
per parameter of the task's controllers (default '' = the chosen controller's own). Their
values are checked by :mod:`rpl_bringup.stack_substitutions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from launch.actions import DeclareLaunchArgument

from rpl_base_controllers.registry import controllers_for
from rpl_bringup.stack_substitutions import (
    EXPLORER_SEED_STRIDE,
    MAX_EXPLORERS,
    RESERVED_ARGUMENTS,
    controller_params_for,
)

# The update settings every `rpl train` result and the live-learning result in the README
# used (besides 0.25 updates per step, the updates_per_step default): burn-in windows of
# 500 updates, targets blended on every update.
LEARN_TRAIN_OVERRIDES = 'burn_in_window=500,target_update_interval=1'
DEFAULT_LIVE_MODEL = 'runs/live/actor.onnx'


def _controller_param_arguments(task: str, reserved: Sequence[str]) -> list[DeclareLaunchArgument]:
    """One launch argument per parameter of the task's controllers (default '' = the
    chosen controller's own default)."""
    arguments = []
    for name, param in controller_params_for(task).items():
        if name in reserved:
            continue
        owners = [
            f'{c} {p.default}' if p.default != '' else f'{c}: its built-in one'
            for c in controllers_for(task)
            for p in _params_of(c)
            if p.name == name
        ]
        arguments.append(
            DeclareLaunchArgument(
                name,
                default_value='',
                description=f'Controller parameter: {param.description}; '
                f"'' = the controller's default ({', '.join(owners)})",
            )
        )
    return arguments


def _params_of(controller: str) -> tuple[Any, ...]:
    from rpl_base_controllers.registry import controller_info

    return controller_info(controller).params


def _controller_argument(
    task: str, default: str, external_allowed: bool = False
) -> DeclareLaunchArgument:
    """The ``controller`` argument; a stack launch (``external_allowed``) also takes
    ``external``, a learning launch does not (its trainer builds the controller)."""
    from rpl_base_controllers.registry import EXTERNAL_CONTROLLER

    external = (
        f'; or {EXTERNAL_CONTROLLER}: start none, your own node in the namespace publishes '
        'base_action (README: the topic checklist)'
        if external_allowed
        else ''
    )
    return DeclareLaunchArgument(
        'controller',
        default_value=default,
        description='Base controller (rpl_base_controllers registry name) for task '
        f'{task}: {", ".join(controllers_for(task))}{external}',
    )


def _controller_params_argument() -> DeclareLaunchArgument:
    """``controller_params``: any parameter of the chosen controller as ``NAME=VALUE,...``,
    among them one named like another launch argument (``seed``, ``mode``: such a name
    goes to the stack, and the parameter could not be set from a launch)."""
    return DeclareLaunchArgument(
        'controller_params',
        default_value='',
        description='Controller parameters as NAME=VALUE,... (also one named like another '
        "launch argument, e.g. seed=3); '' = none beyond the per-parameter arguments",
    )


def _seed_argument(description: str) -> DeclareLaunchArgument:
    return DeclareLaunchArgument('seed', default_value='0', description=description)


def _namespace_argument(description: str) -> DeclareLaunchArgument:
    return DeclareLaunchArgument('namespace', default_value='/rpl', description=description)


def _monitor_argument(description: str) -> DeclareLaunchArgument:
    return DeclareLaunchArgument(
        'monitor', default_value='false', choices=['true', 'false'], description=description
    )


def _command_timeout_argument(default: str) -> DeclareLaunchArgument:
    return DeclareLaunchArgument(
        'command_timeout',
        default_value=default,
        description='Lockstep, while the residual node is silent (it missed '
        'response_timeout_s, 10 s, or the start-up handshake): seconds the sim waits for '
        'command k after base action k before it applies the base action '
        '(config/sim_bridge.yaml: command_timeout_s). A live, answering residual node is '
        'always waited for, so machine load does not change episodes',
    )


def launch_arguments(task: str, default_controller: str) -> list[DeclareLaunchArgument]:
    """The launch arguments every stack declares (the task is fixed per launch file), then
    one per controller parameter (:func:`controller_params_for`)."""
    return _stack_arguments(task, default_controller) + _controller_param_arguments(
        task, RESERVED_ARGUMENTS
    )


def _stack_arguments(task: str, default_controller: str) -> list[DeclareLaunchArgument]:
    return [
        _controller_argument(task, default_controller, external_allowed=True),
        _controller_params_argument(),
        DeclareLaunchArgument(
            'model_path',
            default_value='',
            description='ONNX residual actor file; empty = base controller only '
            '(hot-reloaded when the file changes)',
        ),
        DeclareLaunchArgument(
            'allow_model_mismatch',
            default_value='false',
            choices=['true', 'false'],
            description='Run a model trained for another task or base controller (it learned '
            'to correct that controller, not this one: the residual node refuses it otherwise)',
        ),
        DeclareLaunchArgument(
            'residual_gain',
            default_value='1.0',
            description='Gain on the residual at start, [0, 2] (1 = the model as trained; 0 = '
            'the base alone, the model still loaded); may be set while the stack runs (ros2 '
            'param set <ns>/residual_node residual_gain G)',
        ),
        DeclareLaunchArgument(
            'residual_gain_ramp_s',
            default_value='0.0',
            description='Seconds of wall time a residual_gain raise takes, linearly (and the '
            'ramp in from 0 at start); a lower gain applies at once; 0 = at the next step',
        ),
        DeclareLaunchArgument(
            'episodes',
            default_value='0',
            description='Episodes to run, then stop the launch (exit code 0; an error if no step '
            'applied a command although the residual node was there) (0 = forever)',
        ),
        DeclareLaunchArgument(
            'mode',
            default_value='lockstep',
            choices=['lockstep', 'realtime'],
            description='lockstep: the sim steps when the command arrives (deterministic, as '
            'fast as the nodes); realtime: fixed 25 Hz, zero-order hold',
        ),
        _seed_argument('Episode i is reset with seed + i'),
        _namespace_argument('ROS namespace of the nodes and their topics'),
        _monitor_argument(
            'Also run the episode monitor (one line per episode, JSON results); '
            'the sim bridge then waits for it before the first step'
        ),
        DeclareLaunchArgument(
            'results',
            default_value='',
            description='monitor:=true: JSON file of episode results and message counts, '
            "rewritten every second; a new file (an existing one is refused); '' = none",
        ),
        _command_timeout_argument('0.05'),
        _max_rate_argument('Lockstep cap on steps per second'),
        DeclareLaunchArgument(
            'record',
            default_value='false',
            choices=['true', 'false'],
            description='Record every control topic (observation, base_action, residual, '
            'command, episode, /diagnostics) to the rosbag2 bag bag:=PATH; the sim bridge '
            'waits for the recorder before the first step',
        ),
        DeclareLaunchArgument(
            'bag',
            default_value='',
            description='record:=true: bag directory to create (mcap); must not exist yet',
        ),
    ]


def _max_rate_argument(what: str) -> DeclareLaunchArgument:
    return DeclareLaunchArgument(
        'max_rate',
        default_value='0',
        description=f'{what} (sim bridge lockstep_max_rate_hz); 0 = as fast as the nodes. '
        'On a small machine a cap leaves CPU to a trainer node learning from the stack, '
        'which otherwise falls behind and skips episodes',
    )


def learn_launch_arguments(
    task: str,
    default_controller: str,
    default_model_path: str = DEFAULT_LIVE_MODEL,
    default_train_overrides: str = LEARN_TRAIN_OVERRIDES,
    default_explore_noise: float = 0.2,
) -> list[DeclareLaunchArgument]:
    """The launch arguments of the live-learning launch (watched stack, explorers, trainer),
    then one per controller parameter (:func:`controller_params_for`). The defaults of
    ``train_overrides`` and ``explore_noise`` (a fraction of residual_limit) are the task's
    (the hooks: two frames on the noisy task, noise 0.1)."""
    return _learn_arguments(
        task,
        default_controller,
        default_model_path,
        default_train_overrides,
        default_explore_noise,
    ) + _controller_param_arguments(task, RESERVED_ARGUMENTS)


def _learn_arguments(
    task: str,
    default_controller: str,
    default_model_path: str,
    default_train_overrides: str,
    default_explore_noise: float,
) -> list[DeclareLaunchArgument]:
    return [
        _controller_argument(task, default_controller),
        _controller_params_argument(),
        DeclareLaunchArgument(
            'model_path',
            default_value=default_model_path,
            description='ONNX residual actor the trainer (re)writes and every residual node '
            'hot-reloads; the trainer writes the zero-residual model first if it is missing',
        ),
        DeclareLaunchArgument(
            'episodes',
            default_value='0',
            description='Episodes of the watched stack to run, then stop the launch with exit '
            'code 0 (0 = forever; the explorers run until then)',
        ),
        _seed_argument(
            'Watched stack: episode i is reset with seed + i; explorer i: seed + (i + 1) * '
            f'{EXPLORER_SEED_STRIDE} + episode (also its exploration seed)'
        ),
        _namespace_argument(
            'Namespace of the watched stack (no exploration) and of the trainer; explorer i '
            'runs in <namespace>/explore_<i>'
        ),
        DeclareLaunchArgument(
            'explorers',
            default_value='1',
            choices=[str(n) for n in range(MAX_EXPLORERS + 1)],
            description='Extra stacks whose residual nodes explore, all feeding the trainer',
        ),
        DeclareLaunchArgument(
            'explore_noise',
            default_value=str(default_explore_noise),
            description='Explorers: std of the Gaussian noise on the residual, as a fraction of '
            'residual_limit (0..1)',
        ),
        DeclareLaunchArgument(
            'explore_random',
            default_value='0.3',
            description='Explorers: probability per step of a uniform random residual (0..1)',
        ),
        _monitor_argument(
            'Run an episode monitor on every stack (one line per episode, JSON results); '
            'the sim bridges then wait for them before the first step'
        ),
        DeclareLaunchArgument(
            'results',
            default_value='',
            description='monitor:=true: folder (created) for <stack>.json per stack, e.g. '
            "rpl.json, rpl_explore_0.json; '' = none",
        ),
        _command_timeout_argument('0.5'),
        _max_rate_argument("Lockstep cap on each stack's steps per second"),
        DeclareLaunchArgument(
            'bags',
            default_value='',
            description='Trainer: comma-separated rosbag2 bags to learn from at start',
        ),
        DeclareLaunchArgument(
            'checkpoint',
            default_value='',
            description='Trainer: learner checkpoint file, saved at the stop and resumed if it '
            "exists; '' = beside model_path, named after it (actor.onnx -> actor.ckpt); none = "
            'no checkpoint (the learner is lost at the stop)',
        ),
        DeclareLaunchArgument(
            'init_from',
            default_value='',
            description='Trainer: checkpoint to start from while checkpoint does not exist '
            "yet: an `rpl train` run's DIR/checkpoint.pt (warm start from simulation) or a "
            "trainer node's; train_overrides must agree with its learner; '' = start afresh",
        ),
        DeclareLaunchArgument(
            'train_overrides',
            default_value=default_train_overrides,
            description='Trainer: comma-separated key=value TrainConfig overrides (default: '
            "the update settings of the README's learning results; e.g. add "
            'goal_consistent_her=true)',
        ),
        DeclareLaunchArgument(
            'updates_per_step',
            default_value='0.25',
            description='Trainer: gradient steps per stored transition',
        ),
        DeclareLaunchArgument(
            'export_every_updates',
            default_value='1000',
            description='Trainer: export a new model every this many gradient steps',
        ),
    ]
