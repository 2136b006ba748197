"""The OOD flag: explained variance on the local basis, ROC AUC, the `ood` command."""

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import PAPER_SYSTEM, make_config
from spinscore.analysis.ood import (
    config_explained_variance,
    configurational_temperature,
    empirical_p,
    explained_variance,
    roc_auc,
)
from spinscore.cli import main
from spinscore.errors import SpinscoreError
from spinscore.io import read_dataset
from spinscore.physics.hamiltonian import bond_couplings, tangent_force
from spinscore.sampling.simulate import simulate_dataset


class OracleModel(torch.nn.Module):
    """Stand-in for the score model: beta x the exact tangent force of a given system."""

    def __init__(self, system, max_length=128):
        super().__init__()
        self.table, self.beta, self.max_length = system.coupling_table(), system.beta, max_length

    def forward(self, spins, types, t):
        bonds = torch.as_tensor(bond_couplings(types.numpy(), self.table))
        return self.beta * tangent_force(spins.double(), bonds).float()

    def couplings(self, spins, types, t):
        """beta J_ij as a (B, N, N) matrix."""
        bonds = bond_couplings(types.numpy(), self.table)  # (B, K, N)
        w = np.zeros((*types.shape, types.shape[1]))
        for r in range(1, bonds.shape[1] + 1):
            idx = np.arange(types.shape[1] - r)
            w[:, idx, idx + r] = w[:, idx + r, idx] = bonds[:, r - 1, : types.shape[1] - r]
        return torch.as_tensor(self.beta * w, dtype=spins.dtype)


def test_explained_variance_of_exact_and_orthogonal_fields():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7, 3, 3))
    mask = np.ones((4, 7), bool)
    mask[1, 5:] = False
    y_in = np.einsum("blcp,p->blc", x, [1.0, -0.5, 2.0])
    np.testing.assert_allclose(config_explained_variance(y_in, x, mask), 1.0, atol=1e-12)
    # a field orthogonal to the span explains nothing; a mixture explains its share
    flat = x.reshape(4, 21, 3)
    q, _ = np.linalg.qr(flat * mask.repeat(3, 1)[..., None])
    noise = rng.standard_normal((4, 21)) * mask.repeat(3, 1)
    perp = noise - np.einsum("bnp,bp->bn", q, np.einsum("bnp,bn->bp", q, noise))
    y_perp = perp.reshape(4, 7, 3)
    np.testing.assert_allclose(config_explained_variance(y_perp, x, mask), 0.0, atol=1e-12)
    mix = y_in + y_perp
    m3 = mask[..., None]
    share = (y_in**2 * m3).sum((1, 2)) / (mix**2 * m3).sum((1, 2))
    np.testing.assert_allclose(config_explained_variance(mix, x, mask), share, rtol=1e-10)


def test_roc_auc_matches_pair_counting():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40), np.round(rng.normal(0.7, 1, size=30), 1)
    pairs = (b[:, None] > a[None, :]).mean() + 0.5 * (b[:, None] == a[None, :]).mean()
    assert roc_auc(a, b) == pytest.approx(pairs, rel=1e-12)
    assert roc_auc(a, a + 100) == 1.0 and roc_auc(a + 100, a) == 0.0


def test_oracle_flags_a_missing_j3_term(small_dataset, j3_dataset):
    """The exact force of the training Hamiltonian lies in the J1-J2 basis (EV = 1); the exact
    force of a chain with a J3 term does not, so an ideal model flags every such config."""
    ds_in, ds_j3 = read_dataset(small_dataset), read_dataset(j3_dataset)
    types, rng2 = ds_in.config.system.types, ds_in.config.system.max_range
    ev_in = explained_variance(OracleModel(ds_in.config.system), ds_in, types, rng2, 1e-4,
                               progress=False)
    ev_j3 = explained_variance(OracleModel(ds_j3.config.system), ds_j3, types, rng2, 1e-4,
                               progress=False)
    np.testing.assert_allclose(ev_in, 1.0, atol=1e-6)  # float32 model output
    assert ev_j3.max() < 1 - 1e-3
    assert roc_auc(1 - ev_in, 1 - ev_j3) == 1.0


