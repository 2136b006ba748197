"""Alanine dipeptide in explicit TIP3P water (PME): the water is integrated out of the data file,
the solute's terms plus the derived solvent term give the total force, runs are reproducible,
and the config validates the solvent and the padding."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

openmm = pytest.importorskip("openmm")
pytest.importorskip("h5py")

from spinscore.cli import main  # noqa: E402
from spinscore.config import load_config, parse_config  # noqa: E402
from spinscore.errors import ConfigError  # noqa: E402
from spinscore.molecules.alanine import RESIDUES  # noqa: E402
from spinscore.molecules.datafile import FRAME_FIELDS, read_molecule_data  # noqa: E402
from spinscore.molecules.forcefield import (  # noqa: E402
    EXPLICIT_CUTOFF_NM,
    TERMS,
    solvate,
    solvent_only_system,
)
from spinscore.molecules.md import available_platforms, choose_platform  # noqa: E402
from spinscore.molecules.trajectories import (  # noqa: E402
    Molecule,
    TrajectorySettings,
    simulate_trajectories,
)

N_SOLUTE = 22
TINY = TrajectorySettings(n_trajectories=2, n_frames=4, steps_per_frame=20, equilibration_steps=200,
                          frames_per_chunk=2, solvent="explicit", seed=7)


@pytest.fixture(scope="module")
def molecule():
    """The solvated, minimised alanine dipeptide (padding 1 nm: ~720 atoms; ~9 s on one thread)."""
    return Molecule.alanine(TINY)


@pytest.fixture(scope="module")
def data(molecule, tmp_path_factory):
    out = tmp_path_factory.mktemp("water") / "ala.h5"
    return read_molecule_data(simulate_trajectories(out, TINY, molecule=molecule, workers=2))


def test_the_system_is_solvated_and_the_file_holds_only_the_solute(molecule, data):
    n_total = molecule.dynamics.getNumParticles()
    n_water = (n_total - N_SOLUTE) // 3
    assert n_water > 200 and n_total == N_SOLUTE + 3 * n_water  # neutral: no ions
    assert molecule.dynamics.getNumConstraints() == 3 * n_water  # rigid water, flexible solute
    assert molecule.dynamics.usesPeriodicBoundaryConditions() and molecule.start.shape == (n_total, 3)
    box = molecule.dynamics.getDefaultPeriodicBoxVectors()[0][0]._value
    assert box >= 2 * EXPLICIT_CUTOFF_NM
    assert molecule.n_solute == N_SOLUTE and molecule.terms == TERMS
    t, f = TINY.n_trajectories, TINY.n_frames
    assert data.positions.shape == data.forces.shape == (t, f, N_SOLUTE, 3)
    assert data.group_forces.shape == (t, f, len(TERMS), N_SOLUTE, 3) and data.term_names == TERMS
    assert list(data.atom_names) == [name for _, names in RESIDUES for name in names]
    assert data.masses.sum() == pytest.approx(144.17, abs=0.02) and data.atom_classes[8] == "CX"
    assert data.attrs["solvent"] == "explicit" and data.attrs["padding_nm"] == 1.0
    assert data.attrs["solvated_atoms"] == n_total and data.attrs["platform"] == molecule.platform
    # The solute stays whole (positions are not wrapped into the box): bonds keep their length.
    lengths = np.linalg.norm(data.positions[..., data.bonds[:, 0], :]
                             - data.positions[..., data.bonds[:, 1], :], axis=-1)
    assert 0.09 < lengths.min() and lengths.max() < 0.17


def test_the_terms_sum_to_the_total_force_on_the_solute(data):
    total = data.group_forces.astype(np.float64).sum(axis=2)
    error = np.linalg.norm(total - data.forces, axis=(-2, -1)) / np.linalg.norm(data.forces, axis=(-2, -1))
    assert error.max() < 1e-6  # float32 storage of each term


def test_the_solvent_term_is_the_water_and_sensible(molecule, data, tmp_path):
    solvent = data.group_forces[:, :, -1].astype(np.float64)
    share = np.linalg.norm(solvent) / np.linalg.norm(data.forces)
    rms = np.sqrt((solvent ** 2).sum(-1).mean())  # kJ/mol/nm per atom
    assert 0.03 < share < 0.5 and 30 < rms < 500
    energy = data.group_energies[..., -1]  # the solute-water interaction energy, kJ/mol
    assert np.all((-400 < energy) & (energy < -20))
    # The same box with the water's charges and Lennard-Jones switched off: what is left of the
    # solvent term is PME's periodic-image and reciprocal-space part of the solute's own
    # electrostatics (a few kJ/mol/nm), so the vacuum terms match the solvated system's.
    dry = openmm.XmlSerializer.clone(molecule.dynamics)
    nonbonded = next(f for f in dry.getForces() if isinstance(f, openmm.NonbondedForce))
    for index in range(N_SOLUTE, dry.getNumParticles()):
        _, sigma, _ = nonbonded.getParticleParameters(index)
        nonbonded.setParticleParameters(index, 0.0, sigma, 0.0)
    settings = dataclasses.replace(TINY, n_trajectories=1, n_frames=2, frames_per_chunk=2)
    dry_molecule = dataclasses.replace(molecule, dynamics=dry,
                                       solvent=solvent_only_system(dry, N_SOLUTE))
    dry_data = read_molecule_data(simulate_trajectories(tmp_path / "dry.h5", settings,
                                                        molecule=dry_molecule))
    artefact = dry_data.group_forces[:, :, -1].astype(np.float64)
    assert np.sqrt((artefact ** 2).sum(-1).mean()) < 0.1 * rms
    assert np.abs(dry_data.group_energies[..., -1]).max() < 10


def test_the_same_seed_gives_identical_arrays(molecule, data, tmp_path):
    again = read_molecule_data(simulate_trajectories(tmp_path / "again.h5", TINY, molecule=molecule,
                                                     workers=1))
    for name in FRAME_FIELDS:
        np.testing.assert_array_equal(getattr(again, name), getattr(data, name), err_msg=name)
    other = dataclasses.replace(TINY, n_trajectories=1, seed=8)
    moved = read_molecule_data(simulate_trajectories(tmp_path / "other.h5", other, molecule=molecule))
    assert not np.array_equal(moved.positions[0], data.positions[0])


def test_platform_choice_and_padding_check(molecule):
    vacuum = Molecule.alanine(TrajectorySettings())
    assert choose_platform(vacuum.dynamics) == vacuum.platform == "CPU"
    assert molecule.platform == ("CUDA" if "CUDA" in available_platforms() else "CPU")
    with pytest.raises(ValueError, match="padding_nm: the solute's periodic images"):
        solvate(vacuum.topology, vacuum.start, padding_nm=0.5)
    assert "padding_nm" not in TrajectorySettings().record()  # vacuum records are as before
    assert TINY.record()["padding_nm"] == 1.0


def test_the_explicit_config_is_accepted_and_the_padding_validated(tmp_path):
    base = {"system": {"molecule": {"name": "alanine-dipeptide", "solvent": "explicit"}}}
    config = parse_config(base)
    assert config.system.molecule.padding_nm == 1.0
    assert parse_config(yaml.safe_load(config.to_yaml())) == config
    vacuum = parse_config({"system": {"molecule": {"solvent": "vacuum"}}})
    assert vacuum.system.molecule.padding_nm is None and "padding_nm" not in vacuum.to_yaml()
    bad = [({"solvent": "explicit", "padding_nm": 0.5}, r"padding_nm: expected 0.9 to 3.0 nm .* got 0.5"),
           ({"solvent": "explicit", "padding_nm": 10}, r"nanometres, not ångström\), got 10"),
           ({"solvent": "implicit", "padding_nm": 1.2}, r"padding_nm: only for solvent: explicit")]
    for molecule, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config({"system": {"molecule": molecule}}, "x.yaml")
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(base))
    result = CliRunner().invoke(main, ["simulate", "--config", str(path), "--out", str(tmp_path / "o.h5"),
                                       "--set", "system.molecule.padding_nm=0.3"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "padding_nm" in result.output
    preset = load_config(Path(__file__).parents[1] / "configs" / "alanine-water.yaml")
    assert preset.system.molecule.solvent == "explicit" and preset.simulation.timestep_fs == 0.5
