"""The cutoff pair track (`model.pair_cutoff`) and displacement features: W zero beyond the
cutoff, symmetric, the score equal to the pairwise field of W; O(3) equivariance; translation
invariance on periodic lattices (and the point group broken by displacements); the dense model
recovered when the lists hold every site; padding; the lattice's neighbour table against the
dense pair features; a 4096-site lattice; training, checkpoints and config errors."""

from __future__ import annotations

import copy
import resource

import numpy as np
import pytest
import torch

from conftest import PAPER_SYSTEM, SMALL_SIMULATION, write_config
from spinscore.checkpoints import build_model, load_model, save_checkpoint
from spinscore.config import ModelConfig, load_config, parse_config
from spinscore.diffusion.divergence import (
    divergence_exact,
    divergence_hutchinson,
    draw_probes,
    pairwise_control,
)
from spinscore.diffusion.flow import velocity_field
from spinscore.diffusion.losses import dsm_loss_sum
from spinscore.diffusion.sde import perturb
from spinscore.errors import ConfigError, SpinscoreError
from spinscore.geometry.sphere import pairwise_field, random_orthogonal
from spinscore.model import ScoreModel, assert_equivariant, score_model
from spinscore.stages import train
from spinscore.systems import Chain, Graph, Lattice, Pairs, SpinSystem

SMALL = ModelConfig(single_dim=16, pair_dim=8, blocks=2, heads=2, transition=2, max_distance=8)
KINDS_SIZES = {"chain": ((9,), (10,)), "square": ((5, 4), (4, 6)), "triangular": ((4, 4), (6, 5)),
               "honeycomb": ((3, 3), (3, 4)), "kagome": ((3, 3), (4, 3)),
               "cubic": ((3, 3, 3), (3, 4, 3))}


def make_model(system: SpinSystem | None = None, seed: int = 0, **cfg) -> ScoreModel:
    """A float64 model with random, not-small weights everywhere (the zero-initialised output
    head would hide errors)."""
    torch.manual_seed(seed)
    model = ScoreModel(SMALL.model_copy(update=cfg), n_types=2, max_length=20,
                       output_scale=3.0, system=system).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def twin(model: ScoreModel, **cfg) -> ScoreModel:
    """The same weights under another pair track (the parameters are the same)."""
    other = ScoreModel(model.cfg.model_copy(update=cfg), n_types=2, max_length=20,
                       output_scale=3.0, system=model.system).double()
    other.load_state_dict(model.state_dict())
    return other.eval()


def random_batch(n_sites: int, b: int = 3, seed: int = 1, lengths=None):
    g = torch.Generator().manual_seed(seed)
    spins = torch.nn.functional.normalize(
        torch.randn(b, n_sites, 3, generator=g, dtype=torch.float64), dim=-1)
    types = torch.randint(0, 2, (b, n_sites), generator=g)
    for k, length in enumerate(lengths or ()):
        types[k, length:] = -1
        spins[k, length:] = 0.0
    return spins, types, torch.tensor([1e-3, 0.1, 2.0], dtype=torch.float64)[:b]


@pytest.mark.parametrize("kind, size, boundary", [("square", (6, 6), "periodic"),
                                                  ("honeycomb", (3, 3), "open")])
