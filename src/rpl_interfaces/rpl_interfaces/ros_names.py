"""ROS names as rcl accepts them, checked without rclpy (one rule for every package).

A base name is letters, digits and '_', not starting with a digit; an absolute name (a
topic or a namespace other than the root) is '/' followed by base names joined with '/'.
"""

from __future__ import annotations

import re

_BASE = r'[A-Za-z_][A-Za-z0-9_]*'
_BASE_NAME = re.compile(_BASE)
_ABSOLUTE_NAME = re.compile(f'(/{_BASE})+')


def is_base_name(text: str) -> bool:
    """``text`` is one ROS base name (a node name, one token of a topic)."""
    return _BASE_NAME.fullmatch(text) is not None


def is_absolute_name(text: str) -> bool:
    """``text`` is an absolute ROS name, ``/name/...`` (not the root ``/`` alone)."""
    return _ABSOLUTE_NAME.fullmatch(text) is not None
