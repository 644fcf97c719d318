"""Base controllers (pure observation -> action) and the controller node.

Example::

    from rpl_base_controllers import make_controller

    controller = make_controller('reactive_push', task='slippery_push')
    controller.reset()
    action = controller(obs['observation'], obs['desired_goal'])  # (4,) in [-1, 1]

The planner (:class:`DiscreteMPCPush`) is imported on first use: it builds a MuJoCo task.
Controllers of other packages join through the entry-point group ``rpl.controllers``
(see :mod:`rpl_base_controllers.registry`).
"""

from typing import Any

from rpl_base_controllers.base import BaseController
from rpl_base_controllers.reactive_pick_and_place import (
    ReactivePickAndPlace,
    ReactivePickAndPlaceConfig,
)
from rpl_base_controllers.reactive_push import ReactivePush, ReactivePushConfig
from rpl_base_controllers.registry import (
    ControllerInfo,
    ControllerParam,
    ControllerSpec,
    UnknownControllerError,
    available_controllers,
    controller_config,
    controller_info,
    make_controller,
    parse_controller_params,
    register_controller,
)

__all__ = [
    'BaseController',
    'ControllerInfo',
    'ControllerParam',
    'ControllerSpec',
    'DiscreteMPCPush',
    'DiscreteMPCPushConfig',
    'ReactivePickAndPlace',
    'ReactivePickAndPlaceConfig',
    'ReactivePush',
    'ReactivePushConfig',
    'UnknownControllerError',
    'available_controllers',
    'controller_config',
    'controller_info',
    'make_controller',
    'parse_controller_params',
    'register_controller',
]


def __getattr__(name: str) -> Any:
    if name in ('DiscreteMPCPush', 'DiscreteMPCPushConfig'):
        from rpl_base_controllers import discrete_mpc_push

        return getattr(discrete_mpc_push, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
