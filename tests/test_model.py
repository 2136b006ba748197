"""The score network: O(3) equivariance, tangency, symmetric W, zero torque, padding; its
pair features come from the system."""

import numpy as np
import pytest
import torch

from spinscore.config import ModelConfig
from spinscore.model import ScoreModel, assert_equivariant, equivariance_errors
from spinscore.model.reference import plain_copy
from spinscore.systems import Chain

SMALL = ModelConfig(single_dim=16, pair_dim=8, blocks=2, heads=4, transition=2, max_distance=8)


def make_model(cfg=SMALL, seed=0):
    torch.manual_seed(seed)
    model = ScoreModel(cfg, n_types=2, max_length=20, output_scale=3.0).double()
    # random, not-small weights everywhere (the zero-initialised parts would hide errors)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def batch(seed=0, b=3, n=14, lengths=(14, 9, 11)):
    g = torch.Generator().manual_seed(seed)
    spins = torch.randn(b, n, 3, generator=g, dtype=torch.float64)
    spins = spins / spins.norm(dim=-1, keepdim=True)
    types = torch.randint(0, 2, (b, n), generator=g)
    for k, length in enumerate(lengths):
        types[k, length:] = -1
        spins[k, length:] = 0.0
    t = torch.tensor([1e-3, 0.1, 2.0], dtype=torch.float64)[:b]
    return spins, types, t


def test_equivariance_under_random_rotations_and_reflections():
    model = make_model()
    spins, types, t = batch()
    errors = assert_equivariant(model, spins, types, t, n=10, atol=1e-10,
                                generator=torch.Generator().manual_seed(100))
    assert errors.tangency < 1e-12 and errors.torque < 1e-12
    assert errors.scale > 1e-2  # not trivially zero


def test_equivariance_checker_catches_a_broken_score():
    """A score with a fixed direction added is neither equivariant nor tangent: the checker,
    used above on the network, must see it (under rotations and reflections alike)."""
    model = make_model()
    spins, types, t = batch()
    broken = lambda s, ty, tt: model(s, ty, tt) + torch.tensor([0.0, 0.0, 1e-3], dtype=s.dtype)  # noqa: E731
    errors = equivariance_errors(broken, spins, types, t, n=4)
    assert errors.proper > 1e-4 and errors.improper > 1e-4 and errors.tangency > 1e-4
    with pytest.raises(AssertionError, match="proper"):
        assert_equivariant(broken, spins, types, t, n=4)
    # a score that is equivariant under rotations only (a pseudovector) fails on reflections
    pseudo = lambda s, ty, tt: torch.linalg.cross(s, torch.roll(s, 1, dims=1), dim=-1)  # noqa: E731
    errors = equivariance_errors(pseudo, spins, types, t, n=4)
    assert errors.proper < 1e-12 < 1e-3 < errors.improper


def test_symmetric_w_zero_diagonal_zero_on_padding():
    model = make_model()
    spins, types, t = batch()
    with torch.no_grad():
        w = model.couplings(spins, types, t)
        score = model(spins, types, t)
    assert (w - w.transpose(1, 2)).abs().max() < 1e-14
    assert w.diagonal(dim1=1, dim2=2).abs().max() == 0
    valid = types >= 0
    assert w[~valid].abs().max() == 0 and score[~valid].abs().max() == 0


def test_pair_features_are_the_clipped_chain_separation():
    """The chain's pair features are today's |i - j| clipped at max_distance, so trained
    checkpoints give the same outputs; a model given the system explicitly is the same."""
    model = make_model()
    idx = torch.arange(14)
    expected = (idx[:, None] - idx[None, :]).abs().clamp(max=SMALL.max_distance)
    assert torch.equal(model.pair_features(14, torch.device("cpu")), expected)
    torch.manual_seed(0)
    explicit = ScoreModel(SMALL, n_types=2, max_length=20, output_scale=3.0,
                          system=Chain(2, 3, (5, 20))).double()
    explicit.load_state_dict(make_model().state_dict())
    spins, types, t = batch()
    with torch.no_grad():
        assert torch.equal(explicit(spins, types, t), model(spins, types, t))


def test_extra_padding_changes_nothing():
    model = make_model()
    spins, types, t = batch()
    g = torch.Generator().manual_seed(9)
    junk = torch.randn(spins.shape, generator=g, dtype=torch.float64)
    spins_junk = torch.where((types >= 0)[..., None], spins, junk)
    more_s = torch.cat([spins_junk, torch.randn(3, 5, 3, generator=g, dtype=torch.float64)], 1)
    more_t = torch.cat([types, torch.full((3, 5), -1)], 1)
    with torch.no_grad():
        ref = model(spins, types, t)
        padded = model(more_s, more_t, t)[:, :14]
        cropped = model(spins[1:2, :9], types[1:2, :9], t[1:2])
    valid = types >= 0
    assert (padded - ref)[valid].abs().max() < 1e-12
    assert (cropped[0] - ref[1, :9]).abs().max() < 1e-12


def test_concatenation_reference_is_the_same_function():
    model = make_model()
    plain = plain_copy(model)
    spins, types, t = batch()
    with torch.no_grad():
        assert (plain(spins, types, t) - model(spins, types, t)).abs().max() < 1e-10


def test_paper_size():
    from spinscore.model import count_parameters

    model = ScoreModel(ModelConfig(), n_types=2, max_length=50, output_scale=20.0)
    n = count_parameters(model)
    assert 100_000 < n < 250_000, n  # the paper reports 116 369 for its variant


@pytest.mark.parametrize("t", [1e-4, 5.0])
def test_float32_finite_at_extreme_times(t):
    model = ScoreModel(SMALL, n_types=2, max_length=20, output_scale=20.0)
    spins, types, _ = batch()
    out = model(spins.float(), types, torch.full((3,), t))
    assert torch.isfinite(out).all()
    assert np.isfinite(out.detach().numpy()).all()
