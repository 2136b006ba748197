"""The cutoff pair track's neighbour lists (`ModelConfig.pair_cutoff`): each site i keeps
itself (slot 0) and the sites j with 1 <= pair feature <= cutoff, padded to a common width K,
so that the pair tensor is (B, N, K, c_z) and memory grows as N x K instead of N^2.

The couplings live on the slots: W[b, i, k] couples i with index[i, k]. `reverse` finds the
same pair from the other end (W[b, j, reverse[i, k]] with j = index[i, k]), which symmetrises
W; `dense_couplings` scatters W into the (B, N, N) matrix that analyses read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from spinscore.errors import SpinscoreError
from spinscore.geometry.sphere import tangent_project
from spinscore.systems import SpinSystem


@dataclass(frozen=True)
class NeighbourTable:
    """Neighbour lists of N sites, K slots each, as tensors on one device.

    index: (N, K) int64 neighbour site, -1 on padding slots; safe: (N, K) the same with 0 on
    padding (for gathers, always masked); reverse: (N, K) slot of i in index[i, k]'s list (0
    on padding); feature: (N, K) int64 pair feature clipped at max_distance (0 on padding);
    valid: (N, K) bool slot holds a site; pair: (N, K) bool slot holds a site other than i;
    displacement: (N, K, 3) float64 r_j - r_i zero-padded to 3 components (0 on padding), or
    None.
    """

    index: Tensor
    safe: Tensor
    reverse: Tensor
    feature: Tensor
    valid: Tensor
    pair: Tensor
    displacement: Tensor | None


def reverse_slots(index: np.ndarray) -> np.ndarray:
    """(N, K) int64: for every slot (i, k) holding j = index[i, k] >= 0 the slot r with
    index[j, r] = i (0 on padding slots). Raises SpinscoreError when some j does not list i
    (pair features that are not symmetric)."""
    n = len(index)
    i, slot = np.nonzero(index >= 0)
    j = index[i, slot]
    key = i * n + j
    order = np.argsort(key)
    wanted = j * n + i
    found = order[np.minimum(np.searchsorted(key[order], wanted), len(order) - 1)]
    if not np.array_equal(key[found], wanted):
        p = int(np.flatnonzero(key[found] != wanted)[0])
        raise SpinscoreError(f"neighbour lists are not symmetric: site {j[p]} is a neighbour of "
                             f"site {i[p]} but does not list it")
    reverse = np.zeros_like(index)
    reverse[i, slot] = slot[found]
    return reverse


def pad_to_3d(displacement: np.ndarray) -> np.ndarray:
    """(..., d) vectors of a d <= 3 dimensional lattice as (..., 3), zeros appended."""
    width = [(0, 0)] * (displacement.ndim - 1) + [(0, 3 - displacement.shape[-1])]
    return np.pad(displacement, width)


def build_table(system: SpinSystem, n_sites: int, cutoff: int, max_distance: int,
                displacements: bool, device: torch.device) -> NeighbourTable:
    """The NeighbourTable of `system.neighbour_table(n_sites, cutoff)` on `device`, features
    clipped at `max_distance`; with `displacements`, the lattice's `pair_displacements` of
    every slot (the system must be a Lattice)."""
    index, feature = system.neighbour_table(n_sites, cutoff)
    valid = index >= 0
    safe = np.where(valid, index, 0)
    disp = None
    if displacements:
        d = system.pair_displacements(np.arange(n_sites)[:, None], safe)  # (N, K, dim)
        disp = torch.as_tensor(pad_to_3d(d) * valid[..., None], device=device)
    as_tensor = partial(torch.as_tensor, device=device)
    return NeighbourTable(
        index=as_tensor(index), safe=as_tensor(safe), reverse=as_tensor(reverse_slots(index)),
        feature=as_tensor(np.where(valid, np.minimum(feature, max_distance), 0)),
        valid=as_tensor(valid), pair=as_tensor(valid & (index != np.arange(n_sites)[:, None])),
        displacement=disp,
    )


def symmetrise(w: Tensor, table: NeighbourTable) -> Tensor:
    """(B, N, K) -> (B, N, K): W[i, k] = (w[i, k] + w[j, reverse[i, k]]) / 2, j = index[i, k]
    (padding slots hold garbage: mask them)."""
    return 0.5 * (w + w[:, table.safe, table.reverse])


def dense_couplings(w: Tensor, table: NeighbourTable) -> Tensor:
    """Couplings on the slots (B, N, K), zero on padding slots, scattered into the (B, N, N)
    matrix (zero for every pair outside the lists)."""
    b, n, _ = w.shape
    rows = torch.arange(n, device=w.device)[:, None].expand_as(table.index)[table.valid]
    out = w.new_zeros(b, n, n)
    out[:, rows, table.index[table.valid]] = w[:, table.valid]
    return out


def neighbour_field(w: Tensor, spins: Tensor, table: NeighbourTable) -> Tensor:
    """The score of couplings on the slots: P_i sum_k W[i, k] S_index[i, k], (B, N, 3); the
    `geometry.sphere.pairwise_field` of the scattered W without the (B, N, N) matrix.
    w: (B, N, K), zero on padding and self slots; spins: (B, N, 3) unit vectors."""
    h = (w[..., None] * spins[:, table.safe]).sum(dim=2)  # (B, N, 3)
    return tangent_project(spins, h)
