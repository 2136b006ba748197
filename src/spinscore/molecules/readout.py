"""Reading force-field parameters back from a force or score field on the linear basis of
`basis.ForceFieldBasis`.

Two fits: `fit_forces` regresses a force (or score) field on the basis; `score_matching_fit`
is the closed-form Hyvärinen score-matching fit of a linear score model s = Φθ straight on
configurations, θ = −(Σ ΦᵀΦ)⁻¹ Σ ∇·Φ. A score is β × force (β in mol/kJ), so score
coefficients divided by β are force-field coefficients in `Column.true`'s units.

Both pool frames × atoms × 3. Columns are scaled to unit norm before solving; directions whose
singular value falls below `rcond` times the largest are dropped (minimum-norm solution).
`inflation` measures how well each column is determined by the others.
"""

from dataclasses import dataclass

import numpy as np

from spinscore.molecules.basis import FAMILIES, ONE_4PI_EPS0, ForceFieldBasis


def _flat(phi: np.ndarray) -> np.ndarray:
    return phi.reshape(-1, phi.shape[-1])


def fit_forces(phi: np.ndarray, target: np.ndarray, rcond: float = 1e-12) -> np.ndarray:
    """Zero-intercept least squares of a field on the basis, no ridge.

    Args:
        phi: (M, n, 3, P) basis forces, kJ/mol/nm per unit coefficient.
        target: (M, n, 3) the field; forces in kJ/mol/nm give coefficients in `Column.true`'s
            units, scores (mol/kJ·kJ/mol/nm = 1/nm) give β × those.
        rcond: relative singular-value cutoff of the column-normalised design.

    Returns:
        theta: (P,).
    """
    a = _flat(phi)
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    theta, *_ = np.linalg.lstsq(a / scale, np.asarray(target).ravel(), rcond=rcond)
    return theta / scale


def _pinv_gram(gram: np.ndarray, rcond: float) -> np.ndarray:
    """Pseudo-inverse of a Gram matrix, cut off after scaling the columns to unit norm."""
    scale = np.sqrt(np.diag(gram)).copy()
    scale[scale == 0] = 1.0
    values, vectors = np.linalg.eigh(gram / np.outer(scale, scale))
    keep = values > (rcond**2) * values.max()
    inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return inverse / np.outer(scale, scale)


def score_matching_fit(phi: np.ndarray, div: np.ndarray, rcond: float = 1e-12) -> np.ndarray:
    """Closed-form score matching of s = Φθ on samples: θ = −(Σ ΦᵀΦ)⁻¹ Σ ∇·Φ.

    Args:
        phi: (M, n, 3, P) basis forces at M sampled configurations.
        div: (M, P) their divergences ∇·Φ_p, from `ForceFieldBasis.divergence`.
        rcond: relative singular-value cutoff (on the square root of the Gram's eigenvalues).

    Returns:
        theta: (P,) SCORE coefficients, 1/nm per unit of the column (= β × force coefficient);
        divide by β (mol/kJ) for force-field parameters.
    """
    a = _flat(phi)
    return score_matching_from_sums(a.T @ a, np.asarray(div).sum(0), rcond)


def score_matching_from_sums(gram: np.ndarray, div_sum: np.ndarray, rcond: float = 1e-12) -> np.ndarray:
    """`score_matching_fit` from accumulated sums: gram (P, P) = Σ ΦᵀΦ, div_sum (P,) = Σ ∇·Φ."""
    return -_pinv_gram(gram, rcond) @ div_sum


@dataclass(frozen=True)
class NormalSums:
    """Sums over frames × atoms × 3 for fits on many frames without holding Phi.

    gram: (P, P) Σ ΦᵀΦ. div: (P,) Σ ∇·Φ. cross: (P,) Σ Φᵀ target, or None. frames: M.
    """

    gram: np.ndarray
    div: np.ndarray
    cross: np.ndarray | None
    frames: int


def normal_sums(basis: ForceFieldBasis, positions: np.ndarray, target: np.ndarray | None = None,
                chunk: int = 250) -> NormalSums:
    """Accumulate `NormalSums` over positions (M, n, 3) nm [and target (M, n, 3)] in chunks
    of `chunk` frames (memory about chunk × n × 3 × P × 8 bytes)."""
    p = len(basis.columns)
    gram, div = np.zeros((p, p)), np.zeros(p)
    cross = None if target is None else np.zeros(p)
    for start in range(0, len(positions), chunk):
        phi, d = basis.design_and_divergence(positions[start:start + chunk])
        a = _flat(phi)
        gram += a.T @ a
        div += d.sum(0)
        if target is not None:
            cross += a.T @ np.asarray(target[start:start + chunk]).ravel()
    return NormalSums(gram, div, cross, len(positions))


