"""REMC mixing audit: the aligned overlap q and its use on simulated data sets."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import PAPER_SYSTEM, make_config, run
from spinscore.analysis.mixing import (
    aligned_overlap,
    bootstrap_mean_ci,
    mixing_audit,
    simulate_sequences,
)
from spinscore.io import Dataset, read_dataset
from spinscore.sampling.simulate import simulate_dataset


def unit_spins(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.standard_normal((*shape, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_orthogonal(rng: np.random.Generator, proper: bool) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


@pytest.mark.parametrize("proper", [True, False])
def test_overlap_with_itself_rotated_is_one(proper):
    rng = np.random.default_rng(11)
    a = unit_spins(rng, (5, 37))
    rot = np.stack([random_orthogonal(rng, proper) for _ in range(5)])
    assert np.allclose(np.linalg.det(rot), 1.0 if proper else -1.0)
    b = np.einsum("kij,knj->kni", rot, a)
    np.testing.assert_allclose(aligned_overlap(a, b), 1.0, atol=1e-12)
    np.testing.assert_allclose(aligned_overlap(b, a), 1.0, atol=1e-12)


def test_padding_is_ignored():
    rng = np.random.default_rng(3)
    a, b = unit_spins(rng, (2, 4, 20)), unit_spins(rng, (2, 4, 20))
    length = np.array([[13], [20]])
    padded_b = b.copy()
    padded_b[0, :, 13:] = rng.standard_normal((4, 7, 3))  # garbage beyond the length
    q = aligned_overlap(a, padded_b, length)
    np.testing.assert_allclose(q[0], aligned_overlap(a[0, :, :13], b[0, :, :13]), atol=1e-14)
    np.testing.assert_allclose(q[1], aligned_overlap(a[1], b[1]), atol=1e-14)


def test_two_independent_spins_overlap_eight_ninths():
    """N = 2: M = [(a1+a2)(b1+b2)^T + (a1-a2)(b1-b2)^T] / 2 is already an SVD, so
    q = cos(alpha/2)cos(beta/2) + sin(alpha/2)sin(beta/2), alpha, beta the pair angles, and
    E q = E[cos(alpha/2)]^2 + E[sin(alpha/2)]^2 = (2/3)^2 + (2/3)^2 = 8/9 exactly."""
    rng = np.random.default_rng(5)
    q = aligned_overlap(unit_spins(rng, (200_000, 2)), unit_spins(rng, (200_000, 2)))
    se = q.std() / np.sqrt(q.size)
    assert abs(q.mean() - 8 / 9) < 4 * se, (q.mean(), se)


def test_many_independent_spins_follow_the_gaussian_limit():
    """Large N: M -> sqrt(N/9) G with G a 3 x 3 standard Gaussian matrix (CLT), so
    E q -> E||G||_* / (3 sqrt(N)); E||G||_* by an independent Monte Carlo of Gaussian matrices."""
    n_sites, n = 100, 10_000
    rng = np.random.default_rng(6)
    x = aligned_overlap(unit_spins(rng, (n, n_sites)), unit_spins(rng, (n, n_sites)))
    x = 3 * np.sqrt(n_sites) * x
    g = np.random.default_rng(7).standard_normal((1_000_000, 3, 3))
    nuc = np.linalg.svd(g, compute_uv=False).sum(axis=-1)
    se = np.hypot(x.std() / np.sqrt(n), nuc.std() / np.sqrt(nuc.size))
    assert abs(x.mean() - nuc.mean()) < 4 * se, (x.mean(), nuc.mean(), se)


def test_bootstrap_interval_covers_the_mean_with_the_right_width():
    values = np.random.default_rng(8).normal(2.0, 1.0, size=(4000, 2))
    mean, lo, hi = bootstrap_mean_ci(values, n_boot=2000, seed=1)
    np.testing.assert_allclose(mean, values.mean(axis=0))
    assert np.all((lo < mean) & (mean < hi))
    np.testing.assert_allclose(hi - lo, 2 * 1.96 / np.sqrt(4000), rtol=0.1)


def test_same_seed_reproduces_the_data_set(small_dataset):
    """The baseline re-simulation uses the data set's schedule: with its own seed it gives back
    its snapshots exactly (float32 storage)."""
    ds = read_dataset(small_dataset)
    again = simulate_sequences(ds.config, ds.types, ds.length, ds.config.simulation.seed,
                               ds.temperatures, threads=2)
    np.testing.assert_array_equal(again.astype(np.float32), ds.spins)


def _simulate(tmp_path, name: str, temperature: float, **sim) -> Dataset:
    system = copy.deepcopy(PAPER_SYSTEM)
    system["temperature"] = temperature
    system["length"] = [30, 30]
    out = tmp_path / f"{name}.h5"
    simulate_dataset(make_config(system, sim), out, threads=1, progress=False)
    return read_dataset(out)


def _se(ci: list[float]) -> float:
    """Standard error from a 95% interval."""
    return (ci[1] - ci[0]) / (2 * 1.96)


def test_near_free_chains_are_decorrelated_at_the_random_overlap(tmp_path):
    """T = 100 (beta J <= 0.01): snapshots 20 sweeps apart, and independent runs, overlap like
    independent uniform spins, whose q for N = 30 comes from an independent Monte Carlo.
    Tolerances 3.5 standard errors (several comparisons; the fixed seeds make it deterministic)."""
    ds = _simulate(tmp_path, "hot", 100.0, sequences=60, snapshots=4, replicas=1, burn_in=20,
                   thinning=20)
    r = mixing_audit(ds, max_sequences=60, threads=1)
    rng = np.random.default_rng(9)
    q_free = aligned_overlap(unit_spins(rng, (200_000, 30)), unit_spins(rng, (200_000, 30)))
    q_free = q_free.mean()  # standard error 1e-4, negligible here
    base = r["baseline"]
    assert abs(base["mean"] - q_free) < 3.5 * _se(base["ci95"]), (base, q_free)
    for q, ci in zip(r["q_mean"], r["q_ci95"], strict=True):
        assert abs(q - q_free) < 3.5 * _se(ci), (q, ci, q_free)
    diff = r["lag1_minus_baseline"]
    assert abs(diff["mean"]) < 3.5 * _se(diff["ci95"]), diff


def test_cold_chains_one_sweep_apart_are_flagged(tmp_path):
    """T = 0.05 and one sweep between snapshots: the sampler remembers, the audit must say so."""
    ds = _simulate(tmp_path, "cold", 0.05, sequences=30, snapshots=4, replicas=1, burn_in=50,
                   thinning=1)
    r = mixing_audit(ds, max_sequences=30, threads=1)
    assert not r["decorrelated"] and not r["lag1_within_baseline_ci"], r
    assert r["q_ci95"][0][0] > r["baseline"]["ci95"][1], r  # lag 1 well above the baseline
    assert r["q_mean"][0] > r["q_mean"][-1], r  # memory fades with the lag
    assert 0.0 < r["baseline"]["mean"] < 1.0


def test_cli_writes_mixing_json_and_png(tmp_path, small_dataset):
    code, output = run(["inspect", str(small_dataset), "--mixing", "--mixing-sequences", "4",
                        "--threads", "1", "--plots", str(tmp_path / "plots")])
    assert code == 0, output
    assert "independent runs" in output and "lag  1" in output
    result = json.loads((tmp_path / "plots" / "mixing.json").read_text())
    assert result["lags"] == [1, 2] and result["baseline"]["sequences"] == 4
    assert all(0 < q <= 1 for q in result["q_mean"])
    png = (tmp_path / "plots" / "mixing.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_cli_mixing_errors_are_one_line(small_dataset):
    from conftest import assert_clean_error

    code, output = run(["inspect", str(small_dataset), "--mixing", "--mixing-sequences", "0"])
    assert_clean_error(code, output, "--mixing-sequences")
