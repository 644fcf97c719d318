"""The launch description shared by the three stack launch files (one task each).

Every stack is the same three nodes in one namespace (see the runtime picture in the
README)::

    sim_bridge --observation--> base_controller --base_action--> residual_node
        ^                                                              |
        +---------------------------- command -------------------------+

* ``sim_bridge`` is required (``on_exit=Shutdown()``): with ``episodes:=N`` it exits 0 after
  N episodes and the launch ends with it; if it crashes the launch ends with an error.
* ``residual_node`` respawns after 1 s if it dies; meanwhile the sim bridge applies the
  base action (counted as ``fallback_base``), so a dead residual never stops the robot.
* ``monitor:=true`` adds ``episode_monitor`` (rpl_bringup), which prints one line per
  episode and writes ``results:=FILE``; the sim bridge then also waits for it to subscribe
  (DDS discovery here can take a few seconds, longer than a short run lives).
* ``record:=true bag:=PATH`` adds ``bag_recorder`` (rpl_trainer), which records every
  control topic to a new rosbag2 bag (mcap) at PATH; the sim bridge waits for it the same
  way, so the bag holds the run from step 0. The recorder is required: if it cannot start
  (no ``bag``, or PATH exists: bags are never overwritten) the launch ends with an error.

Parameters of each node come, in increasing priority, from ``config/<node>.yaml`` (node
defaults), ``config/<task>.yaml`` (this stack) and the launch arguments. Uses only the
standard ``launch`` / ``launch_ros`` API, so ``ros2 launch`` and ``rpl launch`` run it alike.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription, Substitution
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

RESIDUAL_RESPAWN_DELAY_S = 1.0
# Observation subscribers of every stack (base controller, residual node); each optional
# listener the sim bridge must wait for (monitor, recorder) adds one.
STACK_SUBSCRIBERS = 2
WAITED_FOR = ('monitor', 'record')


class _TrueCount(Substitution):
    """How many of the named boolean launch arguments are true, plus ``base`` (as text);
    with ``as_flag`` 'true' if any is true, else 'false' (for conditions)."""

    def __init__(self, names: tuple[str, ...], base: int = 0, as_flag: bool = False) -> None:
        super().__init__()
        self._configs = [LaunchConfiguration(n) for n in names]
        self._base, self._as_flag = base, as_flag

    def perform(self, context: LaunchContext) -> str:
        n = sum(c.perform(context).strip().lower() in ('true', '1') for c in self._configs)
        if self._as_flag:
            return 'true' if n else 'false'
        return str(self._base + n)

    def describe(self) -> str:
        names = [c.describe() for c in self._configs]
        return f'TrueCount({names}, base={self._base}, as_flag={self._as_flag})'


def _config(name: str) -> PathJoinSubstitution:
    return PathJoinSubstitution([FindPackageShare('rpl_bringup'), 'config', name])


def launch_arguments(default_controller: str) -> list[DeclareLaunchArgument]:
    """The launch arguments every stack declares (the task is fixed per launch file)."""
    return [
        DeclareLaunchArgument(
            'controller',
            default_value=default_controller,
            description='Base controller (registry name): reactive_push, discrete_mpc_push, '
            'reactive_pick_and_place, reactive_pick_and_place_calibrated',
        ),
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
        DeclareLaunchArgument(
            'seed', default_value='0', description='Episode i is reset with seed + i'
        ),
        DeclareLaunchArgument(
            'namespace',
            default_value='/rpl',
            description='ROS namespace of the nodes and their topics',
        ),
        DeclareLaunchArgument(
            'monitor',
            default_value='false',
            choices=['true', 'false'],
            description='Also run the episode monitor (one line per episode, JSON results); '
            'the sim bridge then waits for it before the first step',
        ),
        DeclareLaunchArgument(
            'results',
            default_value='',
            description='monitor:=true: JSON file of episode results and message counts, '
            "rewritten every second; '' = none",
        ),
        DeclareLaunchArgument(
            'command_timeout',
            default_value='0.05',
            description='Lockstep: seconds the sim waits for command k after base action k '
            'before it applies the base action (config/sim_bridge.yaml: command_timeout_s); '
            'raise it where the loop must stay deterministic on a loaded machine',
        ),
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


def _sim_bridge(namespace, stack_params, waits: bool) -> Node:
    overrides = {
        'episodes': LaunchConfiguration('episodes'),
        'mode': LaunchConfiguration('mode'),
        'seed': LaunchConfiguration('seed'),
        'command_timeout_s': LaunchConfiguration('command_timeout'),
    }
    if waits:
        # Observation subscribers to wait for: controller, residual node, and the monitor
        # and/or the recorder, so that none of them misses the first step or result.
        overrides['min_subscribers'] = _TrueCount(WAITED_FOR, base=STACK_SUBSCRIBERS)
    condition = (IfCondition if waits else UnlessCondition)(_TrueCount(WAITED_FOR, as_flag=True))
    return Node(
        package='rpl_sim_bridge',
        executable='sim_bridge_node',
        name='sim_bridge',
        namespace=namespace,
        parameters=[_config('sim_bridge.yaml'), stack_params, overrides],
        output='screen',
        on_exit=Shutdown(reason='the sim bridge (required) exited'),
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
    base_controller = Node(
        package='rpl_base_controllers',
        executable='controller_node',
        name='base_controller',
        namespace=namespace,
        parameters=[
            _config('base_controller.yaml'),
            stack_params,
            {'controller': LaunchConfiguration('controller')},
        ],
        output='screen',
    )
    residual_node = Node(
        package='rpl_residual_node',
        executable='residual_node',
        name='residual_node',
        namespace=namespace,
        parameters=[
            _config('residual_node.yaml'),
            stack_params,
            {'model_path': LaunchConfiguration('model_path')},
        ],
        output='screen',
        respawn=True,
        respawn_delay=RESIDUAL_RESPAWN_DELAY_S,
    )
    episode_monitor = Node(
        package='rpl_bringup',
        executable='episode_monitor_node',
        name='episode_monitor',
        namespace=namespace,
        parameters=[{'output_path': LaunchConfiguration('results')}],
        output='screen',
        condition=IfCondition(LaunchConfiguration('monitor')),
    )
    bag_recorder = Node(
        package='rpl_trainer',
        executable='bag_recorder_node',
        name='bag_recorder',
        namespace=namespace,
        parameters=[{'bag': LaunchConfiguration('bag')}],
        output='screen',
        on_exit=Shutdown(reason='the bag recorder (required with record:=true) exited'),
        condition=IfCondition(LaunchConfiguration('record')),
    )
    return LaunchDescription(
        [
            *launch_arguments(default_controller),
            _sim_bridge(namespace, stack_params, waits=False),
            _sim_bridge(namespace, stack_params, waits=True),
            base_controller,
            residual_node,
            episode_monitor,
            bag_recorder,
        ]
    )
