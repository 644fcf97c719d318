"""Procedurally generated objects and table bumps for the ComplexHook task (pure numpy).

The 2019 ComplexHook swapped the hook task's block for one of ~100 downloaded meshes at every
reset. Those meshes are not available, so this module generates a library of objects from
primitive MuJoCo geoms instead, deterministically from ``(library_seed, index)``, and ships it
as code (no mesh files). It also samples the random static "bumps" (thin boxes) put on the
table at every reset. Nothing here imports MuJoCo; :func:`object_body_mjcf` writes MJCF text.

Kinds (``KINDS``, assigned round-robin over the index, so a library of 100 holds 8 or 9 of
each): solid ``box``, ``composite_box`` (L, T or step made of 2-3 boxes), upright
``cylinder``, lying ``capsule`` (rolls), flat ``ellipsoid``, ``sphere`` (rolls), ``dumbbell``
(two spheres on a bar, rolls), and the concave assemblies ``bowl`` (disk + 8 outward-tilted
wall boxes), ``cup`` (disk + 8 walls + handle), ``tray`` (open box of 5 boxes), ``chair``
(seat, 4 legs, backrest) and ``stool`` (round top on 3 legs).

Ranges (each object draws its own):

* Bounding box (:attr:`LibraryObject.half_extents`): 2.5-8 cm across in x and y (objects
  drawn wider than :data:`MAX_HALF_WIDTH` are shrunk as a whole), 1.4-8 cm high, like the
  5 cm block it replaces.
* Mass: log-uniform in [0.1, 2.0] kg (the Fetch block is 2 kg), spread over the geoms in
  proportion to their volume (MuJoCo computes the inertia from that).
* Sliding friction: uniform in [0.1, 1.0] (from SlipperyPush's 0.18 and below to the Fetch
  block's 1.0). The object's geoms get MuJoCo ``priority`` 1, so their friction (not the
  max with the table's 1.0) governs every contact of the object: table, bumps, hook and
  fingers.

Reference point: the body frame (and the site ``object0``, which gives the achieved goal) is
at the centre of the bounding box in x and y and :data:`REFERENCE_HEIGHT` (0.025 m, the block's
centre height) above the object's lowest point, so an upright object resting on the table has
its achieved goal at the same height as the block's, whatever its size.

Bumps (:func:`sample_bumps`): 5-15 per episode, half-sizes uniform in 1-5 cm (x, y) and
4-5 mm (z), i.e. 2-10 cm square footprints 8-10 mm high, centres within 0.3 m of the table
centre, none overlapping the object's or the hook's start footprint.

Measured: ReactiveHook on ``complex_hook``, 200 episodes, seeds 100000 + i
(``rpl eval --task complex_hook --controller reactive_hook --episodes 200 --seed 100000``):
success 0.735 (95% CI 0.670-0.791), mean final distance 0.073 m; the paper reports about
0.55, the project's band is 0.40-0.70. Why it fails, from the same 200 episodes:

* The bumps, not the objects. With ``bump_count_min = bump_count_max = 0`` the episodes keep
  their objects, yaws, block positions and goals (all drawn before the bumps) and succeed
  0.970; 49 of the 53 failures happen only with bumps. An object's flat edge catches on a
  bump between it and the goal, the sweep stalls or turns the object off the hook's head,
  and the controller's re-placing of the hook runs out of the 100 steps (23 failures end
  within 0.1 m of the goal) or flings hook and object off the table (6).
* Bump height is what matters: bumps 5-10 mm high (z half-size 2.5-5 mm) gave 0.805 on the
  same seeds, 8-10 mm gives 0.735; larger footprints (2-5 cm half-sizes) did not lower it
  further (0.760). Lower bumps are ridden over, which is why the floor is 8 mm.
* Among the objects, flat-bottomed boxes catch most (box 0.59; tray 0.89, bowl 0.88 whose
  walls or rims ride up); low friction (< 0.55) 0.67 vs 0.79 (overshoot after the sweep);
  mass makes no difference (0.74 vs 0.73 below and above the median).
* What is not modelled: the 2019 env set the object's initial joint height to 0.6 m (its
  irregular meshes fell onto the table at the start of the episode and landed anywhere);
  here every object starts resting upright, which keeps resets reproducible and stable but
  is probably why the controller still does better than the paper's ~0.55.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

REFERENCE_HEIGHT = 0.025
"""Height of an object's reference point (body origin, site ``object0``) above its lowest
point, m."""

MASS_RANGE = (0.1, 2.0)
"""Object mass range, kg (log-uniform)."""

FRICTION_RANGE = (0.1, 1.0)
"""Object sliding friction range (uniform); torsional and rolling stay at MuJoCo's defaults."""

