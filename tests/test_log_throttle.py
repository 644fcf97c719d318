"""LogThrottle: one line per reason and period, held-back lines counted."""

from __future__ import annotations

from rpl_interfaces.log_throttle import LogThrottle


def test_one_line_per_period_and_the_held_back_count():
    throttle = LogThrottle(2.0)
    assert throttle.should_log(0.0) == (True, 0)
    assert throttle.should_log(1.0) == (False, 0)
    assert throttle.should_log(1.9) == (False, 0)
    assert throttle.should_log(2.0) == (True, 2)
    assert throttle.should_log(4.5) == (True, 0)


def test_each_reason_is_throttled_on_its_own():
    throttle = LogThrottle(10.0)
    assert throttle.should_log(0.0, 'a') == (True, 0)
    assert throttle.should_log(0.0, 'b') == (True, 0)
    assert throttle.should_log(1.0, 'a') == (False, 0)
    assert throttle.should_log(2.0, 'a') == (False, 0)
    assert throttle.should_log(3.0, 'b') == (False, 0)
    assert throttle.should_log(11.0, 'a') == (True, 2)
    assert throttle.should_log(11.0, 'b') == (True, 1)


def test_the_controller_node_throttles_each_kind_of_rejection_on_its_own():
    """Its first rejection's period hid every other reason (an unknown task, then NaN, then
    a wrong size: only the first was ever said)."""
    from rpl_base_controllers.controller_node import rejection_kind

    throttle = LogThrottle(10.0)
    reasons = [
        "observation (frame_id ''): unknown task ''",
        'controller refused (episode 0, step 3): observation has 24 values, expected 25',
        'controller refused (episode 0, step 4): observation has 24 values, expected 25',
        "observation (frame_id 'push'): non-finite values",
    ]
    said = [throttle.should_log(0.1 * i, rejection_kind(r))[0] for i, r in enumerate(reasons)]
    assert said == [True, True, False, True]  # the same kind at another step is held back
