"""Alanine dipeptide (ACE-ALA-NME, 22 atoms) built from internal coordinates.

The geometry is a Z-matrix: every atom after the first three is placed from three reference
atoms by a bond length, a bond angle and a dihedral (the NeRF construction). Bond lengths and
angles are standard peptide values; phi and psi are free, omega is trans. The structure is a
starting point, not a minimum: minimise it with the force field before use.
"""

import numpy as np
from openmm import app

# Standard geometry, lengths in nm and angles in degrees (Engh & Huber-like values).
_CH, _NH = 0.109, 0.101
_CC, _CO, _CN = 0.152, 0.123, 0.1335
_NCA, _CAC, _CACB = 0.1449, 0.1522, 0.153
_TET = 109.5

# Residue name -> atom names in topology order (the names amber14's templates expect).
RESIDUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ACE", ("HH31", "CH3", "HH32", "HH33", "C", "O")),
    ("ALA", ("N", "H", "CA", "HA", "CB", "HB1", "HB2", "HB3", "C", "O")),
    ("NME", ("N", "H", "CH3", "HH31", "HH32", "HH33")),
)

# Intra-residue bonds by atom name, plus the two peptide bonds between residues.
_BONDS = {
    "ACE": (("HH31", "CH3"), ("HH32", "CH3"), ("HH33", "CH3"), ("CH3", "C"), ("C", "O")),
    "ALA": (
        ("N", "H"), ("N", "CA"), ("CA", "HA"), ("CA", "CB"), ("CA", "C"),
        ("CB", "HB1"), ("CB", "HB2"), ("CB", "HB3"), ("C", "O"),
    ),
    "NME": (("N", "H"), ("N", "CH3"), ("CH3", "HH31"), ("CH3", "HH32"), ("CH3", "HH33")),
}
_PEPTIDE_BONDS = ((("ACE", "C"), ("ALA", "N")), (("ALA", "C"), ("NME", "N")))


