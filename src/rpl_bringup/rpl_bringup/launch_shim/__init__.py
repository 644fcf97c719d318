"""Minimal stand-ins for the ``launch`` and ``launch_ros`` Python APIs.

Machines with only the rclpy wheels have no ``launch`` / ``launch_ros``. :func:`install`
registers these modules under the real names (``launch``, ``launch.actions``,
``launch.substitutions``, ``launch.conditions``, ``launch.launch_description_sources``,
``launch_ros``, ``launch_ros.actions``, ``launch_ros.substitutions``), but only for the
real packages that are missing, so that standard launch files load unchanged. Evaluating
a description only *plans* processes (:class:`ProcessPlan`); :mod:`rpl_bringup.launch_runner`
runs them.
"""

from __future__ import annotations

import importlib.util
import sys
import types

from rpl_bringup.launch_shim import actions, conditions, ros_actions, ros_substitutions, sources
from rpl_bringup.launch_shim import substitutions as substitutions_module
from rpl_bringup.launch_shim.core import (
    Action,
    Condition,
    LaunchContext,
    LaunchDescription,
    LaunchError,
    NodeDetails,
    ProcessPlan,
    SomeSubstitutionsType,
    Substitution,
)

__all__ = [
    'LaunchContext',
    'LaunchDescription',
    'LaunchError',
    'NodeDetails',
    'ProcessPlan',
    'install',
    'is_real',
    'uninstall',
]


def is_real(name: str) -> bool:
    """True when ``name`` imports a real installed package (not this shim, not a bare folder).

    A ``launch/`` folder in the working directory imports as an empty namespace package;
    that does not count.
    """
    module = sys.modules.get(name)
    if module is not None:
        shim = getattr(module, '__rpl_shim__', False)
        return not shim and bool(getattr(module, '__file__', None))
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, 'namespace')


def _package(name: str, **attributes: object) -> types.ModuleType:
    module = types.ModuleType(name, f'rpl_bringup stand-in for the {name!r} package')
    module.__path__ = []  # a package, so that `import name.sub` consults sys.modules
    module.__rpl_shim__ = True
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def _module(name: str, **attributes: object) -> types.ModuleType:
    module = types.ModuleType(name, f'rpl_bringup stand-in for the {name!r} module')
    module.__rpl_shim__ = True
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def _launch_modules() -> dict[str, types.ModuleType]:
    description_sources = _module(
        'launch.launch_description_sources',
        PythonLaunchDescriptionSource=sources.PythonLaunchDescriptionSource,
        AnyLaunchDescriptionSource=sources.AnyLaunchDescriptionSource,
    )
    launch = _package(
        'launch',
        LaunchDescription=LaunchDescription,
        LaunchContext=LaunchContext,
        Substitution=Substitution,
        Action=Action,
        Condition=Condition,
        SomeSubstitutionsType=SomeSubstitutionsType,
        actions=actions,
        substitutions=substitutions_module,
        conditions=conditions,
        launch_description_sources=description_sources,
    )
    return {
        'launch': launch,
        'launch.actions': actions,
        'launch.substitutions': substitutions_module,
        'launch.conditions': conditions,
        'launch.launch_description_sources': description_sources,
    }


def _launch_ros_modules() -> dict[str, types.ModuleType]:
    launch_ros = _package('launch_ros', actions=ros_actions, substitutions=ros_substitutions)
    return {
        'launch_ros': launch_ros,
        'launch_ros.actions': ros_actions,
        'launch_ros.substitutions': ros_substitutions,
    }


def install(force: bool = False) -> list[str]:
    """Register the stand-ins for whichever of ``launch`` / ``launch_ros`` is missing.

    Args:
        force: Register them even over the real packages (``rpl demo`` plans its processes
            itself on every machine).

    Returns:
        The module names registered (empty when both real packages are installed).
    """
    installed: list[str] = []
    for top, build in (('launch', _launch_modules), ('launch_ros', _launch_ros_modules)):
        if is_real(top) and not force:
            continue
        for name, module in build().items():
            sys.modules[name] = module
            installed.append(name)
    return installed


def uninstall(names: list[str]) -> None:
    """Remove modules registered by :func:`install` (for tests)."""
    for name in names:
        sys.modules.pop(name, None)
