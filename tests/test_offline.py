"""Learning from the stack's messages: episode assembly, stored residuals, bag ingest, export.

Message sequences and bags are hand-made with known values, so every stored number is
known. The trainer node on real topics is in test_trainer_node.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from bag_builders import NS, OBS_FIELDS, write_bag

from rpl_bags.topics import BagError
from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_residual_node.policy import ResidualPolicy
from rpl_sim_bridge.tasks.goal_task import sparse_reward
from rpl_trainer import offline
from rpl_trainer.assembler import EpisodeAssembler
from rpl_trainer.bag_ingest import ingest_bags
from rpl_trainer.checkpoint import (
    TRAIN_RUN,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    save_learner_checkpoint,
)
from rpl_trainer.config import make_config
from rpl_trainer.episodes import (
    CONFLICTING,
    FALLBACK,
    INCOMPLETE,
    NON_FINITE,
    WRONG_LENGTH,
    EpisodeRecord,
    episode_batch,
    stored_residual,
)
from rpl_trainer.networks import Dims
from rpl_trainer.residual import compose_action
from rpl_trainer.trainer_node_config import TrainerNodeConfig, parse_overrides

LAYOUT = contract.split_observation_fields(OBS_FIELDS)  # obs 2, achieved 3, desired 3
DIMS = Dims(obs_dim=2, goal_dim=3, action_dim=4)
STEPS = 5
ACTIONS = contract.ACTION_FIELDS  # the Fetch tasks' declared action (4 values)
SCALE = 2.0


def obs_values(ep: int, k: int) -> np.ndarray:
    return np.arange(len(OBS_FIELDS), dtype=np.float64) * 0.01 + ep + 0.1 * k


def base_values(ep: int, k: int) -> np.ndarray:
    return np.array([0.1 * k, -0.2, 0.05 * ep, 0.9])


def command_values(ep: int, k: int) -> np.ndarray:
    return np.clip(base_values(ep, k) + np.array([0.3, -1.5, 0.0, 0.5]), -1.0, 1.0)


def vec(ep: int, k: int, values: np.ndarray, tag: str = 't') -> StampedVector:
    return StampedVector(ep, k, np.asarray(values, dtype=np.float64), 1000 * k, tag)


def episode_messages(ep: int, steps: int = STEPS, fallback: int = 0, skip=()) -> list:
    """(topic, vector) of one lockstep episode in publication order; ``skip`` drops some."""
    out = []
    for k in range(steps):
        for topic, values in (
            (contract.OBSERVATION, obs_values(ep, k)),
            (contract.BASE_ACTION, base_values(ep, k)),
            (contract.COMMAND, command_values(ep, k)),
        ):
            if (topic, k) not in skip:
                out.append((topic, vec(ep, k, values)))
    if (contract.OBSERVATION, steps) not in skip:  # o_T, the terminal observation
        out.append((contract.OBSERVATION, vec(ep, steps, obs_values(ep, steps), 't/terminal')))
    result = contract.EpisodeResult(ep, False, 0.2, -float(steps), steps, fallback, 0)
    out.append((contract.EPISODE, vec(ep, steps, result.as_vector())))
    return out


def feed(assembler: EpisodeAssembler, messages, later_ns: int = 0) -> list[EpisodeRecord]:
    """Add ``messages``, each sent at its stamp plus ``later_ns`` (a later sim run's)."""
    return [r for topic, v in messages for r in assembler.add(topic, v, v.stamp_ns + later_ns)]


def test_a_complete_episode_is_emitted_with_named_parts():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    (record,) = feed(assembler, episode_messages(0))
    assert record.episode == 0 and record.steps == STEPS
    assert record.observation.shape == (STEPS + 1, 2) and record.command.shape == (STEPS, 4)
    np.testing.assert_array_equal(record.observation[STEPS], obs_values(0, STEPS)[:2])
    np.testing.assert_array_equal(record.observation[3], obs_values(0, 3)[LAYOUT.observation])
    np.testing.assert_array_equal(record.achieved_goal[2], obs_values(0, 2)[2:5])
    np.testing.assert_array_equal(record.desired_goal[4], obs_values(0, 4)[5:8])
    np.testing.assert_array_equal(record.command[1], command_values(0, 1))
    assert record.result.final_distance == pytest.approx(0.2)
    assert assembler.counts.complete == 1 and not assembler.counts.skipped
    assert assembler.open_episodes == []


def test_a_live_episode_with_a_non_finite_value_is_not_learned_from():
    """A NaN a live stack publishes (a diverging sim, a robot controller's bad output) was
    stored and trained on: the networks went NaN."""
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    messages = episode_messages(0) + episode_messages(1)
    topic, bad = messages[4]  # episode 0's base action of step 1
    assert (topic, bad.step) == (contract.BASE_ACTION, 1)
    messages[4] = (topic, bad._replace(values=np.full_like(bad.values, np.inf)))
    assert [r.episode for r in feed(assembler, messages)] == [1]
    assert assembler.counts.skipped == {NON_FINITE: 1}


def test_the_handshake_resends_are_kept_once_and_not_drops():
    messages = episode_messages(0)
    # The sim re-sends observation (0, 0) twice; the controller and the residual node answer
    # each with the same values again.
    resend = [m for m in messages if m[1].step == 0 and m[0] != contract.EPISODE] * 2
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    (record,) = feed(assembler, messages[:3] + resend + messages[3:])
    assert assembler.counts.resent == 6
    assert assembler.counts.skipped == {}
    np.testing.assert_array_equal(record.base_action[0], base_values(0, 0))


def test_a_dropped_step_skips_that_episode_once_its_topic_has_moved_on():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    messages = episode_messages(0, skip={(contract.BASE_ACTION, 2)})
    done = feed(assembler, messages)
    assert done == [] and assembler.open_episodes == [0]  # its message may still come
    # Each topic arrives in order: once base_action delivers episode 1, step 2 of episode 0
    # can no longer come, so episode 0 is skipped, whatever the other topics do.
    done += feed(assembler, [(t, v) for t, v in episode_messages(1) if t == contract.BASE_ACTION])
    assert done == [] and assembler.open_episodes == [1]
    assert assembler.counts.skipped == {INCOMPLETE: 1}
    assert assembler.counts.missing == 1
    lines = ['episode 0 skipped as incomplete: base_action lacks 1 steps (2)']
    assert assembler.skip_lines == lines
    done += feed(assembler, [(t, v) for t, v in episode_messages(1) if t != contract.BASE_ACTION])
    assert [r.episode for r in done] == [1] and assembler.counts.complete == 1
    assert feed(assembler, [(contract.BASE_ACTION, vec(0, 2, base_values(0, 2)))]) == []
    assert assembler.counts.late == 1


def test_topics_arriving_whole_episodes_apart_still_complete_every_episode():
    # A publisher matched late (DDS discovery) delivers its transient-local history in a
    # burst, episodes after the other topics: nothing is lost and nothing skipped.
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    messages = [m for ep in range(6) for m in episode_messages(ep)]
    late = [m for m in messages if m[0] == contract.COMMAND]
    done = feed(assembler, [m for m in messages if m[0] != contract.COMMAND] + late)
    assert [r.episode for r in done] == list(range(6))
    assert assembler.counts.skipped == {} and assembler.counts.missing == 0


def test_a_silent_topic_gives_up_on_episodes_after_lag_episodes():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS, lag=3)
    silent = [m for ep in range(4) for m in episode_messages(ep) if m[0] != contract.COMMAND]
    assert feed(assembler, silent[:-1]) == []  # episode 3 without its result
    assert assembler.open_episodes == [1, 2, 3]
    assert assembler.counts.skipped == {INCOMPLETE: 1}
    assert assembler.counts.missing == STEPS  # episode 0's commands
    assert assembler.skip_lines == [
        f'episode 0 skipped as incomplete: command lacks {STEPS} steps (0-{STEPS - 1})'
    ]


