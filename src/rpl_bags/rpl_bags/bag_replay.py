"""Run a candidate residual over a recorded run (``rpl bag replay-model``).

The regression check before deploying a model: for every recorded step that has an
observation, a base action and a command, compute the command the candidate would have sent
(same rule and code as the residual node: :class:`rpl_residual_node.policy.ResidualPolicy`;
a two-frame actor gets the previous step's observation, the current one at the episode's
first step) and compare it with the recorded command. A two-frame step whose previous step
is not in the bag with its observation and base action (a lost message, a recording begun
mid-episode) is not compared: the node may have had a frame the replay cannot know. Open
loop: the recorded states stay what they were, so differences show where the candidate
would act differently, not what would have happened then.
Needs numpy + onnxruntime; no ROS, no torch.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, NamedTuple

import numpy as np

from rpl_bags.recorded import RecordedRun
from rpl_bags.topics import BagError
from rpl_residual_node.policy import ResidualPolicy


class EpisodeDiff(NamedTuple):
    """Candidate vs recorded command in one episode.

    Attributes:
        episode: Episode id.
        steps: Compared steps.
        max_abs_diff: Largest |candidate - recorded| over steps and components.
        mean_abs_diff: Mean |candidate - recorded| over steps and components.
        steps_over_tolerance: Steps where some component differs by more than the tolerance.
    """

    episode: int
    steps: int
    max_abs_diff: float
    mean_abs_diff: float
    steps_over_tolerance: int


@dataclasses.dataclass(frozen=True)
class ReplayReport:
    """How a candidate's commands differ from the recorded ones.

    Attributes:
        tolerance: Difference (action units) above which a step counts as changed.
        steps: Compared steps; ``skipped``: steps lacking an observation, base action or
            recorded command; ``no_previous``: two-frame steps whose previous frame is not in
            the bag (not compared either).
        max_abs_diff: Largest difference over all steps, per component, (action_dim,).
        mean_abs_diff: Mean difference per component, (action_dim,).
        steps_over_tolerance: Steps where any component differs by more than the tolerance.
        recorded_residual: Mean ||recorded applied residual||_2 (NaN if not recorded).
        candidate_residual: Mean ||candidate applied residual||_2.
        recorded_sources: Recorded commands per source tag ('residual', 'base').
        episodes: Per-episode differences.
        non_finite: Compared steps at which the candidate's residual was NaN or infinite
            (the residual node would fall back to the base action there; counted as the
            base action in the differences).
        beyond_scale: Compared steps at which it went beyond the scale its metadata states
            (a mislabelled file; the node falls back there too, and so is it compared).
    """

    tolerance: float
    steps: int
    skipped: int
    no_previous: int
    max_abs_diff: np.ndarray
    mean_abs_diff: np.ndarray
    steps_over_tolerance: int
    recorded_residual: float
    candidate_residual: float
    recorded_sources: dict[str, int]
    episodes: tuple[EpisodeDiff, ...]
    non_finite: int = 0
    beyond_scale: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = dataclasses.asdict(self)
        out['max_abs_diff'] = self.max_abs_diff.tolist()
        out['mean_abs_diff'] = self.mean_abs_diff.tolist()
        out['episodes'] = [e._asdict() for e in self.episodes]
        return out


def check_dimensions(run: RecordedRun, policy: ResidualPolicy) -> None:
    """Check that the bag's observation parts fit the candidate's inputs.

    Raises:
        BagError: Observation or goal sizes differ (both named).
    """
    actor = policy.actor
    if actor is None:
        return
    want = (actor.obs_dim, actor.goal_dim)
    have = (run.layout.obs_dim, run.layout.goal_dim)
    if want != have:
        raise BagError(
            f'the model expects {want[0]} observation and {want[1]} goal values; the bag '
            f'({run.task}) has {have[0]} and {have[1]}'
        )


def replay_model(
    run: RecordedRun, policy: ResidualPolicy, tolerance: float = 1e-4
) -> ReplayReport:
    """Compare the candidate's commands with the recorded ones, step by step.

    Args:
        run: The recorded run (:func:`rpl_bags.recorded.load_run`).
        policy: The candidate (ONNX actor + the node's mixing parameters).
        tolerance: Per-component difference that counts as a change, action units.

    Raises:
        BagError: The observation sizes do not fit the model, or no step can be compared.
    """
    check_dimensions(run, policy)
    layout = run.layout
    diffs, candidate_norms, recorded_norms, episodes = [], [], [], []
    sources: collections.Counter[str] = collections.Counter()
    skipped = no_previous = non_finite = beyond_scale = 0
    two_frame = policy.actor is not None and policy.actor.two_frame
    for ep in run.episodes:
        policy.reset()
        paired = ep.observation.present & ep.base_action.present  # what the node pairs
        usable = paired & ep.command.present
        skipped += int(ep.steps - usable.sum())
        episode_diffs = []
        for k in np.flatnonzero(paired):
            obs = ep.observation.values[k]
            # The node's previous frame is step k - 1's when it paired it; a step k - 1 not
            # paired in the bag may still have been paired by the node (the recorder lost a
            # message, or began later): its frame is not known here.
            unknown = two_frame and k > 0 and not paired[k - 1]
            if not usable[k] or unknown:
                # Not compared, but the node's previous frame for the next step.
                no_previous += int(bool(usable[k]))
                policy.remember(obs[layout.observation])
                continue
            command, applied = policy.mix(
                obs[layout.observation], obs[layout.desired_goal], ep.base_action.values[k]
            )
            non_finite += int(policy.last_non_finite.any())
            beyond_scale += int(policy.last_beyond_scale.any())
            episode_diffs.append(np.abs(command - ep.command.values[k]))
            candidate_norms.append(float(np.linalg.norm(applied)))
            if ep.residual.present[k]:
                recorded_norms.append(float(np.linalg.norm(ep.residual.values[k])))
            sources[ep.command.tags[k]] += 1
        if episode_diffs:
            d = np.stack(episode_diffs)
            episodes.append(
                EpisodeDiff(
                    episode=ep.episode,
                    steps=len(d),
                    max_abs_diff=float(d.max()),
                    mean_abs_diff=float(d.mean()),
                    steps_over_tolerance=int((d > tolerance).any(axis=1).sum()),
                )
            )
            diffs.append(d)
    if not diffs:
        raise BagError(
            f'bag {run.path!r} has no step with an observation, a base action and a command '
            'to compare'
        )
    d = np.concatenate(diffs)
    return ReplayReport(
        tolerance=tolerance,
        steps=len(d),
        skipped=skipped,
        no_previous=no_previous,
        max_abs_diff=d.max(axis=0),
        mean_abs_diff=d.mean(axis=0),
        steps_over_tolerance=int((d > tolerance).any(axis=1).sum()),
        recorded_residual=float(np.mean(recorded_norms)) if recorded_norms else float('nan'),
        candidate_residual=float(np.mean(candidate_norms)),
        recorded_sources=dict(sources),
        episodes=tuple(episodes),
        non_finite=non_finite,
        beyond_scale=beyond_scale,
    )


def format_report(report: ReplayReport, model: str, action_fields: tuple[str, ...]) -> str:
    """Plain-text summary of a replay."""
    per_dim = ', '.join(
        f'{name} {mx:.2e}/{mean:.2e}'
        for name, mx, mean in zip(
            action_fields, report.max_abs_diff, report.mean_abs_diff, strict=True
        )
    )
    worst = sorted(report.episodes, key=lambda e: e.max_abs_diff, reverse=True)[:5]
    lines = [
        f'candidate {model} vs the recorded commands',
        f'  compared steps            {report.steps} ({report.skipped} skipped: incomplete'
        + (
            f'; {report.no_previous} not compared: their previous frame is not in the bag'
            if report.no_previous
            else ''
        )
        + ')',
        '  recorded command sources  '
        + ', '.join(f'{k or "?"} {v}' for k, v in sorted(report.recorded_sources.items())),
        f'  max |diff|                {float(report.max_abs_diff.max()):.3e} (action units)',
        f'  per component max/mean    {per_dim}',
        f'  steps changed (> {report.tolerance:g})  {report.steps_over_tolerance} of '
        f'{report.steps}',
        f'  mean |residual|           recorded {report.recorded_residual:.4f}, '
        f'candidate {report.candidate_residual:.4f}',
        '  most different episodes   '
        + ', '.join(f'{e.episode} ({e.max_abs_diff:.2e})' for e in worst),
    ]
    if report.non_finite:
        lines.insert(
            -1,
            f'  non-finite residual       {report.non_finite} of {report.steps} steps (the node '
            'falls back to the base action there; compared as the base action)',
        )
    if report.beyond_scale:
        lines.insert(
            -1,
            f'  beyond its stated scale   {report.beyond_scale} of {report.steps} steps (the '
            'node falls back to the base action there; compared as the base action)',
        )
    return '\n'.join(lines)
