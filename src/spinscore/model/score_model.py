"""The score network ("Mini-AF3", SPEC §5): invariants in, couplings W_ij out, equivariant
tangent score by construction.

    score_i = P_i sum_j W_ij S_j,   P_i = I - S_i S_i^T,   W = W^T, W_ii = 0

W depends on the spins only through the Gram matrix S_i . S_j, so W is O(3)-invariant and the
score is O(3)-equivariant, tangent, free of self-forces, and has zero total torque
sum_i S_i x score_i = sum_ij W_ij S_i x S_j = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spinscore.config import ModelConfig
from spinscore.geometry.sphere import pairwise_field
from spinscore.model.layers import TimeEmbedding
from spinscore.model.pairformer import Pairformer
from spinscore.systems import Chain, SpinSystem

_MASKED = -1e9  # additive attention bias on padding keys (finite: no NaN in softmax)


class ScoreModel(nn.Module):
    """Score network for samples of up to `max_length` sites of `n_types` types.

    `output_scale` (beta of the data, see `train`) sets the preconditioning c(t) that
    multiplies W so that the trunk works with O(1) numbers: the score at t -> 0 is
    beta * tangent force (ModelConfig.output_scaling). `system` gives the pair features the
    trunk sees (`SpinSystem.pair_features`, clipped at `cfg.max_distance`); by default a
    chain's separation |i - j|.
    """

    def __init__(self, cfg: ModelConfig, n_types: int, max_length: int, output_scale: float,
                 system: SpinSystem | None = None):
        super().__init__()
        c_s, c_z = cfg.single_dim, cfg.pair_dim
        self.cfg, self.n_types, self.max_length = cfg, n_types, max_length
        # a chain's pair features do not depend on its interaction range or lengths
        self.system = system if system is not None else Chain(n_types, 1, (1, max_length))
        self._features: dict[tuple[int, torch.device], Tensor] = {}
        self.type_embed = nn.Embedding(n_types, c_s)
        # An open chain's sites are told apart by their position (the ends differ from the
        # middle); on a lattice or graph the pair features carry all the geometry and no
        # absolute position enters, so W of a translated periodic configuration is the
        # translated W.
        self.pos_embed = nn.Embedding(max_length, c_s) if isinstance(self.system, Chain) \
            else None
        self.time_embed = TimeEmbedding(c_s, cfg.time_octaves)
        self.dist_embed = nn.Embedding(cfg.max_distance + 1, c_z)
        self.gram_embed = nn.Linear(1, c_z)
        self.trunk = Pairformer(c_s, c_z, cfg.blocks, cfg.heads, cfg.transition)
        self.head = nn.Sequential(nn.LayerNorm(c_z), nn.Linear(c_z, c_z), nn.GELU(),
                                  nn.Linear(c_z, 1))
        nn.init.zeros_(self.head[-1].weight)  # start from the zero score (loss ~ target variance)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("output_scale", torch.tensor(float(output_scale)))

    def couplings(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        """Effective couplings W (B, N, N): symmetric, zero diagonal, zero on padding.

        spins: (B, N, 3) unit vectors (anything on padding); types: (B, N) int, -1 on padding;
        t: (B,) diffusion times.
        """
        b, n, _ = spins.shape
        mask = types >= 0  # (B, N)
        s = self.type_embed(types.clamp(min=0)) + self.time_embed(t)[:, None, :]  # (B, N, c_s)
        if self.pos_embed is not None:
            s = s + self.pos_embed(torch.arange(n, device=spins.device))[None]
        gram = spins @ spins.transpose(1, 2)  # (B, N, N), the only geometric input
        pair = self.pair_features(n, spins.device)  # (N, N), |i - j| on a chain
        z = self.dist_embed(pair)[None] + self.gram_embed(gram[..., None])  # (B, N, N, c_z)
        key_bias = torch.where(mask, 0.0, _MASKED).to(s.dtype)[:, None, None, :]  # (B,1,1,N)
        s, z = self.trunk(s, z, key_bias)
        w = self.head(z).squeeze(-1)  # (B, N, N)
        w = 0.5 * (w + w.transpose(1, 2))
        keep = mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool,
                                                                  device=spins.device)
        return self.output_factor(t)[:, None, None] * w * keep

    def pair_features(self, n_sites: int, device: torch.device) -> Tensor:
        """The system's pair features of `n_sites` sites clipped at cfg.max_distance: (N, N)
        int64 rows of `dist_embed` (computed once per size and device)."""
        key = (n_sites, torch.device(device))
        if key not in self._features:
            features = torch.as_tensor(self.system.pair_features(n_sites), device=device)
            self._features[key] = features.clamp(max=self.cfg.max_distance)
        return self._features[key]

    def set_system(self, system: SpinSystem) -> None:
        """Read samples of another system of the same kind from now on (a lattice model on a
        larger lattice): its pair features replace the training system's. Chains need none
        (|i - j| holds at any length)."""
        if self.pos_embed is None:
            self.system, self._features = system, {}

    def output_factor(self, t: Tensor) -> Tensor:
        """c(t) (B,): beta, or beta / (1 + beta t) with `output_scaling: stiffness`."""
        if self.cfg.output_scaling == "constant":
            return self.output_scale.expand(t.shape)
        return self.output_scale / (1.0 + self.output_scale * t)

    def forward(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        """Score (B, N, 3): tangent at each spin, zero on padding. Units of 1/radian."""
        return pairwise_field(self.couplings(spins, types, t), spins)[0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
