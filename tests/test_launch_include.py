"""A user's own launch file that includes a stack launch file, under `rpl launch`.

``IncludeLaunchDescription(PythonLaunchDescriptionSource(PathJoinSubstitution([
FindPackageShare('rpl_bringup'), 'launch', 'slippery_push.launch.py'])), launch_arguments=
{...}.items())`` gave an ImportError under the project runner; it now behaves as in the
real ``launch``: arguments evaluated in the including file, set as launch configurations
(scoped only inside a ``GroupAction``), then the included description is visited.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rpl_bringup import launch_runner
from rpl_bringup.launch_shim import LaunchError, ProcessPlan

USER_LAUNCH_FILE = """
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('rpl_bringup')
    stack = PythonLaunchDescriptionSource(
        PathJoinSubstitution([share, 'launch', 'slippery_push.launch.py'])
    )
    group_arguments = [('namespace', '/second'), ('seed', '77'), ('monitor', 'false')]
    return LaunchDescription([
        DeclareLaunchArgument('my_seed', default_value='5'),
        DeclareLaunchArgument('my_episodes', default_value='2'),
        DeclareLaunchArgument('my_controller', default_value='reactive_push'),
        DeclareLaunchArgument('my_namespace', default_value='/mine'),
        DeclareLaunchArgument('second', default_value='false'),
        IncludeLaunchDescription(
            stack,
            launch_arguments={
                'namespace': LaunchConfiguration('my_namespace'),
                'episodes': LaunchConfiguration('my_episodes'),
                'seed': LaunchConfiguration('my_seed'),
                'controller': LaunchConfiguration('my_controller'),
                'monitor': 'true',
            }.items(),
        ),
        GroupAction(
            [
                IncludeLaunchDescription(stack, launch_arguments=group_arguments),
            ],
            condition=IfCondition(LaunchConfiguration('second')),
        ),
        # after the group: its arguments stayed inside it
        IncludeLaunchDescription(stack, condition=IfCondition(LaunchConfiguration('second'))),
    ])
"""


@pytest.fixture
def user_launch_file(tmp_path):
    path = tmp_path / 'my_robot.launch.py'
    path.write_text(USER_LAUNCH_FILE)
    return str(path)


def _plan(path: str, **arguments: str) -> dict[str, ProcessPlan]:
    plans = launch_runner.plan_launch_file(
        path, arguments, resolve=lambda pkg, exe: [exe], force_shim=True
    )
    return {f'{p.node.namespace}/{p.name}': p for p in plans}


STACK = ['sim_bridge', 'base_controller', 'residual_node']


def test_included_stack_gets_the_launch_arguments_of_the_including_file(user_launch_file):
    plans = _plan(user_launch_file, my_seed='9')
    assert list(plans) == [f'/mine/{n}' for n in [*STACK, 'episode_monitor']]
    sim = plans['/mine/sim_bridge'].node.parameters
    assert (sim['episodes'], sim['seed'], sim['min_subscribers']) == (2, 9, 3)
    assert plans['/mine/base_controller'].node.parameters == {
        'controller': 'reactive_push',
        'controller_params': '',
    }


def test_include_arguments_persist_and_a_group_scopes_them(user_launch_file):
    # As in the real launch: an include's arguments stay set after it (the third include
    # gets the first one's), a GroupAction keeps its include's arguments inside.
    plans = {
        name: plan.node.parameters
        for name, plan in _plan(user_launch_file, second='true', my_seed='9').items()
    }
    # process labels stay unique: a second and third start of a name get -2, -3
    assert [n for n in plans if n.startswith('/second/')] == [f'/second/{n}-2' for n in STACK]
    second = plans['/second/sim_bridge-2']
    assert (second['seed'], second['episodes']) == (77, 2)
    assert 'min_subscribers' not in second  # monitor:=false inside the group
    # the third include: namespace /mine, seed 9 and monitor true again (the first include's)
    third = plans['/mine/sim_bridge-3']
    assert (third['seed'], third['min_subscribers']) == (9, 3)


def test_included_stack_checks_its_arguments(user_launch_file):
    with pytest.raises(LaunchError, match=r"controller:='reactiv_push' is not a registered"):
        _plan(user_launch_file, my_controller='reactiv_push')
    with pytest.raises(LaunchError, match=r"seed:='x' is not an integer"):
        _plan(user_launch_file, my_seed='x')
    with pytest.raises(LaunchError, match=r"unknown launch argument\(s\) \['bogus'\]"):
        _plan(user_launch_file, bogus='1')


@pytest.mark.integration
def test_user_launch_file_including_the_stack_runs_under_rpl_launch(user_launch_file, tmp_path):
    namespace = f'/itest_{os.getpid()}_include'
    done = subprocess.run(
        [
            sys.executable, '-m', 'rpl_bringup.cli', 'launch', '--own-runner', user_launch_file,
            f'my_namespace:={namespace}', 'my_episodes:=1',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert 'sim_bridge finished (code 0); stopping the launch' in output
    assert '[episode_monitor] episode   0: ' in output
    assert 'Traceback' not in output


OUTER = """
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution, ThisLaunchFileDir


