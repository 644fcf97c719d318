"""``rpl list``: the registered tasks and controllers, and the committed models.

A committed model lives in ``models/<name>/`` with its ``COMMAND.md`` (how it was made and
evaluated), the ONNX files, and ``heldout.json``: the held-out evaluation of each ONNX file
and of the base controller alone on the same seeds, in numbers (the figures COMMAND.md
quotes, from the ``rpl eval`` result files it names). Task and controller come from the
model's own metadata (written by the exporter), else from ``heldout.json``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Sequence

HELDOUT_FILE = 'heldout.json'


@dataclasses.dataclass(frozen=True)
class Heldout:
    """A held-out evaluation: success rate with its 95 % interval over seeded episodes, and
    the mean return where the record has it (a fixed-goal task's results are returns)."""

    success_rate: float
    ci95: tuple[float, float]
    episodes: int
    seed: int
    mean_return: float | None = None

    def __str__(self) -> str:
        lo, hi = self.ci95
        text = (
            f'{self.success_rate:.3f} (95% CI {lo:.3f}-{hi:.3f}, {self.episodes} episodes, '
            f'seeds {self.seed}..{self.seed + self.episodes - 1})'
        )
        return text + self.return_text()

    def return_text(self) -> str:
        """', mean return R' when the record has a return, else ''."""
        return '' if self.mean_return is None else f', mean return {self.mean_return:.1f}'


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One committed ONNX model.

    Attributes:
        path: The ONNX file.
        task: Task it was trained on ('?' when unknown).
        controller: Base controller it was trained with ('?' when unknown).
        heldout: Its held-out evaluation, None if there is none.
        base: The base controller alone on the same seeds, None if unknown.
    """

    path: str
    task: str
    controller: str
    heldout: Heldout | None
    base: Heldout | None


def _heldout(record: dict | None, episodes: int, seed: int) -> Heldout | None:
    if not record:
        return None
    lo, hi = record['ci95']
    mean_return = record.get('mean_return')
    return Heldout(
        float(record['success_rate']),
        (float(lo), float(hi)),
        episodes,
        seed,
        None if mean_return is None else float(mean_return),
    )


def onnx_metadata(path: str) -> dict[str, str]:
    """The custom metadata of an ONNX file ({} when it cannot be read)."""
    if not os.path.isfile(path):  # a pipe or device would be read forever
        return {}
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # a broken file is listed with what heldout.json says
        return {}


def find_models(search_dirs: Sequence[str]) -> list[ModelEntry]:
    """Every ``<dir>/<name>/*.onnx`` under the search folders, in path order.

    Raises:
        ValueError: A ``heldout.json`` that is not valid JSON of the expected form.
    """
    entries = []
    seen: set[str] = set()
    for folder in search_dirs:
        for path in sorted(glob.glob(os.path.join(folder, '*', '*.onnx'))):
            real = os.path.realpath(path)
            if real in seen:  # ./models and <checkout>/models can be the same folder
                continue
            seen.add(real)
            entries.append(_entry(path))
    return entries


def _entry(path: str) -> ModelEntry:
    heldout_path = os.path.join(os.path.dirname(path), HELDOUT_FILE)
    info: dict = {}
    if os.path.isfile(heldout_path):
        try:
            with open(heldout_path) as f:
                info = json.load(f)
            episodes, seed = int(info['episodes']), int(info['seed'])
            models = info.get('models', {})
            if not isinstance(models, dict):
                raise TypeError(f"'models' must map file names to results, got {models!r}")
            model = _heldout(models.get(os.path.basename(path)), episodes, seed)
            base = _heldout(info.get('base'), episodes, seed)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'{heldout_path}: not a valid held-out record ({exc})') from None
    else:
        model = base = None
    meta = onnx_metadata(path)
    return ModelEntry(
        path=path,
        task=meta.get('task') or info.get('task') or '?',
        controller=meta.get('controller') or info.get('controller') or '?',
        heldout=model,
        base=base,
    )


def task_lines() -> list[str]:
    """One line per registered task: name, sizes, episode length, description."""
    from rpl_sim_bridge.tasks import available_tasks, task_spec

    lines = []
    for name in available_tasks():
        spec = task_spec(name)
        lines.append(
            f'{name:16} obs {spec.obs_dim}, goal {spec.goal_dim}, action {spec.action_dim}, '
            f'{spec.max_episode_steps} steps; {spec.description}'
        )
    return lines


def controller_lines() -> list[str]:
    """One line per registered controller: name, the tasks it suits, description, its
    parameters with their defaults (``rpl eval --controller-param``, launch arguments), and
    for a plug-in the entry point it came from."""
    from rpl_base_controllers.registry import available_controllers, controller_info

    lines = []
    for name in available_controllers():
        info = controller_info(name)
        params = ', '.join(f'{p.name}={p.default}' for p in info.params) or 'none'
        source = '' if info.source == 'built-in' else f'; plug-in: {info.source}'
        lines.append(
            f'{name:24} tasks: {", ".join(info.tasks)}; {info.description}; '
            f'parameters: {params}{source}'
        )
    return lines


def model_lines(search_dirs: Sequence[str]) -> list[str]:
    """Two lines per committed model: path, then task, controller and held-out success (and
    mean return, where recorded)."""
    lines = []
    for entry in find_models(search_dirs):
        heldout = f'held-out success {entry.heldout}' if entry.heldout else 'no held-out result'
        base = ''
        if entry.base:
            base = f'; base alone {entry.base.success_rate:.3f}{entry.base.return_text()}'
        lines.append(_display(entry.path))
        lines.append(f'    {entry.task} / {entry.controller}: {heldout}{base}')
    return lines


def _display(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith('..') else relative
