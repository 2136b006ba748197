"""Building blocks of the score network: time embedding, invariant pair features, transitions,
pair-biased attention. Shapes: B batch, N sites, c_s single channels, c_z pair channels."""

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

    def forward(self, s: Tensor) -> Tensor:
        s = self.norm(s)
        return self.left(s)[:, :, None, :] + self.right(s)[:, None, :, :]  # (B, N, N, c_z)


class PairBiasedAttention(nn.Module):
    """Multi-head self-attention on the single representation with a per-head bias from the
    pair representation; keys on padding are masked out. Uses PyTorch's fused
    scaled_dot_product_attention with the bias as an additive float mask."""

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

    def forward(self, s: Tensor, z: Tensor, key_bias: Tensor) -> Tensor:
        """s: (B, N, c_s); z: (B, N, N, c_z); key_bias: (B, 1, 1, N), 0 on sites, -inf-like on
        padding. Returns the update (B, N, c_s)."""
        b, n, c = s.shape
        x = self.norm_s(s)
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias(self.norm_z(z)).permute(0, 3, 1, 2) + key_bias  # (B, H, N, N)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, N, c/H)
        o = o.transpose(1, 2).reshape(b, n, c)
        return self.out(torch.sigmoid(self.gate(x)) * o)
