"""Phase II: read the couplings out of a force field by zero-intercept least squares (SPEC §6).

For every snapshot, the score at site i is regressed on the tangent projections of the
neighbour sums of each coupling class k,
    g_ik = sum_{j : (i, j) a bond of class k} S_j,     X[i, :, k] = P_i g_ik,
so that Y_i ~ sum_k c_k X[i, :, k] with Y the network's score (3L equations per snapshot). The
exact Boltzmann score beta F_i satisfies this with c = beta J exactly. The normal equations are
accumulated per sequence (K x K), so the 1e6+ equations of a test set never sit in memory and
sequences can be bootstrapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinscore.physics.hamiltonian import system_classes
from spinscore.systems import Chain, Pairs, SpinSystem


def neighbour_sums(spins: np.ndarray, classes: np.ndarray, n_params: int) -> np.ndarray:
    """g[..., i, k, :] = sum of S_j over the bonds (i, j) of class k.

    spins: (..., L, 3); classes: (..., K, L) from `bond_classes` (-1: no bond), broadcastable
    against spins' leading dims. Returns (..., L, n_params, 3).
    """
    length = spins.shape[-2]
    g = np.zeros((*spins.shape[:-1], n_params, 3))
    for r in range(1, min(classes.shape[-2], length - 1) + 1):  # no bond spans L sites
        cls = classes[..., r - 1, : length - r]  # bond (i, i+r) for i < L - r
        onehot = (cls[..., None] == np.arange(n_params)).astype(float)  # (..., L-r, P)
        g[..., : length - r, :, :] += onehot[..., None] * spins[..., r:, None, :]
        g[..., r:, :, :] += onehot[..., None] * spins[..., : length - r, None, :]
    return g


def pair_neighbour_sums(spins: np.ndarray, pairs: Pairs, classes: np.ndarray,
                        n_params: int) -> np.ndarray:
    """`neighbour_sums` from per-pair classes: spins (..., N, 3); classes (..., P) of the P
    `pairs` (-1: no pair), broadcastable against spins' leading dims. Returns
    (..., N, n_params, 3)."""
    onehot = (classes[..., None] == np.arange(n_params)).astype(float)  # (..., P, n_params)
    shape = np.broadcast_shapes(spins.shape[:-2], classes.shape[:-1])
    g = np.zeros((*shape, spins.shape[-2], n_params, 3))
    for a, b in ((pairs.i, pairs.j), (pairs.j, pairs.i)):  # S_b into row a, both ends
        terms = np.broadcast_to(onehot[..., None] * spins[..., b, None, :],
                                (*shape, len(pairs), n_params, 3))
        np.add.at(np.moveaxis(g, -3, 0), a, np.moveaxis(terms, -3, 0))
    return g


def layout_neighbour_sums(spins: np.ndarray, classes: np.ndarray, n_params: int,
                          pairs: Pairs | None = None) -> np.ndarray:
    """g (..., N, n_params, 3) from `classes` in the chain's bond layout (..., K, L)
    (`neighbour_sums`, pairs None) or per pair (..., P) of `pairs` (`pair_neighbour_sums`)."""
    if pairs is None:
        return neighbour_sums(spins, classes, n_params)
    return pair_neighbour_sums(spins, pairs, classes, n_params)


def tangent_design(g: np.ndarray, spins: np.ndarray) -> np.ndarray:
    """The design matrix X (..., N, 3, n_params) from neighbour sums g (..., N, n_params, 3):
    column k is P_i g_ik = g_ik - (g_ik . S_i) S_i, spins (..., N, 3)."""
    g = g - np.sum(g * spins[..., None, :], axis=-1, keepdims=True) * spins[..., None, :]
    return np.swapaxes(g, -1, -2)


def design_matrix(spins: np.ndarray, classes: np.ndarray, n_params: int,
                  pairs: Pairs | None = None) -> np.ndarray:
    """Tangent design matrix X (..., N, 3, n_params): column k is P_i g_ik (SPEC §6).

    `classes` in the chain's bond layout (..., K, L) (`bond_classes`), or per pair (..., P)
    of `pairs` for any other system (`physics.hamiltonian.system_classes`)."""
    return tangent_design(layout_neighbour_sums(spins, classes, n_params, pairs), spins)


def system_pairs(system: SpinSystem, n_sites: int) -> Pairs | None:
    """The pairs that per-pair arrays of `system` with N = `n_sites` sites run over; None for
    a `Chain`, whose arrays are in the bond layout (..., K, L)."""
    return None if isinstance(system, Chain) else system.pairs(n_sites)


def system_layout(system: SpinSystem, types: np.ndarray) -> tuple[np.ndarray, Pairs | None]:
    """(classes, pairs) of samples with site types (..., N) (-1 on padding) of `system`: the
    chain's bond classes (..., K, L) and None, or per-pair classes (..., P) and the pairs.
    The arguments `classes, n_params, pairs` of `design_matrix` and `layout_neighbour_sums`."""
    types = np.asarray(types)
    return system_classes(system, types), system_pairs(system, types.shape[-1])


def system_design(system: SpinSystem, spins: np.ndarray, types: np.ndarray,
                  n_params: int) -> np.ndarray:
    """The design matrix X (B, N, 3, n_params) of snapshots (B, N, 3) with site types (B, N)
    (-1 on padding) of `system`, in its layout (chain bonds or pairs)."""
    classes, pairs = system_layout(system, types)
    return design_matrix(spins, classes, n_params, pairs)


@dataclass
class NormalEquations:
    """Sufficient statistics of the regression Y ~ X c, one set per sequence.

    xtx (n_seq, P, P), xty (n_seq, P), yty, ysum (n_seq, 3), count (n_seq,) of equations
    (3 per spin)."""

    xtx: np.ndarray
    xty: np.ndarray
    yty: np.ndarray
    ysum: np.ndarray
    count: np.ndarray

    @classmethod
    def zeros(cls, n_seq: int, n_params: int) -> NormalEquations:
        return cls(np.zeros((n_seq, n_params, n_params)), np.zeros((n_seq, n_params)),
                   np.zeros(n_seq), np.zeros((n_seq, 3)), np.zeros(n_seq))

    def add(self, seq: np.ndarray, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        """Accumulate snapshots: seq (B,) sequence ids; x (B, L, 3, P); y (B, L, 3);
        mask (B, L) real sites."""
        m = mask[..., None, None].astype(float)
        xm, ym = x * m, y * mask[..., None]
        np.add.at(self.xtx, seq, np.einsum("blcp,blcq->bpq", xm, xm))
        np.add.at(self.xty, seq, np.einsum("blcp,blc->bp", xm, ym))
        np.add.at(self.yty, seq, np.einsum("blc,blc->b", ym, ym))
        np.add.at(self.ysum, seq, ym.sum(1))
        np.add.at(self.count, seq, 3 * mask.sum(1))

    def solve(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Least-squares coefficients c (P,) and R^2 = 1 - SS_res / SS_tot (SS_tot about the
        mean of Y's components) over the sequences, each counted `weights` times (bootstrap).
        """
        c = np.linalg.lstsq(self.total("xtx", weights), self.total("xty", weights),
                            rcond=None)[0]
        ss_res, ss_tot = self.sums_of_squares(c, weights)
        return c, (1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan")

    def total(self, field: str, weights: np.ndarray | None = None) -> np.ndarray:
        """One statistic summed over the sequences, each counted `weights` times."""
        w = np.ones(len(self.count)) if weights is None else weights
        return np.tensordot(w, getattr(self, field), 1)

    def sums_of_squares(self, c: np.ndarray, weights: np.ndarray | None = None
                        ) -> tuple[float, float]:
        """(SS_res of the prediction X c, SS_tot of Y about its per-component mean)."""
        xtx, xty = self.total("xtx", weights), self.total("xty", weights)
        yty, n = float(self.total("yty", weights)), float(self.total("count", weights))
        ss_res = yty - 2 * c @ xty + c @ xtx @ c
        mean = self.total("ysum", weights) / (n / 3)  # per component
        return float(ss_res), float(yty - (n / 3) * float(mean @ mean))


def coupling_metrics(estimate: np.ndarray, truth: np.ndarray) -> dict:
    """Scale-free comparison of estimated and true couplings (SPEC §6): estimate, truth (P,).

    Ratios are to the first coupling (J1_AA, SPEC §6), or, where the truth has it zero, to the
    first nonzero true coupling (`ratio_reference`, its index)."""
    cos = float(estimate @ truth / (np.linalg.norm(estimate) * np.linalg.norm(truth)))
    nonzero = np.flatnonzero(truth)
    ref = int(nonzero[0]) if nonzero.size else 0
    ratio_est, ratio_true = estimate / estimate[ref], truth / truth[ref]
    return {
        "cosine": cos,
        "ratio_reference": ref,
        "ratio_estimate": ratio_est.tolist(),
        "ratio_truth": ratio_true.tolist(),
        "worst_ratio_error": float(np.max(np.abs(ratio_est - ratio_true))),
        "scale": float(estimate @ truth / (truth @ truth)),  # least-squares estimate/truth
    }
