"""Readouts of the network beyond the OLS of SPEC §6 (the revised release, SPEC §8b):

- direct-W: the couplings W_ij the network outputs, compared pair by pair with J_ij;
- identifiability: how well the test set's design determines each direction of the couplings;
- extrapolation to t = 0: OLS at several t inside the trained range, each class's estimate
  extrapolated with the heat kernel's attenuation of a stiff bond.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinscore.analysis.inversion import NormalEquations
from spinscore.systems import Chain, Pairs, SpinSystem


@dataclass
class DirectWStats:
    """Sufficient statistics of W over the interacting pairs of a test set.

    Support: the interacting pairs (i, j) of each sample (a chain's (i, i + r), r <= max
    range), each pair of each snapshot one observation with class c (shell and unordered pair
    of types) and true coupling J_c. `pair_sum` (n_seq, S) holds the sum over the snapshots
    of W_ij per sequence and pair slot, for the spread of W over the snapshots of one
    sequence: slot (r - 1) L_max + i for a chain's pair (i, i + r) (the bond layout
    flattened), slot p for pair p of a lattice or graph."""

    n_params: int
    class_sum: np.ndarray  # (P,) sum of W over the observations of each class
    class_count: np.ndarray  # (P,)
    moments: np.ndarray  # (6,) n, sum W, sum J, sum W^2, sum J^2, sum W J over the support
    pair_sum: np.ndarray  # (n_seq, S)
    pair_count: np.ndarray  # (n_seq, S)
    abs_support: float = 0.0
    abs_all: float = 0.0  # sum |W_ij| over all pairs i < j of real sites
    truth: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def zeros(cls, truth: np.ndarray, n_seq: int, max_range: int, max_length: int):
        """Statistics for chains of up to `max_length` sites, couplings up to `max_range`."""
        return cls.with_slots(truth, n_seq, max_range * max_length)

    @classmethod
    def with_slots(cls, truth: np.ndarray, n_seq: int, n_slots: int):
        p = len(truth)
        return cls(p, np.zeros(p), np.zeros(p), np.zeros(6), np.zeros((n_seq, n_slots)),
                   np.zeros((n_seq, n_slots)), truth=np.asarray(truth, float))

    @classmethod
    def for_system(cls, truth: np.ndarray, n_seq: int, system: SpinSystem):
        """Statistics for the samples of `system`: a chain's bond layout, or its pairs."""
        if isinstance(system, Chain):
            return cls.zeros(truth, n_seq, system.n_shells, system.max_sites)
        return cls.with_slots(truth, n_seq, len(system.pairs(system.max_sites)))

    def add(self, seq: np.ndarray, w: np.ndarray, classes: np.ndarray, valid: np.ndarray,
            pairs: Pairs | None = None) -> None:
        """seq (B,) sequence ids; w (B, N, N) symmetric couplings; classes (B, R, N) from
        `bond_classes` (pairs None: a chain) or (B, P) per pair of `pairs` (any system; from
        `inversion.system_layout`), -1: no pair; valid (B, N) real sites."""
        n = w.shape[-1]
        pair_ok = valid[:, :, None] & valid[:, None, :]
        self.abs_all += float(np.abs(np.triu(np.where(pair_ok, w, 0.0), k=1)).sum())
        if pairs is not None:
            self._add_group(seq, w[:, pairs.i, pairs.j], classes, np.arange(len(pairs)))
            return
        width = self.pair_sum.shape[1] // classes.shape[1]  # L_max of the bond layout
        for r in range(1, min(classes.shape[1], n - 1) + 1):
            wr = np.diagonal(w, offset=r, axis1=1, axis2=2)  # (B, N - r): W_{i, i+r}
            self._add_group(seq, wr, classes[:, r - 1, : n - r],
                            (r - 1) * width + np.arange(n - r))

    def _add_group(self, seq: np.ndarray, w: np.ndarray, cls: np.ndarray,
                   slots: np.ndarray) -> None:
        """Observations w (B, M) of classes cls (B, M) (-1: none) in pair slots (M,)."""
        ok = cls >= 0
        wv, cv = w[ok], cls[ok]
        jv = self.truth[cv]
        np.add.at(self.class_sum, cv, wv)
        np.add.at(self.class_count, cv, 1.0)
        self.moments += [len(wv), wv.sum(), jv.sum(), wv @ wv, jv @ jv, wv @ jv]
        self.abs_support += float(np.abs(wv).sum())
        rows = np.broadcast_to(seq[:, None], cls.shape)[ok]
        cols = np.broadcast_to(slots, cls.shape)[ok]
        np.add.at(self.pair_sum, (rows, cols), wv)
        np.add.at(self.pair_count, (rows, cols), 1.0)

    def metrics(self, beta: float) -> dict:
        """The revised release's direct-W metrics (SPEC §8b); classes with J_c = 0 are left
        out of a* and the class ratios (their ratio is undefined); the configuration-relative
        RMS is None with one snapshot per sequence (no spread to measure)."""
        n, sw, sj, sww, sjj, swj = self.moments
        cov = swj / n - sw * sj / n**2
        var_w, var_j = sww / n - (sw / n) ** 2, sjj / n - (sj / n) ** 2
        live = (self.truth != 0) & (self.class_count > 0)
        mean_w = self.class_sum / np.maximum(self.class_count, 1)
        ratio = mean_w[live] / self.truth[live]
        a_star = float(ratio.mean())
        fit_res = sww - 2 * a_star * swj + a_star**2 * sjj
        seen = self.pair_count > 0
        spread = sww - float((self.pair_sum[seen] ** 2 / self.pair_count[seen]).sum())
        repeated = bool((self.pair_count > 1).any())  # a spread needs two snapshots of a pair
        return {
            "pearson": float(cov / np.sqrt(var_w * var_j)),
            "a_star": a_star,
            "a_star_over_beta": a_star / beta,
            "class_mean_w": mean_w.tolist(),
            "class_ratio_relative_rms": float(np.sqrt(np.mean((ratio / a_star - 1) ** 2))),
            "pointwise_relative_rmse": float(np.sqrt(max(fit_res, 0.0) / sww)),
            "configuration_relative_rms": float(np.sqrt(max(spread, 0.0) / sww)) if repeated
            else None,
            "support_share": self.abs_support / self.abs_all if self.abs_all else float("nan"),
            "n_observations": int(n),
        }