def inflation(gram: np.ndarray) -> np.ndarray:
    """(P,) variance inflation factor of each column, 1/(1 − R²) of its regression on the others.

    1 for a column orthogonal to the rest; the relative error of its coefficient is about
    sqrt(inflation) × (relative noise of the target). inf where the column is in the span of
    the others to machine precision. gram: (P, P) Σ ΦᵀΦ.
    """
    scale = np.sqrt(np.diag(gram))
    corr = gram / np.outer(scale, scale)
    values, vectors = np.linalg.eigh(corr)
    bad = values <= 1e-15 * values.max()
    out = (vectors[:, ~bad] ** 2) @ (1.0 / values[~bad])
    out[(vectors[:, bad] ** 2).sum(1) > 1e-8] = np.inf
    return out


def standard_errors(gram: np.ndarray, noise_rms: float, rcond: float = 1e-12) -> np.ndarray:
    """(P,) standard error of each least-squares coefficient when every target component
    carries independent noise of rms `noise_rms`: noise_rms sqrt(diag((Σ ΦᵀΦ)⁻¹)).

    Divided by |theta| it says to what relative precision a column is identifiable from the
    frames at hand, e.g. noise_rms = 1e-14 × rms(force) for exact double-precision forces.
    """
    return noise_rms * np.sqrt(np.abs(np.diag(_pinv_gram(gram, rcond))))


def error_directions(gram: np.ndarray, error: np.ndarray, columns, top: int = 3,
                     leading: int = 6) -> dict:
    """Where a coefficient error lies among the eigen-directions of the column-normalised Gram.

    A least-squares fit amplifies the part of the target's error that lies along a direction
    of small eigenvalue λ (a combination of columns that barely changes the force) by 1/√λ; a
    systematic error concentrates there, iid noise does not.

    Args:
        gram: (P, P) Σ ΦᵀΦ. error: (P,) fitted − true coefficients, in column units.
        columns: the (P,) `Column`s, to name the leading columns of each direction.
        top: how many error-carrying directions to describe; leading: columns per direction.

    Returns:
        share_in_sloppiest: {n: share of |error|² (normalised columns) in the n directions of
        smallest eigenvalue}; directions: the `top` directions carrying most of the error, each
        with eigenvalue (relative to the largest), share, and its leading columns
        ("family key form", weight).
    """
    scale = np.sqrt(np.diag(gram)).copy()
    scale[scale == 0] = 1.0
    values, vectors = np.linalg.eigh(gram / np.outer(scale, scale))  # ascending
    proj = vectors.T @ (np.asarray(error) * scale)
    share = proj**2 / max(float(proj @ proj), 1e-300)
    cumulative = np.cumsum(share)
    directions = []
    for k in np.argsort(-share)[:top]:
        v = vectors[:, k]
        names = [(f"{columns[i].family} {'-'.join(columns[i].key)} {columns[i].form}",
                  round(float(v[i]), 3)) for i in np.argsort(-np.abs(v))[:leading]]
        directions.append({"eigenvalue": float(values[k] / values[-1]),
                           "share": float(share[k]), "columns": names})
    return {"share_in_sloppiest": {str(n): float(cumulative[n - 1])
                                   for n in (1, 5, 20, 50) if n <= len(values)},
            "directions": directions}


@dataclass(frozen=True)
class Parameter:
    """One physical parameter read from the coefficients.

    name: "k" (amber convention, energy k (x − x0)²), "k_openmm" (= 2k, OpenMM's ½k), "r0" (nm),
        "theta0" (deg), "V" (kJ/mol), "gamma" (deg), "A" (kJ/mol·nm¹²), "B" (kJ/mol·nm⁶),
        "sigma" (nm), "epsilon" (kJ/mol), "C" (kJ/mol·nm), "qq" (e², C / (4π ε0)⁻¹).
    error: relative (value − true)/|true| for k, V, A, B, epsilon, C, qq; absolute for r0 (nm),
        sigma (nm), theta0 and gamma (deg, wrapped to ±180).
    """

    family: str
    key: tuple[str, ...]
    periodicity: int
    name: str
    value: float
    true: float
    error: float
    relative: bool


_ABSOLUTE = {"r0", "theta0", "gamma", "sigma"}


def _entry(family, key, n, name, value, true) -> Parameter:
    if name in _ABSOLUTE:
        error = value - true
        if name == "gamma":
            error = (error + 180.0) % 360.0 - 180.0
        return Parameter(family, key, n, name, value, true, error, False)
    error = (value - true) / abs(true) if true != 0 else value - true
    return Parameter(family, key, n, name, value, true, error, True)


