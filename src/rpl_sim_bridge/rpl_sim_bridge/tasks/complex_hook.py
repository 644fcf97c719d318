"""``complex_hook``: the hook task with a different object and new table bumps every episode.

Spec and settings: :mod:`rpl_sim_bridge.tasks.complex_hook_specs`; objects and bump sampling,
and ReactiveHook's measured success with the reasons it fails:
:mod:`rpl_sim_bridge.tasks.object_library`. Observation, goal, action, noise-free physics and
episode length are :class:`~rpl_sim_bridge.tasks.hook.HookTask`'s; neither the object's
identity nor the bumps are observed.

How the object changes without a new model. The scene is compiled once with a body
``object0`` of :data:`~rpl_sim_bridge.tasks.object_library.MAX_GEOMS` geom slots and
:data:`MAX_BUMPS` static bump bodies. At a reset that picks another object, its slots are
overwritten from a small model compiled from the object alone (cached per object): geom type,
size, pose, bounding volumes, friction, collision bits, colour, and the body's mass and
inertia; ``mj_setConst`` then recomputes the constants that depend on them (invweights,
``dof_M0``, subtree masses). tests/test_complex_hook.py checks that the result equals, array
for array, a model compiled with that object. MuJoCo's midphase is disabled in this task: its
per-body bounding-volume trees are built at compile time from the geoms' original shapes and
poses and would go stale (the broadphase and the bounding-sphere test use the per-geom
values written here). Unused slots and bumps have no collision bits, no mass and alpha 0
(the bodies keep the bits they were compiled with: see :func:`bumps_xml`). One model and one
``MjData`` for the task's life (``task.model`` never changes), a few kB per cached object
instead of a 9 MB model (mostly the robot's meshes) per object.

A reset, in order (all draws from the environment's generator, so ``reset(seed)`` reproduces
object, bumps and observations): the hook task's reset (block xy, goal), the object index
(uniform over the library), its yaw (uniform in [-pi, pi)), the bumps
(:func:`~rpl_sim_bridge.tasks.object_library.sample_bumps`, clear of the object's and the
hook's start footprints by 1 cm, so nothing starts interpenetrating). The object starts
upright (its library pose turned by the yaw about the vertical) with its lowest point on the
table top and its reference point (site ``object0``) where the block's centre would be.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from rpl_interfaces.params import build_config
from rpl_sim_bridge.tasks.complex_hook_specs import (
    COMPLEX_HOOK_DESCRIPTION,
    COMPLEX_HOOK_NAME,
    ComplexHookTaskConfig,
)
from rpl_sim_bridge.tasks.hook import BLOCK_XY, TABLE_POS, TABLE_TOP_Z, HookTask
from rpl_sim_bridge.tasks.object_library import (
    MAX_GEOMS,
    REFERENCE_HEIGHT,
    Bumps,
    LibraryObject,
    object_body_mjcf,
    object_library,
    sample_bumps,
)

MAX_BUMPS = 15
"""Bump bodies in the model (the most bumps an episode can have)."""

BUMP_SPREAD = 0.3
"""Largest offset of a bump centre from the table centre along x and y, m."""

KEEP_CLEAR_MARGIN = 0.01
"""Gap kept between a bump and the object's or hook's start footprint, m."""

_BUMP_RGBA = (0.45, 0.3, 0.2, 1.0)
_HIDDEN = (0.0, 0.0, 0.0, 0.0)

# Per-geom and per-body model fields copied from an object's own model into the slots.
_GEOM_FIELDS = (
    'geom_type',
    'geom_contype',
    'geom_conaffinity',
    'geom_condim',
    'geom_group',
    'geom_priority',
    'geom_sameframe',
    'geom_solmix',
    'geom_solref',
    'geom_solimp',
    'geom_margin',
    'geom_gap',
    'geom_friction',
    'geom_size',
    'geom_aabb',
    'geom_rbound',
    'geom_pos',
    'geom_quat',
    'geom_rgba',
)
_BODY_FIELDS = (
    'body_mass',
    'body_inertia',
    'body_ipos',
    'body_iquat',
    'body_sameframe',
    'body_simple',
)


def bumps_xml(count: int = MAX_BUMPS) -> str:
    """MJCF of ``count`` static bump bodies ``bump<k>`` (one box geom each, inside the table,
    invisible) for :class:`ComplexHookTask` to place or disable.

    The geoms are compiled WITH collision bits: MuJoCo ORs them into the body's own bits
    (``body_contype``), which filter body pairs before any geom is looked at, so a bump
    compiled without them would never collide whatever its geom's bits say later.
    """
    hidden = f'{TABLE_POS[0]} {TABLE_POS[1]} {TABLE_POS[2]}'
    return '\n'.join(
        f'<body name="bump{k}"><geom name="bump{k}" type="box" size="0.01 0.01 0.0025" '
        f'pos="{hidden}" rgba="0 0 0 0" condim="3"/></body>'
        for k in range(count)
    )


def _object_model(obj: LibraryObject) -> mujoco.MjModel:
    """A model of the object alone (its body is body 1, its geoms 0..MAX_GEOMS-1)."""
    body = object_body_mjcf(obj, pad_to=MAX_GEOMS)
    return mujoco.MjModel.from_xml_string(f'<mujoco><worldbody>{body}</worldbody></mujoco>')


class ComplexHookTask(HookTask):
    """The hook task with a library object instead of the block and random static bumps.

    ``get_state`` / ``set_state`` hold the physics state only: the object and the bumps are
    model values of the current episode, so a state restored from another episode keeps the
    current episode's object and bumps.

    Attributes:
        library: The objects a reset chooses from (``config.library_size`` of library
            ``config.library_seed``).
        object_body_id: Id of the object body ``object0``.
        object_geom_ids: Ids of its :data:`MAX_GEOMS` geom slots.
        bump_geom_ids: Ids of the :data:`MAX_BUMPS` bump geoms.
    """

    def __init__(self, config: ComplexHookTaskConfig) -> None:
        """Build the task (compiles the scene once; objects are swapped in at reset)."""
        library = object_library(config.library_seed, config.library_size)
        start = (*BLOCK_XY, TABLE_TOP_Z + REFERENCE_HEIGHT)
        super().__init__(
            COMPLEX_HOOK_NAME,
            COMPLEX_HOOK_DESCRIPTION,
            config,
            object_xml=object_body_mjcf(library[0], start, pad_to=MAX_GEOMS),
            extra_xml=bumps_xml(),
        )
        self.library = library
        m = self.model
        m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_MIDPHASE)
        self.object_body_id = m.body('object0').id
        first = int(m.body_geomadr[self.object_body_id])
        self.object_geom_ids = np.arange(first, first + MAX_GEOMS)
        self.bump_geom_ids = np.array([m.geom(f'bump{k}').id for k in range(MAX_BUMPS)])
        joint = m.joint('object0:joint')
        self._object_qpos = int(joint.qposadr[0])
        self._object_dof = int(joint.dofadr[0])
        self._object_models: dict[int, mujoco.MjModel] = {}
        self._hook_rect = self._footprint(self.hook_geom_ids)
        self._object_index = -1
        self._swap_object(0)  # FetchTask set slot 0's friction to the block's: write it all
        self._bumps = Bumps(np.zeros((0, 3)), np.zeros((0, 3)))
        self._place_bumps(self._bumps)

    # ------------------------------------------------------------------------ what varies
    @property
    def object_index(self) -> int:
        """Library index of the current object (not part of the observation)."""
        return self._object_index

    @property
    def current_object(self) -> LibraryObject:
        """The current object's description (not part of the observation)."""
        return self.library[self._object_index]

    @property
    def bumps(self) -> Bumps:
        """The current episode's bumps (copies; not part of the observation)."""
        return Bumps(self._bumps.centres.copy(), self._bumps.half_sizes.copy())

    # ---------------------------------------------------------------------------- reset
    def _reset_physics(self, seed: int | None) -> None:
        super()._reset_physics(seed)  # seeds the generator; block xy, goal
        m, d = self.model, self.data
        rng = self._env.np_random
        index = int(rng.integers(len(self.library)))
        obj = self.library[index]
        yaw = float(rng.uniform(-np.pi, np.pi))  # rad, about the vertical
        q = self._object_qpos
        xy = d.qpos[q : q + 2].copy()
        turn = np.abs([[np.cos(yaw), np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        half = turn @ np.asarray(obj.half_extents[:2]) + KEEP_CLEAR_MARGIN
        object_rect = (xy[0] - half[0], xy[0] + half[0], xy[1] - half[1], xy[1] + half[1])
        config: ComplexHookTaskConfig = self.config
        bumps = sample_bumps(
            rng,
            (config.bump_count_min, config.bump_count_max),
            table_centre=TABLE_POS[:2],
            table_top=TABLE_TOP_Z,
            spread=BUMP_SPREAD,
            keep_clear=(object_rect, self._hook_rect),
        )
        self._swap_object(index)
        self._place_bumps(bumps)
        d.qpos[q + 2] = TABLE_TOP_Z + REFERENCE_HEIGHT
        d.qpos[q + 3 : q + 7] = (np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0))
        d.qvel[self._object_dof : self._object_dof + 6] = 0.0
        mujoco.mj_forward(m, d)
        self._warnings_seen = d.warning.number.copy()

    def _swap_object(self, index: int) -> None:
        """Write library object ``index`` into the object slots (state kept)."""
        if index == self._object_index:
            return
        small = self._object_models.get(index)
        if small is None:
            small = self._object_models[index] = _object_model(self.library[index])
        m, g, b = self.model, self.object_geom_ids, self.object_body_id
        for field in _GEOM_FIELDS:
            getattr(m, field)[g] = getattr(small, field)
        for field in _BODY_FIELDS:
            getattr(m, field)[b] = getattr(small, field)[1]
        state = self.get_state()
        mujoco.mj_setConst(m, self.data)  # uses (and overwrites) data at qpos0
        self.set_state(state)
        self._object_index = index

    def _place_bumps(self, bumps: Bumps) -> None:
        """Enable one bump geom per bump (size, position, bounds), disable the rest."""
        m, ids = self.model, self.bump_geom_ids
        n = len(bumps.centres)
        if n > len(ids):
            raise ValueError(f'{n} bumps, but the model has {len(ids)} bump geoms')
        used, unused = ids[:n], ids[n:]
        m.geom_size[used] = bumps.half_sizes
        m.geom_pos[used] = bumps.centres
        m.geom_aabb[used, :3] = 0.0
        m.geom_aabb[used, 3:] = bumps.half_sizes
        m.geom_rbound[used] = np.linalg.norm(bumps.half_sizes, axis=1)
        m.geom_contype[used] = 1
        m.geom_conaffinity[used] = 1
        m.geom_rgba[used] = _BUMP_RGBA
        m.geom_contype[unused] = 0
        m.geom_conaffinity[unused] = 0
        m.geom_rgba[unused] = _HIDDEN
        m.geom_pos[unused] = TABLE_POS
        self._bumps = Bumps(bumps.centres.copy(), bumps.half_sizes.copy())

    def _footprint(self, geom_ids: np.ndarray) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) around box geoms now, plus the margin, m."""
        d, m = self.data, self.model
        lows, highs = [], []
        for g in geom_ids:
            half = np.abs(d.geom_xmat[g].reshape(3, 3)) @ m.geom_size[g]
            lows.append(d.geom_xpos[g] - half)
            highs.append(d.geom_xpos[g] + half)
        low = np.min(lows, axis=0) - KEEP_CLEAR_MARGIN
        high = np.max(highs, axis=0) + KEEP_CLEAR_MARGIN
        return (float(low[0]), float(high[0]), float(low[1]), float(high[1]))


def make_complex_hook_task(name: str = COMPLEX_HOOK_NAME, **overrides: Any) -> ComplexHookTask:
    """Build ``complex_hook`` with config overrides (:class:`ComplexHookTaskConfig` names);
    ``name`` is the registered name (the factory's signature; only ``complex_hook`` exists).

    Raises:
        rpl_interfaces.params.ParameterError: Unknown override name or bad value.
    """
    return ComplexHookTask(build_config(ComplexHookTaskConfig, overrides))
