"""A spin system on an explicit graph (SPEC §10): N sites and a list of interacting pairs, each
in a shell k (the coupling J_k), read from a YAML or JSON file

    sites: 5
    pairs: [[0, 1, 1], [1, 2, 1], [0, 2, 2], ...]    # [i, j, shell]

A pair may be listed in both orientations with the same shell (kept once); a pair listed twice
in one orientation, or in both with different shells ("not symmetric"), is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinscore.config.geometry import read_graph_file
from spinscore.errors import ConfigError, SpinscoreError
from spinscore.systems.base import Pairs
from spinscore.systems.colouring import FixedSites, neighbour_lists


def _pair_error(where: str, p: int, row: list[int], why: str) -> ConfigError:
    return ConfigError(f"{where}[{p}] = {row}: {why}")


def normalise_pairs(n_sites: int, raw: np.ndarray, where: str) -> Pairs:
    """Validate pairs given as rows [i, j, shell] (P, 3) and return each unordered pair once
    (i < j), sorted shell-major then by (i, j). `where` (a file and field) starts every error
    message; errors name the first offending row."""
    seen: dict[tuple[int, int], tuple[int, int]] = {}  # oriented (i, j) -> (row, shell)
    for p, row in enumerate(np.asarray(raw, dtype=np.int64).reshape(-1, 3).tolist()):
        i, j, k = row
        for s in (i, j):
            if not 0 <= s < n_sites:
                raise _pair_error(where, p, row, f"site {s} out of range [0, {n_sites})")
        if i == j:
            raise _pair_error(where, p, row, "a site paired with itself")
        if k < 1:
            raise _pair_error(where, p, row, f"shell {k} must be >= 1")
        if (i, j) in seen:
            raise _pair_error(where, p, row, f"pair listed twice (also {where}[{seen[i, j][0]}])")
        if (j, i) in seen and seen[j, i][1] != k:
            q, k2 = seen[j, i]
            raise _pair_error(where, p, row, f"not symmetric: {where}[{q}] = [{j}, {i}, {k2}] "
                                             f"puts the pair in shell {k2}")
        seen[i, j] = (p, k)
    unique = sorted({(k, min(i, j), max(i, j)) for (i, j), (_, k) in seen.items()})
    table = np.array(unique, dtype=np.int64).reshape(-1, 3)
    return Pairs(i=table[:, 1].copy(), j=table[:, 2].copy(), shell=table[:, 0].copy())


def _load(path: Path):
    try:
        return read_graph_file(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def read_graph(path: str | Path) -> tuple[int, Pairs]:
    """Read a graph file {sites: N, pairs: [[i, j, shell], ...]} (YAML, or JSON: a subset).
    Returns (N, Pairs (P,), each unordered pair once, i < j, sorted
    shell-major then by (i, j)). Raises ConfigError naming the file and the field."""
    path = Path(path)
    data = _load(path)
    if not isinstance(data, dict) or set(data) != {"sites", "pairs"}:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path}: a graph file holds exactly the keys 'sites' and 'pairs', "
                          f"got {keys}")
    n_sites = data["sites"]
    if isinstance(n_sites, bool) or not isinstance(n_sites, int) or n_sites < 1:
        raise ConfigError(f"{path}: sites: expected a positive integer, got {n_sites!r}")
    rows = data["pairs"]
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: pairs: expected a list of [i, j, shell], got {rows!r}")
    for p, row in enumerate(rows):
        if (not isinstance(row, list) or len(row) != 3
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in row)):
            raise ConfigError(f"{path}: pairs[{p}]: expected [i, j, shell] integers, got {row!r}")
    return n_sites, normalise_pairs(n_sites, np.array(rows, dtype=np.int64), f"{path}: pairs")


def hop_distances(n_sites: int, pairs: Pairs) -> np.ndarray:
    """(N, N) int64 number of bonds on a shortest path between each two sites over every
    pair (any shell), 0 on the diagonal, -1 between disconnected sites. A breadth-first
    search from all sites at once: one (N, 2P) gather per hop."""
    indptr, nbrs = neighbour_lists(n_sites, pairs)
    has = np.diff(indptr) > 0
    dist = np.full((n_sites, n_sites), -1, dtype=np.int64)
    np.fill_diagonal(dist, 0)
    frontier = np.eye(n_sites, dtype=bool)
    hop = 0
    while nbrs.size and frontier.any():
        hop += 1
        step = np.zeros_like(frontier)
        step[:, has] = np.logical_or.reduceat(frontier[:, nbrs], indptr[:-1][has], axis=1)
        frontier = step & (dist < 0)
        dist[frontier] = hop
    return dist


class Graph(FixedSites):
    """N sites with explicit interacting pairs (shells 1..n_shells, each shell used), types
    i.i.d. uniform of `n_types` or the fixed (N,) `pattern`. `name` (e.g. the file) starts
    error messages."""

    def __init__(self, n_sites: int, pairs: Pairs, n_types: int, n_shells: int,
                 pattern: np.ndarray | None = None, name: str = "graph"):
        self.name = name
        n_sites = int(n_sites)
        if n_sites < 1:
            raise SpinscoreError(f"{name}: needs at least one site, got {n_sites}")
        self._init_sites(n_sites, n_types, n_shells, pattern, name)
        raw = np.stack([pairs.i, pairs.j, pairs.shell], axis=-1) if len(pairs) else np.zeros((0, 3))
        self._pairs = normalise_pairs(n_sites, raw, f"{name}: pairs")
        shells = set(self._pairs.shell.tolist())
        if shells and max(shells) > self.n_shells:
            raise SpinscoreError(f"{name}: a pair in shell {max(shells)} but n_shells = "
                                 f"{self.n_shells}")
        missing = sorted(set(range(1, self.n_shells + 1)) - shells)
        if missing:
            raise SpinscoreError(f"{name}: no pair in shell {missing[0]} (n_shells = "
                                 f"{self.n_shells})")
        self._features: np.ndarray | None = None

    @classmethod
    def from_file(cls, path: str | Path, n_types: int, n_shells: int,
                  pattern: np.ndarray | None = None) -> Graph:
        """The graph of a file (see `read_graph`)."""
        n_sites, pairs = read_graph(path)
        return cls(n_sites, pairs, n_types, n_shells, pattern, name=str(path))

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, sites={self.max_sites}, pairs={len(self._pairs)})"

    def pair_features(self, n_sites: int) -> np.ndarray:
        """(N, N) int64: the shell of every interacting pair; for the other pairs n_shells +
        their hop distance (bonds on a shortest path over all pairs, so > n_shells), and
        n_shells + N between disconnected sites; 0 on the diagonal."""
        self._check_n(n_sites)
        if self._features is None:
            hops = hop_distances(self.max_sites, self._pairs)
            features = np.where(hops >= 0, hops + self.n_shells, self.n_shells + self.max_sites)
            p = self._pairs
            features[p.i, p.j] = features[p.j, p.i] = p.shell
            np.fill_diagonal(features, 0)
            self._features = features.astype(np.int64)
        return self._features.copy()
