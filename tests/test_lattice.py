"""Lattices and explicit graphs (SPEC §10): shells are the distinct site distances (checked
against the known coordination numbers and against brute force on the positions), periodic
sizes too small for the shells are refused, colourings are proper and small, translations are
symmetries, and bad graph files give one error naming the file."""

import itertools
import json
import re

import numpy as np
import pytest

from spinscore.errors import SpinscoreError
from spinscore.systems.base import Pairs, check_colouring
from spinscore.systems.chain import Chain
from spinscore.systems.colouring import greedy_colouring
from spinscore.systems.graph import Graph, hop_distances, read_graph
from spinscore.systems.lattice import Lattice, shell_table

R2, R3, R5, R7 = np.sqrt([2.0, 3.0, 5.0, 7.0])
# kind: (periodic size big enough for 4 shells, neighbours per shell 1..4, shell distances)
KNOWN = {
    "chain": ((10,), [2, 2, 2, 2], [1, 2, 3, 4]),
    "square": ((6, 6), [4, 4, 4, 8], [1, R2, 2, R5]),
    "triangular": ((7, 7), [6, 6, 6, 12], [1, R3, 2, R7]),
    # honeycomb: 3 nearest, 6 second (same sublattice), 3 across the hexagon, 6 at √7
    "honeycomb": ((5, 5), [3, 6, 3, 6], [1, R3, 2, R7]),
    # kagome: 4 nearest, 4 at √3, 6 at 2 (4 along the lines + 2 across the hexagon), 8 at √7
    "kagome": ((5, 5), [4, 4, 6, 8], [1, R3, 2, R7]),
    "cubic": ((5, 5, 5), [6, 12, 8, 6], [1, R2, R3, 2]),
}
KINDS = list(KNOWN)


def open_size(kind, cells):
    return (cells,) * len(KNOWN[kind][0])


def neighbour_counts(pairs, n_sites, shell):
    on = pairs.shell == shell
    return np.bincount(np.concatenate([pairs.i[on], pairs.j[on]]), minlength=n_sites)


@pytest.mark.parametrize("kind", KINDS)
def test_periodic_neighbour_counts_and_shell_distances_are_the_known_ones(kind):
    size, counts, distances = KNOWN[kind]
    lattice = Lattice(kind, size, "periodic", 2, 4)
    n = lattice.max_sites
    pairs = lattice.pairs(n)
    for k, z in enumerate(counts, start=1):
        np.testing.assert_array_equal(neighbour_counts(pairs, n, k), z, err_msg=f"shell {k}")
    assert len(pairs) == n * sum(counts) // 2
    assert np.all(pairs.i < pairs.j)
    assert len({(a, b) for a, b in zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)}) == len(pairs)
    order = np.lexsort((pairs.j, pairs.i, pairs.shell))
    np.testing.assert_array_equal(order, np.arange(len(pairs)))  # shell-major, then (i, j)
    np.testing.assert_allclose(lattice.shell_distances(), distances, rtol=0, atol=1e-9)
    # every pair at its shell's distance (minimum image)
    disp = lattice.displacements()[pairs.i, pairs.j]
    np.testing.assert_allclose(np.linalg.norm(disp, axis=-1), np.asarray(distances)[pairs.shell - 1],
                               atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_shells", [1, 3])
def test_open_pairs_are_all_pairs_within_the_shells_by_brute_force(kind, n_shells):
    """Open lattice: the pairs are exactly the site pairs with distance <= the K-th shell
    distance, computed from the positions, and open and periodic agree on the distances."""
    lattice = Lattice(kind, open_size(kind, 4 if kind != "chain" else 9), "open", 2, n_shells)
    periodic = Lattice(kind, KNOWN[kind][0], "periodic", 2, n_shells)
    np.testing.assert_array_equal(lattice.shell_distances(), periodic.shell_distances())
    pos = lattice.positions()
    n = len(pos)
    assert n == lattice.max_sites and pos.shape[1] == len(KNOWN[kind][0])
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    d_k = lattice.shell_distances()
    iu, ju = np.triu_indices(n, 1)
    near = dist[iu, ju] < d_k[-1] + 1e-6
    pairs = lattice.pairs(n)
    assert set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)) == set(
        zip(iu[near].tolist(), ju[near].tolist(), strict=True))
    np.testing.assert_allclose(dist[pairs.i, pairs.j], d_k[pairs.shell - 1], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(lattice.displacements(), axis=-1), dist, atol=1e-12)
    assert dist[~np.eye(n, dtype=bool)].min() == pytest.approx(1.0)  # nearest neighbours at 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("boundary", ["open", "periodic"])
