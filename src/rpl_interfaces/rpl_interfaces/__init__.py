"""RPL topic contract: topic names, QoS roles, message codecs, shared node base."""

import os

__version__ = '0.1.0'
"""The project version (one constant; written into every exported model's metadata)."""

TRACEBACK_ENV = 'RPL_TRACEBACK'
"""Set to ``1`` for the whole traceback where a failure is otherwise one line (a node's
callback or start, a launch file); one name for every package (the launch runner must not
load rclpy, as ``base_node`` would)."""


def wants_traceback() -> bool:
    """Whether the user asked for whole tracebacks (:data:`TRACEBACK_ENV` is ``1``)."""
    return os.environ.get(TRACEBACK_ENV) == '1'
