"""The amber force field as a linear basis of force fields.

Every amber term is linear in its parameters once they are written as the right coefficients:
    bond   k (r − r0)²           = k·r² + (k r0)·(−2r) + const        columns r², −2r
    angle  k (θ − θ0)²           = k·θ² + (k θ0)·(−2θ) + const        columns θ², −2θ
    torsion V (1 + cos(nφ − γ))  = (V cos γ)·cos nφ + (V sin γ)·sin nφ + const
    LJ     A/r¹² − B/r⁶          columns r⁻¹², −r⁻⁶
    Coulomb C/r, C = q_i q_j / (4π ε0)                                 column r⁻¹
with k in amber's convention (energy k (x − x0)²; OpenMM stores 2k). Instances sharing a type
key share a column: bonds and angles by their atom classes (symmetric under reversal), torsions
by class quadruple and periodicity (propers symmetric under reversal, impropers in OpenMM's
atom order), LJ by the unordered pair of atom classes, Coulomb by the unordered pair of
"charged types" (class and charge). The 1-4 pairs (amber's scaled LJ/2 and Coulomb/1.2) are
separate families. The implicit-solvent term is not linear in this way and is left out.

A column's value on a frame is its FORCE, −∇ of its energy function per unit coefficient
(kJ/mol/nm), so Phi @ theta_true reproduces OpenMM's per-group forces. The divergence ∇·Φ_p
is −Δ of the energy function; with q an internal coordinate and g the column's function,
Δ g(q) = g''(q) |∇q|² + g'(q) Δq, so only |∇q|² and Δq per coordinate are needed (torch
autograd for angles and dihedrals, closed form for distances).
"""

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import openmm
import scipy.sparse
import torch

# OpenMM's 1/(4π ε0), kJ/mol·nm/e² (ONE_4PI_EPS0 of its 8.x kernels, CODATA 2018; the older
# 138.935456 of openmm.app is 1.2e-8 off and shows in the reproduction tests).
ONE_4PI_EPS0 = 138.93545764438198

FAMILIES: tuple[str, ...] = ("bond", "angle", "proper", "improper", "lj", "coulomb", "lj14", "coulomb14")
_COORDINATE = {"bond": "distance", "angle": "angle", "proper": "dihedral", "improper": "dihedral",
               "lj": "distance", "coulomb": "distance", "lj14": "distance", "coulomb14": "distance"}
_ATOMS_PER = {"distance": 2, "angle": 3, "dihedral": 4}


@dataclass(frozen=True)
class Column:
    """One basis column.

    family: one of `FAMILIES`.
    key: the type key, atom classes (bond, angle, torsions, LJ) or charged types "CLASS(q)".
    form: the energy function of the coordinate q (nm, rad): "q2", "-2q", "cos", "sin",
        "q-12", "-q-6", "q-1".
    periodicity: n of the torsion columns, 0 otherwise.
    true: the amber coefficient (kJ/mol per unit of the function): bond k (kJ/mol/nm², amber
        convention) and k·r0; angle k (kJ/mol/rad²) and k·θ0; V cos γ, V sin γ (kJ/mol);
        A (kJ/mol·nm¹²), B (kJ/mol·nm⁶); C (kJ/mol·nm).
    count: number of instances (atom tuples) summed into the column.
    """

    family: str
    key: tuple[str, ...]
    form: str
    periodicity: int
    true: float
    count: int