def test_pair_features_are_the_dense_shell_index(kind, boundary):
    size = KNOWN[kind][0] if boundary == "periodic" else open_size(kind, 4)
    lattice = Lattice(kind, size, boundary, 2, 2)
    n = lattice.max_sites
    features, pairs = lattice.pair_features(n), lattice.pairs(n)
    assert features.dtype == np.int64 and features.shape == (n, n)
    np.testing.assert_array_equal(features, features.T)
    np.testing.assert_array_equal(np.diag(features), 0)
    np.testing.assert_array_equal(features[pairs.i, pairs.j], pairs.shell)
    listed = np.zeros((n, n), dtype=bool)
    listed[pairs.i, pairs.j] = listed[pairs.j, pairs.i] = True
    assert np.all(features[~listed & ~np.eye(n, dtype=bool)] > 2)
    # larger distance, larger index: the index is the rank of the distance
    dist = np.linalg.norm(lattice.displacements(), axis=-1).ravel()
    f = features.ravel()
    order = np.argsort(dist, kind="stable")
    assert np.all(np.diff(f[order]) >= 0)
    assert np.all(np.diff(dist[order])[np.diff(f[order]) > 0] > 1e-6)


def test_the_chain_lattice_is_the_chain():
    lattice, chain = Lattice("chain", (12,), "open", 2, 3), Chain(2, 3, (12, 12))
    for a, b in zip((lattice.pairs(12).i, lattice.pairs(12).j, lattice.pairs(12).shell),
                    (chain.pairs(12).i, chain.pairs(12).j, chain.pairs(12).shell), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lattice.pair_features(12), chain.pair_features(12))
    ring = Lattice("chain", (9,), "periodic", 2, 1).pair_features(9)
    assert ring[0, 8] == 1 and ring[0, 4] == 4 and ring[0, 5] == 4


# skewed and elongated: the minimum image lies up to 7 periods away along the short axis
@pytest.mark.parametrize("kind, size", [("triangular", (5, 7)), ("triangular", (3, 21)),
                                        ("honeycomb", (16, 3)), ("kagome", (3, 16))])
def test_periodic_displacements_are_the_minimum_image(kind, size):
    lattice = Lattice(kind, size, "periodic", 1, 1)
    pos, disp = lattice.positions(), lattice.displacements()
    period = np.asarray(lattice.size)[:, None] * lattice.vectors  # (2, 2)
    best = np.full(disp.shape[:2], np.inf)
    for shift in itertools.product(range(-9, 10), repeat=2):
        image = pos[None] - pos[:, None] + np.asarray(shift) @ period
        best = np.minimum(best, np.linalg.norm(image, axis=-1))
    np.testing.assert_allclose(np.linalg.norm(disp, axis=-1), best, atol=1e-9)
    # each displacement is a true one: r_i + d_ij equals r_j up to a period
    frac = (pos[:, None] + disp - pos[None]) @ np.linalg.inv(period)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)
    # the pair features are the shells (distinct distances of the infinite lattice) of those
    shells = shell_table(kind, radius=best.max() + 1)
    expected = np.abs(best[..., None] - shells).argmin(-1) + 1
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(lattice.pair_features(lattice.max_sites), expected)


@pytest.mark.parametrize("kind, size", [("triangular", (4, 16)), ("kagome", (3, 12)),
                                        ("square", (4, 6))])
