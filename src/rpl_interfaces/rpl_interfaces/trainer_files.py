"""The files a trainer node writes and reads, checked before any work. Pure Python.

The trainer node makes these checks when it starts, and the learning launch makes the same
ones before any node starts (it cannot import the trainer: the stack launches run without
torch), so that both say the same one line. What needs the trainer itself (its
``train_overrides``, the checkpoint's content) the trainer checks on its own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rpl_interfaces.output_files import os_reason, probe_write, within


def check_writable(path: str, what: str) -> None:
    """Make sure a file can be written at ``path`` (its folder created if needed).

    Raises:
        ValueError: One line naming the parameter, the path and why it cannot be written.
    """
    try:
        if os.path.isdir(path):
            raise OSError(f'{path} is a folder')
        probe_write(path)
    except OSError as exc:
        raise ValueError(
            f'{what} {path} cannot be written: {os_reason(exc)}; set {what}:= to a file in a '
            'writable folder'
        ) from None


def bag_identity(path: str) -> str:
    """One name for a bag however it is spelled: links and `..` resolved, and the storage
    file of a bag folder (one with metadata.yaml) named by its folder."""
    resolved = os.path.realpath(path)
    folder = os.path.dirname(resolved)
    if os.path.isfile(resolved) and os.path.isfile(os.path.join(folder, 'metadata.yaml')):
        return folder
    return resolved


def check_trainer_files(
    model_path: str, checkpoint_path: str, init_from: str, bags: Sequence[str]
) -> None:
    """The trainer's files as its parameters name them, before any work.

    Args:
        model_path: The ONNX file the trainer writes (required).
        checkpoint_path: Its checkpoint ('' = none); resumed from when it exists.
        init_from: A checkpoint a new learner starts from ('' = none).
        bags: The bags it learns from at start.

    Raises:
        ValueError: One line naming the parameter: no model_path; model_path and
            checkpoint_path the same file, or either of them a bag (or inside one) that it
            reads; a file that cannot be written; a model_path a new learner would write over;
            an init_from or bag that does not exist.
    """
    if not model_path:
        raise ValueError('model_path is empty: set the ONNX file to write (model_path:=PATH)')
    for what, path in (('model_path', model_path), ('checkpoint_path', checkpoint_path)):
        if path.endswith(os.sep):  # written as a file all the same, after the training
            raise ValueError(f'{what} {path!r} names a folder; give a file path')
    if checkpoint_path and (
        within(model_path, checkpoint_path) or within(checkpoint_path, model_path)
    ):
        raise ValueError(
            f'model_path and checkpoint_path are the same file, or one inside the other '
            f'({model_path}, {checkpoint_path}): each checkpoint would replace the model; give '
            'two files'
        )
    if checkpoint_path and init_from and within(checkpoint_path, init_from):
        raise ValueError(
            f'checkpoint_path and init_from are the same file ({init_from}): this run would '
            'write over the checkpoint it starts from; give a new checkpoint_path'
        )
    for bag in bags:
        for what, path in (('model_path', model_path), ('checkpoint_path', checkpoint_path)):
            if path and os.path.exists(bag) and within(path, bag_identity(bag)):
                raise ValueError(
                    f'{what} {path} is in the bag {bag} that bags:= reads: the recording would '
                    f'be written over; set {what}:= to a file outside it'
                )
    # Before any work: a run must not learn for hours and then fail to write its result.
    check_writable(model_path, 'model_path')
    if checkpoint_path:
        check_writable(checkpoint_path, 'checkpoint_path')
    resuming = bool(checkpoint_path) and os.path.exists(checkpoint_path)
    if not resuming and os.path.lexists(model_path):
        # A fresh learner exports at once (or after its updates): that would replace a
        # model this trainer did not make.
        raise ValueError(
            f'model_path {model_path!r} exists and this trainer starts a new learner (no '
            f'checkpoint at checkpoint_path {checkpoint_path!r}): it would be written over; '
            'give a new model_path, or the checkpoint_path of the run that wrote it'
        )
    if init_from and not resuming and not os.path.isfile(init_from):
        raise ValueError(
            f"init_from: no checkpoint at {init_from} (expected an `rpl train` run's "
            "DIR/checkpoint.pt or a trainer node's checkpoint; an empty init_from, the default, "
            'starts afresh)'
        )
    for bag in bags:
        if not os.path.exists(bag):
            raise ValueError(
                f'bags: no bag at {bag} (an empty bags, the default, learns from live topics only)'
            )


__all__ = ['bag_identity', 'check_trainer_files', 'check_writable']
