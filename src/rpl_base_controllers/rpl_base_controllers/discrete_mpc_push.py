"""DiscreteMPCPush: best-first search over unit gripper moves on a planning copy.

At every real step the controller rebuilds the physics state from the observation on its
private copy of the task (:mod:`rpl_base_controllers.planning_copy`), then runs a best-first
search: ``expansions`` times it pops the best open node and simulates each of the 6 unit
moves (+-x, +-y, +-z, fingers held) for one control step from it. Nodes are ranked by the
tuple (compared in order, smaller is better):

1. block-goal distance (m), rounded to ``block_distance_resolution`` so that the
   micrometre settling of a resting block does not decide between moves;
2. depth (steps) + distance (m) from the gripper to the push point ``push_offset``
   behind the block on the goal->block line (at block-centre height).

The action is the first move on the path to the best node found (the root excluded),
multiplied by ``action_scale`` and clipped to [-1, 1]; with unit moves this is a full 5 cm
step, the near bang-bang motion of the paper's controller.

Not a pure function of the observation: the arm posture of the copy is warm-started from
its own prediction (see :class:`~rpl_base_controllers.planning_copy.PlanningCopy`), so call
:meth:`DiscreteMPCPush.reset` at the start of every episode. Given the same observations
in the same order it is deterministic.
"""

from __future__ import annotations

import dataclasses
import heapq
import time

import numpy as np

from rpl_base_controllers.base import FETCH_INPUTS, LoopedBatchMixin, check_single
from rpl_interfaces.params import describe

# The 6 unit moves (dx, dy, dz, fingers): +x, -x, +y, -y, +z, -z.
UNIT_MOVES = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [-1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, -1.0, 0.0],
    ]
)


@dataclasses.dataclass(frozen=True)
class DiscreteMPCPushConfig:
    """Search settings of DiscreteMPCPush (defaults: the paper's controller)."""

    task: str = dataclasses.field(
        default='push',
        metadata=describe(
            'task whose physics the planning copy simulates', choices=('push', 'slippery_push')
        ),
    )
    expansions: int = dataclasses.field(
        default=10,
        metadata=describe(
            'node expansions (6 simulated moves each) per real step', range=(1, 1000)
        ),
    )
    push_offset: float = dataclasses.field(
        default=0.05,
        metadata=describe(
            'distance of the push point behind the block centre (m)', range=(0.0, 0.5)
        ),
    )
    action_scale: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'factor on the planned unit move before clipping to [-1, 1]', range=(0.0, 100.0)
        ),
    )
    block_distance_resolution: float = dataclasses.field(
        default=1e-3,
        metadata=describe(
            'block-goal distances are compared after rounding to this step (m); 0 compares '
            'exact floats',
            range=(0.0, 0.1),
        ),
    )


@dataclasses.dataclass
class PlanStats:
    """What the last call did.

    Attributes:
        gripper_sync_error: Gripper position error of the copy after the sync, m.
        simulated_steps: Control steps simulated by the search.
        best_depth: Depth of the best node (1 = the chosen move itself was best).
        plan_ms: Wall time of the whole call, ms.
    """

    gripper_sync_error: float = 0.0
    simulated_steps: int = 0
    best_depth: int = 0
    plan_ms: float = 0.0


@dataclasses.dataclass(order=True)
class _Node:
    key: tuple[float, float]
    order: int  # insertion counter: breaks ties deterministically (first inserted first)
    depth: int = dataclasses.field(compare=False)
    first_move: int = dataclasses.field(compare=False)
    state: np.ndarray = dataclasses.field(compare=False, repr=False)


class DiscreteMPCPush(LoopedBatchMixin):
    """Best-first search over 6 unit moves on a planning copy rebuilt from observations."""

    input_sizes = FETCH_INPUTS  # checked as a Fetch controller's inputs

    def __init__(
        self, config: DiscreteMPCPushConfig | None = None, name: str = 'discrete_mpc_push'
    ):
        self.config = config or DiscreteMPCPushConfig()
        self.name = name
        # Imported here: the registry reads DiscreteMPCPushConfig without MuJoCo.
        from rpl_base_controllers.planning_copy import PlanningCopy

        self.copy = PlanningCopy(self.config.task)
        self.stats = PlanStats()
        self._predicted_state = self.copy.initial_state

    def reset(self) -> None:
        """Start of an episode: the copy's arm posture goes back to the initial one."""
        self._predicted_state = self.copy.initial_state
        self.stats = PlanStats()

    def get_state(self) -> tuple[np.ndarray, PlanStats]:
        """Episode state (predicted copy state, last plan's stats); later calls replace,
        never modify, these objects."""
        return self._predicted_state, self.stats

    def set_state(self, state: tuple[np.ndarray, PlanStats]) -> None:
        """Put back a state from :meth:`get_state`."""
        self._predicted_state, self.stats = state

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Plan from the observed state; ``(25,)``, ``(3,)`` -> ``(4,)`` in [-1, 1]."""
        start = time.perf_counter()
        observation, desired_goal = check_single(observation, desired_goal)
        sync = self.copy.sync(observation, self._predicted_state)
        root_state = self.copy.task.get_state()
        first_move, first_state, best_depth, simulated = self._search(root_state, desired_goal)
        self._predicted_state = first_state
        self.stats = PlanStats(
            gripper_sync_error=sync.gripper_error,
            simulated_steps=simulated,
            best_depth=best_depth,
            plan_ms=(time.perf_counter() - start) * 1e3,
        )
        return np.clip(self.config.action_scale * UNIT_MOVES[first_move], -1.0, 1.0)

    def _search(
        self, root_state: np.ndarray, goal: np.ndarray
    ) -> tuple[int, np.ndarray, int, int]:
        """Best-first search from ``root_state``.

        Returns:
            (index of the first move towards the best node, state after that move,
            depth of the best node, control steps simulated).
        """
        counter = 0
        open_nodes = [_Node((0.0, 0.0), counter, 0, -1, root_state)]
        first_states: dict[int, np.ndarray] = {}
        best: _Node | None = None
        simulated = 0
        for _ in range(self.config.expansions):
            if not open_nodes:
                break
            parent = heapq.heappop(open_nodes)
            for move_index, move in enumerate(UNIT_MOVES):
                state = self.copy.simulate_from(parent.state, move)
                simulated += 1
                depth = parent.depth + 1
                first_move = move_index if parent.depth == 0 else parent.first_move
                counter += 1
                child = _Node(self._key(goal, depth), counter, depth, first_move, state)
                if depth == 1:
                    first_states[move_index] = state
                heapq.heappush(open_nodes, child)
                if best is None or child < best:
                    best = child
        assert best is not None  # expansions >= 1 always simulates the root's children
        return best.first_move, first_states[best.first_move], best.depth, simulated

    def _key(self, goal: np.ndarray, depth: int) -> tuple[float, float]:
        """Rank of the copy's current state at ``depth`` (smaller is better)."""
        gripper, block = self.copy.gripper_and_block()
        block_distance = float(np.linalg.norm(block - goal))
        resolution = self.config.block_distance_resolution
        if resolution > 0.0:
            block_distance = round(block_distance / resolution) * resolution
        to_goal = (goal - block)[:2]
        norm = float(np.linalg.norm(to_goal))
        push_point = block.copy()
        if norm > 0.0:
            push_point[:2] -= self.config.push_offset * to_goal / norm
        return block_distance, depth + float(np.linalg.norm(gripper - push_point))
