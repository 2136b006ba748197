"""The molecular score network and its denoising score matching: E(3) equivariance, zero net
force and torque, symmetric W, atom permutations, learning an exactly sampled Gaussian elastic
network, bit-identical resume, refusal of bad input."""

import io

import numpy as np
import pytest
import torch

from spinscore.geometry.sphere import random_orthogonal
from spinscore.molecules.dsm import DSMSettings, MoleculeTrainer, centre, draw_sigmas, dsm_loss
from spinscore.molecules.score_model import AtomScoreModel, graph_distances, w_scale_from_data

CLASSES = ["CT", "HC", "HC", "C", "O", "N", "H", "CT"]
BONDS = np.array([(0, 1), (0, 2), (0, 3), (3, 4), (3, 5), (5, 6), (5, 7)])
SMALL = {"single_dim": 16, "pair_dim": 8, "blocks": 2, "heads": 4, "n_radial": 8, "w_scale": 50.0}


def stats_positions(n=8, m=50):
    """Positions the distance statistics are fitted on (M, n, 3) nm."""
    return 2.0 + 0.15 * np.random.default_rng(7).standard_normal((m, n, 3))


def make_model(classes=CLASSES, bonds=BONDS, seed=0, **hyper):
    """A float64 model with random, not-small weights everywhere (the zero-initialised head
    would make every check pass trivially), all features on, distance statistics fitted."""
    torch.manual_seed(seed)
    model = AtomScoreModel.for_molecule(classes, bonds, **{**SMALL, **hyper}).double()
    model.fit_distance_statistics(stats_positions(len(classes)))  # in float64: no rounding
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def batch(seed=0, b=3):
    n = len(CLASSES)
    g = torch.Generator().manual_seed(seed)
    x = 0.15 * torch.randn(b, n, 3, generator=g, dtype=torch.float64) + 2.0  # nm, not centred
    sigma = torch.tensor([1e-5, 1e-4, 3e-4], dtype=torch.float64)[:b]
    return x, sigma


def test_graph_distances_are_capped_shortest_paths():
    d = graph_distances(6, np.array([(0, 1), (1, 2), (2, 3), (3, 4)]), cap=3)
    assert d[0].tolist() == [0, 1, 2, 3, 3, 3]  # 0-4 is 4 bonds apart, atom 5 is disconnected
    assert (d == d.T).all() and d.dtype == np.int64


@pytest.mark.parametrize("proper", [True, False])
def test_score_is_e3_equivariant(proper):
    """score(x R^T + t) = score(x) R^T for rotations (det +1) and for reflections and
    rotoreflections (det -1), with random translations t; W itself is invariant."""
    model = make_model()
    x, sigma = batch()
    g = torch.Generator().manual_seed(1 if proper else 2)
    with torch.no_grad():
        ref, w_ref = model(x, sigma), model.pair_matrix(x, sigma)
        scale = float(ref.abs().max())
        assert scale > 1.0  # not trivially zero
        for q in random_orthogonal(6, proper=proper, generator=g, dtype=torch.float64):
            assert float(torch.det(q)) == pytest.approx(1.0 if proper else -1.0)
            t = torch.randn(3, generator=g, dtype=torch.float64)
            moved = x @ q.T + t
            assert float((model(moved, sigma) - ref @ q.T).abs().max()) < 1e-11 * scale
            assert float((model.pair_matrix(moved, sigma) - w_ref).abs().max()) < 1e-11 * float(
                w_ref.abs().max())


def test_zero_net_force_and_torque():
    model = make_model()
    x, sigma = batch(seed=3)
    with torch.no_grad():
        s = model(x, sigma)
    scale = float(s.norm(dim=-1).sum(-1).max())  # sum_i |s_i|: what cancels
    assert float(s.sum(dim=1).abs().max()) < 1e-12 * scale
    # about the origin: the net force is zero, so the torque is the same about any point
    torque = torch.linalg.cross(x, s, dim=-1).sum(dim=1)
    assert float(torque.abs().max()) < 1e-12 * scale * float(x.norm(dim=-1).max())


def test_pair_matrix_is_symmetric_with_zero_diagonal():
    model = make_model()
    x, sigma = batch(seed=4)
    with torch.no_grad():
        w = model.pair_matrix(x, sigma)
    assert w.shape == (3, len(CLASSES), len(CLASSES))
    assert torch.equal(w, w.transpose(1, 2))
    assert torch.equal(torch.diagonal(w, dim1=1, dim2=2), torch.zeros(3, len(CLASSES), dtype=w.dtype))
    assert float(w.abs().max()) > 0


