"""REMC on lattices and graphs through the CLI, against exact results (SPEC §10): a random tree
(exact Z and correlations), a square lattice with bonds along x only (independent exact chains),
the high-temperature series on the triangular lattice, and ground states found by annealing
(120° order; Néel and stripe states of the J1-J2 square lattice)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from spinscore.cli import main
from spinscore.io import read_dataset
from spinscore.physics.exact import langevin, nn_chain_mean_energy, triangular_high_t_energy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def simulate(tmp_path, system: dict, **simulation):
    """Run `spinscore simulate` on a config with `system` and return the data set."""
    sim = {"sequences": 24, "snapshots": 20, "replicas": 1, "burn_in": 300, "thinning": 10,
           "swap_every": 5, "seed": 3, **simulation}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"system": system, "simulation": sim}))
    out = tmp_path / "data.h5"
    res = CliRunner().invoke(main, ["simulate", "--config", str(cfg), "--out", str(out),
                                    "--quiet", "--threads", "1"])
    assert res.exit_code == 0, res.output
    return read_dataset(out)


def write_graph(path, n_sites: int, pairs: list[tuple[int, int, int]]) -> str:
    path.write_text(json.dumps({"sites": n_sites, "pairs": [list(p) for p in pairs]}))
    return str(path)


def mean_within(residuals: np.ndarray, n_se: float = 4.0, extra: float = 0.0) -> None:
    """The mean of per-sequence residuals is zero within n_se standard errors (+ extra)."""
    mean = residuals.mean()
    se = residuals.std(ddof=1) / np.sqrt(len(residuals))
    assert abs(mean) < n_se * se + extra, f"mean residual {mean:.4g}, standard error {se:.3g}"


COUPLINGS = {1: {"AA": 1.0, "BB": 0.4, "AB": -0.7}, 2: {"AA": -0.5, "BB": 0.8, "AB": 0.3}}


def test_random_tree_against_the_exact_tree(tmp_path):
    rng = np.random.default_rng(0)
    n = 16
    parent = [int(rng.integers(0, i)) for i in range(1, n)]
    shells = rng.integers(1, 3, size=n - 1)
    pairs = [(p, i + 1, int(k)) for i, (p, k) in enumerate(zip(parent, shells, strict=True))]
    graph = write_graph(tmp_path / "tree.json", n, pairs)
    temperature = 0.5
    ds = simulate(tmp_path, {"types": ["A", "B"], "couplings": COUPLINGS,
                             "temperature": temperature, "graph": graph}, replicas=2, t_max=1.0)
    table = np.zeros((2, 2, 2))
    for k, entries in COUPLINGS.items():
        for key, j in entries.items():
            a, b = "AB".index(key[0]), "AB".index(key[1])
            table[k - 1, a, b] = table[k - 1, b, a] = j
    i, j, k = (np.array([p[c] for p in pairs]) for c in range(3))
    bond_j = table[k - 1, ds.types[:, i], ds.types[:, j]]  # (n_seq, n - 1)
    exact = np.array([nn_chain_mean_energy(b, 1 / temperature) for b in bond_j])
    mean_within(ds.energy.mean(axis=1) - exact)
    # <S_0 . S_c> through the path 0 -> parent(c) -> c: the product of the bonds' L(beta J)
    c = next(v for v in range(1, n) if parent[v - 1] != 0)
    up = [c]
    while up[-1] != 0:
        up.append(parent[up[-1] - 1])
    edges = [next(e for e, p in enumerate(pairs) if {p[0], p[1]} == {a, b})
             for a, b in zip(up, up[1:], strict=False)]
    predicted = np.prod(langevin(bond_j[:, edges] / temperature), axis=1)
    measured = np.einsum("sti,sti->st", ds.spins[:, :, 0], ds.spins[:, :, c]).mean(axis=1)
    mean_within(measured - predicted)


def test_square_lattice_with_x_bonds_only_is_independent_chains(tmp_path):
    lx, ly = 7, 4
    pairs = [(y * lx + x, y * lx + x + 1, 1) for y in range(ly) for x in range(lx - 1)]
    graph = write_graph(tmp_path / "xbonds.json", lx * ly, pairs)
    temperature = 0.4
    couplings = {1: COUPLINGS[1]}
    ds = simulate(tmp_path, {"types": ["A", "B"], "couplings": couplings,
                             "temperature": temperature, "graph": graph})
    table = np.array([[1.0, -0.7], [-0.7, 0.4]])
    i, j = np.array(pairs)[:, 0], np.array(pairs)[:, 1]
    bond_j = table[ds.types[:, i], ds.types[:, j]]
    exact = np.array([nn_chain_mean_energy(b, 1 / temperature) for b in bond_j])
    mean_within(ds.energy.mean(axis=1) - exact)
    dots = np.einsum("stpc,stpc->stp", ds.spins[:, :, i], ds.spins[:, :, j]).mean(axis=1)
    mean_within((dots - langevin(bond_j / temperature)).mean(axis=1))
    # rows do not talk to each other: the correlation across y is zero
    across = np.einsum("stc,stc->st", ds.spins[:, :, 0], ds.spins[:, :, lx]).mean(axis=1)
    mean_within(across)


def test_triangular_lattice_high_temperature_series(tmp_path):
    j, temperature, size = -1.0, 5.0, 9
    n = size * size
    ds = simulate(tmp_path, {"types": ["A"], "couplings": {1: {"AA": j}},
                             "temperature": temperature,
                             "lattice": {"kind": "triangular", "size": [size, size],
                                         "boundary": "periodic"}},
                  sequences=32, snapshots=100, thinning=4, burn_in=100)
    series, omitted = triangular_high_t_energy(j, 1 / temperature, n)
    mean_within(ds.energy.mean(axis=1) - series, extra=omitted)
    # the loops matter at this precision: the tree-level (no loop) energy is refused
    tree = -j * 3 * n * float(langevin(j / temperature))
    residual = ds.energy.mean(axis=1) - tree
    assert abs(residual.mean()) > 6 * residual.std(ddof=1) / np.sqrt(len(residual))


def anneal(tmp_path, system: dict, temperature: float):
    """Low-temperature REMC (a ladder from T = 2): energy per site of the coldest replica."""
    system = {**system, "temperature": temperature}
    ds = simulate(tmp_path, system, sequences=4, snapshots=10, replicas=16, t_max=2.0,
                  burn_in=3000, thinning=50, swap_every=5)
    return ds, ds.energy / ds.spins.shape[2]


def ground_energy_within(e_per_site: np.ndarray, e0: float, temperature: float) -> None:
    """Equipartition: 2 quadratic modes per spin give E/N = E0/N + T (less the few zero
    modes, and O(T^2) anharmonic terms: a tenth of T of slack)."""
    mean_within(e_per_site.mean(axis=1) - (e0 + temperature), extra=0.1 * temperature)


def test_triangular_antiferromagnet_anneals_to_the_120_degree_state(tmp_path):
    temperature = 0.01
    lattice = {"kind": "triangular", "size": [6, 6], "boundary": "periodic"}
    ds, e = anneal(tmp_path, {"types": ["A", "B"], "pattern": "AB" * 18,
                              "couplings": {1: {"AA": -1.0, "BB": -1.0, "AB": -1.0}},
                              "lattice": lattice}, temperature)
    ground_energy_within(e, -1.5, temperature)
    # 120 degrees: the three sublattice magnetisations sum to zero, each of length ~1
    x, y = np.divmod(np.arange(36), 6)[::-1]
    sub = (x - y) % 3  # with a2 = (1/2, sqrt 3/2), sites x - y = const mod 3 share a sublattice
    m = np.stack([ds.spins[:, :, sub == c].mean(axis=2) for c in range(3)])  # (3, s, t, 3)
    dots = np.einsum("astc,bstc->abst", m, m)
    assert np.all(dots[[0, 1, 2], [1, 2, 0]] < -0.45)


@pytest.mark.parametrize("j2, state, e0", [(-0.25, "neel", -1.5), (-0.8, "stripe", -1.6)])
def test_j1_j2_square_lattice_neel_and_stripe_ground_states(tmp_path, j2, state, e0):
    temperature = 0.01
    lattice = {"kind": "square", "size": [6, 6], "boundary": "periodic"}
    ds, e = anneal(tmp_path, {"types": ["A"], "couplings": {1: {"AA": -1.0}, 2: {"AA": j2}},
                              "lattice": lattice}, temperature)
    ground_energy_within(e, e0, temperature)
    x, y = np.divmod(np.arange(36), 6)[::-1]
    sign = np.where((x + y) % 2 == 0, 1.0, -1.0)
    neel = np.linalg.norm((ds.spins * sign[None, None, :, None]).mean(axis=2), axis=-1)
    assert (neel.min() > 0.9) == (state == "neel")


def test_invalid_geometries_give_one_line_and_exit_2(tmp_path):
    base = {"types": ["A"], "temperature": 1.0}
    cases = {
        "shell": {**base, "couplings": {3: {"AA": 1.0}},
                  "lattice": {"kind": "square", "size": [2, 2], "boundary": "open"}},
        "small": {**base, "couplings": {1: {"AA": 1.0}, 2: {"AA": 1.0}},
                  "lattice": {"kind": "triangular", "size": [3, 3], "boundary": "periodic"}},
        "asymmetric": {**base, "couplings": {1: {"AA": 1.0}, 2: {"AA": 0.5}},
                       "graph": write_graph(tmp_path / "bad.json", 3,
                                            [(0, 1, 1), (1, 0, 2), (1, 2, 1)])},
        # YAML's true, "1" and 1.0 are not integers (read_graph refuses them too)
        "boolean shell": {**base, "couplings": {1: {"AA": 1.0}},
                          "graph": {"sites": 3, "pairs": [[0, 1, True], [1, 2, 1]]}},
        "string site": {**base, "couplings": {1: {"AA": 1.0}},
                        "graph": {"sites": 3, "pairs": [[0, "1", 1], [1, 2, 1]]}},
        "float size": {**base, "couplings": {1: {"AA": 1.0}},
                       "lattice": {"kind": "square", "size": [3.0, 3], "boundary": "open"}},
        "boolean size": {**base, "couplings": {1: {"AA": 1.0}},
                         "lattice": {"kind": "square", "size": [True, 3], "boundary": "open"}},
    }
    for name, system in cases.items():
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"system": system,
                                       "simulation": {"sequences": 1, "snapshots": 1}}))
        res = CliRunner().invoke(main, ["simulate", "--config", str(cfg), "--out",
                                        str(tmp_path / f"{name}.h5"), "--quiet"])
        assert res.exit_code == 2, (name, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
        assert "system." in res.output, res.output
        assert not (tmp_path / f"{name}.h5").exists()
