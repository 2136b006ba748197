"""ln Z over a REMC ladder by MBAR against the exact ln Z of nearest-neighbour chains and of a
ring, against the Simpson TI, and the energy trace of the kernels it reads."""

import numpy as np
import pytest

from conftest import PAPER_SYSTEM
from spinscore.analysis.mbar import mbar_log_z
from spinscore.analysis.thermo import exact_single_range, thermodynamic_integration
from spinscore.config import SimulationConfig, SystemConfig, parse_config
from spinscore.physics.exact import LOG_4PI, ring_log_z
from spinscore.sampling.remc import measurement_count, simulate_chain, temperature_ladder

NN_SYSTEM = {**PAPER_SYSTEM, "couplings": {1: PAPER_SYSTEM["couplings"][1]}}
QUICK_SIM = SimulationConfig(sequences=1, snapshots=1, replicas=16, t_max=5.0, burn_in=1000,
                             swap_every=10)  # the quick preset's ladder: T = 5 ... 0.05


def system_of(spec):
    return parse_config({"system": spec, "simulation": {"sequences": 1, "snapshots": 1}}).system


def exact_log_z(system, types, betas):
    """Exact ln Z (R,) of an open single-range chain at each of `betas` (R,)."""
    return np.array([exact_single_range(system, types, np.array([b]))["log_z"] for b in betas])


@pytest.fixture(scope="module")
def nn_chain():
    """MBAR on the quick preset's 16-temperature ladder for a 20-spin nearest-neighbour chain."""
    system = system_of(NN_SYSTEM)
    types = system.sequence_from_text("ABBABAAABBBABABBAABA")
    result = mbar_log_z(system, types, sim=QUICK_SIM, seed=3, runs=16, sweeps=4000)
    return system, types, result


