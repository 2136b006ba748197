"""The Hamiltonian: NumPy, torch and the compiled kernels agree; forces are gradients;
invariances hold; padding changes nothing."""

import numpy as np
import pytest
import torch

from conftest import SYSTEM3, make_config
from spinscore.physics.hamiltonian import (
    bond_classes,
    bond_couplings,
    chirality_reversals,
    energy,
    local_field,
    tangent_force,
)
from spinscore.sampling import kernels
from spinscore.sampling.remc import padded_bonds


def random_batch(rng, system, batch=5):
    lo, hi = system.length
    l_max = hi
    lengths = rng.integers(lo, hi + 1, size=batch)
    types = np.full((batch, l_max), -1, dtype=np.int8)
    spins = np.zeros((batch, l_max, 3))
    for b, n in enumerate(lengths):
        types[b, :n] = rng.integers(0, system.n_types, n)
        v = rng.standard_normal((n, 3))
        spins[b, :n] = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return types, spins


@pytest.fixture(params=["paper", "three_types"])
def system(request):
    return make_config().system if request.param == "paper" else make_config(SYSTEM3).system


def brute_energy(spins, types, table):
    """Double loop over all pairs: an independent definition of H."""
    e, n = 0.0, int(np.sum(types >= 0))
    for i in range(n):
        for j in range(i + 1, min(n, i + table.shape[0] + 1)):
            e -= table[j - i - 1, types[i], types[j]] * spins[i] @ spins[j]
    return e


def test_energy_matches_brute_force(system):
    rng = np.random.default_rng(1)
    types, spins = random_batch(rng, system)
    table = system.coupling_table()
    e = energy(spins, bond_couplings(types, table))
    for b in range(len(types)):
        assert e[b] == pytest.approx(brute_energy(spins[b], types[b], table), abs=1e-12)


def test_numpy_torch_and_kernel_agree(system):
    rng = np.random.default_rng(2)
    types, spins = random_batch(rng, system)
    table = system.coupling_table()
    bonds = bond_couplings(types, table)
    bonds_t = bond_couplings(torch.as_tensor(types), table)
    np.testing.assert_allclose(bonds_t.numpy(), bonds, atol=0)
    st = torch.as_tensor(spins)
    np.testing.assert_allclose(energy(st, bonds_t).numpy(), energy(spins, bonds), atol=1e-12)
    np.testing.assert_allclose(tangent_force(st, bonds_t).numpy(), tangent_force(spins, bonds),
                               atol=1e-12)
    for b in range(len(types)):
        n = int(np.sum(types[b] >= 0))
        pad = np.zeros((n + 2 * table.shape[0], 3))
        pad[table.shape[0]: table.shape[0] + n] = spins[b, :n]
        e_kernel = kernels.chain_energy(pad, padded_bonds(types[b, :n], table))
        assert e_kernel == pytest.approx(energy(spins[b], bonds[b]), abs=1e-12)


def test_force_is_minus_gradient_and_tangent(system):
    rng = np.random.default_rng(3)
    types, spins = random_batch(rng, system)
    bonds = bond_couplings(torch.as_tensor(types), system.coupling_table())
    s = torch.as_tensor(spins, dtype=torch.float64).requires_grad_(True)
    energy(s, bonds).sum().backward()
    grad = s.grad.numpy()
    proj = -(grad - np.sum(grad * spins, -1, keepdims=True) * spins)
    force = tangent_force(spins, bond_couplings(types, system.coupling_table()))
    np.testing.assert_allclose(force, proj, atol=1e-12)
    assert np.abs(np.sum(force * spins, axis=-1)).max() < 1e-12
    # energy = -1/2 sum_i S_i . h_i
    h = local_field(spins, bond_couplings(types, system.coupling_table()))
    np.testing.assert_allclose(energy(spins, bond_couplings(types, system.coupling_table())),
                               -0.5 * np.sum(h * spins, axis=(-1, -2)), atol=1e-12)


def test_invariance_under_random_o3(system):
    from scipy.stats import special_ortho_group

    rng = np.random.default_rng(4)
    types, spins = random_batch(rng, system)
    bonds = bond_couplings(types, system.coupling_table())
    for k in range(20):
        q = special_ortho_group.rvs(3, random_state=k) * (-1) ** k  # proper and improper
        np.testing.assert_allclose(energy(spins @ q.T, bonds), energy(spins, bonds), atol=1e-12)
        np.testing.assert_allclose(tangent_force(spins @ q.T, bonds),
                                   tangent_force(spins, bonds) @ q.T, atol=1e-12)


def test_padding_changes_nothing(system):
    rng = np.random.default_rng(5)
    types, spins = random_batch(rng, system)
    table = system.coupling_table()
    junk = rng.standard_normal(spins.shape)
    padded = np.where((types >= 0)[..., None], spins, junk)
    more_t = np.concatenate([types, np.full((len(types), 7), -1, np.int8)], axis=1)
    more_s = np.concatenate([padded, rng.standard_normal((len(types), 7, 3))], axis=1)
    e = energy(spins, bond_couplings(types, table))
    np.testing.assert_allclose(energy(more_s, bond_couplings(more_t, table)), e, atol=1e-12)
    f = tangent_force(more_s, bond_couplings(more_t, table))[:, : types.shape[1]]
    valid = (types >= 0)[..., None]
    np.testing.assert_allclose(np.where(valid, f, 0),
                               np.where(valid, tangent_force(spins, bond_couplings(types, table)), 0),
                               atol=1e-12)


