"""Thermodynamic integration against the exact partition function of nearest-neighbour chains."""

import json

import numpy as np
import pytest

from conftest import PAPER_SYSTEM, assert_clean_error, run, write_config
from spinscore.analysis.thermo import (
    LOG_4PI,
    beta_grid,
    exact_single_range,
    integrate_log_z,
    thermodynamic_integration,
)
from spinscore.config import SimulationConfig, parse_config
from spinscore.errors import SpinscoreError

NN_SYSTEM = {**PAPER_SYSTEM, "couplings": {1: PAPER_SYSTEM["couplings"][1]}}
NNN_ONLY = {**PAPER_SYSTEM, "couplings": {1: {"AA": 0, "AB": 0, "BB": 0}, 2: {"AA": -0.8, "AB": 0.6,
                                                                          "BB": -0.4}}}


def system_of(spec):
    return parse_config({"system": spec, "simulation": {"sequences": 1, "snapshots": 1}}).system


@pytest.fixture(scope="module")
def nn_result():
    """TI of a 20-spin nearest-neighbour chain at the paper's beta = 20, and its exact answer."""
    system = system_of(NN_SYSTEM)
    types = system.sequence_from_text("ABBABAAABBBABABBAABA")
    sim = SimulationConfig(sequences=1, snapshots=1, burn_in=1000, swap_every=10)
    result = thermodynamic_integration(system, types, 20.0, 100, sim, seed=3, runs=8, sweeps=2000)
    return result, exact_single_range(system, types, result["betas"])


def test_simpson_on_exact_energies_is_exact():
    """The quadrature alone (exact <E> on the 100-point grid) is good to 1e-4 in ln Z."""
    system = system_of(NN_SYSTEM)
    types = np.random.default_rng(0).integers(0, 2, 30)
    betas = beta_grid(20.0, 100)
    exact = exact_single_range(system, types, betas)
    assert exact["mean_energy"][0] == 0.0
    assert integrate_log_z(betas, exact["mean_energy"], 30) == pytest.approx(exact["log_z"], abs=1e-4)
    # beta -> 0: ln Z -> L ln 4 pi (the measure is the product of the sphere areas)
    assert exact_single_range(system, types, beta_grid(1e-9, 3))["log_z"] == pytest.approx(30 * LOG_4PI)


def test_ti_reproduces_exact_log_z(nn_result):
    result, exact = nn_result
    error = result["log_z"] - exact["log_z"]
    print(f"TI ln Z {result['log_z']:.4f} +- {result['log_z_err']:.4f}, exact {exact['log_z']:.4f}")
    assert abs(error) < 4 * result["log_z_err"]
    assert abs(error) < 0.005 * abs(exact["log_z"])
    assert result["log_z_infinite_temperature"] == pytest.approx(20 * LOG_4PI)
    assert result["mean_energy"][0] == 0.0 and result["mean_energy_err"][0] == 0.0
    assert result["betas"].shape == result["mean_energy"].shape == (100,)


def test_error_bars_are_honest(nn_result):
    """The standard errors are neither too small nor too large: the deviations from the exact
    <E>_beta at the 99 sampled betas have an RMS of about one standard error (a factor 2 off
    either way fails), and the ln Z error bar is a small fraction of what 0.5 % allows."""
    result, exact = nn_result
    z = (result["mean_energy"] - exact["mean_energy"])[1:] / result["mean_energy_err"][1:]
    rms = float(np.sqrt(np.mean(z**2)))
    print(f"RMS of (<E> - exact) / std. error over 99 betas: {rms:.3f}")
    assert 0.6 < rms < 1.8
    assert 0.005 < result["log_z_err"] < 0.1
    assert np.std(result["log_z_runs"], ddof=1) / np.sqrt(8) == pytest.approx(result["log_z_err"])
    # the sampled <E> falls with beta and the heat capacity stays near the equipartition value
    assert np.all(np.diff(result["mean_energy"]) < 0)
    assert np.all(result["heat_capacity"][1:] < 19 * 1.2)


def test_next_nearest_only_chain():
    """A J2-only chain is two independent nearest-neighbour chains: TI agrees with its exact ln Z."""
    system = system_of(NNN_ONLY)
    types = system.sequence_from_text("ABBABAABBBAB")
    sim = SimulationConfig(sequences=1, snapshots=1, burn_in=300, swap_every=10)
    result = thermodynamic_integration(system, types, 5.0, 41, sim, seed=1, runs=6, sweeps=1000)
    exact = exact_single_range(system, types, result["betas"])
    assert abs(result["log_z"] - exact["log_z"]) < 4 * result["log_z_err"]


def test_deterministic_and_thread_independent():
    system = system_of(PAPER_SYSTEM)
    types = system.sequence_from_text("ABBAABAB")
    sim = SimulationConfig(sequences=1, snapshots=1, burn_in=20, swap_every=5)
    runs = [thermodynamic_integration(system, types, 4.0, 9, sim, seed=5, runs=3, sweeps=50,
                                      threads=t) for t in (1, 2, 1)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0]["log_z_runs"], other["log_z_runs"])
        np.testing.assert_array_equal(runs[0]["mean_energy"], other["mean_energy"])
    other_seed = thermodynamic_integration(system, types, 4.0, 9, sim, seed=6, runs=3, sweeps=50)
    assert other_seed["log_z"] != runs[0]["log_z"]
    assert exact_single_range(system, types, runs[0]["betas"]) is None  # two ranges: no oracle


