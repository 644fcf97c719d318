"""The launch descriptions of the stack launch files and of the live-learning launch file.

This module holds the node builders and the two descriptions; the launch arguments are
declared in :mod:`rpl_bringup.stack_arguments`, checked by the substitutions of
:mod:`rpl_bringup.stack_substitutions`, and the nodes' ``on_exit`` rules are
:mod:`rpl_bringup.stack_exits`.

Every stack is the same three nodes in one namespace (see the runtime picture in the
README)::

    sim_bridge --observation--> base_controller --base_action--> residual_node
        ^                                                              |
        +---------------------------- command -------------------------+

:func:`stack_launch_description` (``slippery_push``, ``push``, ``pick_and_place`` launch
files) runs one stack:

* The launch arguments are checked first, before any node starts
  (:class:`~rpl_bringup.stack_substitutions.CheckArguments`): ``controller`` must be
  registered (rpl_base_controllers) for the task (registered with rpl_sim_bridge), integers
  must be integers in range, ``record:=true`` needs ``bag``. A bad one is one line and a
  non-zero exit (``rpl launch``: 2; ``ros2 launch``: 1).
* With ``model_path`` set the sim bridge expects the model (``expect_model``): a finished
  run in which none, or less than half, of the applied commands came from it (a model that
  failed to load: the residual node passes the base action through) ends the launch
  non-zero.
* ``sim_bridge`` is required (:class:`~rpl_bringup.stack_exits.RequiredExit`): with
  ``episodes:=N`` it exits 0 after N episodes and the launch ends with 0; if it crashes
  the launch ends non-zero, under ``ros2 launch`` too (a bare ``on_exit=Shutdown()`` ends a
  real launch with 0).
* ``controller:=external`` starts no ``base_controller``: the user's own node (any
  language, the README's topic checklist) publishes ``base_action`` in the namespace, and
  the sim bridge waits for it as for ours. Live learning runs the controller in its trainer
  as well, so there the controller must be a registered one.
* ``base_controller`` respawns after 1 s if it dies; meanwhile a lockstep sim bridge
  applies the zero action (counted as ``fallback_zero``) after ``step_timeout_s`` once the
  node is off the graph, after ``response_timeout_s`` while the endpoints of a killed
  process linger (re-sending the observation, which the new node answers).
  ``residual_node`` respawns after 1 s too; meanwhile the sim bridge applies the base
  action (``fallback_base``), at once or after ``response_timeout_s`` the same way, so a
  dead residual never stops the robot. Either dying again within ``CRASH_LOOP_S`` of its
  restart is a crash loop (:class:`~rpl_bringup.stack_exits.RespawnWatch`): the launch
  ends non-zero naming it.
* ``monitor:=true`` adds ``episode_monitor`` (rpl_bringup), which prints one line per
  episode and writes ``results:=FILE``; the sim bridge then also waits for it to subscribe
  (DDS discovery here can take a few seconds, longer than a short run lives). If the
  monitor dies the launch ends non-zero (:class:`~rpl_bringup.stack_exits.WatchedExit`):
  the results asked for stop there.
* ``record:=true bag:=PATH`` adds ``bag_recorder`` (rpl_bags), which records every
  control topic to a new rosbag2 bag (mcap) at PATH; the sim bridge waits for it the same
  way, so the bag holds the run from step 0. The recorder is required: if it cannot start
  (PATH exists: bags are never overwritten) the launch ends with an error.

:func:`learn_launch_description` (``slippery_push_learn.launch.py``,
``noisy_hook_learn.launch.py``) runs the watched stack in ``namespace`` without
exploration, ``explorers:=N`` (0..4) more stacks in ``<namespace>/explore_<i>`` whose
residual nodes explore (sim seeds ``seed + (i + 1) * 1000000``), and the trainer node
(rpl_trainer) learning from every stack's topics and exporting a new model to
``model_path`` that every residual node hot-reloads:

* the trainer and every sim bridge are required (a crash ends the launch non-zero); base
  controllers and residual nodes respawn as above; with ``episodes:=N`` the launch ends when
  the watched stack has run N episodes (the explorers run until then);
* every sim bridge waits for its controller, residual node, the trainer (which subscribes
  to every stack) and, with ``monitor:=true``, its monitor, for up to
  ``LEARN_STARTUP_TIMEOUT_S`` (the trainer imports torch, may resume a checkpoint and
  read bags first);
* ``monitor:=true results:=DIR`` writes ``DIR/<stack>.json`` per stack, the stack named by
  its namespace (``/rpl`` -> ``rpl``, ``/rpl/explore_0`` -> ``rpl_explore_0``); the
  monitors create DIR.

Parameters of each node come, in increasing priority, from ``config/<node>.yaml`` (node
defaults), ``config/<task>.yaml`` (this stack) and the launch arguments. Uses only the
standard ``launch`` / ``launch_ros`` API (actions, substitutions, ``on_exit`` callables), so
``ros2 launch`` and ``rpl launch`` run it alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from launch import LaunchDescription, Substitution
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from rpl_base_controllers.registry import controllers_for
from rpl_bringup.stack_arguments import (
    DEFAULT_LIVE_MODEL,
    LEARN_TRAIN_OVERRIDES,
    launch_arguments,
    learn_launch_arguments,
)
from rpl_bringup.stack_exits import RequiredExit, RespawnWatch, WatchedExit
from rpl_bringup.stack_substitutions import (
    EXPLORER_SEED_STRIDE,
    MAX_EXPLORERS,
    CheckArguments,
    ControllerArgument,
    ControllerParams,
    ExplorerActive,
    ExplorerNamespace,
    ExternalController,
    FloatArgument,
    IntArgument,
    LearnerCheckpoint,
    Lockstep,
    LockstepRate,
    ModelGiven,
    NewLearnResults,
    NewResultsFile,
    RecordBag,
    ResultsFile,
    StackNamespaces,
    StackSeed,
    Text,
    TrainerFiles,
    TrueCount,
    learn_seed,
)
from rpl_bringup.task_parameters import STACK_NODES, task_parameters
from rpl_sim_bridge.bridge_config import LOCKSTEP, MAX_EPISODES, MAX_SEED

RESIDUAL_RESPAWN_DELAY_S = 1.0
CONTROLLER_RESPAWN_DELAY_S = 1.0
# Observation subscribers of every stack (base controller, residual node); each optional
# listener the sim bridge must wait for (monitor, recorder) adds one.
STACK_SUBSCRIBERS = 2
WAITED_FOR = ('monitor', 'record')
# Learning launch: the trainer subscribes to the observation topic of every stack.
LEARN_STACK_SUBSCRIBERS = STACK_SUBSCRIBERS + 1
LEARN_STARTUP_TIMEOUT_S = 120.0  # how long a learning stack's sim waits for the trainer, s


def _config(name: str) -> PathJoinSubstitution:
    return PathJoinSubstitution([FindPackageShare('rpl_bringup'), 'config', name])


def _stack_params(task: str, params_file: str | None) -> dict[str, list[Any]]:
    """Each stack node's task parameters (node name -> its ``parameters`` entries): the
    given file, else the task's shipped ``config/<task>.yaml``, else
    :func:`task_parameters` (a plug-in task ships no file in this package). A file of the
    user's comes after what the spec implies (what it does not set, the spec gives), and
    the sim bridge and the controller stay bound to ``task`` (a file without ``task`` had
    the sim bridge run its default, Fetch push, with exit 0)."""
    if params_file is None:
        from rpl_bringup.launch_runner import LaunchError, find_package_share

        try:
            share = find_package_share('rpl_bringup')
        except LaunchError:
            share = None
        if share is None or os.path.isfile(os.path.join(share, 'config', f'{task}.yaml')):
            return {node: [_config(f'{task}.yaml')] for node in STACK_NODES}
        return {node: [params] for node, params in task_parameters(task).items()}
    # The spec's first, as a file (a file without action bounds clipped a [-2, 2] task to
    # the node's [-1, 1]; a parameter dict would come after every file and beat the
    # user's), then the user's file, then the task again for the two nodes bound to it.
    spec_file = _spec_params_file(task)
    bound = {'sim_bridge': [{'task': task}], 'base_controller': [{'task': task}]}
    return {node: [spec_file, params_file, *bound.get(node, [])] for node in STACK_NODES}


def _check_default_controller(task: str, default_controller: str) -> None:
    """A launch file's ``default_controller`` must suit its task (ValueError naming the
    launch file's argument): wrong, it was blamed on a ``controller:=`` never given."""
    from rpl_base_controllers.registry import controller_config

    try:  # the registry's own check, as for a controller:= argument
        controller_config(default_controller, task)
    except ValueError as exc:
        raise ValueError(
            f'default_controller={default_controller!r} of this launch file (its '
            f'stack_launch_description / learn_launch_description call): {exc}; controllers '
            f'for task {task!r}: {controllers_for(task)}'
        ) from None


