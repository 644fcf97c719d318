"""The ``complex_hook`` task's spec and registration, without MuJoCo or Gymnasium-Robotics.

``complex_hook`` is ``hook`` (same 40-D observation, goal, action, T = 100) where, at every
reset, the block is replaced by one of a procedurally generated library of objects
(:mod:`rpl_sim_bridge.tasks.object_library`) and 5-15 static bumps are put on the table;
neither shows in the observation. The simulated task lives in
:mod:`rpl_sim_bridge.tasks.complex_hook`.
"""

from __future__ import annotations

import dataclasses

from rpl_interfaces.params import ParameterError, build_config, describe
from rpl_sim_bridge.tasks.hook_specs import HookTaskConfig, hook_spec
from rpl_sim_bridge.tasks.registry import SimulatedTaskFactory, register_task
from rpl_sim_bridge.tasks.specs import FETCH_SIMULATOR

COMPLEX_HOOK_NAME = 'complex_hook'
COMPLEX_HOOK_DESCRIPTION = (
    'hook where every reset swaps the block for one of 100 generated objects (boxes, '
    'cylinders, capsules, ellipsoids, spheres, bowls, cups, chairs, ...; 2.5-8 cm across, '
    '0.1-2 kg, friction 0.1-1.0, random yaw) and puts 5-15 static bumps (up to 10 x 10 x 1 '
    'cm) on the table; neither is observed.'
)


@dataclasses.dataclass(frozen=True)
class ComplexHookTaskConfig(HookTaskConfig):
    """Settings of ``complex_hook`` (defaults: the registered task)."""

    library_seed: int = dataclasses.field(
        default=0,
        metadata=describe('Seed of the generated object library.', range=(0, 2**31 - 1)),
    )
    library_size: int = dataclasses.field(
        default=100,
        metadata=describe(
            'Number of library objects a reset chooses from (uniformly).', range=(1, 10_000)
        ),
    )
    bump_count_min: int = dataclasses.field(
        default=5,
        metadata=describe('Fewest static bumps on the table per episode.', range=(0, 15)),
    )
    bump_count_max: int = dataclasses.field(
        default=15,
        metadata=describe('Most static bumps per episode (the model reserves 15).', range=(0, 15)),
    )

    def __post_init__(self) -> None:
        if self.bump_count_min > self.bump_count_max:
            raise ParameterError(
                f'bump_count_min {self.bump_count_min} must not exceed bump_count_max '
                f'{self.bump_count_max}'
            )


register_task(
    COMPLEX_HOOK_NAME,
    hook_spec(
        COMPLEX_HOOK_NAME, COMPLEX_HOOK_DESCRIPTION, build_config(ComplexHookTaskConfig, {})
    ),
    SimulatedTaskFactory(
        COMPLEX_HOOK_NAME,
        'rpl_sim_bridge.tasks.complex_hook',
        'make_complex_hook_task',
        FETCH_SIMULATOR,
    ),
)
