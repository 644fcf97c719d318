"""run_node: parameter errors at start vs runtime failures in callbacks, and a clean shutdown.

Each test runs a tiny RplNode in its own process through ``run_node`` (the entry point of
every node of the stack) and checks its exit code and what it printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import ros_args, stop_process, trainer_command

pytestmark = pytest.mark.integration

ROSOUT_FAILURE = 'Failed to publish log message to rosout'

NODE_SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys
    from rpl_interfaces.base_node import RplNode, run_node
    from rpl_interfaces.params import describe

    @dataclasses.dataclass(frozen=True)
    class Config:
        period_s: float = dataclasses.field(
            default=0.05, metadata=describe('timer period', range=(0.01, 1.0))
        )
        behaviour: str = 'ready'

    class Probe(RplNode):
        def __init__(self):
            super().__init__('probe')
            self.config = self.declare_config(Config)
            if self.config.behaviour.startswith('slow_start'):  # a signal while it is built
                import time
                from rpl_interfaces.base_node import StartInterrupted
                try:
                    print('building', flush=True)
                    time.sleep(30)
                except KeyboardInterrupt:
                    if self.config.behaviour == 'slow_start_said':
                        raise StartInterrupted('no tick counted') from None
                    raise
            self.ticks = 0
            self.create_timer(self.config.period_s, self.on_timer)
            from std_msgs.msg import String
            self.create_subscription(String, 'probe_in', self.on_message, 10)
            self.pub = self.create_publisher(String, 'probe_in', 10)

        def on_message(self, msg):
            raise ValueError(f'message {msg.data!r} has 3 values, expected 25')

        def on_timer(self):
            self.ticks += 1
            if self.ticks == 1:
                print('ready', flush=True)
            if self.config.behaviour == 'raise_in_subscription' and self.ticks == 3:
                from std_msgs.msg import String
                self.pub.publish(String(data='x'))
            if self.config.behaviour == 'raise' and self.ticks == 3:
                raise ValueError('observation has 3 values, expected 25')
            if self.config.behaviour == 'exit' and self.ticks == 3:
                self.request_exit(3)

        def destroy_node(self):
            self.get_logger().info(f'stopping after {self.ticks} ticks')
            if self.config.behaviour == 'second_signal':  # Ctrl-C again during a last save
                import os, signal, time
                os.kill(os.getpid(), self.stop_signal)
                time.sleep(0.2)
                print('last save done', flush=True)
            super().destroy_node()

    sys.exit(run_node(Probe, sys.argv[1:], name='probe'))
    """
)


def _probe(*params: str) -> list[str]:
    return [sys.executable, '-c', NODE_SCRIPT, *ros_args(f'/probe_{os.getpid()}', *params)]


