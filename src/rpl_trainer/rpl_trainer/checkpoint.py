"""Resumable checkpoints: one file, written atomically, loaded without unpickling code.

numpy arrays are stored as tensors inside a marker dict, so the file loads with
``torch.load(weights_only=True)`` (plain containers, numbers, strings and tensors only) and
a checkpoint from elsewhere cannot run code.

A learner checkpoint is ``{'kind', 'learner', ...}``: ``learner`` is the same for ``rpl
train`` (kind ``rpl_train``, with its run counters) and the trainer node (kind
``trainer_node``, with its ``extra``), so either can start from the other's.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import warnings
from typing import Any

import numpy as np
import torch

from rpl_interfaces.output_files import replacing

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

    Raises:
        OSError: The write failed (naming the file; a full disk as ENOSPC).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch says RuntimeError for a full disk
    with replacing(path, writer_errors=(OSError, RuntimeError), own_scratch=True) as scratch:
        torch.save({'format': FORMAT_VERSION, 'state': _pack(state)}, scratch)


def _load_failure(path: pathlib.Path, exc: Exception) -> str:
    """Why ``torch.load`` failed, in our words: torch's and numpy's own messages advise
    loading with unpickling enabled, which a file from elsewhere must never be."""
    if path.stat().st_size == 0:
        return 'empty'
    with path.open('rb') as f:
        head = f.read(2)
    if head != b'PK' and head[:1] != b'\x80':  # neither a torch zip archive nor a pickle
        if path.suffix == '.onnx' or head[:1] == b'\x08':  # an ONNX protobuf's first field
            return (
                "an ONNX model, not a checkpoint: a learner starts from a run's checkpoint.pt "
                "(or a trainer node's checkpoint_path), which holds the critic and the replay "
                'buffer too'
            )
        return 'not a torch checkpoint file'
    if isinstance(exc, EOFError):
        return 'cut short (truncated)'
    if isinstance(exc, pickle.UnpicklingError) and 'Unsupported operand' in str(exc):
        return 'not a torch checkpoint file'
    if isinstance(exc, pickle.UnpicklingError):
        return 'not an rpl_trainer checkpoint (it holds Python objects, which are never loaded)'
    if isinstance(exc, PermissionError):
        return 'not readable (permission denied)'
    if isinstance(exc, OSError):  # torch's reader on an archive cut short, among others
        return f'damaged or cut short (reading it failed: {exc.strerror or exc})'
    if 'zip archive' in str(exc) or 'central directory' in str(exc):
        return 'damaged or cut short (not a complete torch archive)'
    return f'unreadable ({type(exc).__name__})'


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: Missing file, unreadable or corrupt file, or a foreign format.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        what = 'it is a folder' if path.is_dir() else 'no such file'
        raise CheckpointError(f'no checkpoint at {path} ({what})')
    try:
        with warnings.catch_warnings():  # torch warns about legacy files before refusing them
            warnings.simplefilter('ignore')
            data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(f'checkpoint {path} is {_load_failure(path, exc)}') from exc
    if not isinstance(data, dict) or data.get('format') != FORMAT_VERSION:
        raise CheckpointError(
            f'checkpoint {path} is not an rpl_trainer checkpoint of format {FORMAT_VERSION}'
        )
    return _unpack(data['state'])


TRAIN_RUN = 'rpl_train'
"""The ``kind`` of an ``rpl train`` run's checkpoint (``DIR/checkpoint.pt``)."""
TRAINER_NODE = 'trainer_node'
"""The ``kind`` of a trainer node's checkpoint (its ``checkpoint_path``)."""
CHECKPOINT_KINDS = (TRAIN_RUN, TRAINER_NODE)
_KIND_NAMES = {TRAIN_RUN: 'an `rpl train` checkpoint', TRAINER_NODE: 'a trainer node checkpoint'}


def save_learner_checkpoint(
    path: str | os.PathLike[str], kind: str, learner: dict[str, Any], **side: Any
) -> None:
    """Write a learner checkpoint atomically: ``{'kind', 'learner', **side}``.

    Both sides store the learner the same way (``rpl_trainer.learner.Learner.state_dict``)
    next to their own entries (``rpl train``: run counters; the trainer node: ``extra``).
    """
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f'checkpoint kind must be one of {CHECKPOINT_KINDS}, got {kind!r}')
    save_checkpoint(path, {'kind': kind, 'learner': learner, **side})


def load_learner_checkpoint(
    path: str | os.PathLike[str], kind: str | None = None
) -> dict[str, Any]:
    """Read a learner checkpoint of ``kind`` (None: either kind).

    Raises:
        CheckpointError: Missing, corrupt or foreign file, no learner in it, or another kind
            than ``kind``; one line naming the file.
    """
    state = load_checkpoint(path)
    found = state.get('kind')
    if found not in CHECKPOINT_KINDS or not isinstance(state.get('learner'), dict):
        raise CheckpointError(
            f'checkpoint {path} holds no learner of this version (kind {found!r}, expected '
            f'one of {list(CHECKPOINT_KINDS)}: an older version wrote it, or not a learner)'
        )
    if kind is not None and found != kind:
        raise CheckpointError(
            f'checkpoint {path} is {_KIND_NAMES[found]}, not {_KIND_NAMES[kind]}; a new '
            'learner starts from it with init_from:= (trainer node) or --init-from (rpl train)'
        )
    broken = _non_finite_networks(state['learner'].get('agent'))
    if broken:
        raise CheckpointError(
            f'checkpoint {path} holds NaN or infinite weights in {", ".join(broken)}: no '
            'learner can continue from it (its first action failed with a traceback); start '
            'from an earlier checkpoint'
        )
    return state


def _non_finite_networks(agent: Any) -> list[str]:
    """The networks of a checkpoint's agent state that hold a NaN or infinite weight."""
    if not isinstance(agent, dict):
        return []
    broken = []
    for name in ('actor', 'critic', 'actor_target', 'critic_target'):
        weights = agent.get(name)
        if isinstance(weights, dict) and any(
            torch.is_tensor(w) and w.is_floating_point() and not bool(torch.isfinite(w).all())
            for w in weights.values()
        ):
            broken.append(name)
    return broken
