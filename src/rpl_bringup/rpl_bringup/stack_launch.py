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

Parameters of each node come, in increasing priority, from ``config/<node>.yaml`` (node
defaults), ``config/<task>.yaml`` (this stack) and the launch arguments. Uses only the
standard ``launch`` / ``launch_ros`` API, so ``ros2 launch`` and ``rpl launch`` run it alike.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

RESIDUAL_RESPAWN_DELAY_S = 1.0


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
    ]


def _sim_bridge(namespace, stack_params, monitored: bool) -> Node:
    overrides = {
        'episodes': LaunchConfiguration('episodes'),
        'mode': LaunchConfiguration('mode'),
        'seed': LaunchConfiguration('seed'),
    }
    if monitored:
        # Observation subscribers to wait for: controller, residual node and the monitor,
        # so that no episode result is published before the monitor listens.
        overrides['min_subscribers'] = 3
    condition = (IfCondition if monitored else UnlessCondition)(LaunchConfiguration('monitor'))
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
    return LaunchDescription(
        [
            *launch_arguments(default_controller),
            _sim_bridge(namespace, stack_params, monitored=False),
            _sim_bridge(namespace, stack_params, monitored=True),
            base_controller,
            residual_node,
            episode_monitor,
        ]
    )
