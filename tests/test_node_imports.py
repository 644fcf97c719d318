"""What a robot installs: the controller node, the residual node and their cores import
without MuJoCo, Gymnasium or torch, and the residual node with nothing but numpy,
onnxruntime and the ROS client library (and what those three need).

Each import runs in a fresh interpreter whose ``sys.meta_path`` starts with a finder that
raises ImportError for the blocked modules, so a top-level import anywhere on the way fails
the test. A planning controller (discrete_mpc_push) needs MuJoCo and imports it when it is
built, never when the node module is imported.
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
    blocked=(), allowed=(), packages=(), modules=()
) -> subprocess.CompletedProcess:
    args = (list(blocked), list(allowed), list(packages), list(modules))
    code = BLOCKER.format(args=repr(args))
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


def test_the_blocker_blocks():  # the check above can fail
    done = _import_with_blocked(('mujoco',), modules=('rpl_sim_bridge.tasks',))
    assert done.returncode != 0
    assert 'mujoco is blocked' in done.stderr, done.stderr
    done = _import_with_blocked(allowed=RESIDUAL_RUNTIME, modules=('tqdm',))
    assert done.returncode != 0
    assert 'tqdm is blocked' in done.stderr, done.stderr
