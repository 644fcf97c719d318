"""Every package declares the third-party distributions its modules import, for pip
(setup.py ``install_requires``) and for ROS (package.xml ``exec_depend``), and nothing it
does not use; requirements.txt (what `make install` installs, the packages themselves with
--no-deps) holds them all; the residual node's packages need numpy, onnxruntime and ROS
only, never torch or MuJoCo.

The imports are read with ``ast`` from every module of a package, the ones inside functions
too. An import inside ``try: ... except ImportError`` is optional and an import under
``if TYPE_CHECKING:`` is for type hints only: neither is a dependency.
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys
import xml.etree.ElementTree as ET
from typing import NamedTuple

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.name for p in (REPO_ROOT / 'src').iterdir() if (p / 'setup.py').is_file())


class Dependency(NamedTuple):
    """Where an imported top-level module comes from."""

    pip: str | None  # distribution in install_requires; None: no pip distribution needed
    rosdep: str | None  # key in package.xml exec_depend; None: no rosdep key exists


# Top-level import name -> its distribution (pip) and rosdep key. ROS client libraries and
# message packages are pip wheels named ros-* (requirements.txt) and ROS packages by their
# own name. Keys ending in -pip are rosdep's pip-installed keys (rosdistro rosdep/python.yaml).
DEPENDENCIES = {
    'numpy': Dependency('numpy', 'python3-numpy'),
    'onnxruntime': Dependency('onnxruntime', 'python3-onnxruntime-pip'),
    'onnx': Dependency('onnx', None),
    'torch': Dependency('torch', 'python3-torch'),
    'mujoco': Dependency('mujoco', 'python3-mujoco-pip'),
    'gymnasium': Dependency('gymnasium', 'python3-gymnasium-pip'),
    'gymnasium_robotics': Dependency('gymnasium-robotics', 'python3-gymnasium-robotics-pip'),
    'rosbags': Dependency('rosbags', 'python3-rosbags-pip'),
    'yaml': Dependency('PyYAML', 'python3-yaml'),
    'matplotlib': Dependency('matplotlib', 'python3-matplotlib'),
    'tqdm': Dependency('tqdm', 'python3-tqdm'),
    'rclpy': Dependency('ros-rclpy', 'rclpy'),
    'rcl_interfaces': Dependency('ros-rcl-interfaces', 'rcl_interfaces'),
    'builtin_interfaces': Dependency('ros-builtin-interfaces', 'builtin_interfaces'),
    'std_msgs': Dependency('ros-std-msgs', 'std_msgs'),
    'sensor_msgs': Dependency('ros-sensor-msgs', 'sensor_msgs'),
    'geometry_msgs': Dependency('ros-geometry-msgs', 'geometry_msgs'),
    'diagnostic_msgs': Dependency('ros-diagnostic-msgs', 'diagnostic_msgs'),
    'ament_index_python': Dependency('ros-ament-index-python', 'ament_index_python'),
    # ROS 2 launch: without it (pip), rpl_bringup.launch_shim stands in for both.
    'launch': Dependency(None, 'launch'),
    'launch_ros': Dependency(None, 'launch_ros'),
}
# Needed at run time though never imported: rclpy loads the middleware the Makefile and the
# launch runner select (RMW_IMPLEMENTATION=rmw_fastrtps_cpp).
RUNTIME_ONLY = {'rpl_interfaces': {'ros-rmw-fastrtps-cpp'}}
# What the residual node may need (robot deployment): never torch, MuJoCo or Gymnasium.
# pyyaml: rpl_interfaces reads parameter files; rclpy requires it anyway (nothing new on a robot).
RESIDUAL_NODE_ALLOWED = re.compile(r'numpy|onnxruntime|pyyaml|ros-.*')


def _normalize(requirement: str) -> str:
    name = re.split(r'[<>=!~ ;\[]', requirement.strip(), maxsplit=1)[0]
    return re.sub(r'[-_.]+', '-', name).lower()


def _optional(handlers: list[ast.ExceptHandler]) -> bool:
    """``except ImportError`` / ``except ModuleNotFoundError`` (or a tuple with one)."""
    names = set()
    for handler in handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names |= {k.id for k in kinds if isinstance(k, ast.Name)}
    return bool(names & {'ImportError', 'ModuleNotFoundError'})


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING') or (
        isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING'
    )


def _imports(node: ast.AST) -> set[str]:
    """Top-level names of the required imports under ``node``."""
    if isinstance(node, ast.Try) and _optional(node.handlers):
        found = set()
        for child in node.handlers + node.orelse + node.finalbody:
            found |= _imports(child)
        return found
    if isinstance(node, ast.If) and _type_checking(node):
        return set().union(*(_imports(child) for child in node.orelse))
    if isinstance(node, ast.Import):
        return {alias.name.partition('.')[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        return {node.module.partition('.')[0]} if node.level == 0 and node.module else set()
    return set().union(*(_imports(child) for child in ast.iter_child_nodes(node)))


def imported_modules(package: str) -> dict[str, set[str]]:
    """Third-party and first-party top-level modules imported by ``package``'s modules,
    each with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / 'src' / package / package).rglob('*.py')):
        for name in _imports(ast.parse(path.read_text(), str(path))):
            if name in sys.stdlib_module_names or name in ('__future__', package):
                continue
            found.setdefault(name, set()).add(path.name)
    return found


