"""Resumable checkpoints: one file, written atomically, loaded without unpickling code.

numpy arrays are stored as tensors inside a marker dict, so the file loads with
``torch.load(weights_only=True)`` (plain containers, numbers, strings and tensors only) and
a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1
_NDARRAY = '__ndarray__'


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours."""


def _pack(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, dict):
        return {key: _pack(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_pack(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy()
        return {key: _unpack(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_unpack(item) for item in value)
    return value


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, then rename).

    The parent folder is created if needed. A reader sees the old file or the new one,
    never a partial one; a failed write leaves the old file as it was.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    try:
        torch.save({'format': FORMAT_VERSION, 'state': _pack(state)}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left behind when the write or the rename failed


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: Missing file, unreadable or corrupt file, or a foreign format.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f'no checkpoint at {path}; nothing to resume')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f'checkpoint {path} is corrupt or unreadable ({reason})') from exc
    if not isinstance(data, dict) or data.get('format') != FORMAT_VERSION:
        raise CheckpointError(
            f'checkpoint {path} is not an rpl_trainer checkpoint of format {FORMAT_VERSION}'
        )
    return _unpack(data['state'])


def learning_state(config: Any, agent: Any, buffer: Any, rng: np.random.Generator) -> dict:
    """The part of a checkpoint every learner shares: config, agent (networks, optimisers,
    normalisers, burn-in, update count), replay buffer, numpy and torch random states.

    Args:
        config: The learner's ``TrainConfig``.
        agent: Its ``DDPGAgent``.
        buffer: Its ``ReplayBuffer``.
        rng: Its numpy generator (exploration and batch sampling).
    """
    return {
        'config': config.to_dict(),
        'agent': agent.state_dict(),
        'buffer': buffer.state_dict(),
        'rng': rng.bit_generator.state,
        'torch_rng': torch.get_rng_state(),
    }


def restore_learning_state(state: dict, agent: Any, buffer: Any, rng: np.random.Generator) -> None:
    """Load :func:`learning_state` back into a learner built with the same config (the
    caller checks the config); torch's global random state included."""
    agent.load_state_dict(state['agent'])
    buffer.load_state_dict(state['buffer'])
    rng.bit_generator.state = state['rng']
    torch.set_rng_state(state['torch_rng'])