MAX_HALF_WIDTH = 0.04
"""Largest bounding half-extent of an object along x or y, m (objects drawn wider are shrunk
as a whole to it)."""

MAX_GEOMS = 12
"""Most primitive geoms of one library object (the ComplexHook model reserves this many)."""

GEOM_TYPES = ('sphere', 'capsule', 'ellipsoid', 'cylinder', 'box')
"""MuJoCo geom types a library object may use."""

KINDS = (
    'box',
    'composite_box',
    'cylinder',
    'capsule',
    'ellipsoid',
    'sphere',
    'dumbbell',
    'bowl',
    'cup',
    'tray',
    'chair',
    'stool',
)
"""Object kinds, assigned to library indices round-robin."""

CONCAVE_KINDS = ('bowl', 'cup', 'tray', 'chair', 'stool')
"""Kinds that are assemblies with a concave outline."""

_IDENTITY = (1.0, 0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Primitive:
    """One primitive geom of an object.

    Attributes:
        shape: MuJoCo geom type, one of :data:`GEOM_TYPES`.
        size: MuJoCo ``size`` (3,), m: sphere (r, 0, 0); capsule and cylinder (r, half-length,
            0) along the geom's z axis; ellipsoid and box: half-axes / half-sizes (x, y, z).
        pos: Centre in the object's body frame (3,), m.
        quat: Orientation in the body frame, unit quaternion (w, x, y, z).
    """

    shape: str
    size: tuple[float, float, float]
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float] = _IDENTITY


@dataclasses.dataclass(frozen=True)
class LibraryObject:
    """Frozen description of one generated object.

    Attributes:
        name: ``'<kind>_<index>'``, unique in a library.
        kind: One of :data:`KINDS`.
        geoms: Its primitives, at most :data:`MAX_GEOMS`, in the body frame (origin = the
            reference point, see the module docstring).
        mass: Total mass, kg.
        friction: Sliding friction of all its geoms.
        half_extents: Half-sizes of its axis-aligned bounding box in the body frame (3,), m;
            the box is centred on the origin in x and y, and its bottom is at
            ``-REFERENCE_HEIGHT``.
        rgba: Colour (4,).
    """

    name: str
    kind: str
    geoms: tuple[Primitive, ...]
    mass: float
    friction: float
    half_extents: tuple[float, float, float]
    rgba: tuple[float, float, float, float]

    @property
    def volumes(self) -> np.ndarray:
        """Volume of each geom (n_geoms,), m^3 (overlaps counted twice)."""
        return np.array([primitive_volume(g) for g in self.geoms])

    @property
    def geom_masses(self) -> np.ndarray:
        """Mass of each geom (n_geoms,), kg: the total split in proportion to volume."""
        volumes = self.volumes
        return self.mass * volumes / volumes.sum()


# ------------------------------------------------------------------------------ geometry
def _quat_mul(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    )


def _axis_quat(axis: int, angle: float) -> tuple[float, float, float, float]:
    """Rotation by ``angle`` (rad) about body axis 0 (x), 1 (y) or 2 (z)."""
    q = [math.cos(angle / 2.0), 0.0, 0.0, 0.0]
    q[1 + axis] = math.sin(angle / 2.0)
    return (q[0], q[1], q[2], q[3])


