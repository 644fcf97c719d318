"""Training the probabilistic ensemble of PETS (torch) and saving it for the numpy planner.

The model is the one :mod:`rpl_base_controllers.pets` plans with: ``E`` MLPs (swish hidden
layers) from normalised ``(obs, action)`` to the mean and log-variance of the normalised
next-state delta, the log-variance softly bounded by learned ``max_logvar`` / ``min_logvar``.
Loss (Chua et al. 2018): per member the Gaussian negative log-likelihood
``mean((mu - y)^2 / var + log var)`` on its own bootstrap of the data, plus
``0.01 * (sum max_logvar - sum min_logvar)`` (keeps the bounds tight) and a small weight
decay. :func:`save_ensemble` writes the layout of
:data:`rpl_base_controllers.pets.ENSEMBLE_KEYS`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rpl_base_controllers.pets import ENSEMBLE_VERSION


@dataclasses.dataclass(frozen=True)
class EnsembleTrainConfig:
    """Settings of the ensemble and its training.

    Attributes:
        members: Ensemble size E (PETS: 5).
        hidden: Units per hidden layer.
        layers: Hidden layers.
        lr: Adam learning rate.
        batch_size: Minibatch per member.
        epochs: Passes over the data per :func:`fit` call.
        weight_decay: L2 penalty on the weights.
        logvar_bound_weight: Weight of ``sum max_logvar - sum min_logvar``.
    """

    members: int = 5
    hidden: int = 200
    layers: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 5
    weight_decay: float = 2.5e-5
    logvar_bound_weight: float = 0.01


class ProbabilisticEnsemble(nn.Module):
    """E parallel MLPs as batched weight tensors ``(E, in, out)``.

    Args:
        obs_dim: State size D.
        action_dim: Action size A.
        config: Sizes.
    """

    def __init__(self, obs_dim: int, action_dim: int, config: EnsembleTrainConfig) -> None:
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        sizes = [obs_dim + action_dim] + [config.hidden] * config.layers + [2 * obs_dim]
        e = config.members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            w = torch.randn(e, fan_in, fan_out) / (2 * fan_in**0.5)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(e, 1, fan_out)))
        self.max_logvar = nn.Parameter(torch.full((obs_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((obs_dim,), -10.0))
        for name in ('in_mean', 'in_std', 'out_mean', 'out_std'):
            size = obs_dim + action_dim if name.startswith('in') else obs_dim
            value = torch.zeros(size) if name.endswith('mean') else torch.ones(size)
            self.register_buffer(name, value)

    def set_normalisation(self, inputs: np.ndarray, deltas: np.ndarray) -> None:
        """Mean and std of ``(N, D + A)`` inputs and ``(N, D)`` deltas (std floored 1e-6)."""
        for name, data in (('in', inputs), ('out', deltas)):
            getattr(self, f'{name}_mean').copy_(torch.as_tensor(data.mean(0), dtype=torch.float32))
            std = np.maximum(data.std(0), 1e-6)
            getattr(self, f'{name}_std').copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised delta mean and bounded log-variance.

        Args:
            x: ``(E, N, D + A)`` normalised inputs.

        Returns:
            ``(mean, logvar)``, each ``(E, N, D)``, in normalised delta units.
        """
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.silu(x)
        mean, logvar = x[..., : self.obs_dim], x[..., self.obs_dim :]
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def nll(self, inputs: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """Mean Gaussian NLL (without the constant) of raw ``(E, N, D + A)`` inputs and
        ``(E, N, D)`` deltas, per member ``(E,)``."""
        mean, logvar = self((inputs - self.in_mean) / self.in_std)
        target = (deltas - self.out_mean) / self.out_std
        return ((mean - target) ** 2 * torch.exp(-logvar) + logvar).mean(dim=(1, 2))


def fit(
    model: ProbabilisticEnsemble,
    obs: np.ndarray,
    actions: np.ndarray,
    next_obs: np.ndarray,
    config: EnsembleTrainConfig,
    seed: int = 0,
) -> list[float]:
    """Train the ensemble on transitions, each member on its own bootstrap.

    Args:
        model: The ensemble (its normalisation is refit to the data).
        obs: ``(N, D)`` states.
        actions: ``(N, A)`` executed actions.
        next_obs: ``(N, D)`` next states.
        config: Training settings.
        seed: Seed of the bootstraps and minibatches.

    Returns:
        Mean NLL over the members, on all data, before training and after each epoch.
    """
    gen = np.random.default_rng(seed)
    inputs = np.concatenate([obs, actions], axis=1).astype(np.float32)
    deltas = (next_obs - obs).astype(np.float32)
    model.set_normalisation(inputs, deltas)
    n, e = len(inputs), len(model.weights[0])
    boot = gen.integers(0, n, size=(e, n))  # (E, N) bootstrap indices
    x_all, y_all = torch.as_tensor(inputs), torch.as_tensor(deltas)
    decay = [p for p in model.weights]
    optimiser = torch.optim.Adam(
        [
            {'params': decay, 'weight_decay': config.weight_decay},
            {'params': [*model.biases, model.max_logvar, model.min_logvar]},
        ],
        lr=config.lr,
    )
    history = [evaluate(model, inputs, deltas)]
    for _ in range(config.epochs):
        order = boot[:, gen.permutation(n)]
        for start in range(0, n, config.batch_size):
            idx = torch.as_tensor(order[:, start : start + config.batch_size])
            loss = model.nll(x_all[idx], y_all[idx]).sum()
            loss = loss + config.logvar_bound_weight * (
                model.max_logvar.sum() - model.min_logvar.sum()
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        history.append(evaluate(model, inputs, deltas))
    return history


@torch.no_grad()
def evaluate(model: ProbabilisticEnsemble, inputs: np.ndarray, deltas: np.ndarray) -> float:
    """Mean NLL over the members of ``(N, D + A)`` inputs and ``(N, D)`` deltas."""
    e = len(model.weights[0])
    x = torch.as_tensor(inputs, dtype=torch.float32).expand(e, -1, -1)
    y = torch.as_tensor(deltas, dtype=torch.float32).expand(e, -1, -1)
    return float(model.nll(x, y).mean())


def save_ensemble(model: ProbabilisticEnsemble, path: str | os.PathLike, command: str) -> None:
    """Write the ensemble as the ``.npz`` :func:`rpl_base_controllers.pets.load_ensemble`
    reads (version, the command that made it, layers and normalisation)."""
    arrays = {
        'version': np.int64(ENSEMBLE_VERSION),
        'command': np.str_(command),
        'obs_dim': np.int64(model.obs_dim),
        'action_dim': np.int64(model.action_dim),
        'n_layers': np.int64(len(model.weights)),
    }
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        arrays[f'w{i}'] = w.detach().numpy().astype(np.float32)
        arrays[f'b{i}'] = b.detach().numpy()[:, 0, :].astype(np.float32)
    for name in ('in_mean', 'in_std', 'out_mean', 'out_std', 'max_logvar', 'min_logvar'):
        arrays[name] = getattr(model, name).detach().numpy().astype(np.float32)
    tmp = f'{os.fspath(path)}.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
