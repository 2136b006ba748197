"""ln Z by importance sampling from the model: the estimator against exact integrals, and the
probability-flow samples' log q against the exact heat-kernel density of an oracle score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from score_oracles import HeatKernelScore, random_directions
from spinscore.analysis.importance import importance_estimate, model_samples_with_log_q
from spinscore.geometry.heat_kernel import heat_kernel_log_density

# t_max 12: the uniform prior is K_{t0+t_max} to 3 e^-12 = 2e-5 in log density (at 5, 0.02: the
# samples' log q is then that of the flow from the uniform law, not log K_{t0+t_min})
T0, T_MIN, T_MAX = 0.05, 1e-3, 12.0


def test_a_perfect_proposal_gives_the_exact_value_and_the_full_sample_size():
    result = importance_estimate(np.full(50, 3.7), {"x": np.arange(50.0)})
    assert result["log_z"] == pytest.approx(3.7, abs=1e-12)
    assert result["ess"] == pytest.approx(50) and result["log_z_err"] == pytest.approx(0, abs=1e-6)
    assert result["x"]["mean"] == pytest.approx(24.5)


def test_gaussian_target_from_a_wider_gaussian():
    """q = N(0, 1), target exp(-x^2 / (2 s^2)), s = 0.7: Z = sqrt(2 pi) s and <x^2> = s^2,
    both within 4 standard errors; ESS of a mismatched proposal below n."""
    s, n = 0.7, 4000
    x = np.random.default_rng(0).standard_normal(n)
    log_q = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    result = importance_estimate(-x**2 / (2 * s**2) - log_q, {"x2": x**2})
    exact = math.log(math.sqrt(2 * math.pi) * s)
    assert abs(result["log_z"] - exact) < 4 * result["log_z_err"]
    assert abs(result["log_z_err"] - result["log_z_err_bootstrap"]) < 0.3 * result["log_z_err"]
    assert abs(result["x2"]["mean"] - s**2) < 4 * result["x2"]["err"]
    assert 0.5 * n < result["ess"] < n
    with pytest.raises(ValueError, match="finite"):
        importance_estimate(np.array([0.0, np.nan]))


def test_probability_flow_samples_carry_their_exact_log_q_and_give_the_vmf_partition_function():
    """The exact heat-kernel score of K_{t0+t}: the PF-ODE's log q of its own samples equals
    log K_{t0+t_min} (to 1e-3 nats), and importance weights towards two spins in a field
    kappa = 15 give ln Z = 2 ln(4 pi sinh(kappa) / kappa) within 4 standard errors."""
    mu = random_directions(2, 5)
    model = HeatKernelScore(mu, T0)
    spins, log_q, timings = model_samples_with_log_q(model, torch.zeros(2, dtype=torch.long), 300,
                                                     t_min=T_MIN, t_max=T_MAX, seed=2)
    theta = torch.arccos((torch.as_tensor(spins) * mu).sum(-1).clamp(-1, 1))
    exact_log_q = heat_kernel_log_density(theta, T0 + T_MIN).sum(-1).numpy()
    np.testing.assert_allclose(log_q, exact_log_q, atol=1e-3)
    kappa = 15.0
    cos = (spins * mu.numpy()).sum(-1)
    result = importance_estimate(kappa * cos.sum(-1) - log_q)
    exact = 2 * math.log(4 * math.pi * math.sinh(kappa) / kappa)
    assert abs(result["log_z"] - exact) < 4 * result["log_z_err"], (result, exact)
    assert 0.3 * 300 < result["ess"] < 300 and timings["log_q_s"] > 0


def test_thermo_all_three_routes_through_the_cli(tmp_path):
    """`spinscore thermo --method all --checkpoint`: TI, MBAR and importance sampling in one
    record and one figure (an untrained tiny model: the route, not its accuracy); `is` without
    a checkpoint is refused with one line."""
    import json

    from test_generate import tiny_checkpoint

    from conftest import assert_clean_error, run, write_config

    ckpt = tiny_checkpoint(tmp_path / "ckpt.pt")
    cfg = write_config(tmp_path / "cfg.yaml")
    out = tmp_path / "thermo"
    base = ["thermo", "--config", str(cfg), "--sequence", "ABBAB", "--out", str(out),
            "--points", "11", "--runs", "2", "--sweeps", "20", "--threads", "1", "--quiet"]
    code, output = run([*base, "--method", "all", "--checkpoint", str(ckpt), "--samples", "6"])
    assert code == 0, output
    assert "IS    ln Z" in output and "ESS" in output and "IS - TI" in output
    record = json.loads((out / "thermo.json").read_text())
    imp = record["importance"]
    assert imp["n"] == 6 and 1.0 <= imp["ess"] <= 6.0 and np.isfinite(imp["log_z"])
    assert record["importance_minus_ti"]["difference"] == pytest.approx(
        imp["log_z"] - record["log_z"])
    assert (out / "thermo.png").stat().st_size > 0
    assert_clean_error(*run([*base, "--method", "is"]), "--checkpoint")