def _run(*params: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(_probe(*params), capture_output=True, text=True, timeout=timeout_s)


def test_a_value_error_in_a_callback_is_a_runtime_failure_not_a_parameter_error():
    done = _run('behaviour:=raise')
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    lines = [line for line in output.splitlines() if 'runtime error in a callback' in line]
    assert len(lines) == 1, output
    assert lines[0].startswith('[probe] runtime error in a callback: ValueError: observation')
    assert 'in on_timer' in lines[0], lines[0]
    assert 'Traceback' not in output and 'parameter' not in output, output
    assert 'stopping after 3 ticks' in output, output  # the node was still destroyed


def test_a_subscription_callback_failure_is_one_line_too():
    """The events executor logged a FATAL line and the traceback of a failing subscription
    callback before run_node's one line; the callbacks are guarded now."""
    done = _run('behaviour:=raise_in_subscription')
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert (
        "[probe] runtime error in a callback: ValueError: message 'x' has 3 values, expected "
        '25 (at <string>:'
    ) in output, output
    assert 'in on_message)' in output, output
    assert 'FATAL' not in output and 'Error occurred at' not in output, output
    assert 'Traceback' not in output, output


def test_the_traceback_of_a_callback_failure_on_request():
    env = dict(os.environ, RPL_TRACEBACK='1')
    done = subprocess.run(
        _probe('behaviour:=raise'), capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 1
    assert 'Traceback' in done.stdout + done.stderr


@pytest.mark.parametrize(
    ('behaviour', 'sig', 'detail'),
    [
        ('slow_start', signal.SIGINT, 'not started'),
        ('slow_start_said', signal.SIGTERM, 'no tick counted'),
    ],
)
def test_a_signal_while_the_node_is_built_is_one_line_and_128_plus_the_signal(
    behaviour, sig, detail
):
    """It exited 0 (a Ctrl-C while a node loads its model read as a clean stop), or 2 with
    "error:" where a node turned it into a bad start: the node never ran."""
    proc = subprocess.Popen(
        _probe(f'behaviour:={behaviour}'),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith('building'):
            break
    code = stop_process(proc, sig, timeout_s=20.0)
    output = ''.join(lines) + proc.stdout.read()
    name = signal.Signals(sig).name
    assert code == 128 + sig, output
    assert (
        f'[probe] interrupted by {name} while starting: {detail}; exit code {128 + sig}'
    ) in output, output
    assert 'Traceback' not in output and 'ready' not in output, output


def test_a_bad_parameter_at_start_is_one_line_and_exit_code_2():
    done = _run('period_s:=5.0')
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert (
        output.splitlines()[-1]
        == "[probe] error: parameter 'period_s' = 5.0 is outside [0.01, 1.0]"
    )
    assert 'Traceback' not in output


@pytest.mark.parametrize(
    ('ros', 'env', 'expected'),
    [
        (['-p', 'period_s'], {}, "Couldn't parse parameter override rule: '-p period_s'"),
        (['-r', 'a'], {}, "Couldn't parse remap rule: '-r a'"),
        ([], {'ROS_DOMAIN_ID': 'abc'}, 'ROS_DOMAIN_ID is not an integral number'),
    ],
)
def test_malformed_ros_arguments_are_one_line_and_exit_code_2(ros, env, expected):
    """rcl refuses them in rclpy.init, before any node: that was rclpy's traceback."""
    command = [sys.executable, '-c', NODE_SCRIPT, '--ros-args', *ros]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=30, env={**os.environ, **env}
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == f'[probe] error: cannot start ROS: {expected}\n', done.stdout
    assert 'Traceback' not in done.stderr, done.stderr


def test_a_mistyped_parameter_at_start_is_one_line_and_exit_code_2():
    done = _run('period_s:=abc')  # rclpy's InvalidParameterTypeException, not a ValueError
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert 'Traceback' not in output, output
    assert output.splitlines()[-1].startswith('[probe] error: '), output
    assert 'period_s' in output


def test_an_unknown_parameter_name_at_start_is_one_line_naming_the_close_ones(tmp_path):
    """ROS ignores a parameter the node never declares, so a typo ran with the default;
    from the command line or from a parameter file, the node refuses it."""
    done = _run('period:=0.5')
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith(
        "[probe] error: unknown parameter 'period' (did you mean 'period_s'?): this node has "
        'behaviour, period_s'
    ), done.stdout
    assert done.stdout.count('\n') == 1 and 'Traceback' not in done.stderr
    params = tmp_path / 'params.yaml'
    params.write_text('/**/probe:\n  ros__parameters:\n    behavior: ready\n    bogus: 3\n')
    done = subprocess.run(
        [*_probe(), '--params-file', str(params)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and done.stdout.startswith(
        "[probe] error: unknown parameters 'behavior' (did you mean 'behaviour'?), 'bogus': "
    ), done.stdout


def test_a_node_ends_itself_with_its_exit_code():
    done = _run('behaviour:=exit')
    assert done.returncode == 3, done.stdout + done.stderr
    assert 'stopping after 3 ticks' in done.stdout + done.stderr


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_node_cleanly_and_its_last_log_reaches_rosout(sig):
    proc = subprocess.Popen(_probe(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'
        time.sleep(0.2)
        code = stop_process(proc, sig, timeout_s=10)
        output = proc.stdout.read()
    finally:
        stop_process(proc, signal.SIGKILL)
    assert code == 0, output
    assert 'stopping after' in output, output  # logged while the node is destroyed
    assert ROSOUT_FAILURE not in output, output
    assert 'Traceback' not in output, output


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_does_not_cut_the_last_save_short(sig):
    """A second Ctrl-C (or a second SIGTERM) while the node was destroyed raised in its
    last checkpoint save: a traceback, and the checkpoint lost."""
    proc = subprocess.Popen(
        _probe('behaviour:=second_signal'), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == 'ready'
        code = stop_process(proc, sig, timeout_s=10)
        output = proc.stdout.read()
    finally:
        stop_process(proc, signal.SIGKILL)
    assert code == 0, output
    assert 'last save done' in output, output
    assert f'{sig.name} received while shutting down; finishing the last save first' in output
    assert 'Traceback' not in output, output


def test_the_trainer_node_stops_on_sigint_without_rosout_failure_or_adroit_notice(tmp_path):
    # A real node that logs while it is destroyed (its last checkpoint) and imports
    # gymnasium_robotics (through the tasks): neither message may show.
    namespace = f'/rosout_{os.getpid()}'
    cmd = trainer_command(
        namespace, tmp_path / 'actor.onnx', f'checkpoint_path:={tmp_path / "trainer.ckpt"}'
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if ': ready: ' in line:
                break
        code = stop_process(proc, signal.SIGINT, timeout_s=30)
        output = ''.join(lines) + proc.stdout.read()
    finally:
        stop_process(proc, signal.SIGKILL)
    assert code == 0, output
    assert '(shutdown;' in output, output  # the checkpoint line logged at shutdown
    assert ROSOUT_FAILURE not in output, output
    assert 'Adroit' not in output, output


def test_an_unknown_executor_is_one_line_and_exit_code_2():
    env = dict(os.environ, RPL_EXECUTOR='fast')
    done = subprocess.run(_probe(), capture_output=True, text=True, timeout=30, env=env)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert output.splitlines()[-1] == (
        "[probe] error: RPL_EXECUTOR='fast' is not one of ['events', 'single']"
    )


@pytest.mark.parametrize('executor', ['events', 'single'])
def test_each_executor_runs_the_timers_and_stops_on_sigterm(executor):
    env = dict(os.environ, RPL_EXECUTOR=executor)
    done = subprocess.run(
        _probe('behaviour:=exit'), capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 3, done.stdout + done.stderr
    proc = subprocess.Popen(
        _probe(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == 'ready'
        code = stop_process(proc, signal.SIGTERM, timeout_s=10)
        output = proc.stdout.read()
    finally:
        stop_process(proc, signal.SIGKILL)
    assert code == 0, output
    assert 'stopping after' in output and ROSOUT_FAILURE not in output, output


INFO_SCRIPT = textwrap.dedent(
    """
    import sys
    from std_msgs.msg import String
    from rpl_interfaces.base_node import RplNode, run_node

    class Listener(RplNode):  # a callback(msg, info), like the trainer node's
        def __init__(self):
            super().__init__('listener')
            self.pub = self.create_publisher(String, 'chatter', 10)
            self.create_subscription(String, 'chatter', self.on_message, 10)
            self.create_timer(0.05, lambda: self.pub.publish(String(data='hi')))

        def on_message(self, msg, info):
            print('heard', msg.data, info['source_timestamp'] > 0, flush=True)
            self.request_exit(4)

    sys.exit(run_node(Listener, sys.argv[1:]))
    """
)


def test_a_node_with_message_info_callbacks_runs_under_the_events_default():
    # rclpy 9.1's EventsExecutor fails on them: run_node spins such a node single-threaded.
    env = dict(os.environ, RPL_EXECUTOR='events')
    cmd = [sys.executable, '-c', INFO_SCRIPT, *ros_args(f'/listener_{os.getpid()}')]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 4, done.stdout + done.stderr
    assert 'heard hi True' in done.stdout


SCHED_SCRIPT = textwrap.dedent(
    """
    import gc, os, sys
    from rpl_interfaces.base_node import RplNode, run_node

    class Report(RplNode):
        def __init__(self):
            super().__init__('report')
            self.create_timer(0.05, self.on_timer)

        def on_timer(self):
            tids = [int(t) for t in os.listdir('/proc/self/task')]
            policies = sorted({os.sched_getscheduler(t) for t in tids})
            print(f'threads {len(tids)} policies {policies} frozen {gc.get_freeze_count()}',
                  flush=True)
            self.request_exit(0)

    sys.exit(run_node(Report, sys.argv[1:], name='report'))
    """
)


def _report(**env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, '-c', SCHED_SCRIPT, *ros_args(f'/report_{os.getpid()}')]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **env}
    )


def _realtime_allowed() -> bool:
    done = subprocess.run(
        [sys.executable, '-c', 'import os; os.sched_setscheduler(0, 1, os.sched_param(1))'],
        capture_output=True,
    )
    return done.returncode == 0


@pytest.mark.skipif(not _realtime_allowed(), reason='no real-time scheduling allowed here')
def test_rpl_sched_fifo_puts_every_thread_of_the_node_in_sched_fifo():
    done = _report(RPL_SCHED='fifo:5')
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    line = next(line for line in output.splitlines() if line.startswith('threads'))
    count = int(line.split()[1])
    assert count > 1, line  # the middleware's threads exist and are included
    assert f'policies [{os.SCHED_FIFO}]' in line, line


def test_by_default_the_node_keeps_the_default_scheduling_and_freezes_start_up_objects():
    done = _report(RPL_SCHED='', RPL_CPUS='')
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    line = next(line for line in output.splitlines() if line.startswith('threads'))
    assert f'policies [{os.SCHED_OTHER}]' in line, line
    assert int(line.split()[-1]) > 1000, line  # gc.freeze after start-up


@pytest.mark.parametrize(
    ('name', 'value', 'expected'),
    [
        ('RPL_SCHED', 'fifo:0', 'expected fifo:1..99, rr:1..99 or nice:-20..19'),
        ('RPL_SCHED', 'realtime', 'expected fifo:1..99, rr:1..99 or nice:-20..19'),
        ('RPL_CPUS', '0,99', 'expected a comma list of CPUs 0..'),
    ],
)
def test_a_malformed_scheduling_setting_is_one_line_and_exit_code_2(name, value, expected):
    done = _report(**{name: value})
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output
    assert 'Traceback' not in output, output
    assert output.splitlines()[-1].startswith(f"[report] error: {name}='{value}': "), output
    assert expected in output, output