def _rotation(quat: Sequence[float]) -> np.ndarray:
    """Rotation matrix (3, 3) of a unit quaternion (w, x, y, z)."""
    w, x, y, z = quat
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def primitive_half_extents(geom: Primitive) -> np.ndarray:
    """Half-sizes (3,) of the axis-aligned box around a primitive in its parent frame, m."""
    rot = _rotation(geom.quat)
    s = np.asarray(geom.size, dtype=np.float64)
    if geom.shape == 'sphere':
        return np.full(3, s[0])
    if geom.shape == 'box':
        return np.abs(rot) @ s
    if geom.shape == 'ellipsoid':
        return np.sqrt((rot**2) @ (s**2))
    axis = np.abs(rot[:, 2])  # world components of the geom's z axis
    if geom.shape == 'capsule':
        return s[1] * axis + s[0]
    if geom.shape == 'cylinder':
        return s[1] * axis + s[0] * np.sqrt(np.clip(1.0 - axis**2, 0.0, 1.0))
    raise ValueError(f'unknown primitive shape {geom.shape!r}; expected one of {GEOM_TYPES}')


def primitive_volume(geom: Primitive) -> float:
    """Volume of a primitive, m^3."""
    r, h, c = geom.size
    if geom.shape == 'sphere':
        return 4.0 / 3.0 * math.pi * r**3
    if geom.shape == 'box':
        return 8.0 * r * h * c
    if geom.shape == 'ellipsoid':
        return 4.0 / 3.0 * math.pi * r * h * c
    if geom.shape == 'cylinder':
        return math.pi * r * r * 2.0 * h
    if geom.shape == 'capsule':
        return math.pi * r * r * 2.0 * h + 4.0 / 3.0 * math.pi * r**3
    raise ValueError(f'unknown primitive shape {geom.shape!r}; expected one of {GEOM_TYPES}')


def _geom(shape: str, size: Sequence[float], pos: Sequence[float], quat=_IDENTITY) -> Primitive:
    padded = (*(float(v) for v in size), 0.0, 0.0)[:3]
    return Primitive(shape, padded, tuple(float(v) for v in pos), tuple(float(v) for v in quat))


def _yawed(geoms: list[Primitive], yaw: float) -> list[Primitive]:
    """The geoms turned by ``yaw`` (rad) about the z axis of their frame."""
    q = _axis_quat(2, yaw)
    rot = _rotation(q)
    return [
        Primitive(g.shape, g.size, tuple(rot @ np.asarray(g.pos)), _quat_mul(q, g.quat))
        for g in geoms
    ]


# --------------------------------------------------------------------------- the kinds
# Each builder draws one object of its kind with its lowest point at z ~ 0 (the common
# normalisation in make_object moves it exactly); sizes in m.
def _box(rng: np.random.Generator) -> list[Primitive]:
    half = (rng.uniform(0.015, 0.035), rng.uniform(0.015, 0.035), rng.uniform(0.012, 0.03))
    return _yawed([_geom('box', half, (0, 0, half[2]))], rng.uniform(0, math.pi / 2))


