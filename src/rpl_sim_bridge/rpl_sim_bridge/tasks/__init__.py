"""Goal-conditioned MuJoCo tasks behind one registry.

Example::

    from rpl_sim_bridge.tasks import make_task

    task = make_task('slippery_push')
    obs, info = task.reset(seed=0)
    obs, reward, terminated, truncated, info = task.step(np.zeros(task.spec.action_dim))

Registered here: ``'push'``, ``'slippery_push'``, ``'pick_and_place'`` (see
:mod:`rpl_sim_bridge.tasks.fetch`). Other tasks join with :func:`register_task`.
"""

from rpl_sim_bridge.tasks.goal_task import (
    GoalTask,
    MujocoWarning,
    MujocoWarningError,
    ObsDict,
    goal_distance,
    sparse_reward,
)
from rpl_sim_bridge.tasks.registry import (
    TaskFactory,
    TaskSpec,
    UnknownTaskError,
    available_tasks,
    make_task,
    register_task,
    task_spec,
)

# Imported last: registers the Fetch tasks.
from rpl_sim_bridge.tasks.fetch import FetchTask, FetchTaskConfig  # noqa: E402  isort: skip

__all__ = [
    'FetchTask',
    'FetchTaskConfig',
    'GoalTask',
    'MujocoWarning',
    'MujocoWarningError',
    'ObsDict',
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
