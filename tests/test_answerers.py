"""The sim bridge's evidence of a second stack in its namespace: the same steps answered
with different messages (pure)."""

from __future__ import annotations

from rpl_sim_bridge.answerers import CONFLICTS, KEPT_STEPS, AnswerLedger


def test_the_same_answer_again_is_no_second_stack():
    ledger = AnswerLedger()
    for step in range(100):
        assert not ledger.second_answerer((0, step), b'residual 0.1')
        assert not ledger.second_answerer((0, step), b'residual 0.1')  # a re-sent observation


def test_respawns_far_apart_are_no_second_stack():
    """A respawned node, its state reset, may answer the re-sent step otherwise: once per
    respawn, forgotten once the step leaves the window."""
    ledger = AnswerLedger()
    for step in range(10 * KEPT_STEPS):
        assert not ledger.second_answerer((0, step), b'a')
        if step % KEPT_STEPS == 5:
            assert not ledger.second_answerer((0, step), b'after a respawn')


def test_other_answers_to_the_same_steps_are_a_second_stack():
    ledger = AnswerLedger()
    said = []
    for step in range(CONFLICTS):
        ledger.second_answerer((3, step), b'residual 0.1')
        said.append(ledger.second_answerer((3, step), b'base 0.4'))
    assert said == [False] * (CONFLICTS - 1) + [True]
