"""The authors' published network ("Mini-AF3", Xi & Chen 2026), written from its description
(SPEC §8b) so that its released state dicts load into it and every analysis can read it.

Differences from `ScoreModel`: t enters raw, as a (B, 1) input to a Linear-GELU-Linear MLP;
the position and |i - j| embeddings have 100 rows; the pair update is a Linear on
[s_i || s_j] with no pre-norm; no transitions on the single track, no attention gate; no
output preconditioning (W is the network's output as it is).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spinscore.geometry.sphere import tangent_project

# The released checkpoints: the paper's widths and depth (116,369 parameters).
PUBLISHED_DIMS = {"n_types": 2, "max_length": 100, "c_s": 64, "c_z": 32, "blocks": 4, "heads": 4}
_MASKED = -1e9

# What the released checkpoints were trained on (SPEC §2-3, §7b): the paper's system and REMC
# schedule, t ~ U[1e-4, 1] with the loss weighted by t. A state dict carries none of this, so
# it is stated here; `load_model` gives it as the checkpoint's config.
PUBLISHED_RUN_CONFIG = {
    "system": {"types": ["A", "B"],
               "couplings": {1: {"AA": 1.0, "AB": 0.8, "BB": 0.5},
                             2: {"AA": -0.45, "AB": -0.35, "BB": -0.25}},
               "length": [20, 50], "temperature": 0.05},
    "simulation": {"sequences": 40000, "snapshots": 10, "replicas": 16, "t_max": 5.0,
                   "burn_in": 2000, "thinning": 100, "swap_every": 10},
    "model": {"single_dim": 64, "pair_dim": 32, "blocks": 4, "heads": 4, "max_length": 100,
              "output_scaling": "constant"},
    "diffusion": {"t_min": 1e-4, "t_max": 1.0, "weighting": "paper", "antithetic": False,
                  "t_sampling": [{"weight": 1.0, "low": 1e-4, "high": 1.0, "kind": "uniform"}]},
    "train": {"samples": 800000, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4},
}


class PublishedBlock(nn.Module):
    def __init__(self, c_s: int, c_z: int, heads: int):
        super().__init__()
        self.heads = heads
        self.s_to_z = nn.Linear(2 * c_s, c_z)
        self.z_mlp = nn.Sequential(nn.Linear(c_z, 2 * c_z), nn.GELU(), nn.Linear(2 * c_z, c_z))
        self.qkv = nn.Linear(c_s, 3 * c_s)
        self.z_to_bias = nn.Linear(c_z, heads)
        self.attn_out = nn.Linear(c_s, c_s)
        self.norm_s = nn.LayerNorm(c_s)
        self.norm_z = nn.LayerNorm(c_z)

    def forward(self, s: Tensor, z: Tensor, key_bias: Tensor) -> tuple[Tensor, Tensor]:
        """s (B, N, c_s), z (B, N, N, c_z), key_bias (B, 1, 1, N) -> updated (s, z)."""
        b, n, c = s.shape
        # Linear([s_i || s_j]) without building the (B, N, N, 2 c_s) tensor
        w_i, w_j = self.s_to_z.weight[:, :c], self.s_to_z.weight[:, c:]
        z = z + (s @ w_i.T)[:, :, None, :] + (s @ w_j.T)[:, None, :, :] + self.s_to_z.bias
        z = z + self.z_mlp(self.norm_z(z))
        q, k, v = self.qkv(self.norm_s(s)).chunk(3, dim=-1)  # (B, N, c_s) each
        q, k, v = (x.view(b, n, self.heads, c // self.heads).transpose(1, 2) for x in (q, k, v))
        bias = self.z_to_bias(z).permute(0, 3, 1, 2) + key_bias  # (B, H, N, N)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # softmax(qk^T/sqrt(d) + bias)
        s = s + self.attn_out(o.transpose(1, 2).reshape(b, n, c))
        return s, z


class PublishedMiniAF3(nn.Module):
    """The published Mini-AF3 with the released key names (seq_emb, pos_emb, time_emb,
    dist_emb, inner_prod_proj, blocks.K.*, weight_head). Same interface as `ScoreModel`:
    `couplings(spins, types, t)` -> W (B, N, N) and `forward` -> score (B, N, 3)."""

    def __init__(self, n_types: int = 2, max_length: int = 100, c_s: int = 64, c_z: int = 32,
                 blocks: int = 4, heads: int = 4):
        super().__init__()
        self.n_types, self.max_length = n_types, max_length
        self.seq_emb = nn.Embedding(n_types, c_s)
        self.pos_emb = nn.Embedding(max_length, c_s)
        self.time_emb = nn.Sequential(nn.Linear(1, c_s), nn.GELU(), nn.Linear(c_s, c_s))
        self.dist_emb = nn.Embedding(max_length, c_z)
        self.inner_prod_proj = nn.Linear(1, c_z)
        self.blocks = nn.ModuleList(PublishedBlock(c_s, c_z, heads) for _ in range(blocks))
        self.weight_head = nn.Sequential(nn.LayerNorm(c_z), nn.Linear(c_z, c_z), nn.GELU(),
                                         nn.Linear(c_z, 1))

    def couplings(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        """W (B, N, N): symmetric, zero diagonal, zero on padding. spins (B, N, 3); types
        (B, N) int, -1 on padding; t (B,) diffusion times (fed to the network as (B, 1))."""
        b, n, _ = spins.shape
        mask = types >= 0
        idx = torch.arange(n, device=spins.device)
        s = (self.seq_emb(types.clamp(min=0)) + self.pos_emb(idx)[None]
             + self.time_emb(t.reshape(b, 1).to(spins.dtype))[:, None, :])
        sep = (idx[:, None] - idx[None, :]).abs().clamp(max=self.dist_emb.num_embeddings - 1)
        gram = spins @ spins.transpose(1, 2)
        z = self.dist_emb(sep)[None] + self.inner_prod_proj(gram[..., None])
        key_bias = torch.where(mask, 0.0, _MASKED).to(s.dtype)[:, None, None, :]
        for block in self.blocks:
            s, z = block(s, z, key_bias)
        w = self.weight_head(z).squeeze(-1)
        w = 0.5 * (w + w.transpose(1, 2))
        keep = mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool,
                                                                  device=spins.device)
        return w * keep

    def score_and_couplings(self, spins: Tensor, types: Tensor, t: Tensor
                            ) -> tuple[Tensor, Tensor]:
        """(score (B, N, 3), W (B, N, N)) from one pass: `forward` and `couplings` together."""
        w = self.couplings(spins, types, t)
        return tangent_project(spins, w @ spins), w

    def forward(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        """Score (B, N, 3) = P_i sum_j W_ij S_j: tangent, zero on padding."""
        return self.score_and_couplings(spins, types, t)[0]


def is_published_system(system) -> bool:
    """Whether a SystemConfig is the one the released checkpoints were trained on (types,
    couplings, temperature): only then can a published network be compared on its data."""
    from spinscore.config import parse_config

    theirs = parse_config(PUBLISHED_RUN_CONFIG, "published Mini-AF3 config").system
    return (system.types == theirs.types and system.temperature == theirs.temperature
            and np.array_equal(system.coupling_table(), theirs.coupling_table()))


def is_published_state_dict(state) -> bool:
    """A plain state dict with the released Mini-AF3 key names."""
    return (isinstance(state, dict) and "seq_emb.weight" in state
            and "weight_head.3.weight" in state
            and all(isinstance(v, Tensor) for v in state.values()))


def published_from_state_dict(state: dict[str, Tensor]) -> PublishedMiniAF3:
    """Build the network whose sizes the state dict implies and load it (strict)."""
    n_types, c_s = state["seq_emb.weight"].shape
    max_length = state["pos_emb.weight"].shape[0]
    c_z = state["dist_emb.weight"].shape[1]
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    heads = state["blocks.0.z_to_bias.weight"].shape[0]
    model = PublishedMiniAF3(n_types, max_length, c_s, c_z, blocks, heads)
    model.load_state_dict(state)
    return model.eval()
