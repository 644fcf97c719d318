"""complex_hook: the generated object library, the bumps, and the task that swaps them in."""

from __future__ import annotations

import subprocess
import sys

import mujoco
import numpy as np
import pytest

from rpl_sim_bridge.tasks import make_task, task_spec
from rpl_sim_bridge.tasks.object_library import (
    BUMP_HALF_SIZE_HIGH,
    BUMP_HALF_SIZE_LOW,
    CONCAVE_KINDS,
    KINDS,
    MAX_GEOMS,
    REFERENCE_HEIGHT,
    Bumps,
    object_body_mjcf,
    object_library,
    sample_bumps,
)

TABLE_XY = np.array([1.65, 0.75])
TABLE_TOP = 0.4


@pytest.fixture(scope='module')
def task():
    task = make_task('complex_hook')
    yield task
    task.close()


# ----------------------------------------------------------------------------- library
def test_library_varies_in_kind_size_mass_and_friction():
    library = object_library(seed=0, size=100)
    assert len(library) == 100
    assert len({o.name for o in library}) == 100
    kinds = {o.kind for o in library}
    assert kinds == set(KINDS) and len(kinds) >= 5
    assert set(CONCAVE_KINDS) <= kinds
    masses = np.array([o.mass for o in library])
    frictions = np.array([o.friction for o in library])
    extents = np.array([o.half_extents for o in library])  # (100, 3), m
    assert masses.min() >= 0.1 and masses.max() <= 2.0
    assert masses.min() < 0.15 and masses.max() > 1.5
    assert frictions.min() >= 0.1 and frictions.max() <= 1.0
    assert frictions.min() < 0.2 and frictions.max() > 0.9
    # 2.5-8 cm across in x and y, 1.2-8 cm high.
    assert extents[:, :2].min() >= 0.0125 and extents[:, :2].max() <= 0.04 + 1e-12
    assert extents[:, 2].min() >= 0.006 and extents[:, 2].max() <= 0.04
    assert np.ptp(extents.max(axis=1)) > 0.015
    for obj in library:
        assert 1 <= len(obj.geoms) <= MAX_GEOMS
        assert obj.geom_masses.sum() == pytest.approx(obj.mass)
    # Several geoms for the assemblies: bowls, cups, chairs are made of many primitives.
    assert min(len(o.geoms) for o in library if o.kind in ('bowl', 'cup', 'chair')) >= 6


def test_library_is_a_function_of_its_seed():
    assert object_library(seed=0, size=30) == object_library(seed=0, size=30)
    assert object_library(seed=0, size=100)[:30] == object_library(seed=0, size=30)
    other = object_library(seed=1, size=30)
    assert all(a != b for a, b in zip(object_library(seed=0, size=30), other, strict=True))


def test_an_object_alone_rests_on_its_lowest_point_with_the_reference_above_it():
    for obj in object_library(seed=0, size=len(KINDS)):
        xml = (
            '<mujoco><worldbody><geom type="plane" size="1 1 0.1"/>'
            f'{object_body_mjcf(obj, (0, 0, REFERENCE_HEIGHT))}</worldbody></mujoco>'
        )
        model = mujoco.MjModel.from_xml_string(xml)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        assert model.body('object0').mass[0] == pytest.approx(obj.mass)
        # Started touching the plane: neither falls nor is pushed up, nor rolls away.
        mujoco.mj_step(model, data, 500)  # 1 s
        site = data.site('object0').xpos
        assert site[2] == pytest.approx(REFERENCE_HEIGHT, abs=2e-3), obj.name
        assert np.abs(site[:2]).max() < 2e-3, obj.name


