"""Parameter files read as rcl reads them, one by one: rcl merges a node's files and may keep
an earlier value over a later one (a later value of another type: a user's `episodes: 5.0`
after the stack's file ran forever, `seed: "7"` ran seed 0; a later file's `/**` section
applied before an earlier file's node section: `residual_gain: 0.5` ran at 1.0), and a node
named otherwise than a file's keys gets nothing of it (a sim bridge named `sim` ran task
push on its defaults)."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import subprocess
import sys

import pytest
from helpers import ros_args

from rpl_interfaces.param_files import (
    Asked,
    _matches,
    check_parameter_files,
    not_applied,
    params_files,
    rcl_scalar,
)
from rpl_interfaces.params import ParameterError

BIN = pathlib.Path(sys.executable).parent


@dataclasses.dataclass
class Config:
    episodes: int = 0
    rate_hz: float = 25.0
    task: str = 'push'
    joint_states: bool = False


def files(*paths: object) -> list[str]:
    """ROS arguments giving ``paths`` as parameter files."""
    argv = ['--ros-args']
    for path in paths:
        argv += ['--params-file', str(path)]
    return argv


def test_the_params_files_are_those_after_ros_args():
    argv = ['node', '--params-file', 'no', '--ros-args', '-r', '__ns:=/a', '--params-file']
    argv += ['a.yaml', '-p', 'x:=1', '--params-file', 'b.yaml', '-p', 'sim:seed:=2', '--']
    argv += ['--params-file', 'c', '-p', 'z:=3']
    assert params_files(argv) == ['a.yaml', 'b.yaml']


@pytest.mark.parametrize(
    ('text', 'quoted', 'value'),
    [
        ('5', False, 5),
        ('0x1f', False, 31),
        ('017', False, 15),  # strtoll base 0: octal
        ('-3', False, -3),
        ('1e-3', False, 0.001),
        ('1.0e3', False, 1000.0),
        ('.5', False, 0.5),
        ('y', False, True),
        ('Off', False, False),
        ('1_000', False, '1_000'),
        ('1:30', False, '1:30'),
        ('2024-01-01', False, '2024-01-01'),
        ('7', True, '7'),
        ('null', False, 'null'),
    ],
)
def test_scalars_are_typed_as_rcl_types_them(text, quoted, value):
    got = rcl_scalar(text, quoted)
    assert got == value and type(got) is type(value)
    assert math.isinf(rcl_scalar('-.inf', False)) and math.isnan(rcl_scalar('.NaN', False))


@pytest.mark.parametrize(
    ('pattern', 'name', 'matched'),
    [
        ('/**', '/rpl/sim_bridge', True),
        ('/**/sim_bridge', '/rpl/sim_bridge', True),
        ('/**/sim_bridge', '/sim_bridge', True),
        ('/*/sim_bridge', '/a/b/sim_bridge', False),
        ('/rpl/*', '/rpl/sim_bridge', True),
        ('/rpl/sim_bridge', '/rpl/sim', False),
        ('/**/sim_bridge', '/rpl/sim', False),
    ],
)
def test_node_keys_match_as_rcl_matches_them(pattern, name, matched):
    split = [[t for t in text.split('/') if t] for text in (pattern, name)]
    assert _matches(*split) is matched


def test_a_later_files_entry_of_another_type_is_refused_naming_file_and_key(tmp_path):
    first = tmp_path / 'stack.yaml'
    first.write_text('/**/sim_bridge:\n  ros__parameters:\n    episodes: 0\n    task: push\n')
    later = tmp_path / 'mine.yaml'
    later.write_text('/rpl:\n  sim_bridge:\n    ros__parameters:\n      episodes: 5.0\n')
    with pytest.raises(ParameterError) as caught:
        check_parameter_files(files(first, later), '/rpl/sim_bridge', Config)
    assert str(caught.value) == (
        f"parameter file {later}, section /rpl/sim_bridge: parameter 'episodes' must be an "
        'integer, got 5.0'
    )
    integer = tmp_path / 'integer.yaml'  # rclpy refuses an integer for a double: said here
    integer.write_text('/**:\n  ros__parameters:\n    rate_hz: 50\n')
    with pytest.raises(ParameterError, match=r"'rate_hz' must be a double, got the integer 50"):
        check_parameter_files(files(integer), '/rpl/sim_bridge', Config)
    other = tmp_path / 'other_node.yaml'  # the same entry for another node: not ours
    other.write_text('/**/base_controller:\n  ros__parameters:\n    episodes: 5.0\n')
    found = check_parameter_files(files(first, other), '/rpl/sim_bridge', Config)
    assert found.warnings == [
        f'parameter file {other} has no section for this node (/rpl/sim_bridge): its '
        "sections ['/**/base_controller'] set nothing here; is the node named as the file "
        'expects?'
    ]
    assert found.asked == {
        'episodes': Asked(0, f'parameter file {first}', '/**/sim_bridge'),
        'task': Asked('push', f'parameter file {first}', '/**/sim_bridge'),
    }
    argv = [*files(first), '-p', 'task:=slippery_push', '-p', 'other:episodes:=4']
    found = check_parameter_files(argv, '/rpl/sim_bridge', Config)  # -p: one more source
    assert found.asked['task'] == Asked('slippery_push', '-p task:=slippery_push', '/**')
    assert found.asked['episodes'].value == 0  # other:... is another node's
    explicit = tmp_path / 'explicit.yaml'  # !!str keeps a string a string, as in rcl
    explicit.write_text('/**:\n  ros__parameters:\n    task: !!str y\n    on: 3\n')
    found = check_parameter_files(files(explicit), '/rpl/sim_bridge', Config)
    assert found.asked['task'].value == 'y'
    as_rcl = tmp_path / 'as_rcl.yaml'  # what rcl types as a double, a bool, a string
    as_rcl.write_text(
        '/**:\n  ros__parameters:\n    rate_hz: 5e-1\n    joint_states: y\n    task: 2024-01-01\n'
    )
    found = check_parameter_files(files(first, as_rcl), '/rpl/sim_bridge', Config)
    assert found.warnings == [] and found.asked['rate_hz'].value == 0.5


def test_a_value_asked_for_but_not_applied_is_named():
    mine = 'parameter file mine.yaml'
    asked = {'residual_gain': Asked(0.5, mine, '/**'), 'seed': Asked(3, mine, '/**')}
    got = {'residual_gain': 1.0, 'seed': 3}
    line = not_applied(asked, got)
    assert line.startswith(
        'parameter file mine.yaml sets residual_gain to 0.5 (section /**), but rcl gave the '
        'node 1.0 from another section'
    )
    assert not_applied({'seed': Asked(3, mine, '/**')}, got) == ''


def _sim_bridge(tmp_path: pathlib.Path, repo_root: pathlib.Path, text: str):
    later = tmp_path / 'mine.yaml'
    later.write_text(text)
    args = ros_args('/param_files_test', params_file=repo_root / 'config' / 'sim_bridge.yaml')
    code, output = _run_sim_bridge([*args, '--params-file', str(later)])
    return code, later, output


def _run_sim_bridge(args: list[str]) -> tuple[int, str]:
    """A sim bridge with these ROS arguments, to its exit: (code, output)."""
    proc = subprocess.run(
        [str(BIN / 'sim_bridge_node'), *args], capture_output=True, text=True, timeout=60
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ('entry', 'said'),
    [
        ('seed: "7"', "parameter 'seed' must be an integer, got '7'"),
        # rclpy refused it without naming the file ("Trying to set parameter ... of type
        # 'INTEGER', expecting type 'DOUBLE'")
        ('command_timeout_s: 1', "parameter 'command_timeout_s' must be a double, got the "),
    ],
)
def test_a_sim_bridge_given_a_mistyped_later_file_exits_2(tmp_path, repo_root, entry, said):
    text = f'/**/sim_bridge:\n  ros__parameters:\n    {entry}\n'
    code, later, output = _sim_bridge(tmp_path, repo_root, text)
    assert code == 2, output
    assert f'parameter file {later}, section /**/sim_bridge: {said}' in output, output
    assert 'Traceback' not in output


def test_a_sim_bridge_whose_later_file_rcl_did_not_apply_exits_2(tmp_path):
    """rcl applies a node's sections in the order their keys first appear across the files:
    with a /** section in the first file, a later file's /** entry comes before the first
    file's /**/sim_bridge section, which wins; the node ran task push, asked for
    slippery_push, without a word."""
    stack = tmp_path / 'stack.yaml'
    stack.write_text(
        '/**:\n  ros__parameters:\n    seed: 0\n'
        '/**/sim_bridge:\n  ros__parameters:\n    task: push\n'
    )
    mine = tmp_path / 'mine.yaml'
    mine.write_text('/**:\n  ros__parameters:\n    task: slippery_push\n')
    args = ros_args('/param_files_test', params_file=stack) + ['--params-file', str(mine)]
    code, output = _run_sim_bridge(args)
    assert code == 2, output
    assert (
        f"parameter file {mine} sets task to 'slippery_push' (section /**), but rcl gave the "
        "node 'push' from another section"
    ) in output, output


def test_a_command_line_value_rcl_did_not_apply_exits_2(tmp_path):
    """rcl files a plain -p under /**, so a more specific section of a file can win over it
    (residual_gain:=0.5 ran at 1.0 when the node's file was keyed /**); nothing said so."""
    wildcard = tmp_path / 'wildcard.yaml'
    wildcard.write_text('/**:\n  ros__parameters:\n    seed: 0\n')
    node = tmp_path / 'node.yaml'
    node.write_text('/**/sim_bridge:\n  ros__parameters:\n    task: push\n')
    args = ros_args('/param_files_test', 'task:=slippery_push', params_file=wildcard)
    args[args.index('-p') : args.index('-p')] = ['--params-file', str(node)]
    code, output = _run_sim_bridge(args)
    assert code == 2, output
    assert (
        "-p task:=slippery_push sets task to 'slippery_push' (section /**), but rcl gave the "
        "node 'push' from another section"
    ) in output, output
