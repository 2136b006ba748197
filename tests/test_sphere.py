"""Tests of spinscore.geometry.sphere: exponential and logarithm maps, random rotations and
equivariance (the heat kernel and its exact sampler: test_heat_kernel.py)."""

from __future__ import annotations

import math

import pytest
import torch
from sphere_helpers import F64, gen, random_tangent

from spinscore.geometry import (
    exp_map,
    geodesic_angle,
    log_map,
    random_orthogonal,
    uniform_sphere,
)

PI = math.pi


# --------------------------------------------------------------------------------------------
# Exponential / logarithm maps
# --------------------------------------------------------------------------------------------
def test_exp_log_inverse_random():
    g = gen(0)
    x, y = uniform_sphere(2000, g, F64), uniform_sphere(2000, g, F64)
    v = log_map(x, y)
    assert torch.allclose(exp_map(x, v), y, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.vector_norm(v, dim=-1), geodesic_angle(x, y), atol=1e-13)
    assert (x * v).sum(-1).abs().max() < 1e-13
    # and the other way round, for tangent vectors of length < π
    w = random_tangent(x, torch.rand(2000, generator=g, dtype=F64) * (PI - 1e-3), g)
    assert torch.allclose(log_map(x, exp_map(x, w)), w, atol=1e-10, rtol=0)


@pytest.mark.parametrize("length", [1e-4, 1e-8, 1e-12, 1e-15])
def test_exp_log_nearly_identical(length):
    g = gen(1)
    x = uniform_sphere(500, g, F64)
    v = random_tangent(x, torch.full((500,), length, dtype=F64), g)
    y = exp_map(x, v)
    back = log_map(x, y)
    # round trip to round-off in absolute terms (y itself only stores x + v to ~eps)
    assert torch.allclose(back, v, atol=1e-15, rtol=0)
    assert (x * back).sum(-1).abs().max() < 1e-15 * length
    assert torch.allclose(geodesic_angle(x, y), torch.full((500,), length, dtype=F64),
                          atol=1e-15, rtol=0)
    assert torch.equal(log_map(x, x), torch.zeros_like(x))
    assert torch.equal(exp_map(x, torch.zeros_like(x)), x / x.norm(dim=-1, keepdim=True))
    # full relative precision where the input points are exact: x = e_z, y at angle δ
    phi = torch.rand(500, generator=g, dtype=F64) * 2 * PI
    d = torch.tensor(length, dtype=F64)
    ez = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(500, 3)
    y = torch.stack([torch.sin(d) * torch.cos(phi), torch.sin(d) * torch.sin(phi),
                     torch.cos(d).expand(500)], -1)
    want = torch.stack([d * torch.cos(phi), d * torch.sin(phi), torch.zeros(500, dtype=F64)], -1)
    assert ((log_map(ez, y) - want).norm(dim=-1) / length).max() < 1e-12
    assert ((geodesic_angle(ez, y) - length).abs() / length).max() < 1e-14


@pytest.mark.parametrize("gap", [1e-3, 1e-6, 1e-9, 1e-12, 0.0])
def test_log_nearly_antipodal(gap):
    g = gen(2)
    x = uniform_sphere(500, g, F64)
    y = -x if gap == 0.0 else exp_map(x, random_tangent(x, torch.full((500,), PI - gap,
                                                                           dtype=F64), g))
    v = log_map(x, y)
    assert torch.isfinite(v).all()
    theta = geodesic_angle(x, y)
    assert torch.allclose(theta, torch.full_like(theta, PI - gap), atol=1e-10, rtol=0)
    assert torch.allclose(v.norm(dim=-1), theta, atol=1e-10, rtol=0)
    assert (x * v).sum(-1).abs().max() < 1e-10  # tangent even when the direction is arbitrary
    assert torch.allclose(exp_map(x, v), y, atol=1e-7, rtol=0)


def test_geodesic_angle_matches_arccos():
    g = gen(3)
    x, y = uniform_sphere(5000, g, F64), uniform_sphere(5000, g, F64)
    c = (x * y).sum(-1)
    ok = c.abs() < 0.9  # arccos is well conditioned here
    assert ok.sum() > 3000
    assert torch.allclose(geodesic_angle(x, y)[ok], torch.arccos(c[ok]), atol=1e-13, rtol=0)
    assert geodesic_angle(x, x).abs().max() == 0
    assert torch.allclose(geodesic_angle(x, -x), torch.full((5000,), PI, dtype=F64))


def test_float32_maps():
    g = gen(4)
    x, y = uniform_sphere(100, g, torch.float32), uniform_sphere(100, g, torch.float32)
    v = log_map(x, y)
    assert v.dtype == torch.float32 and exp_map(x, v).dtype == torch.float32
    assert torch.allclose(exp_map(x, v), y, atol=1e-5)
    assert log_map(x, -x).isfinite().all()


# --------------------------------------------------------------------------------------------
# Random orthogonal matrices and equivariance
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("proper", [None, True, False])
def test_random_orthogonal(proper):
    q = random_orthogonal(400, proper=proper, generator=gen(5), dtype=F64)
    assert q.shape == (400, 3, 3)
    eye = torch.eye(3, dtype=F64).expand(400, 3, 3)
    assert torch.allclose(q.transpose(-1, -2) @ q, eye, atol=1e-13)
    det = torch.linalg.det(q)
    assert torch.allclose(det.abs(), torch.ones(400, dtype=F64), atol=1e-12)
    n_pos = int((det > 0).sum())
    if proper is True:
        assert n_pos == 400
    elif proper is False:
        assert n_pos == 0
    else:
        assert 140 < n_pos < 260  # Binomial(400, 1/2)
    # Haar: E[Q] = 0 (the first column is uniform on the sphere)
    assert q.mean(0).abs().max() < 0.15


def test_exp_log_equivariance():
    g = gen(6)
    qs = torch.cat([random_orthogonal(10, True, g, F64), random_orthogonal(10, False, g, F64)])
    x, y = uniform_sphere((20, 50), g, F64), uniform_sphere((20, 50), g, F64)
    v = random_tangent(x, torch.rand(20, 50, generator=g, dtype=F64) * 3.0, g)

    def rot(a):
        return torch.einsum("bij,bnj->bni", qs, a)

    assert torch.allclose(log_map(rot(x), rot(y)), rot(log_map(x, y)), atol=1e-10, rtol=0)
    assert torch.allclose(exp_map(rot(x), rot(v)), rot(exp_map(x, v)), atol=1e-10, rtol=0)
    assert torch.allclose(geodesic_angle(rot(x), rot(y)), geodesic_angle(x, y), atol=1e-12)
