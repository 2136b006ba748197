"""The trust flag (issue 14): the force error against the truth, the pool, its AUCs, and the
ood command's trust section."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_ood import OracleModel

from score_oracles import BoltzmannScore
from spinscore.analysis.trust import (
    FLAGS,
    IN,
    force_errors,
    subsample,
    trust_summary,
    uniform_like,
)
from spinscore.cli import main
from spinscore.io import read_dataset
from spinscore.physics.hamiltonian import bond_couplings, tangent_force


def test_force_error_of_the_exact_field_and_of_a_missing_j3(small_dataset, j3_dataset):
    """The oracle of the training Hamiltonian has e = 0 on its own data (to float32); on the
    J3 chains its error is |F_12 - F_123| / |F_123|, computed here chain by chain."""
    ds, ds_j3 = read_dataset(small_dataset), read_dataset(j3_dataset)
    system = ds.config.system
    model = OracleModel(system, max_length=60)
    e_in = force_errors(model, ds, system.beta, 1e-4)
    assert e_in.shape == (ds.n_sequences, ds.n_snapshots)
    assert e_in.max() < 1e-5
    e_j3 = force_errors(model, ds_j3, system.beta, 1e-4)
    for k in (0, ds_j3.n_sequences - 1):
        n = ds_j3.length[k]
        x, ty = ds_j3.spins[k, :, :n].astype(np.float64), ds_j3.types[k, :n][None]
        f12 = tangent_force(x, bond_couplings(ty, system.coupling_table()))
        f123 = tangent_force(x, bond_couplings(ty, ds_j3.config.system.coupling_table()))
        expected = (np.linalg.norm((f12 - f123).reshape(len(x), -1), axis=1)
                    / np.linalg.norm(f123.reshape(len(x), -1), axis=1))
        np.testing.assert_allclose(e_j3[k], expected, rtol=1e-4)
    assert e_j3.min() > 0.05


def test_subsample_and_uniform_spins(small_dataset):
    ds = read_dataset(small_dataset)
    sub = subsample(ds, 25, seed=3)
    assert (sub.n_sequences, sub.n_snapshots) == (25, 1)
    # every drawn configuration is one of the data set's, with its own sequence
    k = int(np.flatnonzero(sub.length == sub.length[0])[0])
    matches = [(s, m) for s in range(ds.n_sequences) for m in range(ds.n_snapshots)
               if np.array_equal(ds.spins[s, m], sub.spins[k, 0])]
    assert len(matches) == 1 and np.array_equal(ds.types[matches[0][0]], sub.types[k])
    uni = uniform_like(ds, seed=0)
    norms = np.linalg.norm(uni.spins, axis=-1)
    np.testing.assert_allclose(norms[np.broadcast_to(ds.valid[:, None], norms.shape)], 1.0,
                               atol=1e-6)
    assert (norms[np.broadcast_to(~ds.valid[:, None], norms.shape)] == 0).all()
    # uniform on the sphere: each component has mean 0 and variance 1/3
    z = uni.spins[..., 2][np.broadcast_to(ds.valid[:, None], norms.shape)]
    assert abs(z.mean()) < 4 * np.sqrt(1 / 3 / z.size)
    assert abs((z**2).mean() - 1 / 3) < 4 * np.sqrt(4 / 45 / z.size)


def test_trust_summary_auc_and_threshold():
    """A flag equal to the error ranks every unreliable configuration first (AUC 1); its
    negative, last (AUC 0); a flag independent of the error sits near 1/2."""
    rng = np.random.default_rng(0)
    pool = {}
    for name, scale in ((IN, 1.0), ("hot", 3.0), ("uniform", 10.0)):
        error = scale * rng.lognormal(size=200)
        pool[name] = {"explained_variance": error, "configurational_temperature": -error,
                      "log_likelihood": rng.normal(size=200), "error": error}
    summary = trust_summary(pool)
    assert summary["threshold"] == pytest.approx(2 * np.median(pool[IN]["error"]))
    bad = np.concatenate([v["error"] for v in pool.values()]) > summary["threshold"]
    assert summary["unreliable"] == bad.sum() and summary["pool"] == 600
    auc = summary["auc_unreliable"]
    assert auc["explained_variance"] == 1.0 and auc["configurational_temperature"] == 0.0
    assert abs(auc["log_likelihood"] - 0.5) < 4 * np.sqrt(1 / (12 * bad.sum()))
    assert summary["best_flag"] in ("explained_variance", "combined")
    assert summary["sets"]["uniform"]["drift_auc"]["explained_variance"] > 0.95
    assert set(summary["sets"]["hot"]["drift_auc"]) == {*FLAGS, "combined"}
    calm = {name: {**v, "error": np.ones(200)} for name, v in pool.items()}  # none unreliable
    summary = trust_summary(calm)  # crashed: no AUC to rank the flags by
    assert summary["unreliable"] == 0 and summary["best_flag"] is None
    assert all(v is None for v in summary["auc_unreliable"].values())


class DifferentiableOracle(BoltzmannScore):
    """beta F as couplings (the OOD flags) and as a differentiable score (the likelihood)."""

    def __init__(self, system):
        super().__init__(system)
        self.max_length = 60
        self.couplings = OracleModel(system).couplings


def test_ood_command_writes_the_trust_pool(small_dataset, j3_dataset, tmp_path, monkeypatch):
    ds = read_dataset(small_dataset)
    model = DifferentiableOracle(ds.config.system)
    meta = {"types": list(ds.config.system.types), "max_range": 2, "trained_t": [1e-3, 5.0],
            "beta": ds.config.system.beta}
    monkeypatch.setattr("spinscore.checkpoints.load_model",
                        lambda path, ema=True: (model, ds.config, meta))
    res = CliRunner().invoke(main, [
        "ood", "--checkpoint", "x.pt", "--data", str(small_dataset), "--ood",
        f"j3={j3_dataset}", "--out", str(tmp_path), "--trust-configurations", "8",
        "--early-checkpoint", "early.pt", "--quiet"])
    assert res.exit_code == 0, res.output
    trust = json.loads((tmp_path / "ood.json").read_text())["trust"]
    assert set(trust["sets"]) == {IN, "j3", "uniform", "under_trained"}
    assert trust["pool"] == 32 and trust["settings"]["configurations"] == 8
    # the oracle is exact on its own data and wrong on the J3 chains and nowhere else
    assert trust["sets"][IN]["error_median"] < 1e-5
    assert trust["sets"]["j3"]["unreliable_fraction"] == 1.0
    assert trust["sets"]["under_trained"]["error_median"] < 1e-5  # here the oracle again
    assert (tmp_path / "trust.png").stat().st_size > 10_000
    res = CliRunner().invoke(main, [
        "ood", "--checkpoint", "x.pt", "--data", str(small_dataset), "--ood",
        f"j3={j3_dataset}", "--out", str(tmp_path), "--trust-configurations", "3"])
    assert res.exit_code == 2 and "configurations" in res.output
