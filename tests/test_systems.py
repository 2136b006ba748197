"""The system seam: the chain behind the `SpinSystem` interface gives today's pairs, classes,
colouring, pair features and, bit for bit, today's simulations; a second system (a ring) runs
through the same interface."""

import hashlib

import numpy as np
import pytest
import torch

from conftest import SYSTEM3, make_config
from spinscore.errors import SpinscoreError
from spinscore.physics.hamiltonian import (
    bond_classes,
    bond_couplings,
    energy,
    local_field,
    pair_couplings,
    pair_energy,
    pair_local_field,
)
from spinscore.sampling.remc import simulate_chunk
from spinscore.systems import (
    Chain,
    Pairs,
    SpinSystem,
    check_colouring,
    sweep_order,
    system_from_config,
)

# sha256 of simulate_chunk(make_config(system), range(4)) computed with the code before the
# seam (commit 80d558c) on this project's machine. The sampler's arithmetic is reproducible on
# one CPU family; a CPU without FMA may round differently (then recompute at 80d558c).
PINNED = {
    "paper": {"spins": "5ad1a6c4128087b14e1983a636eff22d19b655a0d1a015f469b7ced5adb651f0",
              "types": "b518aaf514a0f7b2114989117c3a62069f569df1b7641551a7df324d5cbd41bb"},
    "three": {"spins": "843374801c5f17008f7c5d795db85c12fcea994577570a4ec435607b0abea178",
              "types": "f57b69b0c1e22c694fe554de9a3804f11c7c8b78c408fefea76d289a3086a153"},
}


def config_of(name):
    return make_config() if name == "paper" else make_config(SYSTEM3)


@pytest.mark.parametrize("name", ["paper", "three"])
def test_chain_simulation_is_bit_identical_to_before_the_seam(name):
    out = simulate_chunk(config_of(name), range(4))
    for key, digest in PINNED[name].items():
        assert hashlib.sha256(np.ascontiguousarray(out[key]).tobytes()).hexdigest() == digest, key


@pytest.mark.parametrize("name", ["paper", "three"])
def test_chain_pairs_and_classes_are_the_named_parameters(name):
    """Every pair (i, i + r), r <= K, once, with the class of J_r(sigma_i, sigma_j) found by
    its name in `parameter_names` (an independent route to the parameter order)."""
    system = config_of(name).system
    chain = system_from_config(system)
    assert isinstance(chain, Chain) and chain.n_parameters == len(system.parameter_names())
    rng = np.random.default_rng(0)
    types = np.stack([chain.draw_types(rng)[:8] for _ in range(3)])
    types[1, 6:] = -1  # padding
    pairs, classes = chain.pairs(8), chain.pair_classes(types)
    expected = {(i, i + r) for r in range(1, system.max_range + 1) for i in range(8 - r)}
    assert set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)) == expected
    assert len(pairs) == len(expected) and np.all(pairs.j - pairs.i == pairs.shell)
    names = system.parameter_names()
    for b in range(3):
        for p in range(len(pairs)):
            a, c = types[b, pairs.i[p]], types[b, pairs.j[p]]
            if min(a, c) < 0:
                assert classes[b, p] == -1
                continue
            pair = "".join(sorted((system.types[a], system.types[c]), key=system.types.index))
            assert names[classes[b, p]] == f"J{pairs.shell[p]}_{pair}"
    # the bond layout read by the analyses holds the same classes at [r - 1, i]
    dense = bond_classes(types, system.n_types, system.max_range)
    np.testing.assert_array_equal(dense[:, pairs.shell - 1, pairs.i], classes)
    assert np.sum(dense >= 0) == np.sum(classes >= 0)


def test_chain_colouring_is_proper_and_two_colours_are_refused():
    for n_shells in range(1, 5):
        chain = Chain(1, n_shells, (2, 40))
        for n_sites in (2, n_shells + 1, 17, 40):
            check_colouring(chain.pairs(n_sites), chain.colouring(n_sites))
    chain = Chain(2, 2, (20, 50))
    with pytest.raises(SpinscoreError, match="sites 0 and 2 interact \\(shell 2\\)"):
        check_colouring(chain.pairs(30), np.arange(30) % 2)  # SPEC §3: the 2-colour pitfall

    class TwoColourChain(Chain):
        def colouring(self, n_sites):
            return np.arange(n_sites) % 2

    with pytest.raises(SpinscoreError, match="improper colouring"):
        TwoColourChain(2, 2, (20, 50)).sweep_order(30)
    TwoColourChain(2, 1, (20, 50)).sweep_order(30)  # nearest neighbours only: 2 colours do


