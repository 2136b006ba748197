"""Geometry of the unit sphere S²: tangent projection, geodesic angle, exp/log maps,
uniform points, random O(3) elements (the heat kernel of Brownian motion on it is in
`heat_kernel`).

Conventions
-----------
* Points are unit vectors in R³, stored in the last axis: shape ``(..., 3)``. Tangent vectors
  at ``x`` are vectors ``v`` with ``x·v = 0``, same shape. Angles are in radians.
* Brownian motion has generator ½Δ (Δ the Laplace–Beltrami operator), so diffusion time
  ``t = σ²`` and, for small ``t``, the displacement is a 2-d Gaussian of variance ``t`` per
  tangent direction. The transition density w.r.t. the area element of the unit sphere is

      p_t(θ) = Σ_l (2l+1)/(4π) · exp(−l(l+1) t/2) · P_l(cos θ),       ∫_{S²} p_t dA = 1,

  with θ the geodesic angle between start and end point.
* All functions are pure torch, work for float32 and float64 and any batch shape. The heat
  kernel functions compute internally in float64 and return the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["exp_map", "geodesic_angle", "log_map", "pairwise_field", "random_orthogonal",
           "tangent_project", "uniform_sphere"]

def dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


def sinc(z: Tensor) -> Tensor:
    """sin(z)/z (unnormalised), 1 at 0."""
    return torch.sinc(z / math.pi)


# --------------------------------------------------------------------------------------------
# Basic geometry
# --------------------------------------------------------------------------------------------
def tangent_project(x: Tensor, v: Tensor) -> Tensor:
    """Orthogonal projection onto the tangent plane at ``x``: P_x v = v − (x·v) x.

    x: unit vectors ``(..., 3)``; v: vectors ``(..., 3)`` (broadcastable). Returns ``(..., 3)``.
    """
    return v - dot(x, v) * x


def geodesic_angle(x: Tensor, y: Tensor) -> Tensor:
    """Geodesic (great-circle) angle between unit vectors, in radians, shape ``(...)``.

    Uses θ = 2·atan2(|x − y|, |x + y|), accurate to machine precision for all θ ∈ [0, π]
    (``arccos(x·y)`` loses half the digits near 0 and π).
    """
    return 2.0 * torch.atan2(torch.linalg.vector_norm(x - y, dim=-1),
                             torch.linalg.vector_norm(x + y, dim=-1))


def exp_map(x: Tensor, v: Tensor) -> Tensor:
    """Riemannian exponential: the point reached from unit ``x`` along tangent ``v`` (radians).

    exp_x(v) = cos|v| x + (sin|v|/|v|) v, evaluated with sinc so that it is exact and smooth as
    |v| → 0. ``v`` is assumed tangent (not projected); the result is renormalised to unit length
    to stop round-off drift. Shapes ``(..., 3)`` (broadcastable) → ``(..., 3)``.
    """
    n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    y = torch.cos(n) * x + sinc(n) * v
    return y / torch.linalg.vector_norm(y, dim=-1, keepdim=True)


def log_map(x: Tensor, y: Tensor) -> Tensor:
    """Riemannian logarithm: tangent vector at ``x`` pointing to ``y``, length = geodesic angle.

    x, y: unit vectors ``(..., 3)``. Returns ``(..., 3)`` tangent at ``x`` with norm
    θ = geodesic_angle(x, y) ∈ [0, π]. The direction is P_x(y − x)/|P_x(y − x)|, which keeps full
    relative precision as θ → 0 (log → y − x). Near θ = π the direction is ill-conditioned
    (relative error ~ eps/sin θ). When ``y`` is antipodal to working precision
    (|P_x(y − x)| ≤ 16·eps), we return θ times a deterministic unit tangent vector at ``x``
    (the projection of the coordinate axis least aligned with ``x``): any direction is a valid
    minimising geodesic there, and ``exp_map(x, log_map(x, y)) = y`` still holds.
    """
    d = y - x
    v = d - dot(x, d) * x
    v = v - dot(x, v) * x  # second pass: tangency to round-off even for |x| != 1 exactly
    n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    theta = geodesic_angle(x, y).unsqueeze(-1)
    eps = torch.finfo(v.dtype).eps
    # fallback direction: the coordinate axis least aligned with x, projected and normalised
    axis = torch.nn.functional.one_hot(x.abs().argmin(dim=-1), 3).to(x.dtype)
    e = axis - dot(x, axis) * x
    e = e / torch.linalg.vector_norm(e, dim=-1, keepdim=True)
    antipodal = (n <= 16 * eps) & (theta > 1.0)
    direction = torch.where(antipodal, e, v / n.clamp_min(torch.finfo(v.dtype).tiny))
    return theta * direction


def uniform_sphere(shape: int | tuple[int, ...], generator: torch.Generator | None = None,
                   dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Independent uniform points on S², shape ``(*shape, 3)`` (normalised Gaussians)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    g = torch.randn(*shape, 3, generator=generator, dtype=dtype or torch.get_default_dtype(),
                    device=device)
    n = torch.linalg.vector_norm(g, dim=-1, keepdim=True)
    # a zero Gaussian has probability 0; map it to the north pole rather than NaN
    g = torch.where(n > 0, g, torch.tensor([0.0, 0.0, 1.0], dtype=g.dtype, device=g.device))
    return g / n.clamp_min(torch.finfo(g.dtype).tiny)


def random_orthogonal(n: int, proper: bool | None = None,
                      generator: torch.Generator | None = None,
                      dtype: torch.dtype | None = None, device=None) -> Tensor:
    """``n`` Haar-random 3×3 orthogonal matrices, shape ``(n, 3, 3)``; act as ``x @ Q.T``.

    proper=None: Haar on O(3) (det ±1 with probability ½ each); True: Haar on SO(3) (det +1);
    False: Haar on the reflection coset (det −1). QR of a Gaussian matrix with the signs of
    diag(R) absorbed into Q is Haar on O(3) (Mezzadri 2007); multiplying the unwanted coset by
    diag(1, 1, −1) on the right is measure-preserving.
    """
    dtype = dtype or torch.get_default_dtype()
    a = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64, device=device)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    if proper is not None:
        det = torch.linalg.det(q)
        flip = (det < 0) if proper else (det > 0)
        q[..., :, 2] = torch.where(flip.unsqueeze(-1), -q[..., :, 2], q[..., :, 2])
    return q.to(dtype)


def pairwise_field(w: Tensor, spins: Tensor) -> tuple[Tensor, Tensor]:
    """The score of couplings W held fixed, and its Riemannian divergence.

    w: (B, N, N) symmetric, zero diagonal and zero on padding; spins: (B, N, 3) unit vectors.
    Returns (score (B, N, 3) = P_i sum_j W_ij S_j, div (B,) = -2 sum_ij W_ij S_i . S_j): along
    the tangent frame of S_i, D_e P_i = -(e S_i^T + S_i e^T) gives -2 S_i . h_i, and h_i does not
    depend on S_i (W_ii = 0). With W depending on the configuration, this is the explicit part
    of the divergence (diffusion.likelihood).
    """
    h = w @ spins  # (B, N, 3): sum_j W_ij S_j
    return tangent_project(spins, h), -2.0 * (h * spins).sum(dim=(1, 2))
