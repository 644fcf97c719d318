"""Parameter files read as rcl reads them, one by one: rcl merges them and drops a later
file's value whose type differs from an earlier one's (a user's `episodes: 5.0` after the
stack's file ran forever, `seed: "7"` ran seed 0), and a node named otherwise than a file's
keys gets nothing of it (a sim bridge named `sim` ran task push on its defaults)."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

import pytest
from helpers import ros_args

from rpl_interfaces.params import (
    ParameterError,
    _matches,
    check_parameter_files,
    params_files,
)

BIN = pathlib.Path(sys.executable).parent


@dataclasses.dataclass
class Config:
    episodes: int = 0
    rate_hz: float = 25.0
    task: str = 'push'


def test_the_params_files_are_those_after_ros_args():
    argv = ['node', '--params-file', 'no', '--ros-args', '-r', '__ns:=/a', '--params-file']
    argv += ['a.yaml', '-p', 'x:=1', '--params-file', 'b.yaml', '--', '--params-file', 'c']
    assert params_files(argv) == ['a.yaml', 'b.yaml']


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
        check_parameter_files([str(first), str(later)], '/rpl/sim_bridge', Config)
    assert str(caught.value) == (
        f"parameter file {later}, section /rpl/sim_bridge: parameter 'episodes' must be an "
        'integer, got 5.0'
    )
    other = tmp_path / 'other_node.yaml'  # the same entry for another node: not ours
    other.write_text('/**/base_controller:\n  ros__parameters:\n    episodes: 5.0\n')
    warnings = check_parameter_files([str(first), str(other)], '/rpl/sim_bridge', Config)
    assert warnings == [
        f'parameter file {other} has no section for this node (/rpl/sim_bridge): its '
        "sections ['/**/base_controller'] set nothing here; is the node named as the file "
        'expects?'
    ]
    assert check_parameter_files([str(first)], '/rpl/sim_bridge', Config) == []
    # What rcl types as numbers or strings where PyYAML would not: 5e-1, 1.0e3, a date.
    as_rcl = tmp_path / 'as_rcl.yaml'
    as_rcl.write_text(
        '/**:\n  ros__parameters:\n    rate_hz: 5e-1\n    episodes: 1000\n    task: 2024-01-01\n'
    )
    assert check_parameter_files([str(first), str(as_rcl)], '/rpl/sim_bridge', Config) == []


def test_a_sim_bridge_given_a_mistyped_later_file_exits_2(tmp_path, repo_root):
    later = tmp_path / 'mine.yaml'
    later.write_text('/**/sim_bridge:\n  ros__parameters:\n    seed: "7"\n')
    config = repo_root / 'config' / 'sim_bridge.yaml'
    args = ros_args('/param_files_test', params_file=config)
    args += ['--params-file', str(later)]
    proc = subprocess.run(
        [str(BIN / 'sim_bridge_node'), *args], capture_output=True, text=True, timeout=60
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert (
        f"parameter file {later}, section /**/sim_bridge: parameter 'seed' must be an "
        "integer, got '7'"
    ) in output, output
    assert 'Traceback' not in output
