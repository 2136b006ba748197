"""The analysis libraries on lattices (SPEC §6, §7b, §10): the per-pair layout against the chain's
bond layout, the oracle readout, the classical estimators, TI, the network readouts with a
stand-in network, generation, and the inspect stage, on a periodic square J1-J2 lattice with
two site types (and a ring for an exact ln Z)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SYSTEM3, run, simulate_cli
from score_oracles import PairOracle, SmoothedOracle, dense_couplings
from spinscore.analysis import baselines
from spinscore.analysis.extract import interaction_profile, network_readout
from spinscore.analysis.generation import compare_with_remc
from spinscore.analysis.inversion import design_matrix, system_design
from spinscore.analysis.mixing import simulate_sequences
from spinscore.analysis.ood import explained_variance
from spinscore.analysis.readout import DirectWStats
from spinscore.analysis.thermo import (
    exact_single_range,
    high_temperature_variance,
    thermodynamic_integration,
)
from spinscore.config import GenerationConfig, SystemConfig
from spinscore.io import Dataset, read_dataset
from spinscore.physics.exact import LOG_4PI, ring_log_z
from spinscore.physics.hamiltonian import (
    bond_classes,
)
from spinscore.systems import Chain

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

J = {1: {"AA": 1.0, "BB": 0.5, "AB": -0.6}, 2: {"AA": -0.4, "BB": 0.3, "AB": 0.2}}
SIZE = 4  # periodic 4 x 4: shells 1 (distance 1) and 2 (sqrt 2) need more than 2 cells
LATTICE = {"types": ["A", "B"], "temperature": 0.5, "couplings": J,
           "lattice": {"kind": "square", "size": [SIZE, SIZE], "boundary": "periodic"}}
SIMULATION = {"sequences": 64, "snapshots": 25, "replicas": 1, "burn_in": 200, "thinning": 10,
              "swap_every": 5, "seed": 5, "chunk_size": 16}


@pytest.fixture(scope="module")
def lattice_data(tmp_path_factory):
    """`spinscore simulate` of the square J1-J2 lattice: 64 samples x 25 snapshots."""
    return simulate_cli(tmp_path_factory.mktemp("lattice"), LATTICE, SIMULATION)


def extract_cli(data, tmp_path, method: str, bootstrap: int = 0) -> dict:
    out = tmp_path / method
    code, output = run(["extract", "--data", str(data), "--out", str(out), "--method", method,
                        "--bootstrap", str(bootstrap), "--quiet"])
    assert code == 0, output
    return json.loads((out / "extraction.json").read_text())


def resample(ds: Dataset, idx: np.ndarray) -> Dataset:
    """The data set of the samples `idx` (a bootstrap resample over sequences)."""
    arrays = {**ds.arrays, **{k: ds.arrays[k][idx] for k in ("spins", "types", "length")}}
    return Dataset(ds.path, ds.config, arrays, ds.attrs)


# --- (1) the two layouts agree on a chain -------------------------------------------------------


def test_per_pair_layout_equals_the_bond_layout_on_a_chain():
    """Three types, shells 1..3, a padded batch: the per-pair design matrix (Chain.pairs,
    Chain.pair_classes) equals the bond-layout one, and so do the direct-W statistics."""
    config = SystemConfig.model_validate(SYSTEM3)
    chain = Chain(config.n_types, config.max_range, config.length)
    rng = np.random.default_rng(0)
    n, p = 15, chain.n_parameters
    types = rng.integers(0, 3, size=(5, n))
    types[1, 11:], types[3, 9:] = -1, -1  # shorter chains, padded
    spins = rng.normal(size=(5, n, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    bonds = bond_classes(types, config.n_types, config.max_range)
    pairs = chain.pairs(n)
    x_bond = design_matrix(spins, bonds, p)
    x_pair = design_matrix(spins, chain.pair_classes(types), p, pairs)
    assert np.abs(x_bond).max() > 0.5 and np.count_nonzero(x_bond[3, 9:]) == 0
    np.testing.assert_allclose(x_pair, x_bond, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(system_design(chain, spins, types, p), x_bond)

    truth = config.parameter_vector()
    w = rng.normal(size=(5, n, n))
    w = w + np.swapaxes(w, 1, 2)
    valid, seq = types >= 0, np.array([0, 0, 1, 1, 2])  # two snapshots: a spread to compare
    by_bond = DirectWStats.zeros(truth, 5, config.max_range, n)
    by_bond.add(seq, w, bonds, valid)
    by_pair = DirectWStats.with_slots(truth, 5, len(pairs))
    by_pair.add(seq, w, chain.pair_classes(types), valid, pairs)
    a, b = by_bond.metrics(2.0), by_pair.metrics(2.0)
    assert a["n_observations"] == b["n_observations"] == int((chain.pair_classes(types) >= 0).sum())
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, err_msg=key)


# --- (2) the oracle readout on the lattice --------------------------------------------------------


def test_oracle_readout_recovers_beta_j_on_the_lattice(lattice_data, tmp_path):
    result = extract_cli(lattice_data, tmp_path, "oracle", bootstrap=5)
    truth = np.array(result["truth"])
    assert result["parameters"] == ["J1_AA", "J1_BB", "J1_AB", "J2_AA", "J2_BB", "J2_AB"]
    np.testing.assert_allclose(result["estimate"], 2.0 * truth, rtol=1e-8)
    assert result["r2"] == pytest.approx(1.0, abs=1e-10)
    # every spin of every snapshot is one row block: N = 16 sites, never cropped
    assert result["n_equations"] == 3 * 16 * 64 * 25


# --- (3) the classical estimators on the lattice ---------------------------------------------------


@pytest.mark.parametrize("method, estimator", [("score-matching", baselines.score_matching),
                                               ("pseudolikelihood", baselines.pseudo_likelihood)])
def test_classical_estimators_recover_j_on_the_lattice(lattice_data, tmp_path, method, estimator):
    """The estimate through `spinscore extract` is J within 4 bootstrap standard deviations
    (20 resamples over the 64 samples), and those are small (< 4 % of max |J|)."""
    result = extract_cli(lattice_data, tmp_path, method)
    estimate, truth = np.array(result["estimate"]), np.array(result["truth"])
    ds = read_dataset(lattice_data)
    rng = np.random.default_rng(1)
    boots = [estimator(resample(ds, rng.integers(0, 64, 64)), progress=False)[0] / 2.0
             for _ in range(20)]
    sd = np.std(boots, axis=0, ddof=1)
    assert sd.max() < 0.04 * np.abs(truth).max(), sd
    assert np.all(np.abs(estimate - truth) < 4 * sd), (estimate - truth) / sd


# --- (4) thermodynamic integration on lattices -------------------------------------------------------


def test_high_temperature_variance_sums_j_squared_over_the_lattice_pairs():
    """Var E at beta = 0: sum of J^2 / 3 over the 2N nearest and 2N next-nearest pairs of the
    periodic square lattice, counted here site by site (site = x * SIZE + y)."""
    config = SystemConfig.model_validate(LATTICE)
    types = np.random.default_rng(2).integers(0, 2, SIZE * SIZE)
    table = config.coupling_table()
    total = 0.0
    for x in range(SIZE):
        for y in range(SIZE):
            i = x * SIZE + y
            for shell, (dx, dy) in ((1, (1, 0)), (1, (0, 1)), (2, (1, 1)), (2, (1, -1))):
                j = ((x + dx) % SIZE) * SIZE + (y + dy) % SIZE
                total += table[shell - 1, types[i], types[j]] ** 2 / 3
    assert high_temperature_variance(config, types) == pytest.approx(total, rel=1e-12)


def test_thermodynamic_integration_on_a_ring_is_exact():
    """TI on a periodic chain lattice (a ring of 4): the exact ln Z including the loop (0.79 at
    beta = 5, which the open-chain formula misses), Var E at beta = 0 over the 4 bonds, and
    no closed form claimed."""
    system = SystemConfig.model_validate({
        "types": ["A", "B"], "temperature": 0.2, "couplings": {1: {"AA": 1.0, "BB": 0.5,
                                                                    "AB": -0.7}},
        "lattice": {"kind": "chain", "size": [4], "boundary": "periodic"}})
    types = np.array([0, 0, 1, 0])
    bond_j = np.array([1.0, -0.7, -0.7, 1.0])  # (0,1), (1,2), (2,3), (3,0)
    result = thermodynamic_integration(system, types, 5.0, n_points=40, runs=8, sweeps=3000,
                                       seed=0)
    exact = ring_log_z(bond_j, 5.0)
    tree = 4 * LOG_4PI + float(np.sum(np.log(np.sinh(5 * bond_j) / (5 * bond_j))))
    err = result["log_z_err"]
    assert abs(result["log_z"] - exact) < 5 * err, (result["log_z"] - exact, err)
    assert abs(result["log_z"] - tree) > 40 * err
    assert result["energy_var"][0] == pytest.approx(np.sum(bond_j**2) / 3, rel=1e-12)
    assert exact_single_range(system, types, result["betas"]) is None


# --- network readouts with a stand-in network ---------------------------------------------------------


def test_network_readouts_of_an_exact_field_on_the_lattice(lattice_data):
    """Direct W, OLS, the interaction profile (by shell) and the OOD explained variance of
    W = beta J: exact, and the OOD basis of a shorter model range explains less."""
    ds = read_dataset(lattice_data)
    model = PairOracle(ds.config.system)
    eqs, direct = network_readout(model, ds, [1e-3, 2e-3], 1e-3, progress=False)
    truth = ds.config.system.parameter_vector()
    np.testing.assert_allclose(eqs[0].solve()[0], 2.0 * truth, rtol=1e-5)
    m = direct.metrics(2.0)
    assert m["n_observations"] == 64 * 25 * 64  # 32 + 32 pairs per snapshot
    assert m["pearson"] == pytest.approx(1.0, abs=1e-6)
    assert m["a_star_over_beta"] == pytest.approx(1.0, abs=1e-6)
    assert m["support_share"] == pytest.approx(1.0, abs=1e-12)
    assert m["configuration_relative_rms"] < 1e-6
    profile = interaction_profile(model, ds, 1e-3, max_snapshots=100)
    assert profile["true_range"] == 2 and profile["distance"] == [1, 2, 3, 4, 5]
    assert min(profile["mean_abs_w"][:2]) > 0.5 and max(profile["mean_abs_w"][2:]) == 0
    ev = explained_variance(model, ds, ("A", "B"), 2, 1e-3, progress=False)
    np.testing.assert_allclose(ev, 1.0, atol=1e-6)
    ev_j1 = explained_variance(model, ds, ("A", "B"), 1, 1e-3, progress=False)
    assert np.median(ev_j1) < 0.9


def test_interaction_profile_extrapolated_to_zero_removes_the_induced_range(lattice_data):
    """At t = 1e-3 the induced term puts the far shells at 5e-3 (~2.3 decades below the
    weakest coupling); the linear extrapolation from (1e-3, 2e-3) gives exactly zero there and
    the couplings unchanged."""
    ds = read_dataset(lattice_data)
    model = SmoothedOracle(ds.config.system)
    profile = interaction_profile(model, ds, 1e-3, t_zero=(1e-3, 2e-3), max_snapshots=100)
    far = np.asarray(profile["mean_abs_w"][2:])
    np.testing.assert_allclose(far, 5e-3, rtol=1e-3)
    zero = profile["extrapolated"]
    assert zero["times"] == [1e-3, 2e-3]
    np.testing.assert_allclose(zero["mean_abs_w"][:2], profile["mean_abs_w"][:2], rtol=1e-4)
    assert max(zero["mean_abs_w"][2:]) < 1e-5
    weakest = min(profile["mean_abs_w"][:2])
    assert profile["decades_beyond_range"] == pytest.approx(np.log10(weakest / 5e-3), rel=1e-3)
    assert zero["decades_beyond_range"] is None or zero["decades_beyond_range"] > 4  # None: 0


def test_generation_energies_and_no_chirality_on_the_lattice(lattice_data):
    """compare_with_remc on a lattice sample: energies of the pairs, chirality None."""
    ds = read_dataset(lattice_data)
    config = ds.config
    model = PairOracle(config.system).double()
    types = ds.types[0].astype(np.int64)
    settings = GenerationConfig(method="sde", steps=4)
    spins, e_gen, result = compare_with_remc(model, config, types, 3, settings=settings,
                                             reference_snapshots=3)
    w = dense_couplings(model.system, config.system.coupling_table(), types[None])[0]
    s = spins.astype(np.float64)
    np.testing.assert_allclose(e_gen, -0.5 * np.einsum("nic,ij,njc->n", s, w, s), rtol=1e-10)
    assert result["chirality_reversals_generated"] is None
    assert result["chirality_reversals_reference"] is None


def test_inspect_and_mixing_on_the_lattice(lattice_data, tmp_path):
    """`spinscore inspect --plots --mixing` on the lattice: summary, figure, mixing record; the
    mixing re-simulation with the data set's own seed reproduces its snapshots."""
    code, output = run(["inspect", str(lattice_data), "--plots", str(tmp_path / "p"),
                        "--mixing", "--mixing-sequences", "4", "--threads", "1"])
    assert code == 0, output
    assert (tmp_path / "p" / "dataset.png").stat().st_size > 0
    assert "samples x" in output and "sequences" not in output.split("geometry")[0]
    summary = json.loads((tmp_path / "p" / "dataset_summary.json").read_text())
    assert summary["geometry"].startswith("square lattice") and "lattice" in output
    assert set(summary["bond_correlation_mean"]) == {"J1_AA", "J1_BB", "J1_AB", "J2_AA",
                                                     "J2_BB", "J2_AB"}
    assert json.loads((tmp_path / "p" / "mixing.json").read_text())["baseline"]["sequences"] == 4
    ds = read_dataset(lattice_data)
    again = simulate_sequences(ds.config, ds.types[:2], ds.length[:2], ds.config.simulation.seed)
    np.testing.assert_allclose(again, ds.spins[:2], atol=1e-6)
