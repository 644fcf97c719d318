"""What a robot installs: the controller node, the residual node and their cores import
without MuJoCo, Gymnasium or torch, and the residual node with nothing but numpy,
onnxruntime and the ROS client library (and what those three need).

Each import runs in a fresh interpreter whose ``sys.meta_path`` starts with a finder that
raises ImportError for the blocked modules, so a top-level import anywhere on the way fails
the test. A planning controller (discrete_mpc_push) needs MuJoCo and imports it when it is
built, never when the node module is imported. With those modules blocked, the controller
node's core still looks up the Fetch task specs and builds and runs their reactive controllers.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SIMULATION_AND_TRAINING = ('mujoco', 'gymnasium', 'gymnasium_robotics', 'torch')

CONTROLLER_MODULES = (
    'rpl_base_controllers.controller_node',
    'rpl_base_controllers.base',
    'rpl_base_controllers.registry',
    'rpl_base_controllers.reactive_push',
    'rpl_base_controllers.reactive_pick_and_place',
)
RESIDUAL_PACKAGES = ('rpl_residual_node', 'rpl_interfaces')

# Distributions the residual node may use, with everything they require themselves.
RESIDUAL_RUNTIME = ('numpy', 'onnxruntime', 'ros-rclpy', 'ros-sensor-msgs', 'ros-diagnostic-msgs')

BLOCKER = textwrap.dedent(
    """
    import importlib, importlib.abc, importlib.metadata, pkgutil, re, sys

    blocked, allowed, packages, modules = {args}

    def requirement_closure(names):
        seen, todo = set(), list(names)
        while todo:
            name = re.split(r'[<>=!~ ;\\[]', todo.pop(), maxsplit=1)[0].lower().replace('_', '-')
            if name in seen:
                continue
            seen.add(name)
            try:
                requires = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                continue
            todo += [r for r in requires if 'extra ==' not in r]
        return seen

    if allowed:  # every distribution outside the closure of ``allowed`` is blocked
        closure = requirement_closure(allowed)
        owners = importlib.metadata.packages_distributions()
        for top, dists in owners.items():
            names = {{d.lower().replace('_', '-') for d in dists}}
            if not names & closure and not top.startswith('rpl_'):
                blocked.append(top)

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition('.')[0] in blocked:
                raise ImportError(f'{{name}} is blocked: not available where this node runs')
            return None

    sys.meta_path.insert(0, Blocker())
    for package in packages:
        root = importlib.import_module(package)
        modules += [m.name for m in pkgutil.walk_packages(root.__path__, package + '.')]
    for module in modules:
        importlib.import_module(module)
    print(len(modules), 'modules imported')
    """
)


def _import_with_blocked(
    blocked=(), allowed=(), packages=(), modules=(), then=''
) -> subprocess.CompletedProcess:
    args = (list(blocked), list(allowed), list(packages), list(modules))
    code = BLOCKER.format(args=repr(args)) + then
    return subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    'modules, packages',
    [(CONTROLLER_MODULES, ()), ((), RESIDUAL_PACKAGES)],
    ids=['controller node', 'residual node'],
)
def test_the_nodes_import_without_mujoco_gymnasium_or_torch(modules, packages):
    done = _import_with_blocked(SIMULATION_AND_TRAINING, modules=modules, packages=packages)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_residual_node_needs_only_numpy_onnxruntime_and_rclpy():
    done = _import_with_blocked(allowed=RESIDUAL_RUNTIME, packages=RESIDUAL_PACKAGES)
    assert done.returncode == 0, done.stdout + done.stderr


# Run after the blocked imports: bind each Fetch task as the controller node does (spec,
# observation layout, registered controller) and compute one action from zeros.
BIND_TASKS = textwrap.dedent(
    """
    import numpy as np
    from rpl_base_controllers.registry import available_controllers, controller_info
    from rpl_base_controllers.registry import make_controller
    from rpl_sim_bridge.bridge import observation_layout
    from rpl_sim_bridge.tasks import SimulatorUnavailableError, available_tasks, make_task
    from rpl_sim_bridge.tasks import task_spec

    print('tasks', available_tasks())
    for task in ('slippery_push', 'pick_and_place', 'push'):
        spec = task_spec(task)
        layout = observation_layout(spec)
        assert len(spec.obs_fields) == spec.obs_dim, spec
        for name in available_controllers():
            if task not in controller_info(name).tasks:
                continue
            try:
                controller = make_controller(name, task)
            except ImportError as exc:
                print('unavailable', name, task, '|', exc)
                continue
            controller.reset()
            action = controller(np.zeros(spec.obs_dim), np.zeros(spec.goal_dim))
            assert np.shape(action) == (spec.action_dim,), (name, task, action)
            assert np.isfinite(action).all(), (name, task, action)
            print('action', name, task, len(layout.fields), list(np.round(action, 3)))
    try:
        make_task('push')
    except SimulatorUnavailableError as exc:
        print('make_task |', exc)
    """
)


def test_the_controller_node_binds_the_fetch_tasks_without_mujoco_gymnasium_or_torch():
    done = _import_with_blocked(
        SIMULATION_AND_TRAINING, modules=CONTROLLER_MODULES, then=BIND_TASKS
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for task in ('slippery_push', 'pick_and_place', 'push'):
        assert f"'{task}'" in out, out
    for name, task in [
        ('reactive_push', 'slippery_push'),
        ('reactive_push', 'push'),
        ('reactive_pick_and_place', 'pick_and_place'),
    ]:
        assert f'action {name} {task} ' in out, out
    # The planner simulates: it cannot be built here, and says why (an ImportError, not a
    # failure to import the node); building a task says which packages it needs.
    line = next(ln for ln in out.splitlines() if ln.startswith('unavailable discrete_mpc_push'))
    assert 'mujoco is blocked' in line, line
    line = next(ln for ln in out.splitlines() if ln.startswith('make_task |'))
    assert "task 'push' cannot be simulated here: mujoco is blocked" in line, line
    assert 'needs mujoco and gymnasium-robotics' in line, line


def test_the_blocker_blocks():  # the check above can fail
    done = _import_with_blocked(('mujoco',), modules=('rpl_sim_bridge.tasks.fetch',))
    assert done.returncode != 0
    assert 'mujoco is blocked' in done.stderr, done.stderr
    done = _import_with_blocked(allowed=RESIDUAL_RUNTIME, modules=('tqdm',))
    assert done.returncode != 0
    assert 'tqdm is blocked' in done.stderr, done.stderr
