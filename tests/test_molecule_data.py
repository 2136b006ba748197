"""Sets of alanine dipeptide trajectories: the HDF5 file, crash-safe resume, validation, φ/ψ basins."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("openmm")
h5py = pytest.importorskip("h5py")

from spinscore.errors import DataError, SpinscoreError  # noqa: E402
from spinscore.molecules import (  # noqa: E402
    BASINS,
    RESIDUES,
    TERMS,
    TrajectorySettings,
    alanine_dipeptide,
    backbone_dihedrals,
    basin_labels,
    basin_populations,
    read_molecule_data,
    simulate_trajectories,
)
from spinscore.molecules.datafile import FRAME_FIELDS  # noqa: E402
from spinscore.molecules.md import MOLAR_GAS_CONSTANT  # noqa: E402
from spinscore.molecules.validation import kinetic_temperature, population_agreement  # noqa: E402

# 3 trajectories x 20 frames in chunks of 8 frames: 3 chunks per trajectory, the last one short.
TINY = TrajectorySettings(n_trajectories=3, n_frames=20, steps_per_frame=10, equilibration_steps=100,
                          frames_per_chunk=8, seed=11)
N_ATOMS = 22


class Stop(Exception):
    """Raised by a chunk hook to interrupt a run."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run: (path, data)."""
    out = simulate_trajectories(tmp_path_factory.mktemp("ref") / "ala.h5", TINY, workers=2)
    return out, read_molecule_data(out)


