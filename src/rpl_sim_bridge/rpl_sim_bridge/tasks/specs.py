"""The Fetch tasks' specs and their registration, without MuJoCo or Gymnasium-Robotics.

What a caller needs to know about a Fetch task (sizes, field names, episode length, action
bounds and names, goal radius) is built here from :class:`FetchTaskConfig` alone, so a
controller node on a robot without the simulator binds the Fetch tasks
(tests/test_node_imports.py). The registered factory imports the simulated task
(:mod:`rpl_sim_bridge.tasks.fetch`, MuJoCo) only when a task is built.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rpl_interfaces import contract
from rpl_interfaces.params import build_config, describe
from rpl_sim_bridge.layout import FETCH_GOAL_FIELDS, FETCH_OBS_FIELDS, FetchObs
from rpl_sim_bridge.tasks.registry import (  # noqa: F401  (SimulatorUnavailableError re-exported)
    SimulatedTaskFactory,
    SimulatorUnavailableError,
    TaskSpec,
    register_task,
)

# The Fetch action: gripper displacement dx, dy, dz (x 0.05 m per control step, world
# frame) and the finger command gripper (+1 opens, -1 closes), each in [-1, 1].
FETCH_ACTION_FIELDS = contract.ACTION_FIELDS
_FETCH_ACTION_DIM = len(FETCH_ACTION_FIELDS)
FETCH_ACTION_UNITS = (
    'dx, dy, dz: gripper displacement, x 0.05 m per step (world frame); '
    'gripper: finger command, +1 opens, -1 closes; each in [-1, 1]'
)


@dataclasses.dataclass(frozen=True)
class FetchTaskConfig:
    """Settings of a Fetch goal task (defaults = the original RPL experiments)."""

    max_episode_steps: int = dataclasses.field(
        default=50,
        metadata=describe('Episode length T (steps); truncated at T.', range=(1, 10**6)),
    )
    distance_threshold: float = dataclasses.field(
        default=0.05,
        metadata=describe('Success radius of the block around the goal (m).', range=(1e-4, 1.0)),
    )
    control_dt: float = dataclasses.field(
        default=0.04,
        metadata=describe(
            'Control period (s); must be a whole number of physics steps.', range=(1e-4, 1.0)
        ),
    )
    physics_timestep: float = dataclasses.field(
        default=0.002, metadata=describe('MuJoCo timestep (s).', range=(1e-5, 0.1))
    )
    surface_friction: float = dataclasses.field(
        default=0.0,
        metadata=describe(
            'Sliding friction applied to EVERY geom as (mu, 5e-3, 1e-4), as the 2019 '
            "SlipperyPush did; 0 keeps the model's own frictions.",
            range=(0.0, 10.0),
        ),
    )
    block_table_friction: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'Sliding friction set on BOTH the block and the table geoms (MuJoCo combines '
            'geom frictions by max), so block-table contacts get exactly this value.',
            range=(0.0, 10.0),
        ),
    )
    mujoco_warnings: str = dataclasses.field(
        default='raise',
        metadata=describe(
            'What a MuJoCo warning (e.g. unstable simulation) does: raise MujocoWarningError '
            'or issue a Python MujocoWarning.',
            choices=('raise', 'warn'),
        ),
    )


def fetch_spec(name: str, description: str, config: FetchTaskConfig) -> TaskSpec:
    """Spec of a Fetch task (25-D observation, 3-D goal, 4-D action in [-1, 1])."""
    return TaskSpec(
        name=name,
        description=description,
        obs_dim=FetchObs.DIM,
        goal_dim=len(FETCH_GOAL_FIELDS),
        action_dim=_FETCH_ACTION_DIM,
        max_episode_steps=config.max_episode_steps,
        distance_threshold=config.distance_threshold,
        obs_fields=FETCH_OBS_FIELDS,
        action_low=-1.0,
        action_high=1.0,
        control_dt=config.control_dt,
        action_fields=FETCH_ACTION_FIELDS,
        goal_fields=FETCH_GOAL_FIELDS,
        action_units=FETCH_ACTION_UNITS,
    )


FETCH_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    'push': (
        'Push the block to a goal on the table; gripper blocked (stock FetchPush-v4).',
        {},
    ),
    'slippery_push': (
        'FetchPush with sliding friction 0.18 on every geom, block-table included (2019 RPL).',
        {'surface_friction': 0.18, 'block_table_friction': 0.18},
    ),
    'pick_and_place': (
        'Move the block to a goal, half of them in the air (stock FetchPickAndPlace-v4).',
        {},
    ),
}
"""Registered Fetch tasks: name -> (description, config values that differ from the
defaults). The MuJoCo model of each is in :data:`rpl_sim_bridge.tasks.fetch.FETCH_ENVS`."""

FETCH_SIMULATOR = 'mujoco and gymnasium-robotics'
"""What the simulated Fetch (and hook) tasks need, for the error where it is missing."""


for _name, (_description, _defaults) in FETCH_TASKS.items():
    register_task(
        _name,
        fetch_spec(_name, _description, build_config(FetchTaskConfig, _defaults)),
        SimulatedTaskFactory(
            _name, 'rpl_sim_bridge.tasks.fetch', 'make_fetch_task', FETCH_SIMULATOR
        ),
    )
