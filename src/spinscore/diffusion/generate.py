"""Reverse sampling on (S²)^N from a trained score model, and its check against REMC.

Both samplers start from the uniform distribution at t_max (the prior, SPEC §4) and run the
time back to t_min:

* ``method="ode"``: the probability-flow ODE dx/dt = −½ s(x, t), either adaptive (dopri5 in
  u = ln t, the same integrator as the likelihood, `likelihood.pf_ode_trajectory`) or, with
  `steps`, fixed geodesic Heun steps on a log-spaced time grid (predictor exp_x(h v), corrector
  with the second velocity projected back onto T_x: second order).
* ``method="sde"``: the reverse-time SDE of Brownian motion (generator ½Δ),
  dx = s(x, t) dτ + dB (τ = −t), by geodesic Euler–Maruyama on a log-spaced grid:
  x ← exp_x(s(x, t_k) Δt + √Δt · P_x ξ), ξ ~ N(0, I₃) (tangent noise of variance Δt per tangent
  direction). An optional final denoising step x ← exp_x(t_min s(x, t_min)) removes the
  remaining noise of variance t_min (Tweedie's mean shift to first order).

`energy_comparison` compares the energies of generated chains with REMC snapshots: means,
spreads, 1-D Wasserstein distance and Kolmogorov–Smirnov statistic (`analysis.generation`
draws both for one sequence).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from spinscore.diffusion.flow import pf_ode_trajectory, velocity_field
from spinscore.geometry.sphere import exp_map, tangent_project, uniform_sphere

__all__ = ["energy_comparison", "log_time_grid", "sample_chains"]

PAIR_BUDGET = 200_000  # chains × N² per network call (≈ 1 GB of activations, paper model)
DEFAULT_SDE_STEPS = 500


def log_time_grid(t_min: float, t_max: float, steps: int) -> np.ndarray:
    """steps + 1 diffusion times from t_max down to t_min, geometric (log-spaced), (steps+1,)."""
    return t_max * (t_min / t_max) ** (np.arange(steps + 1) / steps)


def _score(model: nn.Module, x: Tensor, types: Tensor, t: float) -> Tensor:
    """s_θ(x, t) in the dtype of x (velocity_field gives −½ t s in u = ln t)."""
    return velocity_field(model, types, t, x.dtype)(x) * (-2.0 / t)


def _heun_ode(model: nn.Module, x: Tensor, types: Tensor, times: np.ndarray,
              on_step: Callable[[], None]) -> Tensor:
    """Fixed-step geodesic Heun for dx/dt = −½ s backwards along `times` (decreasing)."""
    for t_now, t_next in zip(times[:-1], times[1:], strict=True):
        h = t_now - t_next  # > 0: the step runs the time backwards, velocity +½ s
        v1 = 0.5 * _score(model, x, types, t_now)
        y = exp_map(x, h * v1)
        v2 = tangent_project(x, 0.5 * _score(model, y, types, t_next))
        x = exp_map(x, 0.5 * h * (v1 + v2))
        on_step()
    return x


def _euler_maruyama(model: nn.Module, x: Tensor, types: Tensor, times: np.ndarray,
                    on_step: Callable[[], None], generator: torch.Generator | None) -> Tensor:
    """Geodesic Euler–Maruyama for the reverse SDE dx = s dτ + dB along `times` (decreasing)."""
    valid = (types >= 0)[..., None].to(x.dtype)
    for t_now, t_next in zip(times[:-1], times[1:], strict=True):
        dt = t_now - t_next
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        step = _score(model, x, types, t_now) * dt + math.sqrt(dt) * tangent_project(x, noise)
        x = exp_map(x, step * valid)
        on_step()
    return x


def sample_chains(
    model: nn.Module,
    types: Tensor,
    n: int,
    *,
    t_min: float,
    t_max: float,
    method: Literal["ode", "sde"] = "ode",
    steps: int | None = None,
    denoise: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """Draw n chains of the sequence `types` from the model by reverse diffusion.

    types: (N,) long site types (no padding); t_min, t_max: the model's time range (uniform
    prior at t_max). method "ode": probability-flow ODE, adaptive dopri5 (rtol, atol) when
    `steps` is None, else `steps` geodesic Heun steps; "sde": reverse SDE with `steps` geodesic
    Euler–Maruyama steps (default 500), log-spaced in t. `denoise`: a final mean-shift step at
    t_min. Chains are drawn in batches of `batch_size` (default from PAIR_BUDGET); all randomness
    comes from `generator`. Returns (n, N, 3) float64 unit spins.
    """
    if method not in ("ode", "sde"):
        raise ValueError(f"method: expected 'ode' or 'sde', got {method!r}")
    if not 0 < t_min < t_max:
        raise ValueError(f"expected 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps: expected a positive number, got {steps}")
    length = types.shape[-1]
    batch_size = batch_size or max(1, PAIR_BUDGET // (length * length))
    adaptive = method == "ode" and steps is None
    n_steps = steps or DEFAULT_SDE_STEPS
    times = log_time_grid(t_min, t_max, n_steps)
    bar = tqdm(total=n * (1 if adaptive else n_steps), disable=not progress, leave=False,
               desc=f"sample ({method})", unit="chain" if adaptive else "chain-step")
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            batch_types = types.reshape(1, -1).expand(b, length)
            x = uniform_sphere((b, length), generator=generator, dtype=torch.float64)
            if adaptive:
                x = pf_ode_trajectory(model, x, batch_types, [math.log(t_max), math.log(t_min)],
                                      rtol=rtol, atol=atol)[-1]
                bar.update(b)
            elif method == "ode":
                x = _heun_ode(model, x, batch_types, times, lambda b=b: bar.update(b))
            else:
                x = _euler_maruyama(model, x, batch_types, times, lambda b=b: bar.update(b),
                                    generator)
            if denoise:
                x = exp_map(x, t_min * _score(model, x, batch_types, t_min))
            out.append(x)
    bar.close()
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# Generated chains against REMC
# --------------------------------------------------------------------------------------------
def energy_comparison(generated: np.ndarray, reference: np.ndarray) -> dict:
    """Compare two energy samples (units of J): means, standard deviations, their standard errors,
    the 1-D Wasserstein distance, and the two-sample Kolmogorov–Smirnov statistic and p-value
    (the p-value assumes independent draws; REMC snapshots are correlated, so read it loosely).
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    gen, ref = np.asarray(generated, float), np.asarray(reference, float)
    ks = ks_2samp(gen, ref)
    return {
        "n_generated": int(gen.size), "n_reference": int(ref.size),
        "mean_generated": float(gen.mean()), "mean_reference": float(ref.mean()),
        "std_generated": float(gen.std(ddof=1)), "std_reference": float(ref.std(ddof=1)),
        "sem_generated": float(gen.std(ddof=1) / math.sqrt(gen.size)),
        "sem_reference": float(ref.std(ddof=1) / math.sqrt(ref.size)),
        "mean_difference": float(gen.mean() - ref.mean()),
        "wasserstein": float(wasserstein_distance(gen, ref)),
        "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
    }
