"""The residual node's view of its input messages' timing (pure: rclpy's MessageInfo as a
dict): how long a message waited since its reception, and how many of a publisher's
messages never reached the callback."""

from __future__ import annotations

from rpl_residual_node.input_timing import MAX_PUBLISHERS, Arrival, InputTracker

NOW = 1_800_000_000_000_000_000


def info(sequence, gid=b'pub-a', received=NOW - 2_000_000):
    return {
        'received_timestamp': received,
        'source_timestamp': received,
        'publication_sequence_number': sequence,
        'reception_sequence_number': None,
        'publisher_gid': {'implementation_identifier': 'rmw_fastrtps_cpp', 'data': gid},
    }


def test_the_wait_counts_from_the_reception():
    tracker = InputTracker()
    assert tracker.arrival(info(1), NOW) == Arrival(0.002, 0)
    assert tracker.arrival(info(2, received=NOW + 5), NOW).waited_s == 0.0  # clock skew: 0


def test_a_gap_in_a_publishers_sequence_is_counted_once_per_message_lost():
    tracker = InputTracker()
    assert tracker.arrival(info(1), NOW).lost == 0  # the first message of a publisher
    assert tracker.arrival(info(2), NOW).lost == 0
    assert tracker.arrival(info(23), NOW).lost == 20  # 3..22 overwritten before the callback
    assert tracker.arrival(info(5, gid=b'pub-b'), NOW).lost == 0  # another publisher
    assert tracker.arrival(info(24), NOW).lost == 0
    assert tracker.arrival(info(1), NOW).lost == 0  # the publisher started over: no gap


def test_unknown_values_count_as_no_wait_and_no_gap():
    tracker = InputTracker()
    assert tracker.arrival(None, NOW) == Arrival(0.0, 0)
    assert tracker.arrival({'received_timestamp': 0}, NOW) == Arrival(0.0, 0)
    blank = {'received_timestamp': NOW, 'publication_sequence_number': None}
    assert tracker.arrival(blank, NOW) == Arrival(0.0, 0)


def test_publishers_kept_are_bounded():
    tracker = InputTracker()
    for k in range(MAX_PUBLISHERS + 10):
        tracker.arrival(info(1, gid=f'pub-{k}'.encode()), NOW)
    assert tracker.arrival(info(9, gid=b'pub-0'), NOW).lost == 0  # forgotten: a new one
    assert tracker.arrival(info(9, gid=f'pub-{MAX_PUBLISHERS + 9}'.encode()), NOW).lost == 7