def _composite_box(rng: np.random.Generator) -> list[Primitive]:
    hx, hy, hz = rng.uniform(0.025, 0.038), rng.uniform(0.012, 0.025), rng.uniform(0.008, 0.018)
    geoms = [_geom('box', (hx, hy, hz), (0, 0, hz))]
    shape = rng.integers(3)
    if shape == 0:  # L: an upright block on one end
        ax, az = rng.uniform(0.008, 0.014), rng.uniform(0.01, 0.02)
        geoms.append(_geom('box', (ax, hy, az), (hx - ax, 0, 2 * hz + az)))
    elif shape == 1:  # T: a cross bar at one end, same height
        bx, by = rng.uniform(0.006, 0.012), rng.uniform(hy + 0.008, 0.038)
        geoms.append(_geom('box', (bx, by, hz), (hx + bx, 0, hz)))
    else:  # step: two lower blocks beside a taller middle
        sx = hx / 3.0
        geoms = [
            _geom('box', (sx, hy, hz), (-2 * sx, 0, hz)),
            _geom('box', (sx, hy, 1.6 * hz), (0, 0, 1.6 * hz)),
            _geom('box', (sx, hy, hz), (2 * sx, 0, hz)),
        ]
    return _yawed(geoms, rng.uniform(0, math.pi))


def _cylinder(rng: np.random.Generator) -> list[Primitive]:
    r, h = rng.uniform(0.015, 0.035), rng.uniform(0.012, 0.035)
    return [_geom('cylinder', (r, h), (0, 0, h))]


def _capsule(rng: np.random.Generator) -> list[Primitive]:
    r, h = rng.uniform(0.012, 0.02), rng.uniform(0.006, 0.018)
    lying = _axis_quat(1, math.pi / 2)  # axis along x
    return _yawed([_geom('capsule', (r, h), (0, 0, r), lying)], rng.uniform(0, math.pi))


def _ellipsoid(rng: np.random.Generator) -> list[Primitive]:
    a, b, c = rng.uniform(0.02, 0.038), rng.uniform(0.018, 0.032), rng.uniform(0.012, 0.022)
    return _yawed([_geom('ellipsoid', (a, b, c), (0, 0, c))], rng.uniform(0, math.pi))


def _sphere(rng: np.random.Generator) -> list[Primitive]:
    r = rng.uniform(0.016, 0.032)
    return [_geom('sphere', (r,), (0, 0, r))]


def _dumbbell(rng: np.random.Generator) -> list[Primitive]:
    r, bar_r = rng.uniform(0.012, 0.018), rng.uniform(0.004, 0.007)
    half_length = rng.uniform(0.018, 0.038 - r)
    lying = _axis_quat(1, math.pi / 2)
    geoms = [
        _geom('sphere', (r,), (-half_length, 0, r)),
        _geom('sphere', (r,), (half_length, 0, r)),
        _geom('cylinder', (bar_r, half_length), (0, 0, r), lying),
    ]
    return _yawed(geoms, rng.uniform(0, math.pi))


def _ring(n: int, radius: float, wall: float, half_height: float, z0: float, tilt: float):
    """``n`` wall boxes on a circle of ``radius`` (m, at their bottom), tilted outward by
    ``tilt`` (rad), bottoms at height ``z0``."""
    half_width = radius * math.tan(math.pi / n) + wall
    geoms = []
    for k in range(n):
        yaw = 2.0 * math.pi * k / n
        centre = np.array(
            [radius + half_height * math.sin(tilt), 0.0, z0 + half_height * math.cos(tilt)]
        )
        geoms.append(_geom('box', (wall, half_width, half_height), centre, _axis_quat(1, tilt)))
        geoms[-1:] = _yawed(geoms[-1:], yaw)
    return geoms


def _bowl(rng: np.random.Generator) -> list[Primitive]:
    base_r, base_h = rng.uniform(0.015, 0.022), rng.uniform(0.003, 0.005)
    tilt = rng.uniform(0.3, 0.6)
    wall_h = rng.uniform(0.008, 0.014)
    geoms = [_geom('cylinder', (base_r, base_h), (0, 0, base_h))]
    geoms += _ring(8, base_r, 0.003, wall_h, 0.0, tilt)
    return geoms


