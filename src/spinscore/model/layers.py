"""Building blocks of the score network: time embedding, invariant pair features, transitions,
pair-biased attention. Shapes: B batch, N sites, c_s single channels, c_z pair channels.

The pair track is dense, z (B, N, N, c_z), or restricted to neighbour lists (the cutoff pair
track, `model.neighbours`): z (B, N, K, c_z) with z[:, i, k] the pair (i, index[i, k]) for an
(N, K) `index`. The pair layers take `index=None` for the dense track.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TimeEmbedding(nn.Module):
    """Fourier features of log t followed by an MLP: (B,) diffusion times -> (B, dim).

    log t, because the times that matter span four decades (1e-4 .. 5); frequencies
    pi/16 * 2^k for k < n_freq, so the slowest period (32 in ln t) covers the whole range and
    the fastest (64 / 2^n_freq) limits how quickly the output can change with t."""

    def __init__(self, dim: int, n_freq: int = 4):
        super().__init__()
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freq) * (math.pi / 16.0),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * n_freq + 1, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        u = torch.log(t)[:, None]  # (B, 1)
        phase = u * self.freqs  # (B, n_freq)
        return self.mlp(torch.cat([u / 4.0, torch.sin(phase), torch.cos(phase)], dim=-1))


class Transition(nn.Module):
    """Residual MLP update: x -> W2 act(W1 LN(x)), hidden width factor * dim."""

    def __init__(self, dim: int, factor: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, factor * dim)
        self.down = nn.Linear(factor * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(self.norm(x))))


class OuterSum(nn.Module):
    """Pair update from the single representation: z_ij += A s_i + B s_j + b.

    Equal to a Linear on concat(s_i, s_j) (B, N, N, 2 c_s) without ever building it: two
    (B, N, c_z) projections broadcast into the pair tensor."""

    def __init__(self, c_s: int, c_z: int):
        super().__init__()
        self.norm = nn.LayerNorm(c_s)
        self.left = nn.Linear(c_s, c_z)
        self.right = nn.Linear(c_s, c_z, bias=False)

    def forward(self, s: Tensor, index: Tensor | None = None) -> Tensor:
        """s: (B, N, c_s); index: None or (N, K) in [0, N). Returns (B, N, N, c_z), or
        (B, N, K, c_z) on the neighbour lists."""
        s = self.norm(s)
        if index is None:
            return self.left(s)[:, :, None, :] + self.right(s)[:, None, :, :]  # (B, N, N, c_z)
        return self.left(s)[:, :, None, :] + self.right(s)[:, index]


def neighbour_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, index: Tensor) -> Tensor:
    """Scaled dot-product attention of each site over its neighbour list only.

    q, k, v: (B, H, N, d); bias: (B, H, N, K) additive, very negative on padding slots;
    index: (N, K) in [0, N), the keys of each query. Returns (B, H, N, d)."""
    k, v = k[:, :, index], v[:, :, index]  # (B, H, N, K, d)
    logits = torch.einsum("bhnd,bhnkd->bhnk", q, k) / math.sqrt(q.shape[-1]) + bias
    return torch.einsum("bhnk,bhnkd->bhnd", logits.softmax(dim=-1), v)


class PairBiasedAttention(nn.Module):
    """Multi-head self-attention on the single representation with a per-head bias from the
    pair representation; keys on padding are masked out. Dense: PyTorch's fused
    scaled_dot_product_attention with the bias as an additive float mask; on neighbour lists
    each site attends to its list only."""

    def __init__(self, c_s: int, c_z: int, heads: int):
        super().__init__()
        if c_s % heads:
            raise ValueError(f"single_dim {c_s} must be divisible by heads {heads}")
        self.heads = heads
        self.norm_s = nn.LayerNorm(c_s)
        self.norm_z = nn.LayerNorm(c_z)
        self.qkv = nn.Linear(c_s, 3 * c_s, bias=False)
        self.bias = nn.Linear(c_z, heads, bias=False)
        self.gate = nn.Linear(c_s, c_s)
        self.out = nn.Linear(c_s, c_s)

    def forward(self, s: Tensor, z: Tensor, key_bias: Tensor, index: Tensor | None = None
                ) -> Tensor:
        """s: (B, N, c_s). Dense (index None): z (B, N, N, c_z), key_bias (B, 1, 1, N), 0 on
        sites, -inf-like on padding. Neighbour lists: z (B, N, K, c_z), key_bias (B, 1, N, K),
        index (N, K) in [0, N). Returns the update (B, N, c_s)."""
        b, n, c = s.shape
        x = self.norm_s(s)
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias(self.norm_z(z)).permute(0, 3, 1, 2) + key_bias  # (B, H, N, N or K)
        if index is None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, N, c/H)
        else:
            o = neighbour_attention(q, k, v, bias, index)
        o = o.transpose(1, 2).reshape(b, n, c)
        return self.out(torch.sigmoid(self.gate(x)) * o)
