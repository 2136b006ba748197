"""ln Z by importance sampling from the model: the Boltzmann-generator route.

Chains x_n ~ q are drawn by the probability-flow ODE from the uniform prior at t_max (adaptive
dopri5, `diffusion.generate.sample_chains`), and their exact log q(x_n) comes from the same ODE
run forward with the exact Riemannian divergence (`diffusion.likelihood.solve_likelihood`):
the density of a probability-flow sample is the flow's push-forward of the prior, so the two
agree to the solver's tolerance. Then, with densities on (S²)^N w.r.t. the area measure as in
`thermo` (ln Z(0) = N ln 4π),

    log w_n = −β E(x_n) − log q(x_n),   Z = E_q[w],   ln Ẑ = logsumexp(log w) − ln n,

the effective sample size ESS = (Σ w)² / Σ w² (Kish), and the error bar of ln Ẑ by the delta
method, sqrt(1/ESS − 1/n) (the relative standard error of the mean weight), beside a bootstrap
over the chains. Both understate the error when the weights are heavy-tailed (ESS of a few):
then the largest weight's share tells. Observables are reweighted as Σ w O / Σ w with the
delta-method error sqrt(Σ w̃² (O − Ō)²), w̃ the normalised weights.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.special import logsumexp

__all__ = ["importance_estimate", "model_samples_with_log_q"]


def importance_estimate(log_w: np.ndarray, observables: dict[str, np.ndarray] | None = None,
                        n_boot: int = 200, seed: int = 0) -> dict:
    """ln Z and reweighted observables from log importance weights.

    log_w: (n,) log w_n = log(target density, unnormalised) − log q. observables: name →
    (n,) or (n, k) values per sample. Returns a dict: log_z, log_z_err (delta method),
    log_z_err_bootstrap (standard deviation over `n_boot` resamples), ess, ess_fraction
    (ESS / n), max_weight_share (the largest normalised weight), n, and per observable
    `name` → {"mean", "err"} (lists for vector observables).
    """
    log_w = np.asarray(log_w, dtype=float)
    if log_w.ndim != 1 or len(log_w) < 2 or not np.all(np.isfinite(log_w)):
        raise ValueError(f"log_w: expected (n >= 2,) finite values, got shape {log_w.shape}")
    n = len(log_w)
    w = np.exp(log_w - log_w.max())
    w_norm = w / w.sum()
    ess = 1.0 / np.sum(w_norm**2)
    rng = np.random.default_rng(seed)
    boots = [logsumexp(log_w[idx]) - np.log(n) for idx in rng.integers(0, n, (n_boot, n))]
    result = {"log_z": float(logsumexp(log_w) - np.log(n)),
              "log_z_err": float(np.sqrt(max(1.0 / ess - 1.0 / n, 0.0))),
              "log_z_err_bootstrap": float(np.std(boots, ddof=1)) if n_boot > 1 else None,
              "ess": float(ess), "ess_fraction": float(ess / n),
              "max_weight_share": float(w_norm.max()), "n": n}
    for name, values in (observables or {}).items():
        v = np.asarray(values, dtype=float).reshape(n, -1)
        mean = w_norm @ v
        err = np.sqrt(w_norm**2 @ (v - mean) ** 2)
        scalar = np.ndim(values) == 1
        result[name] = {"mean": float(mean[0]) if scalar else mean.tolist(),
                        "err": float(err[0]) if scalar else err.tolist()}
    return result


def model_samples_with_log_q(model, types: torch.Tensor, n: int, *, t_min: float, t_max: float,
                             rtol: float = 1e-5, atol: float = 1e-5, batch_size: int = 32,
                             seed: int = 0, progress: bool = False
                             ) -> tuple[np.ndarray, np.ndarray, dict]:
    """n chains of the sequence `types` (N,) long from the probability-flow ODE and their exact
    log q (float64 nats, exact divergence), in batches of `batch_size`.

    Returns (spins (n, N, 3) float64, log_q (n,), timings: sample_s, log_q_s).
    """
    from tqdm.auto import tqdm

    from spinscore.diffusion.generate import sample_chains
    from spinscore.diffusion.likelihood import solve_likelihood

    tick = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        spins = sample_chains(model, types, n, t_min=t_min, t_max=t_max, method="ode",
                              rtol=rtol, atol=atol, generator=gen, progress=progress)
    sampled = time.perf_counter()
    batch_types = types.reshape(1, -1).expand(n, -1)
    log_q = np.empty(n)
    for start in tqdm(range(0, n, batch_size), desc="log q", disable=not progress, leave=False):
        sl = slice(start, start + batch_size)
        log_q[sl] = solve_likelihood(model, spins[sl], batch_types[sl], t_min=t_min, t_max=t_max,
                                     rtol=rtol, atol=atol).log_p.cpu().numpy()
    return spins.cpu().numpy(), log_q, {"sample_s": sampled - tick,
                                        "log_q_s": time.perf_counter() - sampled}
