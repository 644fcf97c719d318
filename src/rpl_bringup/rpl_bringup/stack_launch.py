"""The launch descriptions of the stack launch files and of the live-learning launch file.

Every stack is the same three nodes in one namespace (see the runtime picture in the
README)::

    sim_bridge --observation--> base_controller --base_action--> residual_node
        ^                                                              |
        +---------------------------- command -------------------------+

:func:`stack_launch_description` (``slippery_push``, ``push``, ``pick_and_place`` launch
files) runs one stack:

* The launch arguments are checked first, before any node starts (``_CheckArguments``):
  ``controller`` must be registered (rpl_base_controllers) for the task (registered with
  rpl_sim_bridge), integers must be integers in range, ``record:=true`` needs ``bag``. A bad
  one is one line and a non-zero exit (``rpl launch``: 2; ``ros2 launch``: 1).
* ``sim_bridge`` is required (:class:`RequiredExit`): with ``episodes:=N`` it exits 0 after
  N episodes and the launch ends with 0; if it crashes the launch ends non-zero, under
  ``ros2 launch`` too (a bare ``on_exit=Shutdown()`` ends a real launch with 0).
* ``base_controller`` respawns after 1 s if it dies; meanwhile the sim bridge applies the
  zero action (counted as ``fallback_zero``). ``residual_node`` respawns after 1 s too;
  meanwhile the sim bridge applies the base action (``fallback_base``), so a dead residual
  never stops the robot. Either dying again within ``CRASH_LOOP_S`` of its restart is a
  crash loop (:class:`RespawnWatch`): the launch ends non-zero naming it.
* ``monitor:=true`` adds ``episode_monitor`` (rpl_bringup), which prints one line per
  episode and writes ``results:=FILE``; the sim bridge then also waits for it to subscribe
  (DDS discovery here can take a few seconds, longer than a short run lives).
* ``record:=true bag:=PATH`` adds ``bag_recorder`` (rpl_bags), which records every
  control topic to a new rosbag2 bag (mcap) at PATH; the sim bridge waits for it the same
  way, so the bag holds the run from step 0. The recorder is required: if it cannot start
  (PATH exists: bags are never overwritten) the launch ends with an error.

:func:`learn_launch_description` (``slippery_push_learn.launch.py``) runs the watched stack
in ``namespace`` without exploration, ``explorers:=N`` (0..4) more stacks in
``<namespace>/explore_<i>`` whose residual nodes explore (sim seeds ``seed + (i + 1) *
1000000``), and the trainer node (rpl_trainer) learning from every stack's topics and
exporting a new model to ``model_path`` that every residual node hot-reloads:

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
import time
from collections.abc import Mapping, Sequence
from typing import Any

from launch import Action, LaunchContext, LaunchDescription, Substitution
from launch.actions import DeclareLaunchArgument, LogInfo, Shutdown
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# A respawned node dying again within CRASH_LOOP_S of its restart is in a crash loop (e.g.
# a bad controller parameter): the launch ends with an error naming it (the project
# runner's own rule too).
from rpl_bringup.supervisor import CRASH_LOOP_S

RESIDUAL_RESPAWN_DELAY_S = 1.0
CONTROLLER_RESPAWN_DELAY_S = 1.0
MAX_SEED = 2**31 - 1  # sim_bridge / trainer seed range
MAX_EPISODES = 10**9
# The update settings every `rpl train` result and the live-learning result in the README
# used (besides 0.25 updates per step, the updates_per_step default): burn-in windows of
# 500 updates, targets blended on every update.
LEARN_TRAIN_OVERRIDES = 'burn_in_window=500,target_update_interval=1'
# Observation subscribers of every stack (base controller, residual node); each optional
# listener the sim bridge must wait for (monitor, recorder) adds one.
STACK_SUBSCRIBERS = 2
WAITED_FOR = ('monitor', 'record')
# Learning launch: the trainer subscribes to the observation topic of every stack.
LEARN_STACK_SUBSCRIBERS = STACK_SUBSCRIBERS + 1
MAX_EXPLORERS = 4
EXPLORER_SEED_STRIDE = 1_000_000  # explorer i runs sim seeds seed + (i + 1) * stride ...
LEARN_STARTUP_TIMEOUT_S = 120.0  # how long a learning stack's sim waits for the trainer, s
DEFAULT_LIVE_MODEL = 'runs/live/actor.onnx'
# Launch arguments of the stack and learning launch files that a controller parameter of
# the same name cannot be (such a parameter is then settable as a ROS parameter only).
RESERVED_ARGUMENTS = (
    'controller',
    'model_path',
    'episodes',
    'mode',
    'seed',
    'namespace',
    'monitor',
    'results',
    'command_timeout',
    'max_rate',
    'record',
    'bag',
    'explorers',
    'explore_noise',
    'explore_random',
    'bags',
    'checkpoint',
    'train_overrides',
    'updates_per_step',
    'export_every_updates',
    'task',
)


# --- substitutions (plain launch.Substitution subclasses) -------------------------------


def _flag(context: LaunchContext, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ('true', '1')


class _TrueCount(Substitution):
    """How many of the named boolean launch arguments are true, plus ``base`` (as text);
    with ``as_flag`` 'true' if any is true, else 'false' (for conditions)."""

    def __init__(self, names: tuple[str, ...], base: int = 0, as_flag: bool = False) -> None:
        super().__init__()
        self._names = names
        self._base, self._as_flag = base, as_flag

    def perform(self, context: LaunchContext) -> str:
        n = sum(_flag(context, name) for name in self._names)
        if self._as_flag:
            return 'true' if n else 'false'
        return str(self._base + n)

    def describe(self) -> str:
        return f'TrueCount({list(self._names)}, base={self._base}, as_flag={self._as_flag})'


class _Float(Substitution):
    """A numeric launch argument as float text ('1' -> '1.0'), so that a double parameter
    never receives an integer; outside ``[low, high]`` or not a number: ValueError."""

    def __init__(self, name: str, low: float = -float('inf'), high: float = float('inf')) -> None:
        super().__init__()
        self._name, self._low, self._high = name, low, high

    def perform(self, context: LaunchContext) -> str:
        text = LaunchConfiguration(self._name).perform(context)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f'launch argument {self._name}:={text!r} is not a number') from None
        if not self._low <= value <= self._high:
            raise ValueError(
                f'launch argument {self._name}:={text!r} is outside [{self._low}, {self._high}]'
            )
        return repr(value)

    def describe(self) -> str:
        return f'Float({self._name!r})'


class _Int(Substitution):
    """An integer launch argument as canonical text ('007' -> '7'); not an integer or
    outside ``[low, high]``: ValueError (one line, before any node gets a bad parameter)."""

    def __init__(self, name: str, low: int, high: int) -> None:
        super().__init__()
        self._name, self._low, self._high = name, low, high

    def perform(self, context: LaunchContext) -> str:
        text = LaunchConfiguration(self._name).perform(context)
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(
                f'launch argument {self._name}:={text!r} is not an integer '
                f'(expected {self._low}..{self._high})'
            ) from None
        if not self._low <= value <= self._high:
            raise ValueError(
                f'launch argument {self._name}:={text!r} is outside {self._low}..{self._high}'
            )
        return str(value)

    def describe(self) -> str:
        return f'Int({self._name!r})'


def _known_tasks() -> list[str]:
    from rpl_sim_bridge.tasks import available_tasks

    return available_tasks()


def controllers_for(task: str) -> list[str]:
    """Registered controllers that suit ``task`` (rpl_base_controllers registry), sorted."""
    from rpl_base_controllers.registry import available_controllers, controller_info

    return [n for n in available_controllers() if task in controller_info(n).tasks]


class _Controller(Substitution):
    """The ``controller`` launch argument, checked against the controller registry: a
    registered controller that suits ``task`` (registered with the sim bridge's task
    registry), else ValueError listing the controllers for the task."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self._task = task

    def perform(self, context: LaunchContext) -> str:
        from rpl_base_controllers.registry import UnknownControllerError, controller_info

        tasks = _known_tasks()
        if self._task not in tasks:
            raise ValueError(f'task {self._task!r} is not registered; known tasks: {tasks}')
        name = LaunchConfiguration('controller').perform(context)
        known = controllers_for(self._task)
        try:
            suits = controller_info(name).tasks
        except UnknownControllerError:
            raise ValueError(
                f'launch argument controller:={name!r} is not a registered controller; '
                f'controllers for task {self._task}: {known}'
            ) from None
        if self._task not in suits:
            raise ValueError(
                f'launch argument controller:={name!r} is meant for tasks {list(suits)}, not '
                f'{self._task}; controllers for task {self._task}: {known}'
            )
        return name

    def describe(self) -> str:
        return f'Controller(task={self._task!r})'


