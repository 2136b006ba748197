"""Alanine dipeptide with amber14: geometry, the per-term force-group split, NVE and Langevin dynamics."""

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

from spinscore.molecules import (  # noqa: E402
    MOLAR_GAS_CONSTANT,
    PHI_ATOMS,
    PSI_ATOMS,
    alanine_dipeptide,
    build_system,
    build_unsplit_system,
    degrees_of_freedom,
    dihedral_deg,
    evaluate,
    is_proper,
    make_context,
    minimise,
    nve_drift,
    run_langevin,
)

KT_300 = MOLAR_GAS_CONSTANT * 300.0  # kJ/mol


@pytest.fixture(scope="module")
def molecule():
    """(topology, minimised positions nm, split vacuum system, groups)."""
    topology, positions = alanine_dipeptide()
    system, groups = build_system(topology, "vacuum")
    minimised, _ = minimise(system, positions)
    return topology, minimised, system, groups


def _bond_parameters(system):
    bond = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    rows = [bond.getBondParameters(b) for b in range(bond.getNumBonds())]
    ij = np.array([(i, j) for i, j, _, _ in rows])
    r0 = np.array([r._value for _, _, r, _ in rows])  # nm
    k = np.array([k._value for _, _, _, k in rows])  # kJ/mol/nm²
    return ij, r0, k


def _state(system, positions, platform, groups=-1):
    context = make_context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    return state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value


def test_builder_geometry_and_amber_templates():
    topology, positions = alanine_dipeptide(phi_deg=-150.0, psi_deg=155.0)
    assert positions.shape == (22, 3)
    assert [r.name for r in topology.residues()] == ["ACE", "ALA", "NME"]
    assert topology.getNumBonds() == 21
    assert dihedral_deg(positions, *PHI_ATOMS) == pytest.approx(-150.0)
    assert dihedral_deg(positions, *PSI_ATOMS) == pytest.approx(155.0)
    # L-alanine: the virtual torsion CA–N–C–CB is about +34° (−34° for D).
    assert 25.0 < dihedral_deg(positions, 8, 6, 14, 10) < 45.0
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    assert distances[~np.eye(22, dtype=bool)].min() > 0.09
    for solvent in ("vacuum", "implicit"):  # createSystem fails on an unmatched template
        assert build_unsplit_system(topology, solvent).getNumParticles() == 22


def test_minimised_structure_is_sane(molecule):
    _, positions, system, _ = molecule
    ij, r0, _ = _bond_parameters(system)
    r = np.linalg.norm(positions[ij[:, 0]] - positions[ij[:, 1]], axis=-1)
    assert np.abs(r - r0).max() < 0.003  # nm, a tenth of an X–H thermal amplitude scale
    energy, forces = _state(system, positions, "Reference")
    assert np.sqrt(np.mean(forces**2)) < 1.0  # kJ/mol/nm, the minimiser's tolerance is 0.1 (rms)
    assert energy < -50.0  # the C7eq minimum lies near −90 kJ/mol in vacuum


def test_torsion_split_by_bond_graph(molecule):
    topology, _, system, groups = molecule
    bonded = {frozenset((a.index, b.index)) for a, b in topology.bonds()}
    torsions = [f for f in system.getForces() if isinstance(f, openmm.PeriodicTorsionForce)]
    by_group = {f.getForceGroup(): f for f in torsions}
    proper, improper = by_group[groups["proper"]], by_group[groups["improper"]]
    # One improper per planar centre: the two carbonyl C and the two amide N.
    assert improper.getNumTorsions() == 4
    for index in range(improper.getNumTorsions()):
        i, j, k, l = improper.getTorsionParameters(index)[:4]
        assert not is_proper((i, j, k, l), bonded)
        assert all(frozenset((k, other)) in bonded for other in (i, j, l))  # amber: centre third
    for index in range(proper.getNumTorsions()):
        assert is_proper(tuple(proper.getTorsionParameters(index)[:4]), bonded)


@pytest.mark.parametrize("solvent", ["vacuum", "implicit"])
@pytest.mark.parametrize("platform, rtol", [("Reference", 1e-10), ("CPU", 1e-6)])
def test_group_energies_and_forces_sum_to_the_unsplit_system(molecule, solvent, platform, rtol):
    topology, positions, _, _ = molecule
    system, groups = build_system(topology, solvent)
    expected_terms = 9 if solvent == "implicit" else 8
    assert list(groups.values()) == list(range(expected_terms))
    x = positions + np.random.default_rng(0).normal(0.0, 0.005, positions.shape)
    energy, forces = _state(build_unsplit_system(topology, solvent), x, platform)
    context = make_context(system, openmm.VerletIntegrator(0.001), platform)
    context.setPositions(x)
    group_energies, group_forces = evaluate(context, tuple(groups.values()))
    # The CPU platform sums the nonbonded terms in single precision: compare with the size of the terms.
    assert group_energies.sum() == pytest.approx(energy, abs=rtol * np.abs(group_energies).sum())
    assert np.linalg.norm(group_forces.sum(0) - forces) <= rtol * np.linalg.norm(group_forces)


