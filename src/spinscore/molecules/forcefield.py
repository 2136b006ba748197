"""amber14 systems with every force-field term in its own force group.

OpenMM reports energies and forces per force group, so splitting the force field into one Force
per term gives the per-term targets (bond, angle, proper and improper torsion, the four pair
sectors, the solvent term) from a single context. The split is exact: the pieces are copies of
the original forces with parameters zeroed, evaluated by the same kernels.

Explicit water (TIP3P, PME) is not split: `solvate` and `build_solvated_system` make the system
that is integrated, and the solute's terms are evaluated with the vacuum split system at the
solute's coordinates (`molecules.trajectories`); the "solvent" term is the rest of the force.
"""

import numpy as np
import openmm
from openmm import app, unit

# Term name -> the force group it is put in. "solvent" is a group only with implicit solvent;
# with explicit water it is derived (the total force on the solute less the vacuum terms).
TERMS: tuple[str, ...] = (
    "bond", "angle", "proper", "improper", "lj", "coulomb", "lj14", "coulomb14", "solvent",
)
# CMMotionRemover does no work on the energy; it gets a group of its own, outside TERMS.
MOTION_REMOVER_GROUP = 31

_FORCEFIELD_FILES = {
    "vacuum": ("amber14-all.xml",),
    "implicit": ("amber14-all.xml", "implicit/obc2.xml"),
}
# Explicit water: amber14 with its TIP3P (and ion) parameters; PME with the authors' cutoff.
EXPLICIT_FORCEFIELD_FILES = ("amber14-all.xml", "amber14/tip3p.xml")
EXPLICIT_CUTOFF_NM = 0.9


def build_unsplit_system(topology: app.Topology, solvent: str = "vacuum",
                         remove_cm_motion: bool = True) -> openmm.System:
    """The amber14 system as OpenMM's ForceField builds it, with all forces in group 0.

    Flexible bonds (no constraints) and no cutoff. This is the reference the split system of
    `build_system` must reproduce.

    Args:
        topology: the molecule; residue and atom names must match amber14's templates.
        solvent: "vacuum" or "implicit" (OBC2 generalised Born with the ACE surface term).
        remove_cm_motion: add a CMMotionRemover (then 3N − 3 degrees of freedom remain).

    Returns:
        The `openmm.System`; energies in kJ/mol, lengths in nm.
    """
    if solvent not in _FORCEFIELD_FILES:
        raise ValueError(f"solvent must be one of {sorted(_FORCEFIELD_FILES)}, got {solvent!r} "
                         "(explicit water: build_solvated_system)")
    forcefield = app.ForceField(*_FORCEFIELD_FILES[solvent])
    return forcefield.createSystem(
        topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
        removeCMMotion=remove_cm_motion,
    )


def is_proper(torsion: tuple[int, int, int, int], bonded: set[frozenset[int]]) -> bool:
    """Whether the torsion i–j–k–l is a bonded chain (i–j, j–k, k–l all bonds).

    amber impropers are written with the central atom third and are never such a chain.
    """
    i, j, k, l = torsion
    return all(frozenset(p) in bonded for p in ((i, j), (j, k), (k, l)))


def _split_torsions(force: openmm.PeriodicTorsionForce, bonded: set[frozenset[int]]):
    """(proper, improper) PeriodicTorsionForces holding the torsions of `force`."""
    proper, improper = openmm.PeriodicTorsionForce(), openmm.PeriodicTorsionForce()
    for index in range(force.getNumTorsions()):
        i, j, k, l, periodicity, phase, k_n = force.getTorsionParameters(index)
        target = proper if is_proper((i, j, k, l), bonded) else improper
        target.addTorsion(i, j, k, l, periodicity, phase, k_n)
    return proper, improper


def _nonbonded_piece(force: openmm.NonbondedForce, *, lj: bool, coulomb: bool,
                     pairs: bool) -> openmm.NonbondedForce:
    """A copy of `force` keeping one sector.

    pairs=True keeps the exceptions (the scaled 1-4 pairs) and zeroes the particles' charges
    and epsilons; pairs=False does the reverse. `lj` and `coulomb` choose which of the two
    interactions survive. Exclusions (exceptions with zero parameters) are kept in every copy
    so that no copy adds the 1-2 and 1-3 pairs back.
    """
    piece = openmm.XmlSerializer.clone(force)
    for index in range(piece.getNumParticles()):
        charge, sigma, epsilon = piece.getParticleParameters(index)
        keep_q, keep_eps = coulomb and not pairs, lj and not pairs
        piece.setParticleParameters(index, charge if keep_q else 0.0, sigma, epsilon if keep_eps else 0.0)
    for index in range(piece.getNumExceptions()):
        i, j, charge_prod, sigma, epsilon = piece.getExceptionParameters(index)
        keep_q, keep_eps = coulomb and pairs, lj and pairs
        piece.setExceptionParameters(
            index, i, j, charge_prod if keep_q else 0.0, sigma, epsilon if keep_eps else 0.0
        )
    return piece


