"""The probability-flow ODE on (S^2)^N in u = ln t: one definition of its right-hand side,
shared by the likelihood (forwards, towards the prior) and generation (backwards).

dx/du = -1/2 t s(x, t), integrated with the 1-homogeneous extension x -> |x| v(x/|x|) so that
the adaptive solver's stages may leave the sphere without changing the field's direction
(`likelihood` module docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from spinscore.geometry.sphere import pairwise_field

Field = Callable[[Tensor], Tensor]  # (B, N, 3) unit spins -> (B, N, 3) tangent velocity


def network_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    return default if param is None else param.dtype


def velocity_field(model: nn.Module, types: Tensor, t: float | Tensor, dtype: torch.dtype, *,
                   with_couplings: bool = False) -> Callable:
    """The probability-flow velocity in u = ln t: y ↦ dx/du = −½ t s_θ(y, t).

    types: (B, N) long, −1 on padding; t: diffusion time, a scalar or one per configuration
    (B,). The returned function maps unit spins (B, N, 3) of any float dtype to (B, N, 3) in
    that dtype (units rad per unit of u), tangent at y and zero on padding; the network runs in
    its own parameter dtype. `with_couplings`: for a model with `score_and_couplings`, the
    function returns (velocity, W (B, N, N) in y's dtype), the couplings the score is made of,
    from the same pass.
    """
    t_batch = torch.as_tensor(t, dtype=dtype, device=types.device).expand(types.shape[0])
    scale = (-0.5 * t_batch)[:, None, None]
    model_dtype = network_dtype(model, dtype)

    def field(y: Tensor):
        y_net, t_net = y.to(model_dtype), t_batch.to(model_dtype)
        if with_couplings:
            s, w = model.score_and_couplings(y_net, types, t_net)
            return scale.to(y.dtype) * s.to(y.dtype), w.to(y.dtype)
        return scale.to(y.dtype) * model(y_net, types, t_net).to(y.dtype)

    return field


def unit_state(spins: Tensor, types: Tensor) -> Tensor:
    """float64 unit spins with padding replaced by the north pole (its field is zero)."""
    x = spins.detach().to(torch.float64)
    north = torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
    x = torch.where((types >= 0)[..., None], x, north)
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def pf_ode_trajectory(model: nn.Module, x0: Tensor, types: Tensor, u_grid, *, rtol: float,
                      atol: float, solver: str = "dopri5") -> Tensor:
    """Probability-flow trajectory on (S²)^N in u = ln t, read at the times of `u_grid`.

    x0: (B, N, 3) unit spins at u_grid[0]; types: (B, N), −1 on padding; u_grid: increasing
    (towards the prior) or decreasing (generation) values of ln t. Adaptive `solver` with rtol,
    atol on the spins (radians), 1-homogeneous extension (module docstring). Returns
    (len(u_grid), B, N, 3) float64 unit spins (padding: the north pole).
    """
    return trajectory(model, unit_state(x0, types), types, u_grid, rtol=rtol, atol=atol,
                       solver=solver)[0]


def explicit_divergence(model: nn.Module, x: Tensor, types: Tensor, t: float | Tensor
                        ) -> tuple[Tensor, Tensor]:
    """(dx/du (B, N, 3), the explicit part of d(∫div)/du (B,)) at unit spins x, one forward pass.

    For a model with couplings W (score_i = P_i Σ_j W_ij x_j, W symmetric, zero diagonal), the
    velocity is −½ t P_i (W x)_i and the explicit part, its divergence with W held fixed
    (`pairwise_field`), is t Σ_ij W_ij x_i·x_j (module docstring); other models:
    velocity_field and zero.
    """
    if not hasattr(model, "couplings"):
        return velocity_field(model, types, t, x.dtype)(x), x.new_zeros(x.shape[0])
    w, t_batch = network_couplings(model, x, types, t)
    score, div = pairwise_field(w, x)
    return (-0.5 * t_batch)[:, None, None] * score, -0.5 * t_batch * div


def network_couplings(model: nn.Module, x: Tensor, types: Tensor, t: float | Tensor
                      ) -> tuple[Tensor, Tensor]:
    """(W (B, N, N), t (B,)) in the dtype of x: the model's couplings at unit spins x (B, N, 3),
    the network run in its own parameter dtype as in `velocity_field`."""
    t_batch = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
    model_dtype = network_dtype(model, x.dtype)
    w = model.couplings(x.to(model_dtype), types, t_batch.to(model_dtype)).to(x.dtype)
    return w, t_batch


def trajectory(model: nn.Module, x0: Tensor, types: Tensor, u_grid, *, rtol: float,
                atol: float, solver: str, explicit_atol: float | None = None
                ) -> tuple[Tensor, Tensor | None, int]:
    """`pf_ode_trajectory` from float64 unit spins x0: (spins at u_grid, the explicit part of
    ∫div from u_grid[0] to u_grid[-1] (B,) when explicit_atol is given (its absolute
    tolerance, nats) else None, number of network calls)."""
    nfe = 0
    u_lo, u_hi = float(min(u_grid)), float(max(u_grid))
    margin = max(u_hi - u_lo, 1.0)

    def rhs(u: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        nonlocal nfe
        nfe += 1
        x = state[0]
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        # adaptive steps overshoot the last node and interpolate back (torchdiffeq); a wild
        # step of an untrained model can overshoot by hundreds of e-folds (exp overflows), so
        # time is held within one grid length of the grid
        t = math.exp(min(max(float(u), u_lo - margin), u_hi + margin))
        if explicit_atol is None:
            return (r * velocity_field(model, types, t, x.dtype)(x / r),)
        velocity, explicit = explicit_divergence(model, x / r, types, t)
        return r * velocity, explicit

    grid = torch.as_tensor(np.asarray(u_grid, dtype=float), dtype=torch.float64, device=x0.device)
    state, tols = (x0,), {"rtol": rtol, "atol": atol}
    if explicit_atol is not None:
        state = (x0, x0.new_zeros(x0.shape[0]))
        tols = {"rtol": (rtol, 0.0), "atol": (atol, explicit_atol)}
    with torch.no_grad():
        out = odeint(rhs, state, grid, method=solver, **tols)
    xs = out[0]
    explicit = None if explicit_atol is None else out[1][-1] - out[1][0]
    return xs / torch.linalg.vector_norm(xs, dim=-1, keepdim=True), explicit, nfe
