"""How long an input message waited in the node, and how many never reached it.

Pure Python. The node's inputs keep the last 10 messages (the control QoS): a node that
falls behind (a model slower than the input period, a stalled CPU, a burst) finds the
oldest ones overwritten before its callback runs, and works off the rest late. Both were
silent: the late steps went out as residual commands computed from old inputs, the
overwritten ones got no command and no count. The middleware tells each message's
reception time and its publisher's sequence number (rclpy's ``MessageInfo``), so:

* ``waited_s``: the time from the message's reception to the callback; above the node's
  ``max_input_age_s`` the step it completes gets the base action (reason ``input_late``);
* ``lost``: the gap in the publisher's sequence numbers since its previous message: those
  messages never reached the callback (their steps get no command).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

MAX_PUBLISHERS = 64  # sequence numbers kept for this many publishers per topic


class Arrival(NamedTuple):
    """What the middleware said of one message.

    Attributes:
        waited_s: Seconds from its reception to now (0 when the middleware gave no time).
        lost: Messages of the same publisher before it that never reached the callback.
    """

    waited_s: float
    lost: int


class InputTracker:
    """Per topic: the last sequence number of each publisher."""

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}

    def arrival(self, info: Mapping[str, Any] | None, now_ns: int) -> Arrival:
        """The wait and the gap for a message with rclpy ``MessageInfo`` ``info``.

        Args:
            info: ``received_timestamp`` (ns, system clock), ``publication_sequence_number``
                and ``publisher_gid``; missing or zero values count as unknown (no wait, no
                gap), as some middlewares give none.
            now_ns: The system clock now (``time.time_ns()``).
        """
        if not info:
            return Arrival(0.0, 0)
        received = info.get('received_timestamp') or 0
        waited = max(0.0, (now_ns - received) / 1e9) if received > 0 else 0.0
        return Arrival(waited, self._gap(info))

    def _gap(self, info: Mapping[str, Any]) -> int:
        sequence = info.get('publication_sequence_number')
        gid = info.get('publisher_gid')
        if not sequence or not isinstance(gid, Mapping) or gid.get('data') is None:
            return 0
        key = bytes(gid['data'])
        last = self._last.pop(key, None)  # re-inserted last: the dict keeps recent publishers
        self._last[key] = sequence
        while len(self._last) > MAX_PUBLISHERS:
            del self._last[next(iter(self._last))]
        if last is None or sequence <= last:  # a new publisher, or one that started over
            return 0
        return sequence - last - 1