def build_system(topology: app.Topology, solvent: str = "vacuum",
                 remove_cm_motion: bool = True) -> tuple[openmm.System, dict[str, int]]:
    """amber14 system with one force group per force-field term.

    Terms (amber functional forms; OpenMM stores bond and angle constants as k_openmm = 2 k_amber,
    energy ½ k_openmm (x − x0)²):
        bond, angle: HarmonicBondForce, HarmonicAngleForce.
        proper, improper: PeriodicTorsionForce split by the bond graph (`is_proper`).
        lj, coulomb: Lennard-Jones and Coulomb between atoms more than three bonds apart.
        lj14, coulomb14: the scaled 1-4 pairs (LJ / 2, Coulomb / 1.2).
        solvent: the OBC2 generalised-Born and surface-area term (implicit solvent only).

    The sum over groups equals the unsplit system's energy and forces (see
    `build_unsplit_system`).

    Args:
        topology: the molecule; residue and atom names must match amber14's templates.
        solvent: "vacuum" or "implicit".
        remove_cm_motion: keep OpenMM's CMMotionRemover (group `MOTION_REMOVER_GROUP`).

    Returns:
        system: the `openmm.System` (kJ/mol, nm), no constraints, no cutoff.
        groups: term name -> force group, in the order of `TERMS`, groups 0, 1, 2, ...
    """
    reference = build_unsplit_system(topology, solvent, remove_cm_motion)
    bonded = {frozenset((a.index, b.index)) for a, b in topology.bonds()}
    pieces: dict[str, openmm.Force] = {}
    others: list[openmm.Force] = []
    for force in reference.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            pieces["bond"] = openmm.XmlSerializer.clone(force)
        elif isinstance(force, openmm.HarmonicAngleForce):
            pieces["angle"] = openmm.XmlSerializer.clone(force)
        elif isinstance(force, openmm.PeriodicTorsionForce):
            pieces["proper"], pieces["improper"] = _split_torsions(force, bonded)
        elif isinstance(force, openmm.NonbondedForce):
            pieces["lj"] = _nonbonded_piece(force, lj=True, coulomb=False, pairs=False)
            pieces["coulomb"] = _nonbonded_piece(force, lj=False, coulomb=True, pairs=False)
            pieces["lj14"] = _nonbonded_piece(force, lj=True, coulomb=False, pairs=True)
            pieces["coulomb14"] = _nonbonded_piece(force, lj=False, coulomb=True, pairs=True)
        elif isinstance(force, openmm.CustomGBForce | openmm.GBSAOBCForce):
            pieces["solvent"] = openmm.XmlSerializer.clone(force)
        elif isinstance(force, openmm.CMMotionRemover):
            others.append(openmm.XmlSerializer.clone(force))
        else:
            raise TypeError(f"unexpected force in the amber14 system: {type(force).__name__}")

    system = openmm.System()
    for index in range(reference.getNumParticles()):
        system.addParticle(reference.getParticleMass(index))
    groups: dict[str, int] = {}
    for name in TERMS:
        if name in pieces:
            groups[name] = len(groups)
            pieces[name].setForceGroup(groups[name])
            system.addForce(pieces[name])
    for force in others:
        force.setForceGroup(MOTION_REMOVER_GROUP)
        system.addForce(force)
    return system, groups


def atom_types(topology: app.Topology, solvent: str = "vacuum") -> tuple[list[str], list[str]]:
    """The force field's atom type and atom class of every atom, in topology order.

    Residues are matched to amber14's templates (`ForceField.getMatchingTemplates`, the matching
    `createSystem` does) and atoms to template atoms by name, checked by element.

    Returns:
        types: OpenMM type names, e.g. "protein-CT".
        classes: amber atom types (OpenMM's atom classes), e.g. "CT"; equal classes share
            bonded parameters.
    """
    files = {**_FORCEFIELD_FILES, "explicit": EXPLICIT_FORCEFIELD_FILES}
    if solvent not in files:
        raise ValueError(f"solvent must be one of {sorted(files)}, got {solvent!r}")
    forcefield = app.ForceField(*files[solvent])
    # ForceField has no public type -> class accessor; _atomTypes is what createSystem reads.
    class_of = {name: str(t.atomClass) for name, t in forcefield._atomTypes.items()}
    types: list[str] = []
    for residue, template in zip(topology.residues(), forcefield.getMatchingTemplates(topology), strict=True):
        for atom in residue.atoms():
            try:
                template_atom = template.atoms[template.getAtomIndexByName(atom.name)]
            except KeyError:
                raise ValueError(f"atom {atom.name} of {residue.name}: no atom of that name in "
                                 f"template {template.name}") from None
            if template_atom.element is not None and template_atom.element != atom.element:
                raise ValueError(f"atom {atom.name} of {residue.name}: element {atom.element.symbol} "
                                 f"differs from template {template.name}'s {template_atom.element.symbol}")
            types.append(template_atom.type)
    return types, [class_of[t] for t in types]


