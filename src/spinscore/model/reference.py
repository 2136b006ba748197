"""A plain implementation of the same network, for tests and benchmarks: the pair update
concatenates (s_i, s_j) into a (B, N, N, 2 c_s) tensor as the published code does. Weights are
shared with the fast module, so both compute the same function."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from spinscore.model.layers import OuterSum


class ConcatOuterSum(nn.Module):
    def __init__(self, fast: OuterSum):
        super().__init__()
        self.norm = fast.norm
        self.weight = nn.Parameter(torch.cat([fast.left.weight, fast.right.weight], dim=1))
        self.bias = nn.Parameter(fast.left.bias.detach().clone())

    def forward(self, s: Tensor, index: Tensor | None = None) -> Tensor:
        """s: (B, N, c_s); index: None (dense) or (N, K) neighbour lists. Returns (B, N, N,
        c_z) or (B, N, K, c_z)."""
        s = self.norm(s)
        n = s.shape[1]
        partner = s[:, None, :, :].expand(-1, n, -1, -1) if index is None else s[:, index]
        pair = torch.cat([s[:, :, None, :].expand_as(partner), partner], dim=-1)  # (.., 2c_s)
        return pair @ self.weight.T + self.bias


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of a ScoreModel whose pair updates use the concatenation."""
    plain = copy.deepcopy(model)
    for block in plain.trunk.blocks:
        block.outer_sum = ConcatOuterSum(block.outer_sum)
    return plain
