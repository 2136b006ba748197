"""Reverse sampling: with the exact score of a known distribution the samplers reproduce it;
the `sample` and `partition` commands refuse bad input with one clear line."""

from __future__ import annotations

import copy
import json

import h5py
import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from conftest import PAPER_SYSTEM, SMALL_SIMULATION, assert_clean_error, run
from score_oracles import BoltzmannScore, HeatKernelScore, random_directions
from spinscore.analysis.partition import calibrate
from spinscore.checkpoints import build_model, save_checkpoint
from spinscore.config import PartitionSettings, parse_config
from spinscore.diffusion.generate import log_time_grid, sample_chains
from spinscore.geometry.heat_kernel import heat_kernel_sample

T0, T_MIN, T_MAX = 0.05, 1e-3, 5.0  # prior error at T_MAX: KL 7e-5 per spin, invisible here


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: oversubscribed OpenMP threads on a shared 2-core machine are slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cos_to_mu(x: torch.Tensor, mu: torch.Tensor) -> np.ndarray:
    return (x * mu).sum(-1).reshape(-1).numpy()


@pytest.fixture(scope="module")
def reference():
    """40 000 exact draws of cos θ under K_{t0+t_min} (2 spins, independent)."""
    mu = random_directions(2, 3)
    x = heat_kernel_sample(mu.expand(20_000, 2, 3), T0 + T_MIN,
                           generator=torch.Generator().manual_seed(0))
    return mu, cos_to_mu(x, mu)


@pytest.mark.parametrize("method,steps,n", [("ode", None, 5000), ("ode", 40, 5000),
                                            ("sde", 400, 2500), ("pc", 100, 2500)])
def test_samples_follow_the_heat_kernel(reference, method, steps, n):
    """(d) the stand-in's exact score turns the uniform prior into K_{t0+t_min}(mu, ·): KS test
    of cos θ against exact draws and the mean of cos θ (= e^{-(t0+t_min)}) within 4 standard
    errors. Power, measured with the same sizes and seeds: a stand-in with t0 off by 10 %
    gives z = +9.5 / −8.1 (ODE) and +7.2 (SDE), KS p < 1e-9; 15 Heun steps z = 13, 50 SDE
    steps z = −3.5 (p = 0.005); the settings tested here give |z| ≤ 1.6, p ≥ 0.28."""
    mu, ref = reference
    model = HeatKernelScore(mu, T0)
    gen = torch.Generator().manual_seed(1)
    x = sample_chains(model, torch.zeros(2, dtype=torch.long), n, t_min=T_MIN, t_max=T_MAX,
                      method=method, steps=steps, generator=gen)
    assert x.shape == (n, 2, 3) and x.dtype == torch.float64
    assert torch.allclose(torch.linalg.vector_norm(x, dim=-1), torch.ones(n, 2, dtype=x.dtype))
    c = cos_to_mu(x, mu)
    assert ks_2samp(c, ref).pvalue > 0.01
    se = np.sqrt(c.var() / len(c) + ref.var() / len(ref))
    assert abs(c.mean() - ref.mean()) < 4 * se, (c.mean(), ref.mean(), se)


@pytest.mark.parametrize("method,steps", [("ode", None), ("sde", 300)])
def test_the_zero_time_step_reaches_the_data_density(method, steps):
    """With t_min = 0.005 (a tenth of t0) the chains follow K_{t0+t_min}: mean cos θ
    e^{-0.055}, 7 standard errors below the data's e^{-0.05}. With the zero-time step they must
    match the data K_{t0} (KS against exact draws, mean within 4 standard errors; the step's
    O(t_min²) bias is ~0.7 of one here) and miss it by more than 4 without it."""
    mu = random_directions(2, 4)
    data = cos_to_mu(heat_kernel_sample(mu.expand(10_000, 2, 3), T0,
                                        generator=torch.Generator().manual_seed(5)), mu)
    model = HeatKernelScore(mu, T0)
    z = {}
    for zero_time in (False, True):
        x = sample_chains(model, torch.zeros(2, dtype=torch.long), 2500, t_min=0.005,
                          t_max=T_MAX, method=method, steps=steps, zero_time=zero_time,
                          generator=torch.Generator().manual_seed(6))
        c = cos_to_mu(x, mu)
        z[zero_time] = (c.mean() - data.mean()) / np.sqrt(c.var() / len(c) + data.var() / len(data))
        if zero_time:
            assert ks_2samp(c, data).pvalue > 0.01
    assert abs(z[True]) < 4 and z[False] < -4, z


