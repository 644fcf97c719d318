"""Exit rules of a launch: on_exit callables, crash loops, launch-time argument checks.

* A required node's non-zero exit must end the launch non-zero under the real ``launch``
  too, where ``on_exit=Shutdown()`` ends it with 0: the launch files give an ``on_exit``
  callable that returns ``Shutdown()`` for exit 0 and raises otherwise (the real
  ``LaunchService.run()`` returns 1 when an event handler raises); the project runner
  accepts the same form.
* The base controller respawns; a respawned node dying again within seconds (a crash
  loop) ends the launch non-zero, naming it.
* Bad launch arguments (controller, integers, record without bag) end the launch with one
  line before any node starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest
from helpers import plan_rpl_launch, python_plan, supervise

from rpl_bringup import launch_shim
from rpl_bringup.launch_shim import LaunchError
from rpl_bringup.launch_shim.core import ProcessExited
from rpl_bringup.supervisor import CRASH_LOOP_S

PY = sys.executable
CLI_LAUNCH = [PY, '-m', 'rpl_bringup.cli', 'launch', '--own-runner']


# --- the on_exit callable form, through the project runner -------------------------------

CALLABLE_LAUNCH_FILE = """
import sys
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, Shutdown
from launch.substitutions import LaunchConfiguration


EXIT = ['import sys; sys.exit(', LaunchConfiguration('code'), ')']


def required(event, context):
    # As the RPL launch files: Shutdown on a clean exit, raise on a crash.
    if event.returncode == 0:
        return [LogInfo(msg='worker done'), Shutdown(reason='worker finished')]
    raise RuntimeError(f'required process {event.process_name} died (code {event.returncode})')


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('code', description='exit code of the worker'),
        ExecuteProcess(
            cmd=[sys.executable, '-c', EXIT],
            name='worker', output='screen', on_exit=required,
        ),
        ExecuteProcess(cmd=[sys.executable, '-c', 'import time; time.sleep(60)'],
                       name='idle', output='screen'),
    ])