def test_a_result_before_the_last_command_still_completes():
    messages = episode_messages(0)
    last_command, result = messages[-3], messages[-1]
    assert last_command[0] == contract.COMMAND and result[0] == contract.EPISODE
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    done = feed(assembler, [*messages[:-3], messages[-2], result, last_command])
    assert len(done) == 1


def test_a_repeat_with_other_values_and_a_fallback_episode_are_skipped():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    changed = (contract.COMMAND, vec(0, 1, command_values(0, 1) + 0.1))
    assert feed(assembler, [*episode_messages(0)[:6], changed, *episode_messages(0)[6:]]) == []
    assert feed(assembler, episode_messages(1, fallback=1)) == []
    assert feed(assembler, episode_messages(2, steps=STEPS + 1)) == []
    assert assembler.counts.skipped == {
        CONFLICTING: 1,
        FALLBACK: 1,
        WRONG_LENGTH: 1,
    }
    assert assembler.counts.complete == 0


def test_latched_old_results_are_not_skips_and_a_restarted_sim_is_followed():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    old = [m for ep in (0, 1, 2) for m in episode_messages(ep)[-1:]]  # results only
    live = episode_messages(3) + episode_messages(4)
    assert [r.episode for r in feed(assembler, old + live)] == [3, 4]
    assert assembler.counts.results_only == 3 and assembler.counts.skipped == {}
    # A new run (sent later) with ids from 0 again is followed.
    assert [r.episode for r in feed(assembler, episode_messages(3), 10**9)] == [3]
    assert assembler.counts.restarts == 1


