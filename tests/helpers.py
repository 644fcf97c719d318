"""Helpers shared by the tests: node processes talked to over DDS, launch plans and
supervision, model files swapped under a residual mixer, and a tiny toy-reach training run."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from rpl_bringup import launch_runner
from rpl_bringup.launch_shim import ProcessPlan
from rpl_bringup.supervisor import Supervisor

if TYPE_CHECKING:
    from rpl_residual_node.mixer import ResidualMixer
    from rpl_residual_node.model_slot import ReloadEvent
    from rpl_trainer.problem import Problem
    from rpl_trainer.train import Trainer


def ros_args(
    namespace: str, *params: str, params_file: str | os.PathLike[str] | None = None
) -> list[str]:
    """``--ros-args`` that put a node in ``namespace``, then load ``params_file`` (if given),
    then set ``name:=value`` parameters."""
    args = ['--ros-args', '-r', f'__ns:={namespace}']
    if params_file is not None:
        args += ['--params-file', str(params_file)]
    for param in params:
        args += ['-p', param]
    return args


def trainer_command(namespace: str, model: os.PathLike[str] | str, *params: str) -> list[str]:
    """Command line of a trainer node in ``namespace`` learning live from that namespace
    and exporting to ``model``; ``params`` are more ``name:=value`` parameters."""
    return [
        sys.executable,
        '-m',
        'rpl_trainer.trainer_node',
        *ros_args(namespace, f'namespaces:={namespace}', f'model_path:={model}', *params),
    ]


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 5.0) -> int:
    """Send ``sig`` to a running process, wait up to ``timeout_s``, then kill it.

    Returns:
        The exit code (negative signal number when a signal ended it; -9 after the kill).
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class SideNode:
    """A test-side rclpy node in its own context, spun by its own executor.

    Args:
        name: Node name.
        namespace: Node namespace (the one the nodes under test use).
    """

    def __init__(self, name: str, namespace: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, condition: Callable[[], object], timeout_s: float) -> bool:
        """Spin until ``condition()`` is true or ``timeout_s`` (s) passed; its last value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return bool(condition())

    def on_topic(self, topic: str, callback: Callable[[object], None]) -> None:
        """Subscribe ``callback`` to the JointState contract ``topic`` (e.g.
        ``contract.OBSERVATION``) with the contract's QoS for it."""
        from sensor_msgs.msg import JointState

        from rpl_interfaces import contract
        from rpl_interfaces.base_node import qos_profile

        qos = qos_profile(contract.TOPIC_QOS[topic])
        self.node.create_subscription(JointState, topic, callback, qos)

    def topic_publisher(self, topic: str):
        """A JointState publisher of the contract ``topic`` with the contract's QoS for it."""
        from sensor_msgs.msg import JointState

        from rpl_interfaces import contract
        from rpl_interfaces.base_node import qos_profile

        qos = qos_profile(contract.TOPIC_QOS[topic])
        return self.node.create_publisher(JointState, topic, qos)

    def collect(self, topic: str, fields: tuple[str, ...] | None = None) -> list:
        """Subscribe to the contract ``topic``; the returned list gets every message, decoded
        (as :class:`rpl_interfaces.codec.StampedVector`, under ``fields`` when given), while
        this node spins."""
        from rpl_interfaces.codec import decode

        into: list = []
        self.on_topic(topic, lambda msg: into.append(decode(msg, fields)))
        return into

    def watch_diagnostics(self, status_name: str) -> dict[str, str]:
        """Subscribe to /diagnostics; the returned dict is kept updated with the key/values
        of every status named ``status_name`` (e.g. '/ns/trainer') while this node spins."""
        from diagnostic_msgs.msg import DiagnosticArray

        from rpl_interfaces import contract
        from rpl_interfaces.base_node import qos_profile

        values: dict[str, str] = {}

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name == status_name:
                    values.update({kv.key: kv.value for kv in status.values})

        self.node.create_subscription(
            DiagnosticArray, '/diagnostics', on_diagnostics, qos_profile(contract.DIAGNOSTICS_QOS)
        )
        return values

    def close(self) -> None:
        """Destroy the node and shut its context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


LAUNCH = [sys.executable, '-m', 'rpl_bringup.cli', 'launch', 'rpl_bringup']  # + file, args


class Child:
    """A child process (e.g. ``rpl launch``) whose output lines are collected by a thread."""

    def __init__(self, cmd: list[str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    def output(self) -> str:
        return '\n'.join(self.lines)

    def pids_of(self, name: str) -> list[int]:
        """Pids of every start of ``name`` the launch runner announced."""
        tag = f'[rpl launch] started {name} (pid '
        return [int(x[len(tag) :].split(')')[0]) for x in self.lines if x.startswith(tag)]

    def wait_for(self, check: Callable[[], object], timeout: float, what: str) -> None:
        """Poll ``check()`` until it is true; fails the test, naming ``what`` and showing the
        output, if the process ends first or ``timeout`` (s) passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if check():
                return
            if self.proc.poll() is not None and not check():
                pytest.fail(f'the process ended while waiting for {what}:\n{self.output()}')
            time.sleep(0.05)
        pytest.fail(f'timed out waiting for {what}:\n{self.output()}')

    def wait(self, timeout: float) -> int:
        """Exit code; kills the process and fails the test after ``timeout`` s."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f'{self.proc.args[:5]} did not end within {timeout} s:\n{self.output()}')

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT, timeout_s=10.0)
        self._reader.join(2)


def python_plan(name: str, code: str, **kwargs) -> ProcessPlan:
    """A process plan named ``name`` that runs ``code`` (dedented) in this Python; ``kwargs``
    are more :class:`ProcessPlan` fields (``required``, ``respawn``, ...)."""
    return ProcessPlan(name=name, cmd=(sys.executable, '-c', textwrap.dedent(code)), **kwargs)


def supervise(plans: list[ProcessPlan], **kwargs) -> tuple[int, list[str], Supervisor]:
    """Run ``plans`` under a :class:`Supervisor` (``kwargs`` are its options) to the end.

    Returns:
        The launch's exit code, the lines it wrote, and the supervisor.
    """
    lines: list[str] = []
    supervisor = Supervisor(plans, write=lines.append, **kwargs)
    return supervisor.run(), lines, supervisor


def plan_rpl_launch(file_name: str, **arguments: str) -> list[ProcessPlan]:
    """Plans of the rpl_bringup launch file ``file_name`` given ``arguments``, evaluated by
    the stand-in launch modules; an executable's command is just its name."""
    path = launch_runner.locate_launch_file('rpl_bringup', file_name)
    return launch_runner.plan_launch_file(
        path, arguments, resolve=lambda pkg, exe: [exe], force_shim=True
    )


