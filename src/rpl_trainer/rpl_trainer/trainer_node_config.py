"""The trainer node's parameters (one typed config) and its ``train_overrides`` parser.

No rclpy here: ``trainer_node.py`` declares these fields as ROS parameters.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from rpl_interfaces import contract
from rpl_interfaces.params import describe
from rpl_interfaces.trainer_files import check_trainer_files
from rpl_sim_bridge.bridge_config import MAX_SEED
from rpl_trainer.config import ParameterError, TrainConfig, check_keys, make_config


@dataclasses.dataclass(frozen=True)
class TrainerNodeConfig:
    """Parameters of the trainer node (``rpl_trainer/trainer_node.py``)."""

    task: str = dataclasses.field(
        default='slippery_push', metadata=describe('Registered task the stack runs')
    )
    controller: str = dataclasses.field(
        default='reactive_push', metadata=describe('Base controller the stack runs')
    )
    controller_params: str = dataclasses.field(
        default='',
        metadata=describe(
            "Its parameters as the stacks' controller nodes have them, 'NAME=VALUE,...' "
            "('' = the defaults): the learner recomputes base actions with them and the "
            'exported model states them'
        ),
    )
    namespaces: str = dataclasses.field(
        default=contract.DEFAULT_NAMESPACE,
        metadata=describe(
            'Comma-separated stack namespaces to learn from live (observation, base_action, '
            'command, episode); empty: bags only'
        ),
    )
    bags: str = dataclasses.field(
        default='',
        metadata=describe(
            'Comma-separated bag paths to ingest at start: every stack each recorded, each bag '
            'once however spelled; a bag of another task or base controller is refused'
        ),
    )
    model_path: str = dataclasses.field(
        default='',
        metadata=describe(
            'ONNX file to (re)write, replaced atomically (the residual node hot-reloads it); '
            'required'
        ),
    )
    export_every_updates: int = dataclasses.field(
        default=2000,
        metadata=describe('Export a new model every this many gradient steps', range=(1, 10**9)),
    )
    updates_per_step: float = dataclasses.field(
        default=0.1,
        metadata=describe('Gradient steps per ingested transition', range=(0.0, 1000.0)),
    )
    seed: int = dataclasses.field(default=0, metadata=describe('Seed', range=(0, MAX_SEED)))
    train_overrides: str = dataclasses.field(
        default='',
        metadata=describe(
            'Comma-separated key=value TrainConfig overrides, e.g. '
            "'burn_in_window=500,target_update_interval=1'"
        ),
    )
    checkpoint_path: str = dataclasses.field(
        default='',
        metadata=describe(
            'File to save the learner to (agent, normalisers, replay buffer, counters) every '
            'checkpoint_every_updates updates and at shutdown, by atomic replace; resumed from '
            "if it exists at start; '' = none"
        ),
    )
    init_from: str = dataclasses.field(
        default='',
        metadata=describe(
            'Checkpoint to start learning from when checkpoint_path does not exist yet: an '
            "`rpl train` run's DIR/checkpoint.pt (warm start from simulation) or another "
            "trainer node's; its learner (networks, normalisers, burn-in, replay buffer) and "
            'its config are taken, task/controller/train_overrides must agree with its '
            "learner fields; '' = start afresh",
        ),
    )
    checkpoint_every_updates: int = dataclasses.field(
        default=10000,
        metadata=describe('Save a checkpoint every this many gradient steps', range=(1, 10**9)),
    )
    history_depth: int = dataclasses.field(
        default=10000,
        metadata=describe(
            'Messages each live subscription holds for the trainer while it is busy (reader '
            'history, KEEP_LAST: the stacks never wait for it; 10000 = ~2 min of one stack '
            'at 80 steps/s); what overflows is counted as missing',
            range=(1, 10**6),
        ),
    )
    exit_after_updates: int = dataclasses.field(
        default=0,
        metadata=describe(
            'Offline learning: train this many gradient steps on the bags (no live topics), '
            'export the model (and save the checkpoint), then exit 0; 0 = learn until stopped',
            range=(0, 10**9),
        ),
    )

    def resuming(self) -> bool:
        """Whether the trainer continues its own checkpoint (it exists at start)."""
        return bool(self.checkpoint_path) and os.path.exists(self.checkpoint_path)

    def check_start(self) -> None:
        """The checks on these parameters and the files they name that a trainer makes
        before any work (the learning launch makes the file checks too, before any node
        starts).

        Raises:
            ValueError: One line naming the parameter: see
                :func:`rpl_interfaces.trainer_files.check_trainer_files`, or a bad
                ``train_overrides``.
        """
        check_trainer_files(self.model_path, self.checkpoint_path, self.init_from, self.bag_list())
        parse_overrides(self.train_overrides)

    def namespace_list(self) -> list[str]:
        """The namespaces, each with a leading '/'."""
        return ['/' + n.strip().strip('/') for n in self.namespaces.split(',') if n.strip()]

    def bag_list(self) -> list[str]:
        """The bag paths."""
        return [p.strip() for p in self.bags.split(',') if p.strip()]

    def train_config(self, base: Mapping[str, Any] | None = None) -> TrainConfig:
        """The learner's hyperparameters: ``base`` (default: the TrainConfig defaults), then
        task, controller, its parameters and seed of this config, then ``train_overrides``.

        Args:
            base: TrainConfig values to start from (a warm start: the checkpoint's config).

        Raises:
            rpl_interfaces.params.ParameterError: A bad override (see :func:`parse_overrides`).
        """
        values = {
            'task': self.task,
            'controller': self.controller,
            'controller_params': self.controller_params,
            'seed': self.seed,
        }
        return make_config({**(base or {}), **values, **parse_overrides(self.train_overrides)})


# Overrides that are trainer node parameters of their own.
_NODE_OWNED = ('task', 'controller', 'controller_params', 'seed')


def parse_overrides(text: str) -> dict[str, Any]:
    """``'key=value,key=value'`` -> TrainConfig field values, checked against the fields.

    Values are read as JSON where they parse (``500``, ``0.5``, ``true``), else taken as
    text (``algo=rpl``); a whole float for an integer field (``1e6``) is taken as that
    integer.

    Raises:
        rpl_interfaces.params.ParameterError: An item without '=', an unknown or repeated key,
            a node parameter (task, controller, controller_params, seed), or a value of the
            wrong type or out of range; the message names the key.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(',')):
        if not item:
            continue
        key, sep, raw = (x.strip() for x in item.partition('='))
        if not sep or not key:
            raise ParameterError(f'train_overrides: expected key=value, got {item!r}')
        if key in _NODE_OWNED:
            raise ParameterError(
                f'train_overrides: {key!r} is a trainer node parameter; set {key}:=... instead'
            )
        check_keys({key: None}, 'train_overrides')  # names the closest fields
        if key in values:
            raise ParameterError(f'train_overrides: {key!r} is given twice')
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        is_int = type(fields[key].default) is int
        if is_int and isinstance(value, float) and value.is_integer():
            value = int(value)
        values[key] = value
    try:
        make_config(values)  # types, ranges and choices, per key
    except ParameterError as exc:
        raise ParameterError(f'train_overrides: {exc}') from exc
    return values


__all__ = ['TrainerNodeConfig', 'parse_overrides']