def test_a_long_run_keeps_a_bounded_record_of_closed_episodes(monkeypatch):
    """The closed episode ids grew by one per episode for as long as a live trainer ran;
    now the newest are kept one by one and older ones count as closed by a floor: a late
    message of a long-closed episode is still late, and a restarted sim still followed."""
    from rpl_trainer import assembler as assembler_module

    monkeypatch.setattr(assembler_module, 'KEPT_CLOSED', 4)
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    done = [r.episode for ep in range(20) for r in feed(assembler, episode_messages(ep))]
    assert done == list(range(20))
    assert len(assembler._closed) <= 8  # 2 * KEPT_CLOSED at most
    late = assembler.counts.late
    assert feed(assembler, [(contract.COMMAND, vec(1, 2, command_values(1, 2)))]) == []
    assert assembler.counts.late == late + 1  # episode 1: long closed, below the floor
    assert [r.episode for r in feed(assembler, episode_messages(0), 10**9)] == [0]  # a new run
    assert assembler.counts.restarts == 1


def test_a_late_step_0_observation_of_a_closed_episode_is_late_not_a_restart():
    """A trainer that fell behind (stopped, CPU-starved) took the step-0 observation of an
    episode it had already skipped for a new sim run: every closed episode reopened, and
    their late messages were skipped a second time (18 episodes counted of 14 sent)."""
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    for ep in range(3):
        feed(assembler, episode_messages(ep), later_ns=ep * 10**6)
    late = assembler.counts.late
    first = episode_messages(1)[0]  # episode 1's step-0 observation, sent long ago
    assert first[0] == contract.OBSERVATION and first[1].step == 0
    assert feed(assembler, [first], later_ns=10**6) == []
    assert (assembler.counts.restarts, assembler.counts.late) == (0, late + 1)


def test_a_whole_episode_lost_after_the_start_is_a_skip_not_an_old_result():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS, started_ns=500)
    old_result = episode_messages(0)[-1]
    lost_result = episode_messages(1)[-1]  # its step messages never arrived
    assembler.add(*old_result, sent_ns=100)  # latched, from before the start
    assembler.add(*lost_result, sent_ns=900)
    done = [r for i, m in enumerate(episode_messages(2)) for r in assembler.add(*m, 1000 + i)]
    assert [r.episode for r in done] == [2]
    assert assembler.counts.results_only == 1
    assert assembler.counts.skipped == {INCOMPLETE: 1}
    assert assembler.counts.missing == 3 * STEPS + 1  # o_0 .. o_T, T base actions, commands