# ------------------------------------------------------------------------------- bumps
def test_bumps_lie_on_the_table_within_bounds_and_keep_clear():
    rng = np.random.default_rng(0)
    clear = (1.75, 1.95, 0.65, 0.85)
    counts = []
    for _ in range(300):
        bumps = sample_bumps(rng, (5, 15), keep_clear=[clear])
        counts.append(len(bumps.centres))
        c, h = bumps.centres, bumps.half_sizes
        assert np.all(np.abs(c[:, :2] - TABLE_XY) <= 0.3)
        assert np.all(h >= BUMP_HALF_SIZE_LOW) and np.all(h <= BUMP_HALF_SIZE_HIGH)
        np.testing.assert_allclose(c[:, 2] - h[:, 2], TABLE_TOP)
        apart = (
            (c[:, 0] + h[:, 0] <= clear[0])
            | (c[:, 0] - h[:, 0] >= clear[1])
            | (c[:, 1] + h[:, 1] <= clear[2])
            | (c[:, 1] - h[:, 1] >= clear[3])
        )
        assert apart.all()
    assert min(counts) == 5 and max(counts) == 15


# -------------------------------------------------------------------------------- task
def test_spec_is_the_hook_spec_and_needs_no_simulator():
    spec, hook = task_spec('complex_hook'), task_spec('hook')
    assert spec.obs_dim == 40 and spec.obs_fields == hook.obs_fields
    assert (spec.goal_fields, spec.action_fields) == (hook.goal_fields, hook.action_fields)
    assert spec.max_episode_steps == 100
    assert spec.distance_threshold == hook.distance_threshold
    code = (
        'import sys; from rpl_sim_bridge.tasks import task_spec; '
        "task_spec('complex_hook'); print('mujoco' in sys.modules)"
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


def test_the_swapped_model_equals_a_model_compiled_with_that_object(task):
    """Writing an object into the slots gives the arrays MuJoCo's compiler would give (but
    the midphase trees, unused here, and the bumps, which a reset places)."""
    from rpl_sim_bridge.tasks.complex_hook import bumps_xml
    from rpl_sim_bridge.tasks.hook import hook_scene_xml

    differ_anyway = {'bvh_aabb', 'bvh_child', 'bvh_depth', 'bvh_nodeid', 'body_bvhadr'}
    differ_anyway |= {'body_bvhnum', 'mesh_bvhadr', 'eq_data'}  # eq_data: the settled weld
    bump_rows = set(task.bump_geom_ids.tolist())
    seen = set()
    for seed in range(40):
        task.reset(seed=seed)
        if task.current_object.kind in seen or len(seen) == 2:
            continue
        seen.add(task.current_object.kind)
        start = (1.8, 0.75, TABLE_TOP + REFERENCE_HEIGHT)  # the body's compiled position
        body = object_body_mjcf(task.current_object, start, pad_to=MAX_GEOMS)
        scene = hook_scene_xml(body, bumps_xml())
        compiled = mujoco.MjModel.from_xml_string(scene)
        mujoco.mj_setConst(compiled, mujoco.MjData(compiled))
        for name in dir(compiled):
            ours, theirs = getattr(task.model, name), getattr(compiled, name)
            if name in differ_anyway or not isinstance(theirs, np.ndarray):
                continue
            if name.startswith('geom_'):
                rows = [g for g in range(compiled.ngeom) if g not in bump_rows]
                ours, theirs = ours[rows], theirs[rows]
            np.testing.assert_array_equal(ours, theirs, err_msg=f'{name} of {task.current_object}')
    assert len(seen) == 2


def test_a_reset_seed_reproduces_object_bumps_and_episode(task):
    actions = np.random.default_rng(7).uniform(-1.0, 1.0, size=(15, 4))

    def run(seed):
        obs, _ = task.reset(seed=seed)
        observations = [obs['observation']]
        for a in actions:
            observations.append(task.step(a)[0]['observation'])
        return task.object_index, task.bumps, np.array(observations)

    index, bumps, observations = run(123)
    run(124)
    again = run(123)
    assert again[0] == index
    np.testing.assert_array_equal(again[1].centres, bumps.centres)
    np.testing.assert_array_equal(again[1].half_sizes, bumps.half_sizes)
    np.testing.assert_array_equal(again[2], observations)


def test_every_reset_draws_new_bumps_and_objects(task):
    task.reset(seed=5)
    previous, indices = None, set()
    for _ in range(12):
        task.reset()
        bumps = task.bumps
        indices.add(task.object_index)
        assert 5 <= len(bumps.centres) <= 15
        assert np.all(np.abs(bumps.centres[:, :2] - TABLE_XY) <= 0.3)
        assert np.all(bumps.half_sizes <= BUMP_HALF_SIZE_HIGH)
        m = task.model
        used = task.bump_geom_ids[: len(bumps.centres)]
        unused = task.bump_geom_ids[len(bumps.centres) :]
        np.testing.assert_array_equal(m.geom_pos[used], bumps.centres)
        np.testing.assert_array_equal(m.geom_size[used], bumps.half_sizes)
        assert m.geom_contype[used].all() and not m.geom_contype[unused].any()
        if previous is not None:
            assert not np.array_equal(previous, bumps.centres[:, :2])
        previous = bumps.centres[:, :2]
    assert len(indices) >= 8


def test_a_placed_bump_really_collides(task):
    """An object dropped on a bump (larger than the compiled placeholder) rests on it;
    with no bumps it rests on the table."""
    q = task.model.joint('object0:joint').qposadr[0]
    centre = np.array([1.65, 0.95, TABLE_TOP + 0.005])
    heights = {}
    for label, bumps in (
        ('bump', Bumps(centre[None], np.array([[0.05, 0.05, 0.005]]))),
        ('none', Bumps(np.zeros((0, 3)), np.zeros((0, 3)))),
    ):
        task.reset(seed=3)
        task._place_bumps(bumps)
        d = task.data
        # 4 cm off the bump centre: only a 5 cm bump (not the 1 cm placeholder) is under it.
        d.qpos[q : q + 3] = (centre[0] + 0.04, centre[1], TABLE_TOP + 0.02 + REFERENCE_HEIGHT)
        mujoco.mj_forward(task.model, d)
        for _ in range(25):  # 1 s
            task.step(np.zeros(4))
        heights[label] = task.observe()['achieved_goal'][2]
    # Tilting on the bump edge is possible, so only the order and the no-bump value are exact.
    assert heights['none'] == pytest.approx(TABLE_TOP + REFERENCE_HEIGHT, abs=2e-3)
    assert heights['bump'] > heights['none'] + 0.004


def test_objects_rest_on_the_table_after_a_reset():
    """One object of each kind: no MuJoCo warning (the task raises on one), and after 1 s of
    zero action the object is where the reset put it."""
    task = make_task('complex_hook', library_size=len(KINDS))  # one object per kind
    try:
        seen = set()
        for seed in range(200):
            obs, _ = task.reset(seed=seed)
            if task.object_index in seen:
                continue
            if len(seen) == len(KINDS):
                break
            seen.add(task.object_index)
            start = obs['achieved_goal']
            assert start[2] == pytest.approx(TABLE_TOP + REFERENCE_HEIGHT, abs=1e-9)
            for _ in range(25):
                obs = task.step(np.zeros(4))[0]
            moved = obs['achieved_goal'] - start
            assert np.abs(moved).max() < 3e-3, (task.current_object.name, moved)
        assert len(seen) == len(KINDS)
    finally:
        task.close()


def test_the_observation_shows_neither_object_nor_bumps():
    """Two libraries, same reset seed: block position and goal are the same draws, the
    objects and bumps differ, the observations are identical."""
    a, b = make_task('complex_hook'), make_task('complex_hook', library_seed=1)
    try:
        obs_a, _ = a.reset(seed=11)
        obs_b, _ = b.reset(seed=11)
        assert a.current_object.geoms != b.current_object.geoms
        assert obs_a['observation'].shape == (40,)
        for key in ('observation', 'achieved_goal', 'desired_goal'):
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
    finally:
        a.close()
        b.close()
