"""The residual actor as an ONNX model, validated before use (onnxruntime only, no torch).

The model contract (written out in ``docs/onnx_contract.md``):

* inputs ``observation`` float32 (N, obs_dim) and ``desired_goal`` float32 (N, goal_dim);
  optionally ``previous_observation`` float32 (N, obs_dim) for two-frame models and
  ``base_action`` float32 (N, action_dim), the base action in action units, for models whose
  residual depends on it; a fixed-goal model (goal_dim 0) has no ``desired_goal`` input;
* one output ``residual`` float32 (N, action_dim), already in action units (observation
  clipping / normalisation and the ``scale * tanh`` are inside the graph);
* the batch dimension N may be symbolic or 1; the feature dimensions are fixed numbers.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import onnxruntime as ort

from rpl_residual_node.model_identity import (
    IdentityError,
    ModelIdentity,
    scale_excess,
    stated_reach,
)

OBSERVATION_INPUT = 'observation'
GOAL_INPUT = 'desired_goal'
PREVIOUS_OBSERVATION_INPUT = 'previous_observation'
BASE_ACTION_INPUT = 'base_action'
RESIDUAL_OUTPUT = 'residual'
# Metadata key the exporter writes: 'true' for a two-frame model (the graph must agree).
TWO_FRAME_KEY = 'two_frame'
FLOAT_TENSOR = 'tensor(float)'

# Probe inputs: all zeros, and a fixed spread of values the size of normalised observations.
_PROBE_SEED = 20190308


class ModelError(ValueError):
    """An ONNX file is missing, unreadable, or does not follow the actor contract."""


class ModelTooLargeError(ModelError):
    """An ONNX file is larger than the accepted size (it is not read)."""


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    """Low-latency options for batch-1 inference: one thread, sequential execution.

    Measured on the 2-core dev machine for a 3 x 256 MLP at batch 1: one intra-op thread
    is as fast as the default pool and does not spin a second core (see the README).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT warnings would flood the node log
    return options


def _feature_dim(path: str, arg: ort.NodeArg, expected: int | None, what: str) -> int:
    """Check that ``arg`` is float32 (N, dim) with a fixed dim, and return that dim."""
    if arg.type != FLOAT_TENSOR:
        raise ModelError(f'model {path}: {what} {arg.name!r} must be float32, got {arg.type}')
    shape = list(arg.shape)
    if len(shape) != 2:
        raise ModelError(
            f'model {path}: {what} {arg.name!r} must have shape (N, dim), got {shape}'
        )
    batch, dim = shape
    if isinstance(batch, int) and batch != 1:
        raise ModelError(
            f'model {path}: {what} {arg.name!r} batch dimension must be symbolic or 1, got {batch}'
        )
    if not isinstance(dim, int):
        if expected is None:
            raise ModelError(
                f'model {path}: {what} {arg.name!r} has a symbolic feature dimension '
                f'{dim!r}; export it with a fixed size'
            )
        return expected
    if expected is not None and dim != expected:
        raise ModelError(
            f'model {path}: {what} {arg.name!r} has {dim} features but {expected} were expected'
        )
    return dim


def _limit(max_bytes: int) -> str:
    return f'the limit of {max_bytes} bytes ({max_bytes / 2**20:g} MiB, max_model_bytes)'


def check_model_size(path: str, size: int, max_bytes: int) -> None:
    """Raise :class:`ModelTooLargeError` if a model file of ``size`` bytes is above the limit.

    Args:
        path: The file (for the message).
        size: Its size in bytes (from ``os.stat``: the file is not read).
        max_bytes: Largest accepted size in bytes.
    """
    if size > max_bytes:
        raise ModelTooLargeError(
            f'model file {path!r} is {size} bytes, more than {_limit(max_bytes)}: refused unread'
        )


