"""The score network for molecules: a Pairformer over atoms, invariants in, pair weights W_ij
out, an E(3)-equivariant score by construction.

    score_i = sum_j W_ij (x_i - x_j),   W = W^T, W_ii = 0          (nm^-1)

W depends on the positions only through the interatomic distances |x_i - x_j|, so it is
invariant under rotations, reflections and translations, and the score is equivariant under
all of O(3), translation invariant, and free of net force (sum_i s_i = sum_ij W_ij (x_i - x_j)
= 0 by the symmetry of W) and of net torque (sum_i x_i x s_i = -sum_ij W_ij x_i x x_j = 0).
A conservative force field of pair distances has exactly this form; three-body terms (angles,
torsions) enter W through the trunk, which sees all pairs at once.

Inputs besides x: the noise level sigma (nm) and, fixed per molecule, the atom class of each
atom (an embedding) and the bond-graph distance of each pair (shortest path, capped at
`max_graph_distance`, which stands for ">= max_graph_distance" and for disconnected pairs).

Distance statistics. Bonds need a steep radial response: the W of an X-H bond, beta k (1 -
r0 / r), changes by ~beta k dr / r0 over the thermal motion dr ~ 0.003 nm, far below the
spacing of the Gaussian radial basis. `fit_distance_statistics(positions)` (or `positions=`
of `for_molecule`) stores the per-pair mean and std of the distances in the TRAINING
CONFIGURATIONS (buffers; nothing from the force field), and three features use them:
    standardise  the pair input gets z_ij = (r_ij - mean_ij) / std_ij, O(1) for every pair;
    pair_scale   W_ij = exp(gain[g_ij]) h_ij / (std_ij mean_ij): the harmonic scale of a
                 pair, since beta k = 1 / var(r) and W = beta k (r - r0) / r ~ z / (std mean);
                 otherwise W_ij = w_scale exp(gain[g_ij]) h_ij with a fixed w_scale (nm^-2,
                 `w_scale_from_data` estimates one);
    linear_skip  h_ij += a_t + b_t z_ij, a learned line per pair type t = (class_i, class_j,
                 g_ij): the best pairwise field, harmonic in each distance, from the start.
h_ij is the head's output, kept O(1), zero at initialisation; `gain` a learned log-factor
per graph distance, initialised to 0. A model with any of these refuses to run until fitted.

conservative: the head's h_ij is read as a pair energy, E = sum_{i<j} (exp(gain) h_ij + the
skip's harmonic energy), and the score is -grad E (autograd): a force field with an energy, so
Langevin dynamics with it keeps the bath's temperature; the W form is not a gradient and heats
its chains (alanine dipeptide, vacuum: 334 K against 300 K). An experiment (1800 steps, 12 min,
2 threads, 2.5 steps/s against 7.5) reached cosine 0.9942 with beta F against 0.9919 for the
W form's 3000 steps, and its chains held 297 ± 5 K.

triangle: a triangle multiplicative update (`TriangleUpdate`) before each Pairformer block.
The Pairformer's pair track sees other pairs only through attention weights of the single
track, and a pairwise field is not enough: on alanine dipeptide the best field of per-pair
polynomials in r_ij (cubic, fitted to the forces directly) reaches only cosine 0.975 with
beta F, and so did this model without triangle updates; with them it passes 0.99.

What the defaults reach (alanine dipeptide, vacuum, amber14, 300 K; trained with the
`dsm.DSMSettings` defaults on 30000 frames, EMA score at sigma = 3e-5 nm against beta F on 500
held-out frames of independent trajectories): cosine 0.991 (NRMSE 0.134) after 1500 steps,
3.2 min on 2 CPU threads; 0.993 (NRMSE 0.116) after the default 3000 steps, 6.7 min.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path
from torch import Tensor, nn

from spinscore.model.layers import TimeEmbedding
from spinscore.model.pairformer import Pairformer

HYPER_DEFAULTS: dict[str, Any] = {
    "single_dim": 64, "pair_dim": 32, "blocks": 2, "heads": 4, "transition": 2,
    "n_radial": 32, "r_max": 1.2, "max_graph_distance": 5, "w_scale": 1e4,
    "sigma_ref": 1e-4, "noise_octaves": 4, "standardise": True, "pair_scale": True,
    "linear_skip": True, "triangle": True, "conservative": False,
}
_R_REF = 0.1  # nm, the 1/r feature is R_REF / r: O(1) at bond lengths


def graph_distances(n_atoms: int, bonds: np.ndarray, cap: int) -> np.ndarray:
    """Shortest-path lengths on the bond graph, capped: (n, n) int64 in [0, cap].

    bonds: (n_bonds, 2) atom indices. Disconnected pairs get `cap`."""
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if bonds.size and (bonds.min() < 0 or bonds.max() >= n_atoms):
        raise ValueError(f"bonds: atom index outside 0..{n_atoms - 1}")
    adjacency = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n_atoms, n_atoms))
    d = shortest_path(adjacency, directed=False, unweighted=True)  # inf where disconnected
    return np.minimum(d, cap).astype(np.int64)


def w_scale_from_data(positions: np.ndarray, forces: np.ndarray, beta: float, bonds: np.ndarray) -> float:
    """A `w_scale` (nm^-2) from data: rms(beta F) / mean bond length.

    That is the |W| a single bonded neighbour would need to carry the typical score, so the
    head's raw output is O(1) at the start. positions (..., n, 3) nm, forces (..., n, 3)
    kJ/mol/nm, beta mol/kJ, bonds (n_bonds, 2)."""
    positions, forces = np.asarray(positions, dtype=np.float64), np.asarray(forces, dtype=np.float64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if len(bonds) == 0:
        raise ValueError("w_scale_from_data: needs at least one bond")
    rms = float(np.sqrt(np.mean((beta * forces) ** 2)))
    length = float(np.linalg.norm(positions[..., bonds[:, 0], :] - positions[..., bonds[:, 1], :],
                                  axis=-1).mean())
    return rms / length


class TriangleUpdate(nn.Module):
    """Triangle multiplicative update (AlphaFold 2, "outgoing" edges), residual:
    z_ij += g_ij * Linear(LN(sum_k a_ik * b_jk)) / n, with a, b gated projections of LN(z).

    The Pairformer's pair track sees the other pairs only through the single track; W_ij of a
    bond must depend on the distances to the atoms bonded to i or j (angle terms), which this
    gives directly. Permutation-equivariant; invariant inputs give invariant outputs."""

    def __init__(self, c_z: int):
        super().__init__()
        self.norm_in = nn.LayerNorm(c_z)
        self.proj = nn.Linear(c_z, 4 * c_z)  # a, b and their gates
        self.norm_out = nn.LayerNorm(c_z)
        self.out = nn.Linear(c_z, c_z)
        self.gate = nn.Linear(c_z, c_z)

    def forward(self, z: Tensor) -> Tensor:
        zn = self.norm_in(z)
        a, ga, b, gb = self.proj(zn).chunk(4, dim=-1)
        a, b = a * torch.sigmoid(ga), b * torch.sigmoid(gb)
        t = torch.einsum("bikc,bjkc->bijc", a, b) / z.shape[1]
        return z + torch.sigmoid(self.gate(zn)) * self.out(self.norm_out(t))


class AtomScoreModel(nn.Module):
    """Score network of one molecule (fixed atoms, classes and bonds).

    Args:
        class_index: (n,) int, the atom class of each atom, rows of the class embedding.
        graph_distance: (n, n) int, bond-graph distances capped at `max_graph_distance`.
        class_names: the vocabulary, class_names[c] the name of class c (stored in the
            state_dict as UTF-8 bytes).
        single_dim, pair_dim, blocks, heads, transition: the Pairformer (`model.pairformer`).
        n_radial, r_max: Gaussian radial basis on [0, r_max] nm; with R_REF / r (R_REF 0.1 nm).
        max_graph_distance: cap of the graph distance (its embedding has cap + 1 rows).
        w_scale: nm^-2, fixed output scale (module docstring).
        sigma_ref: nm, the noise embedding sees log(sigma / sigma_ref).
        noise_octaves: Fourier octaves of the noise embedding (`TimeEmbedding`).
        standardise, pair_scale, linear_skip: features on the fitted distance statistics
            (module docstring); w_scale is unused with pair_scale.
        triangle: a `TriangleUpdate` of the pair track before each Pairformer block.
    """

    def __init__(self, class_index: Tensor | np.ndarray, graph_distance: Tensor | np.ndarray,
                 class_names: tuple[str, ...] | list[str], **hyper: Any):
        super().__init__()
        unknown = set(hyper) - set(HYPER_DEFAULTS)
        if unknown:
            raise ValueError(f"AtomScoreModel: unknown hyper-parameters {sorted(unknown)}")
        self.hyper = {**HYPER_DEFAULTS, **hyper}
        h = self.hyper
        if h["n_radial"] < 2 or not h["r_max"] > 0:
            raise ValueError(f"AtomScoreModel: needs n_radial >= 2 and r_max > 0, got {h['n_radial']}, "
                             f"{h['r_max']}")
        class_index = torch.as_tensor(class_index).to("cpu", torch.int64)
        graph_distance = torch.as_tensor(graph_distance).to("cpu", torch.int64)
        self.class_names = tuple(class_names)
        n = class_index.shape[0]
        if class_index.ndim != 1 or graph_distance.shape != (n, n):
            raise ValueError(f"AtomScoreModel: class_index (n,) and graph_distance (n, n) expected, "
                             f"got {tuple(class_index.shape)} and {tuple(graph_distance.shape)}")
        if n < 2 or class_index.min() < 0 or class_index.max() >= len(self.class_names):
            raise ValueError(f"AtomScoreModel: needs >= 2 atoms with classes in "
                             f"0..{len(self.class_names) - 1}")
        if not torch.equal(graph_distance, graph_distance.T) or graph_distance.min() < 0:
            raise ValueError("AtomScoreModel: graph_distance must be symmetric and non-negative")
        c_s, c_z = h["single_dim"], h["pair_dim"]
        self.n_atoms = n
        self.register_buffer("class_index", class_index)
        self.register_buffer("graph_distance", graph_distance.clamp(max=h["max_graph_distance"]))
        names = "\n".join(self.class_names).encode()
        self.register_buffer("class_names_utf8", torch.tensor(list(names), dtype=torch.uint8))
        self.register_buffer("centres", torch.linspace(0.0, h["r_max"], h["n_radial"]))
        # per-pair distance statistics of the training positions (fit_distance_statistics);
        # mean 0 and std 1 until fitted, which the features that need them refuse
        self.register_buffer("pair_mean", torch.zeros(n, n))
        self.register_buffer("pair_std", torch.ones(n, n))
        self.register_buffer("stats_fitted", torch.zeros((), dtype=torch.bool))
        self.width = h["r_max"] / (h["n_radial"] - 1)
        self.class_embed = nn.Embedding(len(self.class_names), c_s)
        self.noise_embed = TimeEmbedding(c_s, h["noise_octaves"])
        self.radial_embed = nn.Linear(h["n_radial"] + 1 + bool(h["standardise"]), c_z)
        self.graph_embed = nn.Embedding(h["max_graph_distance"] + 1, c_z)
        self.trunk = Pairformer(c_s, c_z, h["blocks"], h["heads"], h["transition"])
        # one triangle update before each Pairformer block (hyper "triangle")
        self.triangles = nn.ModuleList(TriangleUpdate(c_z) for _ in range(h["blocks"] * bool(h["triangle"])))
        self.head = nn.Sequential(nn.LayerNorm(c_z), nn.Linear(c_z, c_z), nn.GELU(), nn.Linear(c_z, 1))
        nn.init.zeros_(self.head[-1].weight)  # start from the zero score: the loss is then 1/2
        nn.init.zeros_(self.head[-1].bias)
        self.gain = nn.Parameter(torch.zeros(h["max_graph_distance"] + 1))
        if h["linear_skip"]:
            # W_ij += scale_ij (a_t + b_t z_ij), t the pair type (class_i, class_j, g_ij), unordered
            n_types = len(self.class_names) ** 2 * (h["max_graph_distance"] + 1)
            self.skip = nn.Embedding(n_types, 2)
            nn.init.zeros_(self.skip.weight)

    @classmethod
    def for_molecule(cls, atom_classes: list[str] | tuple[str, ...], bonds: np.ndarray,
                     positions: np.ndarray | Tensor | None = None, **hyper: Any) -> AtomScoreModel:
        """The model of a molecule: class vocabulary sorted(set(atom_classes)), graph
        distances from `bonds` (n_bonds, 2) atom indices; `hyper` as the constructor. With
        `positions` (M, n, 3) nm, the training configurations, the distance statistics are
        fitted (`fit_distance_statistics`)."""
        names = tuple(sorted(set(atom_classes)))
        index = np.array([names.index(c) for c in atom_classes], dtype=np.int64)
        cap = hyper.get("max_graph_distance", HYPER_DEFAULTS["max_graph_distance"])
        model = cls(index, graph_distances(len(atom_classes), bonds, cap), names, **hyper)
        if positions is not None:
            model.fit_distance_statistics(positions)
        return model

    def config(self) -> dict[str, Any]:
        """The hyper-parameters (keyword arguments of the constructor), JSON-friendly."""
        return dict(self.hyper)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], config: dict[str, Any]) -> AtomScoreModel:
        """Rebuild a model from its `state_dict()` and `config()`: the atoms, classes and graph
        come from the buffers."""
        names = bytes(state["class_names_utf8"].tolist()).decode().split("\n")
        model = cls(state["class_index"], state["graph_distance"], names, **config)
        model.to(state["centres"].dtype).load_state_dict(state)  # cast first: no rounding
        return model

    def check_input(self, x: Tensor, sigma: Tensor) -> None:
        """Raise ValueError unless x is a finite (B, n, 3) float tensor of this molecule and
        sigma a finite positive (B,) tensor. (One host sync on an accelerator.)"""
        n = self.n_atoms
        if not torch.is_tensor(x) or x.ndim != 3 or x.shape[1:] != (n, 3) or not x.is_floating_point():
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"positions: expected a float tensor of shape (B, {n}, 3) nm, got {got}")
        if not torch.is_tensor(sigma) or sigma.shape != (x.shape[0],):
            got = tuple(sigma.shape) if torch.is_tensor(sigma) else type(sigma).__name__
            raise ValueError(f"sigma: expected shape ({x.shape[0]},) (one noise level per sample), got {got}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("positions: non-finite value (NaN or inf)")
        if not bool((torch.isfinite(sigma) & (sigma > 0)).all()):
            raise ValueError("sigma: expected finite positive noise levels (nm)")

    def fit_distance_statistics(self, positions: np.ndarray | Tensor) -> None:
        """Set the per-pair distance mean and standard deviation (nm) from training positions
        (M, n, 3) nm (the configurations only, never forces): what `standardise`,
        `pair_scale` and `linear_skip` use. Needs M >= 2 and distinct positions per pair."""
        x = torch.as_tensor(positions).to("cpu", torch.float64)
        if x.ndim != 3 or x.shape[1:] != (self.n_atoms, 3) or x.shape[0] < 2:
            raise ValueError(f"fit_distance_statistics: expected (M >= 2, {self.n_atoms}, 3) positions, "
                             f"got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("fit_distance_statistics: non-finite positions")
        r = torch.cdist(x, x)  # (M, n, n)
        mean, std = r.mean(0), r.std(0)
        off = ~torch.eye(self.n_atoms, dtype=torch.bool)
        if not bool((std[off] > 0).all()) or not bool((mean[off] > 0).all()):
            raise ValueError("fit_distance_statistics: some pair distance does not vary")
        mean[~off], std[~off] = 1.0, 1.0  # the diagonal is never used
        dtype = self.pair_mean.dtype
        self.pair_mean.copy_(mean.to(dtype))
        self.pair_std.copy_(std.to(dtype))
        self.stats_fitted.fill_(True)

    def _needs_stats(self) -> bool:
        return any(self.hyper[k] for k in ("standardise", "pair_scale", "linear_skip"))

    def pair_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Distances r (B, n, n) nm (1 on the diagonal, which is never used) and the pair
        input (B, n, n, c_z): radial basis and R_REF / r (and, with `standardise`, the
        standardised distance (r - mean) / std), plus the graph-distance embedding."""
        d2 = (x[:, :, None, :] - x[:, None, :, :]).pow(2).sum(-1)  # (B, n, n)
        eye = torch.eye(self.n_atoms, dtype=torch.bool, device=x.device)
        # 1 on the diagonal instead of 0: sqrt has an infinite derivative at 0
        r = torch.where(eye, torch.ones_like(d2), d2).sqrt()
        basis = torch.exp(-0.5 * ((r[..., None] - self.centres) / self.width) ** 2)
        parts = [basis, (_R_REF / r)[..., None]]
        if self.hyper["standardise"]:
            parts.append(self.standardised(r)[..., None])
        z = self.radial_embed(torch.cat(parts, dim=-1)) + self.graph_embed(self.graph_distance)
        return r, z

    def standardised(self, r: Tensor) -> Tensor:
        """(r - mean) / std per pair, from the fitted statistics: (B, n, n)."""
        return (r - self.pair_mean) / self.pair_std

    def pair_type(self) -> Tensor:
        """(n, n) int64 index of the unordered (class_i, class_j, graph distance) triple."""
        c, k = self.class_index, len(self.class_names)
        lo, hi = torch.minimum(c[:, None], c[None, :]), torch.maximum(c[:, None], c[None, :])
        return (lo * k + hi) * (self.hyper["max_graph_distance"] + 1) + self.graph_distance

    def _pair_head(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(distances (B, n, n) nm, the head's output h (B, n, n), O(1), not symmetrised)."""
        self.check_input(x, sigma)
        if self._needs_stats() and not bool(self.stats_fitted):
            raise ValueError("AtomScoreModel: standardise / pair_scale / linear_skip need the distance "
                             "statistics: call fit_distance_statistics(positions) first")
        r, z = self.pair_features(x)
        b, n = x.shape[:2]
        s = self.class_embed(self.class_index)[None] + self.noise_embed(sigma / self.sigma_ref)[:, None, :]
        key_bias = torch.zeros(b, 1, 1, n, dtype=s.dtype, device=x.device)
        if self.hyper["triangle"]:
            for triangle, block in zip(self.triangles, self.trunk.blocks, strict=True):
                s, z = block(s, triangle(z), key_bias)
        else:
            _, z = self.trunk(s, z, key_bias)
        return r, self.head(z).squeeze(-1)

    def energy(self, x: Tensor, sigma: Tensor) -> Tensor:
        """beta x the energy (B,), dimensionless, of the `conservative` model: a sum over pairs
        i < j of exp(gain[g_ij]) h_ij (+ a_t z_ij + b_t z_ij^2 / 2 with `linear_skip`: the
        best harmonic pair energy in the standardised distance z). x (B, n, 3) nm."""
        r, h = self._pair_head(x, sigma)
        n = x.shape[1]
        h = h * torch.exp(self.gain)[self.graph_distance]
        if self.hyper["linear_skip"]:
            ab = self.skip(self.pair_type())
            z = self.standardised(r)
            h = h + ab[..., 0] * z + 0.5 * ab[..., 1] * z * z
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), diagonal=1)
        return (h * upper).sum(dim=(1, 2))

    def pair_matrix(self, x: Tensor, sigma: Tensor) -> Tensor:
        """W (B, n, n) nm^-2: symmetric, zero diagonal, O(3)- and translation invariant.

        x: (B, n, 3) nm, centred or not; sigma: (B,) noise levels, nm."""
        if self.hyper["conservative"]:
            raise ValueError("AtomScoreModel: a conservative model has an energy, not a pair matrix")
        r, w = self._pair_head(x, sigma)
        n = x.shape[1]
        if self.hyper["linear_skip"]:
            ab = self.skip(self.pair_type())  # (n, n, 2)
            w = w + ab[..., 0] + ab[..., 1] * self.standardised(r)
        w = 0.5 * (w + w.transpose(1, 2))
        off = ~torch.eye(n, dtype=torch.bool, device=x.device)
        if self.hyper["pair_scale"]:
            # the harmonic scale of each pair: beta k = 1 / var(r), W = beta k (r - r0) / r
            # ~ z / (std mean) per unit standardised distance z
            base = 1.0 / (self.pair_std * self.pair_mean)
        else:
            base = self.hyper["w_scale"]
        scale = base * torch.exp(self.gain)[self.graph_distance]  # (n, n)
        return w * (scale * off)

    @property
    def sigma_ref(self) -> float:
        """nm, the noise level at which the noise embedding's log input is 0."""
        return float(self.hyper["sigma_ref"])

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Score s_i = sum_j W_ij (x_i - x_j), or -grad_i E with `conservative`: (B, n, 3)
        nm^-1, for x (B, n, 3) nm and sigma (B,) nm. Equivariant under O(3), translation
        invariant, zero net force and torque. The conservative score is differentiated with
        autograd even under torch.no_grad (and through, for training, when grad is on)."""
        if self.hyper["conservative"]:
            train = torch.is_grad_enabled()
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.energy(xg, sigma).sum(), xg, create_graph=train)
            return -grad if train else -grad.detach()
        w = self.pair_matrix(x, sigma)
        x = x - x.mean(dim=1, keepdim=True)  # smaller |x|: less cancellation in the difference
        return w.sum(-1, keepdim=True) * x - w @ x
