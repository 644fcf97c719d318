"""ONNX export of the residual actor, following docs/onnx_contract.md.

The graph takes ``observation`` float32 (N, obs_dim), ``desired_goal`` float32
(N, goal_dim), for two-frame actors ``previous_observation`` float32 (N, obs_dim) and, for
actors that see the base action (``base_input``), ``base_action`` float32 (N, action_dim)
in action units, and returns ``residual`` float32 (N, action_dim) =
scale * tanh(f(norm(clip(o)), norm(clip(g))[, b / bound])), in action units. Clipping,
normalisation and scale are inside the graph; opset 17; the batch axis N is dynamic. A
fixed-goal actor (``goal_dim`` 0) has no ``desired_goal`` input: the graph takes
``observation`` [and ``previous_observation``] [and ``base_action``] only. The file is
written atomically (temporary file + rename) so a hot-reloading residual node never reads
half a model.

Its ``metadata_props`` say what it is (:mod:`rpl_residual_node.model_identity`): the project
version, task, controller, observation / goal / action field names (JSON lists), residual
scale (and the per-axis scales where they differ), training steps and the run's evaluation
success, so the residual node and ``rpl eval`` can refuse it where it does not fit
(:func:`task_identity` builds them for a task).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from rpl_interfaces import __version__
from rpl_interfaces.output_files import replacing
from rpl_residual_node.model_identity import (
    RESIDUAL_SCALE,
    RESIDUAL_SCALES,
    ModelIdentity,
    StackIdentity,
)
from rpl_residual_node.onnx_actor import (
    BASE_ACTION_INPUT,
    GOAL_INPUT,
    OBSERVATION_INPUT,
    PREVIOUS_OBSERVATION_INPUT,
    RESIDUAL_OUTPUT,
)
from rpl_trainer.networks import Actor
from rpl_trainer.residual import Scale, as_scale, axis_scales, largest_scale

OPSET = 17
# The contract's names, as the loader (rpl_residual_node.onnx_actor) checks them.
OBSERVATION = OBSERVATION_INPUT
DESIRED_GOAL = GOAL_INPUT
PREVIOUS_OBSERVATION = PREVIOUS_OBSERVATION_INPUT
BASE_ACTION = BASE_ACTION_INPUT
RESIDUAL = RESIDUAL_OUTPUT
# The export check: largest |onnxruntime - torch| allowed, as a fraction of each output
# axis's residual scale. float32 rounding grows with the pre-tanh activations: a NoisyHook
# actor at 100k steps (fingers at scale 2, near saturation) measured 1.06e-5 absolute, 5.3e-6
# of its scale, and an absolute 1e-5 stopped that run. A wrong graph (normaliser, scale,
# frame order) is off by a good part of the scale.
TOLERANCE = 1e-4


class ExportError(ValueError):
    """The exported model does not reproduce the torch actor (a ValueError: not one of
    the RuntimeErrors torch's writers give for a full disk)."""


class ResidualModel(nn.Module):
    """scale * actor(o, g[, o_prev][, b / base_bound]) as one module, for export.

    Args:
        actor: Trained actor (copied, so later training does not change the export).
        scale: Residual scale (RPL: ``residual_scale``, one or one per action axis;
            scratch learners: action bound).
        base_bound: What the actor's base-action input is divided by (the task's action
            bound, as in training); the graph takes the base action in action units.
    """

    def __init__(self, actor: Actor, scale: Scale, base_bound: float | None = None) -> None:
        super().__init__()
        self.actor = copy.deepcopy(actor).eval().requires_grad_(False)
        scale = as_scale(scale)
        if not isinstance(scale, float) and scale.shape != (actor.dims.action_dim,):
            raise ValueError(
                f'{scale.size} residual scales for an actor of {actor.dims.action_dim} actions'
            )
        self.register_buffer('scale', torch.as_tensor(scale, dtype=torch.float32))
        if actor.base_input and base_bound is None:
            raise ExportError(
                'an actor with base_input needs base_bound, the action bound its base input '
                'was divided by in training (DDPGAgent.action_bound)'
            )
        self.base_bound = 1.0 if base_bound is None else float(base_bound)

    @property
    def input_names(self) -> list[str]:
        """The graph's inputs in order."""
        actor = self.actor
        return input_names(actor.two_frame, actor.dims.goal_dim > 0, actor.base_input)

    def forward(
        self,
        observation: torch.Tensor,
        desired_goal: torch.Tensor,
        previous_observation: torch.Tensor | None = None,
        base_action: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, obs_dim), (N, goal_dim)[, (N, obs_dim)][, (N, action_dim)] -> (N, action_dim)."""
        base = None if base_action is None else base_action / self.base_bound
        return self.scale * self.actor(observation, desired_goal, previous_observation, base)


class _Graph(nn.Module):
    """The exported graph: positional inputs in :attr:`ResidualModel.input_names` order (no
    ``desired_goal`` for a fixed-goal actor, the optional ones only where the actor has
    them)."""

    def __init__(self, model: ResidualModel) -> None:
        super().__init__()
        self.model = model
        self.names = model.input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.names, inputs, strict=True))
        observation = named[OBSERVATION]
        goal = named.get(DESIRED_GOAL, observation[:, :0])  # (N, 0) for a fixed goal
        return self.model(
            observation, goal, named.get(PREVIOUS_OBSERVATION), named.get(BASE_ACTION)
        )


def _example_inputs(model: ResidualModel, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Inputs spread like the data the normalisers saw: mean + 2 * std * N(0, 1); base
    actions uniform over the bound."""
    generator = torch.Generator().manual_seed(seed)
    actor = model.actor

    def draw(norm: nn.Module) -> torch.Tensor:
        noise = torch.randn(batch, norm.mean.shape[0], generator=generator)
        return norm.mean + 2.0 * norm.std * noise

    draws = {
        OBSERVATION: lambda: draw(actor.obs_norm),
        DESIRED_GOAL: lambda: draw(actor.goal_norm),
        PREVIOUS_OBSERVATION: lambda: draw(actor.obs_norm),
        BASE_ACTION: lambda: (
            model.base_bound
            * (2.0 * torch.rand(batch, actor.dims.action_dim, generator=generator) - 1.0)
        ),
    }
    return tuple(draws[name]() for name in model.input_names)


def input_names(two_frame: bool, has_goal: bool = True, base_input: bool = False) -> list[str]:
    """Graph input names in order (no ``desired_goal`` for a fixed-goal actor)."""
    names = [OBSERVATION, DESIRED_GOAL] if has_goal else [OBSERVATION]
    if two_frame:
        names.append(PREVIOUS_OBSERVATION)
    if base_input:
        names.append(BASE_ACTION)
    return names


def task_identity(
    spec: Any, controller: str, controller_params: str | None = None, **facts: object
) -> ModelIdentity:
    """The identity of a model trained on a task with ``controller``: the field names the
    sim bridge publishes for that task (the node checks them against the messages).

    Args:
        spec: The task spec (``rpl_sim_bridge.tasks.TaskSpec`` or alike).
        controller: Base controller name.
        controller_params: Its non-default parameters as canonical text
            (:func:`rpl_base_controllers.registry.stated_params`); None = not stated.
        facts: ``residual_scale``, ``residual_scales``, ``training_steps``, ``eval_success`` (see
            :class:`rpl_residual_node.model_identity.ModelIdentity`).
    """
    from rpl_interfaces import contract

    actions = tuple(spec.action_fields)  # as the task declares them
    names = contract.observation_fields(spec.obs_fields, spec.goal_fields)
    stack = StackIdentity.of_task(spec, controller, names, actions)
    stack = dataclasses.replace(stack, controller_params=controller_params)
    return ModelIdentity.for_stack(stack, **facts)


def export_onnx(
    actor: Actor,
    path: str | os.PathLike[str],
    scale: Scale,
    metadata: Mapping[str, str] | None = None,
    identity: ModelIdentity | None = None,
    base_bound: float | None = None,
) -> pathlib.Path:
    """Write the actor as an ONNX residual model and check it against torch.

    Args:
        actor: Trained actor.
        path: Output file (parent directories are created).
        scale: Residual scale in action units: one, or one per action axis (then the
            metadata states them as ``residual_scales`` and the largest as
            ``residual_scale``).
        metadata: Extra ``metadata_props`` (algo, seed, ...), strings.
        identity: What the model is (task, controller, field names, training steps,
            evaluation success; see :func:`task_identity`), written as its metadata keys;
            None writes only the version and scale (a model the node cannot check).
        base_bound: The action bound the actor's base-action input was divided by in
            training (required for ``base_input`` actors; the graph takes action units).

    Returns:
        The path written.

    Raises:
        ExportError: onnxruntime and torch disagree on random inputs by more than
            :data:`TOLERANCE` of an axis's scale, or a ``base_input`` actor came without
            ``base_bound``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = ResidualModel(actor, scale, base_bound)
    names = model.input_names
    example = _example_inputs(model, batch=2, seed=0)
    graph = _Graph(model)
    # a full disk: torch says RuntimeError; a mismatch (ExportError) leaves no file either
    with replacing(path, writer_errors=(OSError, RuntimeError), own_scratch=True) as scratch:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                graph,
                example,
                str(scratch),
                input_names=names,
                output_names=[RESIDUAL],
                dynamic_axes={name: {0: 'batch'} for name in [*names, RESIDUAL]},
                opset_version=OPSET,
                dynamo=False,
            )
        proto = onnx.load(str(scratch))
        props = {'producer': 'rpl_trainer', 'rpl_version': __version__}
        if identity is not None:
            props.update(identity.to_props())
        props.update({str(k): str(v) for k, v in (metadata or {}).items()})
        # The graph's, whatever the caller said.
        props[RESIDUAL_SCALE] = repr(largest_scale(scale))
        per_axis = axis_scales(scale)
        props.pop(RESIDUAL_SCALES, None)
        if per_axis is not None:
            props[RESIDUAL_SCALES] = json.dumps(list(per_axis))
        onnx.helper.set_model_props(proto, props)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(scratch))
        difference = scaled_difference(scratch, model)
        if not difference <= TOLERANCE:
            raise ExportError(
                f'ONNX export of {path} differs from torch by {difference:.3g} of the residual '
                f'scale (> {TOLERANCE})'
            )
    return path


def scaled_difference(
    path: str | os.PathLike[str], model: ResidualModel, batch: int = 256, seed: int = 1
) -> float:
    """Largest |onnxruntime - torch| over random inputs of a batch, as a fraction of each
    output axis's scale (the export check)."""
    inputs = _example_inputs(model, batch=batch, seed=seed)
    with torch.no_grad():
        expected = _Graph(model)(*inputs).numpy()
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = model.input_names
    feeds = {name: x.numpy().astype(np.float32) for name, x in zip(names, inputs, strict=True)}
    (got,) = session.run([RESIDUAL], feeds)
    return float(np.max(np.abs(got - expected) / model.scale.numpy()))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an exported model."""
    proto = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in proto.metadata_props}
