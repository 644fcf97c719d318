"""Offline evaluation of a recorded stack run (``rpl bag eval``).

Per episode: success, final distance, return and fallbacks as the sim bridge reported them,
the residual magnitude (L2 norm of the residual the node sent, per step) and the commands' source;
over the run: the loop latency from the header stamps (observation k -> base action k ->
command k; all wall-clock stamps of one machine) and the step period (observation k ->
observation k+1). Pure numpy; matplotlib only in :func:`plot_evaluation`.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from rpl_bags.recorded import RecordedEpisode, RecordedRun

PERCENTILES = (50, 90, 99)


class EpisodeMetrics(NamedTuple):
    """One episode of a recorded run.

    Attributes:
        episode: Episode id.
        finished: The bag holds the episode's result (else success etc. are NaN).
        success: 1.0 / 0.0, NaN if not finished.
        final_distance: Block-goal distance after the last step, m (NaN if not finished).
        episode_return: Sum of rewards (NaN if not finished).
        steps: Steps of the episode.
        fallback_base: Steps the sim applied the base action (no usable command).
        fallback_zero: Steps the sim applied the zero action.
        residual_mean: Mean over steps of ||residual||_2 the residual node sent (added to
            the base action in its command; action units), NaN if no residual message.
        residual_max: Largest ||residual||_2 of the episode.
        residual_steps: Commands the residual node sent from its model (frame_id
            ``residual``); whether the sim bridge applied them, its result's fallbacks say.
        command_latency_ms: Median observation -> command stamp difference, ms.
        residual_rows: Steps with a residual message (the weight of ``residual_mean``).
    """

    episode: int
    finished: bool
    success: float
    final_distance: float
    episode_return: float
    steps: int
    fallback_base: int
    fallback_zero: int
    residual_mean: float
    residual_max: float
    residual_steps: int
    command_latency_ms: float
    residual_rows: int = 0


@dataclasses.dataclass(frozen=True)
class BagEvaluation:
    """Everything ``rpl bag eval`` reports.

    Attributes:
        path, namespace, task: Of the recorded run.
        episodes: Per-episode metrics, by id.
        latency_ms: Stamp differences per step, ms, by name: ``observation->base_action``,
            ``observation->command``, ``base_action->command`` and ``step_period``.
        counts: Messages read per topic.
        resent: Re-sent copies per control topic (start-up handshake), not counted twice.
        problems: What the reader skipped or found missing.
    """

    path: str
    namespace: str
    task: str
    episodes: tuple[EpisodeMetrics, ...]
    latency_ms: dict[str, np.ndarray]
    counts: dict[str, int]
    resent: dict[str, int]
    problems: tuple[str, ...]

    def finished(self) -> list[EpisodeMetrics]:
        """Episodes with a result."""
        return [e for e in self.episodes if e.finished]

    def summary(self) -> dict[str, Any]:
        """Run totals and means over the finished episodes (as the episode monitor's), and
        latency percentiles. ``mean_residual`` is the mean over their steps (as
        ``replay-model``'s); ``applied_commands`` the steps whose command the sim bridge
        applied (the rest fell back: ``fallback_base`` / ``fallback_zero``)."""
        done = self.finished()
        n = len(done)

        def mean(values: Sequence[float]) -> float:
            values = [v for v in values if not math.isnan(v)]
            return float(np.mean(values)) if values else math.nan

        rows = sum(e.residual_rows for e in done)
        steps = int(sum(e.steps for e in done))
        fallback_base = int(sum(e.fallback_base for e in done))
        fallback_zero = int(sum(e.fallback_zero for e in done))
        out: dict[str, Any] = {
            'episodes': n,
            'unfinished_episodes': len(self.episodes) - n,
            'successes': int(sum(e.success for e in done)),
            'success_rate': float(np.mean([e.success for e in done])) if n else math.nan,
            'mean_final_distance': mean([e.final_distance for e in done]),
            'mean_return': mean([e.episode_return for e in done]),
            'mean_residual': (
                float(sum(e.residual_mean * e.residual_rows for e in done if e.residual_rows))
                / rows
                if rows
                else math.nan
            ),
            'steps': steps,
            'residual_steps': int(sum(e.residual_steps for e in done)),
            'applied_commands': steps - fallback_base - fallback_zero,
            'fallback_base': fallback_base,
            'fallback_zero': fallback_zero,
        }
        for name, values in self.latency_ms.items():
            for q in PERCENTILES:
                key = f'{name}_p{q}_ms'
                out[key] = float(np.percentile(values, q)) if values.size else math.nan
        period = self.latency_ms['step_period']
        out['steps_per_s'] = 1e3 / float(np.median(period)) if period.size else math.nan
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (NaN written ``null``: ``output_files.json_bytes``)."""
        return {
            'bag': self.path,
            'namespace': self.namespace,
            'task': self.task,
            'summary': self.summary(),
            'episodes': [_episode_json(e) for e in self.episodes],
            'counts': self.counts,
            'resent': self.resent,
            'problems': list(self.problems),
        }


def _episode_json(episode: EpisodeMetrics) -> dict[str, Any]:
    """One episode as the result file holds it: ``success`` true / false as in the other
    commands' files (``rpl eval``, the monitor), null for an unfinished episode."""
    record = episode._asdict()
    record['success'] = bool(episode.success) if episode.finished else None
    return record


def _norms(values: np.ndarray) -> np.ndarray:
    """L2 norm per row of the rows without NaN, (n,)."""
    rows = values[~np.isnan(values).any(axis=1)]
    return np.linalg.norm(rows, axis=1)


def _stamp_gap_ms(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """``later - earlier`` in ms where both stamps exist, (n,)."""
    both = (later >= 0) & (earlier >= 0)
    return (later[both] - earlier[both]) * 1e-6


def _episode_metrics(ep: RecordedEpisode) -> EpisodeMetrics:
    residual = _norms(ep.residual.values)
    latency = _stamp_gap_ms(ep.command.stamp_ns, ep.observation.stamp_ns)
    r = ep.result
    nan = math.nan
    return EpisodeMetrics(
        episode=ep.episode,
        finished=r is not None,
        success=float(r.success) if r is not None else nan,
        final_distance=r.final_distance if r is not None else nan,
        episode_return=r.episode_return if r is not None else nan,
        steps=ep.steps,
        fallback_base=r.fallback_base if r is not None else 0,
        fallback_zero=r.fallback_zero if r is not None else 0,
        residual_mean=float(residual.mean()) if residual.size else nan,
        residual_max=float(residual.max()) if residual.size else nan,
        residual_steps=sum(tag == 'residual' for tag in ep.command.tags),
        command_latency_ms=float(np.median(latency)) if latency.size else nan,
        residual_rows=int(residual.size),
    )


def evaluate_run(run: RecordedRun) -> BagEvaluation:
    """Per-episode metrics and loop latencies of a recorded run."""
    gaps: dict[str, list[np.ndarray]] = {
        'observation->base_action': [],
        'observation->command': [],
        'base_action->command': [],
        'step_period': [],
    }
    for ep in run.episodes:
        obs, base, cmd = ep.observation.stamp_ns, ep.base_action.stamp_ns, ep.command.stamp_ns
        gaps['observation->base_action'].append(_stamp_gap_ms(base, obs))
        gaps['observation->command'].append(_stamp_gap_ms(cmd, obs))
        gaps['base_action->command'].append(_stamp_gap_ms(cmd, base))
        gaps['step_period'].append(_stamp_gap_ms(obs[1:], obs[:-1]))
    return BagEvaluation(
        path=run.path,
        namespace=run.namespace,
        task=run.task,
        episodes=tuple(_episode_metrics(ep) for ep in run.episodes),
        latency_ms={k: np.concatenate(v) if v else np.zeros(0) for k, v in gaps.items()},
        counts=dict(run.counts),
        resent=dict(run.resent),
        problems=run.problems,
    )


def _num(value: float, fmt: str) -> str:
    return '-' if isinstance(value, float) and math.isnan(value) else format(value, fmt)


def format_table(evaluation: BagEvaluation) -> str:
    """The per-episode table and the run summary as plain text."""
    head = (
        f'{"episode":>7} {"success":>7} {"final_dist_m":>12} {"return":>8} {"steps":>5} '
        f'{"fb_base":>7} {"fb_zero":>7} {"|res|_mean":>10} {"|res|_max":>9} {"res_cmds":>8} '
        f'{"obs->cmd_ms":>11}'
    )
    rows = [head]
    for e in evaluation.episodes:
        success = '-' if not e.finished else ('yes' if e.success else 'no')
        rows.append(
            f'{e.episode:>7} {success:>7} {_num(e.final_distance, ".4f"):>12} '
            f'{_num(e.episode_return, ".1f"):>8} {e.steps:>5} {e.fallback_base:>7} '
            f'{e.fallback_zero:>7} {_num(e.residual_mean, ".4f"):>10} '
            f'{_num(e.residual_max, ".4f"):>9} {e.residual_steps:>8} '
            f'{_num(e.command_latency_ms, ".3f"):>11}'
        )
    s = evaluation.summary()
    lat = [
        f'  {name:<25} p50 {_num(s[f"{name}_p50_ms"], ".3f")}  p90 '
        f'{_num(s[f"{name}_p90_ms"], ".3f")}  p99 {_num(s[f"{name}_p99_ms"], ".3f")} ms'
        for name in evaluation.latency_ms
    ]
    unfinished = f' (+{s["unfinished_episodes"]} unfinished)' if s['unfinished_episodes'] else ''
    rows += [
        '',
        f'{evaluation.task} run in {evaluation.namespace} ({evaluation.path})',
        f'  episodes                  {s["episodes"]}{unfinished}',
        f'  success                   {s["successes"]} of {s["episodes"]} '
        f'({_num(s["success_rate"], ".3f")})',
        f'  mean final distance       {_num(s["mean_final_distance"], ".4f")} m',
        f'  mean return               {_num(s["mean_return"], ".2f")}',
        f'  mean |residual|           {_num(s["mean_residual"], ".4f")} (the residual node '
        f"sent its model's command at {s['residual_steps']} of {s['steps']} steps)",
        f'  commands applied          {s["applied_commands"]} of {s["steps"]} steps by the '
        f'sim bridge; fallbacks base {s["fallback_base"]}, zero {s["fallback_zero"]}',
        f'  loop rate                 {_num(s["steps_per_s"], ".1f")} steps/s (median period)',
        '  latency from the stamps',
        *lat,
        '  messages                  '
        + ', '.join(f'{k} {v}' for k, v in evaluation.counts.items()),
    ]
    if any(evaluation.resent.values()):
        rows.append(
            '  re-sent (handshake)       '
            + ', '.join(f'{k} {v}' for k, v in evaluation.resent.items() if v)
        )
    return '\n'.join(rows)


def plot_evaluation(evaluation: BagEvaluation) -> bytes:
    """A PNG image: success and residual magnitude per episode, and a latency histogram."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    done = evaluation.finished()
    fig, (ax_success, ax_residual, ax_latency) = plt.subplots(1, 3, figsize=(15, 4.2))
    ids = [e.episode for e in done]
    wins = np.array([e.success for e in done])
    ax_success.scatter(ids, wins, c=['tab:green' if w else 'tab:red' for w in wins], s=18)
    if wins.size:
        running = np.cumsum(wins) / np.arange(1, wins.size + 1)
        ax_success.plot(ids, running, color='black', label='success rate so far')
        ax_success.legend(loc='center right')
    ax_success.set_ylim(-0.1, 1.1)
    ax_success.set_xlabel('episode')
    ax_success.set_ylabel('success (1) / failure (0)')
    s = evaluation.summary()
    ax_success.set_title(f'success {s["successes"]} of {s["episodes"]}')

    episodes = evaluation.episodes
    ax_residual.plot(
        [e.episode for e in episodes], [e.residual_mean for e in episodes], 'o-', label='mean'
    )
    ax_residual.plot(
        [e.episode for e in episodes], [e.residual_max for e in episodes], 'x:', label='max'
    )
    ax_residual.set_xlabel('episode')
    ax_residual.set_ylabel('|residual sent|_2 (action units)')
    ax_residual.set_title('residual magnitude per episode')
    ax_residual.legend()

    for name in ('observation->base_action', 'observation->command'):
        values = evaluation.latency_ms[name]
        if values.size:
            ax_latency.hist(values, bins=50, alpha=0.6, label=f'{name} (n={values.size})')
    ax_latency.set_xlabel('stamp difference (ms)')
    ax_latency.set_ylabel('steps')
    ax_latency.set_title('loop latency from the header stamps')
    for ax in (ax_success, ax_residual):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax_latency.has_data():
        ax_latency.legend()
    fig.suptitle(f'{evaluation.task} run in {evaluation.namespace}: {evaluation.path}')
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format='png', dpi=100)
    plt.close(fig)
    return image.getvalue()