def test_langevin_corrector_alone_reaches_the_target(reference):
    """The corrector at a fixed t with the exact score of K_{t0+t}: from exact draws of the
    twice as broad K_{2 t0}, 400 Langevin steps (snr 0.1) reach K_{t0+t_min}; cos θ by KS and
    its mean within 4 standard errors (z = 0.45). Power, same sizes and seeds: the oracle's t0
    10 % off gives z = -5.5 (and the per-chain step rule, whose stationary law is p / eps(x),
    KS p = 0). PC with 100 steps (the parametrised test above): z = -1.4; t0 10 % off: -7.2."""
    from spinscore.diffusion.generate import langevin_corrector

    mu, ref = reference
    gen = torch.Generator().manual_seed(3)
    x = heat_kernel_sample(mu.expand(2500, 2, 3), 2 * T0, generator=gen)
    with torch.no_grad():
        x = langevin_corrector(HeatKernelScore(mu, T0), x, torch.zeros(2500, 2, dtype=torch.long),
                               T_MIN, 400, 0.1, gen)
    assert torch.allclose(torch.linalg.vector_norm(x, dim=-1), torch.ones(2500, 2, dtype=x.dtype))
    c = cos_to_mu(x, mu)
    assert ks_2samp(c, ref).pvalue > 0.01
    se = np.sqrt(c.var() / len(c) + ref.var() / len(ref))
    assert abs(c.mean() - ref.mean()) < 4 * se, (c.mean(), ref.mean(), se)


def test_sde_without_the_score_is_the_uniform_distribution():
    """A zero score leaves the reverse SDE a pure Brownian motion from the uniform law: the
    samples stay uniform (cos θ to any axis uniform on [-1, 1])."""

    class Zero(torch.nn.Module):
        def forward(self, spins, types, t):
            return torch.zeros_like(spins)

    x = sample_chains(Zero(), torch.zeros(3, dtype=torch.long), 2000, t_min=T_MIN, t_max=T_MAX,
                      method="sde", steps=20, generator=torch.Generator().manual_seed(2))
    assert ks_2samp(x[..., 2].reshape(-1).numpy(), np.linspace(-1, 1, 10_001)).pvalue > 0.01
    with pytest.raises(ValueError, match="denoise and zero_time"):  # two last steps, not one
        sample_chains(Zero(), torch.zeros(3, dtype=torch.long), 2, t_min=T_MIN, t_max=T_MAX,
                      denoise=True, zero_time=True)


def test_log_time_grid():
    t = log_time_grid(1e-3, 5.0, 10)
    assert t[0] == 5.0 and abs(t[-1] - 1e-3) < 1e-15 and np.all(np.diff(t) < 0)
    assert np.allclose(t[1:] / t[:-1], t[1] / t[0])


# --------------------------------------------------------------------------------------------
# Command-line error paths (an untrained tiny checkpoint: these checks need no trained model)
# --------------------------------------------------------------------------------------------
TINY = dict(single_dim=8, pair_dim=4, blocks=1, heads=2, transition=1, max_distance=4)


def tiny_checkpoint(path, types=("A", "B"), max_length=24):
    system = copy.deepcopy(PAPER_SYSTEM)
    if types != ("A", "B"):
        system = {**system, "types": list(types),
                  "couplings": {1: {a + b: 1.0 for i, a in enumerate(types) for b in types[i:]}}}
    config = parse_config({"system": system, "simulation": SMALL_SIMULATION, "model": TINY})
    meta = {"types": list(types), "max_range": config.system.max_range, "max_length": max_length,
            "beta": config.system.beta, "output_scale": config.system.beta}
    model = build_model(config.model, meta)
    save_checkpoint(path, {"model": model.state_dict(), "ema": model.state_dict(),
                           "config": config.to_yaml(), "meta": meta, "step": 0})
    return path