def identifiability(xtx: np.ndarray, truth: np.ndarray, n_snapshots: int) -> dict:
    """How well the design of a test set determines the couplings.

    xtx (P, P): X^T X summed over the test set (SPEC §6). Reported for the Gram matrix per
    snapshot (the revised release's form: its condition number is that of X, sqrt of the
    eigenvalue ratio) and with the columns of X normalised to unit length. `weakest` is the
    least determined direction in coupling space, scaled to a first entry of 1, with its
    |cosine| to the true couplings."""
    truth = np.asarray(truth, float)
    norms = np.sqrt(np.diag(xtx))
    out = {}
    for name, gram, back in (("gram", xtx / n_snapshots, np.ones_like(norms)),
                             ("column_normalised", xtx / np.outer(norms, norms), 1 / norms)):
        lam, vec = np.linalg.eigh(gram)
        weak = vec[:, 0] * back  # eigenvector of the normalised problem, in coupling space
        weak = weak / weak[0] if weak[0] != 0 else weak
        out[name] = {
            "eigenvalues": lam.tolist(),
            "condition_number": float(np.sqrt(lam[-1] / lam[0])),
            "weakest": weak.tolist(),
            "weakest_cosine_to_truth": float(abs(weak @ truth)
                                             / (np.linalg.norm(weak) * np.linalg.norm(truth))),
        }
    return out


def extrapolate_to_zero(times: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each class's estimate at t = 0 from its estimates at several t.

    The heat kernel smooths a bond of stiffness kappa: its score scale falls as
    c(t) = c0 / (1 + kappa t) (a Gaussian mode of precision kappa convolved with variance t).
    Written as c(t) = c0 - kappa t c(t), the law is linear in (c0, kappa): a least-squares fit
    per class, exact for a t-independent field (the oracle, kappa = 0) and for any field that
    follows the law. times (T,), T >= 2; estimates (T, P). Returns (c0 (P,), kappa (P,)).
    """
    times, estimates = np.asarray(times, float), np.asarray(estimates, float)
    c0, kappa = np.empty(estimates.shape[1]), np.empty(estimates.shape[1])
    for k in range(estimates.shape[1]):
        design = np.stack([np.ones_like(times), -times * estimates[:, k]], axis=1)
        c0[k], kappa[k] = np.linalg.lstsq(design, estimates[:, k], rcond=None)[0]
    return c0, kappa


def extrapolated_readout(eqs: list[NormalEquations], times, weights: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray, float]:
    """OLS at each readout time, extrapolated to t = 0.

    eqs: the normal equations at each of `times`; weights (n_seq,): bootstrap counts. Returns
    (c0 (P,), kappa (P,), R^2): R^2 is the share of the network's field at the readout times
    explained by the Hamiltonian c0 attenuated by the law, X c0 / (1 + kappa t)."""
    estimates = np.array([e.solve(weights)[0] for e in eqs])
    c0, kappa = extrapolate_to_zero(times, estimates)
    ss_res = ss_tot = 0.0
    for e, t in zip(eqs, times, strict=True):
        res, tot = e.sums_of_squares(c0 / (1 + kappa * t), weights)
        ss_res, ss_tot = ss_res + res, ss_tot + tot
    return c0, kappa, 1.0 - ss_res / ss_tot
