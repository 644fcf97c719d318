"""The playback schedule of ``rpl bag play``: which topics and when (pure, no rclpy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rpl_bags.topics import SIDE_TOPICS, BagError
from rpl_interfaces.ros_names import is_absolute_name

# Played under their own absolute name whatever --namespace says (the health reports).
_GLOBAL_TOPICS = frozenset(n for n in SIDE_TOPICS if n.startswith('/'))


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


def absolute_name(text: str, what: str, namespace: bool = False) -> str:
    """``text`` as an absolute ROS name (``rpl`` -> ``/rpl``), else BagError naming ``what``;
    with ``namespace``, the root ``/`` too (rcl's rule for ``__ns``)."""
    name = text if text.startswith('/') else f'/{text}'
    if not (is_absolute_name(name) or namespace and name == '/'):
        kind = 'namespace' if namespace else 'name'
        raise BagError(
            f"{what} {text!r} is not a ROS {kind} (/name/...: letters, digits and '_', no "
            'name starting with a digit, no empty name)'
        )
    return name


def parse_remaps(rules: Sequence[str]) -> dict[str, str]:
    """``FROM:=TO`` rules (``ros2 bag play --remap``'s form) as ``{FROM: TO}``, absolute.

    Raises:
        BagError: A rule without ``:=``, a name that is not a ROS name, a topic twice.
    """
    remaps: dict[str, str] = {}
    for rule in rules:
        old, sep, new = rule.partition(':=')
        if not sep:
            raise BagError(f'--remap {rule!r} is not FROM:=TO (e.g. /rpl/observation:=/b/obs)')
        old = absolute_name(old, '--remap source')
        if old in remaps:
            raise BagError(f'--remap names {old} twice: give each topic one new name')
        remaps[old] = absolute_name(new, '--remap target')
    return remaps


def played_namespaces(chosen: Sequence[str]) -> list[str]:
    """The namespaces the played topics are in, except the global ones (``/diagnostics``):
    the stacks ``--namespace`` would move, sorted."""
    return sorted({t.rsplit('/', 1)[0] or '/' for t in chosen if t not in _GLOBAL_TOPICS})


def play_names(
    chosen: Sequence[str],
    stacks: Sequence[str],
    namespace: str | None = None,
    remaps: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The name each chosen bag topic is published on: its own, the stack's topics moved
    into ``namespace``, then ``remaps`` (stored name -> new name) applied.

    Args:
        chosen: The bag topics to play (:func:`select_topics`).
        stacks: The namespaces the played topics are in (:func:`played_namespaces`).
        namespace: Play the bag's one stack into this namespace (absolute); None = as stored.
        remaps: Stored topic -> published topic, both absolute; each source must be played.

    Raises:
        BagError: ``namespace`` with a bag of no stack or several; a remap of a topic that is
            not played; two topics published on one name.
    """
    names = {topic: topic for topic in chosen}
    if namespace is not None:
        if len(stacks) != 1:
            found = ', '.join(stacks) if stacks else 'none'
            raise BagError(
                f'--namespace moves one stack; the topics played are of {found}: play one '
                "stack's topics (--topics), or name each topic with --remap FROM:=TO"
            )
        prefix = stacks[0].rstrip('/') + '/'
        for topic in chosen:
            if topic.startswith(prefix) and topic not in _GLOBAL_TOPICS:
                names[topic] = namespace.rstrip('/') + '/' + topic[len(prefix) :]
    for old, new in (remaps or {}).items():
        if old not in names:
            raise BagError(
                f'--remap {old}:={new}: {old} is not played (played: {", ".join(chosen)})'
            )
        names[old] = new
    published: dict[str, str] = {}
    for topic, name in names.items():
        if name in published:
            raise BagError(
                f'{published[name]} and {topic} would both be published on {name}: give '
                'them different names'
            )
        published[name] = topic
    return names


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
