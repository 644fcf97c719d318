"""A synthetic fixed-goal task for tests: a 7-DOF arm pushing an object to a fixed target
(the shape of the coming pusher task: 20 observation fields, no goal fields, 7 actions).

No simulator: only its spec is registered (the tests never build the task).
"""

from __future__ import annotations

from rpl_sim_bridge.tasks import TaskSpec, register_task

NAME = 'fixed_goal_pusher_test'
JOINTS = tuple(f'j{i}' for i in range(7))
OBS_FIELDS = (
    *(f'qpos.{j}' for j in JOINTS),
    *(f'qvel.{j}' for j in JOINTS),
    *(f'fingertip.{a}' for a in 'xyz'),
    *(f'object.{a}' for a in 'xyz'),
)

SPEC = TaskSpec(
    name=NAME,
    description='7-DOF pusher with a fixed goal (tests; spec only)',
    obs_dim=len(OBS_FIELDS),
    goal_dim=0,
    action_dim=len(JOINTS),
    max_episode_steps=100,
    distance_threshold=0.05,
    obs_fields=OBS_FIELDS,
    action_low=-2.0,
    action_high=2.0,
    control_dt=0.05,
    action_fields=tuple(f'torque.{j}' for j in JOINTS),
    action_units='joint torques, N m',
)


def _no_simulator(**overrides: object) -> None:
    raise RuntimeError(f'{NAME} is a spec-only test task')


def register() -> TaskSpec:
    """Register the task (idempotent) and return its spec."""
    register_task(NAME, SPEC, _no_simulator, replace=True)
    return SPEC