def _physical(family: str, coef: dict[str, float]) -> dict[str, float]:
    """Coefficients of one type (form -> value) to physical parameters."""
    if family in ("bond", "angle"):
        k = coef["q2"]
        x0 = coef["-2q"] / k if k != 0 else np.nan
        if family == "bond":
            return {"k": k, "k_openmm": 2 * k, "r0": x0}
        return {"k": k, "k_openmm": 2 * k, "theta0": float(np.degrees(x0))}
    if family in ("proper", "improper"):
        return {"V": float(np.hypot(coef["cos"], coef["sin"])),
                "gamma": float(np.degrees(np.arctan2(coef["sin"], coef["cos"])))}
    if family in ("lj", "lj14"):
        a, b = coef["q-12"], coef["-q-6"]
        sigma = (a / b) ** (1 / 6) if a > 0 and b > 0 else np.nan
        epsilon = b * b / (4 * a) if a > 0 else np.nan
        return {"A": a, "B": b, "sigma": sigma, "epsilon": epsilon}
    return {"C": coef["q-1"], "qq": coef["q-1"] / ONE_4PI_EPS0}


def parameters(theta: np.ndarray, columns, families: tuple[str, ...] = FAMILIES) -> list[Parameter]:
    """Physical parameters per type from force coefficients, with their true values.

    Args:
        theta: (P,) force coefficients in `Column.true`'s units (score coefficients / β).
        columns: the (P,) `Column`s of the basis.
        families: the families to report.

    Returns:
        `Parameter`s: per bond type k, k_openmm, r0; per angle type k, k_openmm, theta0; per
        torsion type and periodicity V, gamma; per LJ pair type A, B, sigma, epsilon; per
        Coulomb pair type C, qq.
    """
    fitted: dict[tuple, dict[str, float]] = {}
    true: dict[tuple, dict[str, float]] = {}
    for value, column in zip(theta, columns, strict=True):
        if column.family not in families:
            continue
        ident = (column.family, column.key, column.periodicity)
        fitted.setdefault(ident, {})[column.form] = float(value)
        true.setdefault(ident, {})[column.form] = column.true
    out = []
    for ident, coef in fitted.items():
        got, want = _physical(ident[0], coef), _physical(ident[0], true[ident])
        out.extend(_entry(*ident, name, got[name], want[name]) for name in got)
    return out


def sector_forces(phi: np.ndarray, theta: np.ndarray, columns) -> dict[str, np.ndarray]:
    """Force of each family: phi (M, n, 3, P), theta (P,) -> family -> (M, n, 3), kJ/mol/nm."""
    families = np.array([c.family for c in columns])
    return {f: phi[..., families == f] @ theta[families == f] for f in FAMILIES if np.any(families == f)}


def remove_rigid(field: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The field with its net force and torque projected out, frame by frame.

    The projection is orthogonal (unit atom weights) onto the complement of the six rigid
    modes (translations, rotations about the centroid). field, positions: (M, n, 3).
    """
    x = positions - positions.mean(axis=1, keepdims=True)
    m, n = x.shape[:2]
    modes = np.zeros((m, n, 3, 6))
    for axis in range(3):
        modes[:, :, axis, axis] = 1.0
        rotation = np.zeros(3)
        rotation[axis] = 1.0
        modes[..., 3 + axis] = np.cross(rotation, x)
    q, _ = np.linalg.qr(modes.reshape(m, 3 * n, 6))
    flat = field.reshape(m, 3 * n)
    flat = flat - np.einsum("mik,mk->mi", q, np.einsum("mik,mi->mk", q, flat))
    return flat.reshape(field.shape)


def cosine(prediction: np.ndarray, target: np.ndarray, positions: np.ndarray | None = None) -> float:
    """Cosine similarity pooled over frames × atoms × 3 of two (M, n, 3) fields; with
    positions (M, n, 3), net force and torque are projected out of both first."""
    if positions is not None:
        prediction, target = remove_rigid(prediction, positions), remove_rigid(target, positions)
    p, t = np.ravel(prediction), np.ravel(target)
    return float(p @ t / (np.linalg.norm(p) * np.linalg.norm(t)))


def nrmse(prediction: np.ndarray, target: np.ndarray, positions: np.ndarray | None = None) -> float:
    """|prediction − target| / |target| pooled over frames × atoms × 3 of (M, n, 3) fields;
    with positions, net force and torque are projected out of both first."""
    if positions is not None:
        prediction, target = remove_rigid(prediction, positions), remove_rigid(target, positions)
    return float(np.linalg.norm(prediction - target) / np.linalg.norm(target))