class OnnxActor:
    """A validated residual actor: ``(observation, desired_goal[, previous][, base]) ->
    residual``.

    Build it with :meth:`load`; the constructor assumes an already validated session.

    Attributes:
        path: The model file.
        obs_dim: Observation size.
        goal_dim: Desired-goal size (0 for a fixed-goal model: no ``desired_goal`` input).
        action_dim: Residual size (from the graph, checked against the metadata).
        two_frame: The model takes ``previous_observation`` too.
        base_input: The model takes ``base_action`` too (the base action in action units).
        batched: The batch dimension is symbolic (any N), else fixed to 1.
        identity: What the model's metadata says it is (task, controller, field names...;
            all None for a model without that metadata).
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        path: str,
        obs_dim: int,
        goal_dim: int,
        action_dim: int | None,
        two_frame: bool,
        batched: bool,
        identity: ModelIdentity | None = None,
        base_input: bool = False,
    ) -> None:
        self._session = session
        self.path = path
        self.obs_dim = obs_dim
        self.goal_dim = goal_dim
        self.action_dim = action_dim
        self.two_frame = two_frame
        self.base_input = base_input
        self.batched = batched
        self.identity = identity if identity is not None else ModelIdentity()
        self._goal_input = any(arg.name == GOAL_INPUT for arg in session.get_inputs())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        obs_dim: int | None = None,
        goal_dim: int | None = None,
        action_dim: int | None = None,
        intra_op_threads: int = 1,
        max_bytes: int | None = None,
    ) -> OnnxActor:
        """Load an ONNX actor and validate it against the contract, including a probe run.

        Args:
            path: ONNX file.
            obs_dim: Expected observation size; ``None`` takes the model's (fixed) size.
            goal_dim: Expected desired-goal size (0: a fixed-goal model, which has no
                ``desired_goal`` input); ``None`` takes the model's size.
            action_dim: Expected residual size; ``None`` takes the model's (the graph's output
                size, else its metadata's ``action_fields``, else the probe's output).
            intra_op_threads: onnxruntime intra-op threads (1 = lowest batch-1 latency here).
            max_bytes: Largest accepted file size in bytes (None = no limit); a larger file
                is refused without reading it, and no more than this is ever read.

        Returns:
            The actor, which has produced a finite residual of shape (N, action_dim) on the
            probe inputs.

        Raises:
            ModelError: One sentence naming the file and what is wrong: missing file, not an
                ONNX model, wrong input/output names, dtypes or sizes, malformed identity
                metadata (see :mod:`rpl_residual_node.model_identity`), failed or non-finite
                probe; :class:`ModelTooLargeError` for a file above ``max_bytes``.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelError(f'model file {path!r} does not exist (or is not a file)')
        try:
            with open(path, 'rb') as handle:
                if max_bytes is None:
                    data = handle.read()
                else:
                    check_model_size(path, os.fstat(handle.fileno()).st_size, max_bytes)
                    data = handle.read(max_bytes + 1)  # never more, even if the file grows
                    if len(data) > max_bytes:
                        raise ModelTooLargeError(
                            f'model file {path!r} grew past {_limit(max_bytes)} while being '
                            'read: refused'
                        )
        except OSError as exc:
            raise ModelError(f'model file {path!r} cannot be read: {exc}') from exc
        try:
            session = ort.InferenceSession(
                data,
                sess_options=session_options(intra_op_threads),
                providers=['CPUExecutionProvider'],
            )
        except Exception as exc:  # onnxruntime raises plain Exception subclasses
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ModelError(
                f'model file {path!r} is not a valid ONNX model ({first_line})'
            ) from exc

        inputs = {arg.name: arg for arg in session.get_inputs()}
        names = set(inputs)
        required = {OBSERVATION_INPUT, GOAL_INPUT}
        optional = {PREVIOUS_OBSERVATION_INPUT, BASE_ACTION_INPUT}
        # Without the goal: a fixed-goal model.
        if OBSERVATION_INPUT not in names or not names <= required | optional:
            raise ModelError(
                f'model {path}: inputs must be {sorted(required)} (without '
                f'{GOAL_INPUT!r} for a fixed-goal model; plus optionally '
                f'{sorted(optional)}), got {sorted(names)}'
            )
        obs_dim = _feature_dim(path, inputs[OBSERVATION_INPUT], obs_dim, 'input')
        if GOAL_INPUT in inputs:
            goal_dim = _feature_dim(path, inputs[GOAL_INPUT], goal_dim, 'input')
        elif goal_dim not in (None, 0):
            raise ModelError(
                f'model {path}: has no {GOAL_INPUT!r} input (a fixed-goal model) but '
                f'{goal_dim} goal features were expected'
            )
        else:
            goal_dim = 0
        two_frame = PREVIOUS_OBSERVATION_INPUT in inputs
        if two_frame:
            _feature_dim(path, inputs[PREVIOUS_OBSERVATION_INPUT], obs_dim, 'input')
        base_input = BASE_ACTION_INPUT in inputs
        if base_input:
            action_dim = _feature_dim(path, inputs[BASE_ACTION_INPUT], action_dim, 'input')
        batched = all(not isinstance(arg.shape[0], int) for arg in inputs.values())

        outputs = session.get_outputs()
        if [arg.name for arg in outputs] != [RESIDUAL_OUTPUT]:
            raise ModelError(
                f'model {path}: must have exactly one output {RESIDUAL_OUTPUT!r}, '
                f'got {[arg.name for arg in outputs]}'
            )
        out_arg = outputs[0]
        if out_arg.type != FLOAT_TENSOR:
            raise ModelError(
                f'model {path}: output {RESIDUAL_OUTPUT!r} must be float32, got {out_arg.type}'
            )
        out_shape = list(out_arg.shape)
        graph_dim = out_shape[1] if len(out_shape) == 2 else None
        graph_dim = graph_dim if isinstance(graph_dim, int) else None  # None: symbolic
        if len(out_shape) != 2 or None not in (graph_dim, action_dim) and graph_dim != action_dim:
            wanted = 'action_dim' if action_dim is None else action_dim
            raise ModelError(
                f'model {path}: output {RESIDUAL_OUTPUT!r} must have shape (N, {wanted}), '
                f'got {out_shape}'
            )

        props = session.get_modelmeta().custom_metadata_map
        try:
            identity = ModelIdentity.from_props(props)
        except IdentityError as exc:
            raise ModelError(f'model {path}: {exc}') from exc
        stated = props.get(TWO_FRAME_KEY)  # the exporter's note; the graph decides
        if stated is not None and stated not in ('true', 'false'):
            raise ModelError(
                f"model {path}: metadata {TWO_FRAME_KEY!r} must be 'true' or 'false', got "
                f'{stated!r}'
            )
        if stated is not None and stated != str(two_frame).lower():
            has = 'has' if two_frame else 'has no'
            raise ModelError(
                f'model {path}: metadata {TWO_FRAME_KEY!r} is {stated!r} but the graph {has} '
                f'{PREVIOUS_OBSERVATION_INPUT!r} input'
            )
        if action_dim is None:
            action_dim = graph_dim
        if action_dim is None and identity.action_fields is not None:
            action_dim = len(identity.action_fields)
        actor = cls(
            session, path, obs_dim, goal_dim, action_dim, two_frame, batched, identity, base_input
        )
        actor._probe()  # sets action_dim from the output when neither graph nor metadata did
        for what, names, dim in (
            ('observation_fields', identity.observation_fields, obs_dim),
            ('goal_fields', identity.goal_fields, goal_dim),
            ('action_fields', identity.action_fields, actor.action_dim),
        ):
            if names is not None and len(names) != dim:
                raise ModelError(
                    f'model {path}: its metadata names {len(names)} {what} but the graph has {dim}'
                )
        return actor

    def _probe(self) -> None:
        """Run the probe inputs; raise ModelError unless finite (N, action_dim) comes out."""
        rng = np.random.default_rng(_PROBE_SEED)
        batch = 2 if self.batched else 1
        probes = [
            (np.zeros((1, self.obs_dim)), np.zeros((1, self.goal_dim))),
            (rng.normal(size=(batch, self.obs_dim)), rng.normal(size=(batch, self.goal_dim))),
        ]
        for observation, goal in probes:
            base = np.zeros((observation.shape[0], self.action_dim or 0))
            try:
                residual = self._run(observation, goal, observation, base)
            except Exception as exc:
                raise ModelError(f'model {self.path}: probe inference failed ({exc})') from exc
            if self.action_dim is None and residual.ndim == 2 and residual.shape[1] > 0:
                self.action_dim = int(residual.shape[1])
            expected = (observation.shape[0], self.action_dim)
            if residual.shape != expected:
                raise ModelError(
                    f'model {self.path}: probe output has shape {residual.shape}, '
                    f'expected {expected}'
                )
            if not np.all(np.isfinite(residual)):
                raise ModelError(f'model {self.path}: probe output is not finite: {residual}')
            if excess := scale_excess(self.identity, residual):
                raise ModelError(f'model {self.path}: on the probe inputs {excess}')

    def _run(
        self, observation: np.ndarray, goal: np.ndarray, previous: np.ndarray, base: np.ndarray
    ) -> np.ndarray:
        feeds = {OBSERVATION_INPUT: np.ascontiguousarray(observation, dtype=np.float32)}
        if self._goal_input:
            feeds[GOAL_INPUT] = np.ascontiguousarray(goal, dtype=np.float32)
        if self.two_frame:
            feeds[PREVIOUS_OBSERVATION_INPUT] = np.ascontiguousarray(previous, dtype=np.float32)
        if self.base_input:
            feeds[BASE_ACTION_INPUT] = np.ascontiguousarray(base, dtype=np.float32)
        (residual,) = self._session.run([RESIDUAL_OUTPUT], feeds)
        return residual

    def __call__(
        self,
        observation: np.ndarray,
        desired_goal: np.ndarray | None,
        previous_observation: np.ndarray | None = None,
        base_action: np.ndarray | None = None,
    ) -> np.ndarray:
        """Residual for one or a batch of observations.

        Args:
            observation: Shape (obs_dim,) or (N, obs_dim).
            desired_goal: Shape (goal_dim,) or (N, goal_dim); for a fixed-goal model
                (goal_dim 0) None or any empty array.
            previous_observation: Previous step's observation for two-frame models, same
                shape as ``observation``; ``None`` feeds ``observation`` (episode start).
                Ignored by one-frame models.
            base_action: The base action in action units, shape (action_dim,) or
                (N, action_dim); required by models with :attr:`base_input`, ignored by
                the others.

        Returns:
            Residual in action units, float64, shape (action_dim,) or (N, action_dim).
            May be non-finite: the caller decides the fallback.

        Raises:
            ValueError: Input sizes do not match the model, or a model with
                :attr:`base_input` got no base action.
        """
        observation = np.asarray(observation)
        single = observation.ndim == 1
        obs = np.atleast_2d(observation)
        if self.goal_dim == 0 and (desired_goal is None or np.size(desired_goal) == 0):
            goal = np.zeros((obs.shape[0], 0))
        else:
            goal = np.atleast_2d(np.asarray(desired_goal))
        prev = obs if previous_observation is None else np.atleast_2d(previous_observation)
        checks = [
            ('observation', obs, self.obs_dim),
            ('desired_goal', goal, self.goal_dim),
            ('previous_observation', prev, self.obs_dim),
        ]
        if self.base_input:
            if base_action is None:
                raise ValueError(f'model {self.path} needs the base action as an input')
            base = np.atleast_2d(np.asarray(base_action))
            checks.append(('base_action', base, self.action_dim))
        else:
            base = np.zeros((obs.shape[0], 0))
        for label, array, dim in checks:
            if array.ndim != 2 or array.shape != (obs.shape[0], dim):
                raise ValueError(
                    f'{label} must have shape ({obs.shape[0]}, {dim}) for model {self.path}, '
                    f'got {array.shape}'
                )
        if not self.batched and obs.shape[0] != 1:
            return np.concatenate(
                [
                    self(obs[i], goal[i], prev[i], base[i] if self.base_input else None)[None]
                    for i in range(obs.shape[0])
                ]
            )
        residual = self._run(obs, goal, prev, base).astype(np.float64)
        return residual[0] if single else residual

    @functools.cached_property
    def reach(self) -> np.ndarray | None:
        """The largest residual per axis this model states it outputs
        (:func:`~rpl_residual_node.model_identity.stated_reach`), once per model: the node
        and the in-process policy check every step against it."""
        return stated_reach(self.identity, self.action_dim or 0)

    def describe(self) -> str:
        """One line: file, sizes and frames, for logs and diagnostics."""
        frames = 'two-frame' if self.two_frame else 'one-frame'
        sees_base = ', sees the base action' if self.base_input else ''
        return (
            f'{os.path.basename(self.path)} (obs {self.obs_dim}, goal {self.goal_dim}, '
            f'action {self.action_dim}, {frames}{sees_base})'
        )
