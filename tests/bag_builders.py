"""A hand-made lockstep bag with known per-step values (:func:`write_bag`) and its constants,
shared by the bag, episode, offline-training and action-name tests."""

from __future__ import annotations

import pathlib

import numpy as np

from rpl_bags.topics import RECORDED_TOPICS, encode_vector, recorded_topics, resolve_topic
from rpl_bags.writer import BagWriter
from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector
from rpl_residual_node.policy import ResidualPolicy

NS = '/toy'
OBS_FIELDS = contract.observation_fields(('grip_pos.x', 'grip_pos.y'), ('x', 'y', 'z'))
OBS_DIM, GOAL_DIM = 2, 3
T0 = 1_700_000_000_000_000_000  # ns
PERIOD = 40_000_000  # ns between steps
BASE_DELAY, COMMAND_DELAY = 500_000, 1_500_000  # ns after the observation stamp


def observation(episode: int, step: int) -> np.ndarray:
    """A distinct observation payload per step, (8,)."""
    return np.arange(len(OBS_FIELDS), dtype=np.float64) * 0.01 + episode + 0.1 * step


def base_action(episode: int, step: int) -> np.ndarray:
    return np.array([0.1 * step, -0.2, 0.05 * episode, 0.0]) % 0.9


def obs_stamp(episode: int, step: int, steps: int) -> int:
    return T0 + (episode * (steps + 1) + step) * PERIOD


def write_bag(
    path: pathlib.Path,
    episodes: int = 2,
    steps: int = 5,
    policy: ResidualPolicy | None = None,
    topics=RECORDED_TOPICS,
    storage: str = 'mcap',
    extra=None,
    action_fields: tuple[str, ...] = contract.ACTION_FIELDS,
    terminal: bool = False,
    drop=None,
    namespaces: tuple[str, ...] = (NS,),
    controller_tag: str = 'toy_ctl',
) -> dict:
    """Write a lockstep run; commands come from ``policy`` (default: base action + 0.1).

    ``terminal`` writes each episode's terminal observation o_T (step T, tag
    ``toy_task/terminal``) before its result, as the sim bridge publishes it; without it the
    bag is one recorded before terminal observations (most tests here count messages).

    The actions carry ``action_fields`` (the Fetch tasks' by default; another task's
    declared names make the base action :func:`base_action` resized to their number).

    ``namespaces``: the same run recorded from each of these stacks.

    ``drop(topic, episode, step)`` true leaves that message out (a lost message, or a
    recording that started late); the policy still runs every step, as the node did.

    Returns:
        The written commands and residuals by (episode, step), and the results.
    """
    specs = list({s.name: s for ns in namespaces for s in recorded_topics(ns, topics)}.values())
    writer = BagWriter(path, specs, storage)
    written = {'command': {}, 'residual': {}, 'results': []}

    def put(rel, episode, step, values, stamp, tag, fields):
        if rel in topics and not (drop is not None and drop(rel, episode, step)):
            data = encode_vector(StampedVector(episode, step, values, stamp, tag), fields)
            for ns in namespaces:
                writer.write(resolve_topic(ns, rel), stamp + 100_000, data)

    for ep in range(episodes):
        if policy is not None:
            policy.reset()
        for k in range(steps):
            t = obs_stamp(ep, k, steps)
            obs, base = observation(ep, k), np.resize(base_action(ep, k), len(action_fields))
            if policy is None:
                command, residual = np.clip(base + 0.1, -1, 1), np.full(len(action_fields), 0.1)
            else:
                command, residual = policy.mix(obs[:OBS_DIM], obs[-GOAL_DIM:], base)
            written['command'][ep, k], written['residual'][ep, k] = command, residual
            put('observation', ep, k, obs, t, 'toy_task', OBS_FIELDS)
            put('base_action', ep, k, base, t + BASE_DELAY, controller_tag, action_fields)
            put('residual', ep, k, residual, t + COMMAND_DELAY, 'm.onnx', action_fields)
            put('command', ep, k, command, t + COMMAND_DELAY, 'residual', action_fields)
            if extra is not None:
                extra(put, ep, k, t)
        result = contract.EpisodeResult(ep, ep % 2 == 1, 0.05 * (ep + 1), -3.0 - ep, steps, ep, 0)
        written['results'].append(result)
        t_end = obs_stamp(ep, steps, steps)
        if terminal:
            tag = contract.terminal_tag('toy_task')
            put('observation', ep, steps, observation(ep, steps), t_end, tag, OBS_FIELDS)
        put('episode', ep, steps, result.as_vector(), t_end, 'toy_task', contract.EPISODE_FIELDS)
    writer.close()
    return written
