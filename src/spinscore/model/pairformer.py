"""Pairformer-style trunk (after AlphaFold 3, reduced): one residual line per sub-block."""

from __future__ import annotations

from torch import Tensor, nn

from spinscore.model.layers import OuterSum, PairBiasedAttention, Transition


class PairformerBlock(nn.Module):
    def __init__(self, c_s: int, c_z: int, heads: int, transition: int):
        super().__init__()
        self.outer_sum = OuterSum(c_s, c_z)
        self.pair_transition = Transition(c_z, transition)
        self.attention = PairBiasedAttention(c_s, c_z, heads)
        self.single_transition = Transition(c_s, transition)

    def forward(self, s: Tensor, z: Tensor, key_bias: Tensor, index: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """s: (B, N, c_s); dense: z (B, N, N, c_z), key_bias (B, 1, 1, N); on neighbour lists:
        z (B, N, K, c_z), key_bias (B, 1, N, K), index (N, K) (see `layers`).

        The single track is updated first and then written into the pair track, so that every
        sub-block of the last block still reaches the pair-only output head."""
        s = s + self.attention(s, z, key_bias, index)
        s = s + self.single_transition(s)
        z = z + self.outer_sum(s, index)
        z = z + self.pair_transition(z)
        return s, z


class Pairformer(nn.Module):
    def __init__(self, c_s: int, c_z: int, blocks: int, heads: int, transition: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            PairformerBlock(c_s, c_z, heads, transition) for _ in range(blocks)
        )

    def forward(self, s: Tensor, z: Tensor, key_bias: Tensor, index: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """The blocks in turn; shapes as `PairformerBlock.forward`."""
        for block in self.blocks:
            s, z = block(s, z, key_bias, index)
        return s, z