def _g(form: str, n: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives g'(q), g''(q) of a column's energy function."""
    if form == "q2":
        return 2 * q, np.full_like(q, 2.0)
    if form == "-2q":
        return np.full_like(q, -2.0), np.zeros_like(q)
    if form == "cos":
        return -n * np.sin(n * q), -n * n * np.cos(n * q)
    if form == "sin":
        return n * np.cos(n * q), -n * n * np.sin(n * q)
    if form == "q-12":
        return -12 * q**-13, 156 * q**-14
    if form == "-q-6":
        return 6 * q**-7, -42 * q**-8
    if form == "q-1":
        return -(q**-2), 2 * q**-3
    raise ValueError(f"unknown column form {form!r}")


def _angle(x: torch.Tensor) -> torch.Tensor:
    a, b = x[..., 0, :] - x[..., 1, :], x[..., 2, :] - x[..., 1, :]
    return torch.atan2(torch.linalg.norm(torch.cross(a, b, dim=-1), dim=-1), (a * b).sum(-1))


def _dihedral(x: torch.Tensor) -> torch.Tensor:
    """IUPAC dihedral (OpenMM's and `alanine.dihedral_deg`'s sign), rad."""
    b0, b1, b2 = x[..., 1, :] - x[..., 0, :], x[..., 2, :] - x[..., 1, :], x[..., 3, :] - x[..., 2, :]
    n1, n2 = torch.cross(b0, b1, dim=-1), torch.cross(b1, b2, dim=-1)
    y = torch.linalg.norm(b1, dim=-1) * (b0 * n2).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def internal_coordinates(kind: str, x: np.ndarray, laplacian: bool) -> tuple[np.ndarray, ...]:
    """An internal coordinate with its gradient, and optionally |∇q|² and Δq.

    Args:
        kind: "distance" (nm), "angle" or "dihedral" (rad).
        x: (M, U, k, 3) nm, the k atoms of U tuples on M frames.
        laplacian: also return |∇q|² (nm⁻² or rad²/nm²) and Δq (over the 3k coordinates).

    Returns:
        q (M, U), grad (M, U, k, 3) [, grad_sq (M, U), lap (M, U)].
    """
    if kind == "distance":
        d = x[..., 1, :] - x[..., 0, :]
        r = np.linalg.norm(d, axis=-1)
        u = d / r[..., None]
        grad = np.stack([-u, u], axis=-2)
        if not laplacian:
            return r, grad
        return r, grad, np.full_like(r, 2.0), 4.0 / r
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    q = (_angle if kind == "angle" else _dihedral)(xt)
    (grad,) = torch.autograd.grad(q.sum(), xt, create_graph=laplacian)
    if not laplacian:
        return q.detach().numpy(), grad.numpy()
    # Tuples are independent copies of their atoms, so the sum's Hessian is block diagonal.
    lap = torch.zeros_like(q)
    for slot in range(x.shape[-2]):
        for axis in range(3):
            (h,) = torch.autograd.grad(grad[..., slot, axis].sum(), xt, retain_graph=True)
            lap = lap + h[..., slot, axis]
    grad = grad.detach()
    return q.detach().numpy(), grad.numpy(), (grad**2).sum((-1, -2)).numpy(), lap.numpy()


@dataclass
class _Rows:
    """The instances of one coordinate kind: unique atom tuples and (tuple, column) rows."""

    atoms: np.ndarray  # (U, k)
    coord: np.ndarray  # (R,) index into atoms
    column: np.ndarray  # (R,)
    scatter: scipy.sparse.csr_matrix = field(default=None)  # (n·P, R·k)


@dataclass
class ForceFieldBasis:
    """The basis columns of a force field and their evaluation on frames (float64, nm, kJ/mol)."""

    columns: tuple[Column, ...]
    n_atoms: int
    rows: dict[str, _Rows]

    @property
    def theta_true(self) -> np.ndarray:
        """(P,) the true coefficients, in the units of `Column.true`."""
        return np.array([c.true for c in self.columns])

    @property
    def families(self) -> np.ndarray:
        """(P,) the family of each column."""
        return np.array([c.family for c in self.columns])

    def _evaluate(self, positions: np.ndarray, forces: bool, divergence: bool):
        x = np.asarray(positions, dtype=np.float64)
        if x.ndim == 2:
            x = x[None]
        m, n_cols = x.shape[0], len(self.columns)
        phi = np.zeros((self.n_atoms * n_cols, m * 3)) if forces else None
        div = np.zeros((m, n_cols)) if divergence else None
        forms = np.array([c.form for c in self.columns])
        periods = np.array([c.periodicity for c in self.columns], dtype=np.float64)
        for kind, rows in self.rows.items():
            out = internal_coordinates(kind, x[:, rows.atoms], divergence)
            q, grad = out[0][:, rows.coord], out[1][:, rows.coord]
            d1, d2 = np.empty_like(q), np.empty_like(q)
            row_forms = forms[rows.column]
            for form in np.unique(row_forms):
                sel = row_forms == form
                d1[:, sel], d2[:, sel] = _g(form, periods[rows.column[sel]], q[:, sel])
            if forces:
                contrib = -d1[..., None, None] * grad  # (M, R, k, 3)
                phi += rows.scatter @ contrib.transpose(1, 2, 0, 3).reshape(-1, m * 3)
            if divergence:
                lap = d2 * out[2][:, rows.coord] + d1 * out[3][:, rows.coord]
                np.add.at(div.T, rows.column, -lap.T)
        if forces:
            phi = phi.reshape(self.n_atoms, n_cols, m, 3).transpose(2, 0, 3, 1)
        return phi, div

    def design(self, positions: np.ndarray) -> np.ndarray:
        """Force of every column: positions (M, n, 3) nm -> Phi (M, n, 3, P) kJ/mol/nm per unit
        coefficient. Phi @ theta_true is the force of the families in the basis."""
        return self._evaluate(positions, True, False)[0]

    def divergence(self, positions: np.ndarray) -> np.ndarray:
        """∇·Φ_p over all 3n coordinates: positions (M, n, 3) nm -> (M, P) kJ/mol/nm² per unit
        coefficient."""
        return self._evaluate(positions, False, True)[1]

    def design_and_divergence(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`design` and `divergence` in one pass: (M, n, 3, P) and (M, P)."""
        return self._evaluate(positions, True, True)


class _Collector:
    """Accumulates instances into columns keyed by (family, key, form, periodicity)."""

    def __init__(self):
        self.index: dict[tuple, int] = {}
        self.true: list[float] = []
        self.count: list[int] = []
        self.instances: dict[str, list[tuple[tuple[int, ...], int]]] = {}

    def add(self, family: str, key: tuple[str, ...], atoms: tuple[int, ...], terms):
        """terms: [(form, periodicity, coefficient)] of one instance."""
        for form, period, value in terms:
            ident = (family, key, form, period)
            if ident not in self.index:
                self.index[ident] = len(self.true)
                self.true.append(value)
                self.count.append(0)
            col = self.index[ident]
            if not np.isclose(self.true[col], value, rtol=1e-9, atol=1e-12):
                raise ValueError(f"{family} {key} {form}{period}: coefficient {value} differs from "
                                 f"{self.true[col]} for another instance of the same type")
            self.count[col] += 1
            self.instances.setdefault(_COORDINATE[family], []).append((atoms, col))

    def basis(self, n_atoms: int) -> ForceFieldBasis:
        columns = tuple(Column(f, k, form, n, t, c)
                        for (f, k, form, n), t, c in zip(self.index, self.true, self.count, strict=True))
        p = len(columns)
        rows = {}
        for kind, items in self.instances.items():
            unique: dict[tuple[int, ...], int] = {}
            coord = [unique.setdefault(a, len(unique)) for a, _ in items]
            atoms = np.array(list(unique), dtype=np.int64).reshape(-1, _ATOMS_PER[kind])
            r = _Rows(atoms, np.array(coord), np.array([c for _, c in items]))
            target = (atoms[r.coord] * p + r.column[:, None]).ravel()  # (row, slot) -> atom·P + col
            r.scatter = scipy.sparse.csr_matrix(
                (np.ones(target.size), (target, np.arange(target.size))), shape=(n_atoms * p, target.size))
            rows[kind] = r
        return ForceFieldBasis(columns, n_atoms, rows)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def force_field_basis(system: openmm.System, groups: dict[str, int], classes: list[str]) -> ForceFieldBasis:
    """The basis of the force-field terms of a split amber system.

    Args:
        system, groups: from `forcefield.build_system` (one force per term and group).
        classes: (n,) amber atom classes, from `forcefield.atom_types`.

    Returns:
        A `ForceFieldBasis` whose `theta_true` are the system's parameters. Raises ValueError if
        two instances of one type key carry different parameters.
    """
    force = {name: next(f for f in system.getForces() if f.getForceGroup() == g)
             for name, g in groups.items()}
    col = _Collector()
    bonds = force["bond"]
    for b in range(bonds.getNumBonds()):
        i, j, r0, k = bonds.getBondParameters(b)
        k_amber = k._value / 2
        col.add("bond", _pair(classes[i], classes[j]), (i, j),
                [("q2", 0, k_amber), ("-2q", 0, k_amber * r0._value)])
    angles = force["angle"]
    for a in range(angles.getNumAngles()):
        i, j, l, t0, k = angles.getAngleParameters(a)
        key = min((classes[i], classes[j], classes[l]), (classes[l], classes[j], classes[i]))
        k_amber = k._value / 2
        col.add("angle", key, (i, j, l), [("q2", 0, k_amber), ("-2q", 0, k_amber * t0._value)])
    for family in ("proper", "improper"):
        torsions = force[family]
        for t in range(torsions.getNumTorsions()):
            i, j, k, l, n, gamma, v = torsions.getTorsionParameters(t)
            key = tuple(classes[a] for a in (i, j, k, l))
            if family == "proper":
                key = min(key, key[::-1])
            v, gamma = v._value, gamma._value
            col.add(family, key, (i, j, k, l),
                    [("cos", n, v * np.cos(gamma)), ("sin", n, v * np.sin(gamma))])

    lj, coulomb = force["lj"], force["coulomb"]
    n_atoms = system.getNumParticles()
    sigma = np.array([lj.getParticleParameters(i)[1]._value for i in range(n_atoms)])
    epsilon = np.array([lj.getParticleParameters(i)[2]._value for i in range(n_atoms)])
    charge = np.array([coulomb.getParticleParameters(i)[0]._value for i in range(n_atoms)])
    charged = [f"{c}({q:+.4f})" for c, q in zip(classes, charge, strict=True)]
    excluded = set()
    for e in range(lj.getNumExceptions()):
        i, j = lj.getExceptionParameters(e)[:2]
        excluded.add(frozenset((i, j)))
    for i, j in combinations(range(n_atoms), 2):
        if frozenset((i, j)) in excluded:
            continue
        s, eps = (sigma[i] + sigma[j]) / 2, np.sqrt(epsilon[i] * epsilon[j])
        col.add("lj", _pair(classes[i], classes[j]), (i, j),
                [("q-12", 0, 4 * eps * s**12), ("-q-6", 0, 4 * eps * s**6)])
        col.add("coulomb", _pair(charged[i], charged[j]), (i, j),
                [("q-1", 0, ONE_4PI_EPS0 * charge[i] * charge[j])])
    lj14, coulomb14 = force["lj14"], force["coulomb14"]
    for e in range(lj14.getNumExceptions()):
        i, j, _, s, eps = lj14.getExceptionParameters(e)
        if eps._value != 0:
            s, eps = s._value, eps._value
            col.add("lj14", _pair(classes[i], classes[j]), (i, j),
                    [("q-12", 0, 4 * eps * s**12), ("-q-6", 0, 4 * eps * s**6)])
    for e in range(coulomb14.getNumExceptions()):
        i, j, qq = coulomb14.getExceptionParameters(e)[:3]
        if qq._value != 0:
            col.add("coulomb14", _pair(charged[i], charged[j]), (i, j),
                    [("q-1", 0, ONE_4PI_EPS0 * qq._value)])
    return col.basis(n_atoms)
