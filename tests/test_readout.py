"""Direct-W readout, identifiability audit and extrapolation to t = 0, against exact values."""

import numpy as np
import pytest
import torch

from conftest import assert_clean_error, run
from score_oracles import AttenuatedCouplings
from spinscore.analysis.batches import CouplingsMemo
from spinscore.analysis.extract import interaction_profile, network_readout
from spinscore.analysis.inversion import design_matrix
from spinscore.analysis.readout import extrapolate_to_zero, extrapolated_readout, identifiability
from spinscore.config import ModelConfig
from spinscore.io import Dataset, read_dataset
from spinscore.model import ScoreModel
from spinscore.physics.hamiltonian import bond_classes
from spinscore.systems import Lattice


def test_direct_w_of_the_oracle_is_exact(small_dataset):
    ds = read_dataset(small_dataset)
    oracle = AttenuatedCouplings(ds.config.system, np.zeros(6))
    _, direct = network_readout(oracle, ds, [1e-3], t_direct=1e-3, progress=False)
    m = direct.metrics(ds.config.system.beta)
    assert m["pearson"] == pytest.approx(1.0, abs=1e-6)  # float32 spins in the pass
    assert m["a_star_over_beta"] == pytest.approx(1.0, abs=1e-6)
    for key in ("class_ratio_relative_rms", "pointwise_relative_rmse",
                "configuration_relative_rms"):
        assert m[key] < 1e-6, key
    assert m["support_share"] == pytest.approx(1.0, abs=1e-12)
    # each bond of each snapshot is one observation
    lengths = ds.length.astype(int)
    assert m["n_observations"] == ds.n_snapshots * int(np.sum(2 * lengths - 3))


def test_direct_w_metrics_of_a_known_distortion(small_dataset):
    """W = a beta J with class c scaled by (1 + d_c): a* = a beta mean(1 + d_c), and the class
    ratio RMS is the RMS of (1 + d_c) / mean - 1 (computed independently here)."""
    ds = read_dataset(small_dataset)
    system = ds.config.system
    d = np.array([0.0, 0.1, -0.05, 0.2, 0.0, -0.1])
    model = AttenuatedCouplings(system, np.zeros(6))
    model.truth = model.truth * 0.7 * (1 + d)
    _, direct = network_readout(model, ds, [1e-3], t_direct=1e-3, progress=False)
    m = direct.metrics(system.beta)
    assert m["a_star_over_beta"] == pytest.approx(0.7 * np.mean(1 + d), rel=1e-6)
    expected = np.sqrt(np.mean(((1 + d) / np.mean(1 + d) - 1) ** 2))
    assert m["class_ratio_relative_rms"] == pytest.approx(expected, rel=1e-5)
    assert m["configuration_relative_rms"] < 1e-6  # W does not depend on the snapshot


@pytest.mark.parametrize("kappa", [np.zeros(6), np.array([35.0, 30.0, 34.0, 35.0, 29.0, 33.0])])
def test_extrapolation_is_exact_for_the_attenuation_law(small_dataset, kappa):
    ds = read_dataset(small_dataset)
    system = ds.config.system
    model = AttenuatedCouplings(system, kappa)
    times = [1e-3, 2e-3, 4e-3, 8e-3]
    eqs, _ = network_readout(model, ds, times, progress=False)
    c0, k_fit, r2 = extrapolated_readout(eqs, times)
    np.testing.assert_allclose(c0, system.beta * system.parameter_vector(), rtol=2e-6)
    np.testing.assert_allclose(k_fit, kappa, atol=2e-3)
    assert r2 == pytest.approx(1.0, abs=1e-9)


def test_extrapolation_of_a_law_it_does_not_model_is_not_exact():
    """c(t) = c0 exp(-kappa t) is not c0 / (1 + kappa t): the extrapolation misses c0 by the
    second-order term (so the exact recoveries above are not automatic)."""
    times = np.array([1e-3, 2e-3, 4e-3, 8e-3])
    est = 20.0 * np.exp(-60.0 * times)[:, None]
    c0, _ = extrapolate_to_zero(times, est)
    assert abs(c0[0] - 20.0) > 1e-3