def _spec_params_file(task: str) -> str:
    """A parameter file of what ``task``'s spec implies (:func:`task_parameters`), written
    once per launch description to the temporary folder (as launch_ros writes parameter
    dicts)."""
    import tempfile

    import yaml

    sections = {f'/**/{node}': {'ros__parameters': p} for node, p in task_parameters(task).items()}
    handle, path = tempfile.mkstemp(prefix=f'rpl_{task}_spec_', suffix='.yaml')
    with os.fdopen(handle, 'w') as out:
        yaml.safe_dump(sections, out)
    return path


# --- nodes ------------------------------------------------------------------------------


def _sim_bridge(
    namespace: Any,
    stack_params: Sequence[Any],
    overrides: Mapping[str, Any],
    condition: Any = None,
) -> Node:
    return Node(
        package='rpl_sim_bridge',
        executable='sim_bridge_node',
        name='sim_bridge',
        namespace=namespace,
        parameters=[_config('sim_bridge.yaml'), *stack_params, dict(overrides)],
        output='screen',
        on_exit=RequiredExit('the sim bridge'),
        condition=condition,
    )


def _base_controller(
    task: str,
    namespace: Any,
    stack_params: Sequence[Any],
    condition: Any = None,
    external_allowed: bool = False,
) -> Node:
    controller = ControllerArgument(task, external_allowed)
    return Node(
        package='rpl_base_controllers',
        executable='controller_node',
        name='base_controller',
        namespace=namespace,
        parameters=[
            _config('base_controller.yaml'),
            *stack_params,
            {'controller': controller, 'controller_params': Text(ControllerParams(task))},
        ],
        output='screen',
        respawn=True,
        respawn_delay=CONTROLLER_RESPAWN_DELAY_S,
        on_exit=RespawnWatch(
            'the base controller',
            CONTROLLER_RESPAWN_DELAY_S,
            'meanwhile the sim bridge applies the zero action (counted as fallback_zero): '
            'in lockstep after step_timeout_s once it is off the graph, after '
            "response_timeout_s while a killed node's endpoints linger; in realtime at the "
            'next tick',
        ),
        condition=condition,
    )