"""


@pytest.mark.parametrize('code', [0, 3])
def test_on_exit_callable_ends_the_launch_with_the_exit_of_a_required_process(tmp_path, code):
    launch_file = tmp_path / 'callable.launch.py'
    launch_file.write_text(CALLABLE_LAUNCH_FILE)
    done = subprocess.run(
        [*CLI_LAUNCH, str(launch_file), f'code:={code}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stdout + done.stderr
    if code == 0:
        assert '[rpl launch] worker done' in done.stdout
        assert 'worker finished (code 0); stopping the launch: worker finished' in done.stdout
    else:
        assert 'required process worker died (code 3); stopping the launch' in done.stdout
    assert 'idle stopped' in done.stdout
    assert 'Traceback' not in done.stdout + done.stderr


def test_on_exit_callable_may_return_only_what_the_runner_supports():
    def odd(event, context):
        return 'not an action'

    from rpl_bringup.launch_shim.actions import ExecuteProcess
    from rpl_bringup.launch_shim.core import LaunchContext

    context = LaunchContext()
    ExecuteProcess(cmd=[PY, '-c', 'pass'], name='p', on_exit=odd).visit(context)
    (plan,) = context.processes
    with pytest.raises(LaunchError, match='supports Shutdown'):
        plan.on_exit(ProcessExited('p', 1, 0, plan.cmd))
    code, lines, _ = supervise([plan])
    assert code == 1
    assert any('p exited (code 0): an on_exit callable returned' in x for x in lines), lines


@pytest.mark.parametrize('file_name', ['slippery_push.launch.py', 'slippery_push_learn.launch.py'])
def test_stack_required_nodes_end_the_launch_non_zero_on_a_crash(file_name):
    arguments = {'explorers': '0'} if 'learn' in file_name else {}
    plans = {p.node.name: p for p in plan_rpl_launch(file_name, episodes='5', **arguments)}
    required = ['sim_bridge', 'trainer'] if 'learn' in file_name else ['sim_bridge']
    for name in required:
        plan = plans[name]
        assert not plan.required  # not a bare Shutdown(): that ends a real launch with 0
        with pytest.raises(RuntimeError, match=rf'required process {name} died \(code -9\)'):
            plan.on_exit(ProcessExited(name, 1, -9, plan.cmd))
    sim = plans['sim_bridge']  # 5 episodes: its exit 0 is the run done
    assert sim.on_exit(ProcessExited('sim_bridge', 1, 0, sim.cmd)).shutdown is not None
    record = {
        p.node.name: p for p in plan_rpl_launch('push.launch.py', record='true', bag='/tmp/nb')
    }
    recorder = record['bag_recorder']
    with pytest.raises(RuntimeError, match=r'required process bag_recorder died \(code 2\)'):
        recorder.on_exit(ProcessExited('bag_recorder', 1, 2, recorder.cmd))


def test_a_dead_episode_monitor_ends_the_launch_non_zero():
    """Its results (results:=) were asked for: a monitor that dies mid-run left them
    incomplete while the launch went on and ended with 0."""
    plans = {p.node.name: p for p in plan_rpl_launch('push.launch.py', monitor='true')}
    monitor = plans['episode_monitor']
    assert not monitor.required and not monitor.respawn
    with pytest.raises(  # exit 0 too: a SIGTERM from outside (it ended the launch with 0)
        RuntimeError,
        match=r'^episode_monitor exited \(code 0\): its episode lines and results file stop',
    ):
        monitor.on_exit(ProcessExited('episode_monitor', 1, 0, monitor.cmd))
    with pytest.raises(
        RuntimeError,
        match=r'^episode_monitor died \(code -9\): its episode lines and results file stop',
    ):
        monitor.on_exit(ProcessExited('episode_monitor', 1, -9, monitor.cmd))


@pytest.mark.parametrize(
    ('file_name', 'arguments', 'name'),
    [
        ('slippery_push.launch.py', {'record': 'true', 'bag': '/tmp/nb'}, 'bag_recorder'),
        ('slippery_push_learn.launch.py', {'explorers': '0', 'episodes': '5'}, 'trainer'),
    ],
)
def test_a_node_that_runs_until_the_launch_stops_fails_it_by_exiting_0(file_name, arguments, name):
    """A SIGTERM from outside (kill, systemd) to the trainer made it exit 0, which the
    launch read as "finished": exit 0 after 18 of 200 episodes. (A sim bridge, forever or
    not, exits 128 + the signal itself: test_nodes.)"""
    plans = {p.name: p for p in plan_rpl_launch(file_name, **arguments)}
    plan = plans[name]
    with pytest.raises(
        RuntimeError,
        match=rf'^required process {name} exited \(code 0\) although it runs until the launch '
        'stops',
    ):
        plan.on_exit(ProcessExited(name, 1, 0, plan.cmd))


def test_exit_callables_ignore_exits_while_the_launch_shuts_down():
    plan_rpl_launch('push.launch.py')  # installs the stand-in launch modules the helpers import
    from rpl_bringup.launch_shim.core import LaunchContext
    from rpl_bringup.stack_exits import RequiredExit, RespawnWatch, WatchedExit

    context = LaunchContext()
    context.is_shutdown = True  # as the real launch calls them during a shutdown (Ctrl-C)
    assert RequiredExit('the sim bridge')(ProcessExited('s', 1, -2, ()), context) is None
    assert WatchedExit('the monitor')(ProcessExited('m', 1, -2, ()), context) is None
    watch = RespawnWatch('the controller', 0.0, '')
    for _ in range(2):
        assert watch(ProcessExited('c', 1, -2, ()), context) is None


# --- respawn and crash loops --------------------------------------------------------------


def test_stack_base_controller_respawns_and_a_crash_loop_ends_the_launch():
    base = {p.name: p for p in plan_rpl_launch('slippery_push.launch.py')}['base_controller']
    assert (base.respawn, base.respawn_delay) == (True, 1.0)
    first = base.on_exit(ProcessExited('base_controller', 1, -9, base.cmd))
    assert first.shutdown is None
    assert first.messages == (
        'the base controller died (exit code -9); respawning it in 1.0 s; meanwhile the sim '
        'bridge applies the zero action (counted as fallback_zero): in lockstep after '
        'step_timeout_s once it is off the graph, after response_timeout_s while a killed '
        "node's endpoints linger; in realtime at the next tick",
    )
    with pytest.raises(RuntimeError, match=r'base_controller died again \(code 1\) .* crash loop'):
        base.on_exit(ProcessExited('base_controller', 2, 1, base.cmd))


def test_supervisor_ends_a_crash_loop_of_a_respawning_process_naming_it():
    start = time.monotonic()
    code, lines, sup = supervise(
        [
            python_plan('sim', 'import time; time.sleep(30)', required=True),
            python_plan('controller', 'import sys; sys.exit(1)', respawn=True, respawn_delay=0.1),
        ]
    )
    assert code == 1
    assert any('controller died (code 1); respawning in 0.1 s' in x for x in lines), lines
    assert any(
        'controller died (code 1) again' in x and 'crash loop' in x and 'stopping the launch' in x
        for x in lines
    ), lines
    assert sup.start_counts() == {'sim': 1, 'controller': 2}
    assert time.monotonic() - start < 10.0


RECORDER_ON_SIGINT = (
    'import pathlib, signal, sys, time\n'
    'def stop(*_):\n'
    '    sys.exit({code})  # as a recorder that could not close its bag\n'
    'signal.signal(signal.SIGINT, stop)\n'
    'pathlib.Path({ready!r}).touch()\n'
    'time.sleep(30)\n'
)
SIM_AFTER = 'import os, time\nwhile not os.path.exists({ready!r}):\n    time.sleep(0.05)\n'


@pytest.mark.parametrize('code', [0, 3, 130])
def test_a_process_failing_its_last_work_while_the_launch_stops_fails_the_launch(tmp_path, code):
    """The required sim finished, the launch stopped the rest, and the recorder could not
    close its bag (or a trainer save its last checkpoint): the launch still ended with 0.
    130 (128 + SIGINT) is a node saying the stop cut its run short: not a failure."""
    ready = str(tmp_path / 'recorder_ready')  # the sim ends once the handler is in place
    code_, lines, _ = supervise(
        [
            python_plan('sim', SIM_AFTER.format(ready=ready), required=True),
            python_plan('recorder', RECORDER_ON_SIGINT.format(code=code, ready=ready)),
        ]
    )
    failed = code != 130 and code
    assert code_ == (code if failed else 0), lines
    said = [x for x in lines if 'recorder failed while the launch stopped' in x]
    assert len(said) == (1 if failed else 0), lines
    if not failed:
        assert any(f'recorder stopped (code {code})' in x for x in lines), lines


SAVER_INTERRUPTING = (
    'import os, pathlib, signal, sys, time\n'
    'def stop(*_):\n'
    '    os.kill(os.getppid(), signal.SIGINT)  # the user: Ctrl-C while the launch stops\n'
    '    time.sleep(0.5)  # a last save\n'
    "    print('saved', flush=True)\n"
    '    sys.exit(0)\n'
    'signal.signal(signal.SIGINT, stop)\n'
    'pathlib.Path({ready!r}).touch()\n'
    'time.sleep(30)\n'
)


def test_an_interrupt_while_the_launch_stops_by_itself_is_its_exit_code(tmp_path):
    """A Ctrl-C during the stop after the required sim finished was taken for a second
    one (escalated at once, "received SIGINT again") and the launch ended with 0, so
    `rpl demo` went on to its next run."""
    ready = str(tmp_path / 'saver_ready')
    code, lines, _ = supervise(
        [
            python_plan('sim', SIM_AFTER.format(ready=ready), required=True),
            python_plan('saver', SAVER_INTERRUPTING.format(ready=ready)),
        ]
    )
    assert code == 130, lines
    assert any('received SIGINT while stopping; the launch ends with code 130' in x for x in lines)
    assert '[saver] saved' in lines, lines  # its grace period was kept: no escalation
    assert not any('again; escalating' in x or 'sending SIGTERM' in x for x in lines), lines


def test_a_respawned_process_that_lived_long_enough_is_respawned_again(tmp_path):
    lives = tmp_path / 'lives'
    victim = f"""
        import pathlib, sys, time
        lives = pathlib.Path({str(lives)!r})
        lives.write_text(lives.read_text() + 'x' if lives.exists() else 'x')
        time.sleep(0.4)
        sys.exit(1)
    """
    waiter = f"""
        import pathlib, sys, time
        end = time.monotonic() + 20
        while not (pathlib.Path({str(lives)!r}).exists()
                   and len(pathlib.Path({str(lives)!r}).read_text()) >= 3):
            if time.monotonic() > end:
                sys.exit(4)
            time.sleep(0.02)
    """
    code, lines, sup = supervise(
        [
            python_plan('sim', waiter, required=True),
            python_plan('controller', victim, respawn=True, respawn_delay=0.05),
        ],
        crash_loop_s=0.2,
    )
    assert code == 0, lines
    assert sup.start_counts()['controller'] >= 3
    assert not any('crash loop' in x for x in lines)


# --- stopping children that are still starting -------------------------------------------


def test_keyboard_interrupt_tracebacks_of_stopped_children_are_not_relayed():
    importing = """
        import time
        print('importing', flush=True)
        time.sleep(30)  # no SIGINT handler yet: SIGINT raises KeyboardInterrupt here
    """
    failing = """
        import signal, time
        def boom(*_):
            raise ValueError('boom on stop')
        signal.signal(signal.SIGINT, boom)
        print('ready', flush=True)
        time.sleep(30)
    """
    ready = """
        import time
        time.sleep(1.0)
    """
    code, lines, _ = supervise(
        [
            python_plan('sim', ready, required=True),
            python_plan('importing', importing),
            python_plan('failing', failing),
        ]
    )
    # 'failing' crashed in its stop handler: its last work did not complete (exit 1).
    assert code == 1, lines
    assert any('failing failed while the launch stopped (code 1)' in x for x in lines), lines
    importing_lines = [x for x in lines if x.startswith('[importing]')]
    assert importing_lines == ['[importing] importing'], lines
    assert any('importing was interrupted by the stop (traceback not shown)' in x for x in lines)
    # any other traceback while stopping is shown whole
    assert '[failing] Traceback (most recent call last):' in lines
    assert '[failing] ValueError: boom on stop' in lines


# --- launch arguments checked before any node starts -------------------------------------

BAD_ARGUMENTS = [
    (  # a controller's data file is checked with its other settings, before any node
        'mbrl_pusher.launch.py',
        {'cache_file': '/nonexistent/cache.npz'},
        r"launch argument cache_file:='/nonexistent/cache.npz': cache_file "
        r"'/nonexistent/cache.npz' does not exist",
    ),
    (
        'mbrl_pusher.launch.py',
        {'controller': 'pets', 'model_file': '/tmp'},
        r"model_file:='/tmp': model_file '/tmp' is not a regular file",
    ),
    (
        'slippery_push.launch.py',
        {'controller': 'reactiv_push'},
        r"controller:='reactiv_push' is not a registered controller; controllers for task "
        r"slippery_push: \['discrete_mpc_push', 'reactive_push', 'zero'\]",
    ),
    (
        'push.launch.py',
        {'controller': 'reactive_pick_and_place'},
        r"controller:='reactive_pick_and_place' is meant for tasks \['pick_and_place'\], not "
        r'push; controllers for task push: ',
    ),
    (
        'pick_and_place.launch.py',
        {'controller': 'reactive_push'},
        r'controllers for task pick_and_place: \[.*reactive_pick_and_place_calibrated',
    ),
    ('slippery_push.launch.py', {'seed': 'abc'}, r"seed:='abc' is not an integer"),
    ('slippery_push.launch.py', {'seed': '-1'}, r"seed:='-1' is outside 0\.\."),
    ('slippery_push.launch.py', {'episodes': '2.5'}, r"episodes:='2.5' is not an integer"),
    ('slippery_push.launch.py', {'record': 'true'}, r'record:=true needs bag:=PATH'),
    # A file asked for whose writer is not started (it was never written, without a word).
    (
        'slippery_push.launch.py',
        {'bag': 'bags/new'},
        r"bag:='bags/new' is written only with record:=true; add record:=true",
    ),
    (
        'push.launch.py',
        {'results': 'new.json'},
        r"results:='new.json' is written only with monitor:=true",
    ),
    (
        'slippery_push_learn.launch.py',
        {'results': 'new_folder'},
        r"results:='new_folder' is written only with monitor:=true",
    ),
    (
        'slippery_push.launch.py',
        {'monitor': 'true', 'results': __file__},
        r'exists \(results are never written over; give a new file\)',
    ),
    ('push.launch.py', {'monitor': 'true', 'results': os.sep}, r'is a folder; give a new file'),
    ('push.launch.py', {'residual_gain': '3'}, r"residual_gain:='3' is outside \[0.0, 2.0\]"),
    ('push.launch.py', {'residual_gain_ramp_s': 'slow'}, r"residual_gain_ramp_s:='slow' is not a"),
    # The bag folder as the results file (or a file in it): the monitor died after start
    # with IsADirectoryError, and the recorder blamed the stack.
    (
        'slippery_push.launch.py',
        {'monitor': 'true', 'results': 'runs/clash', 'record': 'true', 'bag': 'runs/clash'},
        r"results:='runs/clash' and bag:='runs/clash' overlap",
    ),
    (
        'slippery_push.launch.py',
        {'monitor': 'true', 'results': 'runs/b/r.json', 'record': 'true', 'bag': 'runs/b/'},
        r"results:='runs/b/r.json' and bag:='runs/b/' overlap",
    ),
    (
        'slippery_push.launch.py',
        {'monitor': 'true', 'results': 'runs/c', 'record': 'true', 'bag': 'runs/c/bag'},
        r"results:='runs/c' and bag:='runs/c/bag' overlap",
    ),
    # Paths that cannot be written: the stack ran, then the monitor or recorder died.
    (
        'push.launch.py',
        {'monitor': 'true', 'results': '/proc/rpl_results.json'},
        r"results:='/proc/rpl_results.json' cannot be written",
    ),
    (
        'push.launch.py',
        {'record': 'true', 'bag': '/proc/rpl_new_bag'},
        r"bag:='/proc/rpl_new_bag' cannot be created",
    ),
    (
        'slippery_push.launch.py',
        {'record': 'true', 'bag': os.sep},
        r"bag:='/': bag '/' already exists \(bags are never written over; give a new folder\)",
    ),
    (
        'slippery_push_learn.launch.py',
        {'monitor': 'true', 'results': __file__},
        r"is a file; give a folder for the stacks' result files",
    ),
    ('slippery_push_learn.launch.py', {'controller': 'x'}, r"controller:='x' is not a regis"),
    ('slippery_push_learn.launch.py', {'seed': '1e3'}, r"seed:='1e3' is not an integer"),
    ('slippery_push_learn.launch.py', {'episodes': 'many'}, r"episodes:='many' is not an int"),
    # The trainer's start checks, made before any node starts (the trainer refused them
    # once every stack was up).
    (
        'slippery_push_learn.launch.py',
        {'model_path': '/tmp/rpl_same.x', 'checkpoint': '/tmp/rpl_same.x'},
        r'model_path and checkpoint_path are the same file',
    ),
    (
        'slippery_push_learn.launch.py',
        {'init_from': '/nonexistent/checkpoint.pt'},
        r'init_from: no checkpoint at /nonexistent/checkpoint.pt',
    ),
    (
        'slippery_push_learn.launch.py',
        {'bags': '/nonexistent/bag'},
        r'bags: no bag at /nonexistent/bag',
    ),
    (
        'slippery_push_learn.launch.py',
        {'model_path': __file__},
        r'model_path .* exists and this trainer starts a new learner',
    ),
    (
        'slippery_push_learn.launch.py',
        {'model_path': os.sep},
        r"model_path '/' names a folder; give a file path",
    ),
    (
        'slippery_push_learn.launch.py',
        {'export_every_updates': '0'},
        r"export_every_updates:='0' is outside 1\.\.",
    ),
]


@pytest.mark.parametrize(('file_name', 'arguments', 'message'), BAD_ARGUMENTS)
def test_bad_launch_arguments_are_one_line_errors(file_name, arguments, message):
    with pytest.raises(LaunchError, match=message):
        plan_rpl_launch(file_name, **arguments)


@pytest.mark.parametrize(
    ('explorers', 'existing'), [('0', 'rpl.json'), ('2', 'rpl_explore_1.json')]
)
def test_a_learning_launch_never_writes_over_a_stacks_results(tmp_path, explorers, existing):
    """results:=DIR holds one file per running stack's monitor; one that exists already
    (the watched stack's, or a running explorer's) refuses the launch before any node
    starts. A stack that does not run does not count."""
    (tmp_path / existing).write_text('{}')
    arguments = {'monitor': 'true', 'results': str(tmp_path), 'explorers': explorers}
    with pytest.raises(LaunchError, match=re.escape(f"{existing}' exists (results are never")):
        plan_rpl_launch('slippery_push_learn.launch.py', **arguments)
    if existing == 'rpl_explore_1.json':  # explorer 1 does not run with explorers:=1
        assert plan_rpl_launch('slippery_push_learn.launch.py', **{**arguments, 'explorers': '1'})
    assert (tmp_path / existing).read_text() == '{}'


def test_integer_arguments_reach_the_nodes_as_integers():
    plans = {
        p.name: p for p in plan_rpl_launch('slippery_push.launch.py', seed='007', episodes=' 3')
    }
    assert plans['sim_bridge'].node.parameters['seed'] == 7
    assert plans['sim_bridge'].node.parameters['episodes'] == 3


@pytest.mark.parametrize(
    'argument', ['controller:=reactiv_push', 'seed:=abc', 'record:=true', 'episodes:=x']
)
def test_cli_rejects_a_bad_argument_in_one_line_before_any_node_starts(argument):
    done = subprocess.run(
        [*CLI_LAUNCH, 'rpl_bringup', 'slippery_push.launch.py', argument],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ''  # nothing started
    errors = [x for x in done.stderr.splitlines() if x.startswith('rpl launch: error:')]
    assert len(errors) == 1 and argument.split(':=')[0] in errors[0], done.stderr
    assert 'Traceback' not in done.stderr


# --- the same callables under the real launch (runs where the real launch is installed) ---


@pytest.mark.skipif(
    not launch_shim.is_real('launch') or importlib.util.find_spec('launch') is None,
    reason='the real launch package is not installed',
)
@pytest.mark.parametrize(('code', 'expected'), [(0, 0), (5, 1)])
def test_required_exit_callable_under_the_real_launch_service(code, expected):
    import launch
    import launch.actions

    from rpl_bringup.stack_exits import RequiredExit

    description = launch.LaunchDescription(
        [
            launch.actions.ExecuteProcess(
                cmd=[PY, '-c', f'import sys; sys.exit({code})'],
                name='required',
                on_exit=RequiredExit('the test process'),
            ),
            launch.actions.ExecuteProcess(cmd=[PY, '-c', 'import time; time.sleep(30)']),
        ]
    )
    service = launch.LaunchService()
    service.include_launch_description(description)
    start = time.monotonic()
    assert service.run() == expected
    assert time.monotonic() - start < 20


# --- the real stack: base controller killed mid-run ----------------------------------------


def _episodes(path) -> list[dict]:
    import json

    try:
        return json.loads(path.read_text())['episodes']
    except (FileNotFoundError, ValueError, KeyError):
        return []


@pytest.mark.integration
def test_killed_base_controller_is_respawned_and_a_crash_loop_ends_the_launch(tmp_path):
    import signal

    from helpers import Child, stop_process

    results = tmp_path / 'results.json'
    runner = Child(
        [
            *CLI_LAUNCH, 'rpl_bringup', 'slippery_push.launch.py',
            f'namespace:=/itest_{os.getpid()}_controller', 'monitor:=true',
            f'results:={results}',
        ]
    )  # fmt: skip
    try:
        runner.wait_for(lambda: len(_episodes(results)) >= 1, 40, 'the first episode')
        done_before_kill = len(_episodes(results))
        os.kill(runner.pids_of('base_controller')[0], signal.SIGKILL)

        # The runner says so and restarts it; the loop goes on, then the controller drives
        # again.
        runner.wait_for(lambda: len(runner.pids_of('base_controller')) == 2, 15, 'the respawn')
        respawned_at = time.monotonic()
        output = runner.output()
        assert 'base_controller died (code -9); respawning in 1.0 s' in output
        assert (
            '[rpl launch] the base controller died (exit code -9); respawning it in 1.0 s; '
            'meanwhile the sim bridge applies the zero action (counted as fallback_zero): '
            'in lockstep after step_timeout_s once it is off the graph, after '
            "response_timeout_s while a killed node's endpoints linger; in realtime at the "
            'next tick'
        ) in output

        def recovered() -> bool:
            # The episode the kill hit ran to its end (the sim waits response_timeout_s for
            # a silent controller, then steps on the zero action, counted as fallback_zero);
            # a later one has no fallback at all: the respawned controller drives.
            episodes = _episodes(results)[done_before_kill:]
            return len(episodes) >= 2 and any(
                e['fallback_zero'] == 0 and e['fallback_base'] == 0 for e in episodes[1:]
            )

        runner.wait_for(recovered, 60, 'the episode the kill hit, then a clean episode')
        episodes = _episodes(results)
        assert all(e['steps'] == 50 and 'fallback_zero' in e for e in episodes), episodes
        assert runner.proc.poll() is None

        # Killed once more after it ran a while: respawned again (no crash loop); killed
        # again within seconds of that restart: a crash loop ends the launch non-zero.
        time.sleep(max(0.0, respawned_at + CRASH_LOOP_S + 1.0 - time.monotonic()))
        second = runner.pids_of('base_controller')[1]
        deadline = time.monotonic() + 30
        while len(runner.pids_of('base_controller')) < 3 and time.monotonic() < deadline:
            if runner.pids_of('base_controller')[-1] == second:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(second, signal.SIGKILL)
            time.sleep(0.05)
        third = runner.pids_of('base_controller')[2]
        os.kill(third, signal.SIGKILL)
        assert runner.proc.wait(30) == 1, runner.output()
        assert re.search(
            r'base_controller died again \(code -9\) \d+\.\d s after its restart: a crash loop '
            r'\(the base controller: check its parameters\); stopping the launch',
            runner.output(),
        ), runner.output()
    finally:
        stop_process(runner.proc, signal.SIGINT, timeout_s=15)


@pytest.mark.integration
def test_a_killed_episode_monitor_ends_the_launch_non_zero(tmp_path):
    import signal

    from helpers import Child, stop_process

    results = tmp_path / 'results.json'
    runner = Child(
        [
            *CLI_LAUNCH, 'rpl_bringup', 'push.launch.py',
            f'namespace:=/itest_{os.getpid()}_monitor', 'monitor:=true', f'results:={results}',
        ]
    )  # fmt: skip
    try:
        runner.wait_for(lambda: len(_episodes(results)) >= 1, 40, 'the first episode')
        os.kill(runner.pids_of('episode_monitor')[0], signal.SIGKILL)
        assert runner.proc.wait(30) == 1, runner.output()
        assert (
            '[rpl launch] episode_monitor died (code -9): its episode lines and results file '
            'stop there; stopping the launch'
        ) in runner.output(), runner.output()
        assert _episodes(results)  # what it wrote before stays
    finally:
        stop_process(runner.proc, signal.SIGINT, timeout_s=15)


@pytest.mark.integration
def test_a_model_that_never_runs_ends_the_launch_non_zero(tmp_path):
    """model_path names a file that does not load: the residual node passes the base action
    through (as it must on a robot), and a finite run says it measured the base, exit 4.
    Before, the launch ended 0 with `fallbacks base 0`."""
    junk = tmp_path / 'junk.onnx'
    junk.write_text('not a model')
    done = subprocess.run(
        [
            *CLI_LAUNCH,
            'rpl_bringup',
            'slippery_push.launch.py',
            'episodes:=1',
            f'namespace:=/model_never_ran_{os.getpid()}',
            f'model_path:={junk}',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 4, output
    assert 'not one of the 50 steps got a command from the residual model' in output
    assert 'model_load_failed' in output or 'no model loaded' in output