@pytest.mark.parametrize("temperature", [0.05, 0.2])
def test_configurational_temperature_of_the_exact_field(temperature, tmp_path):
    """Stein identity: for the exact field of the training Hamiltonian (beta0 = 20) on
    configurations equilibrated at T, E sum|s|^2 = (beta0 T) E(-div s); theta ~ beta0 T."""
    system = {**copy.deepcopy(PAPER_SYSTEM), "temperature": temperature, "length": [20, 30]}
    cfg = make_config(system, sequences=40, snapshots=5, replicas=4, burn_in=200, thinning=20,
                      t_max=2.0)
    simulate_dataset(cfg, tmp_path / "d.h5", threads=2, progress=False)
    ds = read_dataset(tmp_path / "d.h5")
    train_system = make_config().system
    model = OracleModel(train_system)
    theta = configurational_temperature(model, ds, 1e-4).ravel()
    # the paired sums, to test the identity without the ratio's O(1/L) bias
    sq, div = [], []
    for k in range(ds.n_sequences):
        for m in range(ds.n_snapshots):
            n = ds.length[k]
            x = torch.as_tensor(ds.spins[k, m, :n][None], dtype=torch.float64)
            w = model.couplings(x, torch.as_tensor(ds.types[k, :n][None]), None)
            h = w @ x
            s = h - (h * x).sum(-1, keepdim=True) * x
            sq.append(float((s**2).sum()))
            div.append(float(2 * (h * x).sum()))
    ratio = train_system.beta * temperature
    d = np.asarray(sq) - ratio * np.asarray(div)
    assert abs(d.mean()) < 4 * d.std(ddof=1) / np.sqrt(len(d))
    assert abs(np.median(theta) / ratio - 1) < 0.1
    np.testing.assert_allclose(theta, np.asarray(sq) / np.asarray(div), rtol=1e-5)


def test_empirical_p():
    ref = np.arange(1.0, 100.0)
    assert empirical_p(ref, np.array([1000.0]))[0] == pytest.approx(1 / 100)
    assert empirical_p(ref, np.array([-1.0]))[0] == 1.0


def test_ood_command_and_errors(small_dataset, j3_dataset, tmp_path, monkeypatch):
    ds = read_dataset(small_dataset)
    model = OracleModel(ds.config.system, max_length=60)
    meta = {"types": list(ds.config.system.types), "max_range": 2, "trained_t": [1e-4, 5.0]}
    monkeypatch.setattr("spinscore.checkpoints.load_model",
                        lambda path: (model, ds.config, meta))
    runner = CliRunner()
    res = runner.invoke(main, ["ood", "--checkpoint", "x.pt", "--data", str(small_dataset),
                               "--ood", f"j3={j3_dataset}", "--out", str(tmp_path / "o"),
                               "--trust-configurations", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "ood.json").read_text())
    # the flag judges the model's force field, not the data: the exact J1-J2 force of the J3
    # configurations lies in the J1-J2 basis, so this "model" does not tell them apart
    assert summary["sets"]["in-distribution"]["ev_median"] == pytest.approx(1.0, abs=1e-6)
    assert summary["sets"]["j3"]["ev_median"] == pytest.approx(1.0, abs=1e-6)
    # the recorded AUC of the EV flag is P(flag_j3 > flag_in) + P(tie)/2 over all pairs of
    # configurations, counted here directly from the per-configuration EVs
    flag_in = 1 - explained_variance(model, ds, ds.config.system.types, 2, 1e-4, progress=False)
    flag_j3 = 1 - explained_variance(model, read_dataset(j3_dataset), ds.config.system.types, 2, 1e-4,
                                     progress=False)
    diff = np.ravel(flag_j3)[:, None] - np.ravel(flag_in)[None, :]
    pairs = np.mean(diff > 0) + 0.5 * np.mean(diff == 0)
    assert summary["sets"]["j3"]["auc_explained_variance"] == pytest.approx(pairs, abs=1e-12)
    assert (tmp_path / "o" / "ood.png").stat().st_size > 10_000
    res = runner.invoke(main, ["ood", "--checkpoint", "x.pt", "--data", str(small_dataset),
                               "--ood", "j3", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "expected NAME=PATH.h5" in res.output
    model.max_length = 30  # the chains are up to 50 long
    with pytest.raises(SpinscoreError, match="exceed the model's max_length 30"):
        explained_variance(model, ds, ds.config.system.types, 2, 1e-4, progress=False)
    with pytest.raises(SpinscoreError, match="site types"):
        explained_variance(model, ds, ("A", "C"), 2, 1e-4, progress=False)


def test_temperature_flag_ranks_an_uphill_field_last():
    """theta <= 0 (the learned field pushes uphill on average) is the least thermal of all:
    flag +inf, never NaN, and the AUC counts it above every finite flag."""
    from spinscore.analysis.ood import temperature_flag

    theta = np.array([1.0, np.e, 1 / np.e, 0.0, -2.0])
    np.testing.assert_array_equal(temperature_flag(theta), [0.0, 1.0, 1.0, np.inf, np.inf])
    assert roc_auc(temperature_flag(np.array([0.9, 1.1, 1.3])),
                   temperature_flag(np.array([-1.0, 5.0]))) == 1.0
