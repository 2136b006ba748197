"""The data's own interaction profile: the oracle and score matching through `spinscore extract
--shells K`, on a basis of couplings that reaches past the true range (zero there)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_clean_error, run, simulate_cli
from score_oracles import SmoothedOracle
from spinscore.analysis.extract import network_readout, network_shell_profile
from spinscore.config import SystemConfig
from spinscore.io import Dataset, read_dataset
from spinscore.reproduce import _readout_shells

SIZE = 6  # periodic 6 x 6: shells up to 5 (distance sqrt 8) fit, shell 6 (distance 3) does not
LATTICE = {"types": ["A", "B"], "temperature": 0.5,
           "couplings": {1: {"AA": 1.0, "BB": 0.5, "AB": -0.6}},
           "lattice": {"kind": "square", "size": [SIZE, SIZE], "boundary": "periodic"}}
SIMULATION = {"sequences": 48, "snapshots": 20, "replicas": 1, "burn_in": 200, "thinning": 10,
              "swap_every": 5, "seed": 11, "chunk_size": 16}


@pytest.fixture(scope="module")
def wide_lattice(tmp_path_factory):
    """`spinscore simulate` of a nearest-neighbour square lattice: 48 samples x 20 snapshots."""
    return simulate_cli(tmp_path_factory.mktemp("wide"), LATTICE, SIMULATION)


def extract(data, tmp_path, method: str, shells: int, bootstrap: int) -> tuple[dict, str]:
    out = tmp_path / method
    code, output = run(["extract", "--data", str(data), "--out", str(out), "--method", method,
                        "--shells", str(shells), "--bootstrap", str(bootstrap), "--quiet"])
    assert code == 0, output
    return json.loads((out / "extraction.json").read_text()), output


def test_the_oracle_on_an_extended_basis_is_exact_and_zero_beyond_the_range(wide_lattice,
                                                                             tmp_path):
    result, _ = extract(wide_lattice, tmp_path, "oracle", 4, 5)
    assert result["parameters"][-3:] == ["J4_AA", "J4_BB", "J4_AB"]
    estimate = np.array(result["estimate"]).reshape(4, 3)
    np.testing.assert_allclose(estimate[0], 2.0 * np.array([1.0, 0.5, -0.6]), rtol=1e-8)
    assert np.abs(estimate[1:]).max() < 1e-8
    profile = result["shell_profile"]
    assert profile["true_range"] == 1 and profile["distance"] == [1, 2, 3, 4]
    assert profile["decades_beyond_range"] is None or profile["decades_beyond_range"] > 7


def test_score_matching_finds_zero_beyond_the_range_within_its_errors(wide_lattice, tmp_path):
    """Each coupling beyond the true range is within 4 bootstrap standard errors of zero, the
    nearest-neighbour couplings within 4 of the truth, and the errors are small (< 5 % of J1);
    the printed table and `decades_beyond_range` agree with the estimates."""
    result, output = extract(wide_lattice, tmp_path, "score-matching", 5, 100)
    estimate = np.array(result["estimate"]).reshape(5, 3)
    se = np.array(result["bootstrap_se"]["estimate"]).reshape(5, 3)
    assert se.max() < 0.05
    assert np.all(np.abs(estimate[0] - [1.0, 0.5, -0.6]) < 4 * se[0]), estimate[0]
    assert np.all(np.abs(estimate[1:]) < 4 * se[1:]), estimate[1:] / se[1:]
    profile = result["shell_profile"]
    assert max(profile["max_z"][1:]) < 4
    mean_abs = np.abs(estimate).mean(1)
    np.testing.assert_allclose(profile["mean_abs"], mean_abs)
    assert profile["decades_beyond_range"] == pytest.approx(
        np.log10(mean_abs[0] / mean_abs[1:].max()))
    assert f"falls {profile['decades_beyond_range']:.2f} decades" in output


def test_the_network_profile_reads_its_force_and_removes_the_induced_range(wide_lattice):
    """A stand-in network W = beta J + 5 t on every pair past the range: at t = 1e-3 its force
    carries about 5e-3 on the far shells; extrapolated linearly from t = 1e-3 and 2e-3, the
    couplings it carries are beta J and zero beyond."""
    ds = read_dataset(wide_lattice)
    wide = Dataset(ds.path, ds.config.model_copy(
        update={"system": ds.config.system.with_shells(4)}), ds.arrays, ds.attrs)
    model = SmoothedOracle(ds.config.system)
    at_t = network_readout(model, wide, [1e-3], progress=False)[0][0].solve()[0]
    assert 2e-3 < np.abs(at_t[3:]).max() < 2e-2
    profile = network_shell_profile(model, wide, (1e-3, 2e-3), 1, progress=False)
    estimate = np.array(profile["estimate"]).reshape(4, 3)
    np.testing.assert_allclose(estimate[0], 2.0 * np.array([1.0, 0.5, -0.6]), rtol=1e-5)
    assert np.abs(estimate[1:]).max() < 1e-4
    assert profile["decades_beyond_range"] > 4 and profile["times"] == [1e-3, 2e-3]


@pytest.mark.parametrize("args, expected", [
    (["--method", "oracle", "--shells", "6"], "--shells 6: system.lattice: periodic square "
                                              "lattice of size (6, 6) is too small for shell 6"),
    (["--method", "network", "--checkpoint", "x.pt", "--shells", "3", "--t-extrapolate", "none"],
     "--shells: the network's couplings by shell are extrapolated to t = 0 from two"),
])
def test_shells_the_lattice_lacks_or_no_readout_times_are_one_clear_error(wide_lattice, tmp_path, args,
                                                                    expected):
    code, output = run(["extract", "--data", str(wide_lattice), "--out", str(tmp_path / "o"),
                        "--quiet", *args])
    assert code == 2
    assert expected in output and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize("system, expected", [
    (LATTICE, 5),  # 6 x 6 periodic holds shells up to 5
    ({**LATTICE, "lattice": {"kind": "square", "size": [4, 4], "boundary": "periodic"},
      "couplings": {1: LATTICE["couplings"][1], 2: LATTICE["couplings"][1]}}, None),  # no room
    ({**LATTICE, "lattice": {"kind": "square", "size": [12, 12], "boundary": "open"}}, 8),
    ({key: v for key, v in LATTICE.items() if key != "lattice"}, None),  # a chain
])
def test_reproduce_reads_the_network_on_the_widest_basis_the_lattice_holds(system, expected):
    assert _readout_shells(SystemConfig.model_validate(system), 8) == expected


@pytest.mark.parametrize("method", ["oracle", "score-matching", "pseudolikelihood"])
def test_a_class_the_data_never_holds_is_one_error(tmp_path_factory, method):
    """Rows alternating A, B on a periodic 4 x 4 lattice: every diagonal pair is AB, so J2_AA and
    J2_BB have no pair (score matching and the oracle crashed, pseudo-likelihood read zero)."""
    system = {**LATTICE, "couplings": {1: {"AA": 1.0, "BB": 0.5, "AB": -0.6},
                                       2: {"AA": 0.2, "BB": 0.1, "AB": -0.1}},
              "lattice": {"kind": "square", "size": [4, 4], "boundary": "periodic"},
              "pattern": "AB" * 8}
    data = simulate_cli(tmp_path_factory.mktemp("pattern"), system,
                        {**SIMULATION, "sequences": 4, "snapshots": 4})
    out = tmp_path_factory.mktemp("x") / method
    code, output = run(["extract", "--data", str(data), "--out", str(out), "--method", method,
                        "--quiet"])
    assert_clean_error(code, output, "no pair of the data set is in the coupling classes "
                       "J2_AA, J2_BB")
    assert not out.exists()
