"""The sim bridge's evidence of a second stack in its namespace: the same step answered by
two publishers (pure; rclpy's MessageInfo as a dict)."""

from __future__ import annotations

from rpl_sim_bridge.answerers import CONFLICTS, AnswerLedger


def info(gid: bytes) -> dict:
    return {'publisher_gid': {'implementation_identifier': 'rmw_fastrtps_cpp', 'data': gid}}


def test_one_publisher_answering_again_is_no_second_stack():
    ledger = AnswerLedger()
    for step in range(100):
        assert not ledger.second_answerer((0, step), info(b'a'))
        assert not ledger.second_answerer((0, step), info(b'a'))  # a re-sent observation


def test_a_respawned_node_answering_one_step_again_is_no_second_stack():
    ledger = AnswerLedger()
    for step in range(5):
        assert not ledger.second_answerer((0, step), info(b'old'))
    assert not ledger.second_answerer((0, 4), info(b'new'))  # the re-sent observation 4
    for step in range(5, 50):
        assert not ledger.second_answerer((0, step), info(b'new'))


def test_two_publishers_answering_the_same_steps_are_a_second_stack():
    ledger = AnswerLedger()
    said = []
    for step in range(CONFLICTS):
        ledger.second_answerer((3, step), info(b'this stack'))
        said.append(ledger.second_answerer((3, step), info(b'the other')))
    assert said == [False] * (CONFLICTS - 1) + [True]


def test_without_a_publisher_gid_nothing_is_said():
    ledger = AnswerLedger()
    for step in range(10):
        assert not ledger.second_answerer((0, step), None)
        assert not ledger.second_answerer((0, step), {'publisher_gid': None})
