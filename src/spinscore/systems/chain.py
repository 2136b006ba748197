"""The open chain (SPEC §2): sites i = 0..L-1 in a row, L uniform in a range, types i.i.d.;
sites i and i + k interact in shell k for k = 1..K.

Its bond layout (..., K, L), entry [..., k-1, i] for the pair (i, i + k), is the dense form the
vectorised chain code of `physics.hamiltonian` and the compiled sampler work in.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, device

from spinscore.config import SystemConfig
from spinscore.systems.base import Pairs, SpinSystem


class Chain(SpinSystem):
    """Open chains of `length` = (min, max) sites (both included) of `n_types` types, with
    couplings up to separation `n_shells`."""

    def __init__(self, n_types: int, n_shells: int, length: tuple[int, int]):
        self.n_types, self.n_shells = int(n_types), int(n_shells)
        self.length = (int(length[0]), int(length[1]))
        self.max_sites = self.length[1]

    @classmethod
    def from_config(cls, system: SystemConfig) -> Chain:
        return cls(system.n_types, system.max_range, system.length)

    def __repr__(self) -> str:
        return f"Chain(n_types={self.n_types}, n_shells={self.n_shells}, length={self.length})"

    def draw_types(self, rng: np.random.Generator) -> np.ndarray:
        """A chain's sequence: length uniform in `length` (inclusive), types uniform.
        Returns (L,) int8."""
        lo, hi = self.length
        n_sites = int(rng.integers(lo, hi + 1))
        return rng.integers(0, self.n_types, size=n_sites).astype(np.int8)

    def pairs(self, n_sites: int) -> Pairs:
        """Pairs (i, i + k) for k = 1..K, shell-major then by i: P = sum_k (L - k)."""
        shells = range(1, min(self.n_shells, n_sites - 1) + 1)
        i = [np.arange(n_sites - k) for k in shells]
        empty = np.zeros(0, dtype=np.int64)
        i = np.concatenate([empty, *i])
        shell = np.concatenate([empty, *(np.full(n_sites - k, k) for k in shells)])
        return Pairs(i=i, j=i + shell, shell=shell)

    def colouring(self, n_sites: int) -> np.ndarray:
        """i mod (K + 1): sites of one colour are K + 1 apart, out of each other's reach."""
        return np.arange(n_sites, dtype=np.int64) % (self.n_shells + 1)

    def pair_features(self, n_sites: int) -> np.ndarray:
        """The separation |i - j|, (L, L) int64."""
        idx = np.arange(n_sites, dtype=np.int64)
        return np.abs(idx[:, None] - idx[None, :])

    def bond_layout(self, values, n_sites: int, fill=0):
        """Values (..., P) of the pairs `pairs(n_sites)` in the bond layout (..., K, L): entry
        [..., k-1, i] is the value of the pair (i, i + k), `fill` where i + k >= L. Same library
        and dtype as `values` (NumPy or torch)."""
        xp = array_namespace(values)
        pairs = self.pairs(n_sites)
        shape = (*values.shape[:-1], self.n_shells, n_sites)
        where = device(values)
        out = xp.full(shape, fill, dtype=values.dtype, device=where)
        out[..., xp.asarray(pairs.shell - 1, device=where), xp.asarray(pairs.i, device=where)] = values
        return out