def test_permuting_atoms_classes_and_bonds_together_permutes_the_score():
    model = make_model()
    perm = torch.tensor([5, 2, 7, 0, 3, 1, 6, 4])  # new atom k is old atom perm[k]
    inverse = torch.argsort(perm)
    classes = [CLASSES[p] for p in perm.tolist()]
    bonds = inverse.numpy()[BONDS]
    permuted = AtomScoreModel.for_molecule(classes, bonds, **SMALL).double()
    permuted.fit_distance_statistics(stats_positions()[:, perm])
    assert torch.equal(permuted.graph_distance, model.graph_distance[perm][:, perm])
    assert torch.allclose(permuted.pair_mean, model.pair_mean[perm][:, perm], rtol=1e-12, atol=0)
    assert torch.allclose(permuted.pair_std, model.pair_std[perm][:, perm], rtol=1e-12, atol=0)
    state = model.state_dict()
    state.update(class_index=permuted.class_index, graph_distance=permuted.graph_distance,
                 pair_mean=permuted.pair_mean, pair_std=permuted.pair_std)
    permuted.load_state_dict(state)
    x, sigma = batch(seed=5)
    with torch.no_grad():
        s, s_perm = model(x, sigma), permuted.eval()(x[:, perm], sigma)
        w, w_perm = model.pair_matrix(x, sigma), permuted.pair_matrix(x[:, perm], sigma)
    assert float((s_perm - s[:, perm]).abs().max()) < 1e-11 * float(s.abs().max())
    assert float((w_perm - w[:, perm][:, :, perm]).abs().max()) < 1e-11 * float(w.abs().max())


def test_rebuild_from_state_dict_and_config():
    model = make_model()
    rebuilt = AtomScoreModel.from_state_dict(model.state_dict(), model.config()).eval()
    assert rebuilt.class_names == tuple(sorted(set(CLASSES)))
    x, sigma = batch(seed=6)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, sigma), model(x, sigma))


# --- learnability: a Gaussian elastic network, sampled exactly -------------------------------

BETA = 0.4  # mol/kJ, ~300 K
NET_CLASSES = ["A", "B", "A", "B", "C"]
NET_BONDS = np.array([(0, 1), (1, 2), (2, 3), (3, 4)])
NET_K = {"AB": 2000.0, "BC": 6000.0}  # kJ/mol/nm^2 by class pair: thermal amplitudes 0.014-0.055 nm
SIGMA_MIN = 1e-3  # nm


def elastic_network():
    """Graph Laplacian L (n, n) kJ/mol/nm^2 of U = 1/2 sum_bonds k_ij |x_i - x_j|^2."""
    lap = np.zeros((len(NET_CLASSES),) * 2)
    for i, j in NET_BONDS:
        k = NET_K["".join(sorted(NET_CLASSES[i] + NET_CLASSES[j]))]
        lap[[i, j], [j, i]] -= k
        lap[[i, j], [i, j]] += k
    return lap


def exact_samples(lap, m, rng):
    """m exact Boltzmann samples (m, n, 3) nm: in centred coordinates a Gaussian with
    covariance pinv(beta L) per Cartesian component (the zero mode is the translation)."""
    lam, vec = np.linalg.eigh(lap)
    lam, vec = lam[1:], vec[:, 1:]
    z = rng.standard_normal((m, len(lam), 3)) / np.sqrt(BETA * lam)[None, :, None]
    return np.einsum("ia,mac->mic", vec, z)