@pytest.mark.parametrize("sequence,expected", [
    ("ABXAB", "unknown site type 'X' at position 2"),
    ("AB", "too short for interaction range 2"),
    ("AB" * 13, "26 sites exceed the model's max_length 24"),
])
def test_sample_rejects_bad_sequences(tmp_path, sequence, expected):
    ckpt = tiny_checkpoint(tmp_path / "ckpt.pt")
    out = tmp_path / "gen.h5"
    code, output = run(["sample", "--checkpoint", str(ckpt), "--sequence", sequence, "--out",
                        str(out), "--quiet"])
    assert_clean_error(code, output, expected)
    assert not out.exists()


def test_sample_rejects_bad_numbers_and_missing_checkpoint(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt.pt")
    base = ["sample", "--checkpoint", str(ckpt), "--sequence", "ABBA", "--out",
            str(tmp_path / "g.h5"), "--quiet"]
    assert_clean_error(*run([*base, "--n", "0"]), "--n")
    assert_clean_error(*run([*base, "--steps", "0"]), "--steps")
    code, output = run(["sample", "--checkpoint", str(tmp_path / "none.pt"), "--sequence", "ABBA",
                        "--out", str(tmp_path / "g.h5")])
    assert_clean_error(code, output, "no such checkpoint")


def test_sample_writes_chains_energies_and_comparison(tmp_path):
    """The happy path end to end, tiny: HDF5 (spins, types, energies), PNG and JSON, into a
    directory that does not exist yet (created before the work, not found missing after it)."""
    ckpt = tiny_checkpoint(tmp_path / "ckpt.pt")
    out = tmp_path / "new" / "dir" / "gen.h5"
    code, output = run(["sample", "--checkpoint", str(ckpt), "--sequence", "ABBAB", "--n", "6",
                        "--out", str(out), "--method", "sde", "--steps", "5",
                        "--reference-snapshots", "4", "--quiet"])
    assert code == 0, output
    with h5py.File(out) as f:
        assert f["spins"].shape == (6, 5, 3) and list(f["types"][()]) == [0, 1, 1, 0, 1]
        assert f["energy"].shape == (6,) and f.attrs["sequence"] == "ABBAB"
        spins, energies = f["spins"][()].astype(float), f["energy"][()]
    # energies from the one definition of H: J1 and J2 bonds of the paper system
    j1 = {frozenset("A"): 1.0, frozenset("B"): 0.5, frozenset("AB"): 0.8}
    j2 = {frozenset("A"): -0.45, frozenset("B"): -0.25, frozenset("AB"): -0.35}
    seq = "ABBAB"
    e = -sum(j1[frozenset(seq[i] + seq[i + 1])] * (spins[:, i] * spins[:, i + 1]).sum(-1)
             for i in range(4))
    e -= sum(j2[frozenset(seq[i] + seq[i + 2])] * (spins[:, i] * spins[:, i + 2]).sum(-1)
             for i in range(3))
    assert np.allclose(energies, e)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["n_generated"] == 6 and summary["n_reference"] == 4
    assert summary["mean_generated"] == pytest.approx(energies.mean(), rel=1e-12)
    assert out.with_suffix(".png").stat().st_size > 0
    code, output = run(["sample", "--checkpoint", str(ckpt), "--sequence", "ABBAB", "--n", "3",
                        "--out", str(out), "--method", "pc", "--steps", "4", "--snr", "0.2",
                        "--corrector-steps", "2", "--reference-snapshots", "4", "--quiet",
                        "--overwrite"])  # the same OUT again
    assert code == 0, output
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["generation"] == {"method": "pc", "steps": 4, "predictor": "sde",
                                     "corrector_steps": 2, "snr": 0.2,
                                     "final_corrector_steps": 0, "corrector_max_step": 0.01,
                                     "zero_time": True}
    assert_clean_error(*run(["sample", "--checkpoint", str(ckpt), "--sequence", "ABBAB", "--out",
                             str(out), "--method", "pc", "--snr", "-1"]), "--snr")


def test_energy_comparison_against_values_known_by_construction():
    """A sample shifted by d: Wasserstein distance |d|, mean difference d; KS statistic of two
    disjoint samples 1, of a sample with itself 0."""
    from spinscore.diffusion.generate import energy_comparison

    ref = np.random.default_rng(0).normal(size=400)
    c = energy_comparison(ref + 0.3, ref)
    assert c["wasserstein"] == pytest.approx(0.3, abs=1e-12)
    assert c["mean_difference"] == pytest.approx(0.3, abs=1e-12)
    assert energy_comparison(ref, ref)["ks_statistic"] == 0.0
    assert energy_comparison(ref + 100.0, ref)["ks_statistic"] == 1.0


def test_partition_rejects_bad_input(tmp_path, small_dataset):
    ckpt = tiny_checkpoint(tmp_path / "ckpt.pt")
    base = ["partition", "--checkpoint", str(ckpt), "--data", str(small_dataset), "--out",
            str(tmp_path / "p"), "--quiet"]
    assert_clean_error(*run([*base, "--sequence-index", "99"]), "out of range", "12 sequences")
    assert_clean_error(*run([*base, "--per-temperature", "1"]), "--per-temperature")
    assert_clean_error(*run([*base, "--per-temperature", "2"]),
                       "the fit of alpha needs at least 3 configurations, got 2 x 1")
    other = tiny_checkpoint(tmp_path / "abc.pt", types=("A", "B", "C"))
    code, output = run(["partition", "--checkpoint", str(other), "--data", str(small_dataset),
                        "--out", str(tmp_path / "p"), "--quiet"])
    assert_clean_error(code, output, "site types ['A', 'B']", "['A', 'B', 'C']")
    short = tiny_checkpoint(tmp_path / "short.pt", max_length=10)
    code, output = run(["partition", "--checkpoint", str(short), "--data", str(small_dataset),
                        "--out", str(tmp_path / "p"), "--quiet"])
    assert_clean_error(code, output, "max_length 10")
    assert not (tmp_path / "p" / "partition.json").exists()


def test_calibration_recovers_alpha_and_plateau():
    rng = np.random.default_rng(0)
    beta_e = rng.uniform(-220, -180, 200)
    log_p = -250.0 - 0.8 * beta_e + rng.normal(0, 0.1, 200)
    low = np.zeros(200, bool)
    low[:50] = True
    fit = calibrate(log_p, beta_e, low)
    assert abs(fit["alpha"] - 0.8) < 3 * fit["alpha_err"] and fit["alpha_err"] < 0.01
    # the plateau is the intercept (least squares with a constant term): its error is the
    # slope's error times |βE| ≈ 200, plus the mean noise
    assert abs(fit["plateau"] - fit["intercept"]) < 1e-9
    assert abs(fit["plateau"] + 250.0) < 4 * (200 * fit["alpha_err"] + 0.1 / np.sqrt(50))
    assert abs(fit["plateau_std"] - 0.1) < 0.03
    assert np.allclose(fit["invariant"], log_p + fit["alpha"] * beta_e)


def test_reverse_importance_recovers_ln_z_where_the_mean_plateau_is_biased():
    """10 spins in a field h at β (κ = βh = 8), drawn exactly; the "model" is the normalised
    Boltzmann density at 0.9 κ, log-density errors of ~1 nat. The reverse importance estimate
    must hit the exact ln Z(β) = N ln(4π sinh κ / κ) within 4 bootstrap errors; the mean of
    log p + βE misses −ln Z by the KL divergence, more than 4 of those errors."""
    from spinscore.analysis.partition import reverse_importance_log_z

    n_spins, kappa, model_kappa, n = 10, 8.0, 7.2, 2000
    rng = np.random.default_rng(4)
    u = rng.uniform(size=(n, n_spins))
    cos = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa  # exact draws of cos θ
    beta_energy = -kappa * cos.sum(1)
    log_z = lambda k: n_spins * np.log(4 * np.pi * np.sinh(k) / k)  # noqa: E731
    log_p = model_kappa * cos.sum(1) - log_z(model_kappa)
    r = reverse_importance_log_z(log_p, beta_energy, seed=1)
    assert r["n"] == n and 1 < r["ess"] < n
    assert abs(r["log_z"] - log_z(kappa)) < 4 * r["log_z_err"], (r, log_z(kappa))
    biased = -np.mean(log_p + beta_energy)
    assert biased - log_z(kappa) > 4 * r["log_z_err"]


def test_log_mean_exp_plateau_reaches_ln_z_of_a_noisy_calibrated_model():
    """10 spins in a field at κ = 8, drawn exactly; the model is exp(−αβE)/Z(αβ), α = 0.9, with
    an error δ ~ N(−σ²/2, σ²) per configuration (σ = 1.5 nats: normalised, E[e^δ] = 1). The fit
    and the log-mean-exp plateau (the partition stage's plateau_lme) must give −ln Z(α̂κ) within
    4 bootstrap errors; the mean plateau misses it by ≈ σ²/2, more than 4 of those errors."""
    from spinscore.analysis.partition import calibrate, reverse_importance_log_z

    n_spins, kappa, alpha, sigma, n = 10, 8.0, 0.9, 1.5, 20000
    rng = np.random.default_rng(7)
    u = rng.uniform(size=(n, n_spins))
    cos = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa
    beta_energy = -kappa * cos.sum(1)
    log_z = lambda k: n_spins * np.log(4 * np.pi * np.sinh(k) / k)  # noqa: E731
    delta = rng.normal(-sigma**2 / 2, sigma, n)
    log_p = alpha * kappa * cos.sum(1) - log_z(alpha * kappa) + delta
    fit = calibrate(log_p, beta_energy, np.ones(n, bool))
    assert abs(fit["alpha"] - alpha) < 4 * fit["alpha_err"]
    lme = reverse_importance_log_z(log_p, fit["alpha"] * beta_energy, seed=2)
    target = -log_z(fit["alpha"] * kappa)
    assert abs(-lme["log_z"] - target) < 4 * lme["log_z_err"], (lme, target)
    assert target - fit["plateau"] > 4 * lme["log_z_err"]


def test_partition_end_to_end_with_a_boltzmann_stand_in(tmp_path, small_dataset, monkeypatch):
    """The partition stage with the checkpoint's network replaced by β F (BoltzmannScore): REMC per
    ladder temperature, exact log p, the fit, TI (small settings), JSON and PNG."""
    from spinscore import checkpoints as checkpoint
    from spinscore import stages
    from spinscore.io import read_dataset

    ckpt = tiny_checkpoint(tmp_path / "ckpt.pt", max_length=64)
    ds = read_dataset(small_dataset, fields=("types", "length"))
    index = int(np.argmin(ds.length))  # the shortest chain: the cheapest exact divergence
    real_load = checkpoint.load_model

    def load_with_oracle(path):
        _, config, meta = real_load(path)
        return BoltzmannScore(config.system).double(), config, meta

    monkeypatch.setattr(checkpoint, "load_model", load_with_oracle)
    out = tmp_path / "part"
    settings = PartitionSettings(per_temperature=4, seed=3, tolerance=1e-3, fit_temperatures=2,
                                 ti_points=5, ti_runs=2, ti_sweeps=20, fit_snapshots=3)
    result = stages.partition(ckpt, small_dataset, index, out, settings, threads=1)
    assert result["length"] == ds.length[index] and result["n_configurations"] == 4 * 4 + 3
    assert result["alpha"] > 0 and np.isfinite(result["log_z_ti"])
    assert result["gap"] == pytest.approx(result["plateau"] + result["log_z_ti"])
    saved = json.loads((out / "partition.json").read_text())
    points = saved["points"]
    # fit_snapshots more at the data temperature, fitted with the coldest two temperatures
    assert len(points["energy"]) == 19 and sum(points["low"]) == 11 and result["n_fit"] == 11
    assert np.allclose(points["temperature"][16:], 0.05) and all(points["low"][16:])
    # the temperatures come from the ladder, coldest last; hotter runs have higher energies
    temps = np.asarray(points["temperature"][:16])
    assert np.isclose(temps.min(), 0.05) and np.all(np.diff(temps[::4]) < 0)
    energy = np.asarray(points["energy"][:16]).reshape(4, 4).mean(1)
    assert energy[0] > energy[-1]
    # log p is log p_0 by the zero-time step; the analysis at t_min is reported beside it
    assert saved["zero_time"] and len(points["correction"]) == 19
    assert saved["at_t_min"]["alpha"] > 0 and "relative_gap" in saved["at_t_min"]
    z = saved["model_log_z"]  # reverse importance on the 4 + 3 snapshots at the data temperature
    assert z["n"] == 7 and np.isfinite(z["log_z"]) and np.isfinite(z["log_z_ti"])
    # the log-mean-exp plateau lies above the mean (Jensen); its gap to the same TI
    assert saved["plateau_lme"] >= saved["plateau"] and saved["plateau_lme_err"] >= 0
    assert saved["gap_lme"] == pytest.approx(saved["plateau_lme"] + saved["log_z_ti"])
    assert (out / "partition.png").stat().st_size > 0
