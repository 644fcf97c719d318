"""A task variant: FetchPush on ice (sliding friction 0.1 on every geom).

Registered by the entry point ``icy_push`` in group ``rpl.tasks`` (pyproject.toml): the
registry loads :data:`ICY_PUSH`, a ``TaskPlugin`` of the task's spec and its factory.
"""

from __future__ import annotations

from typing import Any

from gymnasium_robotics.envs.fetch.push import MujocoFetchPushEnv

from rpl_interfaces.params import build_config
from rpl_sim_bridge.tasks.fetch import FetchTask, FetchTaskConfig, fetch_spec
from rpl_sim_bridge.tasks.registry import TaskPlugin

NAME = 'icy_push'
DESCRIPTION = 'example plug-in: FetchPush with sliding friction 0.1 on every geom'
DEFAULTS = {'surface_friction': 0.1, 'block_table_friction': 0.1}


def make_icy_push(**overrides: Any) -> FetchTask:
    """The icy push task with config overrides (e.g. ``max_episode_steps=20``)."""
    config = build_config(FetchTaskConfig, {**DEFAULTS, **overrides})
    return FetchTask(NAME, DESCRIPTION, MujocoFetchPushEnv, config)


ICY_PUSH = TaskPlugin(
    fetch_spec(NAME, DESCRIPTION, build_config(FetchTaskConfig, DEFAULTS)), make_icy_push
)
