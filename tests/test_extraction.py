"""Phase II inversion and the classical estimators."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_config
from spinscore.analysis.baselines import pseudo_likelihood, score_matching
from spinscore.analysis.extract import accumulate, oracle_force, summarise
from spinscore.analysis.inversion import NormalEquations, design_matrix, neighbour_sums
from spinscore.cli import main
from spinscore.io import read_dataset
from spinscore.physics.hamiltonian import bond_classes, bond_couplings, local_field
from spinscore.sampling.simulate import simulate_dataset


def test_streamed_solver_equals_lstsq():
    rng = np.random.default_rng(0)
    n_seq, per_seq, p = 7, 5, 4
    x = rng.standard_normal((n_seq * per_seq, 9, 3, p))
    y = np.einsum("blcp,p->blc", x, [1.0, -2.0, 0.5, 3.0]) + rng.standard_normal((35, 9, 3))
    mask = rng.random((35, 9)) < 0.8
    seq = np.repeat(np.arange(n_seq), per_seq)
    eqs = NormalEquations.zeros(n_seq, p)
    for a in range(0, 35, 6):  # in uneven batches
        eqs.add(seq[a : a + 6], x[a : a + 6], y[a : a + 6], mask[a : a + 6])
    c, r2 = eqs.solve()
    xs, ys = x[mask].reshape(-1, p), y[mask].reshape(-1)
    ref = np.linalg.lstsq(xs, ys, rcond=None)[0]
    np.testing.assert_allclose(c, ref, rtol=1e-10)
    res = ys - xs @ ref
    yc = y[mask]  # (M, 3): SS_tot about the per-component mean
    ss_tot = np.sum((yc - yc.mean(0)) ** 2)
    assert r2 == pytest.approx(1 - res @ res / ss_tot, rel=1e-10)


def test_neighbour_sums_rebuild_the_local_field(small_dataset):
    ds = read_dataset(small_dataset)
    system = ds.config.system
    spins, types = ds.spins[:, 0].astype(float), ds.types
    g = neighbour_sums(spins, bond_classes(types, system.n_types, system.max_range),
                       len(system.parameter_names()))
    h = np.einsum("blpc,p->blc", g, system.parameter_vector())
    np.testing.assert_allclose(h, local_field(spins, bond_couplings(types,
                                                                    system.coupling_table())),
                               atol=1e-12)


def test_oracle_is_exact(small_dataset):
    ds = read_dataset(small_dataset)
    result = summarise(accumulate(ds, oracle_force(ds), progress=False), ds, "oracle", n_boot=5)
    assert abs(result["r2"] - 1) < 1e-10 and abs(result["cosine"] - 1) < 1e-10
    np.testing.assert_allclose(result["estimate"], 20 * np.array(result["truth"]), rtol=1e-10)
    assert result["scale_over_beta"] == pytest.approx(1.0, abs=1e-10)
    assert result["force_r2"] == pytest.approx(1.0, abs=1e-10)


def test_design_matrix_is_tangent(small_dataset):
    ds = read_dataset(small_dataset)
    spins = ds.spins[:, 1].astype(float)
    x = design_matrix(spins, bond_classes(ds.types, 2, 2), 6)
    assert np.abs(np.einsum("blcp,blc->blp", x, spins)).max() < 1e-6


THREE = {"types": ["A", "B", "C"], "length": [20, 30], "temperature": 0.2,
         "couplings": {1: {"AA": 1.0, "BB": 0.7, "CC": 0.5, "AB": 0.8, "AC": 0.6, "BC": 0.9},
                       2: {"AA": -0.4, "BB": -0.3, "CC": -0.35, "AB": -0.45, "AC": -0.3,
                           "BC": -0.4},
                       3: {"AA": 0.3, "BB": 0.25, "CC": 0.35, "AB": 0.3, "AC": 0.4, "BC": 0.2}}}


@pytest.fixture(scope="module")
def three_type_data(tmp_path_factory):
    cfg = make_config(THREE, sequences=800, snapshots=40, replicas=6, t_max=2.0, burn_in=300,
                      thinning=10, chunk_size=100)
    out = tmp_path_factory.mktemp("three") / "three.h5"
    return simulate_dataset(cfg, out, threads=2, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [score_matching, pseudo_likelihood])
def test_classical_estimators_recover_a_three_type_j1_j2_j3_chain(three_type_data, estimator):
    ds = read_dataset(three_type_data)
    theta, _ = estimator(ds, progress=False)
    truth = ds.config.system.parameter_vector()
    assert len(truth) == 18
    rel = np.abs(theta / ds.config.system.beta - truth) / np.abs(truth)
    assert rel.max() < 0.02, rel.round(4)


@pytest.mark.parametrize("method", ["score-matching", "pseudolikelihood"])
def test_classical_estimators_on_the_paper_system_cli(small_dataset, tmp_path, method):
    res = CliRunner().invoke(main, ["extract", "--data", str(small_dataset), "--out",
                                    str(tmp_path), "--method", method, "--quiet",
                                    "--bootstrap", "10"])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "extraction.json").read_text())
    assert result["parameters"] == ["J1_AA", "J1_BB", "J1_AB", "J2_AA", "J2_BB", "J2_AB"]
    assert result["units"] == "J" and result["cosine"] > 0.99  # 36 snapshots only


def test_extract_bad_inputs(small_dataset, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["extract", "--data", str(small_dataset), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "needs --checkpoint" in res.output
    res = runner.invoke(main, ["extract", "--data", str(small_dataset), "--out", str(tmp_path),
                               "--checkpoint", str(tmp_path / "none.pt")])
    assert res.exit_code == 2 and "no such checkpoint" in res.output


def _untrained_checkpoint(path, config_yaml: str, config, **meta_change):
    """A checkpoint of an untrained model of `config` (with a nonzero W head), storing
    `config_yaml`."""
    import torch

    from spinscore.checkpoints import build_model, save_checkpoint

    meta = {"types": ["A", "B"], "max_range": 2, "max_length": 64, "beta": 20.0,
            "output_scale": 20.0, **meta_change}
    torch.manual_seed(0)
    model = build_model(config.model, meta)
    torch.nn.init.normal_(model.head[-1].weight, std=0.1)  # a nonzero field to read
    save_checkpoint(path, {"model": model.state_dict(), "ema": model.state_dict(),
                           "config": config_yaml, "meta": meta, "step": 0})
    return path


@pytest.mark.parametrize("meta_change, expected", [
    ({"types": ["A", "C"]}, "site types ['A', 'B'] do not match the checkpoint's ['A', 'C']"),
    ({"max_range": 3}, "interaction range 2 does not match the checkpoint's 3"),
])
def test_extract_refuses_a_checkpoint_of_another_system(small_dataset, tmp_path, meta_change,
                                                        expected):
    config = read_dataset(small_dataset).config
    _untrained_checkpoint(tmp_path / "other.pt", config.to_yaml(), config, **meta_change)
    res = CliRunner().invoke(main, ["extract", "--data", str(small_dataset), "--out",
                                    str(tmp_path / "x"), "--checkpoint", str(tmp_path / "other.pt")])
    assert res.exit_code == 2 and expected in res.output, res.output
    assert not (tmp_path / "x" / "extraction.json").exists()


def test_coupling_ratios_are_to_j1_aa_or_the_first_nonzero_true_coupling():
    from spinscore.analysis.inversion import coupling_metrics

    truth = np.array([-1.0, -0.5, 0.3])
    m = coupling_metrics(2 * truth + np.array([0.0, 0.02, 0.0]), truth)
    assert m["ratio_reference"] == 0
    np.testing.assert_allclose(m["ratio_truth"], [1.0, 0.5, -0.3])
    assert m["worst_ratio_error"] == pytest.approx(0.01)
    zero_first = np.array([0.0, -0.5, 0.3])  # J1_AA = 0: ratios to J1_AB
    m = coupling_metrics(np.array([0.01, -1.0, 0.6]), zero_first)
    assert m["ratio_reference"] == 1 and np.all(np.isfinite(m["ratio_estimate"]))
    np.testing.assert_allclose(m["ratio_truth"], [0.0, 1.0, -0.6])
    assert m["worst_ratio_error"] == pytest.approx(0.01)


def test_extract_reads_the_network_at_the_times_of_the_checkpoints_config(small_dataset,
                                                                          tmp_path):
    """Without --t-eval / --t-extrapolate, `extract` reads at the run config's analysis times
    (what `reproduce` used), not at the smallest training time."""
    config = read_dataset(small_dataset).config
    config = config.model_copy(update={"analysis": config.analysis.model_copy(
        update={"t_eval": 0.003, "t_extrapolate": (0.003, 0.006, 0.012)})})
    _untrained_checkpoint(tmp_path / "c.pt", config.to_yaml(), config)
    args = ["extract", "--data", str(small_dataset), "--checkpoint", str(tmp_path / "c.pt"),
            "--bootstrap", "0", "--quiet", "--out"]
    res = CliRunner().invoke(main, [*args, str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "x" / "extraction.json").read_text())
    assert result["t_eval"] == 0.003 and result["extrapolated"]["times"] == [0.003, 0.006, 0.012]
    res = CliRunner().invoke(main, [*args, str(tmp_path / "y"), "--t-eval", "0.002",
                                    "--t-extrapolate", "0.002,0.004"])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "y" / "extraction.json").read_text())
    assert result["t_eval"] == 0.002 and result["extrapolated"]["times"] == [0.002, 0.004]


def test_a_checkpoint_with_bad_stored_readout_times_is_one_clear_error(small_dataset, tmp_path):
    import yaml

    from conftest import assert_clean_error, run

    config = read_dataset(small_dataset).config
    raw = yaml.safe_load(config.to_yaml())
    raw["analysis"]["t_extrapolate"] = [0.001]
    _untrained_checkpoint(tmp_path / "c.pt", yaml.safe_dump(raw), config)
    code, out = run(["extract", "--data", str(small_dataset), "--checkpoint",
                     str(tmp_path / "c.pt"), "--out", str(tmp_path / "x"), "--quiet"])
    assert_clean_error(code, out, "c.pt (stored config): analysis", "at least two distinct positive times")


def test_neighbour_sums_of_a_basis_longer_than_the_chain():
    """A range past the chain's length has no bond (it crashed): the sums are those of the
    ranges that fit, zero for the others."""
    from spinscore.physics.hamiltonian import bond_classes

    types = np.array([[0, 1, 0]])
    spins = np.random.default_rng(0).standard_normal((1, 3, 3))
    fits = neighbour_sums(spins, bond_classes(types, 2, 2), 6)
    long = neighbour_sums(spins, bond_classes(types, 2, 5), 15)
    np.testing.assert_array_equal(long[..., :6, :], fits)
    assert not long[..., 6:, :].any()
