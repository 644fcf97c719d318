"""Actor and critic: ReLU MLPs on normalised (observation, goal), optionally on two frames.

The actor returns u = tanh(f(norm(o), norm(g))) in [-1, 1]^action_dim, the "tanh-space"
action that the replay buffer stores and the critic sees. Scaling to action units (and, for
RPL, adding the base action) happens outside: see :mod:`rpl_trainer.residual`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rpl_trainer.normalizer import Normalize


class Dims(NamedTuple):
    """Sizes of a task's vectors; ``goal_dim`` 0 for a fixed-goal task (the networks then
    see the observation only, and their goal input is an empty (batch, 0) tensor)."""

    obs_dim: int
    goal_dim: int
    action_dim: int


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` ReLU layers of width ``hidden``, then a linear output layer."""
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class _GoalConditioned(nn.Module):
    """Shared input handling: normalisers for observation and goal, two-frame batching."""

    def __init__(self, dims: Dims, obs_clip: float, norm_clip: float, two_frame: bool) -> None:
        super().__init__()
        self.dims = dims
        self.two_frame = two_frame
        self.obs_norm = Normalize(dims.obs_dim, obs_clip, norm_clip)
        self.goal_norm = Normalize(dims.goal_dim, obs_clip, norm_clip)

    def _inputs(
        self, obs: torch.Tensor, goal: torch.Tensor, prev_obs: torch.Tensor | None
    ) -> torch.Tensor:
        """Normalised [o, g] of shape (batch, obs+goal), or (2 * batch, ...) for two frames
        (current frame first, then the previous one); [o] for a fixed-goal task."""
        if self.two_frame:
            if prev_obs is None:
                raise ValueError('a two-frame network needs prev_obs (batch, obs_dim)')
            obs = torch.cat([obs, prev_obs], dim=0)
            goal = torch.cat([goal, goal], dim=0)
        if self.dims.goal_dim == 0:  # fixed goal: the goal input is empty and not used
            return self.obs_norm(obs)
        return torch.cat([self.obs_norm(obs), self.goal_norm(goal)], dim=-1)

    def _average_frames(self, out: torch.Tensor) -> torch.Tensor:
        """Mean over the two frames of an output computed by :meth:`_inputs` batching."""
        if not self.two_frame:
            return out
        current, previous = out.chunk(2, dim=0)
        return 0.5 * (current + previous)


class Actor(_GoalConditioned):
    """Deterministic policy u = tanh(f(o, g)) (two-frame: tanh(mean of f over frames)).

    Args:
        dims: Task sizes.
        hidden: Units per hidden layer.
        layers: Hidden layers.
        obs_clip: Raw input clip.
        norm_clip: Normalised input clip.
        zero_last: Zero the last layer's weights and bias, so u = 0 for every input (RPL:
            the untrained policy is exactly the base controller).
        two_frame: Average f over (o_{t-1}, g) and (o_t, g).
        base_input: Also take the base action (over the action bound) as input.
    """

    def __init__(
        self,
        dims: Dims,
        hidden: int,
        layers: int,
        obs_clip: float,
        norm_clip: float,
        zero_last: bool,
        two_frame: bool = False,
        base_input: bool = False,
    ) -> None:
        super().__init__(dims, obs_clip, norm_clip, two_frame)
        self.base_input = base_input
        in_dim = dims.obs_dim + dims.goal_dim + (dims.action_dim if base_input else 0)
        self.body = mlp(in_dim, hidden, layers, dims.action_dim)
        if zero_last:
            last = self.body[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(
        self,
        obs: torch.Tensor,
        goal: torch.Tensor,
        prev_obs: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """u of shape (batch, action_dim) in [-1, 1] from obs (batch, obs_dim) and goal
        (batch, goal_dim); prev_obs (batch, obs_dim) only for two-frame actors; base
        (batch, action_dim), the base action over the action bound, only for actors with
        ``base_input``."""
        inputs = self._inputs(obs, goal, prev_obs)
        if self.base_input:
            if base is None:
                raise ValueError('an actor with base_input needs base (batch, action_dim)')
            if self.two_frame:
                base = torch.cat([base, base], dim=0)
            inputs = torch.cat([inputs, base], dim=-1)
        return torch.tanh(self._average_frames(self.body(inputs)))


class Critic(_GoalConditioned):
    """Q(o, g, u) for the tanh-space action u (two-frame: mean of Q over frames).

    Args:
        dims: Task sizes.
        hidden: Units per hidden layer.
        layers: Hidden layers.
        obs_clip: Raw input clip.
        norm_clip: Normalised input clip.
        two_frame: Average Q over (o_{t-1}, g, u) and (o_t, g, u).
    """

    def __init__(
        self,
        dims: Dims,
        hidden: int,
        layers: int,
        obs_clip: float,
        norm_clip: float,
        two_frame: bool = False,
    ) -> None:
        super().__init__(dims, obs_clip, norm_clip, two_frame)
        in_dim = dims.obs_dim + dims.goal_dim + dims.action_dim
        self.body = mlp(in_dim, hidden, layers, 1)

    def forward(
        self,
        obs: torch.Tensor,
        goal: torch.Tensor,
        action: torch.Tensor,
        prev_obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Q of shape (batch,) for obs (batch, obs_dim), goal (batch, goal_dim) and the
        tanh-space action (batch, action_dim)."""
        inputs = self._inputs(obs, goal, prev_obs)
        if self.two_frame:
            action = torch.cat([action, action], dim=0)
        q = self.body(torch.cat([inputs, action], dim=-1)).squeeze(-1)
        return self._average_frames(q)