@pytest.mark.parametrize("geometry", [
    {"length": [12, 12]},
    {"lattice": {"kind": "square", "size": [4, 4], "boundary": "periodic"}},
])  # fmt: skip
def test_energy_trace_matches_the_kernel_sums(geometry):
    """The trace (n_measurements, R) of the chain's and the graph kernel: one row per swap step
    after burn-in, whose mean and variance per temperature are the kernel's running sums."""
    spec = {key: value for key, value in NN_SYSTEM.items() if key != "length"}
    system = system_of({**spec, **geometry})
    sim = SimulationConfig(sequences=1, snapshots=3, replicas=5, t_max=2.0, burn_in=23,
                           thinning=40, swap_every=7, seed=4)
    res = simulate_chain(system, sim, 0)
    trace = res.ladder_energies
    assert trace.shape == (measurement_count(23, 3, 40, 7), 5) == ((23 + 120) // 7 - 3, 5)
    np.testing.assert_allclose(trace.mean(axis=0), res.ladder_energy_mean, rtol=1e-12)
    np.testing.assert_allclose(trace.var(axis=0), res.ladder_energy_var, rtol=1e-9)
    assert np.all(np.std(trace, axis=0) > 0)
    # colder temperatures sit lower in energy (the rows are per temperature, not per replica)
    assert np.all(np.diff(trace.mean(axis=0)) < 0)


def test_mbar_reproduces_the_exact_chain(nn_chain):
    """ln Z at the coldest and at two intermediate ladder temperatures within 4 standard
    errors of the exact value, with an error bar below 0.1 and the beta = 0 anchor."""
    system, types, result = nn_chain
    exact = exact_log_z(system, types, result["betas"])
    np.testing.assert_allclose(result["temperatures"], temperature_ladder(0.05, 5.0, 16))
    print("T     ln Z MBAR  +- err (analytic)  exact")
    for k in range(16):
        print(f"{result['temperatures'][k]:.3f} {result['log_z'][k]:9.4f} "
              f"+- {result['log_z_err'][k]:.4f} ({result['log_z_err_mbar'][k]:.4f}) {exact[k]:9.4f}")
    assert result["anchor"] == "uniform" and result["anchor_overlap"] > 0.3
    for k in (5, 10, 15):
        err = result["log_z_err"][k]
        assert abs(result["log_z"][k] - exact[k]) < 4 * err
        assert 0.5 < result["log_z_err_mbar"][k] / err < 2.0  # the decorrelation is right
    assert result["log_z_err"][-1] < 0.1
    assert result["overlap_min"] > 0.05 and result["log_z_runs"].shape == (16, 16)
    assert result["n_samples"][0] == 400 and np.all(result["n_samples"][1:] > 100)


def test_mbar_agrees_with_simpson_ti(nn_chain):
    """MBAR's ln Z at the coldest ladder temperature and the Simpson TI at that beta (100
    points) agree within 3 combined standard errors, and the TI with the exact value."""
    system, types, mbar = nn_chain
    sim = SimulationConfig(sequences=1, snapshots=1, burn_in=1000, swap_every=10)
    ti = thermodynamic_integration(system, types, mbar["betas"][-1], 100, sim, seed=3, runs=8,
                                   sweeps=2000)
    exact = exact_single_range(system, types, ti["betas"])["log_z"]
    combined = np.hypot(ti["log_z_err"], mbar["log_z_err"][-1])
    print(f"MBAR {mbar['log_z'][-1]:.4f} +- {mbar['log_z_err'][-1]:.4f}, "
          f"TI {ti['log_z']:.4f} +- {ti['log_z_err']:.4f}, exact {exact:.4f}")
    assert abs(mbar["log_z"][-1] - ti["log_z"]) < 3 * combined
    assert abs(ti["log_z"] - exact) < 4 * ti["log_z_err"]


def test_mbar_on_a_ring_is_exact():
    """A periodic ring of 6 (one loop, which the open-chain formula misses): ln Z at every
    ladder temperature within 4 standard errors of the exact ring value."""
    system = SystemConfig.model_validate({
        "types": ["A", "B"], "temperature": 0.2, "couplings": {1: {"AA": 1.0, "BB": 0.5,
                                                                    "AB": -0.7}},
        "lattice": {"kind": "chain", "size": [6], "boundary": "periodic"}})
    types = np.array([0, 0, 1, 0, 1, 1])
    bond_j = np.array([1.0, -0.7, -0.7, -0.7, 0.5, -0.7])  # (0,1), (1,2), ..., (5,0)
    sim = SimulationConfig(sequences=1, snapshots=1, burn_in=500, swap_every=10)
    result = mbar_log_z(system, types, temperature_ladder(0.2, 5.0, 10), sim, seed=1, runs=8,
                        sweeps=3000)
    exact = np.array([ring_log_z(bond_j, b) for b in result["betas"]])
    tree = 6 * np.log(4 * np.pi) + np.sum(np.log(np.sinh(5 * bond_j) / (5 * bond_j)))
    assert np.all(np.abs(result["log_z"] - exact) < 4 * result["log_z_err"])
    assert abs(result["log_z"][-1] - tree) > 5 * result["log_z_err"][-1]  # the loop: 0.29


def test_ti_anchor_when_beta_zero_does_not_overlap():
    """A ladder whose hottest temperature (0.3) is far from beta = 0: the overlap is below
    0.03, so the anchor is a short TI, and ln Z is exact at every temperature; the beta = 0
    anchor would be unbiased but several times noisier."""
    system = system_of(NN_SYSTEM)
    types = system.sequence_from_text("ABBABAABBBABABBA")
    temperatures = temperature_ladder(0.1, 0.3, 6)
    sim = SimulationConfig(sequences=1, snapshots=1, burn_in=500, swap_every=10)
    kwargs = {"sim": sim, "seed": 3, "runs": 8, "sweeps": 2000}
    result = mbar_log_z(system, types, temperatures, **kwargs)
    assert result["anchor"] == "ti" and result["anchor_overlap"] < 0.03
    assert result["anchor_ti"]["points"] == 11
    exact = exact_log_z(system, types, result["betas"])
    assert np.all(np.abs(result["log_z"] - exact) < 4 * result["log_z_err"])
    # the link beta = 0 -> beta_1 is not used under the TI anchor, so not in overlap_min
    assert result["overlap_min"] == result["neighbour_overlap"][1:].min() > 0.1
    uniform = mbar_log_z(system, types, temperatures, anchor="uniform", **kwargs)
    assert uniform["anchor"] == "uniform"
    assert np.all(uniform["log_z_err"] > 3 * result["log_z_err"])


def test_free_spins_and_states_too_close_for_bar():
    """An energy trace that never changes (free spins) and states too close for BAR's first
    guess (T = 1e6, 1e5) made pymbar raise; ln Z is exact in both."""
    short = {"length": [4, 50], "temperature": 0.5}
    free = system_of({**NN_SYSTEM, **short, "couplings": {1: {"AA": 1.0, "AB": 0.8, "BB": 0.0}}})
    types = free.sequence_from_text("BBBBBB")
    sim = SimulationConfig(sequences=1, snapshots=1, replicas=4, t_max=5.0, burn_in=100,
                           swap_every=10)
    result = mbar_log_z(free, types, sim=sim, runs=2, sweeps=200)
    np.testing.assert_allclose(result["log_z"], 6 * LOG_4PI, rtol=0, atol=1e-9)
    assert exact_single_range(free, types, np.array([2.0]))["log_z"] == 6 * LOG_4PI
    system = system_of({**NN_SYSTEM, **short})
    types = system.sequence_from_text("ABBABA")
    result = mbar_log_z(system, types, np.array([1e6, 1e5]), sim=sim, runs=2, sweeps=400)
    exact = exact_log_z(system, types, result["betas"])
    np.testing.assert_allclose(result["log_z"], exact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"temperatures": [0.1, 0.5]}, "hottest first"),
    ({"temperatures": [0.5, -0.1]}, "positive temperatures"),
    ({"anchor": "exact"}, "anchor: expected"),
    ({"runs": 1}, "at least 2 independent runs"),
])  # fmt: skip
def test_bad_settings(kwargs, message):
    system = system_of(NN_SYSTEM)
    with pytest.raises(ValueError, match=message):
        mbar_log_z(system, np.array([0, 1, 1, 0]), **kwargs)