def test_pair_displacements_are_translation_invariant(kind, size):
    """Where several images tie (here up to four on elongated skewed lattices), the average
    over all of them depends only on where j sits relative to i."""
    lattice = Lattice(kind, size, "periodic", 1, 1)
    sites = np.arange(lattice.max_sites)
    disp = lattice.pair_displacements(sites[:, None], sites[None, :])
    np.testing.assert_allclose(disp, -disp.transpose(1, 0, 2), atol=1e-12)
    for perm in lattice.translations():
        np.testing.assert_allclose(disp[np.ix_(perm, perm)], disp, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_shells", [1, 2, 3])
def test_colourings_are_proper_and_deterministic(kind, n_shells):
    for boundary, size in (("periodic", KNOWN[kind][0]), ("open", open_size(kind, 4))):
        lattice = Lattice(kind, size, boundary, 2, n_shells)
        n = lattice.max_sites
        colours = lattice.colouring(n)
        assert colours.dtype == np.int64 and colours.shape == (n,)
        check_colouring(lattice.pairs(n), colours)
        np.testing.assert_array_equal(colours, Lattice(kind, size, boundary, 2, n_shells).colouring(n))
        degree = np.bincount(np.concatenate([lattice.pairs(n).i, lattice.pairs(n).j]), minlength=n)
        assert colours.max() + 1 <= degree.max() + 1  # greedy bound
        order = lattice.sweep_order(n)
        assert sorted(order.tolist()) == list(range(n))


@pytest.mark.parametrize(("kind", "size", "boundary", "expected"), [
    ("triangular", (9, 9), "periodic", 3),
    ("triangular", (6, 6), "periodic", 3),
    ("triangular", (5, 4), "open", 3),
    ("square", (6, 6), "periodic", 2),
    ("square", (5, 5), "open", 2),
    ("square", (5, 5), "periodic", 3),  # odd rings: not bipartite
    ("honeycomb", (4, 4), "periodic", 2),
    ("kagome", (4, 4), "periodic", 3),
    ("cubic", (4, 4, 4), "periodic", 2),
    ("chain", (7,), "periodic", 3),
])
def test_nearest_neighbour_colourings_use_the_fewest_colours(kind, size, boundary, expected):
    lattice = Lattice(kind, size, boundary, 1, 1)
    assert lattice.colouring(lattice.max_sites).max() + 1 == expected


def test_two_colours_on_the_triangular_lattice_are_refused():
    lattice = Lattice("triangular", (6, 6), "periodic", 1, 1)
    n = lattice.max_sites
    cells = np.indices(lattice.size).reshape(2, -1).T
    two = (cells[:, 0] + cells[:, 1]) % 2  # the checkerboard: proper on the square lattice only
    check_colouring(Lattice("square", (6, 6), "periodic", 1, 1).pairs(n), two)
    with pytest.raises(SpinscoreError, match="improper colouring"):
        check_colouring(lattice.pairs(n), two)
    three = (cells[:, 0] + 2 * cells[:, 1]) % 3  # the three sublattices
    check_colouring(lattice.pairs(n), three)

    class TwoColours(Lattice):
        def colouring(self, n_sites):
            return two

    with pytest.raises(SpinscoreError, match="improper colouring"):
        TwoColours("triangular", (6, 6), "periodic", 1, 1).sweep_order(n)


def random_graph(rng, n, p):
    iu, ju = np.triu_indices(n, 1)
    keep = rng.random(len(iu)) < p
    shell = rng.integers(1, 3, size=int(keep.sum()))
    return Pairs(i=iu[keep], j=ju[keep], shell=shell)


@pytest.mark.parametrize("seed", range(6))
def test_random_graph_colourings_are_proper(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    pairs = random_graph(rng, n, float(rng.uniform(0.05, 0.6)))
    colours = greedy_colouring(n, pairs)
    check_colouring(pairs, colours)
    degree = np.bincount(np.concatenate([pairs.i, pairs.j]), minlength=n)
    assert colours.max() + 1 <= degree.max() + 1
    if {1, 2} <= set(pairs.shell.tolist()):
        graph = Graph(n, pairs, 2, 2)
        check_colouring(graph.pairs(n), graph.colouring(n))
    # a random tree is bipartite: two colours
    parents = np.array([int(rng.integers(0, v)) for v in range(1, n)])
    tree = Pairs(i=parents, j=np.arange(1, n), shell=np.ones(n - 1, dtype=np.int64))
    assert greedy_colouring(n, tree).max() == 1


def test_graph_pair_features_are_shells_then_hop_distances():
    # path 0-1-2-3 (shell 1) plus the pair (0, 2) in shell 2; site 4 isolated
    pairs = Pairs(i=np.array([0, 1, 2, 0]), j=np.array([1, 2, 3, 2]), shell=np.array([1, 1, 1, 2]))
    graph = Graph(5, pairs, 2, 2)
    features = graph.pair_features(5)
    assert features[0, 1] == 1 and features[0, 2] == 2 and features[2, 0] == 2
    assert features[0, 3] == 2 + 2  # two hops (0-2-3) + n_shells
    assert features[1, 3] == 2 + 2
    assert features[0, 4] == 2 + 5 and features[4, 4] == 0  # disconnected: n_shells + N
    np.testing.assert_array_equal(features, features.T)
    assert hop_distances(5, graph.pairs(5))[0, 3] == 2
    p = graph.pairs(5)
    assert list(zip(p.shell.tolist(), p.i.tolist(), p.j.tolist(), strict=True)) == [
        (1, 0, 1), (1, 1, 2), (1, 2, 3), (2, 0, 2)]


def write(path, data):
    path.write_text(json.dumps(data) if path.suffix == ".json" else
                    "sites: {sites}\npairs: {pairs}\n".format(**data))
    return path


def test_a_graph_file_is_read_and_both_orientations_are_one_pair(tmp_path):
    path = write(tmp_path / "g.yaml", {"sites": 4, "pairs": [[0, 1, 1], [1, 0, 1], [3, 2, 2], [1, 2, 1]]})
    n, pairs = read_graph(path)
    assert n == 4
    assert list(zip(pairs.shell.tolist(), pairs.i.tolist(), pairs.j.tolist(), strict=True)) == [
        (1, 0, 1), (1, 1, 2), (2, 2, 3)]
    graph = Graph.from_file(write(tmp_path / "g.json", {"sites": 4, "pairs": [[0, 1, 1], [2, 3, 2]]}), 2, 2)
    assert graph.max_sites == 4 and len(graph.pairs(4)) == 2


@pytest.mark.parametrize(("pairs", "message"), [
    ([[0, 1, 1], [1, 0, 2]], r"pairs\[1\] = \[1, 0, 2\]: not symmetric"),
    ([[0, 1, 1], [1, 4, 1]], r"pairs\[1\] = \[1, 4, 1\]: site 4 out of range \[0, 4\)"),
    ([[0, -1, 1]], "site -1 out of range"),
    ([[0, 1, 1], [2, 3, 1], [0, 1, 1]], r"pairs\[2\] = \[0, 1, 1\]: pair listed twice"),
    ([[0, 1, 1], [0, 1, 2]], "pair listed twice"),
    ([[2, 2, 1]], "paired with itself"),
    ([[0, 1, 0]], "shell 0 must be >= 1"),
    ([[0, 1]], r"pairs\[0\]: expected \[i, j, shell\]"),
])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_graph_file_errors_name_the_file_and_the_field(tmp_path, pairs, message, suffix):
    path = write(tmp_path / f"bad{suffix}", {"sites": 4, "pairs": pairs})
    with pytest.raises(SpinscoreError, match=message) as err:
        read_graph(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_graph_file_structure_errors(tmp_path):
    for text, message in [("sites: 0\npairs: []\n", "sites: expected a positive integer"),
                          ("nodes: 3\npairs: []\n", "exactly the keys"),
                          ("sites: 3\npairs: [[0, 1\n", "not a valid graph file")]:
        path = tmp_path / "g.yaml"
        path.write_text(text)
        with pytest.raises(SpinscoreError, match=message) as err:
            read_graph(path)
        assert str(path) in str(err.value)
    with pytest.raises(SpinscoreError, match="graph file not found"):
        read_graph(tmp_path / "missing.yaml")
    pairs = Pairs(i=np.array([0]), j=np.array([1]), shell=np.array([1]))
    with pytest.raises(SpinscoreError, match="no pair in shell 2"):
        Graph(3, pairs, 1, 2)
    with pytest.raises(SpinscoreError, match="a pair in shell 2 but n_shells = 1"):
        Graph(3, Pairs(i=np.array([0, 1]), j=np.array([1, 2]), shell=np.array([1, 2])), 1, 1)


@pytest.mark.parametrize(("kind", "size", "n_shells", "shell"), [
    ("square", (2, 2), 1, 1),
    ("square", (4, 4), 3, 3),  # +2 and -2 cells reach the same site
    ("square", (5, 4), 4, 3),
    ("triangular", (7, 6), 4, 4),  # √7 spans 3 cells: (3, -1)
    ("triangular", (6, 4), 3, 2),  # √3 spans 2 cells: (2, -1)
    ("honeycomb", (2, 5), 1, 1),
    ("kagome", (3, 2), 1, 1),
    ("cubic", (3, 3, 2), 2, 1),
    ("chain", (6,), 3, 3),
])
def test_periodic_sizes_too_small_for_the_shells_are_refused(kind, size, n_shells, shell):
    with pytest.raises(SpinscoreError, match=rf"periodic {kind} lattice of size "
                       rf"{re.escape(str(size))} is too small for shell {shell} "):
        Lattice(kind, size, "periodic", 1, n_shells)


def test_the_smallest_accepted_periodic_sizes():
    Lattice("square", (3, 3), "periodic", 1, 1)
    Lattice("square", (5, 5), "periodic", 1, 3)
    Lattice("chain", (7,), "periodic", 1, 3)
    Lattice("triangular", (3, 3), "periodic", 1, 1)
    Lattice("triangular", (7, 5), "periodic", 1, 3)


def test_bad_lattices_are_refused():
    with pytest.raises(SpinscoreError, match="no pair in shell 3"):
        Lattice("square", (2, 2), "open", 1, 3)
    Lattice("square", (2, 2), "open", 1, 2)
    with pytest.raises(SpinscoreError, match="unknown lattice kind"):
        Lattice("hexagonal", (3, 3), "open", 1, 1)
    with pytest.raises(SpinscoreError, match="size must be 2"):
        Lattice("square", (3,), "open", 1, 1)
    with pytest.raises(SpinscoreError, match="boundary"):
        Lattice("square", (3, 3), "twisted", 1, 1)
    lattice = Lattice("square", (3, 3), "open", 1, 1)
    with pytest.raises(SpinscoreError, match="9 sites, asked for 10"):
        lattice.pairs(10)
    with pytest.raises(SpinscoreError, match="periodic"):
        lattice.translations()


def test_types_are_drawn_or_fixed():
    lattice = Lattice("kagome", (3, 3), "open", 3, 1)
    types = lattice.draw_types(np.random.default_rng(0))
    assert types.dtype == np.int8 and types.shape == (27,) and set(types.tolist()) == {0, 1, 2}
    pattern = np.arange(27) % 3
    fixed = Lattice("kagome", (3, 3), "open", 3, 1, pattern=pattern)
    np.testing.assert_array_equal(fixed.draw_types(np.random.default_rng(0)), pattern)
    assert fixed.draw_types(np.random.default_rng(1)).dtype == np.int8
    with pytest.raises(SpinscoreError, match="pattern types must lie in"):
        Lattice("kagome", (3, 3), "open", 2, 1, pattern=pattern)
    with pytest.raises(SpinscoreError, match="pattern must be 27"):
        Lattice("kagome", (3, 3), "open", 3, 1, pattern=pattern[:5])
    classes = fixed.pair_classes(pattern)
    assert classes.shape == (len(fixed.pairs(27)),) and classes.min() >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_translations_map_pairs_to_pairs_of_the_same_shell(kind):
    lattice = Lattice(kind, KNOWN[kind][0], "periodic", 2, 3)
    n = lattice.max_sites
    moves = lattice.translations()
    n_cells = int(np.prod(lattice.size))
    assert moves.shape == (n_cells, n) and moves.dtype == np.int64
    np.testing.assert_array_equal(moves[0], np.arange(n))
    pairs = lattice.pairs(n)
    listed = {(a, b, k) for a, b, k in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.shell.tolist(),
                                           strict=True)}
    features, pos = lattice.pair_features(n), lattice.positions()
    for t in range(n_cells):
        perm = moves[t]
        np.testing.assert_array_equal(np.sort(perm), np.arange(n))
        a, b = perm[pairs.i], perm[pairs.j]
        moved = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), pairs.shell.tolist(),
                        strict=True))
        assert moved == listed
        np.testing.assert_array_equal(features[np.ix_(perm, perm)], features)
        # every site moves by the same lattice vector (up to a period)
        shift = pos[perm] - pos
        frac = (shift - shift[0]) @ np.linalg.inv(np.asarray(lattice.size)[:, None] * lattice.vectors)
        np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)
    assert len({tuple(row) for row in moves.tolist()}) == n_cells
