"""Tests of spinscore.geometry.heat_kernel: the heat kernel density and score, the denoising
score-matching target, the exact sampler.

References are independent of the implementation: mpmath (high precision) for the heat kernel
(Legendre series, and the Mehler–Dirichlet integral by tanh-sinh quadrature in the raw
variable), numpy/scipy for the sampler's exact CDF and the normalisation.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sphere_helpers import F64, gen, random_tangent

from spinscore.geometry import heat_kernel as sph
from spinscore.geometry import sphere as sp
from spinscore.geometry.heat_kernel import (
    heat_kernel_log_density,
    heat_kernel_sample,
    heat_kernel_score,
    heat_kernel_target,
)

PI = math.pi


# --------------------------------------------------------------------------------------------
# High-precision references (mpmath)
# --------------------------------------------------------------------------------------------
def ref_log_series(theta, t, dps: int = 40):
    """log p_t(θ) from the Legendre series, summed in mpmath until e^{−l(l+1)t/2} < 10^-dps."""
    with mp.workdps(dps):
        x, t = mp.cos(mp.mpf(theta)), mp.mpf(t)
        p0, p1, s, ell = mp.mpf(1), x, 1 / (4 * mp.pi), 1
        while ell * (ell + 1) * t / 2 < 2.4 * dps + 10:
            s += (2 * ell + 1) / (4 * mp.pi) * mp.exp(-ell * (ell + 1) * t / 2) * p1
            p0, p1 = p1, ((2 * ell + 1) * x * p1 - ell * p0) / (ell + 1)
            ell += 1
        return mp.log(s)


def ref_log_mehler(theta, t, dps: int = 20):
    """log p_t(θ) from the Mehler–Dirichlet/Poisson integral, tanh-sinh quadrature in ψ = θ + s².

    p_t(θ) = e^{t/8}/(2(πt)^{3/2}) ∫_θ^π f(ψ) / sqrt(cos θ − cos ψ) dψ,
    f(ψ) = Σ_k (−1)^k (ψ−2πk) e^{−(ψ−2πk)²/2t}
    (images k = −2..3; validated against the series in test_mehler_representation).
    """
    with mp.workdps(dps):
        th = mp.pi if theta == PI else mp.mpf(theta)
        t = mp.mpf(t)

        def f(psi):  # the image sum times e^{θ²/2t} (keeps mp.quad's absolute tolerance sane)
            return sum((-1) ** k * (psi - 2 * k * mp.pi)
                       * mp.exp(-((psi - 2 * k * mp.pi) ** 2 - th ** 2) / (2 * t))
                       for k in range(-2, 4))

        log_c = t / 8 - mp.log(2) - 1.5 * mp.log(mp.pi * t) - th ** 2 / (2 * t)
        if th == mp.pi:  # limit θ → π: ∫ dψ / sqrt(cos θ − cos ψ) → π/√2
            return log_c + mp.log(f(mp.pi) * mp.pi / mp.sqrt(2))
        top = mp.sqrt(mp.pi - th)
        w = mp.sqrt(t / max(th, mp.sqrt(t)))  # width of the Gaussian in s
        pts = [mp.mpf(0)] + [w * c for c in (0.5, 2, 8) if w * c < top] + [top]

        def g(s):
            return 2 * s * f(th + s * s) / mp.sqrt(2 * mp.sin(s * s / 2) * mp.sin(th + s * s / 2))

        return log_c + mp.log(mp.quad(g, pts))


def ref_log(theta, t, dps: int = 20):
    return ref_log_mehler(theta, t, dps) if t <= 1 else ref_log_series(theta, t, dps + 20)



# --------------------------------------------------------------------------------------------
# Heat kernel density and score
# --------------------------------------------------------------------------------------------
T_GRID = [1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0, 4.0]
THETA_GRID = [0.0, 1e-3, 0.2, 1.0, 2.0, 3.0, PI - 1e-4, PI]


@pytest.mark.parametrize(("t", "theta"), [(0.1, 0.0), (0.1, 1.3), (0.1, 3.0), (0.1, PI),
                                          (0.5, 2.0), (1.0, 0.7), (1.0, PI)])
def test_mehler_representation(t, theta):
    """The integral representation used as small-t reference equals the Legendre series."""
    assert abs(ref_log_mehler(theta, t, 30) - ref_log_series(theta, t, 80)) < 1e-18


@pytest.mark.parametrize("t", T_GRID)
def test_log_density_matches_reference(t):
    theta = torch.tensor(THETA_GRID, dtype=F64)
    got = heat_kernel_log_density(theta, t)
    ref = torch.tensor([float(ref_log(th, t)) for th in THETA_GRID], dtype=F64)
    # |Δ log p| ≤ 1e-6 is relative accuracy 1e-6 of p, also where p underflows float64
    assert (got - ref).abs().max() < 1e-6, (got - ref)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("t", T_GRID)
def test_density_normalised(t):
    def dens(th):
        return 2 * PI * math.sin(th) * math.exp(
            float(heat_kernel_log_density(torch.tensor(th, dtype=F64), t)))

    s = math.sqrt(t)
    pts = [c * s for c in (1, 3, 6, 10) if c * s < PI]
    total = 0.0
    for a, b in zip([0.0, *pts], [*pts, PI], strict=True):
        total += integrate.quad(dens, a, b, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    assert abs(total - 1) < 1e-8


def test_quadrature_and_series_agree():
    """Both regimes are valid around the crossover T_CROSS = 1 (no jump at the switch)."""
    theta = torch.linspace(0, PI, 101, dtype=F64)
    for t in (0.3, 0.7, 1.0, 1.5):
        tt = torch.full_like(theta, t)
        lq, sq = sph._small_t(theta, tt)
        ls, ss = sph._series(theta, tt)
        assert (lq - ls).abs().max() < 1e-10
        assert (sq - ss).abs().max() < 1e-9 * ss.abs().max()


def test_small_t_expansion():
    """p_t ≈ (2πt)^-1 sqrt(θ/sin θ) e^{-θ²/2t} [1 + t/8 + t(1 − θ cot θ)/(8θ²)] + O(t²)."""
    theta = torch.linspace(0.05, 2.5, 50, dtype=F64)
    for t in (1e-4, 1e-3, 1e-2):
        a1 = 1 / 8 + (1 - theta / torch.tan(theta)) / (8 * theta ** 2)
        approx = (-math.log(2 * PI * t) + 0.5 * torch.log(theta / torch.sin(theta))
                  - theta ** 2 / (2 * t) + torch.log1p(t * a1))
        err = (heat_kernel_log_density(theta, t) - approx).abs().max()
        assert err < 2 * t ** 2, (t, err)


SCORE_POINTS = [(1e-4, 0.3), (1e-4, 2.0), (1e-3, 1.0), (1e-3, PI - 1e-3), (0.01, 0.05),
                (0.01, 2.8), (0.1, 1.5), (0.5, 0.4), (0.5, 3.0), (1.0, 1.0), (4.0, 0.3),
                (4.0, 2.5)]


@pytest.mark.parametrize(("t", "theta"), SCORE_POINTS)
def test_score_matches_finite_difference(t, theta):
    h = 1e-8 * min(theta, 1.0)
    with mp.workdps(25):
        x = mp.mpf(theta)
        fd = float((ref_log(x + h, t, 25) - ref_log(x - h, t, 25)) / (2 * h))
    got = float(heat_kernel_score(torch.tensor(theta, dtype=F64), t))
    assert abs(got - fd) <= 1e-5 * abs(fd), (got, fd)


def test_score_limits():
    theta = torch.tensor([0.0, 1e-9, 1e-6, 0.5, 1.5, 3.0, PI - 1e-9, PI], dtype=F64)
    for t in (1e-5, 1e-3, 0.3, 1.0, 2.0, 20.0):
        s = heat_kernel_score(theta, t)
        assert torch.isfinite(s).all()
        assert s[0] == 0 and s[-1].abs() < 1e-9 / t
        assert (s[1:-1] < 0).all()
        # linear at θ → 0: score(1e-9)/1e-9 == score(1e-6)/1e-6
        assert abs(s[1] / 1e-9 - s[2] / 1e-6) < 1e-6 * abs(s[2] / 1e-6)
    # Varadhan: score → −θ/t as t → 0 (relative correction O(t))
    th = torch.tensor([0.1, 1.0, 2.0, 2.5], dtype=F64)
    for t in (1e-5, 1e-4):
        ratio = heat_kernel_score(th, t) / (-th / t)
        assert (ratio - 1).abs().max() < 10 * t


def test_heat_kernel_dtypes_and_broadcast():
    theta = torch.rand(4, 1, dtype=torch.float32) * 3
    t = torch.tensor([1e-3, 0.2, 1.0, 5.0])
    lp = heat_kernel_log_density(theta, t)
    assert lp.shape == (4, 4) and lp.dtype == torch.float32
    ref = heat_kernel_log_density(theta.double().expand(4, 4), t.double().expand(4, 4))
    assert torch.allclose(lp.double(), ref, rtol=1e-6)
    assert heat_kernel_score(theta, t).shape == (4, 4)
    # gradient through broadcasting is reduced back to theta's shape
    th = theta.double().requires_grad_()
    heat_kernel_log_density(th, t.double()).sum().backward()
    assert th.grad.shape == (4, 1)
    assert torch.allclose(th.grad, heat_kernel_score(th.detach(), t.double()).sum(1, True))


# --------------------------------------------------------------------------------------------
# Denoising score-matching target
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1e-4, 0.05, 0.7, 1.0, 3.0])
def test_target_is_riemannian_gradient(t):
    g = gen(7)
    x0 = sp.uniform_sphere(300, g, F64)
    xt = heat_kernel_sample(x0, t, generator=g) if t < 0.5 else sp.uniform_sphere(300, g, F64)
    xt.requires_grad_(True)
    heat_kernel_log_density(sp.geodesic_angle(xt, x0), t).sum().backward()
    auto = sp.tangent_project(xt.detach(), xt.grad)
    target = heat_kernel_target(xt.detach(), x0, t)
    assert torch.allclose(target, auto, rtol=1e-9, atol=1e-9 * auto.norm(dim=-1).max())
    assert (xt.detach() * target).sum(-1).abs().max() < 1e-9 * target.norm(dim=-1).max()
    # points towards x0 (positive projection on log_map(x_t, x0))
    assert ((target * sp.log_map(xt.detach(), x0)).sum(-1) > 0).all()


def test_target_limits():
    g = gen(8)
    x0 = sp.uniform_sphere(200, g, F64)
    xt = sp.exp_map(x0, random_tangent(x0, torch.rand(200, generator=g, dtype=F64) * 2.5, g))
    t = 1e-4
    assert torch.allclose(heat_kernel_target(xt, x0, t), sp.log_map(xt, x0) / t, rtol=1e-3)
    # θ → 0: target → 0 linearly, exactly 0 at x_t = x0
    assert torch.equal(heat_kernel_target(x0, x0, 0.3), torch.zeros_like(x0))
    v = random_tangent(x0, torch.full((200,), 1e-7, dtype=F64), g)
    near = heat_kernel_target(sp.exp_map(x0, v), x0, 0.3)
    slope = -heat_kernel_score(torch.tensor(1e-7, dtype=F64), 0.3) / 1e-7  # −score/θ at θ → 0
    # log_{x_t}(x0) = −v up to O(θ) relative (the tangent planes differ by the angle θ)
    assert ((near + slope * v).norm(dim=-1) / (slope * 1e-7)).max() < 1e-6
    # θ = π: finite and ~0 (score vanishes at the antipode)
    far = heat_kernel_target(-x0, x0, 0.3)
    assert torch.isfinite(far).all() and far.abs().max() < 1e-6
    # per-element t, float32
    tt = torch.rand(200, generator=g, dtype=F64) + 0.01
    tgt = heat_kernel_target(xt.float(), x0.float(), tt.float())
    assert tgt.dtype == torch.float32
    assert torch.allclose(tgt.double(), heat_kernel_target(xt, x0, tt), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Exact sampler
# --------------------------------------------------------------------------------------------
def cdf_cos_theta(x: np.ndarray, t: float) -> np.ndarray:
    """Exact CDF of cos θ: F(x) = ½(1+x) + ½ Σ_l e^{−l(l+1)t/2} (P_{l+1}(x) − P_{l−1}(x))."""
    x = np.asarray(x, dtype=np.float64)
    n_terms = int(math.ceil(math.sqrt(2 * 50 / t))) + 2
    cdf = 0.5 * (1 + x)
    p_prev, p_cur = np.ones_like(x), x.copy()
    for ell in range(1, n_terms + 1):
        p_next = ((2 * ell + 1) * x * p_cur - ell * p_prev) / (ell + 1)
        cdf += 0.5 * math.exp(-ell * (ell + 1) * t / 2) * (p_next - p_prev)
        p_prev, p_cur = p_cur, p_next
    return cdf


@pytest.mark.parametrize(("t", "seed"), [(1e-3, 10), (0.1, 11), (0.9, 12), (1.0, 13), (4.0, 14)])
def test_sample_ks(t, seed):
    g = gen(seed)
    x0 = sp.uniform_sphere(20000, g, F64)
    xt = heat_kernel_sample(x0, t, generator=g)
    assert xt.shape == x0.shape and xt.dtype == F64
    assert (xt.norm(dim=-1) - 1).abs().max() < 1e-14
    cos = (xt * x0).sum(-1).numpy()
    res = stats.kstest(cos, lambda c: cdf_cos_theta(c, t))
    assert res.pvalue > 1e-3, res


def test_sample_azimuth_and_moments():
    g = gen(20)
    t, n = 0.5, 20000
    for x0 in (torch.tensor([0.0, 0.0, 1.0], dtype=F64), sp.uniform_sphere((), g, F64)):
        for q in (sp.random_orthogonal(1, True, g, F64)[0], sp.random_orthogonal(1, False, g, F64)[0]):
            x0r = q @ x0
            xt = heat_kernel_sample(x0r.expand(n, 3), t, generator=g)
            # azimuth about x0r is uniform
            e1 = sp.tangent_project(x0r, torch.randn(3, generator=g, dtype=F64))
            e1 = e1 / e1.norm()
            e2 = torch.linalg.cross(x0r, e1)
            phi = torch.atan2(xt @ e2, xt @ e1).numpy() % (2 * PI)
            assert stats.kstest(phi, stats.uniform(0, 2 * PI).cdf).pvalue > 1e-3
            # equivariance: E[x_t] = e^{−t} x0 and E[x_t x_tᵀ] = I/3 + e^{−3t}(x0 x0ᵀ − I/3)
            mean = xt.mean(0)
            assert (mean - math.exp(-t) * x0r).abs().max() < 0.02
            second = xt.T @ xt / n
            eye = torch.eye(3, dtype=F64)
            expect = eye / 3 + math.exp(-3 * t) * (torch.outer(x0r, x0r) - eye / 3)
            assert (second - expect).abs().max() < 0.02


def test_sample_broadcast_reproducible_and_generator_only():
    x0 = sp.uniform_sphere((3, 4), gen(30), torch.float32)
    t = torch.tensor([0.0, 1e-5, 0.5, 2.0])
    state = torch.get_rng_state()
    a = heat_kernel_sample(x0, t, generator=gen(31))
    b = heat_kernel_sample(x0, t, generator=gen(31))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert torch.equal(a, b)
    assert a.shape == (3, 4, 3) and a.dtype == torch.float32
    assert torch.equal(a[:, 0], x0[:, 0])  # t = 0 returns x0
    assert ((a.double().norm(dim=-1) - 1).abs() < 1e-6).all()
    # tiny t: θ²/t ~ χ²₂ (mean 2)
    x1 = sp.uniform_sphere(20000, gen(32), F64)
    th = sp.geodesic_angle(heat_kernel_sample(x1, 1e-6, generator=gen(33)), x1)
    assert abs(float((th ** 2 / 1e-6).mean()) - 2) < 0.1
