"""The task's parameters of each stack node, from the task's spec (no ``launch`` here).

A shipped task states them in ``config/<task>.yaml``; a plug-in task ships no file in this
package, so its stack takes what its spec implies (:func:`task_parameters`). A test checks
that for every shipped task the two agree.
"""

from __future__ import annotations

from typing import Any

# The nodes of every stack whose parameters a task's file (or spec) sets.
STACK_NODES = ('sim_bridge', 'base_controller', 'residual_node')


def task_parameters(task: str) -> dict[str, dict[str, Any]]:
    """Each stack node's task parameters (node name -> parameters).

    The sim bridge and the controller are bound to the task; the residual node clips
    commands to the task's action bounds and lets the residual reach their whole range
    (``action_high - action_low``), as the trainer composes it.

    Raises:
        rpl_sim_bridge.tasks.UnknownTaskError: ``task`` is not registered.
    """
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec(task)
    return {
        'sim_bridge': {'task': task},
        'base_controller': {'task': task},
        'residual_node': {
            'action_low': float(spec.action_low),
            'action_high': float(spec.action_high),
            'residual_limit': float(spec.action_high - spec.action_low),
        },
    }