def test_identifiability_matches_the_singular_values_of_the_design(small_dataset):
    ds = read_dataset(small_dataset)
    system = ds.config.system
    spins = ds.spins.astype(float)  # (S, K, L, 3)
    rows = []
    for s in range(ds.n_sequences):
        n = int(ds.length[s])
        types = ds.types[s, :n]
        x = design_matrix(spins[s, :, :n], bond_classes(types, 2, 2), 6)  # (K, n, 3, 6)
        rows.append(x.reshape(-1, 6))
    x = np.concatenate(rows)
    sv, vt = np.linalg.svd(x, full_matrices=False)[1:]
    audit = identifiability(x.T @ x, system.parameter_vector(), ds.n_sequences * ds.n_snapshots)
    assert audit["gram"]["condition_number"] == pytest.approx(sv[0] / sv[-1], rel=1e-8)
    weakest = vt[-1] / vt[-1, 0]
    np.testing.assert_allclose(audit["gram"]["weakest"], weakest, rtol=1e-6, atol=1e-9)
    xn = x / np.linalg.norm(x, axis=0)
    svn = np.linalg.svd(xn, compute_uv=False)
    assert audit["column_normalised"]["condition_number"] == pytest.approx(svn[0] / svn[-1],
                                                                           rel=1e-8)


def test_readout_outside_the_training_times_warns(tmp_path, small_dataset):
    from pathlib import Path

    published = Path(__file__).parent / "data" / "mini_af3_epoch_20.pt"
    code, out = run(["extract", "--data", str(small_dataset), "--checkpoint", str(published),
                     "--out", str(tmp_path / "x"), "--t-eval", "2.0", "--bootstrap", "0",
                     "--t-extrapolate", "none", "--quiet"])
    assert code == 0, out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "t = 2 outside the training times [0.0001, 1]" in warnings[0]
    code, out = run(["extract", "--data", str(small_dataset), "--checkpoint", str(published),
                     "--out", str(tmp_path / "y"), "--t-extrapolate", "0.001", "--quiet"])
    assert_clean_error(code, out, "--t-extrapolate", "at least two distinct positive times")
    code, out = run(["extract", "--data", str(small_dataset), "--checkpoint", str(published),
                     "--out", str(tmp_path / "z"), "--t-extrapolate", "2e-4,2e-4", "--quiet"])
    assert_clean_error(code, out, "--t-extrapolate", "two distinct positive times, got '2e-4,2e-4'")


def _counted_model(max_length: int):
    """An untrained score model with a random output head (W != 0), and its couplings calls."""
    torch.manual_seed(0)
    model = ScoreModel(ModelConfig(blocks=1), n_types=2, max_length=max_length,
                       output_scale=20.0).eval()
    torch.nn.init.normal_(model.head[-1].weight)
    calls = [0]
    couplings = model.couplings

    def counted(*args):
        calls[0] += 1
        return couplings(*args)
    model.couplings = counted
    return model, calls


