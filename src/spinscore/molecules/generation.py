"""Generation from a molecular score model: Langevin dynamics driven by the learned force.

At its smallest noise level the score s(x) is beta x the force, so F_θ = s / beta is a force
field, and Langevin dynamics with it samples the model's own Boltzmann distribution. This is
the model as a generator of the configurations it learned: run with the MD's integrator
settings (BAOAB, same time step and friction) from MD frames, the learned dynamics and the
true dynamics can be compared over the same time, frame for frame in distribution.

Why not reverse diffusion from noise: the model is trained at noise far below the thermal
amplitude of a bond (where its score is the force), so it has no score for the large noise
a reverse SDE starts from; and a score built from distances alone is invariant under
reflections, so generation from noise would give both enantiomers of a chiral molecule
(D- and L-alanine) in equal parts. Dynamics from L-alanine frames keeps the chirality.

Pure library: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from spinscore.molecules.md import MOLAR_GAS_CONSTANT

ScoreFn = Callable[[Tensor], Tensor]  # (B, n, 3) nm -> (B, n, 3) nm^-1


def model_score(model: torch.nn.Module, sigma: float) -> ScoreFn:
    """The score of `model` at noise `sigma` (nm) as a function of positions alone (no grad)."""

    def score(x: Tensor) -> Tensor:
        with torch.no_grad():
            sig = torch.full((x.shape[0],), sigma, dtype=torch.float32)
            return model(x.to(torch.float32), sig).to(x.dtype)

    return score


@dataclass(frozen=True)
class LangevinRun:
    """positions: (F, B, n, 3) nm, frame by chain; kinetic_temperature: (F, B) K, from the
    velocities at the same steps over all 3n degrees of freedom (the thermostat acts on all).
    A kinetic temperature above the bath's means the learned force does work: a force that is
    not the gradient of any energy heats the chains."""

    positions: np.ndarray
    kinetic_temperature: np.ndarray


def score_langevin(score: ScoreFn, start: np.ndarray, masses: np.ndarray, *,
                   temperature_K: float, timestep_fs: float, friction_per_ps: float,
                   steps: int, record_every: int, seed: int = 0) -> LangevinRun:
    """BAOAB Langevin dynamics with the force F = score / beta, chains in parallel.

    Args:
        score: positions (B, n, 3) nm -> score (B, n, 3) nm^-1 (`model_score`).
        start: (B, n, 3) nm, the first frame of each chain; velocities are drawn from
            Maxwell-Boltzmann at `temperature_K`.
        masses: (n,) dalton.
        temperature_K: K; beta = 1 / (R T) in mol/kJ.
        timestep_fs, friction_per_ps: the integrator, as for MD.
        steps: integration steps; record_every: steps between recorded frames.
        seed: the velocities' and the thermostat's random numbers.

    Returns:
        `LangevinRun` of the steps // record_every frames after every `record_every` steps.
    """
    if steps < record_every or record_every < 1:
        raise ValueError(f"score_langevin: need 1 <= record_every ({record_every}) <= steps ({steps})")
    x = torch.as_tensor(np.asarray(start, dtype=np.float64)).clone()
    if x.ndim != 3 or x.shape[1:] != (len(masses), 3) or not torch.isfinite(x).all():
        raise ValueError(f"score_langevin: start must be finite (B, {len(masses)}, 3) nm, "
                         f"got {tuple(x.shape)}")
    generator = torch.Generator().manual_seed(seed)
    kt = MOLAR_GAS_CONSTANT * temperature_K  # kJ/mol
    m = torch.as_tensor(np.asarray(masses, dtype=np.float64))[None, :, None]  # (1, n, 1)
    dt = timestep_fs * 1e-3  # ps
    c = float(np.exp(-friction_per_ps * dt))
    thermal = torch.sqrt(kt / m)  # nm/ps, the velocity std per component

    def noise() -> Tensor:
        return torch.randn(x.shape, generator=generator, dtype=torch.float64)

    def accel(pos: Tensor) -> Tensor:
        return score(pos) * kt / m  # (score / beta) / m: nm/ps^2

    v = thermal * noise()
    v -= (m * v).sum(dim=1, keepdim=True) / m.sum()  # no centre-of-mass drift
    a = accel(x)
    frames, temperatures = [], []
    dof_r = 3 * len(masses) * MOLAR_GAS_CONSTANT
    for step in range(1, steps + 1):
        v += 0.5 * dt * a
        x += 0.5 * dt * v
        v = c * v + np.sqrt(1 - c * c) * thermal * noise()
        x += 0.5 * dt * v
        a = accel(x)
        v += 0.5 * dt * a
        if step % record_every == 0:
            if not torch.isfinite(x).all():
                raise FloatingPointError(f"score_langevin: non-finite positions at step {step} "
                                         "(time step too long for the learned force?)")
            frames.append(x.numpy().copy())
            temperatures.append(((m * v * v).sum(dim=(1, 2)) / dof_r).numpy())
    return LangevinRun(np.stack(frames), np.stack(temperatures))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two histograms (any shape, normalised here), in nats:
    0 for equal, ln 2 for disjoint (SciPy's distance, squared)."""
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(np.ravel(p), np.ravel(q)) ** 2)