def test_couplings_vanish_beyond_the_cutoff_and_give_the_score(kind, size, boundary):
    lattice = Lattice(kind, size, boundary, n_types=2, n_shells=1)
    model = make_model(lattice, pair_cutoff=2)
    n = lattice.max_sites
    spins, types, t = random_batch(n)
    with torch.no_grad():
        w = model.couplings(spins, types, t)
        w_slots, index = model.neighbour_couplings(spins, types, t)
        score = model(spins, types, t)
    features = torch.as_tensor(lattice.pair_features(n))
    beyond, within = features > 2, (features >= 1) & (features <= 2)
    assert w[:, beyond].abs().max() == 0
    assert (w[:, within].abs() > 1e-6).float().mean() > 0.95  # not trivially zero
    assert torch.equal(w, w.transpose(1, 2))
    assert w.diagonal(dim1=1, dim2=2).abs().max() == 0
    # the slots scatter into the dense W; slot 0 is the site itself, with zero coupling
    assert torch.equal(index[:, 0], torch.arange(n)) and w_slots[:, :, 0].abs().max() == 0
    rows = torch.arange(n)[:, None].expand_as(index)
    ok = index >= 0
    assert torch.equal(w[:, rows[ok], index[ok]], w_slots[:, ok])
    torch.testing.assert_close(score, pairwise_field(w, spins)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cutoff", [None, 2])
def test_score_and_couplings_are_forward_and_couplings_and_serve_the_control_variate(cutoff):
    """One pass gives both outputs, equal to `forward` and `couplings` (dense and cutoff track);
    the likelihood's controlled Hutchinson estimate runs through it (torch.func.vjp with W as
    auxiliary output) and, W being held by the control variate, averages to the exact
    divergence."""
    lattice = Lattice("square", (4, 4), "periodic", n_types=2, n_shells=1)
    model = make_model(lattice, pair_cutoff=cutoff)
    spins, types, t = random_batch(lattice.max_sites, b=2)
    with torch.no_grad():
        score, w = model.score_and_couplings(spins, types, t)
        torch.testing.assert_close(score, model(spins, types, t), rtol=0, atol=1e-12)
        torch.testing.assert_close(w, model.couplings(spins, types, t), rtol=0, atol=1e-12)
    valid = types >= 0
    exact, _ = divergence_exact(velocity_field(model, types, t, torch.float64), spins, valid)
    noise = draw_probes("rademacher", 400, spins, torch.Generator().manual_seed(3))
    field = velocity_field(model, types, t, torch.float64, with_couplings=True)
    single = []
    for k in range(0, 400, 20):  # means of 20 probes each
        estimate, _, w_aux = divergence_hutchinson(field, spins, valid, noise[k:k + 20],
                                                   has_aux=True)
        single.append(estimate + pairwise_control(w_aux, spins, valid, t, noise[k:k + 20]))
    single = torch.stack(single)
    sem = single.std(0) / len(single) ** 0.5
    assert ((single.mean(0) - exact).abs() < 4 * sem).all(), (single.mean(0), exact, sem)


@pytest.mark.parametrize("displacement", [False, True])
def test_score_equivariant_and_couplings_invariant_under_o3(displacement):
    lattice = Lattice("triangular", (6, 6), "periodic", n_types=2, n_shells=1)
    model = make_model(lattice, pair_cutoff=2, displacement_features=displacement)
    spins, types, t = random_batch(lattice.max_sites)
    errors = assert_equivariant(model, spins, types, t, n=4, atol=1e-10,
                                generator=torch.Generator().manual_seed(3))
    assert errors.scale > 1e-2
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        w = model.couplings(spins, types, t)
        for proper in (True, False):
            q = random_orthogonal(1, proper=proper, generator=gen, dtype=torch.float64)[0]
            torch.testing.assert_close(model.couplings(spins @ q.T, types, t), w,
                                       rtol=0, atol=1e-12)


def site_permutation_follows(model: ScoreModel, perm: np.ndarray, seed: int = 1) -> float:
    """Largest |W(moved sample) - moved W| when site s of a sample moves to perm[s]."""
    spins, types, t = random_batch(model.system.max_sites, seed=seed)
    inv = torch.as_tensor(np.argsort(perm))  # site s of the moved sample is inv[s]
    with torch.no_grad():
        w = model.couplings(spins, types, t)
        assert w.abs().max() > 1e-3
        moved = model.couplings(spins[:, inv], types[:, inv], t)
    return float((moved - w[:, inv][:, :, inv]).abs().max())


# a 4 x 4 square lattice has pairs at exactly half a period (two minimum images)
@pytest.mark.parametrize("kind, size", [("square", (4, 4)), ("triangular", (6, 6))])
@pytest.mark.parametrize("cutoff, displacement", [(2, False), (2, True), (30, True),
                                                  (None, True)])
def test_translated_configuration_gives_translated_couplings(kind, size, cutoff, displacement):
    lattice = Lattice(kind, size, "periodic", n_types=2, n_shells=1)
    model = make_model(lattice, pair_cutoff=cutoff, displacement_features=displacement)
    for perm in lattice.translations()[1:]:
        assert site_permutation_follows(model, perm) < 1e-10


def test_displacements_break_the_point_group_and_only_they_do():
    """A mirror x -> -x of the periodic square lattice keeps every distance: W follows it
    without displacement features, not with them (anisotropic couplings are allowed)."""
    lattice = Lattice("square", (5, 5), "periodic", n_types=2, n_shells=1)
    x, y = np.divmod(np.arange(25), 5)
    mirror = ((-x) % 5) * 5 + y
    assert site_permutation_follows(make_model(lattice, pair_cutoff=2), mirror) < 1e-10
    model = make_model(lattice, pair_cutoff=2, displacement_features=True)
    assert site_permutation_follows(model, mirror) > 1e-4


def test_pair_displacements_are_antisymmetric_translation_invariant_minimum_images():
    lattice = Lattice("square", (4, 4), "periodic", n_types=1, n_shells=1)
    sites = np.arange(16)
    d = lattice.pair_displacements(sites[:, None], sites[None, :])  # (16, 16, 2)
    np.testing.assert_allclose(d, -d.transpose(1, 0, 2), atol=1e-12)
    for perm in lattice.translations():
        np.testing.assert_allclose(d[perm][:, perm], d, atol=1e-12)
    first = lattice.displacements()  # the first shortest image: differs only on ties
    unique = np.all(np.abs(np.abs(first) - 2.0) > 1e-9, axis=-1)
    np.testing.assert_allclose(d[unique], first[unique], atol=1e-12)
    # from cell (0, 0) to (0, 2), (1, 2), (1, 3): two images at +-2 along y average out
    np.testing.assert_allclose(d[0, [2, 6, 7]], [[0, 0], [1, 0], [1, -1]], atol=1e-12)


def test_full_lists_give_the_dense_model():
    """A cutoff at the largest pair feature keeps every site in every list: the same weights
    give the dense model's W, on chains with padding and on a lattice with displacements."""
    chain = make_model()
    cut = twin(chain, pair_cutoff=13)
    index = cut.neighbour_table(14, torch.device("cpu")).index
    assert torch.equal(index.sort(dim=1).values, torch.arange(14).expand(14, 14))
    spins, types, t = random_batch(14, lengths=(14, 9, 11))
    with torch.no_grad():
        torch.testing.assert_close(cut.couplings(spins, types, t),
                                   chain.couplings(spins, types, t), rtol=0, atol=1e-12)
        torch.testing.assert_close(cut(spins, types, t), chain(spins, types, t), rtol=0,
                                   atol=1e-12)
    lattice = Lattice("square", (4, 4), "periodic", n_types=2, n_shells=1)
    dense = make_model(lattice, displacement_features=True)
    spins, types, t = random_batch(16)
    with torch.no_grad():
        torch.testing.assert_close(twin(dense, pair_cutoff=30).couplings(spins, types, t),
                                   dense.couplings(spins, types, t), rtol=0, atol=1e-12)


def test_chain_padding_gives_zero_score_and_changes_nothing():
    model = make_model(pair_cutoff=2)
    spins, types, t = random_batch(14, lengths=(14, 9, 11))
    g = torch.Generator().manual_seed(9)
    valid = types >= 0
    junk = torch.where(valid[..., None], spins, torch.randn(spins.shape, generator=g,
                                                           dtype=torch.float64))
    more_s = torch.cat([junk, torch.randn(3, 5, 3, generator=g, dtype=torch.float64)], 1)
    more_t = torch.cat([types, torch.full((3, 5), -1)], 1)
    with torch.no_grad():
        ref = model(spins, types, t)
        padded = model(more_s, more_t, t)
        cropped = model(spins[1:2, :9], types[1:2, :9], t[1:2])
    assert ref[~valid].abs().max() == 0 and padded[:, 14:].abs().max() == 0
    assert ref[valid].abs().max() > 1e-2
    assert (padded[:, :14] - ref)[valid].abs().max() < 1e-12
    assert (cropped[0] - ref[1, :9]).abs().max() < 1e-12


@pytest.mark.parametrize("kind", sorted(KINDS_SIZES))
@pytest.mark.parametrize("boundary", ["open", "periodic"])
def test_lattice_neighbour_table_is_the_one_of_the_dense_features(kind, boundary):
    for size in KINDS_SIZES[kind]:
        lattice = Lattice(kind, size, boundary, n_types=2, n_shells=1)
        n = lattice.max_sites
        for cutoff in (1, 2, 3, 7, 40):  # 40: beyond every pair of these lattices
            index, feature = lattice.neighbour_table(n, cutoff)
            expected = SpinSystem.neighbour_table(lattice, n, cutoff)  # from pair_features
            np.testing.assert_array_equal(index, expected[0], err_msg=f"{size} {cutoff}")
            np.testing.assert_array_equal(feature, expected[1], err_msg=f"{size} {cutoff}")


@pytest.mark.parametrize("kind, size", [("triangular", (3, 21)), ("kagome", (3, 16))])
def test_neighbour_table_on_elongated_skewed_lattices(kind, size):
    """Where the minimum image lies several periods away, both routes still agree."""
    lattice = Lattice(kind, size, "periodic", n_types=2, n_shells=1)
    n = lattice.max_sites
    for cutoff in (7, 20, 60):
        index, feature = lattice.neighbour_table(n, cutoff)
        expected = SpinSystem.neighbour_table(lattice, n, cutoff)
        np.testing.assert_array_equal(index, expected[0], err_msg=f"{cutoff}")
        np.testing.assert_array_equal(feature, expected[1], err_msg=f"{cutoff}")


def test_neighbour_lists_are_ordered_by_feature_then_site():
    index, feature = Chain(2, 2, (5, 10)).neighbour_table(6, 2)
    np.testing.assert_array_equal(index[2], [2, 1, 3, 0, 4])
    np.testing.assert_array_equal(feature[2], [0, 1, 1, 2, 2])
    np.testing.assert_array_equal(index[0], [0, 1, 2, -1, -1])
    np.testing.assert_array_equal(feature[0], [0, 1, 2, -1, -1])


def test_a_4096_site_lattice_runs_without_dense_pairs(monkeypatch):
    """64 x 64 periodic square lattice, cutoff 2 (K = 1 + 4 + 4 slots), batch 2, forward and
    backward: no (N, N) pair feature, displacement or W is asked for, and the peak memory grows
    by far less than one dense (B, N, N, c_z) float32 pair tensor (1.07 GB)."""
    lattice = Lattice("square", (64, 64), "periodic", n_types=2, n_shells=2)
    refuse = lambda *a, **k: pytest.fail("a dense (N, N) array was built")  # noqa: E731
    monkeypatch.setattr(Lattice, "pair_features", refuse)
    monkeypatch.setattr(Lattice, "displacements", refuse)
    monkeypatch.setattr(score_model, "dense_couplings", refuse)  # the score stays sparse
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    torch.manual_seed(0)
    model = ScoreModel(SMALL.model_copy(update={"pair_cutoff": 2, "displacement_features": True,
                                                "blocks": 1}),
                       n_types=2, max_length=20, output_scale=3.0, system=lattice)
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    n = lattice.max_sites
    spins = torch.nn.functional.normalize(torch.randn(2, n, 3), dim=-1)
    types = torch.randint(0, 2, (2, n))
    score = model(spins, types, torch.tensor([0.01, 0.5]))
    score.square().sum().backward()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert model.neighbour_table(n, torch.device("cpu")).index.shape == (n, 9)
    assert torch.isfinite(score).all() and score.abs().max() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.trunk.blocks[0].attention.qkv.weight.grad.abs().max() > 0
    assert grown < 300 * 1024, f"peak RSS grew by {grown / 1024:.0f} MiB"


def test_a_training_step_lowers_the_loss_on_a_lattice():
    """The training loss (`dsm_loss_sum`) through the cutoff model with displacements: the
    gradients reach every parameter and a few AdamW steps on one batch lower the loss."""
    lattice = Lattice("square", (4, 4), "periodic", n_types=2, n_shells=1)
    torch.manual_seed(0)
    model = ScoreModel(SMALL.model_copy(update={"pair_cutoff": 2, "displacement_features": True}),
                       n_types=2, max_length=20, output_scale=3.0, system=lattice)
    spins, types, _ = random_batch(16, b=8)
    t = torch.full((8,), 0.05, dtype=torch.float64)
    x_t, target = perturb(spins, t[:, None].expand(8, 16), torch.Generator().manual_seed(2))
    batch = (x_t.float(), types, t.float(), target.float(), torch.ones(8))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss, _ = dsm_loss_sum(model, *batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # the zero-initialised output layer passes no gradient on the first step; by now it does
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0
               for p in model.parameters())
    assert losses[-1] < 0.99 * losses[0], losses  # the noise floor is most of the loss


def test_train_and_load_a_cutoff_chain_model(tmp_path, small_dataset):
    """`spinscore train` end to end with a cutoff (the paper system, range 2, cutoff 2): the
    checkpoint loads as a cutoff model whose couplings beyond |i - j| = 2 are zero."""
    sets = [f"model.{k}={v}" for k, v in {**SMALL.model_dump(), "pair_cutoff": 2}.items()]
    sets += ["train.samples=32", "train.batch_size=8", "train.micro_batch_tokens=2000"]
    config = load_config(write_config(tmp_path / "cfg.yaml"), sets)
    train(config, small_dataset, tmp_path / "run", progress=False)
    model, loaded, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    assert loaded.model.pair_cutoff == 2 and model.cfg.pair_cutoff == 2
    spins, types, t = (x.float() if x.is_floating_point() else x for x in random_batch(12))
    with torch.no_grad():
        w = model.couplings(spins, types, t)
    sep = (torch.arange(12)[:, None] - torch.arange(12)[None, :]).abs()
    assert w[:, sep > 2].abs().max() == 0 and w[:, sep == 1].abs().max() > 0


def lattice_run_config(**model):
    system = {"types": ["A", "B"], "couplings": {1: {"AA": 1.0, "AB": 0.5, "BB": -0.5}},
              "temperature": 0.5,
              "lattice": {"kind": "square", "size": [4, 4], "boundary": "periodic"}}
    return parse_config({"system": system, "simulation": SMALL_SIMULATION,
                         "model": {**SMALL.model_dump(), **model}})


def test_a_cutoff_checkpoint_round_trips(tmp_path):
    config = lattice_run_config(pair_cutoff=3, displacement_features=True)
    meta = {"types": ["A", "B"], "max_range": 1, "max_length": 20, "output_scale": 2.0}
    torch.manual_seed(0)
    model = build_model(config.model, meta, config.system)
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    weights = model.state_dict()
    save_checkpoint(tmp_path / "cut.pt", {"model": weights, "ema": weights, "meta": meta,
                                          "config": config.to_yaml(), "step": 0})
    loaded, loaded_config, _ = load_model(tmp_path / "cut.pt")
    assert loaded_config.model.pair_cutoff == 3 and loaded_config.model.displacement_features
    assert isinstance(loaded.system, Lattice) and loaded.disp_embed is not None
    spins, types, t = (x.float() if x.is_floating_point() else x for x in random_batch(16))
    with torch.no_grad():
        assert torch.equal(loaded(spins, types, t), model.eval()(spins, types, t))
    # the dense model of the same config has the same parameters, so the weights load there
    dense = build_model(config.model.model_copy(update={"pair_cutoff": None}), meta,
                        config.system)
    dense.load_state_dict(weights)


def test_set_system_rebuilds_the_neighbour_lists():
    """A model moved from the periodic to the open 4 x 4 lattice (the same number of sites)
    must use the open lattice's lists: equal to a model built there."""
    periodic = Lattice("square", (4, 4), "periodic", n_types=2, n_shells=1)
    open_ = Lattice("square", (4, 4), "open", n_types=2, n_shells=1)
    model = make_model(periodic, pair_cutoff=2, displacement_features=True)
    spins, types, t = random_batch(16)
    with torch.no_grad():
        before = model.couplings(spins, types, t)
        model.set_system(open_)
        after = model.couplings(spins, types, t)
    fresh = make_model(open_, pair_cutoff=2, displacement_features=True)
    with torch.no_grad():
        torch.testing.assert_close(after, fresh.couplings(spins, types, t), rtol=0, atol=1e-12)
    assert (after - before).abs().max() > 1e-3
    far = torch.as_tensor(open_.pair_features(16) > 2)
    assert after[:, far].abs().max() == 0 and before[:, far].abs().max() > 0


def test_config_errors():
    base = {"system": copy.deepcopy(PAPER_SYSTEM), "simulation": SMALL_SIMULATION}
    with pytest.raises(ConfigError, match=r"model\.pair_cutoff: 1 would drop .* at least 2"):
        parse_config({**base, "model": {"pair_cutoff": 1}})
    assert parse_config({**base, "model": {"pair_cutoff": 2}}).model.pair_cutoff == 2
    with pytest.raises(ConfigError, match=r"model\.pair_cutoff: .*greater than or equal to 1"):
        parse_config({**base, "model": {"pair_cutoff": 0}})
    with pytest.raises(ConfigError, match=r"model\.displacement_features: needs a lattice"):
        parse_config({**base, "model": {"displacement_features": True}})
    assert lattice_run_config(displacement_features=True).model.displacement_features
    cfg = SMALL.model_copy(update={"displacement_features": True})
    with pytest.raises(SpinscoreError, match="needs a lattice"):
        ScoreModel(cfg, n_types=2, max_length=20, output_scale=1.0)
    graph = Graph(3, Pairs(i=np.array([0, 1]), j=np.array([1, 2]), shell=np.array([1, 1])), 2, 1)
    model = ScoreModel(cfg, 2, 20, 1.0, system=Lattice("square", (3, 3), "periodic", 2, 1))
    with pytest.raises(SpinscoreError, match="needs a lattice"):
        model.set_system(graph)
    with pytest.raises(SpinscoreError, match="dense model"):
        make_model().neighbour_couplings(*random_batch(5))
