"""One typed, frozen config for a training run: every hyperparameter with its reason.

The defaults are the paper's DDPG + HER settings (Silver et al. 2018, appendix, and the
OpenAI baselines HER code it used) except where a field's docstring says why not. Runs are
described completely by this object: it is written to ``DIR/config.json`` and a resumed run
must match it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import importlib.resources
import json
import os
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from typing import Any

import yaml

from rpl_base_controllers.zero import ZERO
from rpl_interfaces.params import ParameterError, build_config, describe
from rpl_sim_bridge.bridge_config import MAX_SEED

ALGOS = ('rpl', 'scratch', 'expert_explore')
"""Learners sharing one code path: residual on a base, plain DDPG+HER, base-guided exploration."""

BURN_IN_CRITERIA = ('q_drift', 'critic_loss')
VECTOR_ENV_KINDS = ('sync', 'subprocess')
UPDATE_PRECISIONS = ('float32', 'bfloat16', 'auto')

# Fields that may change when a run is resumed (budgets and bookkeeping, not the learner).
RESUMABLE_CHANGES = frozenset(
    {
        'total_env_steps',
        'eval_interval',
        'checkpoint_interval',
        'torch_threads',
        'vector_env',
        'snapshots',
    }
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a DDPG + HER (residual) training run."""

    task: str = dataclasses.field(
        default='slippery_push', metadata=describe('Registered goal task name.')
    )
    """Registered goal task (``rpl_sim_bridge.tasks.available_tasks()``)."""

    controller: str = dataclasses.field(
        default='reactive_push', metadata=describe('Base controller name.')
    )
    """Base controller (``rpl_base_controllers.make_controller``). ``scratch`` does not act
    with it, but its level is still measured for the plot's 'Initial' line."""

    controller_params: str = dataclasses.field(
        default='', metadata=describe("Base controller parameters, 'NAME=VALUE,...'.")
    )
    """The base controller's parameters (``rpl train --controller-param carry_gain=50``);
    '' = its registered defaults."""

    algo: str = dataclasses.field(
        default='rpl', metadata=describe('Learner variant.', choices=ALGOS)
    )
    """``rpl``: executed = clip(base + scale * tanh(f), -1, 1) with a zero last actor layer.
    ``scratch``: DDPG + HER alone (base = 0, scale = 1, default init, no burn-in).
    ``expert_explore``: ``scratch`` whose exploratory actions come from the base controller
    with probability ``expert_alpha`` (else uniform) when an ``expert_eps`` coin comes up."""

    seed: int = dataclasses.field(default=0, metadata=describe('Run seed.', range=(0, MAX_SEED)))
    """Seeds torch, numpy and every episode's reset, so a run (and a resumed run) repeats."""

    total_env_steps: int = dataclasses.field(
        default=1_000_000, metadata=describe('Training budget in env steps.', range=(1, 10**10))
    )
    """Training budget in environment steps (all envs together); rounded up to whole cycles."""

    num_envs: int = dataclasses.field(
        default=2, metadata=describe('Parallel environments.', range=(1, 256))
    )
    """Episodes collected side by side per cycle (one batched actor call per step). The
    paper used 19 workers x 2 episodes per cycle; 2 matches this machine's 2 cores."""

    vector_env: str = dataclasses.field(
        default='sync', metadata=describe('Vector env kind.', choices=VECTOR_ENV_KINDS)
    )
    """``sync`` steps all envs in this process; ``subprocess`` gives each worker process its
    share and runs the learner's updates while the workers step. Measured on the shared
    2-core machine (push, 2 envs, 2000 steps, load ~3 from other jobs): sync 311-348 vs
    subprocess 231-282 env steps/s at 0.1 updates per step, 115-123 vs 100-103 at 0.5. With
    both cores busy the pipes cost more than the overlap gains; on an idle multi-core
    machine ``subprocess`` is the one to try."""

    torch_threads: int = dataclasses.field(
        default=1, metadata=describe('torch intra-op threads.', range=(1, 64))
    )
    """Same measurement as ``vector_env`` (sync): 1 thread 237-341 env steps/s, 2 threads
    38-178; a 3 x 256 update at batch 256 takes ~12 ms on one core (matmul-bound, ~66
    GFLOP/s), and a second intra-op thread only fights the envs and other jobs for the
    other core."""

    update_precision: str = dataclasses.field(
        default='float32',
        metadata=describe('Matmul precision of gradient updates.', choices=UPDATE_PRECISIONS),
    )
    """``float32``; ``bfloat16``: the forward passes of a gradient update run under CPU
    autocast in bfloat16 (weights, optimiser state and gradients stay float32; acting and
    the exported model are float32); ``auto``: whichever of the two makes more updates per
    second on this machine, measured once per process on the run's own network shapes
    before the first update (about a second; :func:`rpl_trainer.ddpg.resolve_precision`),
    float32 unless bfloat16 is at least 10 % faster. Whether bfloat16 pays off depends on
    the CPU, not only on its flags: 1.77x float32 on an AMD EPYC with ``avx512_bf16``, 0.6x
    on an Intel Xeon with the same flag (``benchmarks/trainer_speed.py`` shows both side by
    side)."""

    hidden_size: int = dataclasses.field(
        default=256, metadata=describe('Hidden units per layer.', range=(1, 4096))
    )
    """Hidden units per layer of actor and critic (paper: 256)."""

    hidden_layers: int = dataclasses.field(
        default=3, metadata=describe('Hidden layers.', range=(1, 16))
    )
    """ReLU hidden layers of actor and critic (paper: 3)."""

    actor_lr: float = dataclasses.field(
        default=1e-3, metadata=describe('Actor Adam learning rate.', range=(0.0, 1.0))
    )
    """Adam learning rate of the actor (paper: 1e-3)."""

    actor_warmup_updates: int = dataclasses.field(
        default=0,
        metadata=describe('Actor learning-rate warm-up in gradient steps.', range=(0, 10**9)),
    )
    """Not in the paper: the actor's learning rate rises linearly from 0 to ``actor_lr`` over
    this many actor updates, counted from the first one (for ``rpl``: from the end of burn-in);
    0 = full rate at once. Why: Adam's steps have a size of about the learning rate whatever
    the gradient's size, so a zero-initialised last layer whose gradient points the same way
    for every state moves the residual of every state by ~lr x (sum of the 256 hidden
    activations) per step, and saturates it within tens of updates of its release, before the
    critic has seen one action of the new policy."""

    critic_lr: float = dataclasses.field(
        default=1e-3, metadata=describe('Critic Adam learning rate.', range=(0.0, 1.0))
    )
    """Adam learning rate of the critic (paper: 1e-3)."""

    polyak: float = dataclasses.field(
        default=0.95, metadata=describe('Target network polyak factor.', range=(0.0, 1.0))
    )
    """target <- polyak * target + (1 - polyak) * online (paper: 0.95), applied every
    ``target_update_interval`` gradient steps."""

    target_update_interval: int = dataclasses.field(
        default=40, metadata=describe('Gradient steps between target updates.', range=(1, 10**6))
    )
    """The baselines code blended the targets once per cycle of 40 batches, not per batch:
    the polyak factor 0.95 only means the same thing with the same interval."""

    action_l2: float = dataclasses.field(
        default=1.0, metadata=describe('Actor action L2 penalty.', range=(0.0, 1e3))
    )
    """Weight of mean(tanh(f)^2) in the actor loss (paper: 1.0). For ``rpl`` it penalises the
    residual, i.e. it pulls the policy towards the base controller."""

    obs_clip: float = dataclasses.field(
        default=200.0, metadata=describe('Raw observation/goal clip.', range=(0.0, 1e9))
    )
    """Observations and goals are clipped to +-obs_clip before normalising (paper: 200)."""

    norm_clip: float = dataclasses.field(
        default=5.0, metadata=describe('Normalised input clip.', range=(0.0, 1e9))
    )
    """Normalised inputs are clipped to +-norm_clip (paper: 5)."""

    norm_eps: float = dataclasses.field(
        default=0.01, metadata=describe('Normaliser std floor.', range=(1e-12, 1e3))
    )
    """Lower bound of the running std, so constant inputs do not blow up (baselines: 0.01)."""

    buffer_size: int = dataclasses.field(
        default=1_000_000, metadata=describe('Replay capacity in transitions.', range=(1, 10**9))
    )
    """Replay capacity in transitions (paper: 1e6); stored as whole episodes, FIFO."""

    batch_size: int = dataclasses.field(
        default=256, metadata=describe('Minibatch size.', range=(1, 10**6))
    )
    """Transitions per gradient step (paper: 256)."""

    her_k: int = dataclasses.field(
        default=4, metadata=describe('HER future goals per real goal.', range=(0, 64))
    )
    """HER 'future' ratio k: a sampled transition is relabelled with probability
    1 - 1 / (1 + k) (k = 4: 0.8) to an achieved goal of a later step of its episode."""

    gamma: float = dataclasses.field(
        default=0.0,
        metadata=describe('Discount; 0 means 1 - 1/T; below 1.', range=(0.0, 0.9999)),
    )
    """Discount factor; 0 selects the paper's 1 - 1/T for the task's episode length T. The
    critic target is clipped to [-1 / (1 - gamma), 0], so 1 is refused (a division by zero
    once training started)."""

    random_eps: float = dataclasses.field(
        default=0.3, metadata=describe('Uniform random action probability.', range=(0.0, 1.0))
    )
    """Probability that an exploratory action is uniform in [-1, 1] (paper: 0.3); for
    ``rpl`` this is the residual, so the executed action is still base + scale * u."""

    noise_eps: float = dataclasses.field(
        default=0.2, metadata=describe('Gaussian action noise std.', range=(0.0, 10.0))
    )
    """Std of the Gaussian noise added to the (tanh-space) action (paper: 0.2, hooks 0.1)."""

    greedy_envs: int = dataclasses.field(
        default=0,
        metadata=describe('Training envs that act without exploration.', range=(0, 256)),
    )
    """The last ``greedy_envs`` of the ``num_envs`` training environments act with the
    deterministic policy (no noise, no random actions); their episodes go to the buffer
    like the others. 0 = every env explores (the paper). This mirrors the live learning
    launch, whose watched stack does not explore while the explorer stacks do."""

    residual_scale: float = dataclasses.field(
        default=2.0, metadata=describe('Residual scale of tanh output.', range=(0.0, 100.0))
    )
    """``rpl``: executed = clip(base + residual_scale * tanh(f), -1, 1); 2 lets the residual
    override any base action in [-1, 1]. Scratch learners use 1."""

    residual_axis_scales: str = dataclasses.field(
        default='',
        metadata=describe("Per-axis residual scales, 'ACTION_FIELD:SCALE ...'."),
    )
    """``rpl``: action axes whose residual scale is not ``residual_scale``, by the task's
    action field names, ``FIELD:SCALE`` items separated by spaces (``'gripper:2'`` on the
    Fetch tasks; no commas, so the setting also fits the trainer node's
    ``train_overrides``); '' = the same scale on every axis. A command the base gives at
    full strength (ReactiveHook's fingers: +-1) can only be reversed by a residual larger
    than 1, while a residual that large on the motion axes makes exploration and the
    actor's early bias too large (results/EXPERIMENTS.md, NoisyHook). The exported model
    holds the scales in its graph and states them in its metadata (``residual_scales``);
    the scratch learners ignore them like ``residual_scale``."""

    burn_in_criterion: str = dataclasses.field(
        default='q_drift', metadata=describe('Burn-in criterion.', choices=BURN_IN_CRITERIA)
    )
    """What must settle under ``burn_in_beta`` before the ``rpl`` actor may change.

    ``q_drift`` (chosen; the authors' code): |mean Q(s, pi(s)) of this window - of the last
    window|. ``critic_loss`` (the paper's text): the window's mean critic loss. Why drift:
    with sparse -1/0 rewards a fresh critic (Q ~ 0) has a TD loss of at most ~1 (targets are
    -1 or 0), so ``critic_loss < 1`` holds from the first window and ends burn-in before the
    critic knows anything; the loss only grows later, as Q spreads over [-T, 0]. The mean Q
    moves by many units per window while the values propagate and settles once they have,
    which is the thing burn-in waits for."""

    burn_in_beta: float = dataclasses.field(
        default=1.0, metadata=describe('Burn-in threshold; 0 disables.', range=(0.0, 1e9))
    )
    """Threshold beta (paper: 1.0 for all experiments). 0 disables burn-in."""

    burn_in_window: int = dataclasses.field(
        default=2000, metadata=describe('Gradient steps per burn-in window.', range=(1, 10**9))
    )
    """Gradient steps per monitoring window: the authors compared epochs of 50 cycles x 40
    batches = 2000 gradient steps, so the drift threshold keeps its meaning."""

    burn_in_max_updates: int = dataclasses.field(
        default=40_000, metadata=describe('Burn-in cap in gradient steps.', range=(0, 10**12))
    )
    """Safety net not in the paper: the actor is released after this many gradient steps even
    if the criterion never settles (0: no cap). Recorded in metrics.csv when it triggers."""

    expert_eps: float = dataclasses.field(
        default=0.6, metadata=describe('Expert Explore replace probability.', range=(0.0, 1.0))
    )
    """``expert_explore``: probability that the executed action is replaced (paper's grid
    search: 0.6; 0.3 on some tasks). It replaces ``random_eps`` for this learner."""

    expert_alpha: float = dataclasses.field(
        default=0.8, metadata=describe('Expert Explore base probability.', range=(0.0, 1.0))
    )
    """``expert_explore``: a replaced action is the base action with this probability, else
    uniform random (paper: 0.8)."""

    updates_per_env_step: float = dataclasses.field(
        default=0.1, metadata=describe('Update-to-data ratio.', range=(0.0, 1e3))
    )
    """Gradient steps per environment step (UTD); fractional debts carry over, and the
    updates run interleaved with the env steps. The paper did 40 updates per 2 x 19
    episodes of 50 steps: 0.021 per step, but each with gradients averaged over 19 MPI
    workers (an effective batch of 19 x 256, i.e. ~100 sampled transitions per env step).
    0.1 is ~5x the paper's update count per step (~26 samples per step) and costs ~1.2 ms
    of CPU per env step here, about what the MuJoCo step itself costs."""

    two_frame: bool = dataclasses.field(
        default=False, metadata=describe('Two-frame actor and critic.')
    )
    """Paper IV-C: the same network on (o_{t-1}, g) and (o_t, g), outputs averaged (pre-tanh
    for the actor, Q values for the critic). For noisy tasks."""

    base_input: bool = dataclasses.field(
        default=False, metadata=describe('The actor also sees the base action (rpl only).')
    )
    """The residual actor's input gains the base action over the action bound: f(s, g, b).
    A residual a* - base(s) is as hard to represent as base(s) itself wherever the base is
    not smooth in the state (a nearest-neighbour cache of planner actions is piecewise
    constant over 500 cells); with b as an input the actor can output a*(s) - b. Needs the
    executed-action critic (its sampler recomputes b at o_t and o_{t+1})."""

    privileged_goal: bool = dataclasses.field(
        default=False,
        metadata=describe("Store the simulator's achieved goal, not the noisy observed one."),
    )
    """Training-time privileged information from the simulator: the replay buffer keeps the
    achieved goal without observation noise (``GoalTask.true_achieved_goal``; the same as
    the observed one on a task without noise), so HER's rewards and relabelled goals follow
    where the object really is. The actor and critic still see the noisy observation, and
    evaluation and success are the task's (noisy_hook: the noisy block reading). NoisyHook's
    reward on the noisy reading barely distinguishes a block 0 from 2 cm off the goal
    (success 0.865 against 0.78), which is where its residuals lose their last hundredths
    (results/EXPERIMENTS.md). ``rpl train`` only: a bag or a live stack has no simulator state."""

    reward_threshold: float = dataclasses.field(
        default=0.0,
        metadata=describe(
            "Success radius of the training reward, m (0: the task's).", range=(0.0, 10.0)
        ),
    )
    """The learner's sparse reward counts an achieved goal within this radius of the goal
    (0: the task's ``distance_threshold``; goal tasks only). Evaluation and success keep the
    task's radius. With ``privileged_goal`` a radius below the task's asks for placement
    finer than the task's success test, where the observation noise hides the difference."""

    goal_consistent_her: bool = dataclasses.field(
        default=False, metadata=describe('Recompute the residual for relabelled goals.')
    )
    """HER relabelling is not valid in the residual MDP: the base action depended on the
    original goal. When set, a transition relabelled to g' stores the residual that explains
    the executed action under g': u' = clip((a - base(s, g')) / scale, -1, 1). No atanh is
    needed because the buffer holds u = tanh(f) itself. Where ``a`` was clipped at +-1 the
    unclipped sum is unknown; every u' with base' + scale * u' beyond the bound reproduces
    ``a``, and the formula picks the smallest |u'|, which the action L2 penalty favours.
    The outer clip only binds when |a - base'| > scale (a base action outside [-1, 1]).
    Needs a controller that is a pure function of (observation, goal), evaluated batched in
    the sampler (the reactive controllers: ~0.4 ms per 256 samples); planning controllers
    keep episode state and would be far too slow here."""

    critic_action: str = dataclasses.field(
        default='residual',
        metadata=describe(
            "The critic's action input: 'residual' (the tanh-space residual u, the paper's) "
            "or 'executed' (the executed action, base + scale * u clipped, over the action "
            'bound; rpl only).',
            choices=('residual', 'executed'),
        ),
    )
    """'residual' learns Q of the residual MDP, Q(s, u), whose base is part of the
    environment: wherever the base action jumps with the state (a nearest-neighbour cache of
    planner actions switches entries every step or two; a phase test flips), Q(s, u) jumps
    too. 'executed' learns the robot's Q(s, a) with a = clip(base(s, g) + scale * u, low,
    high) / max(|low|, |high|), as a scratch learner's critic does, and the actor's gradient
    flows through a to u. The sampler then recomputes the base action at o_t and o_{t+1} for
    every sampled transition (batched; a pure controller of (observation, goal) only, like
    goal-consistent HER), and HER relabelling is valid as it is: the stored executed action
    does not depend on the goal, so ``goal_consistent_her`` has nothing left to do."""

    eval_interval: int = dataclasses.field(
        default=20_000, metadata=describe('Env steps between evaluations.', range=(1, 10**10))
    )
    """Training env steps between evaluations (a metrics.csv row each)."""

    eval_episodes: int = dataclasses.field(
        default=20, metadata=describe('Episodes per evaluation.', range=(1, 10**6))
    )
    """Deterministic-policy episodes per evaluation (a fixed set of reset seeds)."""

    base_eval_episodes: int = dataclasses.field(
        default=20, metadata=describe('Episodes of the base-only evaluation.', range=(0, 10**6))
    )
    """Episodes of the base-controller-only evaluation stored in base_eval.json (the plot's
    'Initial' line); 0 skips it."""

    checkpoint_interval: int = dataclasses.field(
        default=100_000, metadata=describe('Env steps between checkpoints.', range=(1, 10**10))
    )
    """Env steps between checkpoints (always one at the end)."""

    snapshots: bool = dataclasses.field(
        default=False, metadata=describe('Keep the model of every periodic evaluation.')
    )
    """Export the actor at every periodic evaluation to ``snapshots/actor_<env steps>.onnx``
    (about 0.6 MB each for the hooks' nets), so that ``rpl select`` can re-evaluate the best
    few on more episodes than the 50-odd of a periodic evaluation: picking the maximum of
    twenty noisy 50-episode estimates favours a lucky model (NoisyHook: the periodic best
    0.84 measured 0.796 on 1000 held-out episodes)."""

    def __post_init__(self) -> None:
        if self.residual_scale <= 0.0:  # the range's low end is 0 inclusive
            raise ParameterError(
                f'residual_scale must be above 0, got {self.residual_scale:g} (the actor '
                'outputs residual_scale * tanh: 0 would learn nothing and export nothing)'
            )
        if self.critic_action == 'executed' and self.algo != 'rpl':
            raise ParameterError(
                f"critic_action 'executed' is for algo rpl; {self.algo}'s critic already sees "
                "the executed action (its u is the action over the bound): use 'residual'"
            )
        if self.critic_action == 'executed' and self.goal_consistent_her:
            raise ParameterError(
                "critic_action 'executed' makes goal_consistent_her redundant (the stored "
                'executed action does not depend on the goal): set goal_consistent_her false'
            )
        if self.base_input and self.algo != 'rpl':
            raise ParameterError(
                f'base_input is for algo rpl; {self.algo} has no base action to feed its actor'
            )
        if self.base_input and self.critic_action != 'executed':
            raise ParameterError(
                "base_input needs critic_action 'executed' (its updates recompute the base "
                f'action the actor sees); got critic_action {self.critic_action!r}'
            )
        if self.greedy_envs >= self.num_envs:
            raise ParameterError(
                f'greedy_envs ({self.greedy_envs}) must be below num_envs ({self.num_envs}): '
                'at least one training env has to explore'
            )

    def resolved_gamma(self, episode_steps: int) -> float:
        """The discount in use: ``gamma`` or, when it is 0, 1 - 1/T."""
        return self.gamma if self.gamma > 0.0 else 1.0 - 1.0 / episode_steps

    @property
    def updates_use_base(self) -> bool:
        """Gradient updates call the base controller on sampled transitions: goal-consistent
        HER for RPL, or the executed-action critic."""
        return self.critic_action == 'executed' or (
            self.goal_consistent_her and self.algo == 'rpl'
        )

    @property
    def future_p(self) -> float:
        """Probability that a sampled transition gets a 'future' goal: 1 - 1/(1 + k)."""
        return 1.0 - 1.0 / (1.0 + self.her_k)

    @property
    def uses_base(self) -> bool:
        """The executed action contains the base action (``rpl``)."""
        return self.algo == 'rpl'

    @property
    def deployed_controller(self) -> str:
        """The base controller the exported model runs on: ``controller`` for ``rpl``; the
        zero controller for the learners whose actor outputs the whole action (stated in the
        model's metadata, so ``rpl eval --controller zero`` and the stack accept it)."""
        return self.controller if self.uses_base else ZERO

    @property
    def deployed_controller_params(self) -> str | None:
        """The deployed controller's non-default parameters as the model states them
        (:func:`rpl_base_controllers.registry.stated_params`): ``controller_params`` for
        ``rpl``, '' (none) for the zero controller of the other learners; None (not
        stated) for a base that is not in the controller registry (a test problem's)."""
        if not self.uses_base:
            return ''
        from rpl_base_controllers.registry import UnknownControllerError, stated_params_text

        try:
            return stated_params_text(self.controller, self.controller_params)
        except UnknownControllerError:
            return None

    @property
    def burn_in_enabled(self) -> bool:
        """Whether the actor waits for the critic (``rpl`` with beta > 0)."""
        return self.algo == 'rpl' and self.burn_in_beta > 0.0

    def to_dict(self) -> dict[str, Any]:
        """Field values as a JSON-able dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Field values as pretty JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + '\n'


def make_config(values: Mapping[str, Any] | None = None) -> TrainConfig:
    """Validated config from a mapping; missing fields keep their defaults.

    Raises:
        ParameterError: Unknown field, wrong type, out of range or not one of the choices.
    """
    values = dict(values or {})
    # JSON stores whole floats as ints and ints may arrive as floats from YAML / CLI.
    for field in dataclasses.fields(TrainConfig):
        if field.name in values and isinstance(field.default, float):
            value = values[field.name]
            if isinstance(value, int) and not isinstance(value, bool):
                values[field.name] = float(value)
    return build_config(TrainConfig, values)


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Fields that differ between two configs and may not change on resume, as 'name: a -> b'."""
    return [
        f'{f.name}: {getattr(old, f.name)!r} -> {getattr(new, f.name)!r}'
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUMABLE_CHANGES and getattr(old, f.name) != getattr(new, f.name)
    ]