def replace_model(
    path: os.PathLike[str] | str, source: os.PathLike[str] | str, bump_ns: int = 10**9
) -> None:
    """Atomically put ``source`` at ``path`` with an mtime ``bump_ns`` (ns) past the file it
    replaces, as the trainer exports a model; a source over 1 MiB is hard-linked, not copied."""
    path, source = pathlib.Path(path), pathlib.Path(source)
    tmp = path.with_suffix('.tmp')
    if source.stat().st_size > 2**20:
        os.link(source, tmp)
    else:
        tmp.write_bytes(source.read_bytes())
    stat = path.stat() if path.exists() else tmp.stat()
    os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump_ns))
    os.replace(tmp, path)


def reload_model(mixer: ResidualMixer, timeout_s: float = 60.0) -> ReloadEvent | None:
    """``mixer.check_reload()``, and for a file it loads in the background, the outcome
    (waited for up to ``timeout_s``)."""
    event = mixer.check_reload()
    deadline = time.monotonic() + timeout_s
    while event is None and mixer.reload_in_flight:
        assert time.monotonic() < deadline
        time.sleep(0.005)
        event = mixer.finish_reload()
    return event


TOY_RUN = {
    'task': 'toy_reach',
    'controller': 'toy_biased',
    'num_envs': 2,
    'hidden_size': 16,
    'batch_size': 32,
    'updates_per_env_step': 0.3,
    'burn_in_window': 10,
    'eval_interval': 40,
    'eval_episodes': 2,
    'base_eval_episodes': 2,
    'checkpoint_interval': 40,
}  # a toy-reach run small enough for a test (10-step episodes: 20 env steps a cycle), with
# checkpoints and evaluations every 40 env steps


