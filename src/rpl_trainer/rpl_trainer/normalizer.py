"""Input normalisation: running statistics (numpy) and the layer that applies them (torch).

The statistics are accumulated in float64 sums as in the baselines HER code; the layer holds
their current mean and std as buffers, so clipping and normalisation travel inside every
network and inside the exported ONNX graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RunningNormalizer:
    """Running mean and std of a feature vector, from sums over every sample seen.

    Args:
        dim: Feature size.
        eps: Lower bound of the std (constant features would otherwise divide by zero).
    """

    def __init__(self, dim: int, eps: float = 0.01) -> None:
        self.dim = dim
        self.eps = eps
        self.total = np.zeros(dim, np.float64)
        self.total_sq = np.zeros(dim, np.float64)
        self.count = 0

    def update(self, samples: np.ndarray) -> None:
        """Add samples of shape (batch, dim) (any leading shape that flattens to it)."""
        if self.dim == 0:  # a fixed-goal task's goals (..., 0): only counted
            self.count += int(np.prod(np.shape(samples)[:-1]))
            return
        flat = np.asarray(samples, np.float64).reshape(-1, self.dim)
        self.total += flat.sum(axis=0)
        self.total_sq += np.square(flat).sum(axis=0)
        self.count += flat.shape[0]

    @property
    def mean(self) -> np.ndarray:
        """Mean, shape (dim,), float32 (zeros before any update)."""
        return (self.total / max(self.count, 1)).astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        """Std floored at ``eps``, shape (dim,), float32 (ones before any update)."""
        if self.count == 0:
            return np.ones(self.dim, np.float32)
        mean = self.total / self.count
        var = np.maximum(self.eps**2, self.total_sq / self.count - np.square(mean))
        return np.sqrt(var).astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """The sums and count, for checkpoints."""
        return {'total': self.total.copy(), 'total_sq': self.total_sq.copy(), 'count': self.count}

    def load_state_dict(self, state: dict[str, np.ndarray | int]) -> None:
        """Restore from :meth:`state_dict`."""
        self.total = np.asarray(state['total'], np.float64).copy()
        self.total_sq = np.asarray(state['total_sq'], np.float64).copy()
        self.count = int(state['count'])


class Normalize(nn.Module):
    """clamp((clamp(x, +-raw_clip) - mean) / std, +-norm_clip) with mean/std as buffers.

    Args:
        dim: Feature size.
        raw_clip: Clip of the raw input (paper: 200).
        norm_clip: Clip of the normalised input (paper: 5).
    """

    def __init__(self, dim: int, raw_clip: float, norm_clip: float) -> None:
        super().__init__()
        self.raw_clip = float(raw_clip)
        self.norm_clip = float(norm_clip)
        self.register_buffer('mean', torch.zeros(dim))
        self.register_buffer('std', torch.ones(dim))

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Copy statistics (shape (dim,)) into the buffers in place."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
            self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise x of shape (batch, dim)."""
        x = torch.clamp(x, -self.raw_clip, self.raw_clip)
        return torch.clamp((x - self.mean) / self.std, -self.norm_clip, self.norm_clip)