def cosine(a, b):
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_learns_the_score_of_an_exactly_sampled_elastic_network():
    """Train on exact samples; the EMA score at SIGMA_MIN must have cosine >= 0.99 with the
    exact beta F = -beta L x on held-out samples.

    Why 0.99: the noised density's exact score, -(C + sigma^2 P)^+ x, differs from beta F per
    mode by 1 / (1 + sigma^2 beta lambda), sigma^2 beta lambda_max ~ 5e-3 here: cosine
    >= 0.9999 (checked below), so the noise level costs nothing. A class-blind model, one
    spring constant for all bonds (the best it can do by symmetry), reaches only ~0.89
    (checked below). 0.99 is a relative rms error of ~14%, which requires telling the
    AB and BC bonds apart."""
    lap = elastic_network()
    rng = np.random.default_rng(1)
    train, test = exact_samples(lap, 4096, rng), exact_samples(lap, 512, rng)
    force = -BETA * np.einsum("ij,mjc->mic", lap, test)  # beta F, nm^-1
    projector = np.eye(len(lap)) - 1.0 / len(lap)
    stiffness = np.linalg.pinv(np.linalg.pinv(BETA * lap) + SIGMA_MIN**2 * projector)
    assert cosine(-np.einsum("ij,mjc->mic", stiffness, test), force) > 0.9999
    unit = -(lap < 0).astype(float)  # the Laplacian with every k = 1
    unit -= np.diag(unit.sum(axis=1))
    blind = -np.einsum("ij,mjc->mic", unit, test)
    assert cosine(blind, force) < 0.9

    torch.manual_seed(0)
    model = AtomScoreModel.for_molecule(NET_CLASSES, NET_BONDS, positions=train, single_dim=16,
                                        pair_dim=16, blocks=1, heads=2, n_radial=16, r_max=0.3,
                                        sigma_ref=SIGMA_MIN)
    settings = DSMSettings(steps=200, batch_size=64, lr=3e-3, sigma_range=(SIGMA_MIN, 3 * SIGMA_MIN),
                           ema_decay=0.99, seed=0)
    trainer = MoleculeTrainer(model, train, settings)
    losses = trainer.run()
    assert len(losses) == 200 and np.isfinite(losses).all()
    x = torch.tensor(test, dtype=torch.float32)
    with torch.no_grad():
        score = trainer.ema.eval()(x, torch.full((len(test),), SIGMA_MIN)).double().numpy()
    assert cosine(score, force) >= 0.99


# --- training machinery -----------------------------------------------------------------------

def test_dsm_loss_of_the_zero_score_is_one_half_per_degree_of_freedom():
    """With s = 0 the loss is |eps|^2 / (2 * 3 (n - 1)) and eps is centred: mean 1/2."""
    zero = lambda x, sigma: torch.zeros_like(x)  # noqa: E731
    x0 = torch.zeros(4000, 5, 3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    loss = float(dsm_loss(zero, x0, torch.full((4000,), 1e-4, dtype=torch.float64), g))
    assert loss == pytest.approx(0.5, abs=5 * 0.5 * np.sqrt(2 / (2 * 4000 * 12)))
    assert torch.allclose(centre(x0 + 1.0), x0)


def test_sigmas_come_from_the_set_or_the_log_uniform_range():
    g = torch.Generator().manual_seed(0)
    s = draw_sigmas(DSMSettings(sigma_range=(1e-5, 1e-3)), 2000, g)
    assert float(s.min()) >= 1e-5 and float(s.max()) <= 1e-3
    assert abs(float(torch.log10(s).mean()) + 4.0) < 0.05  # log-uniform: mean log10 is the midpoint
    s = draw_sigmas(DSMSettings(sigma_set=(1e-4, 2e-4)), 100, g)
    assert set(s.tolist()) == {1e-4, 2e-4}


def small_trainer(seed=0):
    torch.manual_seed(seed)  # a different initialisation per call: load_state_dict must replace it
    positions = 0.1 * np.random.default_rng(0).standard_normal((50, len(CLASSES), 3))
    model = AtomScoreModel.for_molecule(CLASSES, BONDS, positions=positions, **SMALL)
    settings = DSMSettings(steps=6, batch_size=4, lr=1e-3, ema_decay=0.9, seed=3)
    return MoleculeTrainer(model, positions.astype(np.float32), settings)


def test_resumed_training_is_bit_identical():
    straight = small_trainer()
    straight.run()
    first = small_trainer()
    first.run(3)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # through bytes, as a checkpoint on disk would be
    buffer.seek(0)
    resumed = small_trainer(seed=1)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.step_count == 3
    resumed.run()
    assert resumed.step_count == straight.step_count == 6
    for module in ("model", "ema"):
        a, b = getattr(straight, module).state_dict(), getattr(resumed, module).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(p, q) for p, q in zip(straight.model.parameters(),
                                                     straight.ema.parameters(), strict=True))
    other = MoleculeTrainer(first.model, first.data, DSMSettings(steps=6, batch_size=4, seed=4))
    with pytest.raises(ValueError, match="other settings.*seed"):
        other.load_state_dict(first.state_dict())


