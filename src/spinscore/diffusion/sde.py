"""Brownian motion on (S^2)^N (generator 1/2 Laplacian on each sphere, t = sigma^2), the time
distribution of training, and the loss weights (SPEC §4).

Prior: the likelihood and the sampler start from the uniform distribution at t_max. Whatever
the data, KL(p_t || uniform) per spin is at most that of a spin started at a point (data
processing), which the l = 1 mode dominates: KL ~= (3/2) e^{-2t} (exact values from
`prior_kl`: 0.028 at t = 2, 6.8e-5 at t = 5). A chain of N spins has KL <= N * prior_kl(t_max):
0.0034 nats for N = 50 at the default t_max = 5 (0.5 nats at t_max = 2.5).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from spinscore.config import DiffusionConfig
from spinscore.geometry.heat_kernel import heat_kernel_sample, heat_kernel_target


def _component_cdf_inverse(kind: str, low: float, high: float, u: Tensor) -> Tensor:
    if kind == "loguniform":
        return low * (high / low) ** u
    return low + (high - low) * u


def time_density(cfg: DiffusionConfig, t: Tensor) -> Tensor:
    """Density p(t) of the training-time mixture, same shape as t."""
    total = sum(c.weight for c in cfg.t_sampling)
    p = torch.zeros_like(t)
    for c in cfg.t_sampling:
        inside = (t >= c.low) & (t <= c.high)
        if c.kind == "loguniform":
            dens = 1.0 / (t * math.log(c.high / c.low))
        else:
            dens = torch.full_like(t, 1.0 / (c.high - c.low))
        p = p + (c.weight / total) * torch.where(inside, dens, torch.zeros_like(t))
    return p


def sample_times(cfg: DiffusionConfig, n: int, generator: torch.Generator,
                 dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Draw n training times from the mixture and their loss weights.

    Returns (t, weight), both (n,). Weights (see DiffusionConfig): `likelihood`
    1 / (p(t) (t_max - t_min)) (mean 1 under p; the integral over [t_min, t_max] of the
    per-time loss, i.e. the ELBO weighting), `none` 1, `paper` t; then at least
    `weight_floor`.
    """
    weights = torch.tensor([c.weight for c in cfg.t_sampling], dtype=torch.float64)
    comp = torch.multinomial(weights / weights.sum(), n, replacement=True, generator=generator)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    t = torch.empty(n, dtype=torch.float64)
    for k, c in enumerate(cfg.t_sampling):
        sel = comp == k
        t[sel] = _component_cdf_inverse(c.kind, c.low, c.high, u[sel])
    if cfg.weighting == "likelihood":
        w = 1.0 / (time_density(cfg, t) * (cfg.t_max - cfg.t_min))
    elif cfg.weighting == "paper":
        w = t.clone()
    else:
        w = torch.ones_like(t)
    w = torch.clamp(w, min=cfg.weight_floor)
    return t.to(dtype), w.to(dtype)


def perturb(x0: Tensor, t: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Forward process: x_t ~ heat kernel around x0 and the exact denoising target.

    x0: (..., 3) unit spins; t: times of the same shape as x0.shape[:-1]. Returns
    (x_t, target), (..., 3): target = grad_{x_t} log p_t(x_t | x0), tangent at x_t.
    """
    x_t = heat_kernel_sample(x0, t, generator=generator)
    return x_t, heat_kernel_target(x_t, x0, t)


def mirror(x0: Tensor, v: Tensor) -> Tensor:
    """Rotate v by pi about the axis x0: 2 (x0 . v) x0 - v. Shapes (..., 3).

    The heat kernel around x0 is invariant under this rotation, so mirror(x0, x_t) is an exact
    sample too, and (target equivariance) its denoising target is mirror(x0, target). Training on
    both partners ("antithetic" noise) cancels the leading O(1/sqrt t) noise of the small-t
    targets in the gradient: the targets are ~ -v/t and +v/t, the predictions nearly equal.
    """
    return 2.0 * (x0 * v).sum(-1, keepdim=True) * x0 - v


def prior_kl(t: float, n_terms: int = 60) -> float:
    """KL(p_t || uniform) of one spin, in nats (exact, by quadrature over cos(theta))."""
    x, w = np.polynomial.legendre.leggauss(400)
    ell = np.arange(n_terms)
    p = np.polynomial.legendre.legval(x, (2 * ell + 1) / (4 * np.pi) * np.exp(-ell * (ell + 1) * t / 2))
    p = np.maximum(p, 1e-300)
    return float(2 * np.pi * np.sum(w * p * np.log(p * 4 * np.pi)))
