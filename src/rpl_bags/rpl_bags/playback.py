"""The playback schedule of ``rpl bag play``: which topics and when (pure, no rclpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rpl_bags.topics import BagError


def select_topics(raw_topics: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The bag topics to play: all, or those named (absolute, or relative = name suffix).

    Raises:
        BagError: A requested topic is not in the bag.
    """
    if not wanted:
        return sorted(raw_topics)
    chosen = []
    for name in wanted:
        matches = [
            t
            for t in raw_topics
            if t == name or (not name.startswith('/') and t.endswith('/' + name))
        ]
        if not matches:
            raise BagError(f'topic {name!r} is not in the bag; it has {sorted(raw_topics)}')
        chosen += [m for m in matches if m not in chosen]
    return chosen


def messages_to_play(messages: Sequence, chosen: Sequence[str]) -> list:
    """The bag's messages on the ``chosen`` topics, in order.

    Raises:
        BagError: There are none (an empty bag, or no message on those topics).
    """
    played = [m for m in messages if m.topic in chosen]
    if not played:
        where = f' on {", ".join(chosen)}' if chosen else ''
        raise BagError(f'the bag has no messages{where}: nothing to play')
    return played


def playback_offsets(log_times_ns: Sequence[int], rate: float) -> np.ndarray:
    """When to publish each message, seconds after the first, for playback at ``rate``.

    Args:
        log_times_ns: Receive times in the bag, (n,) ns, in the order of publication.
        rate: Playback speed factor (2.0 = twice as fast).

    Raises:
        BagError: ``rate`` is not positive.
    """
    if not rate > 0:
        raise BagError(f'rate must be positive, got {rate}')
    t = np.asarray(log_times_ns, dtype=np.int64)
    if t.size == 0:
        return np.zeros(0)
    return np.maximum.accumulate((t - t[0]) * 1e-9 / rate)
