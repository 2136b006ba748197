"""The denoising score-matching loss on (S^2)^N."""

from __future__ import annotations

from torch import Tensor, nn


def dsm_loss_sum(model: nn.Module, x_t: Tensor, types: Tensor, t: Tensor, target: Tensor,
                 weight: Tensor) -> Tensor:
    """Sum over chains and valid spins of weight(t) |s_theta(x_t, t) - target|^2.

    x_t, target: (B, N, 3); types: (B, N) with -1 on padding; t, weight: (B,). Divide by the
    number of valid spins of the whole batch to get the per-spin loss.
    """
    pred = model(x_t, types, t)
    err = ((pred - target) ** 2).sum(-1) * (types >= 0)  # (B, N)
    return (weight * err.sum(-1)).sum()
