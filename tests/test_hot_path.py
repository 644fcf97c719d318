"""Per-step work of the loop's nodes: the controller state snapshot of SequencedController.

A controller whose attributes are all immutable (the reactive controllers: a frozen config
and a name) is snapshot with a shallow copy instead of a deep copy on every step; one with
mutable state keeps the deep copy. Either way the answers are the same as before.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rpl_base_controllers import ReactivePush
from rpl_base_controllers.base import SequencedController, load_state, save_state


def ask(sequencer: SequencedController, episode: int, step: int, value: float):
    payload = np.full(4, value)
    return sequencer.answer(episode, step, payload, payload[:1], payload[1:])


class Listing:
    """Mutable state: a list of the observations seen since reset (in place)."""

    name = 'listing'

    def __init__(self) -> None:
        self.seen: list[float] | None = None  # becomes a list at the first call

    def reset(self) -> None:
        self.seen = None

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        if self.seen is None:
            self.seen = []
        self.seen.append(float(observation[0]))
        return np.array([len(self.seen), sum(self.seen), 0.0, 0.0])


@dataclasses.dataclass(frozen=True)
class Holder:
    items: list  # a frozen dataclass can still hold something mutable


def test_a_controller_with_immutable_attributes_is_snapshot_without_a_deep_copy():
    controller = ReactivePush()
    known: dict = {}
    state = save_state(controller, known)
    assert state['config'] is controller.config  # shared: it cannot change
    assert save_state(controller)['config'] is not controller.config  # no cache: deep copy
    controller.config = dataclasses.replace(controller.config, push_gain=3.0)
    load_state(controller, state)
    assert controller.config is state['config']


def test_mutable_attributes_are_still_deep_copied():
    controller = Listing()
    controller.seen = [1.0]
    state = save_state(controller, {})
    controller.seen.append(2.0)
    load_state(controller, state)
    assert controller.seen == [1.0]
    holder = Listing()
    holder.seen = Holder([1.0])  # type: ignore[assignment]
    assert save_state(holder, {})['seen'] is not holder.seen


def test_state_that_becomes_mutable_is_restored_exactly():
    """The controller's first state is immutable (None), later ones a list mutated in place:
    a step computed again starts from the state after its predecessor."""
    sequencer = SequencedController(Listing())
    assert [ask(sequencer, 0, k, v)[0][0] for k, v in enumerate((1.0, 2.0, 4.0))] == [1, 2, 3]
    # Step 1 again with another value: from the state after step 0 ([1.0]).
    action, kind = ask(sequencer, 0, 1, 8.0)
    assert (action.tolist(), kind) == ([2, 9.0, 0, 0], 'again')
    action, kind = ask(sequencer, 0, 2, 5.0)  # from the newest step 1: [1.0, 8.0]
    assert (action.tolist(), kind) == ([3, 14.0, 0, 0], 'again')
    assert ask(sequencer, 0, 0, 5.0)[0].tolist() == [1, 5.0, 0, 0]  # reset, then 5.0


def test_history_keeps_the_latest_answers_and_a_replaced_one_keeps_its_place():
    sequencer = SequencedController(Listing(), history=2)
    ask(sequencer, 0, 0, 1.0)
    ask(sequencer, 0, 1, 1.0)
    ask(sequencer, 0, 0, 3.0)  # replaces (0, 0) in place: still the oldest
    ask(sequencer, 0, 2, 1.0)  # drops (0, 0)
    assert ask(sequencer, 0, 1, 1.0)[1] == 'repeat'
    assert ask(sequencer, 0, 0, 3.0)[1] == 'start'  # forgotten: computed again
    assert ask(sequencer, 0, 2, 1.0)[1] == 'repeat'
