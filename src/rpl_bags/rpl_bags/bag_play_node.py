"""``rpl bag play``: republish a bag onto live topics with its recorded timing.

Like ``ros2 bag play``: every message goes out as the stored CDR bytes on its recorded topic,
with the recorded QoS (reliability, durability, depth) where the bag stores it, at the
recorded receive-time spacing divided by ``rate``. Reading and the schedule are in
:mod:`rpl_bags.reader` and :mod:`rpl_bags.playback`; this module only owns the publishers
and the clock.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence

import rclpy
from rclpy.signals import SignalHandlerOptions

from rpl_bags.playback import messages_to_play, playback_offsets, select_topics
from rpl_bags.reader import RawBag
from rpl_bags.topics import BagError
from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile

ACK_TIMEOUT_S = 2.0
_DEFAULT_QOS = contract.QosSpec(depth=10)


def _message_class(msgtype: str):
    package, kind, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ImportError, AttributeError):
        raise BagError(
            f'message type {msgtype} is not installed here (no Python module {package}.{kind})'
        ) from None


def _unsubscribed(publishers: dict) -> list[str]:
    """The published names (of ``{topic: publisher}``) that no subscriber has matched yet."""
    return [pub.topic_name for pub in publishers.values() if pub.get_subscription_count() == 0]


class PlayInterrupted(Exception):
    """Ctrl-C stopped the playback (the node is cleaned up); ``published`` messages went out."""

    def __init__(self, published: int) -> None:
        super().__init__(f'interrupted after {published} messages')
        self.published = published


def play(
    raw: RawBag,
    rate: float = 1.0,
    topics: Sequence[str] | None = None,
    delay_s: float = 0.0,
    wait_subscribers_s: float = 0.0,
    on_start: Callable[[], None] | None = None,
    names: Mapping[str, str] | None = None,
) -> int:
    """Publish the bag's messages with the recorded timing; returns the number published.

    Args:
        raw: The bag (:func:`rpl_bags.reader.read_raw_bag`).
        rate: Speed factor (2.0 = twice as fast).
        topics: Topics to play (absolute names or names relative to any namespace); None = all.
        delay_s: Sleep this long (s) after creating the publishers, before the first message.
        wait_subscribers_s: Then wait up to this long (s) until every played topic has a
            subscriber (0 = do not wait); if one still has none, nothing is played.
        on_start: Called just before the first message is published (after the wait).
        names: Bag topic -> the name it is published on (:func:`rpl_bags.playback.play_names`);
            a topic not in it keeps its own name.

    Raises:
        BagError: Unknown topic, bad rate, message type not installed, no message to play,
            a played topic without a subscriber after ``wait_subscribers_s``.
        PlayInterrupted: Ctrl-C (SIGINT) during the playback.
    """
    available = raw.topics
    chosen = select_topics(list(available), topics)
    messages = messages_to_play(raw.messages, chosen)
    offsets = playback_offsets([m.log_time_ns for m in messages], rate)
    classes = {t: _message_class(available[t].msgtype) for t in chosen}
    # No arguments for rcl: its own parsing of the command line applied a --remap rule's
    # FROM:=TO as a global remap beside ours (two topics on one name, unchecked).
    rclpy.init(
        args=[], signal_handler_options=SignalHandlerOptions.NO
    )  # Ctrl-C: KeyboardInterrupt
    node = rclpy.create_node('bag_player')
    published = 0
    try:
        publishers = {
            t: node.create_publisher(
                classes[t], (names or {}).get(t, t), qos_profile(available[t].qos or _DEFAULT_QOS)
            )
            for t in chosen
        }
        time.sleep(max(delay_s, 0.0))
        deadline = time.monotonic() + wait_subscribers_s
        while time.monotonic() < deadline and _unsubscribed(publishers):
            time.sleep(0.02)
        if wait_subscribers_s > 0 and (missing := _unsubscribed(publishers)):
            raise BagError(
                f'no subscriber on {", ".join(missing)} after {wait_subscribers_s:g} s '
                '(--wait-subscribers): nothing played; start the subscribers first, or play '
                'only the topics they take (--topics)'
            )
        if on_start is not None:
            on_start()
        start = time.monotonic()
        for message, offset in zip(messages, offsets, strict=True):
            pause = start + offset - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            publishers[message.topic].publish(message.data)
            published += 1
        for pub in publishers.values():
            pub.wait_for_all_acked(rclpy.duration.Duration(seconds=ACK_TIMEOUT_S))
    except KeyboardInterrupt:
        raise PlayInterrupted(published) from None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return published
