"""DDPG agent for goal-conditioned tasks: critic and actor updates, targets, burn-in.

Losses (baselines HER conventions):

    y = clip(r + gamma * Q'(o', g, pi'(o', g)), -1 / (1 - gamma), 0)
    critic: mean (Q(o, g, u) - y)^2
    actor:  -mean Q(o, g, pi(o, g)) + action_l2 * mean pi(o, g)^2

where u, pi are tanh-space actions. During the RPL burn-in only the critic learns. The
clip assumes the sparse goal rewards in [-1, 0]; a fixed-goal task's dense rewards (e.g.
the pusher's -(1.25 |object - goal|_1 + ...) per step, below -1) leave the target
unclipped: y = r + gamma * Q'(o', pi'(o')) (``clip_target`` False).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from rpl_trainer.config import TrainConfig
from rpl_trainer.her import Transitions
from rpl_trainer.networks import Actor, Critic, Dims
from rpl_trainer.normalizer import RunningNormalizer
from rpl_trainer.residual import Scale, action_bound, as_scale


class UpdateStats(NamedTuple):
    """Numbers from one gradient step."""

    critic_loss: float
    actor_loss: float
    """Actor loss (also computed, but not applied, while the actor is frozen)."""
    q_mean: float
    """Mean Q(o, g, pi(o, g)) over the batch."""


def polyak_update(online: nn.Module, target: nn.Module, polyak: float) -> None:
    """target <- polyak * target + (1 - polyak) * online, for parameters and buffers."""
    with torch.no_grad():
        for source, dest in zip(online.parameters(), target.parameters(), strict=True):
            dest.mul_(polyak).add_(source, alpha=1.0 - polyak)
        for source, dest in zip(online.buffers(), target.buffers(), strict=True):
            dest.copy_(source)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A torch view of a numpy batch array (copied only if not contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(array))


AUTO_PRECISION_MARGIN = 1.1
"""``update_precision=auto`` takes bfloat16 only when it makes at least this many times the
float32 updates per second (float32 keeps the exact numerics on a near tie)."""

_RESOLVED_PRECISION: dict[tuple, tuple[str, float]] = {}


def _updates_per_s(agent: DDPGAgent, batch: Transitions, seconds: float) -> float:
    agent.update(batch)  # warm-up (first-call allocations)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        agent.update(batch)
        calls += 1
    return calls / elapsed


def resolve_precision(
    dims: Dims, config: TrainConfig, episode_steps: int, seconds: float = 0.25
) -> tuple[str, float]:
    """The update precision to use: the configured one, or for ``auto`` the faster of
    float32 and bfloat16 on this machine for these shapes.

    ``auto`` times full updates (actor too) of two throwaway agents of the run's shapes on
    one random batch, in turns (float32, bfloat16, float32, bfloat16), and keeps the result
    for the rest of the process (per shapes, batch size and thread count).

    Returns:
        ``(precision, ratio)``: ``'float32'`` or ``'bfloat16'``, and the measured bfloat16 /
        float32 updates-per-second ratio (NaN when not measured).
    """
    if config.update_precision != 'auto':
        return config.update_precision, float('nan')
    key = (dims, config.hidden_size, config.hidden_layers, config.batch_size,
           config.two_frame, torch.get_num_threads())  # fmt: skip
    if key not in _RESOLVED_PRECISION:
        rng = np.random.default_rng(0)
        b = config.batch_size

        def random(*shape: int) -> np.ndarray:
            return rng.standard_normal(shape).astype(np.float32)

        o, a = dims.obs_dim, dims.action_dim
        batch = Transitions(
            random(b, o), random(b, o), random(b, dims.goal_dim), np.tanh(random(b, a)),
            -np.abs(random(b)), random(b, o),
        )  # fmt: skip
        rates: dict[str, float] = {'float32': 0.0, 'bfloat16': 0.0}
        agents = {}
        with torch.random.fork_rng():  # the run's own random stream stays untouched
            for precision in rates:
                # (The executed-action critic adds a few elementwise ops: timed as residual.)
                trial = dataclasses.replace(
                    config,
                    update_precision=precision,
                    critic_action='residual',
                    base_input=False,
                    residual_axis_scales='',
                )
                agents[precision] = DDPGAgent(dims, trial, episode_steps)
                agents[precision].burn_in.active = False  # time the actor step too
            for _ in range(2):
                for precision, agent in agents.items():
                    rates[precision] += _updates_per_s(agent, batch, seconds / 2)
        ratio = rates['bfloat16'] / rates['float32']
        choice = 'bfloat16' if ratio >= AUTO_PRECISION_MARGIN else 'float32'
        _RESOLVED_PRECISION[key] = (choice, ratio)
    return _RESOLVED_PRECISION[key]


class BurnIn:
    """Decides when the RPL actor may start learning.

    Every ``window`` gradient steps the window's criterion value is formed: ``q_drift`` =
    |mean Q(s, pi(s)) of this window - of the previous window| (first window: no value),
    ``critic_loss`` = mean critic loss of the window. Burn-in ends when the value is below
    ``beta``, or after ``max_updates`` gradient steps (0: never by count).

    Args:
        criterion: ``q_drift`` or ``critic_loss``.
        beta: Threshold.
        window: Gradient steps per window.
        max_updates: Cap on the burn-in length in gradient steps (0: no cap).
        enabled: False means no burn-in at all (scratch learners, beta = 0).
    """

    def __init__(
        self, criterion: str, beta: float, window: int, max_updates: int, enabled: bool
    ) -> None:
        if criterion not in ('q_drift', 'critic_loss'):
            raise ValueError(
                f'burn-in criterion must be q_drift or critic_loss, got {criterion!r}'
            )
        self.criterion = criterion
        self.beta = beta
        self.window = window
        self.max_updates = max_updates
        self.active = enabled
        self.updates = 0
        self.value = float('nan')  # last window's criterion value
        self.ended_by = '' if enabled else 'disabled'
        self._sum_loss = 0.0
        self._sum_q = 0.0
        self._count = 0
        self._previous_q: float | None = None

    def observe(self, stats: UpdateStats) -> None:
        """Account one gradient step taken while active."""
        if not self.active:
            return
        self.updates += 1
        self._sum_loss += stats.critic_loss
        self._sum_q += stats.q_mean
        self._count += 1
        if self._count >= self.window:
            self._close_window()
        if self.active and self.max_updates and self.updates >= self.max_updates:
            self.active = False
            self.ended_by = 'cap'

    def _close_window(self) -> None:
        mean_q = self._sum_q / self._count
        mean_loss = self._sum_loss / self._count
        self._sum_loss = self._sum_q = 0.0
        self._count = 0
        if self.criterion == 'critic_loss':
            self.value = mean_loss
        elif self._previous_q is not None:
            self.value = abs(mean_q - self._previous_q)
        self._previous_q = mean_q
        if self.value < self.beta:  # NaN (no value yet) compares False
            self.active = False
            self.ended_by = self.criterion

    def state_dict(self) -> dict[str, Any]:
        """Counters and window sums, for checkpoints."""
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        vars(self).update(state)


class DDPGAgent:
    """Actor, critic, their targets, optimisers, input statistics and burn-in.

    Args:
        dims: Task sizes.
        config: Hyperparameters (network size, learning rates, clips, burn-in, ...).
        episode_steps: Episode length T (for gamma = 1 - 1/T and the target clip).
        clip_target: Clip the critic's targets to [-1 / (1 - gamma), 0], the range of
            returns of rewards in [-1, 0] (the sparse goal rewards); False for dense
            rewards of any size (:attr:`rpl_trainer.her.TransitionReward.sparse`).
        action_bounds: The task's (low, high) action bounds; the executed-action critic
            (``config.critic_action``) sees clip(base + scale * u, low, high) / max(|low|,
            |high|).
        residual_scale: That ``scale``: one, or one per action axis
            (:func:`rpl_trainer.residual.residual_scales`); default ``config.residual_scale``,
            which only a config without ``residual_axis_scales`` may leave to it.

    Raises:
        ValueError: ``residual_scale`` not given for a config with per-axis scales.
    """

    def __init__(
        self,
        dims: Dims,
        config: TrainConfig,
        episode_steps: int,
        clip_target: bool = True,
        action_bounds: tuple[float, float] = (-1.0, 1.0),
        residual_scale: Scale | None = None,
    ) -> None:
        self.dims = dims
        self.config = config
        self.executed_critic = config.critic_action == 'executed'
        low, high = (float(b) for b in action_bounds)
        self.action_bound = action_bound(low, high)
        # The executed action over the bound: clip(base / bound + (scale / bound) * u,
        # low / bound, high / bound), the scale a scratch learner's u has.
        if residual_scale is None and config.residual_axis_scales.strip():
            raise ValueError(
                'residual_axis_scales needs the resolved per-axis scale '
                '(rpl_trainer.residual.residual_scales) as residual_scale'
            )
        scale = as_scale(config.residual_scale if residual_scale is None else residual_scale)
        self._exec_scale: float | torch.Tensor = (
            scale / self.action_bound
            if isinstance(scale, float)
            else torch.as_tensor(scale / self.action_bound, dtype=torch.float32)
        )
        self._exec_low, self._exec_high = low / self.action_bound, high / self.action_bound
        self.gamma = config.resolved_gamma(episode_steps)
        self.clip_return = 1.0 / (1.0 - self.gamma)
        self.clip_target = clip_target
        net = dict(
            hidden=config.hidden_size,
            layers=config.hidden_layers,
            obs_clip=config.obs_clip,
            norm_clip=config.norm_clip,
            two_frame=config.two_frame,
        )
        self.actor = Actor(
            dims, zero_last=config.algo == 'rpl', base_input=config.base_input, **net
        )
        self.critic = Critic(dims, **net)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        for module in (self.actor_target, self.critic_target):
            module.requires_grad_(False)
        # fused: one kernel for all parameters, measured 0.76 -> 0.25 ms per step here.
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=config.actor_lr, fused=True
        )
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=config.critic_lr, fused=True
        )
        self.obs_stats = RunningNormalizer(dims.obs_dim, config.norm_eps)
        self.goal_stats = RunningNormalizer(dims.goal_dim, config.norm_eps)
        self.burn_in = BurnIn(
            config.burn_in_criterion,
            config.burn_in_beta,
            config.burn_in_window,
            config.burn_in_max_updates,
            enabled=config.burn_in_enabled,
        )
        self.updates = 0
        self.actor_updates = 0  # actor steps taken (after burn-in), for the lr warm-up
        self._episode_steps = episode_steps
        self._bf16: bool | None = None  # decided on the first update (resolve_precision)
        self.precision_ratio = float('nan')
        """bfloat16 / float32 updates per second measured for ``auto`` (NaN otherwise)."""

    @property
    def update_precision(self) -> str:
        """Precision of this agent's updates (``auto`` resolved: measured on first use)."""
        if self._bf16 is None:
            precision, self.precision_ratio = resolve_precision(
                self.dims, self.config, self._episode_steps
            )
            self._bf16 = precision == 'bfloat16'
        return 'bfloat16' if self._bf16 else 'float32'

    @property
    def actor_frozen(self) -> bool:
        """The actor does not learn yet (RPL burn-in)."""
        return self.burn_in.active

    def act(
        self,
        obs: np.ndarray,
        goal: np.ndarray,
        prev_obs: np.ndarray | None = None,
        base: np.ndarray | None = None,
    ) -> np.ndarray:
        """Deterministic tanh-space actions (batch, action_dim) for obs (batch, obs_dim),
        goal (batch, goal_dim), for two-frame agents prev_obs (batch, obs_dim) and, for
        ``base_input`` agents, the base action (batch, action_dim) in action units."""
        with torch.no_grad():
            prev = None if prev_obs is None else torch.as_tensor(prev_obs, dtype=torch.float32)
            seen = None
            if self.actor.base_input and base is not None:
                seen = torch.as_tensor(base, dtype=torch.float32) / self.action_bound
            u = self.actor(
                torch.as_tensor(obs, dtype=torch.float32),
                torch.as_tensor(goal, dtype=torch.float32),
                prev,
                seen,
            )
        return u.numpy()

    def update_normalizers(self, batch: Transitions) -> None:
        """Add a batch's observations and (relabelled) goals to the running statistics and
        copy the new mean/std into all four networks."""
        self.obs_stats.update(batch.obs)
        self.goal_stats.update(batch.goal)
        self._sync_normalizers()

    def _sync_normalizers(self) -> None:
        stats = (
            self.obs_stats.mean,
            self.obs_stats.std,
            self.goal_stats.mean,
            self.goal_stats.std,
        )
        for net in (self.actor, self.critic, self.actor_target, self.critic_target):
            net.obs_norm.set_stats(stats[0], stats[1])
            net.goal_norm.set_stats(stats[2], stats[3])

    def update(self, batch: Transitions) -> UpdateStats:
        """One critic step and, unless frozen by burn-in, one actor step."""
        two_frame = self.config.two_frame
        obs, goal, action = _tensor(batch.obs), _tensor(batch.goal), _tensor(batch.action)
        reward, next_obs = _tensor(batch.reward), _tensor(batch.next_obs)
        prev = _tensor(batch.prev_obs) if two_frame else None
        if self.executed_critic:
            if batch.executed is None or batch.base is None or batch.next_base is None:
                raise ValueError(
                    "critic_action 'executed' needs batches with executed and base actions "
                    "(a sampler with base_use 'critic')"
                )
            bound = self.action_bound
            action = _tensor(batch.executed) / bound
            base, next_base = _tensor(batch.base) / bound, _tensor(batch.next_base) / bound
        else:
            base = next_base = None
        # Forward passes in bfloat16 where configured (config.update_precision); the
        # parameters, their gradients and the optimiser state stay float32.
        bf16 = self.update_precision == 'bfloat16'
        autocast = torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16)
        # Targets y = clip(r + gamma * Q'(o', g, pi'(o', g)), -1 / (1 - gamma), 0), (B,)
        # (unclipped for dense rewards).
        with torch.no_grad(), autocast:
            # The next transition's previous frame is the current observation.
            next_prev = obs if two_frame else None
            next_action = self._critic_action(
                self.actor_target(next_obs, goal, next_prev, next_base), next_base
            )
            next_q = self.critic_target(next_obs, goal, next_action, next_prev).float()
            target = reward + self.gamma * next_q
            if self.clip_target:
                target = torch.clamp(target, -self.clip_return, 0.0)
        # Critic: mean (Q(o, g, u) - y)^2.
        with autocast:
            q = self.critic(obs, goal, action, prev).float()
        critic_loss = torch.mean((q - target) ** 2)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # Actor: -mean Q(o, g, pi(o, g)) + action_l2 * mean pi^2; not applied in burn-in.
        frozen = self.actor_frozen
        self.critic.requires_grad_(False)  # actor loss flows through, not into, the critic
        with torch.set_grad_enabled(not frozen), autocast:
            pi = self.actor(obs, goal, prev, base).float()
            q_pi = self.critic(obs, goal, self._critic_action(pi, base), prev).float()
            actor_loss = -q_pi.mean() + self.config.action_l2 * torch.mean(pi**2)
        self.critic.requires_grad_(True)
        if not frozen:
            self._set_actor_lr()
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optimizer.step()
            self.actor_updates += 1

        self.updates += 1
        stats = UpdateStats(critic_loss.item(), actor_loss.item(), q_pi.mean().item())
        if frozen:
            self.burn_in.observe(stats)
        if self.updates % self.config.target_update_interval == 0:  # polyak
            self.update_targets()
        return stats

    def _critic_action(self, u: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        """The critic's action input for actor outputs u (B, A): u itself, or for the
        executed-action critic the executed action over the bound (gradient to u where the
        clip does not bind)."""
        if base is None:
            return u
        scale = self._exec_scale
        if isinstance(scale, torch.Tensor):  # per axis: in u's precision, like a float
            scale = scale.to(dtype=u.dtype, device=u.device)
        return torch.clamp(base + scale * u, self._exec_low, self._exec_high)

    def _set_actor_lr(self) -> None:
        """The actor's learning rate for its next step: ``actor_lr``, ramped linearly over
        the first ``actor_warmup_updates`` actor steps (TrainConfig.actor_warmup_updates)."""
        warmup = self.config.actor_warmup_updates
        factor = min(1.0, (self.actor_updates + 1) / warmup) if warmup else 1.0
        for group in self.actor_optimizer.param_groups:
            group['lr'] = self.config.actor_lr * factor

    def update_targets(self) -> None:
        """Polyak-average the online networks into the targets."""
        polyak_update(self.actor, self.actor_target, self.config.polyak)
        polyak_update(self.critic, self.critic_target, self.config.polyak)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly."""
        return {
            'actor': self.actor.state_dict(),
            'critic': self.critic.state_dict(),
            'actor_target': self.actor_target.state_dict(),
            'critic_target': self.critic_target.state_dict(),
            'actor_optimizer': self.actor_optimizer.state_dict(),
            'critic_optimizer': self.critic_optimizer.state_dict(),
            'obs_stats': self.obs_stats.state_dict(),
            'goal_stats': self.goal_stats.state_dict(),
            'burn_in': self.burn_in.state_dict(),
            'updates': self.updates,
            'actor_updates': self.actor_updates,
            # ``auto`` as it was resolved (None: not yet): a resume keeps it, one run one
            # precision (it was measured again, and a run could switch half-way).
            'update_precision': None if self._bf16 is None else self.update_precision,
            'precision_ratio': self.precision_ratio,
        }

    def load_state_dict(self, state: dict[str, Any], keep_precision: bool = True) -> None:
        """Restore from :meth:`state_dict`; ``keep_precision``: also the precision that
        ``update_precision=auto`` resolved to (a resume; a warm start on another machine
        measures its own)."""
        self.actor.load_state_dict(state['actor'])
        self.critic.load_state_dict(state['critic'])
        self.actor_target.load_state_dict(state['actor_target'])
        self.critic_target.load_state_dict(state['critic_target'])
        self.actor_optimizer.load_state_dict(state['actor_optimizer'])
        self.critic_optimizer.load_state_dict(state['critic_optimizer'])
        self.obs_stats.load_state_dict(state['obs_stats'])
        self.goal_stats.load_state_dict(state['goal_stats'])
        self.burn_in.load_state_dict(state['burn_in'])
        self.updates = int(state['updates'])
        # Checkpoints from before the warm-up option: the actor stepped on every update
        # after burn-in.
        self.actor_updates = int(state.get('actor_updates', self.updates - self.burn_in.updates))
        resolved = state.get('update_precision')
        if keep_precision and self.config.update_precision == 'auto' and resolved is not None:
            self._bf16 = resolved == 'bfloat16'
            self.precision_ratio = float(state['precision_ratio'])