def place_atom(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float,
               dihedral_deg: float) -> np.ndarray:
    """Position of atom d from three placed atoms (natural extension reference frame).

    Args:
        a, b, c: (3,) positions of the reference atoms; d is bonded to c.
        bond: |d − c|, in the unit of the positions.
        angle_deg: the angle b–c–d, degrees.
        dihedral_deg: the dihedral a–b–c–d, degrees (IUPAC sign: positive is clockwise when
            looking from b to c).

    Returns:
        (3,) position of d.
    """
    theta, phi = np.radians(angle_deg), np.radians(dihedral_deg)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    # d in the local frame (bc, m, n): the bond points back along bc, rotated by theta.
    local = bond * np.array([-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
    return c + local[0] * bc + local[1] * m + local[2] * n


def _zmatrix(phi_deg: float, psi_deg: float) -> list[tuple]:
    """Z-matrix rows (atom, ref c, ref b, ref a, bond nm, angle deg, dihedral deg), in build order.

    Atom keys are (residue, name). The first three atoms are placed by hand in `_build`.
    """
    ace = lambda n: ("ACE", n)  # noqa: E731
    ala = lambda n: ("ALA", n)  # noqa: E731
    nme = lambda n: ("NME", n)  # noqa: E731
    return [
        # The ACE carbonyl and the trans peptide bond to ALA.
        (ala("N"), ace("C"), ace("CH3"), ace("O"), _CN, 116.2, 180.0),
        (ala("CA"), ala("N"), ace("C"), ace("CH3"), _NCA, 121.7, 180.0),
        (ala("H"), ala("N"), ace("C"), ace("O"), _NH, 119.8, 180.0),
        # ALA backbone: phi = C(ACE)-N-CA-C, psi = N-CA-C-N(NME).
        (ala("C"), ala("CA"), ala("N"), ace("C"), _CAC, 111.2, phi_deg),
        (ala("CB"), ala("CA"), ala("C"), ala("N"), _CACB, 110.1, 122.7),  # L chirality
        (ala("HA"), ala("CA"), ala("C"), ala("N"), _CH, _TET, -118.0),
        (nme("N"), ala("C"), ala("CA"), ala("N"), _CN, 116.2, psi_deg),
        (ala("O"), ala("C"), ala("CA"), ala("N"), _CO, 120.5, psi_deg + 180.0),
        (nme("CH3"), nme("N"), ala("C"), ala("CA"), _NCA, 121.7, 180.0),
        (nme("H"), nme("N"), ala("C"), ala("O"), _NH, 119.8, 180.0),
        # Methyl hydrogens, staggered.
        (ace("HH31"), ace("CH3"), ace("C"), ace("O"), _CH, _TET, 0.0),
        (ace("HH32"), ace("CH3"), ace("C"), ace("O"), _CH, _TET, 120.0),
        (ace("HH33"), ace("CH3"), ace("C"), ace("O"), _CH, _TET, -120.0),
        (ala("HB1"), ala("CB"), ala("CA"), ala("N"), _CH, _TET, 60.0),
        (ala("HB2"), ala("CB"), ala("CA"), ala("N"), _CH, _TET, 180.0),
        (ala("HB3"), ala("CB"), ala("CA"), ala("N"), _CH, _TET, -60.0),
        (nme("HH31"), nme("CH3"), nme("N"), ala("C"), _CH, _TET, 60.0),
        (nme("HH32"), nme("CH3"), nme("N"), ala("C"), _CH, _TET, 180.0),
        (nme("HH33"), nme("CH3"), nme("N"), ala("C"), _CH, _TET, -60.0),
    ]


def _build(phi_deg: float, psi_deg: float) -> dict[tuple[str, str], np.ndarray]:
    """Positions (nm) keyed by (residue, atom name)."""
    xyz = {
        ("ACE", "CH3"): np.zeros(3),
        ("ACE", "C"): np.array([_CC, 0.0, 0.0]),
    }
    angle = np.radians(120.5)  # CH3-C=O
    xyz[("ACE", "O")] = xyz[("ACE", "C")] + _CO * np.array([-np.cos(angle), np.sin(angle), 0.0])
    for atom, c, b, a, bond, ang, dih in _zmatrix(phi_deg, psi_deg):
        xyz[atom] = place_atom(xyz[a], xyz[b], xyz[c], bond, ang, dih)
    return xyz


def alanine_dipeptide(phi_deg: float = -80.0, psi_deg: float = 75.0) -> tuple[app.Topology, np.ndarray]:
    """Topology and positions of ACE-ALA-NME (L-alanine) at the given backbone dihedrals.

    Args:
        phi_deg: backbone phi, C(ACE)–N–CA–C, degrees. The default is near the C7eq basin.
        psi_deg: backbone psi, N–CA–C–N(NME), degrees.

    Returns:
        topology: an `openmm.app.Topology` with one chain, residues ACE, ALA, NME, 22 atoms in
            the order of `RESIDUES`, and 21 bonds; amber14 templates match it.
        positions: (22, 3) float64, nm.
    """
    xyz = _build(phi_deg, psi_deg)
    topology = app.Topology()
    chain = topology.addChain()
    atoms: dict[tuple[str, str], app.topology.Atom] = {}
    positions = []
    for res_name, names in RESIDUES:
        residue = topology.addResidue(res_name, chain)
        for name in names:
            # Atom names start with their element letter (H, C, N, O) in this molecule.
            atoms[(res_name, name)] = topology.addAtom(name, app.Element.getBySymbol(name[0]), residue)
            positions.append(xyz[(res_name, name)])
    for res_name, bonds in _BONDS.items():
        for n1, n2 in bonds:
            topology.addBond(atoms[(res_name, n1)], atoms[(res_name, n2)])
    for key1, key2 in _PEPTIDE_BONDS:
        topology.addBond(atoms[key1], atoms[key2])
    return topology, np.asarray(positions, dtype=np.float64)


def dihedral_deg(positions: np.ndarray, i: int, j: int, k: int, l: int) -> np.ndarray:
    """Dihedral angle i–j–k–l in degrees, in (−180, 180].

    Args:
        positions: (..., n_atoms, 3), any length unit.
        i, j, k, l: atom indices.

    Returns:
        (...) dihedral angles, degrees (IUPAC sign convention, as `place_atom`).
    """
    b0 = positions[..., j, :] - positions[..., i, :]
    b1 = positions[..., k, :] - positions[..., j, :]
    b2 = positions[..., l, :] - positions[..., k, :]
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    x = np.sum(n1 * n2, axis=-1)
    y = np.linalg.norm(b1, axis=-1) * np.sum(b0 * n2, axis=-1)
    return np.degrees(np.arctan2(y, x))


# Atom indices of the backbone dihedrals in the topology order of `RESIDUES`.
PHI_ATOMS = (4, 6, 8, 14)  # C(ACE), N, CA, C
PSI_ATOMS = (6, 8, 14, 16)  # N, CA, C, N(NME)
