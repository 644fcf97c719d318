"""Parameters declared with ROS ranges and read_only, checked on the real residual node.

A node reads its config once at start, so a runtime ``set_parameters`` (``ros2 param set``)
must be refused, not accepted and ignored; the range of a field is the descriptor's
``FloatingPointRange`` / ``IntegerRange``, so ROS tools see it and refuse a value outside it.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable

import pytest
from helpers import SideNode, ros_args, stop_process
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.task import Future

pytestmark = pytest.mark.integration

NODE_EXE = pathlib.Path(sys.executable).parent / 'residual_node'


@pytest.fixture
def residual_node(tmp_path):
    """The real residual node (no model: base action only) and a client of its parameters."""
    namespace = f'/params_{os.getpid()}'
    log = tmp_path / 'node.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen(
            [str(NODE_EXE), *ros_args(namespace, 'residual_gain:=1.5', 'explore_seed:=7')],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    side = SideNode('params_test_client', namespace)
    client = AsyncParameterClient(side.node, f'{namespace}/residual_node')
    try:
        ready = side.spin_until(client.services_are_ready, timeout_s=30.0)
        assert ready, log.read_text()
        yield side, client
    finally:
        side.close()
        stop_process(proc)


def _call(side: SideNode, request: Callable[[], Future], attempts: int = 3):
    """The answer to ``request()`` (a parameter service call), sent again if none came.

    With Fast DDS a service can answer before its response writer has matched the client's
    response reader (it waits 100 ms for that, then drops the response: the ROS 2 service
    discovery race, ros2/rmw_fastrtps#418). On a loaded machine the first call can be lost
    so; the calls here are idempotent, so a lost one is sent again.
    """
    for _ in range(attempts):
        future = request()
        if side.spin_until(future.done, timeout_s=10.0):
            return future.result()
        future.cancel()
    raise AssertionError(f'no answer from the node to {attempts} calls')


def test_the_ranges_are_ros_ranges_and_every_parameter_but_the_gain_is_read_only(residual_node):
    side, client = residual_node
    names = ['residual_gain', 'explore_seed', 'model_path']
    described = _call(side, lambda: client.describe_parameters(names)).descriptors
    scale, seed, model = described
    assert [(r.from_value, r.to_value) for r in scale.floating_point_range] == [(0.0, 2.0)]
    assert not scale.integer_range
    assert [(r.from_value, r.to_value) for r in seed.integer_range] == [(0, 2**63 - 1)]
    assert not seed.floating_point_range
    assert not model.floating_point_range and not model.integer_range
    assert not scale.read_only  # residual_gain: the one runtime parameter
    assert seed.read_only and model.read_only, described
    assert 'range [0.0, 2.0]' in scale.additional_constraints


@pytest.mark.parametrize(
    'parameter',
    [
        Parameter('residual_gain', value=5.0),  # outside [0, 2]
        Parameter('explore_seed', value=-2),  # outside [0, 2**63 - 1]
        Parameter('explore_seed', value=3),  # inside the range: still not applied
        Parameter('model_path', value='/tmp/other.onnx'),
        # rclpy's own: set at runtime it moved the node's timers to a /clock nothing
        # publishes (hot reload and diagnostics froze; a sim bridge's run hung silently)
        Parameter('use_sim_time', value=True),
    ],
    ids=lambda p: f'{p.name}={p.value}',
)
def test_a_runtime_set_is_refused_and_the_value_kept(residual_node, parameter):
    side, client = residual_node
    before = _call(side, lambda: client.get_parameters([parameter.name])).values[0]
    (result,) = _call(side, lambda: client.set_parameters([parameter])).results
    assert not result.successful
    if parameter.name != 'residual_gain':  # the runtime one: refused for its range
        assert 'read-only' in result.reason, result.reason
    after = _call(side, lambda: client.get_parameters([parameter.name])).values[0]
    assert after == before
