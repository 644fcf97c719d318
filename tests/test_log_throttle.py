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