def _residual_node(
    namespace: Any,
    stack_params: Sequence[Any],
    overrides: Mapping[str, Any],
    condition: Any = None,
) -> Node:
    return Node(
        package='rpl_residual_node',
        executable='residual_node',
        name='residual_node',
        namespace=namespace,
        parameters=[
            _config('residual_node.yaml'),
            *stack_params,
            {'model_path': Text(LaunchConfiguration('model_path')), **overrides},
        ],
        output='screen',
        respawn=True,
        respawn_delay=RESIDUAL_RESPAWN_DELAY_S,
        on_exit=RespawnWatch(
            'the residual node',
            RESIDUAL_RESPAWN_DELAY_S,
            'meanwhile the sim bridge applies the base action (counted as fallback_base): '
            'in lockstep at once when it is off the graph, after response_timeout_s while a '
            "killed node's endpoints linger; in realtime at the next tick",
        ),
        condition=condition,
    )


def _episode_monitor(namespace: Any, output_path: Any, condition: Any) -> Node:
    return Node(
        package='rpl_bringup',
        executable='episode_monitor_node',
        name='episode_monitor',
        namespace=namespace,
        parameters=[{'output_path': Text(output_path)}],
        output='screen',
        on_exit=WatchedExit('its episode lines and results file stop there'),
        condition=condition,
    )


