"""Molecular stages: simulate a molecule's trajectories with OpenMM, validate the dynamics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinscore.config.molecule import MOLECULE_DATA_SECTIONS, MoleculeRunConfig
from spinscore.errors import SpinscoreError
from spinscore.stages.data import write_json


def _settings(config: MoleculeRunConfig):
    from spinscore.molecules import TrajectorySettings

    sim, molecule = config.simulation, config.system.molecule
    return TrajectorySettings(
        n_trajectories=sim.trajectories, n_frames=sim.frames, steps_per_frame=sim.steps_per_frame,
        equilibration_steps=sim.equilibration_steps, frames_per_chunk=sim.frames_per_chunk,
        temperature_K=molecule.temperature, timestep_fs=sim.timestep_fs,
        friction_per_ps=sim.friction_per_ps, solvent=molecule.solvent, seed=sim.seed,
        phi_deg=sim.start_phi, psi_deg=sim.start_psi,
        **({"padding_nm": molecule.padding_nm} if molecule.padding_nm is not None else {}),
    )  # fmt: skip


def simulate_molecule(config: MoleculeRunConfig, out: str | Path, *, threads: int | None = None,
                      overwrite: bool = False, progress: bool = True) -> Path:
    """`spinscore simulate` for a molecule: `config.simulation.trajectories` Langevin
    trajectories in the HDF5 file `out` (`molecules.datafile`), `threads` at once, chunked and
    resumable; the data sections of the config travel in the file (attribute `config`).
    Returns the path."""
    from tqdm.auto import tqdm

    from spinscore.molecules import simulate_trajectories

    if threads is not None and threads < 1:
        raise SpinscoreError(f"--threads: expected a positive number, got {threads}")
    settings = _settings(config)
    bar = tqdm(total=settings.n_chunks, desc="trajectory chunks", disable=not progress)
    try:
        return simulate_trajectories(out, settings, workers=threads or 2, overwrite=overwrite,
                                     on_chunk=lambda _: bar.update(),
                                     attrs={"config": config.to_yaml(MOLECULE_DATA_SECTIONS)})
    finally:
        bar.close()


def is_molecule_file(path: str | Path) -> bool:
    """Whether `path` is an HDF5 file of molecular trajectories (it has per-term forces)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "group_forces" in f
    except OSError:
        return False


def data_config(data) -> MoleculeRunConfig:
    """The config a molecular data set was simulated with (its `config` attribute)."""
    import yaml

    from spinscore.config import parse_config

    if "config" not in data.attrs:
        raise SpinscoreError(f"{data.path}: attribute 'config' missing: not written by "
                             "`spinscore simulate`")
    config = parse_config(yaml.safe_load(str(data.attrs["config"])), f"{data.path}: config")
    if not isinstance(config, MoleculeRunConfig):
        raise SpinscoreError(f"{data.path}: attribute 'config': expected a molecular config")
    return config


def md_check(data_path: str | Path, out: str | Path, *,
             reference: str | Path | None = None) -> dict:
    """Validate the dynamics of a molecular data set (simulated with the config it carries);
    md_check.json and md_check.png in `out`.

    - energy conservation: an NVE run of `simulation.nve_steps` steps at the data's time step
      from the minimised start, judged against kT √(n_dof / 2);
    - the kinetic temperature of the frames against the bath;
    - the Ramachandran basin populations, against `reference` (a longer run's file) if given;
    - the bond lengths by element pair.
    """
    from spinscore.molecules import (
        Molecule,
        backbone_dihedrals,
        basin_populations,
        degrees_of_freedom,
        nve_drift,
        read_molecule_data,
    )
    from spinscore.molecules.validation import (
        bond_lengths,
        energy_conservation,
        kinetic_temperature,
        population_agreement,
    )
    from spinscore.report.figures import save_figure
    from spinscore.report.molecule_figures import md_check_figure

    data = read_molecule_data(data_path)
    config = data_config(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim, temperature = config.simulation, config.system.molecule.temperature
    molecule = Molecule.alanine(_settings(config))
    n_dof = degrees_of_freedom(molecule.dynamics)
    result: dict = {"file": str(data.path), "frames": int(data.n_trajectories * data.n_frames),
                    "simulated_ps": sim.simulated_ps, "n_dof": n_dof}
    nve_time = nve_energy = None
    if sim.nve_steps:
        record = 10
        nve_energy = nve_drift(molecule.dynamics, molecule.start, sim.timestep_fs, sim.nve_steps,
                               temperature, seed=sim.seed, steps_per_record=record)
        nve_time = np.arange(nve_energy.size) * record * sim.timestep_fs / 1000
        result["energy_conservation"] = {
            "timestep_fs": sim.timestep_fs, "steps": sim.nve_steps,
            **energy_conservation(nve_energy, sim.timestep_fs, record, temperature, n_dof).as_dict()}
    t_kin, t_err, per_trajectory = kinetic_temperature(data.kinetic_energy, n_dof)
    result["kinetic_temperature"] = {"mean": t_kin, "stderr": t_err, "bath": temperature,
                                     "z": (t_kin - temperature) / t_err if t_err else None}
    phi, psi = backbone_dihedrals(data.positions)
    result["basins"] = basin_populations(phi, psi).as_dict()
    if reference is not None:
        ref = read_molecule_data(reference)
        result["basins_against_reference"] = {
            "reference": str(ref.path), "reference_frames": int(ref.n_trajectories * ref.n_frames),
            **population_agreement(phi, psi, *backbone_dihedrals(ref.positions))}
    lengths = bond_lengths(data.positions, data.bonds)
    by_pair: dict[str, list[int]] = {}  # bond types (amber classes): one r0 each
    for column, (i, j) in enumerate(data.bonds):
        name = "-".join(sorted((data.atom_classes[i], data.atom_classes[j])))
        by_pair.setdefault(name, []).append(column)
    result["bond_lengths"] = {name: {"mean": float(lengths[..., c].mean()),
                                     "std": float(lengths[..., c].std())}
                              for name, c in by_pair.items()}
    fig = md_check_figure(phi, psi, nve_time, nve_energy, per_trajectory, temperature,
                          {name: lengths[..., c] for name, c in by_pair.items()},
                          title=f"{data.path.name}: {config.system.molecule.name}, "
                                f"{config.system.molecule.solvent}, {temperature:g} K, "
                                f"{sim.simulated_ps:g} ps")
    save_figure(fig, out / "md_check.png")
    write_json(out / "md_check.json", result)
    return result
