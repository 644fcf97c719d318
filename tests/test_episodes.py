"""One episode representation with the terminal observation o_T, on every learning path.

An episode of T steps is o_0 .. o_T (T + 1 observations and achieved goals) and T desired
goals, base actions and commands, whether it was assembled live (EpisodeAssembler) or read
from a bag (load_run -> records_from_run); it gives T transitions. Bags recorded before the
sim bridge published o_T still evaluate; learners skip their episodes as 'no_terminal'.
"""

from __future__ import annotations

import numpy as np
import pytest
from bag_builders import NS, OBS_FIELDS, observation, write_bag

from rpl_bags.bag_eval import evaluate_run
from rpl_bags.recorded import load_run
from rpl_bags.topics import encode_vector, recorded_topics, resolve_topic
from rpl_bags.writer import BagWriter
from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector
from rpl_sim_bridge.tasks.goal_task import sparse_reward
from rpl_trainer import offline
from rpl_trainer.assembler import EpisodeAssembler
from rpl_trainer.bag_ingest import ingest_bags, records_from_run
from rpl_trainer.config import make_config
from rpl_trainer.episodes import (
    FALLBACK,
    INCOMPLETE,
    NO_TERMINAL,
    NO_TERMINAL_WHY,
    NON_FINITE,
    episode_batch,
    episode_record,
)
from rpl_trainer.networks import Dims

LAYOUT = contract.split_observation_fields(OBS_FIELDS)  # obs 2, achieved 3, desired 3
STEPS = 4
ACTIONS = contract.ACTION_FIELDS


def vec(ep: int, k: int, values, tag: str = 'toy_task') -> StampedVector:
    return StampedVector(ep, k, np.asarray(values, dtype=np.float64), 1000 * (ep * 10 + k), tag)


def live_episode(ep: int, terminal: bool = True) -> list[tuple[str, StampedVector]]:
    """One lockstep episode's messages in publication order, o_T before the result."""
    out = []
    for k in range(STEPS):
        out.append((contract.OBSERVATION, vec(ep, k, observation(ep, k))))
        out.append((contract.BASE_ACTION, vec(ep, k, np.full(4, 0.1 * k), 'ctl')))
        out.append((contract.COMMAND, vec(ep, k, np.full(4, 0.1 * k + 0.2), 'residual')))
    if terminal:
        tag = contract.terminal_tag('toy_task')
        out.append((contract.OBSERVATION, vec(ep, STEPS, observation(ep, STEPS), tag)))
    result = contract.EpisodeResult(ep, True, 0.01, -1.0, STEPS, 0, 0)
    out.append((contract.EPISODE, vec(ep, STEPS, result.as_vector())))
    return out


def feed(assembler: EpisodeAssembler, messages) -> list:
    return [r for topic, v in messages for r in assembler.add(topic, v)]


def check_shapes(record, ep: int) -> None:
    """T + 1 observations and achieved goals (o_T last), T of everything else."""
    assert record.steps == STEPS
    assert record.observation.shape == (STEPS + 1, 2)
    assert record.achieved_goal.shape == (STEPS + 1, 3)
    assert record.desired_goal.shape == (STEPS, 3)
    assert record.base_action.shape == record.command.shape == (STEPS, 4)
    terminal = observation(ep, STEPS)
    np.testing.assert_array_equal(record.observation[STEPS], terminal[LAYOUT.observation])
    np.testing.assert_array_equal(record.achieved_goal[STEPS], terminal[LAYOUT.achieved_goal])
    batch = episode_batch([record], 2.0)
    assert batch.obs.shape == (1, STEPS + 1, 2) and batch.achieved_goal.shape == (1, STEPS + 1, 3)
    assert batch.desired_goal.shape == (1, STEPS, 3)
    assert batch.action.shape == batch.executed.shape == (1, STEPS, 4)


def test_a_live_episode_holds_o_0_to_o_t_and_gives_t_transitions():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    (record,) = feed(assembler, live_episode(0))
    check_shapes(record, 0)
    assert assembler.counts.missing == 0 and assembler.counts.skipped == {}


def test_a_live_episode_without_its_terminal_observation_is_incomplete():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    assert feed(assembler, live_episode(0, terminal=False)) == []
    assert assembler.open_episodes == [0]  # o_T may still come
    # The observation topic delivers episode 1: o_T of episode 0 can no longer come.
    (record,) = feed(assembler, live_episode(1))
    assert record.episode == 1
    assert assembler.counts.skipped == {INCOMPLETE: 1} and assembler.counts.missing == 1
    assert assembler.skip_lines == [
        f'episode 0 skipped as incomplete: observation lacks 1 steps ({STEPS}, o_T among them)'
    ]


def test_a_record_without_o_t_is_refused_with_the_rows_it_needs():
    payloads = np.stack([observation(0, k) for k in range(STEPS)])  # o_0 .. o_{T-1} only
    result = contract.EpisodeResult(0, True, 0.0, 0.0, STEPS, 0, 0)
    with pytest.raises(ValueError, match=r'needs T \+ 1 = 5 observation'):
        episode_record(0, LAYOUT, payloads, np.zeros((STEPS, 4)), np.zeros((STEPS, 4)), result)


