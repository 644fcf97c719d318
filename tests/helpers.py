"""Helpers shared by the tests that run real node processes and talk to them over DDS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor


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

    def close(self) -> None:
        """Destroy the node and shut its context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
