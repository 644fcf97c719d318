"""Goal-conditioned MuJoCo tasks behind one registry.

Example::

    from rpl_sim_bridge.tasks import make_task

    task = make_task('slippery_push')
    obs, info = task.reset(seed=0)
    obs, reward, terminated, truncated, info = task.step(np.zeros(task.spec.action_dim))

Registered here: ``'push'``, ``'slippery_push'``, ``'pick_and_place'`` (specs in
:mod:`rpl_sim_bridge.tasks.specs`, simulation in :mod:`rpl_sim_bridge.tasks.fetch`),
``'hook'``, ``'noisy_hook'`` (specs in :mod:`rpl_sim_bridge.tasks.hook_specs`, simulation in
:mod:`rpl_sim_bridge.tasks.hook`), ``'complex_hook'`` (specs in
:mod:`rpl_sim_bridge.tasks.complex_hook_specs`, simulation in
:mod:`rpl_sim_bridge.tasks.complex_hook`), ``'mbrl_pusher'`` (a fixed goal; spec, reward and
success in :mod:`rpl_sim_bridge.tasks.pusher_specs`, simulation in
:mod:`rpl_sim_bridge.tasks.pusher`). Other tasks join with :func:`register_task`.

Importing this package imports neither MuJoCo nor Gymnasium-Robotics: the registry
(:func:`task_spec`, :func:`available_tasks`) works without them, and the simulated tasks'
modules are imported when a task is built (:func:`make_task`) or when one of their names
(``GoalTask``, ``FetchTask``, ``sparse_reward``, ...) is first read from this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rpl_sim_bridge.tasks.registry import (
    TaskFactory,
    TaskSpec,
    UnknownTaskError,
    available_tasks,
    make_task,
    register_task,
    task_spec,
)

# Imported last: registers the Fetch tasks (specs only; no MuJoCo).
from rpl_sim_bridge.tasks.specs import (  # noqa: E402  isort: skip
    FetchTaskConfig,
    SimulatorUnavailableError,
)
from rpl_sim_bridge.tasks.hook_specs import HookTaskConfig  # noqa: E402  isort: skip
from rpl_sim_bridge.tasks.complex_hook_specs import ComplexHookTaskConfig  # noqa: E402  isort: skip
from rpl_sim_bridge.tasks.pusher_specs import PusherTaskConfig  # noqa: E402  isort: skip

if TYPE_CHECKING:
    from rpl_sim_bridge.tasks.complex_hook import ComplexHookTask
    from rpl_sim_bridge.tasks.fetch import FetchTask
    from rpl_sim_bridge.tasks.goal_task import (
        GoalTask,
        MujocoWarning,
        MujocoWarningError,
        ObsDict,
        goal_distance,
        sparse_reward,
    )
    from rpl_sim_bridge.tasks.hook import HookTask
    from rpl_sim_bridge.tasks.pusher import PusherTask

_SIMULATION_NAMES = {
    'ComplexHookTask': 'rpl_sim_bridge.tasks.complex_hook',
    'FetchTask': 'rpl_sim_bridge.tasks.fetch',
    'GoalTask': 'rpl_sim_bridge.tasks.goal_task',
    'HookTask': 'rpl_sim_bridge.tasks.hook',
    'MujocoWarning': 'rpl_sim_bridge.tasks.goal_task',
    'MujocoWarningError': 'rpl_sim_bridge.tasks.goal_task',
    'ObsDict': 'rpl_sim_bridge.tasks.goal_task',
    'PusherTask': 'rpl_sim_bridge.tasks.pusher',
    'goal_distance': 'rpl_sim_bridge.tasks.rewards',  # pure (numpy)
    'sparse_reward': 'rpl_sim_bridge.tasks.rewards',  # pure (numpy)
}


def __getattr__(name: str) -> Any:
    """The names that need MuJoCo, imported on first use."""
    module = _SIMULATION_NAMES.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    'ComplexHookTask',
    'ComplexHookTaskConfig',
    'FetchTask',
    'FetchTaskConfig',
    'GoalTask',
    'HookTask',
    'HookTaskConfig',
    'MujocoWarning',
    'MujocoWarningError',
    'ObsDict',
    'PusherTask',
    'PusherTaskConfig',
    'SimulatorUnavailableError',
    'TaskFactory',
    'TaskSpec',
    'UnknownTaskError',
    'available_tasks',
    'goal_distance',
    'make_task',
    'register_task',
    'sparse_reward',
    'task_spec',
]
