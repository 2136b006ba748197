"""Checks that molecular dynamics samples the intended ensemble: the time step conserves energy
without the thermostat, the kinetic temperature is the bath's, the bond lengths scatter around
the force field's r0, the Ramachandran basins have their long-run populations.

Numbers in, numbers out: kJ/mol, K, nm, degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinscore.molecules.md import MOLAR_GAS_CONSTANT
from spinscore.molecules.ramachandran import BASINS, basin_populations


@dataclass(frozen=True)
class EnergyConservation:
    """An NVE total-energy trace judged against the canonical kinetic-energy fluctuation.

    fluctuation: std of the total energy about its linear trend, kJ/mol.
    drift_per_ps: slope of the linear trend, kJ/mol/ps.
    thermal_scale: kT √(n_dof / 2), the std of the kinetic energy in the canonical ensemble,
        kJ/mol: the natural unit of the error the integrator makes.
    ratio: fluctuation / thermal_scale; a good time step keeps it ≲ 0.05.
    drift_ratio: |drift| × duration / thermal_scale over the whole trace.
    """

    fluctuation: float
    drift_per_ps: float
    thermal_scale: float
    ratio: float
    drift_ratio: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def energy_conservation(total_energy: np.ndarray, timestep_fs: float, steps_per_record: int,
                        temperature_K: float, n_dof: int) -> EnergyConservation:
    """Judge an NVE trace (`md.nve_drift`).

    Args:
        total_energy: (R,) kJ/mol, recorded every `steps_per_record` steps of `timestep_fs`.
        temperature_K: the temperature of the initial velocities, K.
        n_dof: degrees of freedom (`md.degrees_of_freedom`).
    """
    e = np.asarray(total_energy, dtype=np.float64)
    if e.ndim != 1 or e.size < 3 or not np.all(np.isfinite(e)):
        raise ValueError(f"total_energy: expected a finite 1-D trace of at least 3 records, got "
                         f"shape {e.shape}")
    time_ps = np.arange(e.size) * steps_per_record * timestep_fs / 1000
    slope, intercept = np.polyfit(time_ps, e, 1)
    fluctuation = float(np.std(e - (slope * time_ps + intercept)))
    scale = MOLAR_GAS_CONSTANT * temperature_K * np.sqrt(n_dof / 2)
    return EnergyConservation(fluctuation, float(slope), float(scale), fluctuation / scale,
                              abs(slope) * time_ps[-1] / scale)


def kinetic_temperature(kinetic_energy: np.ndarray, n_dof: int
                        ) -> tuple[float, float | None, np.ndarray]:
    """Kinetic temperature 2⟨K⟩ / (n_dof R), its standard error (None from one trajectory),
    and that of each trajectory (T,), K.

    Args:
        kinetic_energy: (T, F) kJ/mol, trajectories by frames; the error is the spread of the
            trajectory means (ddof 1) / √T, so frames within a trajectory may be correlated.
    """
    k = np.asarray(kinetic_energy, dtype=np.float64)
    if k.ndim != 2 or 0 in k.shape:
        raise ValueError(f"kinetic_energy: expected (T, F) with T, F >= 1, got {k.shape}")
    per_trajectory = 2 * k.mean(axis=1) / (n_dof * MOLAR_GAS_CONSTANT)
    stderr = float(per_trajectory.std(ddof=1) / np.sqrt(k.shape[0])) if k.shape[0] > 1 else None
    return float(per_trajectory.mean()), stderr, per_trajectory


def bond_lengths(positions: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Bond lengths (..., n_bonds) nm of positions (..., n, 3) nm and bonds (n_bonds, 2)."""
    x = np.asarray(positions, dtype=np.float64)
    b = np.asarray(bonds)
    return np.linalg.norm(x[..., b[:, 0], :] - x[..., b[:, 1], :], axis=-1)


def population_agreement(phi: np.ndarray, psi: np.ndarray, reference_phi: np.ndarray,
                         reference_psi: np.ndarray) -> dict[str, dict[str, float]]:
    """Basin populations of a run against a reference (longer) run, with the z-score of each
    difference.

    Args:
        phi, psi, reference_phi, reference_psi: (T, F) degrees, trajectories by frames
            (T >= 2 in each, for the standard errors).

    Returns:
        {basin: {"mean", "stderr", "reference", "reference_stderr", "z"}}; z is the difference
        over the combined standard error (inf when both errors are zero and they differ); a
        run of one trajectory has no standard error: None there and for z.
    """
    run, ref = basin_populations(phi, psi), basin_populations(reference_phi, reference_psi)
    out = {}
    for b, name in enumerate(BASINS):
        error = float(np.hypot(run.stderr[b], ref.stderr[b]))
        diff = float(run.mean[b] - ref.mean[b])
        z = None if np.isnan(error) else \
            diff / error if error > 0 else (0.0 if diff == 0 else float("inf"))
        out[name] = {"mean": float(run.mean[b]), "stderr": _number(run.stderr[b]),
                     "reference": float(ref.mean[b]), "reference_stderr": _number(ref.stderr[b]),
                     "z": z}
    return out


def _number(x: float) -> float | None:
    """A float for JSON, None for NaN (no standard error from one trajectory)."""
    return None if np.isnan(x) else float(x)
