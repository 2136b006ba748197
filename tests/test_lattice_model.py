"""The score model on lattices: translation invariance on periodic lattices (a translated
configuration gives the translated W), O(3) equivariance under random proper and improper
elements, and pair features by shell (no absolute position)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinscore.config import ModelConfig
from spinscore.model.equivariance import assert_equivariant
from spinscore.model.score_model import ScoreModel
from spinscore.systems import Lattice


def lattice_model(kind: str, size: tuple[int, ...], seed: int = 0):
    torch.manual_seed(seed)
    lattice = Lattice(kind, size, "periodic", n_types=2, n_shells=2)
    cfg = ModelConfig(single_dim=16, pair_dim=8, blocks=1, heads=2, max_distance=6)
    model = ScoreModel(cfg, n_types=2, max_length=128, output_scale=5.0, system=lattice)
    # the output head starts at zero (zero score): give it weights so W is not trivially 0
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    return model.double().eval(), lattice


def random_batch(n_sites: int, batch: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    spins = torch.randn(batch, n_sites, 3, generator=gen, dtype=torch.float64)
    spins = spins / spins.norm(dim=-1, keepdim=True)
    types = torch.randint(0, 2, (batch, n_sites), generator=gen)
    return spins, types, torch.full((batch,), 0.01, dtype=torch.float64)


@pytest.mark.parametrize("kind, size", [("square", (4, 4)), ("triangular", (6, 6)),
                                        ("honeycomb", (3, 3))])
def test_translated_configuration_gives_translated_couplings(kind, size):
    model, lattice = lattice_model(kind, size)
    spins, types, t = random_batch(lattice.max_sites)
    with torch.no_grad():
        w = model.couplings(spins, types, t)
        assert w.abs().max() > 1e-3
        for perm in lattice.translations()[1:]:
            inv = torch.as_tensor(np.argsort(perm))  # site s of the moved sample is inv[s]
            moved = model.couplings(spins[:, inv], types[:, inv], t)
            torch.testing.assert_close(moved, w[:, inv][:, :, inv], rtol=0, atol=1e-10)


def test_a_permutation_that_is_not_a_symmetry_changes_couplings():
    """The check above can fail: swapping two sites of different neighbourhoods is no
    symmetry of the lattice, and W does not follow it."""
    model, lattice = lattice_model("square", (4, 4))
    spins, types, t = random_batch(lattice.max_sites)
    perm = np.arange(lattice.max_sites)
    perm[[0, 5]] = perm[[5, 0]]  # (0,0) <-> (1,1): not a lattice translation
    inv = torch.as_tensor(np.argsort(perm))
    with torch.no_grad():
        w = model.couplings(spins, types, t)
        moved = model.couplings(spins[:, inv], types[:, inv], t)
    assert (moved - w[:, inv][:, :, inv]).abs().max() > 1e-4


def test_lattice_model_has_no_position_embedding_and_is_equivariant():
    model, lattice = lattice_model("triangular", (6, 6))
    assert model.pos_embed is None
    spins, types, t = random_batch(lattice.max_sites)
    assert_equivariant(model, spins, types, t, n=4, atol=1e-10,
                       generator=torch.Generator().manual_seed(3))
