"""The heat kernel of Brownian motion on S² (generator ½Δ, t = σ²): log density, radial
score, denoising target and exact samples (conventions in `sphere`).

Heat-kernel numerics (``t ≥ T_CROSS``: Legendre series, ``t < T_CROSS``: quadrature)
-----------------------------------------------------------------------------------
For large ``t`` the Legendre series converges after ``L ≈ sqrt(90/t)`` terms. For small ``t`` it
needs ``O(t^-1/2)`` terms and, near θ = π, cancels catastrophically, so we use an exact integral
representation instead. The Mehler–Dirichlet formula
``P_l(cos θ) = (√2/π) ∫_θ^π sin((l+½)ψ) / sqrt(cos θ − cos ψ) dψ`` and Poisson summation over the
half-integers ν = l+½ (the spectrum is l(l+1) = ν² − ¼) give

    p_t(θ) = e^{t/8} / (2 (π t)^{3/2}) ∫_θ^π f(ψ) / sqrt(cos θ − cos ψ) dψ,
    f(ψ)   = Σ_k (−1)^k (ψ − 2πk) exp(−(ψ − 2πk)² / 2t),                              (*)

(the "descent" from the S³ kernel; k = 0 is the direct geodesic, k = 1 the one going round the
other way). For t < T_CROSS = 1 the images k ∈ {−1, 0, 1} suffice (the next ones are
≤ e^{−4π²/t} ≤ 1e-17 relative). The substitution ψ² = θ² + (π² − θ²) u² absorbs both the
inverse-square-root endpoint singularity and the Gaussian factor, leaving a smooth integrand on
u ∈ [0, 1] (truncated where the Gaussian is below e^{−49}) that a 24-point Gauss–Legendre rule
integrates to ~1e-12, uniformly in θ ∈ [0, π] (caustic at θ = π included) and t → 0. The
radial score d/dθ log p is obtained by differentiating (*) under the integral in the
Mehler/Chebyshev variable β (cos(ψ/2) = cos(θ/2) cos β, fixed range [0, π/2]) and applying the
same u-substitution. The leading small-t behaviour is the Varadhan/van Vleck form
p_t ≈ (2πt)^{-1} sqrt(θ/sin θ) e^{−θ²/2t} [1 + t/8 + t(1 − θ cot θ)/(8θ²) + O(t²)].

Sampling uses the same representation as a mixture: (*) says that (ψ, cos θ) has joint density
∝ sin θ · f(ψ) / sqrt(cos θ − cos ψ) on 0 ≤ θ ≤ ψ ≤ π, so ψ has marginal ∝ f(ψ) sin(ψ/2) and,
given ψ, cos θ = cos ψ + (1 − cos ψ) V² with V ~ U(0, 1). For t < T_CROSS, ψ is drawn exactly
by rejection from sqrt(t)·χ₃ (acceptance ≈ 1 − t/8) folded at π; for t ≥ T_CROSS cos θ is
drawn by inverting the series CDF, ∫P_l = (P_{l+1} − P_{l−1})/(2l+1), with safeguarded Newton.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from spinscore.geometry.sphere import dot, geodesic_angle, log_map, sinc

__all__ = ["T_CROSS", "heat_kernel_log_density", "heat_kernel_sample", "heat_kernel_score",
           "heat_kernel_target"]

T_CROSS = 1.0  # diffusion time at which the heat kernel switches from quadrature to series
_N_QUAD = 24  # Gauss–Legendre nodes of the small-t quadrature (~1e-12 accurate)
_CHUNK = 4096  # rows per quadrature block (keeps the (rows, nodes) temporaries in cache)
_Y_MAX = 7.0  # Gaussian truncation: e^{-Y_MAX^2} = 5e-22
_SERIES_EXP = 45.0  # keep Legendre terms until l(l+1)t/2 > _SERIES_EXP (e^-45 = 3e-20)
_PI = math.pi

# --------------------------------------------------------------------------------------------
# Heat kernel: internals (float64, flat tensors)
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _gauss_legendre(n: int, device_str: str) -> tuple[Tensor, Tensor]:
    """Gauss–Legendre nodes/weights on [0, 1] (Golub–Welsch), float64."""
    k = torch.arange(1, n, dtype=torch.float64)
    off = k / torch.sqrt(4 * k * k - 1)
    jac = torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vecs = torch.linalg.eigh(jac)
    weights = 2 * vecs[0] ** 2
    return ((nodes + 1) / 2).to(device_str), (weights / 2).to(device_str)


def _g1(z: Tensor) -> Tensor:
    """(1 − z cot z)/z², smooth on [0, π/2] (= 1/3 + z²/45 + 2z⁴/945 + z⁶/4725 + …)."""
    z2 = z * z
    series = 1 / 3 + z2 * (1 / 45 + z2 * (2 / 945 + z2 / 4725))
    zs = z.clamp_min(0.1)
    direct = (1 - zs * torch.cos(zs) / torch.sin(zs)) / (zs * zs)
    return torch.where(z < 0.1, series, direct)


def _image_terms(psi: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """R = f(ψ)/(ψ e^{−ψ²/2t}) − 1 = E1·q for images k = ±1, and dR/dψ; stable form.

    f1 + f_{−1} = (2π−ψ)e^{−(2π−ψ)²/2t} − (2π+ψ)e^{−(2π+ψ)²/2t} = E1·ψ·q(ψ) with
    E1 = e^{−2π(π−ψ)/t} (relative to e^{−ψ²/2t}), q = 2π(1 − e^{−x})/ψ − (1 + e^{−x}), x = 4πψ/t.
    """
    x = 4 * _PI * psi / t
    em = torch.exp(-x)
    one_m = -torch.expm1(-x)
    q = 2 * _PI * one_m / psi - (1 + em)
    e1 = torch.exp(-2 * _PI * (_PI - psi) / t)
    dq = 2 * _PI * (x * em - one_m) / (psi * psi) + (4 * _PI / t) * em
    rho = e1 * q
    return rho, rho * (2 * _PI / t) + e1 * dq


def _small_t(theta: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """log p_t(θ) and score/θ for t < T_CROSS by the quadrature of (*). 1-d float64 inputs."""
    v, w = _gauss_legendre(_N_QUAD, str(theta.device))
    th, tt = theta[:, None], t[:, None]
    a = _PI - th  # exact in floating point near θ = π
    big_d = a * (_PI + th)  # π² − θ²
    y = torch.sqrt(big_d / (2 * tt))
    upper = (_Y_MAX / y).clamp(max=1.0)  # y = 0 (θ = π) gives inf → 1
    u = upper * v
    psi = torch.sqrt(th * th + big_d * u * u)
    sig = psi + th
    r = (_PI + th) * u * u / sig  # (ψ − θ)/(π − θ)
    # Jacobian: ψ dβ/du / sin(ψ/2) = D u / (2 sqrt(sin((ψ−θ)/2) sin((ψ+θ)/2))), written with
    # sinc factors so that it stays finite at θ = π (a = 0) and θ = 0
    arg2 = a * (1 - r / 2)  # = π − (ψ+θ)/2
    s2 = torch.where(arg2 <= sig / 2, sinc(arg2), torch.sin(sig / 2) / arg2)  # sin(arg2)/arg2
    jac = torch.sqrt((_PI + th) * sig / 2 / ((1 - r / 2) * sinc(a * r / 2) * s2))
    rho, drho = _image_terms(psi, tt)
    weight = torch.exp(-big_d * u * u / (2 * tt)) * (1 + rho) * jac * (upper * w)
    total = weight.sum(-1)
    # d/dθ log h(ψ) · ∂ψ/∂θ / θ with ∂ψ/∂θ = sin(θ/2) cos β / sin(ψ/2),
    # cos β = cos(ψ/2)/cos(θ/2) = sin(a(1−r)/2)/sin(a/2)
    cos_b = (1 - r) * sinc(a * (1 - r) / 2) / sinc(a / 2)
    half = psi / 2
    inner = cos_b * (2 / sinc(half) * (_g1(half) / 4 - 1 / tt)
                     + drho / ((1 + rho) * torch.sin(half)))
    score_over_theta = 0.5 * sinc(theta / 2) * (weight * inner).sum(-1) / total
    log_p = (t / 8 - 0.5 * math.log(2.0) - 1.5 * torch.log(_PI * t) - theta * theta / (2 * t)
             + torch.log(total))
    return log_p, score_over_theta


def _n_terms(t_min: float) -> int:
    return int(math.ceil(math.sqrt(2 * _SERIES_EXP / max(t_min, 1e-6)))) + 2


def _series(theta: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """log p_t(θ) and score/θ by the Legendre series (t ≥ T_CROSS). 1-d float64 inputs."""
    x = torch.cos(theta)
    p_prev, p_cur = torch.ones_like(x), x  # P_{l-1}, P_l
    dp_prev, dp_cur = torch.zeros_like(x), torch.ones_like(x)  # P'_{l-1}, P'_l
    s = torch.full_like(x, 1 / (4 * _PI))
    ds = torch.zeros_like(x)
    for ell in range(1, _n_terms(float(t.min())) + 1):
        c = (2 * ell + 1) / (4 * _PI) * torch.exp(-ell * (ell + 1) * t / 2)
        s = s + c * p_cur
        ds = ds + c * dp_cur
        p_next = ((2 * ell + 1) * x * p_cur - ell * p_prev) / (ell + 1)
        dp_next = dp_prev + (2 * ell + 1) * p_cur  # P'_{l+1} = P'_{l-1} + (2l+1) P_l
        p_prev, p_cur, dp_prev, dp_cur = p_cur, p_next, dp_cur, dp_next
    # d/dθ p = −sin θ Σ c_l P_l'(cos θ)  ⇒  score/θ = −(sin θ/θ)·ds/s
    return torch.log(s), -sinc(theta) * ds / s


def _heat_kernel_terms(theta: Tensor, t) -> tuple[Tensor, Tensor, Tensor]:
    """(log p, score/θ, θ) in float64, broadcast, no autograd graph."""
    theta = theta.detach()
    t = torch.as_tensor(t, dtype=torch.float64, device=theta.device).detach()
    th, tt = torch.broadcast_tensors(theta.to(torch.float64), t)
    shape = th.shape
    th = th.reshape(-1).clamp(0.0, _PI)
    tt = tt.reshape(-1)
    log_p = torch.empty_like(th)
    sot = torch.empty_like(th)
    small = tt < T_CROSS
    if bool(small.any()):
        th_s, tt_s = th[small], tt[small]
        parts = [_small_t(th_s[i:i + _CHUNK], tt_s[i:i + _CHUNK])
                 for i in range(0, th_s.numel(), _CHUNK)]
        log_p[small] = torch.cat([lp for lp, _ in parts])
        sot[small] = torch.cat([so for _, so in parts])
    if not bool(small.all()):
        log_p[~small], sot[~small] = _series(th[~small], tt[~small])
    return log_p.reshape(shape), sot.reshape(shape), th.reshape(shape)


def _out_dtype(theta: Tensor) -> torch.dtype:
    return theta.dtype if theta.is_floating_point() else torch.get_default_dtype()


class _HeatKernelLogDensity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta: Tensor, t: Tensor) -> Tensor:
        log_p, sot, th = _heat_kernel_terms(theta, t)
        ctx.save_for_backward(sot * th)
        ctx.theta_shape = theta.shape
        return log_p.to(_out_dtype(theta))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        (score,) = ctx.saved_tensors
        g = (grad * score).to(grad.dtype)
        # reduce over dimensions that were broadcast against t
        extra = g.dim() - len(ctx.theta_shape)
        if extra > 0:
            g = g.sum(dim=tuple(range(extra)))
        for i, n in enumerate(ctx.theta_shape):
            if n == 1 and g.shape[i] != 1:
                g = g.sum(dim=i, keepdim=True)
        return g, None


# --------------------------------------------------------------------------------------------
# Heat kernel: public API
# --------------------------------------------------------------------------------------------
def heat_kernel_log_density(theta: Tensor, t) -> Tensor:
    """log p_t(θ) of Brownian motion on S² (generator ½Δ), density w.r.t. area on the unit sphere.

    theta: geodesic angle(s) in [0, π] (radians, clamped), any shape; t: diffusion time > 0
    (float or tensor broadcastable with theta). Returns shape broadcast(theta, t), dtype of
    ``theta``. Accurate to ~1e-12 relative in p (absolute in log p) for t ∈ [1e-5, 20] and all θ
    (no underflow: for tiny t and large θ the log is returned directly). Method: exact
    Mehler/Poisson quadrature for t < T_CROSS, Legendre series above (see module docstring).
    Differentiable w.r.t. ``theta`` (gradient = heat_kernel_score), not w.r.t. ``t``.
    """
    if not isinstance(theta, Tensor):
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype())
    t = torch.as_tensor(t, dtype=torch.float64, device=theta.device)
    return _HeatKernelLogDensity.apply(theta, t)


def heat_kernel_score(theta: Tensor, t) -> Tensor:
    """Radial score d/dθ log p_t(θ) (units 1/rad), shape broadcast(theta, t), dtype of theta.

    ≤ 0 on [0, π], exactly 0 at θ = 0 and θ = π, ≈ −θ/t for small t (Varadhan). Accurate to
    ~1e-9 relative. Carries no autograd graph (it is a regression target).
    """
    if not isinstance(theta, Tensor):
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype())
    _, sot, th = _heat_kernel_terms(theta, t)
    return (sot * th).to(_out_dtype(theta))


def heat_kernel_target(x_t: Tensor, x_0: Tensor, t) -> Tensor:
    """Denoising score-matching target ∇_{x_t} log p_t(x_t | x_0), tangent at ``x_t``.

    x_t, x_0: unit vectors ``(..., 3)``; t: diffusion time, broadcastable to ``x_t.shape[:-1]``.
    Returns ``(..., 3)`` in units 1/rad: (−score(θ)/θ)·log_map(x_t, x_0), i.e. pointing from x_t
    towards x_0 with length |d log p/dθ|; → log_map(x_t, x_0)/t for small t. Smooth at θ → 0
    (→ 0 linearly) and → 0 at θ = π (where the direction is ill-defined). The scalar factor
    carries no autograd graph.
    """
    theta = geodesic_angle(x_t, x_0)
    _, sot, _ = _heat_kernel_terms(theta, t)
    return (-sot).to(x_t.dtype).unsqueeze(-1) * log_map(x_t, x_0)


def _sample_psi_small_t(t: Tensor, generator) -> Tensor:
    """Exact draws of ψ with density ∝ f(ψ) sin(ψ/2) on [0, π] for t < T_CROSS (rejection)."""
    psi = torch.empty_like(t)
    todo = torch.arange(t.numel(), device=t.device)
    while todo.numel() > 0:
        tt = t[todo]
        z = torch.randn(todo.numel(), 3, generator=generator, dtype=t.dtype, device=t.device)
        # proposal ∝ ψ² e^{−ψ²/2t} (χ₃); accepting with sinc(ψ/2) gives ∝ f0(ψ) sin(ψ/2) on
        # [0, 2π]; folding at π adds the k = 1 image; A = (f0+f1+f_{−1})/(f0+f1) the k = −1 one
        p_raw = torch.sqrt(tt) * torch.linalg.vector_norm(z, dim=-1)
        p_fold = torch.where(p_raw > _PI, 2 * _PI - p_raw, p_raw).clamp_min(1e-300)
        rho, _ = _image_terms(p_fold, tt)
        e1 = torch.exp(-2 * _PI * (_PI - p_fold) / tt)
        accept_p = sinc(p_raw / 2) * p_fold * (1 + rho) / (p_fold + (2 * _PI - p_fold) * e1)
        u = torch.rand(todo.numel(), generator=generator, dtype=t.dtype, device=t.device)
        ok = (p_raw < 2 * _PI) & (u < accept_p)
        psi[todo[ok]] = p_fold[ok]
        todo = todo[~ok]
    return psi


def _sample_cos_series(t: Tensor, generator) -> Tensor:
    """Exact draws of cos θ for t ≥ T_CROSS by inverting the series CDF (safeguarded Newton)."""
    u = torch.rand(t.shape, generator=generator, dtype=t.dtype, device=t.device)
    n_terms = _n_terms(float(t.min()))
    coef = torch.exp(-torch.arange(1, n_terms + 1, dtype=t.dtype, device=t.device)
                     * torch.arange(2, n_terms + 2, dtype=t.dtype, device=t.device)
                     * t[:, None] / 2)  # e_l, l = 1..L

    def cdf_pdf(x: Tensor) -> tuple[Tensor, Tensor]:
        # F(x) = ½(1+x) + ½ Σ_l e_l (P_{l+1} − P_{l−1}),  F'(x) = Σ_l (2l+1)/2 e_l P_l
        p_prev, p_cur = torch.ones_like(x), x
        cdf, pdf = (1 + x) / 2, torch.full_like(x, 0.5)
        for ell in range(1, n_terms + 1):
            p_next = ((2 * ell + 1) * x * p_cur - ell * p_prev) / (ell + 1)
            c = coef[:, ell - 1]
            cdf = cdf + c * (p_next - p_prev) / 2
            pdf = pdf + c * (2 * ell + 1) / 2 * p_cur
            p_prev, p_cur = p_cur, p_next
        return cdf, pdf

    # initial guess: exact inverse of the l ≤ 1 truncation, F ≈ ½y(1 − 2e₁) + ½e₁y², y = 1 + x
    e1, b = coef[:, 0], 1 - 2 * coef[:, 0]
    x = (4 * u / (b + torch.sqrt(b * b + 8 * e1 * u)) - 1).clamp(-1.0, 1.0)
    lo, hi = torch.full_like(x, -1.0), torch.ones_like(x)
    for _ in range(100):
        cdf, pdf = cdf_pdf(x)
        g = cdf - u
        step = g / pdf
        if float(step.abs().max()) < 1e-13:
            return (x - step).clamp(-1.0, 1.0)
        hi = torch.where(g > 0, x, hi)
        lo = torch.where(g < 0, x, lo)
        x_new = x - step
        bad = (x_new < lo) | (x_new > hi) | ~torch.isfinite(x_new)
        x = torch.where(bad, (lo + hi) / 2, x_new)
    return x


def heat_kernel_sample(x0: Tensor, t, generator: torch.Generator | None = None) -> Tensor:
    """Exact draws x_t ~ p_t(· | x0) of Brownian motion on S² (generator ½Δ) started at x0.

    x0: unit vectors ``(..., 3)``; t: diffusion time ≥ 0 (float or tensor broadcastable to
    ``x0.shape[:-1]``; t ≤ 0 returns x0, t = inf a uniform point). Returns ``(..., 3)`` unit
    vectors, dtype of x0. The angle θ is drawn from its exact law p_t(θ)·2π sin θ dθ (module
    docstring: χ₃-rejection for t < T_CROSS, series-CDF inversion above), the azimuth uniformly
    (direction of a projected Gaussian). All randomness comes from ``generator`` (torch's global
    RNG if None). Throughput ~1e6 samples/s on one CPU core.
    """
    dtype = x0.dtype
    batch = x0.shape[:-1]
    x = x0.detach().to(torch.float64).reshape(-1, 3)
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(batch).reshape(-1)
    if bool(torch.isnan(t).any()):
        raise ValueError("heat_kernel_sample: t contains NaN")
    vers = torch.zeros_like(t)  # 1 − cos θ
    small = (t > 0) & (t < T_CROSS)
    large = t >= T_CROSS
    if bool(small.any()):
        psi = _sample_psi_small_t(t[small], generator)
        v = torch.rand(psi.shape, generator=generator, dtype=psi.dtype, device=psi.device)
        # given ψ: 1 − cos θ = (1 − cos ψ)(1 − V²)
        vers[small] = 2 * torch.sin(psi / 2) ** 2 * (1 - v * v)
    if bool(large.any()):
        vers[large] = 1 - _sample_cos_series(t[large], generator)
    sin_t = torch.sqrt((vers * (2 - vers)).clamp_min(0.0))
    g = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    e = g - dot(x, g) * x
    e = e / torch.linalg.vector_norm(e, dim=-1, keepdim=True).clamp_min(1e-300)
    out = (1 - vers)[:, None] * x + sin_t[:, None] * e
    out = out / torch.linalg.vector_norm(out, dim=-1, keepdim=True)
    return out.reshape(*batch, 3).to(dtype)