def install_requires(package: str) -> set[str]:
    """The normalized names in the ``install_requires`` of ``package``'s setup.py."""
    tree = ast.parse((REPO_ROOT / 'src' / package / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'setup':
            for keyword in node.keywords:
                if keyword.arg == 'install_requires':
                    return {_normalize(r) for r in ast.literal_eval(keyword.value)}
    return set()


def exec_depends(package: str) -> set[str]:
    """The ``exec_depend`` (and ``depend``) entries of ``package``'s package.xml."""
    root = ET.parse(REPO_ROOT / 'src' / package / 'package.xml').getroot()
    return {e.text.strip() for tag in ('exec_depend', 'depend') for e in root.iter(tag)}


def requirements_txt() -> set[str]:
    lines = (REPO_ROOT / 'requirements.txt').read_text().splitlines()
    return {_normalize(line) for line in lines if line.strip() and not line.startswith('#')}


@pytest.mark.parametrize('package', PACKAGES)
def test_every_imported_distribution_is_declared_for_pip_and_ros(package):
    pip, ros = install_requires(package), exec_depends(package)
    missing = []
    for name, files in sorted(imported_modules(package).items()):
        where = f'{name} (imported by {", ".join(sorted(files))})'
        if name in PACKAGES:
            if _normalize(name) not in pip:
                missing.append(f'{where}: install_requires {name!r}')
            if name not in ros:
                missing.append(f'{where}: exec_depend {name}')
            continue
        assert name in DEPENDENCIES, f'{package}: {where} is not in DEPENDENCIES of this test'
        dep = DEPENDENCIES[name]
        if dep.pip is not None and _normalize(dep.pip) not in pip:
            missing.append(f'{where}: install_requires {dep.pip!r}')
        if dep.rosdep is not None and dep.rosdep not in ros:
            missing.append(f'{where}: exec_depend {dep.rosdep}')
    assert not missing, f'{package} does not declare:\n' + '\n'.join(missing)


@pytest.mark.parametrize('package', PACKAGES)
def test_no_third_party_distribution_is_declared_without_an_import(package):
    imported = imported_modules(package)
    deps = [DEPENDENCIES[n] for n in imported if n in DEPENDENCIES]
    used_pip = {_normalize(d.pip) for d in deps if d.pip is not None}
    used_ros = {d.rosdep for d in deps}
    used_pip |= {_normalize(n) for n in imported if n in PACKAGES}
    used_pip |= RUNTIME_ONLY.get(package, set()) | {'setuptools'}
    first_party = {_normalize(p) for p in PACKAGES}
    unused_pip = install_requires(package) - used_pip - first_party
    third_party_keys = {d.rosdep for d in DEPENDENCIES.values()} - {None}
    unused_ros = (exec_depends(package) & third_party_keys) - used_ros
    assert not unused_pip and not unused_ros, (
        f'{package} declares what none of its modules imports: '
        f'install_requires {sorted(unused_pip)}, exec_depend {sorted(unused_ros)}'
    )


def test_requirements_txt_installs_every_declared_distribution():
    # `make install` installs the packages with --no-deps: requirements.txt brings the rest.
    first_party = {_normalize(p) for p in PACKAGES}
    declared = set().union(*(install_requires(p) for p in PACKAGES)) - first_party
    # torch comes from the Makefile's own line (the local CPU wheel or the CPU index).
    expected = declared - {'setuptools', 'torch'}
    assert expected <= requirements_txt(), sorted(expected - requirements_txt())


def test_the_residual_node_needs_no_torch_mujoco_or_gymnasium():
    # Its package and every project package it requires, followed through install_requires.
    first_party = {_normalize(p): p for p in PACKAGES}
    todo, seen, third_party = ['rpl_residual_node'], set(), set()
    while todo:
        package = todo.pop()
        seen.add(package)
        for name in install_requires(package) - {'setuptools'}:
            if name in first_party:
                todo += [first_party[name]] if first_party[name] not in seen else []
            else:
                third_party.add(name)
    assert seen == {'rpl_residual_node', 'rpl_interfaces'}, seen
    assert third_party and all(RESIDUAL_NODE_ALLOWED.fullmatch(n) for n in third_party), sorted(
        third_party
    )


def _required_closure(package: str) -> tuple[set[str], set[str]]:
    """Project packages and third-party distributions ``package`` needs, through
    install_requires."""
    first_party = {_normalize(p): p for p in PACKAGES}
    todo, seen, third_party = [package], set(), set()
    while todo:
        current = todo.pop()
        seen.add(current)
        for name in install_requires(current) - {'setuptools'}:
            if name in first_party:
                todo += [first_party[name]] if first_party[name] not in seen else []
            else:
                third_party.add(name)
    return seen, third_party


@pytest.mark.parametrize('package', ['rpl_bags', 'rpl_bringup'])
def test_bags_and_bringup_never_need_the_trainer_or_torch(package):
    # Recording, `rpl bag` and the stack launches run without the trainer (torch); `rpl
    # train` is there only where rpl_trainer is installed.
    packages, third_party = _required_closure(package)
    assert 'rpl_trainer' not in packages and 'torch' not in third_party, (packages, third_party)
    assert 'rpl_trainer' not in exec_depends(package)
    assert 'rpl_trainer' not in imported_modules(package)