def generate_launch_description():
    inner = PathJoinSubstitution([ThisLaunchFileDir(), 'sub', 'inner.launch.py'])
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(inner)),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(inner)),
    ])
"""
INNER = """
import sys
from launch import LaunchDescription
from launch.actions import ExecuteProcess
from launch.substitutions import ThisLaunchFileDir


def generate_launch_description():
    return LaunchDescription([
        ExecuteProcess(cmd=[sys.executable, '-c', 'pass', ThisLaunchFileDir()], name='inner'),
    ])
"""


def test_this_launch_file_dir_follows_includes(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'outer.launch.py').write_text(OUTER)
    (tmp_path / 'sub' / 'inner.launch.py').write_text(INNER)
    plans = launch_runner.plan_launch_file(
        str(tmp_path / 'outer.launch.py'), {}, resolve=lambda pkg, exe: [exe], force_shim=True
    )
    assert [(p.name, p.cmd[-1]) for p in plans] == [
        ('inner', str(tmp_path / 'sub')),
        ('inner-2', str(tmp_path / 'sub')),
    ]


def test_show_args_lists_the_arguments_of_included_files_too(user_launch_file):
    names = [info.name for info in launch_runner.describe_launch_arguments(user_launch_file)]
    assert names[:5] == ['my_seed', 'my_episodes', 'my_controller', 'my_namespace', 'second']
    assert {'controller', 'episodes', 'seed', 'record', 'bag'} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        (
            'def generate_launch_description(:\n    pass\n',
            'failed: SyntaxError: invalid syntax (at broken.launch.py:1)',
        ),
        (
            'import no_such_module_here\n',
            "failed: ModuleNotFoundError: No module named 'no_such_module_here' (at "
            'broken.launch.py:1 in <module>)',
        ),
        (
            'from launch.actions import OpaqueFunction\n',
            "failed: OpaqueFunction is not in rpl launch's own runner, which has only part of "
            "the launch API (README, Launch rules); with ROS 2's launch installed the file runs "
            'there (at broken.launch.py:1 in <module>)',
        ),
        (
            'import os\n\ndef generate_launch_description():\n    return os.environ["NOPE_X"]\n',
            "failed: KeyError: 'NOPE_X' (at broken.launch.py:4 in generate_launch_description)",
        ),
    ],
)
def test_a_broken_user_launch_file_is_one_line_saying_where(tmp_path, text, expected):
    """A syntax error, a missing module, or a mistake in generate_launch_description() was
    the interpreter's traceback through the runner; the traceback stays on request."""
    path = tmp_path / 'broken.launch.py'
    path.write_text(text)
    command = [sys.executable, '-m', 'rpl_bringup.cli', 'launch', '--own-runner', str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == '' and done.stderr == (
        f"rpl launch: error: launch file '{path}' {expected}; set RPL_TRACEBACK=1 for the "
        'whole traceback\n'
    )
    env = {**os.environ, 'RPL_TRACEBACK': '1'}
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode != 0 and 'Traceback (most recent call last)' in again.stderr


UNDECLARED_LAUNCH_FILE = """
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    episodes = LaunchConfiguration('eps', default='1')  # read, never declared
    stack = PathJoinSubstitution([FindPackageShare('rpl_bringup'), 'launch', 'push.launch.py'])
    return LaunchDescription([
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(stack), launch_arguments={'episodes': episodes}.items()
        ),
    ])
"""


def test_an_argument_read_but_never_declared_is_used_and_a_typo_still_refused(tmp_path):
    """ros2 launch gives every name:=value to the launch configurations; a file that reads
    one with LaunchConfiguration(name, default=...) and declares none was refused here."""
    path = tmp_path / 'undeclared.launch.py'
    path.write_text(UNDECLARED_LAUNCH_FILE)
    plans = _plan(str(path), eps='2')
    assert plans['/rpl/sim_bridge'].node.parameters['episodes'] == 2
    assert _plan(str(path))['/rpl/sim_bridge'].node.parameters['episodes'] == 1
    with pytest.raises(LaunchError, match=r"unknown launch argument\(s\) \['epz'\]"):
        _plan(str(path), epz='2')