def one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_bad_input_raises_a_clear_value_error():
    model = make_model()
    x, sigma = batch()
    n = len(CLASSES)
    nan = x.clone()
    nan[1, 2, 0] = float("nan")
    one_line_error(lambda: model(nan, sigma), "positions: non-finite")
    inf = x.clone()
    inf[0, 0, 1] = float("inf")
    one_line_error(lambda: model.pair_matrix(inf, sigma), "positions: non-finite")
    one_line_error(lambda: model(x[:, :-1], sigma), rf"positions: expected .*\(B, {n}, 3\)")
    one_line_error(lambda: model(x[0], sigma), "positions: expected")
    one_line_error(lambda: model(x[..., :2], sigma), "positions: expected")
    one_line_error(lambda: model(x, sigma[:2]), "sigma: expected shape")
    one_line_error(lambda: model(x, -sigma), "sigma: expected finite positive")
    one_line_error(lambda: model(x, sigma * float("nan")), "sigma: expected finite positive")
    good = np.zeros((10, n, 3))
    settings = DSMSettings()
    bad = good.copy()
    bad[3, 1, 2] = np.nan
    one_line_error(lambda: MoleculeTrainer(model, bad, settings), "positions: non-finite")
    one_line_error(lambda: MoleculeTrainer(model, good[:, :-1], settings), f"the model has {n}")
    one_line_error(lambda: MoleculeTrainer(model, good[0], settings), r"shape \(M, n, 3\)")
    one_line_error(lambda: DSMSettings(sigma_range=(1e-3, 1e-4)), "invalid sigma_range")
    one_line_error(lambda: DSMSettings(batch_size=0, ema_decay=1.0), "invalid batch_size, ema_decay")
    one_line_error(lambda: AtomScoreModel.for_molecule(CLASSES, BONDS, depth=3), "unknown hyper")
    one_line_error(lambda: AtomScoreModel.for_molecule(CLASSES, BONDS + 5), "bonds: atom index")
    one_line_error(lambda: DSMSettings(weighting="sigma"), "invalid weighting")
    one_line_error(lambda: DSMSettings(schedule="step", warmup=-1), "invalid warmup, schedule")
    unfitted = AtomScoreModel.for_molecule(CLASSES, BONDS, **SMALL).double()
    one_line_error(lambda: unfitted(x, sigma), "fit_distance_statistics")
    one_line_error(lambda: unfitted.fit_distance_statistics(x[:1]), r"expected \(M >= 2")
    one_line_error(lambda: unfitted.fit_distance_statistics(np.zeros((4, n, 3))), "does not vary")
    plain = AtomScoreModel.for_molecule(CLASSES, BONDS, **{**SMALL, **NO_STATS}).double()
    assert plain(x, sigma).shape == x.shape  # the features that need statistics are off


NO_STATS = {"standardise": False, "pair_scale": False, "linear_skip": False}


def test_distance_statistics_and_standardised_distance():
    """pair_mean / pair_std are the per-pair mean and (unbiased) std of the distances of the
    fitted positions; the standardised distance is invariant under rigid motions and
    reflections, and has mean 0 and std 1 per pair on the fitted positions."""
    model = make_model()
    pos = stats_positions()
    r = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
    off = ~np.eye(len(CLASSES), dtype=bool)
    assert np.allclose(model.pair_mean.numpy()[off], r.mean(0)[off], rtol=1e-12)
    assert np.allclose(model.pair_std.numpy()[off], r.std(0, ddof=1)[off], rtol=1e-12)
    x = torch.tensor(pos)
    z = model.standardised(model.pair_features(x)[0])
    assert float(z.mean(0)[off].abs().max()) < 1e-10
    assert float((z.std(0)[off] - 1).abs().max()) < 1e-10
    q = random_orthogonal(1, proper=False, generator=torch.Generator().manual_seed(3), dtype=torch.float64)[0]
    moved = x @ q.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(model.standardised(model.pair_features(moved)[0])[:, off], z[:, off], atol=1e-10)


def test_score_weighting_is_the_noise_weighting_less_its_constant_over_sigma_squared():
    """For one noise level: score-weighted loss = (noise-weighted loss - <|eps|^2>/2/dof) / sigma^2
    with the same eps; 0 for the zero score."""
    model = make_model()
    x0, _ = batch(seed=8)
    sigma = torch.full((3,), 2e-4, dtype=torch.float64)
    with torch.no_grad():
        noise = float(dsm_loss(model, x0, sigma, torch.Generator().manual_seed(5)))
        score = float(dsm_loss(model, x0, sigma, torch.Generator().manual_seed(5), "score"))
    g = torch.Generator().manual_seed(5)
    eps = centre(torch.randn(3, len(CLASSES), 3, generator=g, dtype=torch.float64))
    constant = float(0.5 * eps.pow(2).sum(dim=(1, 2)).mean()) / (3 * (len(CLASSES) - 1))
    assert score == pytest.approx((noise - constant) / 2e-4**2, rel=1e-6)
    zero = lambda x, sigma: torch.zeros_like(x)  # noqa: E731
    assert float(dsm_loss(zero, x0, sigma, torch.Generator().manual_seed(5), "score")) == 0.0