def test_bond_group_matches_numpy(molecule):
    _, positions, system, groups = molecule
    x = positions + np.random.default_rng(1).normal(0.0, 0.01, positions.shape)
    energy, forces = _state(system, x, "Reference", groups={groups["bond"]})
    ij, r0, k = _bond_parameters(system)
    d = x[ij[:, 0]] - x[ij[:, 1]]  # (n_bonds, 3)
    r = np.linalg.norm(d, axis=-1)
    # OpenMM's HarmonicBondForce: E = ½ k (r − r0)², so k_openmm = 2 k_amber.
    f_pair = (-k * (r - r0) / r)[:, None] * d  # force on atom i of each bond
    expected = np.zeros_like(x)
    np.add.at(expected, ij[:, 0], f_pair)
    np.add.at(expected, ij[:, 1], -f_pair)
    assert energy == pytest.approx(np.sum(0.5 * k * (r - r0) ** 2), rel=1e-10)
    np.testing.assert_allclose(forces, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_nve_conserves_energy_at_half_a_femtosecond(molecule):
    _, positions, system, _ = molecule
    n_dof = degrees_of_freedom(system)
    trace = nve_drift(system, positions, timestep_fs=0.5, n_steps=2000, temperature_K=300.0, seed=5,
                      steps_per_record=4)
    # Fluctuation criterion: total-energy fluctuation ≪ the canonical kinetic-energy fluctuation
    # kT √(n_dof/2) (14 kJ/mol here). Measured 0.04 kJ/mol (ratio 0.003) at 0.5 fs, 0.19 (0.014) at
    # 1 fs: it scales as dt², and 1 % separates the two steps.
    assert trace.std() < 0.01 * KT_300 * np.sqrt(n_dof / 2)
    # Drift criterion: the fitted drift over the 1 ps run, per degree of freedom, ≪ kT (measured ~1e-4 kT).
    slope = np.polyfit(np.arange(trace.size), trace, 1)[0]
    assert abs(slope * (trace.size - 1)) / n_dof < 2e-3 * KT_300


def test_langevin_kinetic_temperature(molecule):
    topology, positions, system, _ = molecule
    assert degrees_of_freedom(system) == 3 * 22 - 3  # CMMotionRemover present, no constraints
    assert degrees_of_freedom(build_system(topology, remove_cm_motion=False)[0]) == 3 * 22
    # Strong friction decorrelates the kinetic energy fast (LangevinMiddle's kinetic temperature
    # does not depend on it): 20 ps give a standard error of about 2 K.
    trajectory = run_langevin(system, positions, 300.0, 0.5, 50.0, n_frames=2000, steps_per_frame=20, seed=11,
                              groups=(), dynamics_system=build_unsplit_system(topology))
    kinetic = trajectory.kinetic_energies[100:]  # drop 1 ps of equilibration from the minimum
    blocks = kinetic.reshape(10, -1).mean(axis=1)
    mean, stderr = blocks.mean(), blocks.std(ddof=1) / np.sqrt(blocks.size)
    to_kelvin = 2.0 / (MOLAR_GAS_CONSTANT * degrees_of_freedom(system))
    assert abs(mean * to_kelvin - 300.0) < 4.0 * stderr * to_kelvin
    # Counting 3N degrees of freedom instead would be resolved as wrong (300·63/66 ≈ 286 K).
    to_kelvin_3n = 2.0 / (MOLAR_GAS_CONSTANT * 66)
    assert abs(mean * to_kelvin_3n - 300.0) > 3.0 * stderr * to_kelvin_3n


def test_langevin_is_reproducible_and_groups_add_up(molecule):
    topology, positions, system, groups = molecule
    kwargs = dict(temperature_K=300.0, timestep_fs=0.5, friction_per_ps=1.0, n_frames=5, steps_per_frame=20)
    first = run_langevin(system, positions, seed=3, **kwargs)
    again = run_langevin(system, positions, seed=3, **kwargs)
    other = run_langevin(system, positions, seed=4, **kwargs)
    for name in ("positions", "forces", "group_energies", "group_forces", "kinetic_energies"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.positions, other.positions)
    assert first.positions.shape == (5, 22, 3) and first.group_forces.shape == (5, len(groups), 22, 3)
    assert first.groups == tuple(groups.values())
    total = first.group_forces.sum(axis=1)
    assert np.linalg.norm(total - first.forces) <= 1e-6 * np.linalg.norm(first.forces)
    # Integrating the unsplit system gives the same trajectory up to rounding in the force sums.
    fast = run_langevin(system, positions, seed=3, dynamics_system=build_unsplit_system(topology), **kwargs)
    np.testing.assert_allclose(fast.positions, first.positions, atol=1e-4)
