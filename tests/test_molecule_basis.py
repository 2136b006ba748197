"""The amber force field as a linear basis: exact reproduction of OpenMM's groups, the oracle
readout, divergences, and closed-form score matching."""

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

from spinscore.molecules import (  # noqa: E402
    MOLAR_GAS_CONSTANT,
    alanine_dipeptide,
    atom_types,
    build_system,
    build_unsplit_system,
    evaluate,
    make_context,
    minimise,
    run_langevin,
)
from spinscore.molecules.basis import FAMILIES, force_field_basis  # noqa: E402
from spinscore.molecules.readout import (  # noqa: E402
    cosine,
    fit_forces,
    inflation,
    nrmse,
    parameters,
    remove_rigid,
    score_matching_fit,
    sector_forces,
    standard_errors,
)

BETA_300 = 1.0 / (MOLAR_GAS_CONSTANT * 300.0)  # mol/kJ


def _frames(solvent):
    """Basis, groups, 30 Langevin frames at 300 K plus two distorted structures (M, 22, 3) nm,
    and OpenMM's per-group forces on them (Reference platform, double precision)."""
    topology, start = alanine_dipeptide()
    system, groups = build_system(topology, solvent)
    minimised, _ = minimise(system, start)
    run = run_langevin(system, minimised, 300.0, 1.0, 5.0, 30, 40, seed=3, groups=())
    rng = np.random.default_rng(0)
    distorted = [minimised + 0.01 * rng.standard_normal(minimised.shape),
                 alanine_dipeptide(phi_deg=-150.0, psi_deg=155.0)[1]]
    positions = np.concatenate([run.positions, distorted])
    context = make_context(system, openmm.VerletIntegrator(0.001), "Reference")
    forces = []
    for frame in positions:
        context.setPositions(frame)
        forces.append(evaluate(context, tuple(groups.values()))[1])
    basis = force_field_basis(system, groups, atom_types(topology, solvent)[1])
    return basis, groups, positions, np.asarray(forces)


@pytest.fixture(scope="module", params=["vacuum", "implicit"])
def frames(request):
    return _frames(request.param)


def _relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_design_reproduces_openmm_groups(frames):
    basis, groups, positions, forces = frames
    phi = basis.design(positions)
    assert phi.shape == (len(positions), 22, 3, len(basis.columns))
    assert set(basis.families) == set(FAMILIES)
    for family in FAMILIES:
        mask = basis.families == family
        assert _relative(phi[..., mask] @ basis.theta_true[mask], forces[:, groups[family]]) < 1e-9, family
    # Every column is an internal force: no net force, no net torque.
    flat = np.moveaxis(phi, -1, 1).reshape(-1, 22, 3)
    xs = np.repeat(positions, len(basis.columns), axis=0)
    assert np.abs(flat.sum(1)).max() < 1e-6 * np.abs(flat).max()
    assert np.abs(np.cross(xs, flat).sum(1)).max() < 1e-6 * np.abs(flat).max()


def test_sector_forces_equal_openmm_groups(frames):
    basis, groups, positions, forces = frames
    sectors = sector_forces(basis.design(positions), basis.theta_true, basis.columns)
    assert set(sectors) == set(FAMILIES)
    for family, force in sectors.items():
        assert cosine(force, forces[:, groups[family]]) > 1 - 1e-12
        assert nrmse(force, forces[:, groups[family]], positions) < 1e-9


def test_true_parameters_are_amber14(frames):
    basis, *_ = frames
    table = {(p.family, p.key, p.periodicity, p.name): p for p in parameters(basis.theta_true, basis.columns)}
    assert all(p.error == 0 for p in table.values())
    ct_hc = table["bond", ("CT", "HC"), 0, "k"]
    # amber: 340 kcal/mol/Å², r0 1.09 Å; OpenMM stores twice the amber constant.
    assert ct_hc.true == pytest.approx(340 * 4.184 * 100)
    assert table["bond", ("CT", "HC"), 0, "k_openmm"].true == pytest.approx(2 * 340 * 4.184 * 100)
    assert table["bond", ("CT", "HC"), 0, "r0"].true == pytest.approx(0.109)
    assert table["improper", ("CT", "N", "C", "O"), 2, "gamma"].true == pytest.approx(180.0)
    counts = {f: int(np.sum(basis.families == f)) for f in FAMILIES}
    assert counts == {"bond": 22, "angle": 42, "proper": 52, "improper": 8,
                      "lj": 56, "coulomb": 51, "lj14": 40, "coulomb14": 26}


