"""The one (episode, step) index and re-send rule of the bag reader and the live assembler."""

from __future__ import annotations

import numpy as np

from rpl_interfaces.codec import StampedVector
from rpl_interfaces.step_index import Placed, is_resend, place


def vec(step: int, values, tag: str = 'ctl', stamp_ns: int = 0) -> StampedVector:
    return StampedVector(0, step, np.asarray(values, dtype=np.float64), stamp_ns, tag)


def test_the_first_message_of_a_step_is_kept_and_a_resend_is_counted_not_stored():
    steps: dict[int, StampedVector] = {}
    first = vec(0, [0.1, np.nan], stamp_ns=1)
    assert place(steps, first) is Placed.FIRST
    # The handshake's copy: same payload (NaN equal to NaN) and tag, a later stamp.
    assert place(steps, vec(0, [0.1, np.nan], stamp_ns=2)) is Placed.RESENT
    assert place(steps, vec(1, [0.2, 0.0])) is Placed.FIRST
    assert steps[0] is first and sorted(steps) == [0, 1]


def test_another_payload_or_tag_for_a_stored_step_is_a_conflict():
    steps = {0: vec(0, [0.1, 0.2])}
    assert place(steps, vec(0, [0.1, 0.3])) is Placed.CONFLICT
    assert place(steps, vec(0, [0.1, 0.2], tag='other')) is Placed.CONFLICT
    assert steps[0].values.tolist() == [0.1, 0.2]
    assert is_resend(steps[0], vec(0, [0.1, 0.2], stamp_ns=9))
    assert not is_resend(steps[0], vec(0, [0.1, 0.2], tag='other'))


def test_the_bag_reader_and_the_live_assembler_use_this_rule():
    # One home: neither keeps a copy of the rule (it used to be written in both).
    import inspect

    from rpl_bags import recorded
    from rpl_trainer.assembler import EpisodeAssembler

    for source in (
        inspect.getsource(recorded._by_step),
        inspect.getsource(EpisodeAssembler),
    ):
        assert 'step_index.place(' in source
        assert 'array_equal' not in source
