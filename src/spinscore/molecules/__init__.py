"""Molecular simulation with OpenMM (needs the `molecules` extra): alanine dipeptide from
internal coordinates, amber14 systems split into per-term force groups, Langevin and NVE runs."""

from spinscore.molecules.alanine import (
    PHI_ATOMS,
    PSI_ATOMS,
    RESIDUES,
    alanine_dipeptide,
    dihedral_deg,
    place_atom,
)
from spinscore.molecules.forcefield import (
    MOTION_REMOVER_GROUP,
    TERMS,
    build_system,
    build_unsplit_system,
    is_proper,
)
from spinscore.molecules.md import (
    MOLAR_GAS_CONSTANT,
    Trajectory,
    degrees_of_freedom,
    energy_groups,
    evaluate,
    make_context,
    maxwell_boltzmann,
    minimise,
    nve_drift,
    openmm_seeds,
    run_langevin,
)

__all__ = [
    "MOLAR_GAS_CONSTANT",
    "MOTION_REMOVER_GROUP",
    "PHI_ATOMS",
    "PSI_ATOMS",
    "RESIDUES",
    "TERMS",
    "Trajectory",
    "alanine_dipeptide",
    "build_system",
    "build_unsplit_system",
    "degrees_of_freedom",
    "dihedral_deg",
    "energy_groups",
    "evaluate",
    "is_proper",
    "make_context",
    "maxwell_boltzmann",
    "minimise",
    "nve_drift",
    "openmm_seeds",
    "place_atom",
    "run_langevin",
]
