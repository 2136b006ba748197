"""Training objective: time mixture, weights, antithetic partners, prior KL."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from spinscore.config import DiffusionConfig, TimeComponent
from spinscore.diffusion.sde import mirror, perturb, prior_kl, sample_times, time_density
from spinscore.geometry.heat_kernel import heat_kernel_target

MIX = DiffusionConfig(t_min=1e-4, t_max=4.0, t_sampling=(
    TimeComponent(weight=0.6, low=1e-4, high=0.1),
    TimeComponent(weight=0.4, low=0.05, high=4.0, kind="uniform")))


def test_time_density_normalised_and_sampled():
    total = sum(integrate.quad(lambda t: float(time_density(MIX, torch.tensor(t))), a, b,
                               limit=200)[0] for a, b in [(1e-4, 0.05), (0.05, 0.1), (0.1, 4)])
    assert total == pytest.approx(1.0, abs=1e-6)
    t, w = sample_times(MIX, 40000, torch.Generator().manual_seed(0), dtype=torch.float64)

    def cdf(x):
        return np.array([integrate.quad(lambda s: float(time_density(MIX, torch.tensor(s))),
                                        1e-4, v, points=[0.05, 0.1], limit=200)[0] for v in x])
    grid = np.quantile(t.numpy(), np.linspace(0.01, 0.99, 40))
    emp = np.searchsorted(np.sort(t.numpy()), grid) / len(t)
    assert np.abs(cdf(grid) - emp).max() < 4 * 0.5 / math.sqrt(len(t))  # DKW-style bound
    # likelihood weights: mean 1, and E_p[w f(t)] = mean of f over [t_min, t_max]
    assert float(w.mean()) == pytest.approx(1.0, abs=0.05)
    assert float((w * t).mean()) == pytest.approx((4.0 + 1e-4) / 2, rel=0.05)


def test_paper_weighting_and_uniform_recipe():
    cfg = DiffusionConfig(t_min=1e-4, t_max=1.0, weighting="paper", t_sampling=(
        TimeComponent(weight=1, low=1e-4, high=1.0, kind="uniform"),))
    t, w = sample_times(cfg, 5000, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(t, w)
    assert stats.kstest(t.numpy(), stats.uniform(1e-4, 1 - 1e-4).cdf).pvalue > 1e-3


def test_weight_floor_only_raises_small_weights():
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731 - same draws twice
    t, w = sample_times(MIX, 5000, gen(), dtype=torch.float64)
    t2, w2 = sample_times(MIX.model_copy(update={"weight_floor": 0.1}), 5000, gen(),
                          dtype=torch.float64)
    assert torch.equal(t, t2)
    assert torch.equal(w2, torch.clamp(w, min=0.1)) and bool((w < 0.1).any())


def test_mirror_partner_is_an_exact_sample_with_the_mirrored_target():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(5000, 3, generator=g, dtype=torch.float64)
    x0 = x0 / x0.norm(dim=-1, keepdim=True)
    t = torch.full((5000,), 0.3, dtype=torch.float64)
    x_t, target = perturb(x0, t, g)
    x_m = mirror(x0, x_t)
    assert torch.allclose((x_m * x0).sum(-1), (x_t * x0).sum(-1), atol=1e-14)  # same angle
    assert torch.allclose(x_m.norm(dim=-1), torch.ones(5000, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(heat_kernel_target(x_m, x0, t), mirror(x0, target), atol=1e-10)
    assert torch.allclose(x_t + x_m, 2 * (x_t * x0).sum(-1, keepdim=True) * x0, atol=1e-14)


def test_prior_kl_matches_the_l1_asymptote_and_bound():
    for t in (2.0, 3.0, 5.0):
        assert prior_kl(t) == pytest.approx(1.5 * math.exp(-2 * t), rel=0.03)
    assert 50 * prior_kl(5.0) < 0.005  # the default t_max: the uniform prior is exact to 5 mnats
