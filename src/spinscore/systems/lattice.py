"""Bravais lattices with a basis (SPEC §10): chain, square, triangular, honeycomb, kagome and
simple cubic, with open or periodic boundaries; sites i and j interact in shell k when their
distance is the k-th smallest distinct site distance of the infinite lattice.

Geometry (nearest-neighbour distance 1 for every kind): primitive vectors a_d (rows of
`vectors`) and basis offsets (rows of `basis`):

    chain       a1 = (1)                                   basis (0)
    square      a1 = (1, 0), a2 = (0, 1)                   basis (0, 0)
    triangular  a1 = (1, 0), a2 = (1/2, √3/2)              basis (0, 0)
    honeycomb   √3 x the triangular vectors                basis (0, 0), (√3/2, 1/2)
    kagome      2 x the triangular vectors                 basis (0, 0), (1, 0), (1/2, √3/2)
    cubic       the unit vectors of R³                     basis (0, 0, 0)

Site index order: cell-major, cells in C order of their integer coordinates (c_0, ..., c_{d-1})
(the last coordinate fastest, as `np.ravel_multi_index`), then the basis index:
site = ravel_multi_index(c, size) * n_basis + b.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from spinscore.errors import SpinscoreError
from spinscore.systems.base import Pairs, neighbour_rows
from spinscore.systems.colouring import FixedSites

_R3 = np.sqrt(3.0)
_TRI = np.array([[1.0, 0.0], [0.5, _R3 / 2]])
GEOMETRY: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "chain": (np.array([[1.0]]), np.zeros((1, 1))),
    "square": (np.eye(2), np.zeros((1, 2))),
    "triangular": (_TRI, np.zeros((1, 2))),
    "honeycomb": (_R3 * _TRI, np.array([[0.0, 0.0], [_R3 / 2, 0.5]])),
    "kagome": (2 * _TRI, np.array([[0.0, 0.0], [1.0, 0.0], [0.5, _R3 / 2]])),
    "cubic": (np.eye(3), np.zeros((1, 3))),
}
BOUNDARIES = ("open", "periodic")
TOL = 1e-6  # distances closer than this are one distance


def _geometry(kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind not in GEOMETRY:
        raise SpinscoreError(f"unknown lattice kind {kind!r}; expected one of {sorted(GEOMETRY)}")
    return GEOMETRY[kind]


def _patch(kind: str, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every site of the infinite lattice within `radius` of a basis site of cell 0 (and
    more): cells (M, d) int64, basis index (M,) int64, positions (M, d) float.

    A site at distance r from a site of cell 0 differs from it by at most r |b_d| + 1 cells
    along d (b_d the reciprocal vectors, a_i . b_d = delta_id), so cells up to that reach do.
    """
    vectors, basis = _geometry(kind)
    recip = np.linalg.norm(np.linalg.inv(vectors), axis=0)  # |b_d|
    reach = int(np.ceil(radius * recip.max())) + 1
    axis = np.arange(-reach, reach + 1)
    cells = np.stack(np.meshgrid(*[axis] * len(vectors), indexing="ij"), -1).reshape(-1, len(vectors))
    n_basis = len(basis)
    cells = np.repeat(cells, n_basis, axis=0)
    b = np.tile(np.arange(n_basis), len(cells) // n_basis)
    return cells, b, cells @ vectors + basis[b]


def distinct(distances: np.ndarray) -> np.ndarray:
    """(S,) ascending distinct values of `distances` (any shape): values closer than TOL
    are one (the smallest represents them)."""
    s = np.sort(np.ravel(distances))
    return s[np.concatenate([[True], np.diff(s) > TOL])] if s.size else s


def shell_table(kind: str, radius: float | None = None, count: int | None = None) -> np.ndarray:
    """The distinct positive site distances of the infinite lattice, ascending (distances
    within TOL = 1e-6 are one): all up to `radius` (inclusive), or the first `count`.
    Returns (S,) float."""
    _, basis = _geometry(kind)
    r = float(radius) if radius is not None else float(count)
    while True:
        _, _, pos = _patch(kind, r)
        dist = np.linalg.norm(pos[None, :, :] - basis[:, None, :], axis=-1)
        table = distinct(dist[(dist > TOL) & (dist <= r + TOL)])
        if radius is not None or len(table) >= count:
            return table if radius is not None else table[:count]
        r *= 2


def shell_index(distances: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Shell (1-based position in `table`, within TOL) of each distance (...,), 0 for a zero
    distance: int64 of the same shape. Every positive distance must be in the table."""
    d = np.asarray(distances)
    idx = np.clip(np.searchsorted(table, d - TOL), 0, len(table) - 1)
    zero = d < TOL
    if not np.all(zero | (np.abs(table[idx] - d) < TOL)):
        raise AssertionError("a site distance missing from the lattice's shell table")
    return np.where(zero, 0, idx + 1).astype(np.int64)


def neighbour_offsets(kind: str, n_shells: int) -> tuple[np.ndarray, ...]:
    """The neighbours of each basis site up to shell K on the infinite lattice: from basis
    site b0 of cell c to basis site b1 of cell c + dcell, in shell `shell`. Returns b0 (M,),
    dcell (M, d), b1 (M,), shell (M,), all int64, sorted by (b0, shell)."""
    _, basis = _geometry(kind)
    table = shell_table(kind, count=n_shells)
    cells, b, pos = _patch(kind, table[-1])
    rows = []
    for b0 in range(len(basis)):
        dist = np.linalg.norm(pos - basis[b0], axis=-1)
        near = np.flatnonzero(dist < table[-1] + TOL)
        shell = shell_index(dist[near], table)
        keep = near[shell > 0]
        shell = shell[shell > 0]
        order = np.argsort(shell, kind="stable")
        keep, shell = keep[order], shell[order]
        rows.append((np.full(len(keep), b0), cells[keep], b[keep], shell))
    return tuple(np.concatenate(col).astype(np.int64) for col in zip(*rows, strict=True))


class Lattice(FixedSites):
    """A finite lattice of `size` cells per dimension (see the module docstring for kinds,
    geometry and site order), `boundary` "open" or "periodic", `n_types` site types (i.i.d.
    uniform, or the fixed (N,) `pattern`), couplings up to shell `n_shells`.

    Periodic boundaries require L_d > 2 x reach_d along every axis d, reach_d the most cells
    along d that a pair within shell K spans on the infinite lattice (for a basis site). Then
    two distinct displacements within shell K differ by fewer than L_d cells along every axis,
    so they reach distinct sites, and every pair within shell K has a unique minimum image
    (any other image is another displacement reaching the same site, hence farther than shell
    K). Conservative: e.g. square nearest neighbours need L >= 3, shells up to 3 need L >= 5.
    """

    def __init__(self, kind: str, size: tuple[int, ...], boundary: str, n_types: int,
                 n_shells: int, pattern: np.ndarray | None = None):
        self.vectors, self.basis = _geometry(kind)
        self.kind, self.boundary = kind, boundary
        self.size = tuple(int(s) for s in size)
        self.dim = len(self.vectors)
        if len(self.size) != self.dim or min(self.size) < 1:
            raise SpinscoreError(f"{kind} lattice: size must be {self.dim} positive cell counts, "
                                 f"got {tuple(size)}")
        if boundary not in BOUNDARIES:
            raise SpinscoreError(f"{kind} lattice: boundary must be one of {BOUNDARIES}, got "
                                 f"{boundary!r}")
        n_sites = int(np.prod(self.size)) * len(self.basis)
        self._init_sites(n_sites, n_types, n_shells, pattern, repr(self))
        self._offsets = neighbour_offsets(kind, self.n_shells)
        self._shells = shell_table(kind, count=self.n_shells)
        if boundary == "periodic":
            self._check_periodic_size()
        self._pairs = self._build_pairs()
        missing = sorted(set(range(1, self.n_shells + 1)) - set(self._pairs.shell.tolist()))
        if missing:
            k = missing[0]
            raise SpinscoreError(f"{self!r} has no pair in shell {k} (distance "
                                 f"{self._shells[k - 1]:.6g}): too small for n_shells = "
                                 f"{self.n_shells}")
        self._features: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Lattice({self.kind!r}, size={self.size}, boundary={self.boundary!r})"

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    def shell_distances(self) -> np.ndarray:
        """(n_shells,) float distance of each shell 1..K (infinite lattice)."""
        return self._shells.copy()

    def _check_periodic_size(self) -> None:
        """Refuse periodic lengths L_d <= 2 reach_d (class docstring), naming the first
        shell that is too long."""
        _, dcell, _, shell = self._offsets
        for k in range(1, self.n_shells + 1):
            reach = np.abs(dcell[shell <= k]).max(axis=0)
            bad = np.flatnonzero(np.asarray(self.size) <= 2 * reach)
            if bad.size:
                d = int(bad[0])
                raise SpinscoreError(
                    f"periodic {self.kind} lattice of size {self.size} is too small for shell {k} "
                    f"(distance {self._shells[k - 1]:.6g}, reach {reach[d]} cells along axis {d}): "
                    f"needs more than {2 * reach[d]} cells along axis {d}")

    def _cells(self) -> np.ndarray:
        """(n_cells, d) int64 integer coordinates of the cells in site order."""
        return np.indices(self.size).reshape(self.dim, -1).T.astype(np.int64)

    def _offset_pairs(self, offsets: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Every oriented pair an offset table (`neighbour_offsets`) reaches from every cell,
        periodic images wrapped (a site may then be reached by several offsets, even itself):
        (i, j, shell), (P,) int64 each, in the order of cells, then offsets."""
        b0, dcell, b1, shell = offsets
        cells, n_basis, size = self._cells(), len(self.basis), np.asarray(self.size)
        target = cells[:, None, :] + dcell[None, :, :]  # (n_cells, M, d)
        if self.periodic:
            inside = np.ones(target.shape[:2], dtype=bool)
            target %= size
        else:
            inside = np.all((target >= 0) & (target < size), axis=-1)
        c_from = np.broadcast_to(np.arange(len(cells))[:, None], inside.shape)
        c_to = np.ravel_multi_index(tuple(np.where(inside[..., None], target, 0).T), self.size).T
        i = (c_from * n_basis + b0)[inside]
        j = (c_to * n_basis + b1)[inside]
        return i, j, np.broadcast_to(shell, inside.shape)[inside]

    def _build_pairs(self) -> Pairs:
        """Every cell's neighbours by the offset table, kept once with i < j, sorted
        shell-major then by (i, j)."""
        i, j, k = self._offset_pairs(self._offsets)
        keep = i < j
        i, j, k = i[keep], j[keep], k[keep]
        order = np.lexsort((j, i, k))
        return Pairs(i=i[order].astype(np.int64), j=j[order].astype(np.int64),
                     shell=k[order].astype(np.int64))

    def neighbour_table(self, n_sites: int, cutoff: int) -> tuple[np.ndarray, np.ndarray]:
        """`SpinSystem.neighbour_table` (every site within shell `cutoff` by `pair_features`)
        from the offset table of shells 1..cutoff, never forming an (N, N) array: memory
        grows as N x neighbours. Under periodic boundaries a site reached by several offsets
        keeps the smallest shell (its minimum image), and offsets that wrap onto the site
        itself are dropped. Returns (index (N, K), feature (N, K)) int64, -1 on padding."""
        self._check_n(n_sites)
        i, j, shell = self._offset_pairs(neighbour_offsets(self.kind, cutoff))
        order = np.lexsort((shell, j, i))
        i, j, shell = i[order], j[order], shell[order]
        first = np.concatenate([[True], (i[1:] != i[:-1]) | (j[1:] != j[:-1])])
        keep = first & (i != j)
        return neighbour_rows(self.max_sites, i[keep], j[keep], shell[keep])

    def positions(self) -> np.ndarray:
        """(N, d) Cartesian site positions: sum_d c_d a_d + basis_b (cells at 0..L_d - 1)."""
        cells = np.repeat(self._cells(), len(self.basis), axis=0)
        b = np.tile(np.arange(len(self.basis)), len(cells) // len(self.basis))
        return cells @ self.vectors + self.basis[b]

    def _images(self, i: np.ndarray, j: np.ndarray) -> Iterator[np.ndarray]:
        """Candidate displacements r_j - r_i (..., d) of the site pairs (i, j) (int arrays
        of one broadcast shape), one at a time: the plain difference on open boundaries;
        under periodic ones the difference wrapped to [-L/2, L/2] cells first, then that
        shifted by every period vector that can give a shorter image (`_period_shifts`), so
        the shortest candidate is the minimum image and every tied one is among them."""
        frac = self.positions() @ np.linalg.inv(self.vectors)
        delta = frac[j] - frac[i]
        if not self.periodic:
            yield delta @ self.vectors
            return
        size = np.asarray(self.size, dtype=float)
        delta -= size * np.round(delta / size)
        for shift in self._period_shifts():
            yield (delta + size * shift) @ self.vectors

    def _period_shifts(self) -> np.ndarray:
        """(K, d) shifts n (in periods: n_d L_d cells along axis d) that can turn a difference
        wrapped to [-L/2, L/2] cells into its minimum image, by their largest |n_d|: (0, ..., 0)
        first, then those within one period (in the order 0, -1, +1 per axis), and so on.

        With S the supercell (rows L_d a_d) and R the longest wrapped difference, the minimum
        image v of a wrapped difference w has |v| <= |w| <= R, so the shift v - w = n S has
        length <= 2R and |n_d| <= 2R |(S^-1)_{:, d}|. On a skewed, elongated lattice that
        exceeds 1 (a triangular 3 x 21 needs up to 7 periods along its short axis)."""
        supercell = np.asarray(self.size, dtype=float)[:, None] * self.vectors  # (d, d)
        corners = np.array(list(itertools.product((-0.5, 0.5), repeat=self.dim)))
        reach = 2.0 * np.linalg.norm(corners @ supercell, axis=1).max()
        bound = np.floor(reach * np.linalg.norm(np.linalg.inv(supercell), axis=0) + 1e-9)
        axes = [sorted(range(-int(m), int(m) + 1), key=lambda n: (abs(n), n > 0)) for m in bound]
        shifts = np.array(list(itertools.product(*axes)), dtype=float)
        return shifts[np.argsort(np.abs(shifts).max(axis=1), kind="stable")]

    def displacements(self) -> np.ndarray:
        """(N, N, d) displacement r_j - r_i of every pair; under periodic boundaries the
        minimum image (the shortest of `_images`; the first shortest on ties)."""
        sites = np.arange(self.max_sites)
        images = self._images(sites[:, None], sites[None, :])
        best = next(images)
        best_norm = np.linalg.norm(best, axis=-1)
        for cand in images:
            norm = np.linalg.norm(cand, axis=-1)
            better = norm < best_norm - 1e-9
            best[better], best_norm[better] = cand[better], norm[better]
        return best

    def pair_displacements(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """(..., d) displacement r_j - r_i of the site pairs (i, j) (int arrays of one
        broadcast shape), averaged over the minimum images under periodic boundaries.

        There is one minimum image except at exactly half a period, where the tied images
        (+L/2 and -L/2 cells along an axis) average to 0 along it. So the displacement
        depends only on where j sits relative to i (translation invariant) and d(j, i) =
        -d(i, j), which `displacements` (the first shortest image) does not give on ties.
        """
        i, j = np.asarray(i), np.asarray(j)
        shortest = np.inf
        for d in self._images(i, j):  # two passes, one image in memory at a time
            shortest = np.minimum(shortest, np.linalg.norm(d, axis=-1))
        total, count = 0.0, 0
        for d in self._images(i, j):
            tied = np.linalg.norm(d, axis=-1) < shortest + TOL
            total = total + np.where(tied[..., None], d, 0.0)
            count = count + tied
        return total / count[..., None]

    def pair_features(self, n_sites: int) -> np.ndarray:
        """(N, N) int64 dense shell index: the rank of each pair's (minimum-image) distance
        among ALL distinct distances of the infinite lattice (so beyond n_shells too, and the
        same numbering open or periodic), 0 on the diagonal. Equals the pair's shell on every
        pair of `pairs`; every other pair has an index > n_shells."""
        self._check_n(n_sites)
        if self._features is None:
            dist = np.linalg.norm(self.displacements(), axis=-1)
            table = shell_table(self.kind, radius=float(dist.max()))
            self._features = shell_index(dist, table)
        return self._features.copy()

    def translations(self) -> np.ndarray:
        """(T, N) int64: row t maps site s to the site translated by cell t (T = number of
        cells, in site order; row 0 is the identity). Periodic boundaries only."""
        if not self.periodic:
            raise SpinscoreError(f"{self!r}: translations need periodic boundaries")
        cells, n_basis = self._cells(), len(self.basis)
        moved = (cells[:, None, :] + cells[None, :, :]) % np.asarray(self.size)
        to_cell = np.ravel_multi_index(tuple(np.moveaxis(moved, -1, 0)), self.size)  # (T, n_cells)
        out = to_cell[:, :, None] * n_basis + np.arange(n_basis)
        return out.reshape(len(cells), -1).astype(np.int64)