def check_keys(values: Mapping[str, Any], source: str) -> None:
    """Refuse names that are not TrainConfig fields.

    Args:
        values: Settings by name.
        source: Where they came from, for the message (a file, ``--set``).

    Raises:
        ParameterError: One line naming the first unknown key, its source and the closest
            field names.
    """
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3)
            hint = (
                f'; did you mean {" or ".join(close)}?'
                if close
                else ' (`rpl train --show-config` prints every setting)'
            )
            raise ParameterError(f'{source}: unknown setting {key!r}{hint}')


def shipped_config(task: str) -> Traversable | None:
    """The training config shipped for ``task`` (``rpl_trainer/train_configs/<task>.yaml``:
    the settings of the task's committed model), or None when there is none."""
    path = importlib.resources.files('rpl_trainer') / 'train_configs' / f'{task}.yaml'
    return path if path.is_file() else None


def shipped_config_tasks() -> list[str]:
    """Tasks with a shipped training config, sorted."""
    folder = importlib.resources.files('rpl_trainer') / 'train_configs'
    return sorted(p.name[: -len('.yaml')] for p in folder.iterdir() if p.name.endswith('.yaml'))


class _KeyGivenTwice(yaml.constructor.ConstructorError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the
    last one without a word: `actor_lr` set twice read as the second value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, collections.abc.Hashable):
                continue  # the safe loader's own error names it
            if key in seen:
                raise _KeyGivenTwice(
                    None,
                    None,
                    f'{key!r} is given twice (lines {seen[key] + 1} and '
                    f'{key_node.start_mark.line + 1})',
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | os.PathLike[str] | Traversable) -> dict[str, Any]:
    """Settings from a YAML file: a flat mapping of TrainConfig field names to values.

    Raises:
        ParameterError: Unreadable file, invalid YAML, a key given twice, not a mapping, or
            an unknown key; one line naming the file (values are checked by
            :func:`make_config`).
    """
    if isinstance(path, (str, os.PathLike)) and os.path.exists(path) and not os.path.isfile(path):
        # a pipe or device would be read until it ends, or memory does
        raise ParameterError(f'config file {path} is not a regular file')
    try:
        text = path.read_text(encoding='utf-8')
    except OSError as exc:
        raise ParameterError(f'cannot read config file {path}: {exc.strerror or exc}') from exc
    except UnicodeDecodeError as exc:
        raise ParameterError(f'config file {path} is not UTF-8 text ({exc.reason})') from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except _KeyGivenTwice as exc:
        raise ParameterError(f'config file {path}: {exc.problem}') from None
    except yaml.YAMLError as exc:
        where = getattr(exc, 'problem_mark', None)
        line = f' (line {where.line + 1})' if where is not None else ''
        problem = getattr(exc, 'problem', None) or type(exc).__name__
        raise ParameterError(f'config file {path} is not valid YAML{line}: {problem}') from exc
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ParameterError(
            f'config file {path} must hold a mapping of TrainConfig fields, '
            f'got a {type(values).__name__}'
        )
    check_keys(values, f'config file {path}')
    return values


__all__ = [
    'ALGOS',
    'BURN_IN_CRITERIA',
    'ParameterError',
    'TrainConfig',
    'check_keys',
    'config_differences',
    'make_config',
    'read_config_file',
    'shipped_config',
    'shipped_config_tasks',
]
