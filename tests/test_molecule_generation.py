"""Generation for molecules: Langevin dynamics with a score samples its Boltzmann distribution;
the helpers of the generation stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinscore.molecules.generation import js_divergence, score_langevin
from spinscore.molecules.md import MOLAR_GAS_CONSTANT
from spinscore.molecules.ramachandran import ramachandran_histogram
from spinscore.stages.molecule_generation import angle_triplets, start_frames

T = 300.0
KT = MOLAR_GAS_CONSTANT * T  # kJ/mol


def spring_chain_score(k: np.ndarray):
    """Score of three atoms joined by two springs of rest length 0 and stiffness k (kJ/mol/nm^2):
    the two bond vectors are independent Gaussians with variance kT / k per component."""
    beta_k = torch.as_tensor(k / KT)

    def score(x: torch.Tensor) -> torch.Tensor:
        b1, b2 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 1]
        s = torch.zeros_like(x)
        s[:, 0] = beta_k[0] * b1
        s[:, 1] = -beta_k[0] * b1 + beta_k[1] * b2
        s[:, 2] = -beta_k[1] * b2
        return s

    return score


def test_langevin_with_a_score_samples_its_boltzmann_distribution():
    """BAOAB is exact in configuration for harmonic forces: the bond-vector variances match
    kT / k within 4 standard errors (chains independent, frames 10 relaxation times apart)."""
    k = np.array([2000.0, 500.0])
    masses = np.array([12.0, 1.0, 16.0])
    chains = 400
    run = score_langevin(spring_chain_score(k), np.zeros((chains, 3, 3)), masses,
                         temperature_K=T, timestep_fs=2.0, friction_per_ps=20.0,
                         steps=6000, record_every=1000, seed=3)
    frames = run.positions
    # a conservative force: the kinetic temperature is the bath's (9 dof x 5 frames x chains)
    t_kin = run.kinetic_temperature[1:]
    assert abs(t_kin.mean() - T) < 4 * T * np.sqrt(2 / (9 * t_kin.size))
    assert frames.shape == (6, chains, 3, 3)
    x = frames[1:]  # the first 2 ps: equilibration
    for i, bond in enumerate((x[..., 1, :] - x[..., 0, :], x[..., 2, :] - x[..., 1, :])):
        variance = bond.var()
        expected = KT / k[i]
        stderr = expected * np.sqrt(2.0 / bond.size)
        assert abs(variance - expected) < 4 * stderr, (i, variance, expected)
    # no net force: the centre of mass only diffuses, D = kT / (M friction), mean zero over chains
    com = (frames[-1] * masses[None, :, None]).sum(1) / masses.sum()  # (chains, 3) at t = 12 ps
    spread = np.sqrt(2 * KT / (masses.sum() * 20.0) * 12.0)  # nm, per component
    assert com.std() == pytest.approx(spread, rel=0.2)
    assert np.abs(com.mean(0)).max() < 4 * spread / np.sqrt(chains)


def test_langevin_refuses_bad_starts_and_reports_a_blow_up():
    score = spring_chain_score(np.array([1.0, 1.0]))
    masses = np.ones(3)
    with pytest.raises(ValueError, match="start"):
        score_langevin(score, np.full((2, 3, 3), np.nan), masses, temperature_K=T,
                       timestep_fs=1, friction_per_ps=1, steps=2, record_every=1)

    def explosive(x: torch.Tensor) -> torch.Tensor:
        return x * 1e30

    with pytest.raises(FloatingPointError, match="non-finite"):
        score_langevin(explosive, np.ones((2, 3, 3)), masses, temperature_K=T, timestep_fs=1,
                       friction_per_ps=1, steps=50, record_every=10)


def test_js_divergence_of_ramachandran_maps():
    rng = np.random.default_rng(0)
    a = ramachandran_histogram(rng.uniform(-180, 0, 1000), rng.uniform(-180, 180, 1000))
    b = ramachandran_histogram(rng.uniform(0, 180, 1000), rng.uniform(-180, 180, 1000))
    assert a.sum() == pytest.approx(1.0)
    assert js_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(a, b) == pytest.approx(np.log(2.0))


def test_start_frames_leave_room_for_the_md_that_follows():
    starts = start_frames(2, 100, 30, 5)
    assert len(starts) == 5 and {t for t, _ in starts} == {0, 1}
    assert all(0 <= f <= 100 - 1 - 30 for _, f in starts)
    assert len(set(starts)) == 5
    from spinscore.errors import SpinscoreError

    with pytest.raises(SpinscoreError, match="picoseconds"):
        start_frames(2, 10, 10, 4)


def test_angle_triplets_are_the_force_fields_angles():
    pytest.importorskip("openmm")
    import openmm

    from spinscore.molecules import Molecule, TrajectorySettings

    molecule = Molecule.alanine(TrajectorySettings())
    angles = next(f for f in molecule.system.getForces() if isinstance(f, openmm.HarmonicAngleForce))
    expected = set()
    for i in range(angles.getNumAngles()):
        a, b, c, *_ = angles.getAngleParameters(i)
        expected.add((min(a, c), b, max(a, c)))
    bonds = np.array([(a.index, b.index) for a, b in molecule.topology.bonds()])
    assert {tuple(t) for t in angle_triplets(bonds)} == expected
