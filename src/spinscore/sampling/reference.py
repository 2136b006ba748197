"""Plain NumPy reference samplers: slow, simple and independent of the compiled kernels.

Used by the tests as a second implementation, and to show why a parallel (checkerboard) sweep
needs K + 1 colours when bonds reach K sites: sites i and i+r (r <= K) must never be updated at
the same time, or the move no longer samples the Boltzmann distribution (SPEC §3 pitfalls).
"""

from __future__ import annotations

import numpy as np

from spinscore.physics.hamiltonian import local_field


def vmf_sample(mean: np.ndarray, kappa: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Von Mises-Fisher draws on S^2 with density ~ exp(kappa mu.S).

    Args:
        mean: (..., 3) unit mean directions mu; kappa: (...,) concentrations >= 0.
    Returns:
        (..., 3) unit vectors. cos(theta) by inversion of its exact CDF, azimuth from a
        projected Gaussian (no pole case).
    """
    kappa = np.asarray(kappa, dtype=float)
    u = rng.random(kappa.shape)
    k = np.maximum(kappa, 1e-300)
    v = -np.log(u + (1.0 - u) * np.exp(-2.0 * k)) / k
    v = np.where(kappa < 1e-12, 2.0 * u, np.minimum(v, 2.0))  # uniform cos(theta) when kappa=0
    cos_t, sin_t = 1.0 - v, np.sqrt(np.clip(v * (2.0 - v), 0.0, None))
    g = rng.standard_normal(mean.shape)
    g -= np.sum(g * mean, axis=-1, keepdims=True) * mean
    g /= np.linalg.norm(g, axis=-1, keepdims=True)
    return cos_t[..., None] * mean + sin_t[..., None] * g


def colour_sweep(spins: np.ndarray, bonds: np.ndarray, beta, n_colours: int,
                 rng: np.random.Generator) -> None:
    """One parallel heat-bath sweep: all sites of colour c = i mod n_colours at once.

    Args:
        spins: (B, L, 3) chains, updated in place; bonds: (B, K, L) from `bond_couplings`;
        beta: scalar or (B,); n_colours: must be >= K + 1 for a correct sampler (fewer is
        allowed only to demonstrate the bias).
    """
    beta = np.broadcast_to(np.asarray(beta, dtype=float), spins.shape[:1])
    for c in range(n_colours):
        h = local_field(spins, bonds)[:, c::n_colours]
        norm = np.linalg.norm(h, axis=-1)
        mean = h / np.where(norm > 0, norm, 1.0)[..., None]
        mean[norm == 0] = (0.0, 0.0, 1.0)
        spins[:, c::n_colours] = vmf_sample(mean, beta[:, None] * norm, rng)