def test_learning_rate_warms_up_and_decays():
    trainer = small_trainer()
    s = trainer.settings
    trainer.settings = DSMSettings(steps=1000, lr=1e-3, warmup=10, min_lr_factor=0.05)
    assert trainer.lr_at(0) == pytest.approx(1e-4)
    assert trainer.lr_at(9) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 9 / 1000)))
    assert trainer.lr_at(500) == pytest.approx(0.5e-3)
    assert trainer.lr_at(999) == trainer.lr_at(5000) == pytest.approx(0.05e-3)
    trainer.settings = DSMSettings(lr=1e-3, warmup=0, schedule="constant")
    assert trainer.lr_at(0) == trainer.lr_at(10**6) == 1e-3
    trainer.settings = s


def test_w_scale_from_data():
    """One bond of length 0.1 nm, forces +-1000 kJ/mol/nm: rms(beta F) / 0.1 nm."""
    positions = np.array([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]])
    forces = np.array([[[1000.0, 0.0, 0.0], [-1000.0, 0.0, 0.0]]])
    scale = w_scale_from_data(positions, forces, BETA, np.array([(0, 1)]))
    assert scale == pytest.approx(BETA * 1000.0 / np.sqrt(3) / 0.1)


def _jacobian(model, x, sigma):
    """d score / d x of one configuration, (3n, 3n)."""
    return torch.autograd.functional.jacobian(
        lambda y: model(y[None], sigma[:1]).reshape(-1), x[0]).reshape(x.shape[1] * 3, -1)


def test_the_conservative_score_is_minus_the_gradient_of_an_invariant_energy():
    """With `conservative`, score = -grad E: E invariant under proper and improper elements
    and translations, the score equivariant, no net force or torque, E's finite difference
    along a random direction is -score . d, and the Jacobian is symmetric (curl free). The W
    form's Jacobian is not: its force is not a gradient, which is what heats Langevin chains."""
    model = make_model(conservative=True)
    x, sigma = batch()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # the score is differentiated all the same
        score = model(x, sigma)
        energy = model.energy(x, sigma)
        for proper in (True, False):
            rot = random_orthogonal(1, proper=proper, generator=g, dtype=torch.float64)[0]
            moved = x @ rot.T + torch.randn(1, 1, 3, generator=g, dtype=torch.float64)
            assert torch.allclose(model.energy(moved, sigma), energy, rtol=1e-10, atol=1e-10)
            assert torch.allclose(model(moved, sigma), score @ rot.T, rtol=1e-8,
                                  atol=1e-10 * float(score.abs().max()))
    assert float(score.sum(1).abs().max()) < 1e-9 * float(score.abs().max())
    centred = x - x.mean(1, keepdim=True)
    torque = torch.linalg.cross(centred, score, dim=-1).sum(1)
    assert float(torque.abs().max()) < 1e-9 * float(score.abs().max())
    d = torch.randn(x.shape, generator=g, dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        fd = (model.energy(x + h * d, sigma) - model.energy(x - h * d, sigma)) / (2 * h)
    assert torch.allclose(fd, -(score * d).sum((1, 2)), rtol=1e-6)
    jac = _jacobian(model, x, sigma)
    assert float((jac - jac.T).abs().max()) < 1e-8 * float(jac.abs().max())
    w_jac = _jacobian(make_model(), x, sigma)
    assert float((w_jac - w_jac.T).abs().max()) > 1e-3 * float(w_jac.abs().max())
    with pytest.raises(ValueError, match="conservative"):
        model.pair_matrix(x, sigma)


def test_the_conservative_model_trains_through_its_gradient():
    """DSM backpropagates through -grad E: every trunk parameter gets a gradient."""
    model = make_model(conservative=True).float().train()
    x = torch.as_tensor(stats_positions()[:8], dtype=torch.float32)
    sigmas = torch.full((8,), 1e-3)
    loss = dsm_loss(model, x, sigmas, torch.Generator().manual_seed(0), "score")
    loss.backward()
    assert all(p.grad is not None for p in model.trunk.parameters() if p.requires_grad)
    assert any(float(p.grad.abs().max()) > 0 for p in model.head.parameters())
