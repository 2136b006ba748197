"""The system seam: what every stage below the CLI may ask of a spin system.

A spin system is a set of typed sites (one sample: N sites, each of a site type; the chain's
"sequence"), the unordered pairs of sites that interact, each in a neighbour shell k (for the
chain the separation |i - j| = k), a colouring of this interaction graph for parallel Monte
Carlo sweeps, and the pair features the score network sees. The Hamiltonian is

    H(S) = - sum_{pairs (i, j)} J_k(sigma_i, sigma_j) S_i . S_j,

and the parameter class of a pair is the index of J_k(sigma_i, sigma_j) in the canonical
parameter vector (`SystemConfig.parameter_names`): shell-major, then the unordered type pair
(like pairs first, then unlike pairs lexicographically).

Everything here is NumPy on small integer arrays (indices, not spins); the Hamiltonian on spins
lives in `physics.hamiltonian`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from spinscore.errors import SpinscoreError


@dataclass(frozen=True)
class Pairs:
    """The interacting pairs of one sample of N sites, each unordered pair once.

    i, j: (P,) int64 site indices in [0, N), i != j; shell: (P,) int64 >= 1, the neighbour
    shell of the pair (for the chain, j - i).
    """

    i: np.ndarray
    j: np.ndarray
    shell: np.ndarray

    def __len__(self) -> int:
        return len(self.i)


def type_pair_index(n_types: int) -> np.ndarray:
    """(n_types, n_types) int64 index of each unordered type pair in the canonical parameter
    order (like pairs first, then unlike pairs lexicographically; see
    `SystemConfig.type_pairs`)."""
    table = np.zeros((n_types, n_types), dtype=np.int64)
    pairs = [(a, a) for a in range(n_types)]
    pairs += [(a, b) for a in range(n_types) for b in range(a + 1, n_types)]
    for k, (a, b) in enumerate(pairs):
        table[a, b] = table[b, a] = k
    return table


def pair_classes(types: np.ndarray, pairs: Pairs, n_types: int) -> np.ndarray:
    """Parameter class of every pair: (shell - 1) * n_type_pairs + type_pair_index[sigma_i,
    sigma_j].

    Args:
        types: (..., N) integer site types, -1 on padding.
        pairs: the interacting pairs of N sites.
        n_types: number of site types.
    Returns:
        (..., P) int64 class indices into the parameter vector, -1 where a site is padding.
    """
    types = np.asarray(types)
    index = type_pair_index(n_types)
    valid = types >= 0
    safe = np.where(valid, types, 0)
    cls = (pairs.shell - 1) * int(index.max() + 1) + index[safe[..., pairs.i], safe[..., pairs.j]]
    return np.where(valid[..., pairs.i] & valid[..., pairs.j], cls, -1)


def check_colouring(pairs: Pairs, colours: np.ndarray) -> None:
    """Refuse a colouring in which two interacting sites share a colour.

    Sites of one colour are updated as if independent (in parallel, or in an order that lets the
    CPU overlap them): with an interacting pair inside a colour the sweep samples the wrong
    distribution (SPEC §3: two colours on a chain with J2). colours: (N,) integers.
    Raises SpinscoreError naming the first offending pair.
    """
    colours = np.asarray(colours)
    clash = np.flatnonzero(colours[pairs.i] == colours[pairs.j])
    if clash.size:
        p = clash[0]
        i, j, k = int(pairs.i[p]), int(pairs.j[p]), int(pairs.shell[p])
        raise SpinscoreError(
            f"improper colouring: sites {i} and {j} interact (shell {k}) but share colour "
            f"{int(colours[i])} ({clash.size} such pairs)"
        )


def neighbour_rows(n_sites: int, i: np.ndarray, j: np.ndarray,
                   feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pack oriented site pairs into per-site neighbour lists of one common width K.

    Args:
        n_sites: N.
        i, j, feature: (P,) int64: j is a neighbour of i with pair feature >= 1 (each
            unordered pair in both orientations, no pair twice, no i == j).
    Returns:
        (index (N, K) int64, feature (N, K) int64): row i holds i itself in slot 0 (feature
        0), then its neighbours by ascending (feature, site); -1 in both past the end of a
        row. K = 1 + the most neighbours of any site.
    """
    sites = np.arange(n_sites, dtype=np.int64)
    i = np.concatenate([sites, np.asarray(i, dtype=np.int64)])
    j = np.concatenate([sites, np.asarray(j, dtype=np.int64)])
    feature = np.concatenate([np.zeros(n_sites, dtype=np.int64),
                              np.asarray(feature, dtype=np.int64)])
    order = np.lexsort((j, feature, i))
    i, j, feature = i[order], j[order], feature[order]
    counts = np.bincount(i, minlength=n_sites)
    slot = np.arange(len(i)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = np.full((n_sites, int(counts.max(initial=1))), -1, dtype=np.int64)
    feat = np.full_like(index, -1)
    index[i, slot], feat[i, slot] = j, feature
    return index, feat


def sweep_order(colours: np.ndarray) -> np.ndarray:
    """Sites colour by colour (colour 0 first), ascending within a colour: (N,) int64."""
    return np.argsort(np.asarray(colours), kind="stable").astype(np.int64)


class SpinSystem(ABC):
    """A family of spin systems: typed sites, interacting pairs by shell, a colouring, pair
    features. One instance describes every sample of a data set (the samples may differ in
    their number of sites and their types, as chains of different lengths do).

    Attributes: n_types (site types), n_shells (K: the largest shell with a coupling),
    max_sites (the most sites of any sample: the padded width of a data set).
    """

    n_types: int
    n_shells: int
    max_sites: int

    @abstractmethod
    def draw_types(self, rng: np.random.Generator) -> np.ndarray:
        """Site types of one random sample, (N,) int8 (its length is the sample's N)."""

    @abstractmethod
    def pairs(self, n_sites: int) -> Pairs:
        """The interacting pairs of a sample of `n_sites` sites, shells 1..n_shells."""

    @abstractmethod
    def colouring(self, n_sites: int) -> np.ndarray:
        """(N,) int64 colours such that no two interacting sites share one."""

    @abstractmethod
    def pair_features(self, n_sites: int) -> np.ndarray:
        """(N, N) int64 non-negative pair feature the score network embeds (0 on the
        diagonal; the network clips it at `ModelConfig.max_distance`)."""

    @property
    def n_parameters(self) -> int:
        """Length of the parameter vector: n_shells x unordered type pairs."""
        return self.n_shells * self.n_types * (self.n_types + 1) // 2

    def pair_classes(self, types: np.ndarray) -> np.ndarray:
        """(..., P) parameter class of each of `pairs(N)` for types (..., N), -1 on padding."""
        types = np.asarray(types)
        return pair_classes(types, self.pairs(types.shape[-1]), self.n_types)

    def neighbour_table(self, n_sites: int, cutoff: int) -> tuple[np.ndarray, np.ndarray]:
        """The neighbour lists of a pair track cut off at pair feature `cutoff` (>= 1): site j
        is a neighbour of i when 1 <= pair_features[i, j] <= cutoff.

        Returns (index (N, K) int64, feature (N, K) int64) as `neighbour_rows` packs them:
        slot 0 the site itself (feature 0), then the neighbours by ascending (feature, site),
        -1 in both on padding slots. This default reads the dense (N, N) `pair_features`;
        a system with many sites overrides it.
        """
        features = self.pair_features(n_sites)
        i, j = np.nonzero((features >= 1) & (features <= cutoff))
        return neighbour_rows(n_sites, i, j, features[i, j])

    def sweep_order(self, n_sites: int) -> np.ndarray:
        """(N,) int64 sites in the order of a Monte Carlo sweep, colour by colour, after
        checking that the colouring is proper."""
        colours = self.colouring(n_sites)
        check_colouring(self.pairs(n_sites), colours)
        return sweep_order(colours)