def test_couplings_memo_runs_the_network_once_per_batch_and_time_and_changes_nothing(
        small_dataset):
    ds = read_dataset(small_dataset)
    model, calls = _counted_model(int(ds.length.max()))
    n_batches = -(-ds.n_sequences * ds.n_snapshots // 16)
    times = [1e-3, 2e-3]
    raw = [network_readout(model, ds, times, 1e-3, batch_size=16, progress=False),
           interaction_profile(model, ds, 1e-3, (1e-3, 2e-3), batch_size=16)]
    assert calls[0] == 5 * n_batches
    calls[0] = 0
    memo = CouplingsMemo(model)
    readout = network_readout(memo, ds, times, 1e-3, batch_size=16, progress=False)
    profile = interaction_profile(memo, ds, 1e-3, (1e-3, 2e-3), batch_size=16)
    assert calls[0] == 2 * n_batches  # the profile's three walks are all memo hits
    assert profile == raw[1]
    for a, b in zip(readout[0], raw[0][0], strict=True):
        np.testing.assert_array_equal(a.xty, b.xty)
    assert readout[1].metrics(20.0) == raw[0][1].metrics(20.0)


def test_couplings_memo_computes_what_it_may_not_keep(small_dataset):
    ds = read_dataset(small_dataset)
    model, calls = _counted_model(int(ds.length.max()))
    n = int(ds.length[:4].max())
    spins = torch.as_tensor(ds.spins[:4, 0, :n], dtype=torch.float32)
    types = torch.as_tensor(ds.types[:4, :n], dtype=torch.int64)
    t = torch.full((4,), 1e-3)
    full = CouplingsMemo(model, max_bytes=0)  # nothing kept
    with torch.no_grad():
        w = [full.couplings(spins, types, t) for _ in range(2)]
    assert calls[0] == 2 and torch.equal(w[0], w[1])
    memo = CouplingsMemo(model)
    with torch.no_grad():
        memo.couplings(spins, types, t)
        memo.couplings(spins, types, t * 2)  # another time: computed
        memo.couplings(spins, types, t)
    assert calls[0] == 4
    memo.couplings(spins, types, t)  # with gradients: never from the memo
    assert calls[0] == 5
    memo.set_system(model.system)  # a chain model keeps its system: the memo stays
    with torch.no_grad():
        memo.couplings(spins, types, t)
    assert calls[0] == 5


def test_couplings_memo_is_emptied_when_a_lattice_model_reads_another_lattice():
    lattice = [Lattice("square", (4, 4), "periodic", n_types=2, n_shells=1) for _ in range(2)]
    model = ScoreModel(ModelConfig(blocks=1), n_types=2, max_length=16, output_scale=20.0,
                       system=lattice[0]).eval()
    torch.nn.init.normal_(model.head[-1].weight)
    memo = CouplingsMemo(model)
    spins = torch.nn.functional.normalize(torch.randn(2, 16, 3), dim=-1)
    types, t = torch.zeros(2, 16, dtype=torch.int64), torch.full((2,), 1e-3)
    with torch.no_grad():
        memo.couplings(spins, types, t)
        assert len(memo._memo) == 1
        memo.set_system(lattice[1])
        assert len(memo._memo) == 0 and model.system is lattice[1]


def test_interaction_profile_reads_whole_sequences_not_the_shortest_chains(small_dataset):
    """Over `max_snapshots` it takes the first sequences (i.i.d. draws) with all their
    snapshots; cutting the length-sorted batches took the shortest chains, and a whole batch."""
    ds = read_dataset(small_dataset)
    model, _ = _counted_model(int(ds.length.max()))
    cut = interaction_profile(model, ds, 1e-3, max_snapshots=7, batch_size=128)
    head = interaction_profile(model, ds.head(2), 1e-3, batch_size=128)
    assert cut["snapshots"] == head["snapshots"] == 2 * ds.n_snapshots
    assert cut["mean_abs_w"] == head["mean_abs_w"]
    assert ds.head(2).length.tolist() == ds.length[:2].tolist()
    assert ds.head(99) is ds


def test_configuration_spread_is_undefined_with_one_snapshot_per_sequence(small_dataset):
    ds = read_dataset(small_dataset)
    model, _ = _counted_model(int(ds.length.max()))
    one = Dataset(ds.path, ds.config, {**ds.arrays, "spins": ds.spins[:, :1],
                                       "energy": ds.energy[:, :1]}, ds.attrs)
    beta = ds.config.system.beta
    spread = [network_readout(model, d, [1e-3], t_direct=1e-3, progress=False)[1]
              .metrics(beta)["configuration_relative_rms"] for d in (ds, one)]
    assert spread[0] > 1e-3 and spread[1] is None  # was ~1e-8: float rounding, not a spread
