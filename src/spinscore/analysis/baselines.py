"""Classical estimators of the couplings from the same snapshots (SPEC §7b), for comparison
with the network, on any spin system (a chain, a lattice, a graph). Both use the neighbour sums
g_ik of `inversion.layout_neighbour_sums` (the sum of S_j over the interacting pairs (i, j) of
class k, in the layout of the data set's system); the log-density is linear in theta = beta J:
log p(S) = sum_i sum_k theta_k g_ik . S_i / 2 + const.

Pseudo-likelihood: each spin's conditional law is von Mises-Fisher with natural parameter
h_i = sum_k theta_k g_ik, so
    l_i = h_i . S_i - log(4 pi sinh|h_i| / |h_i|),
a concave function of theta (maximised with L-BFGS).

Score matching on (S^2)^N (Mardia, Kent & Laha 2016): the Hyvarinen objective
E[1/2 |grad_M log p|^2 + Laplacian_M log p] is quadratic in theta,
    1/2 theta^T W theta - theta . b,   W_kl = sum_i (P_i g_ik) . (P_i g_il),
    b_k = 2 sum_i g_ik . S_i   (the Laplacian of a . S on S^2 is -2 a . S),
so theta = W^{-1} b. W is the X^T X of the network inversion: that inversion approximates this
system with the network's score in place of the data's own second-order information.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from spinscore.analysis.batches import dataset_system, snapshot_batches
from spinscore.analysis.inversion import (
    NormalEquations,
    layout_neighbour_sums,
    system_layout,
    tangent_design,
)
from spinscore.io import Dataset
from spinscore.physics.exact import LOG_4PI, langevin, log_sinhc


def _batches(ds: Dataset, batch_size: int, progress: bool, desc: str):
    """Per batch of snapshots: seq (B,), spins (B, N, 3), mask (B, N), the neighbour sums
    g (B, N, n_params, 3) and the design matrix X = P g (B, N, 3, n_params), unmasked."""
    sites = dataset_system(ds.config.system)
    for b in snapshot_batches(ds, batch_size, progress, desc):
        classes, pairs = system_layout(sites, b.types)
        g = layout_neighbour_sums(b.spins, classes, sites.n_parameters, pairs)
        yield b.seq, b.spins, b.mask, g, tangent_design(g, b.spins)


def score_matching(ds: Dataset, batch_size: int = 256, progress: bool = True
                   ) -> tuple[np.ndarray, NormalEquations]:
    """theta = beta J by score matching. Returns (theta (P,), normal equations with W per
    sequence in `xtx` and b in `xty`, for bootstrapping: theta = solve(sum xtx, sum xty))."""
    eqs = NormalEquations.zeros(ds.n_sequences, dataset_system(ds.config.system).n_parameters)
    for seq, spins, mask, g, x in _batches(ds, batch_size, progress, "score matching"):
        x = x * mask[..., None, None]
        g = g * mask[..., None, None]
        np.add.at(eqs.xtx, seq, np.einsum("blcp,blcq->bpq", x, x))
        np.add.at(eqs.xty, seq, 2 * np.einsum("blpc,blc->bp", g, spins))
        np.add.at(eqs.count, seq, 3 * mask.sum(1))
    theta = np.linalg.solve(eqs.xtx.sum(0), eqs.xty.sum(0))
    return theta, eqs


def pseudo_likelihood(ds: Dataset, batch_size: int = 256, progress: bool = True,
                      theta0: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """theta = beta J maximising the pseudo-likelihood. Returns (theta, info) with the
    optimiser's status, the mean log pseudo-likelihood per spin and X^T X (for `describe`)."""
    gs, ss, xtx = [], [], 0.0
    for _, spins, mask, g, x in _batches(ds, batch_size, progress, "pseudo-likelihood"):
        gs.append(g[mask])  # (M, P, 3)
        ss.append(spins[mask])  # (M, 3)
        x = x[mask]
        xtx = xtx + np.einsum("mcp,mcq->pq", x, x)
    g, s = np.concatenate(gs), np.concatenate(ss)
    gs_dot = np.einsum("mpc,mc->mp", g, s)  # g_ik . S_i, (M, P)
    n = len(s)

    def negative(theta):
        h = np.einsum("p,mpc->mc", theta, g)
        kappa = np.linalg.norm(h, axis=-1)
        ll = gs_dot @ theta - LOG_4PI - log_sinhc(kappa)
        unit = h / np.where(kappa > 0, kappa, 1.0)[:, None]
        # d/dtheta log(sinh k / k) = L(k) * (h_hat . g_k)
        grad = gs_dot - langevin(kappa)[:, None] * np.einsum("mc,mpc->mp", unit, g)
        return -ll.sum() / n, -grad.sum(0) / n

    start = np.zeros(g.shape[1]) if theta0 is None else theta0
    res = minimize(negative, start, jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15})
    return res.x, {"converged": bool(res.success), "iterations": int(res.nit),
                   "mean_log_pseudo_likelihood": float(-res.fun), "xtx": xtx}