def test_oracle_fit_recovers_every_resolved_parameter(frames):
    basis, groups, positions, forces = frames
    target = sum(forces[:, groups[f]] for f in FAMILIES)  # the solvent group is left out
    phi = basis.design(positions)
    theta = fit_forces(phi, target)
    flat = phi.reshape(-1, phi.shape[-1])
    gram = flat.T @ flat
    assert np.all(np.isfinite(inflation(gram)))  # no exactly collinear columns
    # Relative precision at which each column is resolved from exact double-precision forces
    # (OpenMM's Reference forces are exact to about 3e-15 of their rms; 1e-14 is the margin).
    # A torsion's cos and sin columns share the scale V (the sin coefficients are 0 in amber14).
    types = [(c.family, c.key, c.periodicity) for c in basis.columns]
    torsion_v = {}
    for t, c in zip(types, basis.columns, strict=True):
        torsion_v[t] = max(torsion_v.get(t, 0.0), abs(c.true))
    scale = np.array([torsion_v[t] if c.family in ("proper", "improper") else abs(c.true)
                      for t, c in zip(types, basis.columns, strict=True)])
    errors = standard_errors(gram, 1e-14 * np.sqrt(np.mean(target**2)))
    # A column whose force is below 1e-9 of the total is also lost to rounding in the solve.
    share = np.linalg.norm(flat, axis=0) * scale / np.linalg.norm(target)
    unresolved = {t for t, e, s, f in zip(types, errors, scale, share, strict=True)
                  if e > 1e-7 * s or f < 1e-9}
    assert {family for family, *_ in unresolved} <= {"lj"}
    assert len(unresolved) < 5
    tolerance = {"r0": 1e-6, "theta0": 1e-5, "gamma": 1e-4, "sigma": 1e-6}
    checked = 0
    for p in parameters(theta, basis.columns):
        if (p.family, p.key, p.periodicity) not in unresolved:
            assert abs(p.error) < tolerance.get(p.name, 1e-6), p
            checked += 1
    assert checked > 400
    assert _relative(phi @ theta, target) < 1e-10


def test_divergence_matches_central_differences(frames):
    basis, _, positions, _ = frames
    x = positions[-1]  # the unminimised geometry
    phi, div = basis.design_and_divergence(positions[[0, -1]])
    assert np.allclose(phi, basis.design(positions[[0, -1]]))
    h = 1e-5
    numeric = np.zeros(len(basis.columns))
    for atom in range(22):
        for axis in range(3):
            step = np.zeros_like(x)
            step[atom, axis] = h
            plus, minus = basis.design(x + step)[0, atom, axis], basis.design(x - step)[0, atom, axis]
            numeric += (plus - minus) / (2 * h)
    scale = np.abs(div[1]) + 1e-6 * np.abs(div[1]).max()
    assert np.max(np.abs(numeric - div[1]) / scale) < 1e-5


def test_score_matching_gaussian_closed_form():
    """s(x) = −P x + b on Gaussian samples: the fit is the inverse sample covariance and P⁻¹b
    the sample mean, exactly; both near the truth within sampling error."""
    rng = np.random.default_rng(1)
    d, m = 3, 4000
    root = rng.standard_normal((d, d)) * 0.3 + np.eye(d)
    mean = np.array([0.5, -1.0, 2.0])
    x = mean + rng.standard_normal((m, d)) @ root.T
    # Columns: −x_j e_i for the entries P_ij, then e_i for b_i; divergence of −x_j e_i is −δ_ij.
    phi = np.zeros((m, 1, d, d * d + d))
    div = np.zeros((m, d * d + d))
    for i in range(d):
        for j in range(d):
            phi[:, 0, i, i * d + j] = -x[:, j]
            div[:, i * d + j] = -1.0 if i == j else 0.0
        phi[:, 0, i, d * d + i] = 1.0
    theta = score_matching_fit(phi, div)
    precision, b = theta[:d * d].reshape(d, d), theta[d * d:]
    sample_cov = np.cov(x.T, bias=True)
    assert np.allclose(precision, np.linalg.inv(sample_cov), rtol=1e-9, atol=1e-9)
    assert np.allclose(np.linalg.solve(precision, b), x.mean(0), atol=1e-9)
    true_precision = np.linalg.inv(root @ root.T)
    assert np.abs(precision - true_precision).max() < 0.15 * np.abs(true_precision).max()


