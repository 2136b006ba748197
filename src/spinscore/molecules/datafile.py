"""The HDF5 file of a set of molecular trajectories: assembly from chunks, validated reading.

Layout (T trajectories, F frames each, n atoms, G force-field terms):
    positions        float32 (T, F, n, 3)     nm
    forces           float32 (T, F, n, 3)     kJ/mol/nm, the total force
    group_energies   float64 (T, F, G)        kJ/mol, column g is term term_names[g]
    group_forces     float32 (T, F, G, n, 3)  kJ/mol/nm; summed over G they give `forces`
    kinetic_energy   float64 (T, F)           kJ/mol, as OpenMM reports it (explicit water: of
                                              the whole solvated system, attr solvated_atoms)
    term_names       str (G,)                 force-field terms, e.g. bond, angle, ..., coulomb14
    atom_names, elements, residue_names  str (n,)   topology, per atom
    residue_index    int32 (n,)               residue of each atom, 0-based
    bonds            int32 (n_bonds, 2)       atom indices
    atom_types       str (n,)                 OpenMM type names, e.g. protein-CT
    atom_classes     str (n,)                 amber atom types, e.g. CT
    masses           float64 (n,)             dalton
    charges          float64 (n,)             elementary charges
    Explicit water: n is the solute's atoms only; the "solvent" term is the total force on them
    less the vacuum terms, its energy the solute-water one (`molecules.trajectories`).
    attrs: the run settings (temperature_K, timestep_fs, friction_per_ps, solvent, seed,
           steps_per_frame, ...), openmm_version, spinscore_version, git_commit, format_version
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spinscore.errors import DataError
from spinscore.io import atomic_path, open_hdf5
from spinscore.molecules.forcefield import TERMS
from spinscore.molecules.md import MOLAR_GAS_CONSTANT

FORMAT_VERSION = 1
# |sum of the term forces - the total force| / max |total force|: float32 storage keeps ~1e-7
GROUP_SUM_TOLERANCE = 1e-4
# Per-frame arrays: name -> (dtype, shape after (T, F) in terms of n atoms and G terms).
FRAME_FIELDS: dict[str, tuple[type, str]] = {
    "positions": (np.float32, "n3"),
    "forces": (np.float32, "n3"),
    "group_energies": (np.float64, "G"),
    "group_forces": (np.float32, "Gn3"),
    "kinetic_energy": (np.float64, ""),
}
STRING_FIELDS = ("term_names", "atom_names", "elements", "residue_names", "atom_types", "atom_classes")
ARRAY_FIELDS = ("residue_index", "bonds", "masses", "charges")
REQUIRED_ATTRS = ("temperature_K", "timestep_fs", "friction_per_ps", "solvent", "seed",
                  "steps_per_frame", "openmm_version", "format_version")


def frame_shape(spec: str, n_atoms: int, n_terms: int) -> tuple[int, ...]:
    """The per-frame shape of a `FRAME_FIELDS` entry, e.g. "Gn3" -> (G, n, 3)."""
    return tuple({"n": n_atoms, "G": n_terms, "3": 3}[c] for c in spec)


def write_molecule_file(out: Path, chunks: Iterable[tuple[int, range, dict[str, np.ndarray]]],
                        n_trajectories: int, n_frames: int, static: dict[str, Any],
                        attrs: dict[str, Any]) -> None:
    """Assemble chunks into the HDF5 file `out`, written beside it and renamed (`io.atomic_path`).

    Args:
        chunks: (trajectory, frames, arrays) with arrays[name] of shape (len(frames), ...) for
            every name of `FRAME_FIELDS`; together they must cover every frame.
        n_trajectories, n_frames: T and F.
        static: the topology and force-field arrays (`STRING_FIELDS`, `ARRAY_FIELDS`).
        attrs: scalar metadata (strings, numbers).
    """
    filled = np.zeros((n_trajectories, n_frames), dtype=bool)
    with atomic_path(out) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        datasets: dict[str, h5py.Dataset] = {}
        for trajectory, frames, arrays in chunks:
            for name, (dtype, _) in FRAME_FIELDS.items():
                if name not in datasets:
                    rest = arrays[name].shape[1:]
                    datasets[name] = f.create_dataset(
                        name, shape=(n_trajectories, n_frames, *rest), dtype=dtype,
                        chunks=(1, len(frames), *rest), track_times=False,
                    )  # fmt: skip
                datasets[name][trajectory, frames.start : frames.stop] = arrays[name]
            filled[trajectory, frames.start : frames.stop] = True
        if not filled.all():
            missing = np.argwhere(~filled)[0]
            raise DataError(f"{out}: no chunk holds trajectory {missing[0]}, frame {missing[1]}")
        for name in STRING_FIELDS:
            f.create_dataset(name, data=np.asarray(static[name], dtype=object),
                             dtype=h5py.string_dtype(), track_times=False)
        for name in ARRAY_FIELDS:
            f.create_dataset(name, data=static[name], track_times=False)
        for key, value in {**attrs, "format_version": FORMAT_VERSION}.items():
            f.attrs[key] = value


@dataclass(frozen=True)
class MoleculeData:
    """A validated trajectory file in memory; arrays and units as in the module docstring."""

    path: Path
    positions: np.ndarray
    forces: np.ndarray
    group_energies: np.ndarray
    group_forces: np.ndarray
    kinetic_energy: np.ndarray
    term_names: tuple[str, ...]
    atom_names: tuple[str, ...]
    elements: tuple[str, ...]
    residue_names: tuple[str, ...]
    atom_types: tuple[str, ...]
    atom_classes: tuple[str, ...]
    residue_index: np.ndarray
    bonds: np.ndarray
    masses: np.ndarray
    charges: np.ndarray
    attrs: dict[str, Any]

    @property
    def n_trajectories(self) -> int:
        return self.positions.shape[0]

    @property
    def n_frames(self) -> int:
        return self.positions.shape[1]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[2]

    @property
    def beta(self) -> float:
        """1 / (R T), mol/kJ."""
        return 1.0 / (MOLAR_GAS_CONSTANT * float(self.attrs["temperature_K"]))


def read_molecule_data(path: str | Path) -> MoleculeData:
    """Open and validate a trajectory file; raise `DataError` naming the file and the field.

    Checks: readable HDF5, every field and required attribute present and readable, dtypes and
    shapes consistent with (T, F, n) of `positions` and G = len(term_names), finite per-frame
    values, positive masses, bonds within the atoms.
    """
    path = Path(path)
    with open_hdf5(path, "trajectory file") as f:
        for key in REQUIRED_ATTRS:
            if key not in f.attrs:
                raise DataError(f"{path}: attribute '{key}' missing: not a spinscore trajectory file")
        values: dict[str, Any] = {}
        for name in (*FRAME_FIELDS, *STRING_FIELDS, *ARRAY_FIELDS):
            if name not in f:
                raise DataError(f"{path}: field '{name}' missing")
            try:
                data = f[name].asstr()[()] if name in STRING_FIELDS else f[name][()]
            except (OSError, RuntimeError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: field '{name}' unreadable (corrupt?): {exc}") from None
            values[name] = tuple(str(s) for s in np.atleast_1d(data)) if name in STRING_FIELDS else data
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    _validate(path, values)
    temperature = attrs["temperature_K"]
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) \
            or not 0 < temperature < float("inf"):
        raise DataError(f"{path}: attribute 'temperature_K': expected a positive temperature "
                        f"(K), got {temperature!r}")
    return MoleculeData(path=path, attrs=attrs, **values)


def _validate(path: Path, v: dict[str, Any]) -> None:
    def fail(field: str, what: str) -> None:
        raise DataError(f"{path}: field '{field}': {what}")

    positions = v["positions"]
    if positions.ndim != 4 or positions.shape[3] != 3 or 0 in positions.shape:
        fail("positions", f"expected shape (T, F, n, 3) with T, F, n > 0, got {positions.shape}")
    n_traj, n_frames, n_atoms = positions.shape[:3]
    n_terms = len(v["term_names"])
    for name, (dtype, spec) in FRAME_FIELDS.items():
        a = v[name]
        expected = (n_traj, n_frames, *frame_shape(spec, n_atoms, n_terms))
        if a.shape != expected:
            fail(name, f"expected shape {expected} (T, F from positions, G = {n_terms} terms), got {a.shape}")
        if a.dtype != dtype:
            fail(name, f"expected {np.dtype(dtype)}, got {a.dtype}")
        if not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))[0]
            fail(name, f"non-finite value at trajectory {bad[0]}, frame {bad[1]}")
    terms = v["term_names"]
    if len(set(terms)) != len(terms) or not set(terms) <= set(TERMS):
        fail("term_names", f"expected distinct names of {list(TERMS)}, got {list(terms)}")
    if np.any(v["kinetic_energy"] < 0):
        fail("kinetic_energy", "expected non-negative energies")
    forces = v["forces"].astype(np.float64)
    off = np.abs(v["group_forces"].sum(axis=2, dtype=np.float64) - forces).max()
    if off > GROUP_SUM_TOLERANCE * max(np.abs(forces).max(), 1.0):
        fail("group_forces", f"summed over the terms they miss 'forces' by {off:.3g} kJ/mol/nm "
             f"(largest force {np.abs(forces).max():.3g})")
    for name in STRING_FIELDS[1:]:
        if len(v[name]) != n_atoms:
            fail(name, f"expected {n_atoms} entries (one per atom), got {len(v[name])}")
    for name in ("residue_index", "masses", "charges"):
        if v[name].shape != (n_atoms,):
            fail(name, f"expected shape ({n_atoms},), got {v[name].shape}")
    if not np.all(v["masses"] > 0):
        fail("masses", "expected positive masses")
    if not np.all(np.isfinite(v["charges"])):
        fail("charges", "non-finite charge")
    bonds = v["bonds"]
    if bonds.ndim != 2 or bonds.shape[1] != 2 or not np.issubdtype(bonds.dtype, np.integer):
        fail("bonds", f"expected an integer (n_bonds, 2) array, got {bonds.dtype} {bonds.shape}")
    if bonds.size and (bonds.min() < 0 or bonds.max() >= n_atoms):
        fail("bonds", f"atom index outside 0..{n_atoms - 1}")
