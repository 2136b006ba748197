"""Backbone dihedrals of alanine dipeptide and the populations of its Ramachandran basins.

Basins (degrees), a partition of the (φ, ψ) torus:
    C7eq_beta    φ ∉ (0, 120), ψ ∉ (−120, 0)    C7eq, β and PII (the extended region)
    alphaR       φ ∉ (0, 120), ψ ∈ (−120, 0)    right-handed helix
    C7ax_alphaL  φ ∈ (0, 120)                   C7ax and αL, rare in vacuum
φ ≥ 120° is counted with φ < 0: the extended basin wraps across φ = ±180°. The ψ boundary sits
at 0°, not at the 50° often drawn for water: in vacuum the C7eq well reaches down to ψ ≈ 0°, and
with 50° a quarter of the C7eq frames (4 × 200 ps at 300 K: 0.27) were counted as αR, against
0.009 with 0° (pass `psi_alpha_r` for another split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinscore.molecules.alanine import PHI_ATOMS, PSI_ATOMS, dihedral_deg

BASINS: tuple[str, ...] = ("C7eq_beta", "alphaR", "C7ax_alphaL")
PHI_POSITIVE = (0.0, 120.0)  # degrees, the φ range of C7ax_alphaL
PSI_ALPHA_R = (-120.0, 0.0)  # degrees, the ψ range of alphaR (outside the φ range above)


def backbone_dihedrals(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """φ and ψ of every frame.

    Args:
        positions: (..., 22, 3) alanine dipeptide in the atom order of `RESIDUES`, any length unit.

    Returns:
        phi, psi: (...) degrees in (−180, 180]; φ = C(ACE)–N–CA–C, ψ = N–CA–C–N(NME).
    """
    x = np.asarray(positions, dtype=np.float64)
    return dihedral_deg(x, *PHI_ATOMS), dihedral_deg(x, *PSI_ATOMS)


def basin_labels(phi: np.ndarray, psi: np.ndarray, phi_positive: tuple[float, float] = PHI_POSITIVE,
                 psi_alpha_r: tuple[float, float] = PSI_ALPHA_R) -> np.ndarray:
    """Basin of each frame: (...) int, an index into `BASINS`.

    Args:
        phi, psi: (...) degrees, in (−180, 180].
        phi_positive: the open φ range of C7ax_alphaL, degrees.
        psi_alpha_r: the open ψ range of alphaR (for φ outside `phi_positive`), degrees.
    """
    phi, psi = np.asarray(phi), np.asarray(psi)
    positive = (phi > phi_positive[0]) & (phi < phi_positive[1])
    helix = (psi > psi_alpha_r[0]) & (psi < psi_alpha_r[1])
    return np.where(positive, 2, np.where(helix, 1, 0))


@dataclass(frozen=True)
class BasinPopulations:
    """Basin populations from independent trajectories.

    per_trajectory: (T, B) fraction of each trajectory's frames in each basin of `BASINS`.
    mean: (B,) the mean over trajectories (the pooled fraction when all have F frames).
    stderr: (B,) standard error of the mean, std over trajectories (ddof 1) / √T; NaN for T = 1.
        It treats trajectories as independent estimates; it does not see a bias shared by all,
        such as the common starting basin of runs too short to forget it.
    """

    per_trajectory: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray

    def as_dict(self) -> dict[str, dict[str, float]]:
        """{basin: {"mean": ..., "stderr": ...}}, for JSON (stderr None from one trajectory)."""
        return {name: {"mean": float(m), "stderr": None if np.isnan(s) else float(s)}
                for name, m, s in zip(BASINS, self.mean, self.stderr, strict=True)}


def basin_populations(phi: np.ndarray, psi: np.ndarray,
                      **boundaries: tuple[float, float]) -> BasinPopulations:
    """Populations of `BASINS` with standard errors from the spread between trajectories.

    Args:
        phi, psi: (T, F) degrees, trajectory by frame.
        boundaries: `phi_positive`, `psi_alpha_r` as in `basin_labels`.
    """
    phi, psi = np.asarray(phi), np.asarray(psi)
    if phi.ndim != 2 or phi.shape != psi.shape or 0 in phi.shape:
        raise ValueError(f"phi and psi must both have shape (T, F), got {phi.shape} and {psi.shape}")
    labels = basin_labels(phi, psi, **boundaries)  # (T, F)
    per_trajectory = (labels[..., None] == np.arange(len(BASINS))).mean(axis=1)  # (T, B)
    n = per_trajectory.shape[0]
    stderr = per_trajectory.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(len(BASINS), np.nan)
    return BasinPopulations(per_trajectory, per_trajectory.mean(axis=0), stderr)


def ramachandran_histogram(phi: np.ndarray, psi: np.ndarray, bins: int = 36) -> np.ndarray:
    """(bins, bins) probabilities of (φ, ψ) on the torus (degrees in (−180, 180]), rows φ, in
    `bins` equal bins per angle from −180°."""
    edges = np.linspace(-180.0, 180.0, bins + 1)
    h, _, _ = np.histogram2d(np.ravel(phi), np.ravel(psi), bins=[edges, edges])
    return h / h.sum()