def test_score_matching_alanine_converges():
    """Hyvärinen fit of the amber basis on vacuum Langevin frames: the Stein identity holds for
    the true coefficients and the fitted force field approaches the true one as frames grow."""
    topology, start = alanine_dipeptide()
    system, groups = build_system(topology, "vacuum")
    basis = force_field_basis(system, groups, atom_types(topology)[1])
    minimised, _ = minimise(system, start)
    run = run_langevin(system, minimised, 300.0, 1.0, 5.0, 1200, 20, seed=11, groups=(),
                       dynamics_system=build_unsplit_system(topology))
    positions = run.positions[200:]  # the first frames relax from the minimum
    phi, div = basis.design_and_divergence(positions)
    true_force = phi @ basis.theta_true
    errors = {}
    for m in (100, 1000):
        theta = score_matching_fit(phi[:m], div[:m]) / BETA_300
        table = parameters(theta, basis.columns, ("bond",))
        k = np.median([abs(p.error) for p in table if p.name == "k"])
        r0 = np.median([abs(p.error) for p in table if p.name == "r0"])
        errors[m] = (nrmse(phi @ theta, true_force), k, r0)
    assert errors[1000][0] < errors[100][0]
    assert errors[1000][0] < 0.5
    assert errors[1000][1] < 0.3  # median relative error of the bond constants
    # Stein identity E[Φ_p · βF + ∇·Φ_p] = 0 for the true coefficients: the bond columns, whose
    # frames decorrelate fastest, within six standard errors of 20 blocks.
    stein = np.einsum("mnkp,mnk->mp", phi, BETA_300 * true_force) + div
    blocks = stein.reshape(20, -1, stein.shape[1]).mean(1)
    bonds = basis.families == "bond"
    t = blocks.mean(0)[bonds] / (blocks.std(0, ddof=1)[bonds] / np.sqrt(20))
    assert np.abs(t).max() < 6


def test_remove_rigid_projects_out_net_force_and_torque():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 7, 3))
    field = rng.standard_normal((4, 7, 3))
    internal = remove_rigid(field, x)
    assert np.abs(internal.sum(1)).max() < 1e-12
    centred = x - x.mean(1, keepdims=True)
    assert np.abs(np.cross(centred, internal).sum(1)).max() < 1e-12
    assert np.allclose(remove_rigid(internal, x), internal)
    rigid = np.broadcast_to([1.0, 2.0, 3.0], x.shape) + np.cross([0.3, 0.0, -0.2], centred)
    assert nrmse(internal + rigid, internal, x) < 1e-12
    assert cosine(internal + rigid, internal) < 1.0


def test_error_directions_find_a_bias_along_a_nearly_collinear_pair():
    """Two columns that differ by 1e-3 of their norm: a fit error along their difference is a
    bias the readout cannot see (share ~1 in the sloppiest direction, eigenvalue ~1e-6 of the
    largest); an error along their sum is not."""
    from spinscore.molecules.basis import Column
    from spinscore.molecules.readout import error_directions

    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 3))
    a = np.column_stack([base[:, 0], base[:, 0] + 1e-3 * base[:, 1], base[:, 2]])
    gram = a.T @ a
    columns = [Column("angle", (name,), "-2q", 0, 1.0, 1) for name in "XYZ"]
    sloppy = error_directions(gram, np.array([1.0, -1.0, 0.0]), columns)
    assert sloppy["share_in_sloppiest"]["1"] > 0.999
    assert sloppy["directions"][0]["eigenvalue"] < 1e-5
    assert {name for name, _ in sloppy["directions"][0]["columns"][:2]} == {
        "angle X -2q", "angle Y -2q"}
    stiff = error_directions(gram, np.array([1.0, 1.0, 0.0]), columns)
    assert stiff["share_in_sloppiest"]["1"] < 1e-3
