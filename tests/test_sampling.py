"""The REMC sampler against exact results (SPEC §2-3)."""

import numpy as np
import pytest
from numba import njit
from scipy import stats
from scipy.optimize import minimize

from conftest import PAPER_SYSTEM, make_config
from spinscore.physics import exact
from spinscore.physics.hamiltonian import bond_couplings, energy
from spinscore.sampling import kernels
from spinscore.sampling.reference import colour_sweep
from spinscore.sampling.remc import simulate_chain, temperature_ladder

NN_SYSTEM = {"types": ["A", "B"], "length": [20, 20], "temperature": 0.05,
             "couplings": {1: {"AA": 1.0, "AB": 0.8, "BB": 0.5}}}


def vmf_cos_cdf(w, kappa):
    """Exact CDF of cos(theta) under p(S) ~ exp(kappa mu.S)."""
    if kappa == 0:
        return (w + 1) / 2
    return (np.exp(kappa * (w - 1)) - np.exp(-2 * kappa)) / -np.expm1(-2 * kappa)


def rng_state(seed):
    return np.random.SeedSequence(seed).generate_state(4, np.uint64)


# --- single-site moves ---------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [0.0, 0.3, 1.0, 5.0, 40.0, 300.0])
def test_heat_bath_matches_von_mises_fisher(kappa):
    direction = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    beta = 2.0
    draws = kernels.heat_bath_samples(direction * kappa / beta, beta, 20000, rng_state(11))
    np.testing.assert_allclose(np.linalg.norm(draws, axis=1), 1.0, atol=1e-12)
    w = draws @ direction
    assert stats.kstest(w, lambda x: vmf_cos_cdf(x, kappa)).pvalue > 1e-3
    # azimuth around the field is uniform
    e1 = np.cross(direction, [1.0, 0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(direction, e1)
    phi = np.arctan2(draws @ e2, draws @ e1)
    assert stats.kstest(phi, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3


@njit
def _over_relax_batch(s, h):
    out = np.empty_like(s)
    for k in range(s.shape[0]):
        out[k, 0], out[k, 1], out[k, 2] = kernels.over_relax(s[k, 0], s[k, 1], s[k, 2],
                                                             h[k, 0], h[k, 1], h[k, 2])
    return out


def test_over_relaxation_conserves_local_energy():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((10000, 3))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    h = rng.standard_normal((10000, 3)) * rng.exponential(2.0, (10000, 1))
    new = _over_relax_batch(s, h)
    assert np.abs(np.sum(new * h, 1) - np.sum(s * h, 1)).max() < 1e-12
    assert np.abs(np.linalg.norm(new, axis=1) - 1).max() < 1e-12
    assert np.abs(new - s).max() > 0.5  # it moves
    np.testing.assert_allclose(_over_relax_batch(new, h), s, atol=1e-12)  # an involution


# --- exact nearest-neighbour chain ---------------------------------------------------------


@pytest.mark.parametrize("beta", [2.0, 20.0])
def test_remc_reproduces_exact_nn_chain(beta):
    cfg = make_config(dict(NN_SYSTEM, temperature=1 / beta), replicas=4, t_max=5 / beta,
                      burn_in=200, thinning=10, snapshots=20, swap_every=5)
    types = np.array([0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1], dtype=np.int8)
    table = cfg.system.coupling_table()
    bond_j = bond_couplings(types, table)[0, :-1]
    n_chains = 60
    energies, dots, ladder = [], [], []
    for i in range(n_chains):
        res = simulate_chain(cfg.system, cfg.simulation, i, types=types)
        energies.append(energy(res.spins, bond_couplings(types, table)).mean())
        dots.append(np.sum(res.spins[:, :-1] * res.spins[:, 1:], -1).mean(0))
        ladder.append(res.ladder_energy_mean[-1])
    energies, dots, ladder = np.array(energies), np.array(dots), np.array(ladder)
    se = energies.std(ddof=1) / np.sqrt(n_chains)
    assert abs(energies.mean() - exact.nn_chain_mean_energy(bond_j, beta)) < 4 * se
    se_l = ladder.std(ddof=1) / np.sqrt(n_chains)
    assert abs(ladder.mean() - exact.nn_chain_mean_energy(bond_j, beta)) < 4 * se_l
    exact_dots = exact.nn_chain_bond_correlation(bond_j, beta)
    for value in np.unique(bond_j):  # per bond type
        sel = bond_j == value
        per_chain = dots[:, sel].mean(1)
        se_d = per_chain.std(ddof=1) / np.sqrt(n_chains)
        assert abs(per_chain.mean() - exact_dots[sel].mean()) < 4 * se_d, value


def test_exact_formulas_against_quadrature():
    from scipy.integrate import quad

    for k in [0.01, 1.0, 16.0]:
        def weight(w, k=k):
            return np.exp(k * (w - 1))

        z1 = 2 * np.pi * np.exp(k) * quad(weight, -1, 1)[0]  # one bond, one spin fixed
        assert np.log(4 * np.pi * z1) == pytest.approx(exact.nn_chain_log_z([k], 1.0), rel=1e-10)
        mean = quad(lambda w: w * weight(w), -1, 1)[0] / quad(weight, -1, 1)[0]
        assert exact.langevin(k) == pytest.approx(mean, rel=1e-9)


# --- next-nearest neighbours: the colouring pitfall --------------------------------------------

J2_SYSTEM = {"types": ["A"], "length": [30, 30], "temperature": 0.05,
             "couplings": {1: {"AA": 0.0}, 2: {"AA": -0.8}}}


def j2_exact():
    cfg = make_config(J2_SYSTEM)
    bonds = bond_couplings(np.zeros(30, np.int8), cfg.system.coupling_table())
    e = sum(exact.nn_chain_mean_energy(j, 20.0) for _, j in exact.chain_bonds_by_range(bonds))
    return cfg, bonds, e


def test_j2_chain_exact_value_and_kernel():
    cfg, _, e_exact = j2_exact()
    assert e_exact == pytest.approx(-21.0, abs=1e-9)  # SPEC §3
    sim = dict(replicas=4, t_max=0.5, burn_in=200, thinning=10, snapshots=20)
    cfg = make_config(J2_SYSTEM, **sim)
    e = np.array([simulate_chain(cfg.system, cfg.simulation, i).ladder_energy_mean[-1]
                  for i in range(40)])
    assert abs(e.mean() - e_exact) < 4 * e.std(ddof=1) / np.sqrt(len(e))


def test_two_colour_parallel_sweep_is_wrong_three_is_right():
    _, bonds, e_exact = j2_exact()
    results = {}
    for colours in (2, 3):
        rng = np.random.default_rng(5)
        spins = rng.standard_normal((100, 30, 3))
        spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
        b = np.broadcast_to(bonds, (100, *bonds.shape))
        trace = []
        for sweep in range(400):
            colour_sweep(spins, b, 20.0, colours, rng)
            if sweep >= 200:
                trace.append(energy(spins, b))
        per_chain = np.mean(trace, axis=0)
        results[colours] = (per_chain.mean(), per_chain.std(ddof=1) / 10)
    mean3, se3 = results[3]
    mean2, se2 = results[2]
    assert abs(mean3 - e_exact) < 4 * se3 + 0.02  # 0.02: residual relaxation of slow modes
    assert abs(mean2 - e_exact) > 20 * se2  # the 2-colour sweep samples the wrong law


# --- frustrated uniform chain: the helix -----------------------------------------------------


def planar_ground_energy(j1, j2, length):
    def f(phi):
        d1, d2 = np.diff(phi), phi[2:] - phi[:-2]
        e = -j1 * np.cos(d1).sum() - j2 * np.cos(d2).sum()
        g = np.zeros_like(phi)
        g[1:] += -j1 * np.sin(d1)
        g[:-1] -= -j1 * np.sin(d1)
        g[2:] += -j2 * np.sin(d2)
        g[:-2] -= -j2 * np.sin(d2)
        return e, g
    q, _ = exact.helix_ground_state(j1, j2)
    res = minimize(f, q * np.arange(length), jac=True, method="BFGS", options={"gtol": 1e-10})
    return res.fun


def test_j1_j2_chain_sits_near_its_helix():
    j1, j2, length, temp = 1.0, -0.5, 40, 0.05
    system = {"types": ["A"], "length": [length, length], "temperature": temp,
              "couplings": {1: {"AA": j1}, 2: {"AA": j2}}}
    cfg = make_config(system, replicas=8, t_max=1.0, burn_in=500, thinning=20, snapshots=25)
    q, e_site = exact.helix_ground_state(j1, j2)
    assert np.degrees(q) == pytest.approx(60.0)  # cos q = -J1 / (4 J2) = 1/2
    e0 = planar_ground_energy(j1, j2, length)
    assert e0 > e_site * length  # open ends cost energy
    bonds = bond_couplings(np.zeros(length, np.int8), cfg.system.coupling_table())
    energies, dots = [], []
    for i in range(12):
        res = simulate_chain(cfg.system, cfg.simulation, i)
        e = energy(res.spins, bonds)
        assert e.min() > e0 - 1e-9  # nothing below the ground state
        energies.append(e.mean())
        dots.append(np.sum(res.spins[:, 10:30] * res.spins[:, 11:31], -1).mean())
    excess = (np.mean(energies) - e0) / temp
    n_modes = 2 * length - 3
    assert 0.9 * n_modes / 2 < excess < 1.25 * n_modes / 2, excess
    assert np.mean(dots) == pytest.approx(np.cos(q), abs=0.05)


def test_ladder_is_geometric():
    t = temperature_ladder(0.05, 5.0, 16)
    assert t[0] == pytest.approx(5.0) and t[-1] == pytest.approx(0.05)
    np.testing.assert_allclose(t[1:] / t[:-1], (0.01) ** (1 / 15))


@pytest.mark.parametrize("geometry", ["chain", "ring"])
def test_swap_counts_and_round_trips_are_those_after_burn_in(geometry):
    """1000 sweeps of burn-in, then two swap steps (sweeps 1010 and 1020: even pairs, then the
    odd one): one attempt per pair of neighbouring temperatures, at most two round trips (the
    burn-in's hundred swap steps were counted too)."""
    from spinscore.sampling.remc import _remc_on_chain, _remc_on_graph, measurement_count
    from spinscore.systems import system_from_config

    shape = {"length": [20, 20]} if geometry == "chain" else \
        {"lattice": {"kind": "chain", "size": [20], "boundary": "periodic"}}
    system = {k: v for k, v in PAPER_SYSTEM.items() if k != "length"}
    cfg = make_config({**system, **shape}, burn_in=1000, snapshots=2, thinning=10, swap_every=10)
    sim, sites = cfg.simulation, system_from_config(cfg.system)
    types = np.random.default_rng(0).integers(0, 2, 20).astype(np.int8)
    betas = 1 / temperature_ladder(cfg.system.temperature, sim.t_max, 4)
    attempted, accepted = np.zeros(3, np.int64), np.zeros(3, np.int64)
    trace = np.empty((measurement_count(1000, 2, 10, 10), 4))
    state = np.random.default_rng(1).bit_generator.random_raw(4).astype(np.uint64) | np.uint64(1)
    schedule = (betas, 1000, 2, 10, 10, state, np.empty((2, 20, 3)), accepted, attempted,
                np.zeros(4), np.zeros(4), trace)
    run = _remc_on_chain if geometry == "chain" else _remc_on_graph
    n_samples, trips = run(sites, types, cfg.system.coupling_table(), schedule)
    assert n_samples == 2 and attempted.tolist() == [1, 1, 1] and 0 <= trips <= 2
    assert np.all(accepted <= attempted)
