"""Shared node plumbing: typed parameters, QoS profiles, message codecs, diagnostics.

The only module of this package that imports rclpy. Every RPL node derives from
:class:`RplNode` so that parameters, QoS and diagnostics behave the same everywhere.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector, encode
from rpl_interfaces.params import build_config

C = TypeVar('C')

DIAG_LEVEL = {
    'ok': DiagnosticStatus.OK,
    'warn': DiagnosticStatus.WARN,
    'error': DiagnosticStatus.ERROR,
    'stale': DiagnosticStatus.STALE,
}


def qos_profile(spec: contract.QosSpec) -> QoSProfile:
    """Turn a plain :class:`~rpl_interfaces.contract.QosSpec` into an rclpy profile."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=spec.depth,
        reliability=(
            ReliabilityPolicy.RELIABLE if spec.reliable else ReliabilityPolicy.BEST_EFFORT
        ),
        durability=(
            DurabilityPolicy.TRANSIENT_LOCAL if spec.transient_local else DurabilityPolicy.VOLATILE
        ),
    )


def now_ns() -> int:
    """Wall-clock time in nanoseconds (the stamp of every control-path message)."""
    return time.time_ns()


class RplNode(Node):
    """Base class: declares a config dataclass as parameters and publishes diagnostics."""

    def declare_config(self, cls: type[C]) -> C:
        """Declare every field of ``cls`` as a parameter (with description and range).

        Returns:
            The validated config built from the parameter values.

        Raises:
            rpl_interfaces.params.ParameterError: A value is out of range or mistyped.
        """
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            meta = field.metadata
            desc = ParameterDescriptor(description=meta.get('description', ''))
            # Ranges and choices are documented in the descriptor and enforced by
            # build_config, whose error names the value and the expected range.
            constraints = []
            if 'range' in meta:
                constraints.append(f'range {list(meta["range"])}')
            if 'choices' in meta:
                constraints.append(f'one of {list(meta["choices"])}')
            desc.additional_constraints = '; '.join(constraints)
            param = self.declare_parameter(field.name, field.default, desc)
            values[field.name] = param.value
        return build_config(cls, values)

    def control_publisher(self, name: str):
        """Publisher of stamped vectors on a contract topic with its QoS role; volatile
        topics keep a history of at least :data:`~rpl_interfaces.contract.
        CONTROL_PUBLISHER_DEPTH`, so a stalled reliable reader still gets every message
        (latched topics keep their depth: it is what a late joiner receives)."""
        spec = contract.TOPIC_QOS[name]
        depth = spec.depth
        if not spec.transient_local:
            depth = max(depth, contract.CONTROL_PUBLISHER_DEPTH)
        return self.create_publisher(
            JointState, name, qos_profile(dataclasses.replace(spec, depth=depth))
        )

    def control_subscription(self, name: str, callback: Callable[[JointState], None]):
        """Subscription to a contract topic with its QoS role."""
        return self.create_subscription(
            JointState, name, callback, qos_profile(contract.TOPIC_QOS[name])
        )

    def publish_vector(
        self,
        publisher,
        episode: int,
        step: int,
        values: np.ndarray,
        field_names: Sequence[str],
        tag: str,
    ) -> None:
        """Encode and publish one stamped vector."""
        msg = encode(
            JointState(), StampedVector(episode, step, values, now_ns(), tag), field_names
        )
        publisher.publish(msg)

    def make_diagnostics(self):
        """Publisher on /diagnostics."""
        return self.create_publisher(
            DiagnosticArray, contract.DIAGNOSTICS, qos_profile(contract.DIAGNOSTICS_QOS)
        )

    def publish_diagnostics(
        self, publisher, level: str, message: str, values: dict[str, Any]
    ) -> None:
        """Publish one DiagnosticStatus named after this node.

        Args:
            publisher: From :meth:`make_diagnostics`.
            level: 'ok', 'warn', 'error' or 'stale'.
            message: One-line summary.
            values: Key/value details (stringified).
        """
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        status = DiagnosticStatus(
            level=DIAG_LEVEL[level],
            name=self.get_fully_qualified_name(),
            message=message,
            hardware_id=self.get_name(),
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        arr.status = [status]
        publisher.publish(arr)


def _factory_name(factory: Callable[[], Node]) -> str:
    return getattr(factory, '__name__', 'rpl node')


def run_node(
    factory: Callable[[], Node], args: Sequence[str] | None = None, name: str | None = None
) -> int:
    """Init rclpy, spin a node until Ctrl-C/SIGTERM or rclpy shutdown, clean up.

    Args:
        factory: Builds the node (after ``rclpy.init``). A ``ParameterError`` or
            ``ValueError`` raised here is logged as one line and gives exit code 2.
        args: ROS arguments (``--ros-args ...``).
        name: Name used in the error line when the node could not even be built
            (default: the factory's name).

    Returns:
        Process exit code.
    """
    # rclpy installs its own SIGINT/SIGTERM handlers that shut the context down and wake spin.
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    except RuntimeError:  # rclpy._rclpy_pybind11.RCLError
        # SIGTERM/SIGINT shut the context down while spin was building its wait set: a
        # clean stop. Any other RCL failure is a real error.
        if rclpy.ok():
            raise
    except ValueError as exc:  # includes ParameterError: one clear line, no traceback
        label = node.get_name() if node is not None else (name or _factory_name(factory))
        print(f'[{label}] error: {exc}', flush=True)
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
