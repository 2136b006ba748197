"""The denoising score-matching loss on (S^2)^N."""

from __future__ import annotations

from torch import Tensor, nn


def dsm_loss_sum(model: nn.Module, x_t: Tensor, types: Tensor, t: Tensor, target: Tensor,
                 weight: Tensor) -> tuple[Tensor, Tensor]:
    """Sum over chains and valid spins of weight(t) |s_theta(x_t, t) - target|^2, and (detached,
    for monitoring) of t |s_theta - target|^2.

    x_t, target: (B, N, 3); types: (B, N) with -1 on padding; t, weight: (B,). Divide by the
    number of valid spins of the whole batch to get per-spin values. The t-scaled sum is
    comparable across t: its noise floor is t E|target - score|^2 ~ 2 per spin at small t, and
    what the model learns shows as the drop below that.
    """
    pred = model(x_t, types, t)
    err = ((pred - target) ** 2).sum(-1) * (types >= 0)  # (B, N)
    per_chain = err.sum(-1)  # (B,)
    return (weight * per_chain).sum(), (t * per_chain).sum().detach()