def toy_problem() -> Problem:
    """The toy reach task of :mod:`toy_goal_env` with its biased base controller."""
    from toy_goal_env import SPEC, BiasedController, ToyFactory, toy_reward

    from rpl_trainer.problem import Problem  # torch: imported only by the tests that train

    return Problem(SPEC, ToyFactory, toy_reward, lambda: BiasedController().act_batch)


def rpl_train(argv: list[str]) -> int:
    """``rpl_trainer.cli.main(argv)`` in this process, then torch's thread count as it was
    (a run sets its own ``torch_threads``)."""
    import torch

    from rpl_trainer.cli import main

    threads = torch.get_num_threads()
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def toy_trainer(out_dir: os.PathLike[str] | str, **settings: object) -> Trainer:
    """A quiet Trainer of :data:`TOY_RUN` with ``settings`` on top, on :func:`toy_problem`."""
    from rpl_trainer.config import make_config
    from rpl_trainer.train import Trainer

    return Trainer(make_config({**TOY_RUN, **settings}), toy_problem(), out_dir, progress=False)


def read_json(path: os.PathLike[str] | str) -> dict | None:
    """A JSON file's content, or None while it does not exist or is half written."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def set_model_metadata(path: os.PathLike[str] | str, props: dict[str, str]) -> pathlib.Path:
    """Replace the ``metadata_props`` of an ONNX file (the graph unchanged); returns the path.

    Model identity tests give hand-made models a task, controller and field names this way.
    """
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))
    return pathlib.Path(path)


class RecordedLaunch:
    """One recorded lockstep launch of a stack file with a model: bag, monitor JSON and
    launch output, in ``folder``.

    :meth:`start` starts ``rpl launch``; :meth:`finish` waits for it and reads the results
    (``output``, ``monitor``). Lockstep with a long command timeout: the runs test
    equivalence, not latency, so machine load changes their timing, not their episodes.
    """

    def __init__(
        self,
        folder: pathlib.Path,
        launch_file: str,
        model: pathlib.Path,
        namespace: str,
        *arguments: str,
    ) -> None:
        self.model = model
        self.bag = folder / 'bag'
        self.results = folder / 'monitor.json'
        self.log = folder / 'launch.log'
        self.output = ''
        self.monitor: dict = {}
        self.cmd = [
            *LAUNCH,
            launch_file,
            *arguments,
            f'model_path:={model}',
            'mode:=lockstep',
            'command_timeout:=1.0',  # equivalence, not latency (loaded 2-core machine)
            'monitor:=true',
            f'results:={self.results}',
            'record:=true',
            f'bag:={self.bag}',
            f'namespace:={namespace}',
        ]
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, 'w') as log:
            self._proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, text=True
            )

    def finish(self, timeout_s: float) -> None:
        try:
            code = self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            stop_process(self._proc, signal.SIGINT, timeout_s=10.0)
            code = None
        self.output = self.log.read_text()
        assert code == 0, f'{self.cmd[len(LAUNCH)]} launch ended with {code}:\n{self.output}'
        self.monitor = json.loads(self.results.read_text())


def run_tool(repo_root: pathlib.Path, name: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``tools/<name>.py`` with ``args`` in a fresh interpreter; output captured as text."""
    command = [sys.executable, str(repo_root / 'tools' / f'{name}.py'), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)
