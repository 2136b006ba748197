"""Molecular simulation with OpenMM (needs the `molecules` extra): alanine dipeptide from
internal coordinates, amber14 systems split into per-term force groups, Langevin and NVE runs,
crash-safe sets of independent trajectories in HDF5, Ramachandran basin populations, the MD
checks; the E(3)-equivariant atom score model and its denoising score matching."""

from spinscore.molecules.alanine import (
    PHI_ATOMS,
    PSI_ATOMS,
    RESIDUES,
    alanine_dipeptide,
    dihedral_deg,
    place_atom,
)
from spinscore.molecules.basis import FAMILIES, ForceFieldBasis, force_field_basis
from spinscore.molecules.datafile import MoleculeData, read_molecule_data
from spinscore.molecules.dsm import DSMSettings, MoleculeTrainer, centre, draw_sigmas, dsm_loss
from spinscore.molecules.forcefield import (
    MOTION_REMOVER_GROUP,
    TERMS,
    atom_types,
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
from spinscore.molecules.ramachandran import (
    BASINS,
    BasinPopulations,
    backbone_dihedrals,
    basin_labels,
    basin_populations,
)
from spinscore.molecules.readout import (
    error_directions,
    fit_forces,
    normal_sums,
    parameters,
    score_matching_from_sums,
    sector_forces,
)
from spinscore.molecules.score_model import AtomScoreModel, graph_distances, w_scale_from_data
from spinscore.molecules.trajectories import (
    Molecule,
    TrajectorySettings,
    simulate_trajectories,
    trajectory_seeds,
)

__all__ = [
    "FAMILIES",
    "ForceFieldBasis",
    "error_directions",
    "fit_forces",
    "force_field_basis",
    "normal_sums",
    "parameters",
    "score_matching_from_sums",
    "sector_forces",
    "AtomScoreModel",
    "DSMSettings",
    "MoleculeTrainer",
    "centre",
    "draw_sigmas",
    "dsm_loss",
    "graph_distances",
    "w_scale_from_data",
    "BASINS",
    "BasinPopulations",
    "Molecule",
    "MoleculeData",
    "TrajectorySettings",
    "atom_types",
    "backbone_dihedrals",
    "basin_labels",
    "basin_populations",
    "read_molecule_data",
    "simulate_trajectories",
    "trajectory_seeds",
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