def solvate(topology: app.Topology, positions, padding_nm: float = 1.0):
    """The solute in a cubic box of TIP3P water (OpenMM's `Modeller.addSolvent`, neutralised
    with Na+/Cl- if charged; alanine dipeptide is neutral and gets no ions).

    OpenMM ≥ 8 sets the box edge to max(solute diameter + padding, 2 padding), so `padding_nm`
    is the least distance between a solute atom and any atom of the solute's periodic images.
    It must be at least `EXPLICIT_CUTOFF_NM`, which also keeps the edge above twice the cutoff.
    Deterministic (a fixed pre-equilibrated water box, overlaps removed).

    Args:
        topology: the solute (n atoms).
        positions: (n, 3) nm, minimised in vacuum.
        padding_nm: see above, nm.

    Returns:
        topology: solute first (atoms 0..n-1, unchanged order), then the waters.
        positions: (N, 3) nm, float64.
    """
    if not padding_nm >= EXPLICIT_CUTOFF_NM:
        raise ValueError(f"padding_nm: the solute's periodic images must stay beyond the "
                         f"{EXPLICIT_CUTOFF_NM} nm cutoff, got {padding_nm}")
    modeller = app.Modeller(topology, np.asarray(positions, dtype=np.float64) * unit.nanometer)
    modeller.addSolvent(app.ForceField(*EXPLICIT_FORCEFIELD_FILES), model="tip3p",
                        padding=padding_nm * unit.nanometer, neutralize=True)
    return modeller.topology, np.asarray(modeller.getPositions().value_in_unit(unit.nanometer))


def build_solvated_system(topology: app.Topology, remove_cm_motion: bool = True) -> openmm.System:
    """amber14 + TIP3P for a `solvate`d topology, all forces in group 0.

    PME with a `EXPLICIT_CUTOFF_NM` cutoff (OpenMM's default Ewald tolerance 5e-4, the long-range
    dispersion correction on), rigid water (SETTLE), flexible solute bonds (no constraints: its
    bond vibrations are part of the data), no barostat: the runs are NVT in the box `solvate`
    made (the density of the pre-equilibrated water box; one small solute hardly changes it).

    Returns:
        The periodic `openmm.System` (kJ/mol, nm), box vectors from the topology.
    """
    forcefield = app.ForceField(*EXPLICIT_FORCEFIELD_FILES)
    return forcefield.createSystem(
        topology, nonbondedMethod=app.PME, nonbondedCutoff=EXPLICIT_CUTOFF_NM * unit.nanometer,
        constraints=None, rigidWater=True, removeCMMotion=remove_cm_motion,
    )


def solvent_only_system(system: openmm.System, n_solute: int) -> openmm.System:
    """The solvent's own energy: `system`'s NonbondedForce with the first `n_solute` particles'
    charges and Lennard-Jones epsilons zeroed (and their exceptions), nothing else.

    E(solvated) − E(solute, vacuum terms) − E(this system) is the energy whose gradient with
    respect to the solute's coordinates is minus the "solvent" force of `molecules.trajectories`
    (this system does not depend on them): the solute–solvent interaction energy, plus the small
    difference between the solute's own PME and vacuum non-bonded energies (periodic images,
    the cutoff on its Lennard-Jones pairs, the PME error). Energies in kJ/mol.
    """
    source = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nonbonded = openmm.XmlSerializer.clone(source)
    for index in range(n_solute):
        _, sigma, _ = nonbonded.getParticleParameters(index)
        nonbonded.setParticleParameters(index, 0.0, sigma, 0.0)
    for index in range(nonbonded.getNumExceptions()):
        i, j, _, sigma, _ = nonbonded.getExceptionParameters(index)
        if i < n_solute or j < n_solute:
            nonbonded.setExceptionParameters(index, i, j, 0.0, sigma, 0.0)
    nonbonded.setForceGroup(0)
    out = openmm.System()
    for index in range(system.getNumParticles()):
        out.addParticle(system.getParticleMass(index))
    out.setDefaultPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    out.addForce(nonbonded)
    return out
