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

Reaching t = 0 (`zero_time=True`). Every method stops at t_min, where the samples follow
p_{t_min}, the data density smoothed by the heat kernel: a mode of stiffness K has variance
(1 + t_min K)/K, hotter than the data. One more step from t_min to 0 with the score at t_min
leaves an O(t_min²) error: Euler–Maruyama x ← exp_x(t_min s + √t_min P_x ξ) for the stochastic
samplers (a Gaussian mode: variance (1/K)(1 + t²K²/(1 + tK))), the probability-flow Euler step
x ← exp_x(½ t_min s) for the ODE. (The mean shift `denoise` is not a sample: its variance is
1/(K (1 + t_min K)), as much too cold as p_{t_min} is too hot.)

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

__all__ = ["energy_comparison", "langevin_corrector", "log_time_grid", "sample_chains"]

PAIR_BUDGET = 200_000  # chains × N² per network call (≈ 1 GB of activations, paper model)
DEFAULT_SDE_STEPS = 500


def log_time_grid(t_min: float, t_max: float, steps: int) -> np.ndarray:
    """steps + 1 diffusion times from t_max down to t_min, geometric (log-spaced), (steps+1,)."""
    return t_max * (t_min / t_max) ** (np.arange(steps + 1) / steps)


def _score(model: nn.Module, x: Tensor, types: Tensor, t: float) -> Tensor:
    """s_θ(x, t) in the dtype of x (velocity_field gives −½ t s in u = ln t)."""
    return velocity_field(model, types, t, x.dtype)(x) * (-2.0 / t)


def _heun_step(model: nn.Module, x: Tensor, types: Tensor, t_now: float, t_next: float,
               valid: Tensor, generator: torch.Generator | None) -> Tensor:
    """One geodesic Heun step of dx/dt = −½ s backwards from t_now to t_next < t_now."""
    h = t_now - t_next  # > 0: the step runs the time backwards, velocity +½ s
    v1 = 0.5 * _score(model, x, types, t_now)
    y = exp_map(x, h * v1)
    v2 = tangent_project(x, 0.5 * _score(model, y, types, t_next))
    return exp_map(x, 0.5 * h * (v1 + v2))


def _euler_maruyama_step(model: nn.Module, x: Tensor, types: Tensor, t_now: float,
                         t_next: float, valid: Tensor,
                         generator: torch.Generator | None) -> Tensor:
    """One geodesic Euler–Maruyama step of the reverse SDE dx = s dτ + dB, t_now → t_next."""
    dt = t_now - t_next
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    step = _score(model, x, types, t_now) * dt + math.sqrt(dt) * tangent_project(x, noise)
    return exp_map(x, step * valid)


PREDICTORS = {"ode": _heun_step, "sde": _euler_maruyama_step}


def langevin_corrector(model: nn.Module, x: Tensor, types: Tensor, t: float, n_steps: int,
                       snr: float, generator: torch.Generator | None = None,
                       max_step: float = 0.01) -> Tensor:
    """n_steps of unadjusted Riemannian Langevin dynamics on (S²)^N targeting p_t with the
    learned score: x ← exp_x(ε s + √(2ε) z), z = P_x ξ tangent Gaussian noise (E|z|² = 2 per
    spin). The step follows the signal-to-noise rule of Song et al. 2021, ε = 2 snr² E|z|² /
    |s|², with |s|² the mean over all spins of the batch, one ε for the whole batch: a step set
    by each chain's own state biases the stationary law (towards p/ε(x), away from the modes
    where |s| vanishes; measured on a single spin in a field, mean cos θ 0.43 for 0.80). At most
    `max_step`: where p_t is nearly uniform the rule gives steps of a radian and more (the noise
    per step stays below √(2 max_step) rad, 0.14 by default).

    x: (B, N, 3) unit spins; types: (B, N), −1 on padding (never moved). Returns (B, N, 3).
    """
    valid = (types >= 0)[..., None].to(x.dtype)
    n_spins = valid.sum().clamp_min(1.0)
    for _ in range(n_steps):
        s = _score(model, x, types, t) * valid
        z = tangent_project(x, torch.randn(x.shape, generator=generator, dtype=x.dtype,
                                           device=x.device)) * valid
        mean_s2 = (s * s).sum() / n_spins
        eps = (4.0 * snr**2 / mean_s2.clamp_min(1e-12)).clamp(max=max_step)
        x = exp_map(x, eps * s + torch.sqrt(2.0 * eps) * z)
    return x


def _integrate(model: nn.Module, x: Tensor, types: Tensor, times: np.ndarray,
               on_step: Callable[[], None], generator: torch.Generator | None, predictor: str,
               corrector_steps: int = 0, snr: float = 0.16, max_step: float = 0.01) -> Tensor:
    """Predictor steps along `times` (decreasing), each followed by `corrector_steps` Langevin
    steps at the new time."""
    valid = (types >= 0)[..., None].to(x.dtype)
    for t_now, t_next in zip(times[:-1], times[1:], strict=True):
        x = PREDICTORS[predictor](model, x, types, t_now, t_next, valid, generator)
        if corrector_steps:
            x = langevin_corrector(model, x, types, t_next, corrector_steps, snr, generator,
                                   max_step)
        on_step()
    return x


def sample_chains(
    model: nn.Module,
    types: Tensor,
    n: int,
    *,
    t_min: float,
    t_max: float,
    method: Literal["ode", "sde", "pc"] = "ode",
    steps: int | None = None,
    denoise: bool = False,
    zero_time: bool = False,
    predictor: Literal["sde", "ode"] = "sde",
    corrector_steps: int = 1,
    snr: float = 0.16,
    final_corrector_steps: int = 0,
    corrector_max_step: float = 0.01,
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
    Euler–Maruyama steps (default 500), log-spaced in t; "pc": predictor–corrector, `steps`
    (default 500) `predictor` steps ("sde" or "ode") each followed by `corrector_steps`
    Langevin steps (`langevin_corrector`, signal-to-noise ratio `snr`, steps of at most
    `corrector_max_step`), and `final_corrector_steps` Langevin steps at t_min at the end.
    `denoise`: a final mean-shift step at t_min; `zero_time`: a final step from t_min to 0
    (module docstring; stochastic for "sde" and "pc", deterministic for "ode"). Chains are
    drawn in batches of `batch_size` (default from PAIR_BUDGET); all randomness comes from
    `generator`. Returns (n, N, 3)
    float64 unit spins.
    """
    if method not in ("ode", "sde", "pc"):
        raise ValueError(f"method: expected 'ode', 'sde' or 'pc', got {method!r}")
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor: expected 'sde' or 'ode', got {predictor!r}")
    if not 0 < t_min < t_max:
        raise ValueError(f"expected 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps: expected a positive number, got {steps}")
    if denoise and zero_time:
        raise ValueError("denoise and zero_time: both are the last step from t_min to 0; "
                         "choose one")
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
            else:
                pc = method == "pc"
                x = _integrate(model, x, batch_types, times, lambda b=b: bar.update(b),
                               generator, predictor if pc else method,
                               corrector_steps if pc else 0, snr, corrector_max_step)
                if pc and final_corrector_steps:
                    x = langevin_corrector(model, x, batch_types, t_min, final_corrector_steps,
                                           snr, generator, corrector_max_step)
            if zero_time and method == "ode":
                x = exp_map(x, 0.5 * t_min * _score(model, x, batch_types, t_min))
            elif zero_time:
                x = _euler_maruyama_step(model, x, batch_types, t_min, 0.0,
                                         (batch_types >= 0)[..., None].to(x.dtype), generator)
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
