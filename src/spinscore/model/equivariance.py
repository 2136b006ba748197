"""The O(3) checks of a score network, shipped with the package (like e3nn's
`assert_equivariant`): any callable score(spins, types, t) -> (B, N, 3) can be checked, ours,
the published network or an oracle.

An exact score of a Hamiltonian built from dot products S_i . S_j is O(3)-equivariant,
score(S Q^T) = score(S) Q^T for every orthogonal Q (rotations, det +1, and improper elements,
det -1), tangent (score_i . S_i = 0) and free of total torque (sum_i S_i x score_i = 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from spinscore.geometry.sphere import random_orthogonal

ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class EquivarianceErrors:
    """Largest deviations, in the units of the score: `proper` and `improper` are
    max |score(S Q^T) - score(S) Q^T| over the rotations and over the improper elements;
    `tangency` max |score_i . S_i|; `torque` max over the batch of |sum_i S_i x score_i|;
    `scale` max |score| (a network that outputs zero passes every check trivially)."""

    proper: float
    improper: float
    tangency: float
    torque: float
    scale: float

    @property
    def equivariance(self) -> float:
        return max(self.proper, self.improper)


def equivariance_errors(score: ScoreFn, spins: Tensor, types: Tensor, t: Tensor, n: int = 8,
                        generator: torch.Generator | None = None) -> EquivarianceErrors:
    """Check `score` under n Haar-random rotations and n Haar-random improper elements of O(3).

    Args:
        score: callable (spins (B, N, 3), types (B, N), t (B,)) -> (B, N, 3).
        spins: (B, N, 3) unit vectors; types: (B, N) int, -1 on padding; t: (B,) times.
        n: elements of each kind; generator: seeds the draws (`random_orthogonal`).
    Returns:
        EquivarianceErrors (floats; no gradients are taken).
    """
    with torch.no_grad():
        ref = score(spins, types, t)  # (B, N, 3)
        dev = {}
        for kind, proper in (("proper", True), ("improper", False)):
            qs = random_orthogonal(n, proper=proper, generator=generator, dtype=spins.dtype,
                                   device=spins.device)  # (n, 3, 3), act as x @ Q^T
            dev[kind] = max(float((score(spins @ q.T, types, t) - ref @ q.T).abs().max())
                            for q in qs)
        torque = torch.linalg.cross(spins, ref, dim=-1).sum(dim=1)  # (B, 3)
        return EquivarianceErrors(
            proper=dev["proper"], improper=dev["improper"],
            tangency=float((ref * spins).sum(-1).abs().max()),
            torque=float(torque.norm(dim=-1).max()), scale=float(ref.abs().max()),
        )


def assert_equivariant(score: ScoreFn, spins: Tensor, types: Tensor, t: Tensor, n: int = 8,
                       atol: float = 1e-9, generator: torch.Generator | None = None
                       ) -> EquivarianceErrors:
    """`equivariance_errors`, raising AssertionError when any deviation exceeds `atol` or the
    score is identically zero. Returns the errors for tighter checks by the caller."""
    errors = equivariance_errors(score, spins, types, t, n=n, generator=generator)
    checks = {"proper": errors.proper, "improper": errors.improper,
              "tangency": errors.tangency, "torque": errors.torque}
    failed = {name: value for name, value in checks.items() if not value <= atol}
    if failed or errors.scale == 0:
        raise AssertionError(f"not an O(3)-equivariant, tangent, torque-free score "
                             f"(atol {atol:g}): {failed or 'score is identically zero'}")
    return errors