def test_sequence_types():
    system = system_of(PAPER_SYSTEM)
    np.testing.assert_array_equal(system.sequence_from_text("AB BA"), [0, 1, 1, 0])
    long_names = {"types": ["Ala", "Gly"], "couplings": {1: {"Ala-Ala": 1, "Ala-Gly": 0.5,
                                                             "Gly-Gly": 0.2}},
                  "length": [5, 10], "temperature": 1.0}
    np.testing.assert_array_equal(system_of(long_names).sequence_from_text("Ala,Gly, Gly Ala"), [0, 1, 1, 0])
    with pytest.raises(SpinscoreError, match="unknown site type 'C' at position 2"):
        system.sequence_from_text("ABCA")
    with pytest.raises(SpinscoreError, match="too short for interaction range 2"):
        system.sequence_from_text("AB")


# --- command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra,expected", [
    (["--sequence", "ABXA"], "unknown site type 'X' at position 2 (types are ['A', 'B'])"),
    (["--sequence", "AB"], "2 sites are too short for interaction range 2"),
    (["--sequence", "ABBA", "--points", "0"], "--points: expected an integer >= 3, got 0"),
    (["--sequence", "ABBA", "--points", "-5"], "--points: expected an integer >= 3, got -5"),
    (["--sequence", "ABBA", "--beta", "-1"], "--beta: expected a positive number"),
    (["--sequence", "ABBA", "--runs", "1"], "--runs: expected an integer >= 2"),
])  # fmt: skip
def test_cli_bad_input(tmp_path, extra, expected):
    cfg = write_config(tmp_path / "cfg.yaml")
    out = tmp_path / "thermo"
    assert_clean_error(*run(["thermo", "--config", str(cfg), "--out", str(out), *extra]),
                       expected)
    assert not out.exists()


def test_cli_writes_json_and_figure(tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", system=NN_SYSTEM)
    out = tmp_path / "thermo"
    code, output = run(["thermo", "--config", str(cfg), "--sequence", "ABBAB", "--out", str(out),
                        "--points", "11", "--runs", "2", "--sweeps", "20", "--threads", "1",
                        "--quiet", "--beta", "2", "--samples", "1"])  # --samples: IS only
    assert code == 0, output
    assert "ln Z(beta=2)" in output and "exact" in output
    record = json.loads((out / "thermo.json").read_text())
    assert record["sequence"] == "ABBAB" and record["beta0"] == 2.0 and record["seed"] == 7
    assert len(record["betas"]) == len(record["mean_energy"]) == len(record["mean_energy_err"]) == 11
    assert record["exact"]["log_z"] > 5 * LOG_4PI and record["timings"]["sampling_s"] > 0
    assert (out / "thermo.png").stat().st_size > 0


def test_cli_mbar_beside_ti_agrees_with_the_exact_chain(tmp_path):
    """`spinscore thermo --method both`: MBAR's ln Z at every ladder temperature (the exact
    value beside each), and at beta0 within 4 standard errors of the exact ln Z, as the TI."""
    cfg = write_config(tmp_path / "cfg.yaml", system=NN_SYSTEM)
    out = tmp_path / "thermo"
    code, output = run(["thermo", "--config", str(cfg), "--sequence", "ABBABBA", "--out",
                        str(out), "--points", "21", "--runs", "4", "--sweeps", "2000",
                        "--threads", "1", "--quiet", "--beta", "2", "--method", "both"])
    assert code == 0, output
    assert "TI    ln Z(beta=2)" in output and "MBAR  ln Z(beta=2)" in output
    record = json.loads((out / "thermo.json").read_text())
    mbar, exact = record["mbar"], record["exact"]["log_z"]
    assert record["methods"] == ["ti", "mbar"]
    assert mbar["betas"][-1] == pytest.approx(2.0) and len(mbar["log_z"]) >= 2
    assert mbar["exact_log_z"][-1] == pytest.approx(exact)
    for log_z, err, true in zip(mbar["log_z"], mbar["log_z_err"], mbar["exact_log_z"],
                                strict=True):
        assert abs(log_z - true) < 4 * err + 1e-9
    assert abs(record["log_z"] - exact) < 4 * record["log_z_err"]
    d = record["mbar_minus_ti"]
    assert d["difference"] == pytest.approx(mbar["log_z"][-1] - record["log_z"])
    assert record["timings"]["mbar_s"] > 0 and (out / "thermo.png").stat().st_size > 0


def test_cli_mbar_alone(tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", system=NN_SYSTEM)
    out = tmp_path / "thermo"
    code, output = run(["thermo", "--config", str(cfg), "--sequence", "ABBAB", "--out", str(out),
                        "--runs", "2", "--sweeps", "200", "--threads", "1", "--quiet",
                        "--method", "mbar"])
    assert code == 0, output
    assert "TI " not in output and "MBAR  ln Z" in output
    record = json.loads((out / "thermo.json").read_text())
    assert record["log_z"] == record["mbar"]["log_z"][-1] and "betas" not in record