def controller_params_for(task: str) -> dict[str, Any]:
    """Parameters of the controllers that suit ``task``: name -> the first such parameter
    (by controller name); each is a launch argument of the task's launch files."""
    from rpl_base_controllers.registry import controller_info

    params: dict[str, Any] = {}
    for controller in controllers_for(task):
        for param in controller_info(controller).params:
            params.setdefault(param.name, param)
    return params


class _ControllerParams(Substitution):
    """The controller node's ``controller_params``: the controller-parameter launch arguments
    that are set (``carry_gain:=50``), as ``NAME=VALUE,...`` typed and range-checked for the
    chosen controller, else ValueError naming the argument (the controller has no such
    parameter, a bad value). Unset ones ('') are left out: the node keeps its parameter
    files' value or the controller's registered default."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self._task = task

    def perform(self, context: LaunchContext) -> str:
        from rpl_base_controllers.registry import controller_config, controller_info, parse_value

        controller = LaunchConfiguration('controller').perform(context)
        params = {p.name: p for p in controller_info(controller).params}
        values: dict[str, Any] = {}
        for name in controller_params_for(self._task):
            if name in RESERVED_ARGUMENTS:
                continue
            text = LaunchConfiguration(name).perform(context).strip()
            if not text:
                continue
            if name not in params:
                raise ValueError(
                    f'launch argument {name}:={text!r}: controller {controller!r} has no '
                    f'parameter {name!r}; its parameters: {sorted(params)}'
                )
            try:
                values[name] = parse_value(params[name], text)
                controller_config(controller, self._task, **{name: values[name]})
            except ValueError as exc:
                raise ValueError(f'launch argument {name}:={text!r}: {exc}') from None
        return ','.join(f'{name}={value}' for name, value in values.items())

    def describe(self) -> str:
        return f'ControllerParams(task={self._task!r})'


def _controller_param_arguments(task: str, reserved: Sequence[str]) -> list[DeclareLaunchArgument]:
    """One launch argument per parameter of the task's controllers (default '' = the
    chosen controller's own default)."""
    arguments = []
    for name, param in controller_params_for(task).items():
        if name in reserved:
            continue
        owners = [
            f'{c} {p.default}'
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


class _RecordBag(Substitution):
    """The ``bag`` launch argument; ``record:=true`` needs one, else ValueError (the
    recorder would fail only once the other nodes were importing)."""

    def perform(self, context: LaunchContext) -> str:
        bag = LaunchConfiguration('bag').perform(context)
        if _flag(context, 'record') and not bag.strip():
            raise ValueError('launch argument record:=true needs bag:=PATH (a new bag folder)')
        return bag

    def describe(self) -> str:
        return 'RecordBag()'


class _CheckArguments(Action):
    """Performs every checking substitution before any node starts, so that a bad launch
    argument ends the launch with one line and a non-zero exit (under ``ros2 launch`` the
    ValueError is its 'Caught exception in launch' line, exit 1; under ``rpl launch`` exit 2)
    and no node is ever started with it."""

    def __init__(self, checks: Sequence[Substitution]) -> None:
        super().__init__()
        self._checks = list(checks)

    def execute(self, context: LaunchContext) -> None:
        for check in self._checks:
            check.perform(context)


class RequiredExit:
    """``on_exit`` callable of a required node (``launch`` calls it with the ProcessExited
    event and the context): exit code 0 ends the launch (``Shutdown()``); any other code
    raises, which ends the launch with exit code 1 under ``ros2 launch`` (a bare
    ``on_exit=Shutdown()`` ends it with 0 there) and with the node's code under
    ``rpl launch``. Exits while the launch is already shutting down change nothing."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __call__(self, event: Any, context: Any) -> Any:
        if getattr(context, 'is_shutdown', False):
            return None
        if event.returncode == 0:
            return Shutdown(reason=f'{self._what} (required) finished')
        raise RuntimeError(f'required process {event.process_name} died (code {event.returncode})')


class RespawnWatch:
    """``on_exit`` callable of a respawning node: says what happens until it is back, and
    raises (ending the launch with an error) when it dies again within ``CRASH_LOOP_S`` of
    its restart, a crash loop that respawning cannot fix."""

    def __init__(self, what: str, respawn_delay: float, meanwhile: str) -> None:
        self._what, self._delay, self._meanwhile = what, respawn_delay, meanwhile
        self._last_exit: float | None = None

    def __call__(self, event: Any, context: Any) -> Any:
        if getattr(context, 'is_shutdown', False):
            return None
        now = time.monotonic()
        restarted = None if self._last_exit is None else self._last_exit + self._delay
        self._last_exit = now
        if restarted is not None and now - restarted < CRASH_LOOP_S:
            raise RuntimeError(
                f'{event.process_name} died again (code {event.returncode}) '
                f'{now - restarted:.1f} s after its restart: a crash loop ({self._what}: '
                'check its parameters)'
            )
        return LogInfo(
            msg=f'{self._what} died (exit code {event.returncode}); respawning it in '
            f'{self._delay:.1f} s; {self._meanwhile}'
        )


def _explorer_count(context: LaunchContext) -> int:
    text = LaunchConfiguration('explorers').perform(context)
    try:
        count = int(text)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_EXPLORERS:
        raise ValueError(f'launch argument explorers:={text!r} must be 0..{MAX_EXPLORERS}')
    return count


class _ExplorerActive(Substitution):
    """'true' when explorer ``index`` runs (``index < explorers``) and every boolean launch
    argument in ``also`` is true, else 'false' (for conditions)."""

    def __init__(self, index: int, also: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._index, self._also = index, also

    def perform(self, context: LaunchContext) -> str:
        active = self._index < _explorer_count(context)
        return 'true' if active and all(_flag(context, n) for n in self._also) else 'false'

    def describe(self) -> str:
        return f'ExplorerActive({self._index}, also={list(self._also)})'


def _explorer_namespace_text(context: LaunchContext, index: int) -> str:
    return LaunchConfiguration('namespace').perform(context).rstrip('/') + f'/explore_{index}'


class _ExplorerNamespace(Substitution):
    """Namespace of explorer ``index``: ``<namespace>/explore_<index>``."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def perform(self, context: LaunchContext) -> str:
        return _explorer_namespace_text(context, self._index)

    def describe(self) -> str:
        return f'ExplorerNamespace({self._index})'


class _StackNamespaces(Substitution):
    """Comma-separated namespaces of the watched stack and of every running explorer."""

    def perform(self, context: LaunchContext) -> str:
        namespaces = [LaunchConfiguration('namespace').perform(context)]
        namespaces += [
            _explorer_namespace_text(context, i) for i in range(_explorer_count(context))
        ]
        return ','.join(namespaces)

    def describe(self) -> str:
        return 'StackNamespaces()'


class _StackSeed(Substitution):
    """``seed + offset`` as text (the seed of an explorer's sim and exploration noise)."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self._offset = offset

    def perform(self, context: LaunchContext) -> str:
        return str(int(_learn_seed().perform(context)) + self._offset)

    def describe(self) -> str:
        return f'StackSeed(seed + {self._offset})'


def stack_name(namespace: str) -> str:
    """File-name form of a stack's namespace: '/rpl/explore_0' -> 'rpl_explore_0'."""
    return namespace.strip('/').replace('/', '_') or 'root'


class _ResultsFile(Substitution):
    """``<results>/<stack name>.json`` for the stack in ``namespace``; '' when results is ''."""

    def __init__(self, namespace: Substitution) -> None:
        super().__init__()
        self._namespace = namespace

    def perform(self, context: LaunchContext) -> str:
        folder = LaunchConfiguration('results').perform(context)
        if not folder:
            return ''
        return os.path.join(folder, stack_name(self._namespace.perform(context)) + '.json')

    def describe(self) -> str:
        return f'ResultsFile({self._namespace.describe()})'


def _learn_seed() -> _Int:
    # The explorers' sims run seed + (i + 1) * stride: every one must stay in range.
    return _Int('seed', 0, MAX_SEED - MAX_EXPLORERS * EXPLORER_SEED_STRIDE)


def _config(name: str) -> PathJoinSubstitution:
    return PathJoinSubstitution([FindPackageShare('rpl_bringup'), 'config', name])


# --- launch arguments -------------------------------------------------------------------


def _controller_argument(task: str, default: str) -> DeclareLaunchArgument:
    return DeclareLaunchArgument(
        'controller',
        default_value=default,
        description='Base controller (rpl_base_controllers registry name) for task '
        f'{task}: {", ".join(controllers_for(task))}',
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
        _controller_argument(task, default_controller),
        DeclareLaunchArgument(
            'model_path',
            default_value='',
            description='ONNX residual actor file; empty = base controller only '
            '(hot-reloaded when the file changes)',
        ),
        DeclareLaunchArgument(
            'episodes',
            default_value='0',
            description='Episodes to run, then stop the launch with exit code 0 (0 = forever)',
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
            "rewritten every second; '' = none",
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
    task: str, default_controller: str, default_model_path: str = DEFAULT_LIVE_MODEL
) -> list[DeclareLaunchArgument]:
    """The launch arguments of the live-learning launch (watched stack, explorers, trainer),
    then one per controller parameter (:func:`controller_params_for`)."""
    return _learn_arguments(
        task, default_controller, default_model_path
    ) + _controller_param_arguments(task, RESERVED_ARGUMENTS)


def _learn_arguments(
    task: str, default_controller: str, default_model_path: str
) -> list[DeclareLaunchArgument]:
    return [
        _controller_argument(task, default_controller),
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
            default_value='0.2',
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
            description="Trainer: learner checkpoint file, resumed if it exists; '' = none",
        ),
        DeclareLaunchArgument(
            'train_overrides',
            default_value=LEARN_TRAIN_OVERRIDES,
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


# --- nodes ------------------------------------------------------------------------------


def _sim_bridge(
    namespace: Any,
    stack_params: Any,
    overrides: Mapping[str, Any],
    condition: Any = None,
) -> Node:
    return Node(
        package='rpl_sim_bridge',
        executable='sim_bridge_node',
        name='sim_bridge',
        namespace=namespace,
        parameters=[_config('sim_bridge.yaml'), stack_params, dict(overrides)],
        output='screen',
        on_exit=RequiredExit('the sim bridge'),
        condition=condition,
    )


def _base_controller(task: str, namespace: Any, stack_params: Any, condition: Any = None) -> Node:
    return Node(
        package='rpl_base_controllers',
        executable='controller_node',
        name='base_controller',
        namespace=namespace,
        parameters=[
            _config('base_controller.yaml'),
            stack_params,
            {'controller': _Controller(task), 'controller_params': _ControllerParams(task)},
        ],
        output='screen',
        respawn=True,
        respawn_delay=CONTROLLER_RESPAWN_DELAY_S,
        on_exit=RespawnWatch(
            'the base controller',
            CONTROLLER_RESPAWN_DELAY_S,
            'meanwhile the sim bridge applies the zero action (counted as fallback_zero)',
        ),
        condition=condition,
    )


def _residual_node(
    namespace: Any, stack_params: Any, overrides: Mapping[str, Any], condition: Any = None
) -> Node:
    return Node(
        package='rpl_residual_node',
        executable='residual_node',
        name='residual_node',
        namespace=namespace,
        parameters=[
            _config('residual_node.yaml'),
            stack_params,
            {'model_path': LaunchConfiguration('model_path'), **overrides},
        ],
        output='screen',
        respawn=True,
        respawn_delay=RESIDUAL_RESPAWN_DELAY_S,
        on_exit=RespawnWatch(
            'the residual node',
            RESIDUAL_RESPAWN_DELAY_S,
            'meanwhile the sim bridge applies the base action (counted as fallback_base)',
        ),
        condition=condition,
    )


def _episode_monitor(namespace: Any, output_path: Any, condition: Any) -> Node:
    return Node(
        package='rpl_bringup',
        executable='episode_monitor_node',
        name='episode_monitor',
        namespace=namespace,
        parameters=[{'output_path': output_path}],
        output='screen',
        condition=condition,
    )


def stack_launch_description(task: str, default_controller: str) -> LaunchDescription:
    """Launch description of one stack.

    Args:
        task: Registered task name (``slippery_push``, ``push``, ``pick_and_place``); its
            parameter file is ``config/<task>.yaml``.
        default_controller: Default of the ``controller`` launch argument.
    """
    namespace = LaunchConfiguration('namespace')
    stack_params = _config(f'{task}.yaml')
    sim_overrides = {
        'episodes': _Int('episodes', 0, MAX_EPISODES),
        'mode': LaunchConfiguration('mode'),
        'seed': _Int('seed', 0, MAX_SEED),
        'command_timeout_s': _Float('command_timeout', 0.0),
        'lockstep_max_rate_hz': _Float('max_rate', 0.0, 10000.0),
    }
    # Two variants: without anything optional to wait for, min_subscribers keeps its file
    # default; with a monitor and/or recorder the sim also waits for them, so that none of
    # them misses the first step or result.
    waits = _TrueCount(WAITED_FOR, as_flag=True)
    waiting_overrides = {
        **sim_overrides,
        'min_subscribers': _TrueCount(WAITED_FOR, base=STACK_SUBSCRIBERS),
    }
    bag_recorder = Node(
        package='rpl_bags',
        executable='bag_recorder_node',
        name='bag_recorder',
        namespace=namespace,
        parameters=[{'bag': _RecordBag()}],
        output='screen',
        on_exit=RequiredExit('the bag recorder (required with record:=true)'),
        condition=IfCondition(LaunchConfiguration('record')),
    )
    return LaunchDescription(
        [
            *launch_arguments(task, default_controller),
            _CheckArguments(
                [
                    _Controller(task),
                    _ControllerParams(task),
                    *sim_overrides.values(),
                    _RecordBag(),
                ]
            ),
            _sim_bridge(namespace, stack_params, sim_overrides, UnlessCondition(waits)),
            _sim_bridge(namespace, stack_params, waiting_overrides, IfCondition(waits)),
            _base_controller(task, namespace, stack_params),
            _residual_node(namespace, stack_params, {}),
            _episode_monitor(
                namespace,
                LaunchConfiguration('results'),
                IfCondition(LaunchConfiguration('monitor')),
            ),
            bag_recorder,
        ]
    )


def _learning_stack(task: str, explorer: int | None) -> list[Node]:
    """One stack of the learning launch: sim bridge, controller, residual node, monitor.

    Args:
        task: Registered task name.
        explorer: None for the watched stack (no exploration, ``episodes`` episodes), else
            the explorer's index (runs while ``explorer < explorers``, explores, forever).
    """
    stack_params = _config(f'{task}.yaml')
    sim_overrides: dict[str, Any] = {
        'command_timeout_s': _Float('command_timeout', 0.0),
        'lockstep_max_rate_hz': _Float('max_rate', 0.0, 10000.0),
        'min_subscribers': _TrueCount(('monitor',), base=LEARN_STACK_SUBSCRIBERS),
        'startup_timeout_s': LEARN_STARTUP_TIMEOUT_S,
    }
    if explorer is None:
        namespace = LaunchConfiguration('namespace')
        condition = None
        monitor_condition = IfCondition(LaunchConfiguration('monitor'))
        sim_overrides.update(episodes=_Int('episodes', 0, MAX_EPISODES), seed=_learn_seed())
        explore: dict[str, Any] = {}
    else:
        namespace = _ExplorerNamespace(explorer)
        condition = IfCondition(_ExplorerActive(explorer))
        monitor_condition = IfCondition(_ExplorerActive(explorer, also=('monitor',)))
        seed = _StackSeed((explorer + 1) * EXPLORER_SEED_STRIDE)
        sim_overrides.update(episodes=0, seed=seed)
        explore = {
            'explore_noise': _Float('explore_noise', 0.0, 1.0),
            'explore_random': _Float('explore_random', 0.0, 1.0),
            'explore_seed': seed,
        }
    return [
        _sim_bridge(namespace, stack_params, sim_overrides, condition),
        _base_controller(task, namespace, stack_params, condition),
        _residual_node(namespace, stack_params, explore, condition),
        _episode_monitor(namespace, _ResultsFile(namespace), monitor_condition),
    ]


def _trainer_parameters(task: str) -> dict[str, Any]:
    return {
        'task': task,
        'controller': _Controller(task),
        'namespaces': _StackNamespaces(),
        'bags': LaunchConfiguration('bags'),
        'model_path': LaunchConfiguration('model_path'),
        'checkpoint_path': LaunchConfiguration('checkpoint'),
        'train_overrides': LaunchConfiguration('train_overrides'),
        'updates_per_step': _Float('updates_per_step', 0.0, 1000.0),
        'export_every_updates': _Int('export_every_updates', 1, 10**9),
        'seed': _learn_seed(),
    }


def _trainer(task: str) -> Node:
    return Node(
        package='rpl_trainer',
        executable='trainer_node',
        name='trainer',
        namespace=LaunchConfiguration('namespace'),
        parameters=[_trainer_parameters(task)],
        output='screen',
        on_exit=RequiredExit('the trainer'),
    )


def learn_launch_description(
    task: str, default_controller: str, default_model_path: str = DEFAULT_LIVE_MODEL
) -> LaunchDescription:
    """Launch description of live learning: watched stack, explorers and the trainer.

    Args:
        task: Registered task name; its parameter file is ``config/<task>.yaml``.
        default_controller: Default of the ``controller`` launch argument.
        default_model_path: Default of the ``model_path`` launch argument.
    """
    explorers = [node for i in range(MAX_EXPLORERS) for node in _learning_stack(task, explorer=i)]
    checks = [
        _Int('episodes', 0, MAX_EPISODES),
        _Float('command_timeout', 0.0),
        _Float('max_rate', 0.0, 10000.0),
        _Float('explore_noise', 0.0, 1.0),
        _Float('explore_random', 0.0, 1.0),
        *_trainer_parameters(task).values(),
        _ControllerParams(task),
    ]
    return LaunchDescription(
        [
            *learn_launch_arguments(task, default_controller, default_model_path),
            _CheckArguments([c for c in checks if isinstance(c, Substitution)]),
            # First: it takes longest to be ready (torch, checkpoint, bags); the sims wait.
            _trainer(task),
            *_learning_stack(task, explorer=None),
            *explorers,
        ]
    )