def test_a_bag_with_terminal_observations_gives_the_same_records_as_live(tmp_path):
    path = tmp_path / 'run'
    write_bag(path, episodes=2, steps=STEPS, terminal=True)
    run = load_run(path)
    assert run.problems == () and run.task == 'toy_task'
    assert run.counts['observation'] == 2 * (STEPS + 1)
    for ep in run.episodes:
        assert ep.observation.values.shape == (STEPS, len(OBS_FIELDS))  # the answered steps
        np.testing.assert_array_equal(ep.terminal, observation(ep.episode, STEPS))
    records, skipped = records_from_run(run, STEPS)
    assert skipped == {FALLBACK: 1}  # episode 1's result reports a fallback (write_bag)
    (record,) = records
    check_shapes(record, 0)
    np.testing.assert_array_equal(record.observation[1], observation(0, 1)[LAYOUT.observation])


def small_learner() -> offline.OfflineLearner:
    config = make_config(dict(hidden_size=8, hidden_layers=1, batch_size=4, buffer_size=100))
    dims = Dims(obs_dim=2, goal_dim=3, action_dim=4)
    return offline.OfflineLearner(
        config, dims, STEPS, lambda a, d, info=None: sparse_reward(a, d, 0.05)
    )


def test_an_old_bag_evaluates_and_learning_skips_it_with_one_line_saying_why(tmp_path):
    path = tmp_path / 'old'
    written = write_bag(path, episodes=2, steps=STEPS)  # recorded before o_T was published
    run = load_run(path)
    assert run.problems == ()  # not a damaged bag
    assert all(ep.terminal is None for ep in run.episodes)
    summary = evaluate_run(run).summary()  # `rpl bag eval`: results from the episode topic
    assert summary['episodes'] == 2
    assert summary['success_rate'] == np.mean([r.success for r in written['results']])
    records, skipped = records_from_run(run, STEPS)
    assert records == [] and skipped == {FALLBACK: 1, NO_TERMINAL: 1}
    report = ingest_bags([path], small_learner())
    assert report.episodes == 0 and report.skipped == {FALLBACK: 1, NO_TERMINAL: 1}
    assert report.problems == (
        f'{path}: 1 of 2 episodes have no terminal observation: {NO_TERMINAL_WHY}',
    )
    assert 'recorded before' in NO_TERMINAL_WHY


def test_a_terminal_observation_at_another_step_is_reported_and_not_used(tmp_path):
    def odd_terminal(put, ep, k, t):
        if k == 1:  # a terminal tag on a step that is not the end
            tag = contract.terminal_tag('toy_task')
            put('observation', ep, 2 * STEPS, observation(ep, 9), t + 1, tag, OBS_FIELDS)

    path = tmp_path / 'odd'
    write_bag(path, episodes=1, steps=STEPS, extra=odd_terminal)
    run = load_run(path)
    assert run.episodes[0].terminal is None and run.episodes[0].steps == STEPS
    assert run.problems == (
        f'{NS}/observation: terminal observations at another step than the episode end '
        f'skipped: episode 0 step {2 * STEPS} of {STEPS}',
    )


def test_a_repeated_terminal_observation_is_a_resend(tmp_path):
    path = tmp_path / 'resent'
    writer = BagWriter(path, recorded_topics(NS, ('observation', 'episode')), 'mcap')
    tag = contract.terminal_tag('toy_task')
    stamp = 1_000
    messages = [(k, 'toy_task') for k in range(STEPS)] + [(STEPS, tag), (STEPS, tag)]
    for k, t in messages:
        data = encode_vector(StampedVector(0, k, observation(0, k), stamp, t), OBS_FIELDS)
        writer.write(resolve_topic(NS, 'observation'), stamp, data)
        stamp += 1_000
    result = contract.EpisodeResult(0, True, 0.0, 0.0, STEPS, 0, 0)
    data = encode_vector(
        StampedVector(0, STEPS, result.as_vector(), stamp, 'toy_task'), contract.EPISODE_FIELDS
    )
    writer.write(resolve_topic(NS, 'episode'), stamp, data)
    writer.close()
    run = load_run(path)
    assert run.resent['observation'] == 1
    np.testing.assert_array_equal(run.episodes[0].terminal, observation(0, STEPS))


def test_a_non_finite_recorded_value_is_said_and_its_episode_not_learned(tmp_path):
    """A NaN or inf in a bag was stored and trained on; the run failed only at its export,
    after all its updates, with a traceback."""

    def nan_observation(put, ep, k, t):
        if (ep, k) == (0, 2):
            values = observation(ep, k)
            values[0] = np.nan
            put('observation', ep, k, values, t, 'toy_task', OBS_FIELDS)

    dropped = []

    def drop(rel, ep, k):  # the recorded observation, replaced by the NaN one put after it
        first = (rel, ep, k) == ('observation', 0, 2) and not any(dropped)
        dropped.append(first)
        return first

    path = tmp_path / 'nan'
    write_bag(path, episodes=3, steps=STEPS, terminal=True, extra=nan_observation, drop=drop)
    run = load_run(path)
    assert run.problems == (
        f'{NS}/observation: messages with non-finite values (NaN or inf): episode 0 step 2',
    )
    records, skipped = records_from_run(run, STEPS)
    assert records == [] and skipped == {FALLBACK: 2, NON_FINITE: 1}  # 1 and 2 fell back


def test_an_episode_value_beyond_float32_is_not_finite():
    """The replay buffer holds float32: 1e40 (finite as the message's float64) would be
    stored as inf and poison learning, as a NaN would."""
    import numpy as np

    from rpl_trainer.episodes import all_finite

    assert all_finite(np.zeros((3, 4)), np.full(2, 3.0e38))
    assert not all_finite(np.zeros((3, 4)), np.array([1.0, 1e40]))
    assert not all_finite(np.array([-np.inf])) and not all_finite(np.array([np.nan]))
