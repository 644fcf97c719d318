"""use_sim_time:=true (a global parameter file of a larger ROS system sets it) with nothing
on /clock: every timer of a node waits for /clock, which nothing in this project publishes.
The sim bridge hung before its first step and the residual node's hot reload, diagnostics
and warnings stopped, all without a word; now each node says so once (real node processes)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import pytest
from helpers import ros_args, stop_process

pytestmark = pytest.mark.integration


@pytest.mark.parametrize('executable', ['sim_bridge_node', 'residual_node'])
def test_a_node_with_sim_time_and_no_clock_says_so(tmp_path, executable):
    exe = pathlib.Path(sys.executable).parent / executable
    log = tmp_path / 'node.log'
    with open(log, 'wb') as out:
        args = ros_args('/sim_time_test', 'use_sim_time:=true')
        proc = subprocess.Popen([str(exe), *args], stdout=out, stderr=subprocess.STDOUT)
    line = "use_sim_time is true and no /clock came in 5 s: this node's timers wait for it"
    try:
        deadline = time.monotonic() + 30.0
        while line not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert line in log.read_text(), log.read_text()
    finally:
        stop_process(proc, timeout_s=10.0)