def assert_same_arrays(a, b, trajectories=slice(None)):
    for name in FRAME_FIELDS:
        np.testing.assert_array_equal(getattr(a, name)[trajectories], getattr(b, name), err_msg=name)
    for name in ("term_names", "atom_names", "atom_classes", "bonds", "masses", "charges"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def stop_after(n_chunks, written):
    lock = threading.Lock()

    def hook(number):
        with lock:
            written.append(number)
            if len(written) >= n_chunks:
                raise Stop(f"stopped after chunk {number}")

    return hook


def test_file_fields_shapes_and_topology(reference):
    path, data = reference
    t, f, g = TINY.n_trajectories, TINY.n_frames, 8
    assert data.positions.shape == data.forces.shape == (t, f, N_ATOMS, 3)
    assert data.group_energies.shape == (t, f, g) and data.group_forces.shape == (t, f, g, N_ATOMS, 3)
    assert data.kinetic_energy.shape == (t, f)
    assert data.positions.dtype == data.group_forces.dtype == np.float32
    assert data.group_energies.dtype == np.float64
    assert data.term_names == TERMS[:g]  # vacuum: every term but the solvent one, in group order
    assert list(data.atom_names) == [name for _, names in RESIDUES for name in names]
    assert data.elements[:2] == ("H", "C") and data.residue_names[6] == "ALA"
    assert data.bonds.shape == (21, 2) and data.residue_index.tolist() == [0] * 6 + [1] * 10 + [2] * 6
    assert data.atom_classes[8] == "CX" and data.atom_classes[:6] == ("HC", "CT", "HC", "HC", "C", "O")
    assert data.atom_types[8] == "protein-CX"
    assert data.masses.sum() == pytest.approx(144.17, abs=0.02)  # C6H12N2O2, Da
    assert data.charges.sum() == pytest.approx(0.0, abs=1e-6)  # a neutral molecule
    for key in ("temperature_K", "timestep_fs", "friction_per_ps", "solvent", "seed", "steps_per_frame"):
        assert data.attrs[key] == getattr(TINY, key)
    assert data.attrs["openmm_version"] and data.beta == pytest.approx(0.40090, rel=1e-4)  # 1/(R·300 K)
    assert not path.with_name(path.name + ".parts").exists()  # chunks removed after assembly
    # Frames move: the Langevin run is not stuck at the minimum.
    assert np.abs(np.diff(data.positions, axis=1)).max() > 1e-3


def test_group_forces_sum_to_total_forces(reference):
    _, data = reference
    total = data.group_forces.astype(np.float64).sum(axis=2)  # (T, F, n, 3)
    error = np.linalg.norm(total - data.forces, axis=(-2, -1)) / np.linalg.norm(data.forces, axis=(-2, -1))
    assert error.max() < 1e-5  # float32 storage and the CPU platform's single-precision sums


def test_interrupted_run_resumes_to_identical_arrays(reference, tmp_path):
    out, first, second = tmp_path / "ala.h5", [], []
    with pytest.raises(Stop):
        simulate_trajectories(out, TINY, workers=2, on_chunk=stop_after(4, first))
    assert not out.exists()
    parts = sorted(p.name for p in (tmp_path / "ala.h5.parts").glob("chunk_*.npz"))
    assert len(parts) == len(first) < TINY.n_chunks
    simulate_trajectories(out, TINY, workers=2, on_chunk=second.append)
    assert set(first).isdisjoint(second) and set(first) | set(second) == set(range(TINY.n_chunks))
    # Chunks run in order within a trajectory, so 4 or 5 chunks leave one trajectory half done:
    # it continued from the checkpoint of its last chunk.
    per = TINY.chunks_per_trajectory
    assert any(0 < sum(k // per == i for k in first) < per for i in range(TINY.n_trajectories))
    assert_same_arrays(reference[1], read_molecule_data(out))


def test_killed_run_resumes_to_identical_arrays(reference, tmp_path):
    out = tmp_path / "ala.h5"
    script = (
        "import os, signal, sys\n"
        "from spinscore.molecules import TrajectorySettings, simulate_trajectories\n"
        f"settings = {TINY!r}\n"
        "def hook(number):\n"
        "    if number == 1:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "simulate_trajectories(sys.argv[1], settings, workers=1, on_chunk=hook)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "ala.h5.parts").glob("chunk_*")) == [
        "chunk_000000.npz", "chunk_000001.npz"]
    written = []
    simulate_trajectories(out, TINY, workers=2, on_chunk=written.append)
    assert sorted(written) == list(range(2, TINY.n_chunks))  # trajectory 0 resumed at its third block
    assert_same_arrays(reference[1], read_molecule_data(out))


def test_trajectories_depend_only_on_seed_and_index(reference, tmp_path):
    # Fewer trajectories, other chunking, one worker: the same first two trajectories.
    fewer = dataclasses.replace(TINY, n_trajectories=2, frames_per_chunk=20)
    again = read_molecule_data(simulate_trajectories(tmp_path / "a.h5", fewer, workers=1))
    assert_same_arrays(reference[1], again, trajectories=slice(0, 2))
    other = read_molecule_data(simulate_trajectories(tmp_path / "b.h5", dataclasses.replace(fewer, seed=12)))
    assert not np.array_equal(other.positions, again.positions)
    # Independent trajectories differ from each other.
    assert not np.array_equal(reference[1].positions[0], reference[1].positions[1])


def test_corrupt_chunk_is_refused(tmp_path):
    out = tmp_path / "ala.h5"
    with pytest.raises(Stop):
        simulate_trajectories(out, TINY, workers=1, on_chunk=stop_after(1, []))
    chunk = tmp_path / "ala.h5.parts" / "chunk_000000.npz"
    chunk.write_bytes(chunk.read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match="chunk_000000.npz: unreadable chunk file"):
        simulate_trajectories(out, TINY, workers=1)
    np.savez(chunk, positions=np.zeros((8, N_ATOMS, 3), np.float32))
    with pytest.raises(DataError, match="chunk_000000.npz: field 'chunk' missing"):
        simulate_trajectories(out, TINY, workers=1)


def test_refuses_other_settings_and_existing_output(reference, tmp_path):
    out = tmp_path / "ala.h5"
    with pytest.raises(Stop):
        simulate_trajectories(out, TINY, workers=1, on_chunk=stop_after(1, []))
    with pytest.raises(SpinscoreError, match="other settings"):
        simulate_trajectories(out, dataclasses.replace(TINY, temperature_K=310.0), workers=1)
    with pytest.raises(SpinscoreError, match="exists"):
        simulate_trajectories(reference[0], TINY)
    with pytest.raises(ValueError, match="steps_per_frame"):
        TrajectorySettings(steps_per_frame=0)


def _edit(path, tmp_path, edit):
    copy = tmp_path / "edited.h5"
    shutil.copy(path, copy)
    with h5py.File(copy, "a") as f:
        edit(f)
    return copy


def test_corrupt_or_inconsistent_file_is_refused(reference, tmp_path):
    path, _ = reference
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.h5: not a readable HDF5 file"):
        read_molecule_data(truncated)
    with pytest.raises(DataError, match="no such trajectory file"):
        read_molecule_data(tmp_path / "absent.h5")

    def nan(f):
        f["positions"][1, 3, 0, 0] = np.nan

    def drop(f):
        del f["charges"]

    def short(f):
        data = f["group_forces"][:, :, :-1]
        del f["group_forces"]
        f["group_forces"] = data

    def bad_bond(f):
        f["bonds"][0, 0] = 99

    def cold(f):
        f.attrs["temperature_K"] = -300.0

    def negative_kinetic(f):
        f["kinetic_energy"][0, 2] = -1.0

    def bond_forces_tenfold(f):  # the terms no longer sum to the total force
        f["group_forces"][:, :, 0] *= 10

    def same_names(f):
        names = f["term_names"].asstr()[()]
        del f["term_names"]
        f.create_dataset("term_names", data=np.array(["bond"] * len(names), dtype=object),
                         dtype=h5py.string_dtype())

    for edit, message in [(nan, "field 'positions': non-finite value at trajectory 1, frame 3"),
                          (drop, "field 'charges' missing"),
                          (short, "field 'group_forces': expected shape"),
                          (bad_bond, "field 'bonds': atom index outside"),
                          (cold, "attribute 'temperature_K': expected a positive temperature"),
                          (negative_kinetic, "field 'kinetic_energy': expected non-negative"),
                          (bond_forces_tenfold, "field 'group_forces': summed over the terms"),
                          (same_names, "field 'term_names': expected distinct names")]:
        with pytest.raises(DataError, match=message) as error:
            read_molecule_data(_edit(path, tmp_path, edit))
        assert "edited.h5" in str(error.value)


@pytest.mark.parametrize("phi, psi, basin", [(-80.0, 75.0, "C7eq_beta"), (-150.0, 155.0, "C7eq_beta"),
                                             (-70.0, -40.0, "alphaR"), (70.0, -70.0, "C7ax_alphaL"),
                                             (60.0, 40.0, "C7ax_alphaL"), (170.0, -170.0, "C7eq_beta")])
def test_dihedrals_of_the_built_structure(phi, psi, basin):
    _, positions = alanine_dipeptide(phi, psi)
    got_phi, got_psi = backbone_dihedrals(positions)
    assert (got_phi, got_psi) == (pytest.approx(phi), pytest.approx(psi))
    assert BASINS[basin_labels(got_phi, got_psi)] == basin
    # Batched over leading axes.
    phis, _ = backbone_dihedrals(np.broadcast_to(positions, (2, 3, N_ATOMS, 3)))
    assert phis.shape == (2, 3) and np.allclose(phis, phi)


def test_basin_populations_and_their_standard_error(reference):
    phi = np.array([[-80.0, -80.0, -70.0, 70.0], [-80.0, -70.0, -70.0, -70.0]])
    psi = np.array([[75.0, 75.0, -40.0, -70.0], [75.0, -40.0, -40.0, -40.0]])
    pops = basin_populations(phi, psi)
    np.testing.assert_allclose(pops.per_trajectory, [[0.5, 0.25, 0.25], [0.25, 0.75, 0.0]])
    np.testing.assert_allclose(pops.mean, [0.375, 0.5, 0.125])
    np.testing.assert_allclose(pops.stderr, [0.125, 0.25, 0.125])  # |p1 - p2| / 2 for T = 2
    assert set(pops.as_dict()) == set(BASINS)
    one = population_agreement(phi[:1], psi[:1], phi, psi)  # one trajectory: no error, no z
    assert one["alphaR"]["stderr"] is None and one["alphaR"]["z"] is None
    assert basin_populations(phi[:1], psi[:1]).as_dict()["alphaR"]["stderr"] is None
    t_kin, t_err, _ = kinetic_temperature(np.full((1, 4), 100.0), n_dof=63)
    assert t_err is None and t_kin == pytest.approx(200 / (63 * MOLAR_GAS_CONSTANT))
    narrow = basin_populations(phi, psi, psi_alpha_r=(-120.0, -50.0))  # ψ = −40 is no longer alphaR
    np.testing.assert_allclose(narrow.mean, [0.875, 0.0, 0.125])
    data = reference[1]
    pops = basin_populations(*backbone_dihedrals(data.positions))
    assert pops.per_trajectory.shape == (TINY.n_trajectories, 3)
    np.testing.assert_allclose(pops.per_trajectory.sum(axis=1), 1.0)
