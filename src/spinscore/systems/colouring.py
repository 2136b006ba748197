"""What the systems with one fixed set of sites share (a lattice, an explicit graph): a greedy
(DSatur) colouring of the interaction graph, and the base class `FixedSites` that checks the
`n_sites` argument, draws or fixes the site types and caches the colouring.
"""

from __future__ import annotations

import numpy as np

from spinscore.errors import SpinscoreError
from spinscore.systems.base import Pairs, SpinSystem, check_colouring


def neighbour_lists(n_sites: int, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """The interaction graph in compressed rows: (indptr (N + 1,), indices (2P,)) int64; the
    neighbours of site v are indices[indptr[v]:indptr[v + 1]], ascending."""
    src = np.concatenate([pairs.i, pairs.j]).astype(np.int64)
    dst = np.concatenate([pairs.j, pairs.i]).astype(np.int64)
    order = np.lexsort((dst, src))
    indptr = np.zeros(n_sites + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_sites), out=indptr[1:])
    return indptr, dst[order]


def greedy_colouring(n_sites: int, pairs: Pairs) -> np.ndarray:
    """DSatur colouring of the graph of `pairs` (every shell): (N,) int64 colours 0..C-1.

    Repeatedly colours the uncoloured site whose neighbours already use the most distinct
    colours (ties: the most neighbours, then the lowest index) with the smallest colour none of
    its neighbours has. Deterministic; exact on bipartite graphs (2 colours), 3 on the
    triangular and kagome nearest-neighbour lattices. Checked proper before it is returned.
    """
    indptr, nbrs = neighbour_lists(n_sites, pairs)
    degree = np.diff(indptr)
    max_degree = int(degree.max()) if n_sites else 0
    colours = np.full(n_sites, -1, dtype=np.int64)
    used = np.zeros((n_sites, max_degree + 1), dtype=bool)
    saturation = np.zeros(n_sites, dtype=np.int64)
    tie_break = degree * n_sites + (n_sites - 1 - np.arange(n_sites))
    scale = (max_degree + 1) * n_sites
    for _ in range(n_sites):
        key = np.where(colours < 0, saturation * scale + tie_break, -1)
        v = int(np.argmax(key))
        c = int(np.argmin(used[v]))  # the first colour no neighbour has
        colours[v] = c
        nb = nbrs[indptr[v]:indptr[v + 1]]
        saturation[nb[~used[nb, c]]] += 1
        used[nb, c] = True
    check_colouring(pairs, colours)
    return colours


class FixedSites(SpinSystem):
    """A spin system whose every sample has the same N sites and interaction graph (only the
    types vary, unless a fixed `pattern` of types is given). Subclasses set `_pairs` (the
    interacting pairs, shells 1..n_shells, sorted shell-major then by (i, j)) and call
    `_init_sites`."""

    _pairs: Pairs
    _colours: np.ndarray | None = None

    def _init_sites(self, n_sites: int, n_types: int, n_shells: int,
                    pattern: np.ndarray | None, name: str) -> None:
        if n_types < 1 or n_shells < 1:
            raise SpinscoreError(f"{name}: n_types ({n_types}) and n_shells ({n_shells}) must be >= 1")
        self.n_types, self.n_shells, self.max_sites = int(n_types), int(n_shells), int(n_sites)
        self.pattern = None
        if pattern is not None:
            p = np.asarray(pattern)
            if p.shape != (n_sites,) or not np.issubdtype(p.dtype, np.integer):
                raise SpinscoreError(f"{name}: pattern must be {n_sites} integer types, got "
                                     f"shape {p.shape} of {p.dtype}")
            if p.size and (p.min() < 0 or p.max() >= n_types):
                raise SpinscoreError(f"{name}: pattern types must lie in [0, {n_types}), got "
                                     f"[{p.min()}, {p.max()}]")
            self.pattern = p.astype(np.int8)

    def _check_n(self, n_sites: int) -> None:
        if int(n_sites) != self.max_sites:
            raise SpinscoreError(f"{self!r} has {self.max_sites} sites, asked for {n_sites}")

    def draw_types(self, rng: np.random.Generator) -> np.ndarray:
        """(N,) int8 site types: the fixed `pattern` if given, else i.i.d. uniform
        `rng.integers(0, n_types, size=N)`."""
        if self.pattern is not None:
            return self.pattern.copy()
        return rng.integers(0, self.n_types, size=self.max_sites).astype(np.int8)

    def pairs(self, n_sites: int) -> Pairs:
        """The interacting pairs (P,), each unordered pair once with i < j, shells
        1..n_shells, sorted shell-major then by (i, j). n_sites must be N."""
        self._check_n(n_sites)
        p = self._pairs
        return Pairs(i=p.i.copy(), j=p.j.copy(), shell=p.shell.copy())

    def colouring(self, n_sites: int) -> np.ndarray:
        """(N,) int64 greedy (DSatur) proper colouring of the interaction graph."""
        self._check_n(n_sites)
        if self._colours is None:
            self._colours = greedy_colouring(self.max_sites, self._pairs)
        return self._colours.copy()