def _cup(rng: np.random.Generator) -> list[Primitive]:
    r, base_h = rng.uniform(0.016, 0.026), 0.004
    wall_h = rng.uniform(0.014, 0.03)
    geoms = [_geom('cylinder', (r, base_h), (0, 0, base_h))]
    geoms += _ring(8, r, 0.0025, wall_h, 0.0, 0.0)
    handle_h = 0.6 * wall_h
    geoms.append(_geom('box', (0.006, 0.003, handle_h), (r + 0.008, 0, wall_h)))
    return _yawed(geoms, rng.uniform(0, 2 * math.pi))


def _tray(rng: np.random.Generator) -> list[Primitive]:
    hx, hy = rng.uniform(0.022, 0.038), rng.uniform(0.018, 0.034)
    base, wall, wall_h = 0.004, 0.003, rng.uniform(0.008, 0.018)
    z = 2 * base + wall_h
    geoms = [
        _geom('box', (hx, hy, base), (0, 0, base)),
        _geom('box', (wall, hy, wall_h), (hx - wall, 0, z)),
        _geom('box', (wall, hy, wall_h), (-hx + wall, 0, z)),
        _geom('box', (hx - 2 * wall, wall, wall_h), (0, hy - wall, z)),
        _geom('box', (hx - 2 * wall, wall, wall_h), (0, -hy + wall, z)),
    ]
    return _yawed(geoms, rng.uniform(0, math.pi))


