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

`run_generation` and `generate_and_compare` draw chains for one sequence, store them, and compare
their energy distribution with REMC snapshots of the same sequence (the physics the model was
trained on): means, spreads, 1-D Wasserstein distance and Kolmogorov–Smirnov statistic.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from spinscore import __version__
from spinscore.diffusion.likelihood import pf_ode_trajectory, velocity_field
from spinscore.errors import SpinscoreError
from spinscore.geometry.sphere import exp_map, tangent_project, uniform_sphere
from spinscore.io import atomic_write_bytes

__all__ = [
    "energy_comparison",
    "generate_and_compare",
    "log_time_grid",
    "run_generation",
    "sample_chains",
]

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


def _write_chains(path: Path, spins: np.ndarray, types: np.ndarray, energies: np.ndarray,
                  attrs: dict) -> None:
    """HDF5 with spins float32 (n, L, 3), types int8 (L,), energy float64 (n,), attrs; written
    to PATH.tmp and renamed, so a crash never leaves a partial file at PATH."""
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("spins", data=spins.astype(np.float32))
        f.create_dataset("types", data=types.astype(np.int8))
        f.create_dataset("energy", data=energies)
        for key, value in attrs.items():
            f.attrs[key] = value
    os.replace(tmp, path)


def generate_and_compare(
    model: nn.Module,
    config,
    meta: dict,
    types: np.ndarray,
    n: int,
    out: str | Path,
    *,
    method: Literal["ode", "sde"] = "ode",
    steps: int | None = None,
    seed: int = 0,
    reference_snapshots: int = 200,
    progress: bool = False,
    png: str | Path | None = None,
    summary: str | Path | None = None,
) -> dict:
    """Generate n chains of `types`, write them to `out` (HDF5), run REMC for the same sequence
    and compare the energies.

    model, config (RunConfig), meta: from `training.checkpoint.load_model`. types: (L,) int
    site types. REMC: the config's simulation schedule and ladder with `reference_snapshots`
    snapshots of the coldest replica. Writes `out`, the energy histograms `png` (default
    OUT.png) and the comparison `summary` (default OUT.json). Returns the summary dict (energy
    statistics, settings, timings in seconds).
    """
    from spinscore.physics.hamiltonian import bond_couplings, chirality_reversals, energy
    from spinscore.report.diffusion_figures import energy_histogram_figure
    from spinscore.report.figures import save_figure
    from spinscore.sampling.remc import simulate_chain

    out = Path(out)
    png = Path(png) if png else out.with_suffix(".png")
    summary = Path(summary) if summary else out.with_suffix(".json")
    for path in (out, png, summary):
        path.parent.mkdir(parents=True, exist_ok=True)  # now, not after the sampling
    system, diffusion = config.system, config.diffusion
    types = np.asarray(types, dtype=np.int64)
    if len(types) > meta["max_length"]:
        raise SpinscoreError(f"sequence: {len(types)} sites exceed the checkpoint's max_length "
                             f"{meta['max_length']}")
    bonds = bond_couplings(types, system.coupling_table())  # (K, L)

    tick = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    spins = sample_chains(model, torch.as_tensor(types), n, t_min=diffusion.t_min,
                          t_max=diffusion.t_max, method=method, steps=steps, generator=gen,
                          progress=progress).numpy()
    spins = spins.astype(np.float32)
    e_gen = energy(spins.astype(np.float64), bonds)
    sample_s = time.perf_counter() - tick
    name = "".join(system.types[k] for k in types) if all(len(t) == 1 for t in system.types) \
        else ",".join(system.types[k] for k in types)
    _write_chains(out, spins, types, e_gen, {
        "sequence": name, "method": method, "steps": -1 if steps is None else steps,
        "seed": seed, "t_min": diffusion.t_min, "t_max": diffusion.t_max,
        "system": config.to_yaml(("system",)), "spinscore_version": __version__,
    })

    tick = time.perf_counter()
    sim = config.simulation.model_copy(update={"snapshots": reference_snapshots, "seed": seed})
    ref = simulate_chain(system, sim, 0, types=types)
    e_ref = energy(ref.spins, bonds)
    remc_s = time.perf_counter() - tick

    result = {
        "sequence": name, "length": len(types), "temperature": system.temperature,
        "method": method, "steps": steps, "seed": seed,
        **energy_comparison(e_gen, e_ref),
        "energy_per_spin_generated": float(e_gen.mean() / len(types)),
        "energy_per_spin_reference": float(e_ref.mean() / len(types)),
        # helix defects: domain walls between the senses of rotation (chirality_reversals)
        "chirality_reversals_generated": float(chirality_reversals(spins).mean()),
        "chirality_reversals_reference": float(chirality_reversals(ref.spins).mean()),
        "sample_seconds": sample_s, "remc_seconds": remc_s,
        "chains": str(out),
    }
    save_figure(energy_histogram_figure(e_gen, e_ref, title=f"{name} (L = {len(types)}), "
                                        f"T = {system.temperature:g}, {method}"), png)
    atomic_write_bytes(summary, json.dumps(result, indent=2).encode())
    return result


def run_generation(checkpoint: str | Path, data: str | Path, sequence_index: int, n: int,
                   out_dir: str | Path, *, method: Literal["ode", "sde"] = "ode",
                   steps: int | None = None, seed: int = 0, reference_snapshots: int = 200,
                   progress: bool = False) -> dict:
    """`generate_and_compare` for test sequence `sequence_index` of the data set `data`: writes
    OUT_DIR/generated.h5, generate.png and generate.json; returns the summary dict."""
    from spinscore.training.checkpoint import load_model_for_sequence

    model, config, meta, _, types = load_model_for_sequence(checkpoint, data, sequence_index)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return generate_and_compare(model, config, meta, types, n, out / "generated.h5",
                                method=method, steps=steps, seed=seed,
                                reference_snapshots=reference_snapshots, progress=progress,
                                png=out / "generate.png", summary=out / "generate.json")
