"""``rpl``'s hand-over to the trainer: every command it hands over exists, and a robot
install without the trainer says what to install (no traceback, no "not available yet")."""

from __future__ import annotations

import argparse
import sys

import pytest

from rpl_bringup import cli

HANDED_TO_TRAINER = ('train', 'plot')


def test_the_commands_handed_to_the_trainer_are_the_trainers():
    from rpl_trainer import cli as trainer_cli

    (commands,) = (
        action.choices
        for action in trainer_cli.build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    assert set(HANDED_TO_TRAINER) <= set(commands)
    assert set(HANDED_TO_TRAINER) <= set(cli.TRAINER_COMMANDS)


@pytest.mark.parametrize('command', HANDED_TO_TRAINER)
def test_without_the_trainer_one_line_says_what_to_install(monkeypatch, capsys, command):
    monkeypatch.setitem(sys.modules, 'rpl_trainer', None)  # as on a robot: not installed
    assert cli.main([command, '--help']) == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert err.count('\n') == 1, err
    assert err.startswith(f'rpl {command}: the trainer is not installed here'), err
    assert 'pip install src/rpl_trainer' in err and 'not available yet' not in err


def test_select_without_the_trainer_says_what_to_install(monkeypatch, capsys, tmp_path):
    # As on a robot: no rpl_trainer, and no selection module imported with it earlier.
    for name in [m for m in sys.modules if m == 'rpl_trainer' or m.startswith('rpl_trainer.')]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, 'rpl_trainer', None)
    monkeypatch.delitem(sys.modules, 'rpl_bringup.selection', raising=False)
    import rpl_bringup

    monkeypatch.delattr(rpl_bringup, 'selection', raising=False)
    assert cli.main(['select', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('rpl select: the trainer is not installed')


def test_launch_options_may_follow_the_file_and_a_missing_file_is_named(capsys, tmp_path):
    """`rpl launch PKG FILE -s` worked, `rpl launch PKG -s FILE` and options after the
    arguments did not (argparse ends a '*' positional at the first option); a launch file
    that does not exist was 'not a launch file; usage: ...'."""
    for argv in (
        ['launch', 'rpl_bringup', '-s', 'push.launch.py'],
        ['launch', 'rpl_bringup', 'push.launch.py', '--show-args', 'episodes:=3'],
    ):
        assert cli.main(argv) == 0
        assert "'episodes': " in capsys.readouterr().out
    missing = tmp_path / 'mine.launch.py'
    assert cli.main(['launch', str(missing), 'episodes:=1']) == 2
    err = capsys.readouterr().err
    assert err == f"rpl launch: error: launch file '{missing}' does not exist\n"
    with pytest.raises(SystemExit) as done:
        cli.main(['launch', 'rpl_bringup', 'push.launch.py', '--bogus'])
    assert done.value.code == 2
    assert 'unrecognized arguments: --bogus' in capsys.readouterr().err


def test_a_bare_package_file_name_gives_the_package_form(capsys, monkeypatch, tmp_path):
    """`rpl launch mbrl_pusher.launch.py` (ros2 launch's file without its package) read
    the name as a path in the working folder: 'does not exist', nothing more."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(['launch', 'mbrl_pusher.launch.py', 'controller:=pets', 'x:=a b']) == 2
    err = capsys.readouterr().err
    assert err == (
        "rpl launch: error: launch file 'mbrl_pusher.launch.py' does not exist here; the "
        'package file is `rpl launch rpl_bringup mbrl_pusher.launch.py controller:=pets '
        "'x:=a b'`\n"
    ), err
    assert cli.main(['launch', 'nothere.launch.py']) == 2
    assert capsys.readouterr().err.endswith("'nothere.launch.py' does not exist\n")


@pytest.mark.parametrize('form', ['path', 'package'])
def test_an_xml_or_yaml_launch_file_says_what_runs_it(capsys, tmp_path, form):
    path = tmp_path / 'my.launch.xml'
    path.write_text('<launch></launch>\n')
    argv = ['launch', str(path)] if form == 'path' else ['launch', 'rpl_bringup', 'x.launch.yaml']
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "XML and YAML launch files need ROS 2's launch package" in err, err
    assert err.count('\n') == 1


def test_an_xml_launch_file_is_refused_with_own_runner_where_real_launch_is_installed(
    capsys, monkeypatch, tmp_path
):
    """With the real launch installed, --own-runner took an XML file to this project's runner,
    which cannot run it (the refusal was only made where the real launch is missing)."""
    from rpl_bringup import launch_shim

    monkeypatch.setattr(launch_shim, 'is_real', lambda name: True)
    path = tmp_path / 'my.launch.xml'
    path.write_text('<launch></launch>\n')
    assert cli.main(['launch', '--own-runner', str(path)]) == 2
    err = capsys.readouterr().err
    assert "need ROS 2's launch package, without --own-runner; rpl launch's own runner" in err
    assert err.count('\n') == 1, err


def test_a_ctrl_c_while_rpl_still_imports_is_one_line_and_130():
    """A Ctrl-C in the first moments of `rpl` (numpy, the launch runner or torch being
    imported) printed a KeyboardInterrupt traceback. Made certain here: the import of the
    command line itself is what gets interrupted."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import sys

        class Interrupt:  # as a Ctrl-C landing while Python imports rpl_bringup.cli
            def find_spec(self, name, path=None, target=None):
                if name == 'rpl_bringup.cli':
                    raise KeyboardInterrupt

        sys.meta_path.insert(0, Interrupt())
        from rpl_bringup.entry import main
        sys.exit(main())
        """
    )
    done = subprocess.run(
        [sys.executable, '-c', script, 'demo'], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == 'rpl: interrupted\n' and done.stdout == ''