def stack_launch_description(
    task: str, default_controller: str, params_file: str | None = None
) -> LaunchDescription:
    """Launch description of one stack.

    Args:
        task: Registered task name (``slippery_push``, ``push``, a plug-in's ...).
        default_controller: Default of the ``controller`` launch argument.
        params_file: The task's parameter file (sections ``/**/sim_bridge``,
            ``/**/base_controller``, ``/**/residual_node``); default: the shipped
            ``config/<task>.yaml``, else the parameters its spec implies
            (:func:`task_parameters`).
    """
    _check_default_controller(task, default_controller)
    namespace = LaunchConfiguration('namespace')
    stack_params = _stack_params(task, params_file)
    residual_overrides = {
        'allow_model_mismatch': LaunchConfiguration('allow_model_mismatch'),
        'residual_gain': FloatArgument('residual_gain', 0.0, 2.0),
        'residual_gain_ramp_s': FloatArgument('residual_gain_ramp_s', 0.0, 3600.0),
    }
    sim_overrides = {
        'episodes': IntArgument('episodes', 0, MAX_EPISODES),
        'mode': LaunchConfiguration('mode'),
        'seed': IntArgument('seed', 0, MAX_SEED),
        'command_timeout_s': FloatArgument('command_timeout', 0.0),
        'lockstep_max_rate_hz': LockstepRate(),
        'expect_model': ModelGiven(),
    }
    # Two variants: without anything optional to wait for, min_subscribers keeps its file
    # default; with a monitor and/or recorder the sim also waits for them, so that none of
    # them misses the first step or result.
    waits = TrueCount(WAITED_FOR, as_flag=True)
    waiting_overrides = {
        **sim_overrides,
        'min_subscribers': TrueCount(WAITED_FOR, base=STACK_SUBSCRIBERS),
    }
    bag_recorder = Node(
        package='rpl_bags',
        executable='bag_recorder_node',
        name='bag_recorder',
        namespace=namespace,
        parameters=[{'bag': Text(RecordBag())}],
        output='screen',
        on_exit=RequiredExit(
            'the bag recorder (required with record:=true)', runs_until_stopped=True
        ),
        condition=IfCondition(LaunchConfiguration('record')),
    )
    return LaunchDescription(
        [
            *launch_arguments(task, default_controller),
            CheckArguments(
                [
                    ControllerArgument(task, external_allowed=True),
                    ControllerParams(task),
                    *sim_overrides.values(),
                    residual_overrides['residual_gain'],
                    residual_overrides['residual_gain_ramp_s'],
                    RecordBag(),
                    NewResultsFile(),
                ]
            ),
            _sim_bridge(
                namespace, stack_params['sim_bridge'], sim_overrides, UnlessCondition(waits)
            ),
            _sim_bridge(
                namespace, stack_params['sim_bridge'], waiting_overrides, IfCondition(waits)
            ),
            _base_controller(
                task,
                namespace,
                stack_params['base_controller'],
                UnlessCondition(ExternalController()),
                external_allowed=True,
            ),
            # Lockstep: the input-age guard off (the sim waits for every command: a wait in
            # the node is load, and a fallback would make episodes depend on it); realtime:
            # the node's own max_input_age_s (config/residual_node.yaml).
            _residual_node(
                namespace,
                stack_params['residual_node'],
                {**residual_overrides, 'max_input_age_s': 0.0},
                IfCondition(Lockstep()),
            ),
            _residual_node(
                namespace,
                stack_params['residual_node'],
                residual_overrides,
                UnlessCondition(Lockstep()),
            ),
            _episode_monitor(
                namespace,
                LaunchConfiguration('results'),  # checked by NewResultsFile above
                IfCondition(LaunchConfiguration('monitor')),
            ),
            bag_recorder,
        ]
    )


def _learning_stack(
    task: str, explorer: int | None, stack_params: Mapping[str, Sequence[Any]]
) -> list[Node]:
    """One stack of the learning launch: sim bridge, controller, residual node, monitor.

    Args:
        task: Registered task name.
        explorer: None for the watched stack (no exploration, ``episodes`` episodes), else
            the explorer's index (runs while ``explorer < explorers``, explores, forever).
        stack_params: Each node's task parameters (:func:`_stack_params`, made once for
            every stack of the launch).
    """
    sim_overrides: dict[str, Any] = {
        'command_timeout_s': FloatArgument('command_timeout', 0.0),
        'lockstep_max_rate_hz': FloatArgument('max_rate', 0.0, 10000.0),
        'min_subscribers': TrueCount(('monitor',), base=LEARN_STACK_SUBSCRIBERS),
        'startup_timeout_s': LEARN_STARTUP_TIMEOUT_S,
        'mode': LOCKSTEP,  # whatever a params_file says: the learner's episodes are lockstep
    }
    if explorer is None:
        namespace = LaunchConfiguration('namespace')
        condition = None
        monitor_condition = IfCondition(LaunchConfiguration('monitor'))
        sim_overrides.update(episodes=IntArgument('episodes', 0, MAX_EPISODES), seed=learn_seed())
        explore: dict[str, Any] = {}
    else:
        namespace = ExplorerNamespace(explorer)
        condition = IfCondition(ExplorerActive(explorer))
        monitor_condition = IfCondition(ExplorerActive(explorer, also=('monitor',)))
        seed = StackSeed((explorer + 1) * EXPLORER_SEED_STRIDE)
        sim_overrides.update(episodes=0, seed=seed)
        explore = {
            'explore_noise': FloatArgument('explore_noise', 0.0, 1.0),
            'explore_random': FloatArgument('explore_random', 0.0, 1.0),
            'explore_seed': seed,
            # An exploring node keeps the trained gain, whatever a params_file says.
            'residual_gain': 1.0,
            'residual_gain_ramp_s': 0.0,
        }
    return [
        _sim_bridge(namespace, stack_params['sim_bridge'], sim_overrides, condition),
        _base_controller(task, namespace, stack_params['base_controller'], condition),
        # Learning stacks run in lockstep: a wait in the node is load, never input_late.
        _residual_node(
            namespace,
            stack_params['residual_node'],
            {**explore, 'max_input_age_s': 0.0},
            condition,
        ),
        _episode_monitor(namespace, ResultsFile(namespace), monitor_condition),
    ]


