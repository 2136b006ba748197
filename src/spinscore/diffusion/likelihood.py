"""Log-likelihood of spin configurations under a score model (SPEC §7): the probability-flow
ODE on (S²)^N with the exact Riemannian divergence.

The forward process is Brownian motion on each sphere (generator ½Δ). Its marginals p_t are
transported by the probability-flow ODE

    dx/dt = v(x, t) = −½ s(x, t),        d/dt log p_t(x_t) = −div_M v(x_t, t),

so, integrating from t_min to t_max along the trajectory started at the data point,

    log p_{t_min}(x) = log p_{t_max}(x_{t_max}) + ∫_{t_min}^{t_max} div_M v(x_t, t) dt,

with p_{t_max} ≈ uniform, log p_{t_max} = −N ln 4π (valid spins only). The network is trained on
[t_min, t_max], so the ODE reaches log p_{t_min}. Units: nats, density w.r.t. the product of
the area measures of the unit spheres.

Reaching t = 0 (`zero_time=True`). p_{t_min} is p_0 smoothed by the heat kernel: a mode of
stiffness K appears softened to K / (1 + t_min K), which reads as a density hotter than the data
(α ≈ 0.94 on the quick model, t_min K ≈ 0.06). The heat equation ∂_t p = ½Δp gives
∂_t log p = ½ (div_M s + |s|²), so to first order in t_min

    log p_0(x) ≈ log p_{t_min}(x) − (t_min / 2) (div_M s(x, t_min) + |s(x, t_min)|²),

which restores K exactly at first order (a Gaussian mode: precision K_t (1 + t K_t) = K + O(t²K³))
and keeps the normalisation. It costs one more divergence at the data point.

Time variable. The score scale runs over decades (≈ β F at t → 0, ≈ 1/t above the thermal
width), so the state is integrated in u = ln t: dx/du = t v(x, t) and d(∫div)/du = t div_M v.
This spreads the work of the adaptive solver over the time range.

Staying on the sphere. The state is x ∈ R^{N×3}; the right-hand side is the 1-homogeneous
extension |x| · V(x/|x|) of the tangent field V. Its exact flow keeps |x| constant (V is
tangent) and moves x/|x| exactly along the flow on (S²)^N whatever |x| is, so the radial drift
of the solver never feeds back into the trajectory; the network and the divergence are always
evaluated at unit spins (x/|x|).

Divergence: `diffusion.divergence` (the exact trace over the tangent frame in 2N Jacobian-vector
products, or Hutchinson's estimate in one product per probe).

Explicit and implicit parts. For the score network, score_i = P_i Σ_j W_ij x_j with W(x)
symmetric and zero on the diagonal, the divergence splits as

    div_M score = −2 Σ_i x_i·(W x)_i  +  Σ_ij (P_i x_j)·∇_{x_i} W_ij,

(differentiate P_i h_i along the tangent frame: D_e P_i = −(e x_iᵀ + x_i eᵀ) gives −2 x_i·h_i,
and h_i = Σ_j W_ij x_j depends on x_i only through W since W_ii = 0). The explicit part comes
with every forward pass (`explicit_divergence`: in u, t Σ_ij W_ij x_i·x_j); only the implicit
part, the configuration dependence of W, needs the 2N products. It vanishes where the network
has learned constant couplings (t → 0) and varies slowly in u.

Integrators. The divergence never feeds back into the trajectory, so ∫div is a quadrature of
a function of u along a trajectory that forward passes alone determine.
`integrator="quadrature"` (default) solves the trajectory with torchdiffeq's adaptive dopri5,
carrying the explicit part in the ODE state (error-controlled, no products), and integrates the
implicit part (exact or Hutchinson divergence minus the explicit part) by scipy's adaptive
Gauss–Kronrod `cubature` in u, the trajectory read at the nodes through the solver's dense
output and all nodes evaluated in one batched call. The 2N products are spent only at the
nodes, 21 for one Gauss–Kronrod panel, not at every stage of every solver step. Models without
`couplings` (the closed-form stand-ins of the tests) get no explicit part and the whole
divergence by quadrature. `integrator="augmented"` carries the whole ∫div in the ODE state (the
textbook form, a product evaluation at every stage), kept as the independent check.
Measured on the quick-preset model, thermal 30-spin chains, 2 threads, rtol = atol = 1e-5
(benchmarks/likelihood.py): quadrature 1.6 s per chain (median of 8; 21 divergence
evaluations, error ≤ 1.3e-4 nats per spin against the augmented solve at 1e-7), augmented
6.9 s.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
from scipy.integrate import cubature
from torch import Tensor, nn
from torchdiffeq import odeint
from tqdm.auto import tqdm

from spinscore.diffusion.divergence import (
    divergence_exact,
    divergence_hutchinson,
    draw_probes,
    pairwise_control,
    tangent_frame,
)
from spinscore.diffusion.flow import (
    explicit_divergence,
    pf_ode_trajectory,
    trajectory,
    unit_state,
    velocity_field,
)
from spinscore.physics.exact import LOG_4PI

__all__ = [
    "LikelihoodResult",
    "divergence_exact",
    "divergence_hutchinson",
    "explicit_divergence",
    "log_likelihood",
    "pairwise_control",
    "pf_ode_trajectory",
    "solve_likelihood",
    "tangent_frame",
    "velocity_field",
]

QUADRATURE_RULE = "gk21"  # scipy cubature rule for the divergence integral in u
# Default tolerance of that integral, nats per spin, on scipy's error estimate |K21 − G10|. That
# estimate is the error of the 10-point Gauss rule; the 21-point Kronrod result that is returned
# was 10-90x more accurate on thermal 30-spin chains of the quick model (0.0006-0.0027 nats in
# all against estimates of 0.009-0.059), so the actual error is well below 1e-3 nats per spin.
QUADRATURE_ATOL = 3e-3
MAX_SUBDIVISIONS = 64
PRIMAL_BUDGET = 40_000  # configurations × N² per primal pass of the quadrature's divergence
@dataclass(frozen=True)
class LikelihoodResult:
    """Output of `solve_likelihood`: log_p (B,) float64 nats; prior (B,) = −N_b ln 4π;
    delta (B,) the divergence integral ∫ div_M v dt (nats); error (B,) the quadrature's error
    estimate of delta (nats; NaN for the augmented integrator, whose error is controlled per
    step but not reported); nfe: network calls of the trajectory solve(s) (one per right-hand
    side evaluation); n_divergence: times at which the divergence was evaluated (each 2N
    Jacobian products per configuration, or n_probes for Hutchinson); correction (B,) the
    zero-time term added to log_p (nats), None without `zero_time`."""

    log_p: Tensor
    prior: Tensor
    delta: Tensor
    error: Tensor
    nfe: int
    n_divergence: int
    correction: Tensor | None = None


def solve_likelihood(
    model: nn.Module,
    spins: Tensor,
    types: Tensor,
    *,
    t_min: float,
    t_max: float,
    divergence: Literal["exact", "hutchinson"] = "exact",
    integrator: Literal["quadrature", "augmented"] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    log_p_atol: float | None = None,
    solver: str = "dopri5",
    rule: str = QUADRATURE_RULE,
    n_probes: int = 1,
    probe: Literal["rademacher", "gaussian"] = "rademacher",
    products: Literal["reverse", "forward"] = "reverse",
    chunk: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    zero_time: bool = False,
    control_variate: bool = True,
) -> LikelihoodResult:
    """log p_{t_min}(x) by the probability-flow ODE, with solver statistics (module docstring);
    with `zero_time`, log p_0(x) by the first-order heat-equation step from t_min to 0.

    spins: (B, N, 3) unit spins (anything on padding); types: (B, N) long, −1 on padding.
    The trajectory is integrated in u = ln t, float64, by torchdiffeq (`solver`, adaptive,
    rtol/atol on the spins in radians). ∫div along it (module docstring, "Integrators"):
    `integrator="quadrature"` (the default with the exact divergence, whose 2N products make an
    evaluation far dearer than a forward pass) by scipy's adaptive Gauss–Kronrod `cubature`
    (`rule`), to the absolute tolerance `log_p_atol` on its error estimate, default
    QUADRATURE_ATOL nats per spin of the largest chain; `"augmented"` (the default with
    Hutchinson, one probe costing about a forward pass) in the ODE state, error-controlled by
    the same solver with the absolute tolerance `log_p_atol`, default atol nats per spin, and no
    relative one. Hutchinson probes are drawn once from `generator` and kept along the
    trajectory (the integrand must be a deterministic function of (u, x)); for a model that
    gives the couplings its score is made of (`score_and_couplings`, one pass for both),
    `control_variate` adds `pairwise_control` to each estimate, which takes the probes' noise
    off the explicit part of the divergence (unbiased either way).
    Returns a `LikelihoodResult`; log_p (B,) float64 in nats.
    """
    if not 0 < t_min < t_max:
        raise ValueError(f"expected 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence: expected 'exact' or 'hutchinson', got {divergence!r}")
    if integrator is None:
        integrator = "quadrature" if divergence == "exact" else "augmented"
    if integrator not in ("quadrature", "augmented"):
        raise ValueError(f"integrator: expected 'quadrature' or 'augmented', got {integrator!r}")
    x0 = unit_state(spins, types)
    valid = types >= 0
    prior = -LOG_4PI * valid.sum(-1).to(torch.float64)
    noise = draw_probes(probe, n_probes, x0, generator) if divergence == "hutchinson" else None
    n_max = max(int(valid.sum(-1).max()), 1)

    def rate(x: Tensor, types_: Tensor, t: float | Tensor, noise_: Tensor | None):
        """(d∫div/du (B',), dx/du (B', N, 3)) at unit spins x (B', N, 3), times t."""
        valid_ = types_ >= 0
        if noise_ is None:
            return divergence_exact(velocity_field(model, types_, t, x.dtype), x, valid_,
                                    products=products, chunk=chunk)
        if not (control_variate and hasattr(model, "score_and_couplings")):
            return divergence_hutchinson(velocity_field(model, types_, t, x.dtype), x, valid_,
                                         noise_, products=products)
        coupled = velocity_field(model, types_, t, x.dtype, with_couplings=True)
        estimate, v, w = divergence_hutchinson(coupled, x, valid_, noise_, products=products,
                                               has_aux=True)
        return estimate + pairwise_control(w, x, valid_, t, noise_), v

    u_min, u_max = math.log(t_min), math.log(t_max)
    if integrator == "augmented":
        delta, nfe = _augmented(rate, x0, types, noise, u_min, u_max, rtol=rtol, atol=atol,
                                log_p_atol=atol * n_max if log_p_atol is None else log_p_atol,
                                solver=solver, progress=progress)
        error, n_div = torch.full_like(delta, math.nan), nfe
    else:
        delta, error, nfe, n_div = _quadrature(
            model, rate, x0, types, noise, u_min, u_max, rtol=rtol, atol=atol,
            explicit_atol=atol * n_max,
            log_p_atol=QUADRATURE_ATOL * n_max if log_p_atol is None else log_p_atol,
            solver=solver, rule=rule, progress=progress)
    correction = None
    if zero_time:  # f = −½ t s: −(t/2)(div s + |s|²) = div f − (2/t)|f|²
        div_f, f = rate(x0, types, t_min, noise)
        correction = (div_f - (2.0 / t_min) * (f**2).sum((-2, -1))).detach()
        n_div += 1
    log_p = prior + delta + (0.0 if correction is None else correction)
    return LikelihoodResult(log_p=log_p, prior=prior, delta=delta, error=error, nfe=nfe,
                            n_divergence=n_div, correction=correction)


def _augmented(rate, x0: Tensor, types: Tensor, noise: Tensor | None, u_min: float,
               u_max: float, *, rtol: float, atol: float, log_p_atol: float, solver: str,
               progress: bool) -> tuple[Tensor, int]:
    """∫div along the trajectory as a second ODE component: (delta (B,), NFE)."""
    bar = tqdm(total=round(u_max - u_min, 2), desc="log p", unit="ln t", disable=not progress,
               leave=False)
    nfe = 0

    def rhs(u: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        bar.update(max(0.0, round(float(u) - u_min, 2) - bar.n))
        x = state[0]
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        div, v = rate(x / r, types, math.exp(float(u)), noise)
        return r * v, div

    grid = torch.tensor([u_min, u_max], dtype=torch.float64, device=x0.device)
    with torch.no_grad():
        _, delta = odeint(rhs, (x0, x0.new_zeros(x0.shape[0])), grid, method=solver,
                          rtol=(rtol, 0.0), atol=(atol, log_p_atol))
    bar.close()
    return delta[-1], nfe


def _quadrature(model: nn.Module, rate, x0: Tensor, types: Tensor, noise: Tensor | None,
                u_min: float, u_max: float, *, rtol: float, atol: float, explicit_atol: float,
                log_p_atol: float, solver: str, rule: str, progress: bool
                ) -> tuple[Tensor, Tensor, int, int]:
    """∫div along the trajectory: the explicit part in the trajectory's ODE state (absolute
    tolerance explicit_atol, nats), the rest by adaptive Gauss–Kronrod quadrature in u to
    log_p_atol (module docstring, "Integrators").

    Each batch of new nodes costs one forward-only trajectory solve (the solver's dense output
    read at the nodes; only the first carries the explicit part and runs to u_max) and one
    batched divergence evaluation of all (node, configuration)
    pairs. Returns (delta (B,), error (B,) of the quadrature, NFE, number of nodes).
    """
    b, n, _ = x0.shape
    cache: dict[float, Tensor] = {}
    solves = {"nfe": 0, "explicit": None}  # the explicit part comes from the first solve
    group = max(1, PRIMAL_BUDGET // (n * n))  # configurations per divergence call
    bar = tqdm(desc="log p", unit="node", disable=not progress, leave=False)

    def integrand(points: np.ndarray) -> np.ndarray:  # (K, 1) values of u -> (K, B)
        keys = [round(float(u), 12) for u in points[:, 0]]
        new = sorted(set(keys) - cache.keys())
        if new:
            k, first = len(new), solves["explicit"] is None
            # the first solve runs to u_max for the explicit part; later ones stop at the nodes
            xs, explicit, nfe = trajectory(model, x0, types, [u_min, *new] + [u_max] * first,
                                            rtol=rtol, atol=atol, solver=solver,
                                            explicit_atol=explicit_atol if first else None)
            solves["nfe"] += nfe
            if first:
                solves["explicit"] = explicit
            flat_x = xs[1:k + 1].reshape(k * b, n, 3)
            flat_types = types.repeat(k, 1)
            flat_t = x0.new_tensor(new).exp().repeat_interleave(b)
            flat_noise = None if noise is None else noise.repeat(1, k, 1, 1)
            implicit = []
            for s in range(0, k * b, group):
                sl = slice(s, s + group)
                total = rate(flat_x[sl], flat_types[sl], flat_t[sl],
                             None if flat_noise is None else flat_noise[:, sl])[0]
                with torch.no_grad():
                    explicit = explicit_divergence(model, flat_x[sl], flat_types[sl], flat_t[sl])[1]
                implicit.append(total - explicit)
            for key, r in zip(new, torch.cat(implicit).reshape(k, b), strict=True):
                cache[key] = r
            bar.update(k)
        return torch.stack([cache[key] for key in keys]).cpu().numpy()

    res = cubature(integrand, [u_min], [u_max], rule=rule, atol=log_p_atol, rtol=0.0,
                   max_subdivisions=MAX_SUBDIVISIONS)
    bar.close()
    if res.status != "converged":
        warnings.warn(f"log p: divergence quadrature not converged after {MAX_SUBDIVISIONS} "
                      f"subdivisions (error estimate up to {float(np.max(res.error)):.3g} nats, "
                      f"tolerance {log_p_atol:.3g})", RuntimeWarning, stacklevel=3)
    as_tensor = partial(torch.as_tensor, dtype=torch.float64, device=x0.device)
    delta = solves["explicit"] + as_tensor(res.estimate)
    return delta, as_tensor(res.error), solves["nfe"], len(cache)


def log_likelihood(model: nn.Module, spins: Tensor, types: Tensor, **options) -> Tensor:
    """log p_0(x) ≈ log p_{t_min}(x) of a batch of configurations, (B,) float64, nats.

    spins: (B, N, 3) unit spins; types: (B, N) long, −1 on padding. `options` are those of
    `solve_likelihood` (t_min and t_max, the model's time range, are required; log p_{t_max} is
    taken uniform, −N ln 4π): the divergence ("exact" Riemannian trace or "hutchinson" with
    `n_probes` tangent probes from `generator`), the integrator ("quadrature" or "augmented"),
    the trajectory tolerances rtol/atol (radians), log_p_atol (nats), solver, rule, probe,
    products, chunk. Density w.r.t. the product of unit-sphere area measures; the batch shares
    the trajectory's adaptive steps and the quadrature nodes.
    """
    return solve_likelihood(model, spins, types, **options).log_p