def test_chain_sweep_order_is_colour_by_colour():
    np.testing.assert_array_equal(Chain(2, 2, (7, 7)).sweep_order(7), [0, 3, 6, 1, 4, 2, 5])
    np.testing.assert_array_equal(sweep_order(np.array([1, 0, 1, 0])), [1, 3, 0, 2])


def test_chain_pair_features_are_the_separation():
    features = Chain(2, 2, (5, 5)).pair_features(5)
    assert features.dtype == np.int64
    np.testing.assert_array_equal(features, [[abs(i - j) for j in range(5)] for i in range(5)])


@pytest.mark.parametrize("name", ["paper", "three"])
def test_pair_hamiltonian_equals_the_chain_bond_layout(name):
    """The per-pair H (any system) and the chain's vectorised bond layout agree, NumPy and
    torch, with padding."""
    system = config_of(name).system
    table, n_sites = system.coupling_table(), 15
    rng = np.random.default_rng(1)
    types = rng.integers(0, system.n_types, size=(4, n_sites)).astype(np.int8)
    types[2, 11:] = -1
    spins = rng.standard_normal((4, n_sites, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    pairs = system_from_config(system).pairs(n_sites)
    couplings, bonds = pair_couplings(types, pairs, table), bond_couplings(types, table)
    np.testing.assert_allclose(pair_energy(spins, pairs, couplings), energy(spins, bonds),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(pair_local_field(spins, pairs, couplings),
                               local_field(spins, bonds), rtol=0, atol=1e-12)
    st, tt = torch.as_tensor(spins), torch.as_tensor(types)
    ct = pair_couplings(tt, pairs, table)
    np.testing.assert_array_equal(ct.numpy(), couplings)
    np.testing.assert_allclose(pair_local_field(st, pairs, ct).numpy(), local_field(spins, bonds),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(pair_energy(st, pairs, ct).numpy(), energy(spins, bonds),
                               rtol=0, atol=1e-12)


class Ring(SpinSystem):
    """A periodic ring of N sites with nearest-neighbour bonds: a second system through the
    interface (odd N needs three colours)."""

    def __init__(self, n_sites, n_types=2):
        self.n_types, self.n_shells, self.max_sites = n_types, 1, n_sites

    def draw_types(self, rng):
        return rng.integers(0, self.n_types, size=self.max_sites).astype(np.int8)

    def pairs(self, n_sites):
        i = np.arange(n_sites)
        return Pairs(i=i, j=(i + 1) % n_sites, shell=np.ones(n_sites, dtype=np.int64))

    def colouring(self, n_sites):
        colours = np.arange(n_sites) % 2
        colours[-1] = 2 if n_sites % 2 else colours[-1]
        return colours

    def pair_features(self, n_sites):
        d = np.abs(np.arange(n_sites)[:, None] - np.arange(n_sites)[None, :])
        return np.minimum(d, n_sites - d)


def test_a_ring_runs_through_the_same_interface():
    ring = Ring(7)
    types = ring.draw_types(np.random.default_rng(2))
    pairs = ring.pairs(7)
    ring.sweep_order(7)  # three colours on the odd ring: proper
    with pytest.raises(SpinscoreError, match="sites 6 and 0"):
        check_colouring(pairs, np.arange(7) % 2)
    classes = ring.pair_classes(types)
    assert classes.shape == (7,) and set(classes.tolist()) <= {0, 1, 2}
    table = np.array([[[1.0, 0.8], [0.8, 0.5]]])
    rng = np.random.default_rng(3)
    spins = rng.standard_normal((7, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    j = pair_couplings(types, pairs, table)
    brute = -sum(table[0, types[i], types[(i + 1) % 7]] * spins[i] @ spins[(i + 1) % 7]
                 for i in range(7))
    assert pair_energy(spins, pairs, j) == pytest.approx(brute, abs=1e-12)
    h = pair_local_field(spins, pairs, j)
    assert h[0] == pytest.approx(j[0] * spins[1] + j[6] * spins[6], abs=1e-12)
    assert ring.pair_features(7)[0, 6] == 1  # periodic: sites 0 and 6 are neighbours