def _trainer_parameters(task: str) -> dict[str, Any]:
    return {
        'task': task,
        'controller': ControllerArgument(task),
        'controller_params': Text(ControllerParams(task)),  # as the stacks' controller nodes
        'namespaces': Text(StackNamespaces()),
        'bags': Text(LaunchConfiguration('bags')),
        'model_path': Text(LaunchConfiguration('model_path')),
        'checkpoint_path': Text(LearnerCheckpoint()),
        'init_from': Text(LaunchConfiguration('init_from')),
        'train_overrides': Text(LaunchConfiguration('train_overrides')),
        'updates_per_step': FloatArgument('updates_per_step', 0.0, 1000.0),
        'export_every_updates': IntArgument('export_every_updates', 1, 10**9),
        'seed': learn_seed(),
    }


def _trainer(task: str) -> Node:
    return Node(
        package='rpl_trainer',
        executable='trainer_node',
        name='trainer',
        namespace=LaunchConfiguration('namespace'),
        parameters=[_trainer_parameters(task)],
        output='screen',
        on_exit=RequiredExit('the trainer', runs_until_stopped=True),
    )


def learn_launch_description(
    task: str,
    default_controller: str,
    default_model_path: str = DEFAULT_LIVE_MODEL,
    default_train_overrides: str = LEARN_TRAIN_OVERRIDES,
    default_explore_noise: float = 0.2,
    params_file: str | None = None,
) -> LaunchDescription:
    """Launch description of live learning: watched stack, explorers and the trainer.

    Args:
        task: Registered task name.
        default_controller: Default of the ``controller`` launch argument.
        default_model_path: Default of the ``model_path`` launch argument.
        default_train_overrides: Default of the ``train_overrides`` launch argument (the
            trainer node's TrainConfig overrides, ``key=value,...``).
        default_explore_noise: Default of the ``explore_noise`` launch argument (explorers'
            Gaussian residual noise std as a fraction of residual_limit, or of the model's
            residual_scale where smaller, 0..1).
        params_file: The task's parameter file, as :func:`stack_launch_description`'s.
    """
    _check_default_controller(task, default_controller)
    stack_params = _stack_params(task, params_file)  # once: a user's file gives a spec file
    explorers = [
        node
        for i in range(MAX_EXPLORERS)
        for node in _learning_stack(task, explorer=i, stack_params=stack_params)
    ]
    checks = [
        IntArgument('episodes', 0, MAX_EPISODES),
        FloatArgument('command_timeout', 0.0),
        FloatArgument('max_rate', 0.0, 10000.0),
        FloatArgument('explore_noise', 0.0, 1.0),
        FloatArgument('explore_random', 0.0, 1.0),
        *_trainer_parameters(task).values(),
        ControllerParams(task),
        NewLearnResults(),
        TrainerFiles(),
    ]
    return LaunchDescription(
        [
            *learn_launch_arguments(
                task,
                default_controller,
                default_model_path,
                default_train_overrides,
                default_explore_noise,
            ),
            CheckArguments([c for c in checks if isinstance(c, Substitution)]),
            # First: it takes longest to be ready (torch, checkpoint, bags); the sims wait.
            _trainer(task),
            *_learning_stack(task, explorer=None, stack_params=stack_params),
            *explorers,
        ]
    )
