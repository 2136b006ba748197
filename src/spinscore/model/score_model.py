"""The score network ("Mini-AF3", SPEC §5): invariants in, couplings W_ij out, equivariant
tangent score by construction.

    score_i = P_i sum_j W_ij S_j,   P_i = I - S_i S_i^T,   W = W^T, W_ii = 0

W depends on the spins only through the Gram matrix S_i . S_j, so W is O(3)-invariant and the
score is O(3)-equivariant, tangent, free of self-forces, and has zero total torque
sum_i S_i x score_i = sum_ij W_ij S_i x S_j = 0.

The pair track is dense (B, N, N, c_z), or with `ModelConfig.pair_cutoff` restricted to each
site's neighbour list (`model.neighbours`, (B, N, K, c_z)): W is then zero beyond the cutoff
and neither the trunk nor the score ever forms an N x N array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spinscore.config import ModelConfig
from spinscore.errors import SpinscoreError
from spinscore.geometry.sphere import pairwise_field
from spinscore.model.layers import TimeEmbedding
from spinscore.model.neighbours import (
    NeighbourTable,
    build_table,
    dense_couplings,
    neighbour_field,
    pad_to_3d,
    symmetrise,
)
from spinscore.model.pairformer import Pairformer
from spinscore.systems import Chain, Lattice, SpinSystem

_MASKED = -1e9  # additive attention bias on padding keys (finite: no NaN in softmax)


class ScoreModel(nn.Module):
    """Score network for samples of up to `max_length` sites of `n_types` types.

    `output_scale` (beta of the data, see `train`) sets the preconditioning c(t) that
    multiplies W so that the trunk works with O(1) numbers: the score at t -> 0 is
    beta * tangent force (ModelConfig.output_scaling). `system` gives the pair features the
    trunk sees (`SpinSystem.pair_features`, clipped at `cfg.max_distance`); by default a
    chain's separation |i - j|. With `cfg.pair_cutoff` the pair track holds only the pairs of
    `SpinSystem.neighbour_table`; with `cfg.displacement_features` (a Lattice only) the pair
    track also embeds the displacement r_j - r_i (`Lattice.pair_displacements`).
    """

    def __init__(self, cfg: ModelConfig, n_types: int, max_length: int, output_scale: float,
                 system: SpinSystem | None = None):
        super().__init__()
        c_s, c_z = cfg.single_dim, cfg.pair_dim
        self.cfg, self.n_types, self.max_length = cfg, n_types, max_length
        # a chain's pair features do not depend on its interaction range or lengths
        self.system = system if system is not None else Chain(n_types, 1, (1, max_length))
        self._check_system(self.system)
        # pair geometry per (what, sites, device): features, displacements, neighbour tables
        self._cache: dict[tuple[str, int, torch.device], Any] = {}
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
        # the displacement zero-padded to 3 components; no bias (dist_embed has one per shell)
        self.disp_embed = nn.Linear(3, c_z, bias=False) if cfg.displacement_features else None
        self.trunk = Pairformer(c_s, c_z, cfg.blocks, cfg.heads, cfg.transition)
        self.head = nn.Sequential(nn.LayerNorm(c_z), nn.Linear(c_z, c_z), nn.GELU(),
                                  nn.Linear(c_z, 1))
        nn.init.zeros_(self.head[-1].weight)  # start from the zero score (loss ~ target variance)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("output_scale", torch.tensor(float(output_scale)))

    def _check_system(self, system: SpinSystem) -> None:
        if self.cfg.displacement_features and not isinstance(system, Lattice):
            raise SpinscoreError(f"model.displacement_features: needs a lattice (site "
                                 f"positions), got {system!r}")

    def _single(self, types: Tensor, t: Tensor) -> Tensor:
        """The single track's input (B, N, c_s): type, time and (chains) position."""
        s = self.type_embed(types.clamp(min=0)) + self.time_embed(t)[:, None, :]  # (B, N, c_s)
        if self.pos_embed is not None:
            s = s + self.pos_embed(torch.arange(types.shape[1], device=types.device))[None]
        return s

    def couplings(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        """Effective couplings W (B, N, N): symmetric, zero diagonal, zero on padding.

        spins: (B, N, 3) unit vectors (any finite values on padding: a NaN there reaches the
        real sites through the Gram matrix); types: (B, N) int, -1 on padding; t: (B,)
        diffusion times. With `pair_cutoff`, the couplings of `neighbour_couplings`
        scattered into zeros (N^2 numbers; the trunk stays on the neighbour lists).
        """
        if self.cfg.pair_cutoff is not None:
            return dense_couplings(*self._neighbour_couplings(spins, types, t))
        b, n, _ = spins.shape
        mask = types >= 0  # (B, N)
        s = self._single(types, t)
        gram = spins @ spins.transpose(1, 2)  # (B, N, N), the only geometric input
        pair = self.pair_features(n, spins.device)  # (N, N), |i - j| on a chain
        z = self.dist_embed(pair)[None] + self.gram_embed(gram[..., None])  # (B, N, N, c_z)
        if self.disp_embed is not None:
            z = z + self.disp_embed(self._displacements(n, spins.device).to(z.dtype))[None]
        key_bias = torch.where(mask, 0.0, _MASKED).to(s.dtype)[:, None, None, :]  # (B,1,1,N)
        s, z = self.trunk(s, z, key_bias)
        w = self.head(z).squeeze(-1)  # (B, N, N)
        w = 0.5 * (w + w.transpose(1, 2))
        keep = mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool,
                                                                  device=spins.device)
        return self.output_factor(t)[:, None, None] * w * keep

    def neighbour_couplings(self, spins: Tensor, types: Tensor, t: Tensor
                            ) -> tuple[Tensor, Tensor]:
        """The couplings of a cutoff model on its neighbour lists: (W (B, N, K), index (N, K)
        int64), W[b, i, k] the coupling of i with index[i, k]; zero on the self slot (k = 0),
        on padding slots (index -1) and padding sites. Inputs as `couplings`."""
        if self.cfg.pair_cutoff is None:
            raise SpinscoreError("neighbour_couplings: a dense model (model.pair_cutoff is "
                                 "None) has no neighbour lists; use couplings")
        w, table = self._neighbour_couplings(spins, types, t)
        return w, table.index

    def _neighbour_couplings(self, spins: Tensor, types: Tensor, t: Tensor
                             ) -> tuple[Tensor, NeighbourTable]:
        """W (B, N, K) on the neighbour lists (see `neighbour_couplings`) and the table."""
        mask = types >= 0  # (B, N)
        table = self.neighbour_table(spins.shape[1], spins.device)
        s = self._single(types, t)
        gram = (spins[:, :, None, :] * spins[:, table.safe]).sum(-1)  # (B, N, K) S_i . S_j
        z = self.dist_embed(table.feature)[None] + self.gram_embed(gram[..., None])
        if self.disp_embed is not None:
            z = z + self.disp_embed(table.displacement.to(z.dtype))[None]  # (B, N, K, c_z)
        keys = table.valid & mask[:, table.safe]  # (B, N, K) slots holding a real site
        key_bias = torch.where(keys, 0.0, _MASKED).to(s.dtype)[:, None]  # (B, 1, N, K)
        s, z = self.trunk(s, z, key_bias, table.safe)
        w = symmetrise(self.head(z).squeeze(-1), table)  # (B, N, K)
        keep = table.pair & keys & mask[:, :, None]
        return self.output_factor(t)[:, None, None] * w * keep, table

    def _cached(self, what: str, n_sites: int, device: torch.device,
                build: Callable[[], Any]) -> Any:
        key = (what, n_sites, torch.device(device))
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def pair_features(self, n_sites: int, device: torch.device) -> Tensor:
        """The system's pair features of `n_sites` sites clipped at cfg.max_distance: (N, N)
        int64 rows of `dist_embed` (computed once per size and device)."""
        def build() -> Tensor:
            features = torch.as_tensor(self.system.pair_features(n_sites), device=device)
            return features.clamp(max=self.cfg.max_distance)
        return self._cached("features", n_sites, device, build)

    def _displacements(self, n_sites: int, device: torch.device) -> Tensor:
        """(N, N, 3) float64 `Lattice.pair_displacements` of every pair, zero-padded."""
        def build() -> Tensor:
            sites = np.arange(n_sites)
            d = self.system.pair_displacements(sites[:, None], sites[None, :])
            return torch.as_tensor(pad_to_3d(d), device=device)
        return self._cached("displacements", n_sites, device, build)

    def neighbour_table(self, n_sites: int, device: torch.device) -> NeighbourTable:
        """The neighbour lists of `n_sites` sites within cfg.pair_cutoff (cutoff models;
        computed once per size and device)."""
        return self._cached("neighbours", n_sites, device, lambda: build_table(
            self.system, n_sites, self.cfg.pair_cutoff, self.cfg.max_distance,
            self.disp_embed is not None, device))

    def set_system(self, system: SpinSystem) -> None:
        """Read samples of another system of the same kind from now on (a lattice model on a
        larger lattice): its pair features and neighbour lists replace the training
        system's. Chains need none (|i - j| holds at any length)."""
        if self.pos_embed is None:
            self._check_system(system)
            self.system, self._cache = system, {}

    def output_factor(self, t: Tensor) -> Tensor:
        """c(t) (B,): beta, or beta / (1 + beta t) with `output_scaling: stiffness`."""
        if self.cfg.output_scaling == "constant":
            return self.output_scale.expand(t.shape)
        return self.output_scale / (1.0 + self.output_scale * t)

    def score_and_couplings(self, spins: Tensor, types: Tensor, t: Tensor
                            ) -> tuple[Tensor, Tensor]:
        """(`forward`, `couplings`) from one pass of the network: the score (B, N, 3) and W
        (B, N, N) it is made of (the likelihood's control variate takes W from the pass that
        gives the score)."""
        if self.cfg.pair_cutoff is not None:
            w, table = self._neighbour_couplings(spins, types, t)
            return neighbour_field(w, spins, table), dense_couplings(w, table)
        w = self.couplings(spins, types, t)
        return pairwise_field(w, spins)[0], w

    def forward(self, spins: Tensor, types: Tensor, t: Tensor) -> Tensor:
        """Score (B, N, 3): tangent at each spin, zero on padding. Units of 1/radian."""
        if self.cfg.pair_cutoff is not None:
            w, table = self._neighbour_couplings(spins, types, t)
            return neighbour_field(w, spins, table)
        return pairwise_field(self.couplings(spins, types, t), spins)[0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