def _chair(rng: np.random.Generator) -> list[Primitive]:
    hx, hy, seat = rng.uniform(0.018, 0.03), rng.uniform(0.018, 0.03), 0.004
    leg_r, leg_h = rng.uniform(0.003, 0.005), rng.uniform(0.01, 0.018)
    back_h = rng.uniform(0.012, 0.022)
    geoms = [_geom('box', (hx, hy, seat), (0, 0, 2 * leg_h + seat))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            geoms.append(
                _geom('cylinder', (leg_r, leg_h), (sx * (hx - leg_r), sy * (hy - leg_r), leg_h))
            )
    geoms.append(
        _geom('box', (0.003, hy, back_h), (-hx + 0.003, 0, 2 * leg_h + 2 * seat + back_h))
    )
    return _yawed(geoms, rng.uniform(0, 2 * math.pi))


def _stool(rng: np.random.Generator) -> list[Primitive]:
    r, top = rng.uniform(0.02, 0.035), rng.uniform(0.003, 0.006)
    leg_r, leg_h = rng.uniform(0.003, 0.005), rng.uniform(0.012, 0.025)
    geoms = [_geom('cylinder', (r, top), (0, 0, 2 * leg_h + top))]
    for k in range(3):
        angle = 2.0 * math.pi * k / 3
        at = r - leg_r - 0.002
        geoms.append(
            _geom('cylinder', (leg_r, leg_h), (at * math.cos(angle), at * math.sin(angle), leg_h))
        )
    return _yawed(geoms, rng.uniform(0, 2 * math.pi))


_BUILDERS = {
    'box': _box,
    'composite_box': _composite_box,
    'cylinder': _cylinder,
    'capsule': _capsule,
    'ellipsoid': _ellipsoid,
    'sphere': _sphere,
    'dumbbell': _dumbbell,
    'bowl': _bowl,
    'cup': _cup,
    'tray': _tray,
    'chair': _chair,
    'stool': _stool,
}
assert tuple(_BUILDERS) == KINDS


def _bounds(geoms: Sequence[Primitive]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest corner (3,) each of the axis-aligned box around the geoms, m."""
    centres = np.array([g.pos for g in geoms])
    halves = np.array([primitive_half_extents(g) for g in geoms])
    return (centres - halves).min(axis=0), (centres + halves).max(axis=0)


def make_object(library_seed: int, index: int) -> LibraryObject:
    """Generate object ``index`` of the library ``library_seed`` (deterministic).

    Args:
        library_seed: Seed of the library (>= 0).
        index: Index in the library (>= 0); the kind is ``KINDS[index % len(KINDS)]``.

    Returns:
        The object, its geoms moved so that the body origin is the reference point.
    """
    if library_seed < 0 or index < 0:
        raise ValueError(f'library_seed and index must be >= 0, got {library_seed}, {index}')
    rng = np.random.default_rng([int(library_seed), int(index)])
    kind = KINDS[index % len(KINDS)]
    geoms = _BUILDERS[kind](rng)
    low, high = _bounds(geoms)
    widest = float(np.max(high[:2] - low[:2])) / 2.0
    if widest > MAX_HALF_WIDTH:  # shrink the whole object to fit the block's role
        scale = MAX_HALF_WIDTH / widest
        geoms = [
            Primitive(
                g.shape, tuple(v * scale for v in g.size), tuple(v * scale for v in g.pos), g.quat
            )
            for g in geoms
        ]
        low, high = _bounds(geoms)
    shift = np.array(
        [-(low[0] + high[0]) / 2.0, -(low[1] + high[1]) / 2.0, -low[2] - REFERENCE_HEIGHT]
    )
    geoms = [
        Primitive(g.shape, g.size, tuple(float(v) for v in np.asarray(g.pos) + shift), g.quat)
        for g in geoms
    ]
    mass = float(math.exp(rng.uniform(math.log(MASS_RANGE[0]), math.log(MASS_RANGE[1]))))
    friction = float(rng.uniform(*FRICTION_RANGE))
    rgba = (*(float(v) for v in rng.uniform(0.15, 0.9, size=3)), 1.0)
    return LibraryObject(
        name=f'{kind}_{index:03d}',
        kind=kind,
        geoms=tuple(geoms),
        mass=mass,
        friction=friction,
        half_extents=tuple(float(v) for v in (high - low) / 2.0),
        rgba=rgba,
    )


def object_library(seed: int = 0, size: int = 100) -> tuple[LibraryObject, ...]:
    """The first ``size`` objects of library ``seed`` (``make_object(seed, i)``, i < size)."""
    if size < 1:
        raise ValueError(f'a library needs at least one object, got size {size}')
    return tuple(make_object(seed, i) for i in range(size))


# ------------------------------------------------------------------------------- MJCF
def _fmt(values: Sequence[float]) -> str:
    return ' '.join(f'{float(v):.9g}' for v in values)


def object_body_mjcf(
    obj: LibraryObject, pos: Sequence[float] = (0.0, 0.0, 0.0), pad_to: int = 0
) -> str:
    """MJCF of ``obj`` as the free body ``object0`` (joint ``object0:joint``, site
    ``object0`` at the reference point, first geom named ``object0``, the others
    ``object0:<k>``).

    Args:
        obj: The object.
        pos: Body position in its parent frame (3,), m.
        pad_to: Total number of geoms to write: after the object's own, disabled
            placeholders (no collisions, no mass, invisible, group 3) up to this count, so
            that models of different objects have the same geoms.

    Returns:
        One ``<body>`` element as text.
    """
    if pad_to and pad_to < len(obj.geoms):
        raise ValueError(f'{obj.name} has {len(obj.geoms)} geoms, more than pad_to={pad_to}')
    lines = [
        f'<body name="object0" pos="{_fmt(pos)}">',
        '  <joint name="object0:joint" type="free" damping="0.01"/>',
    ]
    friction = f'{obj.friction:.9g} 0.005 0.0001'
    for k, (g, mass) in enumerate(zip(obj.geoms, obj.geom_masses, strict=True)):
        name = 'object0' if k == 0 else f'object0:{k}'
        lines.append(
            f'  <geom name="{name}" type="{g.shape}" size="{_fmt(g.size)}" pos="{_fmt(g.pos)}" '
            f'quat="{_fmt(g.quat)}" mass="{mass:.9g}" friction="{friction}" priority="1" '
            f'condim="3" rgba="{_fmt(obj.rgba)}"/>'
        )
    for k in range(len(obj.geoms), pad_to):
        lines.append(
            f'  <geom name="object0:{k}" type="sphere" size="0.001" pos="0 0 0.001" mass="0" '
            'contype="0" conaffinity="0" group="3" rgba="0 0 0 0"/>'
        )
    lines.append(
        '  <site name="object0" pos="0 0 0" size="0.02 0.02 0.02" rgba="1 0 0 1" type="sphere"/>'
    )
    lines.append('</body>')
    return '\n'.join(lines)


# ------------------------------------------------------------------------------ bumps
class Bumps(NamedTuple):
    """Static boxes on the table top.

    Attributes:
        centres: Box centres (n, 3), m, world frame (bottom face on the table top).
        half_sizes: Box half-sizes (n, 3), m (axis-aligned with the world).
    """

    centres: np.ndarray
    half_sizes: np.ndarray


BUMP_HALF_SIZE_LOW = (0.01, 0.01, 0.004)
"""Smallest bump half-sizes (x, y, z), m: 2 x 2 cm footprint, 8 mm high (lower bumps are
ridden over; see "Measured" in the module docstring)."""
BUMP_HALF_SIZE_HIGH = (0.05, 0.05, 0.005)
"""Largest bump half-sizes (x, y, z), m (10 x 10 x 1 cm boxes)."""


def sample_bumps(
    rng: np.random.Generator,
    count_range: tuple[int, int] = (5, 15),
    *,
    table_centre: Sequence[float] = (1.65, 0.75),
    table_top: float = 0.4,
    spread: float = 0.3,
    keep_clear: Sequence[Sequence[float]] = (),
    max_tries: int = 1000,
) -> Bumps:
    """Draw the bumps of one episode.

    Count uniform in ``count_range`` (both ends included); half-sizes uniform between
    :data:`BUMP_HALF_SIZE_LOW` and :data:`BUMP_HALF_SIZE_HIGH`; centres uniform within
    ``spread`` of the table centre in x and y, resting on the table top. A bump whose
    footprint overlaps one of the ``keep_clear`` rectangles is drawn again.

    Args:
        rng: Random generator (the task's, so that a reset seed reproduces the bumps).
        count_range: (least, most) number of bumps.
        table_centre: Table centre (x, y), m, world frame.
        table_top: Table top height, m.
        spread: Largest offset of a bump centre from the table centre along x and y, m.
        keep_clear: Rectangles ``(x_min, x_max, y_min, y_max)`` (m) no bump may overlap
            (e.g. the object's and the hook's start footprints).
        max_tries: Draws per bump before giving up.

    Returns:
        The bumps.

    Raises:
        ValueError: ``count_range`` is not ``0 <= least <= most``, or no clear spot was
            found in ``max_tries`` draws.
    """
    least, most = (int(v) for v in count_range)
    if not 0 <= least <= most:
        raise ValueError(
            f'count_range must be (least, most) with 0 <= least <= most: {count_range}'
        )
    count = int(rng.integers(least, most + 1))
    low, high = np.array(BUMP_HALF_SIZE_LOW), np.array(BUMP_HALF_SIZE_HIGH)
    rects = np.array(keep_clear, dtype=np.float64).reshape(-1, 4)
    centres = np.empty((count, 3))
    half_sizes = np.empty((count, 3))
    for i in range(count):
        for _ in range(max_tries):
            half = rng.uniform(low, high)
            xy = np.asarray(table_centre, dtype=np.float64) + rng.uniform(-spread, spread, 2)
            overlaps = (
                (xy[0] + half[0] > rects[:, 0])
                & (xy[0] - half[0] < rects[:, 1])
                & (xy[1] + half[1] > rects[:, 2])
                & (xy[1] - half[1] < rects[:, 3])
            )
            if not overlaps.any():
                break
        else:
            raise ValueError(f'no bump spot clear of {keep_clear} in {max_tries} draws')
        centres[i] = (xy[0], xy[1], table_top + half[2])
        half_sizes[i] = half
    return Bumps(centres, half_sizes)