def test_bond_classes_index_the_parameter_vector(system):
    rng = np.random.default_rng(6)
    types, _ = random_batch(rng, system)
    bonds = bond_couplings(types, system.coupling_table())
    cls = bond_classes(types, system.n_types, system.max_range)
    values = np.append(system.parameter_vector(), 0.0)  # class -1 -> 0
    np.testing.assert_array_equal(values[cls], bonds)


def test_chirality_reversals_count_helix_domain_walls():
    """A helix turning one way has none; one whose sense flips at site 10 has exactly one (the
    wall), whatever O(3) element acts on it (a reflection flips both senses, not their
    product); a planar zig-zag (angle ±q alternating) has one per site; numpy and torch agree."""
    from scipy.stats import special_ortho_group

    q = np.deg2rad(50.0)
    steps = np.concatenate([np.full(10, q), np.full(12, -q)])  # turn angles, sense flips once
    phi = {"helix": np.arange(23) * q, "wall": np.concatenate([[0.0], np.cumsum(steps)]),
           "zigzag": q * (np.arange(23) % 2)}
    expected = {"helix": 0, "wall": 1, "zigzag": 21}
    for name, angles in phi.items():
        spins = np.stack([np.cos(angles), np.sin(angles), 0.3 * np.ones_like(angles)], -1)
        spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
        for k in range(10):
            rot = special_ortho_group.rvs(3, random_state=k) * (-1) ** k
            assert chirality_reversals(spins @ rot.T) == expected[name], (name, k)
        assert int(chirality_reversals(torch.as_tensor(spins))) == expected[name]


@pytest.mark.parametrize("j", [(-1.0, -1.0, -1.0), (1.0, 0.7, -1.3)])
@pytest.mark.parametrize("beta", [2.0, 20.0, 40.0])
def test_ring_log_z_of_a_frustrated_triangle_is_the_integral(j, beta):
    """A triangle whose couplings multiply to a negative number (frustrated: the Legendre
    terms alternate and cancel to ~e^{-cK} of the largest) against an independent 1-D
    integral: S_1 integrated out exactly, 4 pi sinh|h| / |h| with h = K12 S_2 + K31 S_3, then
    S_2 along z and S_3 at c = S_2 . S_3 (Gauss-Legendre, in logarithms)."""
    from scipy.special import logsumexp

    from spinscore.physics.exact import LOG_4PI, log_sinhc, ring_log_z

    k12, k23, k31 = beta * np.asarray(j)
    c, w = np.polynomial.legendre.leggauss(2000)
    h = np.sqrt(k12**2 + k31**2 + 2 * k12 * k31 * c)
    log_integrand = k23 * c + log_sinhc(h)
    integral = 3 * LOG_4PI - np.log(2.0) + logsumexp(log_integrand, b=w)
    assert ring_log_z(np.asarray(j), beta) == pytest.approx(integral, rel=1e-11, abs=1e-11)


def test_ring_log_z_is_the_open_chain_when_one_bond_is_cut_even_when_strongly_coupled():
    """A ring with one zero bond is an open chain: ln Z = N ln 4pi + sum_b ln(sinh K_b / K_b),
    also where sum |K| is far beyond exp's range (it overflowed before), and with a sign
    flipped bond (antiferromagnetic: the same Z, by flipping the spins on one side)."""
    from spinscore.physics.exact import LOG_4PI, ring_log_z

    rng = np.random.default_rng(0)
    for beta, scale in ((0.7, 1.0), (1.0, 40.0)):
        j = rng.uniform(0.5, 1.5, 30) * scale
        j[-1] = 0.0
        open_chain = 30 * LOG_4PI + np.sum(np.log(np.sinh(beta * j[:-1]) / (beta * j[:-1])))
        assert ring_log_z(j, beta) == pytest.approx(open_chain, rel=1e-12)
        j[3] *= -1
        assert ring_log_z(j, beta) == pytest.approx(open_chain, rel=1e-12)


def test_log_sinhc_and_langevin_are_accurate_near_zero():
    """Against 40-digit values, on both sides of the switch to the series (the closed forms
    cancel there: log_sinhc was off by 1.2e-4 relative just above K = 1e-4)."""
    import mpmath

    from spinscore.physics.exact import langevin, log_sinhc

    with mpmath.workdps(40):
        for k in np.logspace(-7, 1.5, 400):
            m = mpmath.mpf(k)
            exact_log_sinhc = float(mpmath.log(mpmath.sinh(m) / m))
            exact_langevin = float(mpmath.coth(m) - 1 / m)
            assert log_sinhc(k) == pytest.approx(exact_log_sinhc, rel=1e-9)
            assert langevin(k) == pytest.approx(exact_langevin, rel=1e-10)
