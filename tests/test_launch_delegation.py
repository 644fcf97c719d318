"""`rpl launch` hands a file to the real `launch` only where the ament index resolves it.

A pip install can have an importable ``launch`` package but no ament index and no
``lib/<package>/`` executables: the real launch then fails (``AMENT_PREFIX_PATH is not
set``, ``package 'rpl_bringup' not found``). These tests put a fake ``launch`` /
``launch_ros`` on ``PYTHONPATH`` whose ``LaunchService.run()`` prints a marker and returns
7, and check when it is used.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

FAKE_LAUNCH = {
    'launch/__init__.py': """
        class LaunchDescription:
            def __init__(self, entities=()):
                self.entities = list(entities)


        class LaunchService:
            def __init__(self, argv=()):
                self.argv = list(argv)

            def include_launch_description(self, description):
                self.description = description

            def run(self):
                print('FAKE REAL LAUNCH RAN', self.argv, flush=True)
                return 7
    """,
    'launch/actions.py': """
        class IncludeLaunchDescription:
            def __init__(self, source, launch_arguments=()):
                self.source, self.launch_arguments = source, launch_arguments
    """,
    'launch/launch_description_sources.py': """
        class PythonLaunchDescriptionSource:
            def __init__(self, path):
                self.path = path
    """,
    'launch_ros/__init__.py': '',
}

USER_LAUNCH_FILE = """
import sys
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, Shutdown
from launch_ros.actions import Node


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('greeting', default_value='hi'),
        Node(package='rpl_fake_pkg', executable='talker', name='talker', output='screen',
             on_exit=Shutdown()),
    ])
"""


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _prefix(root: pathlib.Path, packages: list[str], talker: bool) -> pathlib.Path:
    """An ament prefix registering ``packages``; with ``talker`` it has lib/rpl_fake_pkg/talker."""
    index = root / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    for package in packages:
        (index / package).write_text('')
    if talker:
        exe = root / 'lib' / 'rpl_fake_pkg' / 'talker'
        exe.parent.mkdir(parents=True)
        exe.write_text(f'#!{sys.executable}\nprint("talker here", flush=True)\n')
        exe.chmod(0o755)
    return root


@pytest.fixture
def fake_launch(tmp_path: pathlib.Path):
    """Runs `rpl launch <user file>` with a fake real launch importable; returns a runner."""
    _write(tmp_path / 'fake', FAKE_LAUNCH)
    launch_file = tmp_path / 'user.launch.py'
    launch_file.write_text(USER_LAUNCH_FILE)

    def run(ament_prefix: pathlib.Path | None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join([str(tmp_path / 'fake'), env.get('PYTHONPATH', '')])
        env.pop('AMENT_PREFIX_PATH', None)
        if ament_prefix is not None:
            env['AMENT_PREFIX_PATH'] = str(ament_prefix)
        cmd = [sys.executable, '-m', 'rpl_bringup.cli', 'launch', str(launch_file)]
        return subprocess.run(
            cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    return run


def test_without_an_ament_index_the_own_runner_runs_the_file(fake_launch):
    done = fake_launch(None)
    assert 'FAKE REAL LAUNCH RAN' not in done.stdout
    assert (
        '[rpl launch] not using the installed launch package: AMENT_PREFIX_PATH is not set '
        '(no ament index: a pip install); running the file here'
    ) in done.stdout.splitlines()
    # The own runner evaluated the file; the fake package's executable is nowhere.
    assert done.returncode == 2
    assert "executable 'talker' of package 'rpl_fake_pkg' not found" in done.stderr


def test_without_rpl_bringup_in_the_index_the_own_runner_runs_the_file(fake_launch, tmp_path):
    prefix = _prefix(tmp_path / 'prefix', ['rpl_fake_pkg'], talker=True)
    done = fake_launch(prefix)
    assert 'FAKE REAL LAUNCH RAN' not in done.stdout
    assert 'package rpl_bringup is not in the ament index' in done.stdout
    # found through AMENT_PREFIX_PATH by the own runner too
    assert '[talker] talker here' in done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_missing_node_executable_keeps_the_own_runner(fake_launch, tmp_path):
    prefix = _prefix(tmp_path / 'prefix', ['rpl_bringup', 'rpl_fake_pkg'], talker=False)
    done = fake_launch(prefix)
    assert 'FAKE REAL LAUNCH RAN' not in done.stdout
    missing = prefix / 'lib' / 'rpl_fake_pkg' / 'talker'
    assert f'{missing} does not exist (node talker)' in done.stdout


def test_with_the_packages_in_the_ament_index_the_real_launch_runs_the_file(fake_launch, tmp_path):
    prefix = _prefix(tmp_path / 'prefix', ['rpl_bringup', 'rpl_fake_pkg'], talker=True)
    done = fake_launch(prefix)
    assert done.returncode == 7, done.stdout + done.stderr
    assert 'FAKE REAL LAUNCH RAN' in done.stdout
    assert 'not using the installed launch package' not in done.stdout
