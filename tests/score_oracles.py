"""Stand-in score models with the call signature of `ScoreModel`, differentiable in forward and
reverse mode and under vmap (plain torch expressions).

`HeatKernelScore`: the noised score is known exactly. Independent spins, spin i distributed at
diffusion time t as the heat kernel K_{t0+t}(mu_i, ·) (Brownian motion started at mu_i and run
for t0 + t), score from the Legendre series. `BoltzmannScore`: β F of a spin chain."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from spinscore.geometry.heat_kernel import heat_kernel_log_density
from spinscore.geometry.sphere import geodesic_angle
from spinscore.physics.hamiltonian import pair_couplings, system_couplings, system_tangent_force
from spinscore.systems import system_from_config


class HeatKernelScore(nn.Module):
    """score_i(x, t) = ∇ log K_{t0+t}(mu_i, x_i) = (p'(c)/p(c)) P(x_i) mu_i, c = mu_i·x_i, with
    p(c) = Σ_l (2l+1)/(4π) e^{−l(l+1)τ/2} P_l(c), τ = t0 + t. No parameters (float64)."""

    def __init__(self, mu: Tensor, t0: float):
        super().__init__()
        self.register_buffer("mu", mu.to(torch.float64))
        self.t0 = t0
        # terms until l(l+1)τ/2 > 45 (e^-45 relative) at the smallest τ = t0
        self.n_terms = int(math.ceil(math.sqrt(90.0 / t0))) + 2

    def forward(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        n = spins.shape[1]
        mu = self.mu[:n].to(spins.dtype)  # (N, 3)
        c = (spins * mu).sum(-1)  # (B, N)
        tau = (self.t0 + t).to(spins.dtype)[:, None]  # (B, 1)
        p_prev, p_cur = torch.ones_like(c), c  # P_{l-1}, P_l
        dp_prev, dp_cur = torch.zeros_like(c), torch.ones_like(c)
        p = torch.full_like(c, 1 / (4 * math.pi))
        dp = torch.zeros_like(c)
        for ell in range(1, self.n_terms + 1):
            coef = (2 * ell + 1) / (4 * math.pi) * torch.exp(-ell * (ell + 1) * tau / 2)
            p = p + coef * p_cur
            dp = dp + coef * dp_cur
            p_next = ((2 * ell + 1) * c * p_cur - ell * p_prev) / (ell + 1)
            dp_next = dp_prev + (2 * ell + 1) * p_cur
            p_prev, p_cur, dp_prev, dp_cur = p_cur, p_next, dp_cur, dp_next
        score = (dp / p)[..., None] * (mu - c[..., None] * spins)
        return score * (types >= 0)[..., None].to(spins.dtype)

    def log_density(self, spins: Tensor, types: Tensor, t: float) -> Tensor:
        """Σ_i log K_{t0+t}(mu_i, x_i) over valid spins, (B,) float64 (independent code path:
        the Mehler quadrature of `heat_kernel_log_density`)."""
        n = spins.shape[1]
        theta = geodesic_angle(spins.to(torch.float64), self.mu[:n])
        logk = heat_kernel_log_density(theta, self.t0 + t)
        return (logk * (types >= 0)).sum(-1)


def random_directions(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


class BoltzmannScore(nn.Module):
    """score(x, t) = β/(1 + βt) · F(x): the zero-noise score β F of the Boltzmann density of
    `system`, with the stiffness scale of a heat-kernel-smoothed mode (not the exact noised
    score, but a smooth model whose density decreases with the energy). Same signature as
    `ScoreModel`; differentiable."""

    def __init__(self, system):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(system.coupling_table()))
        self.beta = system.beta

    def forward(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        from spinscore.physics.hamiltonian import bond_couplings, tangent_force

        force = tangent_force(spins, bond_couplings(types, self.table.to(spins.dtype)))
        scale = self.beta / (1 + self.beta * t.to(spins.dtype))
        return scale[:, None, None] * force * (types >= 0)[..., None].to(spins.dtype)


class AttenuatedCouplings(torch.nn.Module):
    """W_{i,i+r}(t) = beta J_c / (1 + kappa_c t) for the class c of the bond: a field that
    follows the heat-kernel attenuation law exactly (kappa = 0: the oracle beta J)."""

    def __init__(self, system, kappa):
        super().__init__()
        self.system, self.beta = system, system.beta
        self.truth = np.asarray(system.parameter_vector())
        self.kappa = np.asarray(kappa, float)

    def couplings(self, spins, types, t):
        b, n, _ = spins.shape
        from spinscore.physics.hamiltonian import bond_classes

        cls = bond_classes(types.numpy(), self.system.n_types, self.system.max_range)
        w = np.zeros((b, n, n))
        tt = t.double().numpy()[:, None]
        for r in range(1, min(cls.shape[1], n - 1) + 1):
            c = cls[:, r - 1, : n - r]
            val = np.where(c >= 0, self.beta * self.truth[c] / (1 + self.kappa[c] * tt), 0.0)
            idx = np.arange(n - r)
            w[:, idx, idx + r] = w[:, idx + r, idx] = val
        return torch.as_tensor(w, dtype=spins.dtype)


def dense_couplings(system, table: np.ndarray, types: np.ndarray) -> np.ndarray:
    """J_ij (B, N, N) of samples with types (B, N) of a lattice or graph, table (K, n, n)."""
    pairs = system.pairs(types.shape[-1])
    w = np.zeros((*types.shape, types.shape[-1]))
    w[:, pairs.i, pairs.j] = w[:, pairs.j, pairs.i] = pair_couplings(types, pairs, table)
    return w


class PairOracle(torch.nn.Module):
    """Stand-in score model of any system: W = beta J_ij (float32, as the network runs) and the
    score beta F (float64)."""

    def __init__(self, config):
        super().__init__()
        self.config, self.system = config, system_from_config(config)
        self.beta, self.max_length = config.beta, self.system.max_sites

    def couplings(self, spins, types, t):
        w = dense_couplings(self.system, self.config.coupling_table(), types.numpy())
        return torch.as_tensor(self.beta * w, dtype=spins.dtype)

    def forward(self, spins, types, t):
        couplings = system_couplings(self.system, types, self.config.coupling_table())
        return self.beta * system_tangent_force(self.system, spins, couplings)


class SmoothedOracle(PairOracle):
    """beta J plus a term linear in t on every pair beyond the couplings' range (as the heat
    kernel induces): W(t) = beta J + t * 5 on pairs of pair feature > n_shells."""

    def couplings(self, spins, types, t):
        n = spins.shape[1]
        far = torch.as_tensor(self.system.pair_features(n) > self.system.n_shells)
        return super().couplings(spins, types, t) + 5.0 * t[:, None, None] * far