def test_episodes_of_which_nothing_arrived_are_counted_once_every_topic_passed_them():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    messages = {ep: episode_messages(ep) for ep in range(5)}

    def split(ep):
        commands = [m for m in messages[ep] if m[0] == contract.COMMAND]
        return [m for m in messages[ep] if m[0] != contract.COMMAND], commands

    # Episodes 2 and 3 vanished; the command topic runs behind (a publisher matched late).
    (rest1, commands1), (rest4, commands4) = split(1), split(4)
    assert [r.episode for r in feed(assembler, messages[0] + rest1 + rest4)] == [0]
    assert [r.episode for r in feed(assembler, commands1)] == [1]
    assert assembler.counts.skipped == {}  # the command topic has not passed 2 and 3 yet
    assert [r.episode for r in feed(assembler, commands4)] == [4]
    assert assembler.counts.skipped == {INCOMPLETE: 2}
    assert assembler.counts.missing == 2 * (3 * STEPS + 2)  # o_T and the result too
    lost = 'episode 3 skipped as incomplete: none of its messages arrived'
    assert assembler.skip_lines[-1] == lost


def test_a_resumed_assembler_ignores_what_its_checkpoint_holds():
    first = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    sent = iter(range(1, 10**6))
    stream = [(m, next(sent)) for ep in (0, 1) for m in episode_messages(ep)]
    done = [r for m, t in stream[: len(stream) // 2 + 5] for r in first.add(*m, t)]
    assert [r.episode for r in done] == [0] and first.open_episodes == [1]
    # Saved now, resumed later: the publishers' history delivers both episodes again.
    resumed = EpisodeAssembler(LAYOUT, STEPS, ACTIONS, resume_after_ns=first.seen_until_ns)
    again = [r for m, t in stream for r in resumed.add(*m, t)]
    assert [r.episode for r in again] == [1]  # episode 0 is in the checkpoint: not twice
    assert resumed.counts.before_resume == len(stream) // 2
    assert resumed.counts.skipped == {}


def test_wrong_sizes_and_topics_are_refused_with_the_expected_size():
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    with pytest.raises(ValueError, match='has 3 values, expected 4'):
        assembler.add(contract.COMMAND, vec(0, 0, np.zeros(3)))
    with pytest.raises(ValueError, match="got 'residual'"):
        assembler.add(contract.RESIDUAL, vec(0, 0, np.zeros(4)))
    no_achieved = contract.split_observation_fields(('a', 'desired_goal.x'))
    with pytest.raises(ValueError, match='achieved_goal'):
        EpisodeAssembler(no_achieved, STEPS, ACTIONS)
    with pytest.raises(ValueError, match='action_fields is empty'):
        EpisodeAssembler(LAYOUT, STEPS, ())


def test_the_stored_residual_is_the_rule_and_reproduces_the_command():
    base = np.array([[0.1, -0.2, 0.9, 0.0], [0.5, 0.5, -0.5, 1.0]])
    command = np.array([[0.6, -1.0, 1.0, 0.25], [1.0, 0.5, -0.5, 1.0]])
    u = stored_residual(command, base, SCALE)
    np.testing.assert_allclose(u, np.clip((command - base) / SCALE, -1, 1), atol=1e-7)
    np.testing.assert_allclose(compose_action(base, u, SCALE), command, atol=1e-6)
    with pytest.raises(ValueError, match='got 0'):
        stored_residual(command, base, 0.0)


def test_episode_batch_has_t_transitions_per_episode():
    records = feed(EpisodeAssembler(LAYOUT, STEPS, ACTIONS), episode_messages(0))
    batch = episode_batch(records, SCALE)
    assert batch.obs.shape == (1, STEPS + 1, 2)
    assert batch.achieved_goal.shape == (1, STEPS + 1, 3)
    assert batch.action.shape == (1, STEPS, 4) and batch.desired_goal.shape == (1, STEPS, 3)
    expected = np.clip((command_values(0, 3) - base_values(0, 3)) / SCALE, -1, 1)
    np.testing.assert_allclose(batch.action[0, 3], expected, atol=1e-6)


def test_a_task_with_other_action_fields_is_assembled_and_stored_at_its_size():
    # The toy task declares 2 actions (a0, a1): the assembler takes that size from the spec,
    # refuses a Fetch-sized command and stores (N, T, 2) actions.
    from toy_goal_env import SPEC as TOY

    assert TOY.action_fields == ('a0', 'a1')
    assembler = EpisodeAssembler(LAYOUT, STEPS, TOY.action_fields)
    with pytest.raises(ValueError, match='has 4 values, expected 2'):
        assembler.add(contract.COMMAND, vec(0, 0, np.zeros(4)))
    two = lambda values: values[[0, 3]]  # noqa: E731
    actions = (contract.BASE_ACTION, contract.COMMAND)
    messages = [
        (t, v._replace(values=two(v.values)) if t in actions else v)
        for t, v in episode_messages(0)
    ]
    (record,) = feed(assembler, messages)
    assert record.base_action.shape == record.command.shape == (STEPS, 2)
    batch = episode_batch([record], SCALE)
    assert batch.action.shape == batch.executed.shape == (1, STEPS, 2)
    expected = np.clip((two(command_values(0, 1)) - two(base_values(0, 1))) / SCALE, -1, 1)
    np.testing.assert_allclose(batch.action[0, 1], expected, atol=1e-6)


def small_learner(base_fn=None, **overrides) -> offline.OfflineLearner:
    values = dict(hidden_size=16, hidden_layers=2, batch_size=8, buffer_size=1000)
    config = make_config({**values, **overrides})

    def reward(achieved, desired, info=None):
        return sparse_reward(achieved, desired, 0.05)

    return offline.OfflineLearner(config, DIMS, STEPS, reward, base_fn)


def test_every_stack_a_bag_recorded_is_learned_from(tmp_path):
    """A bag of two stacks (a watched one and an explorer) was refused with a pointer to a
    --namespace option the trainer does not have."""
    path = tmp_path / 'two'
    write_bag(path, episodes=3, steps=STEPS, terminal=True, namespaces=('/rpl', '/rpl/explore_0'))
    report = ingest_bags([path], small_learner())
    assert report.episodes == 2 and report.skipped == {FALLBACK: 4}  # episode 0 of each
    assert ingest_bags([path], small_learner(), namespace='/rpl').episodes == 1


def test_ingesting_a_bag_fills_the_buffer_and_burn_in_trains_only_the_critic(tmp_path):
    path = tmp_path / 'run'
    written = write_bag(path, episodes=3, steps=STEPS, terminal=True)  # commands = base + 0.1
    # Its results say the sim applied fallbacks in episodes 1 and 2: not learned from.
    assert [r.fallback_base for r in written['results']] == [0, 1, 2]
    learner = small_learner()
    actor_before = [p.detach().clone() for p in learner.agent.actor.parameters()]
    critic_before = [p.detach().clone() for p in learner.agent.critic.parameters()]
    report = ingest_bags([path], learner, updates_per_step=1.0, namespace=NS)
    assert report.episodes == 1 and report.transitions == STEPS
    assert learner.buffer.transitions == STEPS and report.updates == STEPS
    assert report.skipped == {FALLBACK: 2} and report.problems == ()
    stored = learner.buffer.state_dict()['episodes']['action']  # (1, T, 4)
    assert stored.shape == (1, STEPS, 4)
    np.testing.assert_allclose(stored, 0.1 / 2.0, atol=1e-6)  # residual 0.1 at scale 2
    assert learner.agent.actor_frozen
    actor_after = list(learner.agent.actor.parameters())
    critic_after = list(learner.agent.critic.parameters())
    assert all(torch.equal(a, b) for a, b in zip(actor_before, actor_after, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, critic_after, strict=True))


def test_goal_consistent_her_is_applied_to_recorded_episodes_not_ignored():
    with pytest.raises(ValueError, match='needs the base controller'):
        small_learner(goal_consistent_her=True)

    def zero_base(obs, goal):  # under relabelled goals the base would have done nothing
        return np.zeros((obs.shape[0], 4))

    learner = small_learner(zero_base, goal_consistent_her=True)
    assert learner.sampler.goal_consistent
    learner.add(feed(EpisodeAssembler(LAYOUT, STEPS, ACTIONS), episode_messages(0)))
    batch = learner.buffer.sample(learner.sampler, 256, np.random.default_rng(0))
    # Relabelled samples store command / scale (the residual that explains the command
    # over a zero base); the others keep (command - recorded base) / scale.
    commands = np.array([command_values(0, t) for t in range(STEPS)])
    bases = np.array([base_values(0, t) for t in range(STEPS)])
    stored = np.clip((commands - bases) / SCALE, -1, 1)
    explained = np.clip(commands / SCALE, -1, 1)
    is_explained = [np.isclose(explained, a, atol=1e-6).all(axis=1).any() for a in batch.action]
    is_stored = [np.isclose(stored, a, atol=1e-6).all(axis=1).any() for a in batch.action]
    assert all(e or s for e, s in zip(is_explained, is_stored, strict=True))
    assert sum(is_explained) > 128  # future_p 0.8 of 256


def test_the_executed_action_critic_learns_from_recorded_episodes():
    # The live trainer with noisy_hook's shipped critic: the sampler hands the critic the
    # recorded commands and the base recomputed at o_t and o_{t+1}; its updates run.
    with pytest.raises(ValueError, match='needs the base controller'):
        small_learner(critic_action='executed')

    def half_base(obs, goal):
        return np.full((obs.shape[0], 4), 0.5)

    learner = small_learner(half_base, critic_action='executed')
    learner.add(feed(EpisodeAssembler(LAYOUT, STEPS, ACTIONS), episode_messages(0)))
    batch = learner.buffer.sample(learner.sampler, 64, np.random.default_rng(0))
    commands = np.array([command_values(0, t) for t in range(STEPS)])
    assert all(np.isclose(commands, a, atol=1e-6).all(axis=1).any() for a in batch.executed)
    np.testing.assert_array_equal(batch.base, 0.5)
    np.testing.assert_array_equal(batch.next_base, 0.5)
    stats = learner.update(3)
    assert len(stats) == 3 and all(np.isfinite(s.critic_loss) for s in stats)


def test_bag_episodes_with_missing_messages_are_skipped(tmp_path):
    path = tmp_path / 'no_command'
    write_bag(path, episodes=2, steps=STEPS, topics=('observation', 'base_action', 'episode'))
    learner = small_learner()
    report = ingest_bags([path], learner)
    assert report.episodes == 0 and report.skipped == {INCOMPLETE: 2}
    assert learner.buffer.size == 0
    with pytest.raises(BagError, match='does not exist'):
        ingest_bags([tmp_path / 'nowhere'], learner)


def test_a_bag_of_another_task_is_refused_and_nothing_is_stored(tmp_path):
    """The bag says its task (the observations' frame_id); a trainer of another task took
    its episodes as its own."""
    path = tmp_path / 'toy'
    write_bag(path, episodes=2, steps=STEPS, terminal=True)  # task 'toy_task'
    learner = small_learner()
    with pytest.raises(
        BagError,
        match=f"bag {path} was recorded on task 'toy_task'; this "
        "learner learns 'slippery_push': not read",
    ):
        ingest_bags([path], learner, task='slippery_push')
    assert learner.buffer.size == 0
    assert ingest_bags([path], learner, task='toy_task').episodes == 1  # its own task: read


def test_the_export_replaces_the_model_atomically_and_the_residual_node_loads_it(tmp_path):
    learner = small_learner(burn_in_beta=0.0)  # actor learns at once
    learner.add(feed(EpisodeAssembler(LAYOUT, STEPS, ACTIONS), episode_messages(0)))
    model = tmp_path / 'models' / 'actor.onnx'
    learner.export(model)
    first = model.read_bytes()
    learner.update(20)
    inode = model.stat().st_ino
    learner.export(model, {'note': 'second'})
    assert model.read_bytes() != first and model.stat().st_ino != inode  # a new file moved in
    assert os.listdir(model.parent) == ['actor.onnx']  # no temporary file left behind
    actor = OnnxActor.load(model, obs_dim=2, goal_dim=3)
    obs, goal = obs_values(0, 1)[:2], obs_values(0, 1)[5:]
    expected = SCALE * learner.agent.act(obs[None], goal[None])[0]
    np.testing.assert_allclose(actor(obs, goal), expected, atol=1e-5)
    assert ResidualPolicy.from_file(str(model)) is not None


def test_trainer_node_config_lists_and_the_update_debt():
    from rpl_interfaces.params import ParameterError, build_config

    config = build_config(TrainerNodeConfig, {'namespaces': 'rpl, /arm2/ ,', 'bags': 'a/b, c'})
    assert config.namespace_list() == ['/rpl', '/arm2']
    assert config.bag_list() == ['a/b', 'c']
    with pytest.raises(ParameterError, match='export_every_updates'):
        build_config(TrainerNodeConfig, {'export_every_updates': 0})
    # The stacks' controller parameters reach the learner (its base actions) and the model's
    # metadata; they are the node's own parameter, not an override, and beat a warm start's.
    node = build_config(TrainerNodeConfig, {'controller_params': 'push_gain=7'})
    train = node.train_config({'controller_params': 'push_gain=3'})
    assert train.controller_params == 'push_gain=7'
    assert train.deployed_controller_params == 'push_gain=7.0'
    with pytest.raises(ParameterError, match="'controller_params' is a trainer node parameter"):
        overrides = {'train_overrides': 'controller_params=push_gain=2'}
        build_config(TrainerNodeConfig, overrides).train_config()
    debt = offline.UpdateDebt(0.1)
    debt.add(49)  # one episode: 4.9 updates owed
    assert debt.take(3) == 3 and debt.take(3) == 1
    debt.add(2)  # 0.9 + 0.2: the fraction carries over
    assert debt.take(8) == 1 and debt.owed == pytest.approx(0.1)


def test_train_overrides_set_config_fields_and_bad_ones_name_the_key():
    from rpl_interfaces.params import ParameterError, build_config

    node = build_config(
        TrainerNodeConfig,
        {'seed': 7, 'train_overrides': ' burn_in_window=500, noise_eps=0.1,buffer_size=1e4,'},
    )
    config = node.train_config()
    assert (config.burn_in_window, config.noise_eps, config.buffer_size) == (500, 0.1, 10000)
    assert (config.seed, config.task, config.target_update_interval) == (7, 'slippery_push', 40)
    assert parse_overrides('') == {}
    bad = {
        'nope=1': "unknown setting 'nope'",
        'batch_size=abc': "'batch_size' must be an integer, got 'abc'",
        'batch_size=0': "'batch_size' = 0 is outside",
        'noise_eps': "expected key=value, got 'noise_eps'",
        'seed=3': "'seed' is a trainer node parameter",
        'polyak=0.9,polyak=0.8': "'polyak' is given twice",
    }
    for text, message in bad.items():
        with pytest.raises(ParameterError, match=message):
            parse_overrides(text)


def learner_with_data(**overrides) -> offline.OfflineLearner:
    learner = small_learner(**overrides)
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS)
    learner.add(feed(assembler, episode_messages(0) + episode_messages(1)))
    learner.update(3)
    return learner


def test_a_saved_learner_resumes_with_identical_next_updates(tmp_path):
    path = tmp_path / 'ckpt' / 'trainer.pt'  # the folder is created
    learner = learner_with_data(burn_in_beta=0.0)  # the actor learns too
    offline.save_learner(path, learner, {'updates_owed': 1.5, 'bags': ['a']})
    expected = learner.update(4)
    resumed = small_learner(burn_in_beta=0.0)
    extra = offline.load_learner(path, resumed)
    assert extra == {'updates_owed': 1.5, 'bags': ['a']}
    assert resumed.episodes == 2 and resumed.buffer.transitions == 2 * STEPS
    assert resumed.agent.updates == 3
    assert resumed.update(4) == expected  # same samples (rng), same weights, same losses
    actors = (learner.agent.actor.parameters(), resumed.agent.actor.parameters())
    assert all(torch.equal(a, b) for a, b in zip(*actors, strict=True))
    assert os.listdir(path.parent) == ['trainer.pt']  # no temporary file left behind

    other = small_learner(burn_in_beta=0.0, batch_size=16)
    with pytest.raises(CheckpointError, match='different config .*batch_size: 8 -> 16'):
        offline.load_learner(path, other)


def test_a_corrupt_or_foreign_checkpoint_is_a_clear_error_and_left_untouched(tmp_path):
    path = tmp_path / 'trainer.pt'
    offline.save_learner(path, learner_with_data())
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # a write cut short by a crash
    with pytest.raises(CheckpointError, match=f'checkpoint {path} is damaged or cut short'):
        offline.load_learner(path, small_learner())
    assert path.read_bytes() == whole[: len(whole) // 2]
    save_checkpoint(path, {'agent': {}, 'counters': {'episodes': 1}})  # no learner in it
    with pytest.raises(CheckpointError, match='holds no learner of this version'):
        offline.load_learner(path, small_learner())
    save_learner_checkpoint(path, TRAIN_RUN, {})  # to start from with init_from, not resume
    with pytest.raises(CheckpointError, match='is an `rpl train` checkpoint, not a trainer'):
        offline.load_learner(path, small_learner())


def test_results_running_ahead_of_the_step_messages_close_nothing():
    # A busy trainer takes one message per topic in turn: after a pause the results of
    # later episodes arrive before the backlog of step messages.
    messages = [m for ep in range(4) for m in episode_messages(ep)]
    results = [m for m in messages if m[0] == contract.EPISODE]
    steps = [m for m in messages if m[0] != contract.EPISODE]
    assembler = EpisodeAssembler(LAYOUT, STEPS, ACTIONS, lag=2)
    assert [r.episode for r in feed(assembler, results + steps)] == [0, 1, 2, 3]
    assert assembler.counts.skipped == {} and assembler.counts.late == 0


def test_checkpoint_errors_say_what_is_wrong_and_never_advise_unsafe_loading(tmp_path):
    """torch's and numpy's messages for a foreign file advise loading it with unpickling on
    (weights_only=False, allow_pickle): the error must say what the file is, not that."""
    import pickle

    import torch

    (tmp_path / 'empty.pt').write_bytes(b'')
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint' * 8)
    with (tmp_path / 'pickle.pt').open('wb') as f:
        pickle.dump({'a': 1}, f)
    torch.save({'f': len}, tmp_path / 'objects.pt')  # a Python object inside a torch file
    np.save(tmp_path / 'array.npy', np.array([1.0]))
    (tmp_path / 'metrics.csv').write_text('env_steps,episodes\n1,2\n')  # a wrong file given
    cases = {
        'metrics.csv': 'is not a torch checkpoint file',
        'empty.pt': 'is empty',
        'junk.pt': 'is not a torch checkpoint file',
        'pickle.pt': 'is not a torch checkpoint file',
        'array.npy': 'is not a torch checkpoint file',
        'objects.pt': 'is not an rpl_trainer checkpoint (it holds Python objects',
        'folder': '(it is a folder)',
        'missing.pt': '(no such file)',
    }
    (tmp_path / 'folder').mkdir()
    for name, message in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        text = str(info.value)
        assert message in text and '\n' not in text, (name, text)
        for advice in ('weights_only', 'allow_pickle', 'trust'):
            assert advice not in text, (name, text)
