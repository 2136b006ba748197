"""Helpers shared by the sphere and heat-kernel tests."""

from __future__ import annotations

import torch

from spinscore.geometry.sphere import tangent_project

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_tangent(x: torch.Tensor, scale: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Tangent vectors at x with norms ``scale`` (broadcast over the batch)."""
    v = tangent_project(x, torch.randn(x.shape, generator=g, dtype=x.dtype))
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True) * scale[..., None]
