"""Independent Langevin trajectories of a molecule, written crash-safely and assembled into HDF5.

Trajectory i of a run depends only on (settings, i): its initial velocities and the integrator's
noise are seeded from (seed, i), every context runs on one CPU thread (bitwise reproducible force
sums), and all trajectories start from the same minimised structure, then equilibrate. Each
trajectory is cut into blocks of `frames_per_chunk` frames; a finished block is written as
`OUT.parts/chunk_NNNNNN.npz` (to a temporary name, then renamed: a chunk file is complete or
absent) together with an OpenMM checkpoint of the context after its last frame (positions,
velocities, step count, the integrator's random state). A killed run resumes each trajectory from
the checkpoint of its last finished block, so it assembles the same arrays, bit for bit, as an
uninterrupted run. When every chunk is there they are assembled into OUT (`datafile`).

Trajectories run in parallel in a thread pool: OpenMM releases the GIL while it integrates.

Explicit water (TIP3P, PME, NVT in the solvated box: no barostat) is integrated out of the file:
it holds only the solute's atoms (the first n of the solvated system), so everything downstream
sees the same n atoms as in vacuum. The solute's terms (bond ... coulomb14) are the vacuum split
system evaluated at the solute's coordinates; "solvent" is the total force on the solute atoms in
the solvated system less their sum, and its energy is E(solvated) − E(solute, vacuum terms) −
E(water alone) (`forcefield.solvent_only_system`), whose gradient in the solute's coordinates
is minus that force. Both therefore also hold the difference between the solute's own PME
electrostatics (periodic images, reciprocal space) and its vacuum Coulomb, and its
Lennard-Jones pairs beyond the cutoff (small: the solute is ~0.8 nm across). The kinetic energy
is the whole solvated system's (matching `degrees_of_freedom(molecule.dynamics)`). Explicit runs
use the CUDA platform where present (`md.choose_platform`), else CPU at one thread per context.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from spinscore import __version__
from spinscore.errors import DataError, SpinscoreError
from spinscore.io import atomic_write_bytes, git_commit
from spinscore.molecules import forcefield, md
from spinscore.molecules.alanine import alanine_dipeptide
from spinscore.molecules.datafile import FRAME_FIELDS, frame_shape, write_molecule_file
from spinscore.molecules.forcefield import atom_types, build_system, build_unsplit_system
from spinscore.molecules.md import evaluate, make_context, maxwell_boltzmann, minimise, openmm_seeds

SOLVENTS = ("vacuum", "implicit", "explicit")
KJ_PER_MOL_NM = unit.kilojoule_per_mole / unit.nanometer


@dataclass(frozen=True)
class TrajectorySettings:
    """Settings of a set of independent trajectories.

    n_trajectories: T, independent trajectories.
    n_frames: F, frames per trajectory; a frame every `steps_per_frame` steps.
    equilibration_steps: steps from the minimised structure before the first frame's steps.
    frames_per_chunk: frames per chunk file, the unit of crash safety (the last may be shorter).
    temperature_K, timestep_fs, friction_per_ps: the LangevinMiddleIntegrator.
    solvent: "vacuum", "implicit" (OBC2) or "explicit" (TIP3P, PME).
    seed: run seed (≥ 0); trajectory i is seeded from (seed, i).
    phi_deg, psi_deg: backbone dihedrals of the built alanine dipeptide, before minimisation.
    padding_nm: explicit water only: least solute–image distance of the water box, nm
        (`forcefield.solvate`); left out of the run's record otherwise.
    """

    n_trajectories: int = 4
    n_frames: int = 1000
    steps_per_frame: int = 400
    equilibration_steps: int = 20_000
    frames_per_chunk: int = 100
    temperature_K: float = 300.0
    timestep_fs: float = 0.5
    friction_per_ps: float = 1.0
    solvent: str = "vacuum"
    seed: int = 0
    phi_deg: float = -80.0
    psi_deg: float = 75.0
    padding_nm: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_trajectories", "n_frames", "steps_per_frame", "frames_per_chunk"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.equilibration_steps < 0 or self.seed < 0:
            raise ValueError("equilibration_steps and seed must be non-negative")
        for name in ("temperature_K", "timestep_fs", "friction_per_ps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.solvent not in SOLVENTS:
            raise ValueError(f"solvent must be one of {', '.join(SOLVENTS)}, got {self.solvent!r}")

    def record(self) -> dict:
        """The settings as a dict for fingerprints and file attributes (padding_nm only for
        explicit water, so vacuum and implicit records are as before it existed)."""
        record = asdict(self)
        if self.solvent != "explicit":
            del record["padding_nm"]
        return record

    @property
    def chunks_per_trajectory(self) -> int:
        return math.ceil(self.n_frames / self.frames_per_chunk)

    def chunk(self, number: int) -> tuple[int, range]:
        """(trajectory, frames) of chunk `number`; chunks run through each trajectory in turn."""
        trajectory, block = divmod(number, self.chunks_per_trajectory)
        start = block * self.frames_per_chunk
        return trajectory, range(start, min(start + self.frames_per_chunk, self.n_frames))

    @property
    def n_chunks(self) -> int:
        return self.n_trajectories * self.chunks_per_trajectory


def trajectory_seeds(seed: int, index: int) -> tuple[int, int]:
    """(integrator, velocity) seeds of trajectory `index` of a run with seed `seed`."""
    entropy = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
    return openmm_seeds(int(entropy))


@dataclass(frozen=True)
class Molecule:
    """A prepared molecule: the solute's topology (n atoms), the minimised start (N, 3) nm of
    the integrated system, the solute's split system (n atoms) with its term groups (recorded)
    and the unsplit system (integrated: same forces, about 1.7× faster in vacuum).

    Explicit water: `dynamics` is the solvated system (N > n atoms, solute first), `system` the
    solute's vacuum split system, and `solvent` the water-alone system of the solvent energy.
    """

    topology: app.Topology
    start: np.ndarray
    system: openmm.System
    groups: dict[str, int]
    dynamics: openmm.System
    solvent: openmm.System | None = None

    @property
    def n_solute(self) -> int:
        """n, the atoms recorded in the file."""
        return self.system.getNumParticles()

    @property
    def terms(self) -> tuple[str, ...]:
        """The recorded terms: the groups of `system`, then "solvent" for explicit water."""
        return (*self.groups, "solvent") if self.solvent is not None else tuple(self.groups)

    @classmethod
    def alanine(cls, settings: TrajectorySettings) -> Molecule:
        """Alanine dipeptide built at (phi_deg, psi_deg) and minimised (explicit water: minimised
        in vacuum, solvated, minimised again to OpenMM's default 10 kJ/mol/nm, on `platform`);
        deterministic on one CPU thread, shared by all trajectories."""
        topology, positions = alanine_dipeptide(settings.phi_deg, settings.psi_deg)
        if settings.solvent != "explicit":
            system, groups = build_system(topology, settings.solvent)
            dynamics = build_unsplit_system(topology, settings.solvent)
            start, _ = minimise(dynamics, positions, platform="CPU")
            return cls(topology, start, system, groups, dynamics)
        system, groups = build_system(topology, "vacuum")
        start, _ = minimise(build_unsplit_system(topology, "vacuum"), positions, platform="CPU")
        solvated, start = forcefield.solvate(topology, start, settings.padding_nm)
        dynamics = forcefield.build_solvated_system(solvated)
        start, _ = minimise(dynamics, start, tolerance=10.0)
        return cls(topology, start, system, groups, dynamics,
                   forcefield.solvent_only_system(dynamics, system.getNumParticles()))

    @property
    def platform(self) -> str:
        """The OpenMM platform the trajectories integrate on (`md.choose_platform`)."""
        return md.choose_platform(self.dynamics)


class ChunkDir:
    """`OUT.parts/`: finished chunks and the fingerprint of the run that wrote them."""

    def __init__(self, out: Path, fingerprint: str):
        self.dir = out.with_name(out.name + ".parts")
        self.fingerprint = fingerprint

    def open(self) -> None:
        stamp = self.dir / "fingerprint.txt"
        if stamp.exists() and stamp.read_text() != self.fingerprint:
            raise SpinscoreError(f"{self.dir}: unfinished chunks of a run with other settings; rerun "
                                 "with the same settings, or pass --overwrite to discard them")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            atomic_write_bytes(stamp, self.fingerprint.encode())

    def path(self, number: int) -> Path:
        return self.dir / f"chunk_{number:06d}.npz"

    def done(self, number: int) -> bool:
        return self.path(number).exists()

    def save(self, number: int, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, chunk=np.int64(number), fingerprint=np.str_(self.fingerprint), **arrays)
        atomic_write_bytes(self.path(number), buffer.getvalue())

    def load(self, number: int, n_frames: int, n_atoms: int, n_terms: int) -> dict[str, np.ndarray]:
        """The validated arrays of a chunk; `DataError` naming the file and the field."""
        path = self.path(number)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable chunk is reported the same way
            raise DataError(f"{path}: unreadable chunk file ({exc}); delete it to recompute") from None
        for name in ("chunk", "fingerprint", "checkpoint", *FRAME_FIELDS):
            if name not in arrays:
                raise DataError(f"{path}: field '{name}' missing; delete the chunk to recompute")
        if int(arrays["chunk"]) != number or str(arrays["fingerprint"]) != self.fingerprint:
            raise DataError(f"{path}: field 'chunk': written by another run or as another chunk")
        for name, (dtype, spec) in FRAME_FIELDS.items():
            a, shape = arrays[name], (n_frames, *frame_shape(spec, n_atoms, n_terms))
            if a.shape != shape or a.dtype != dtype or not np.all(np.isfinite(a)):
                raise DataError(f"{path}: field '{name}': expected finite {np.dtype(dtype)} {shape}, "
                                f"got {a.dtype} {a.shape}; delete the chunk to recompute")
        return arrays

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _fingerprint(settings: TrajectorySettings, molecule: Molecule) -> str:
    record = {**settings.record(), "openmm_version": openmm.__version__, "terms": list(molecule.terms),
              "start": hashlib.sha256(np.ascontiguousarray(molecule.start).tobytes()).hexdigest(),
              "atoms": [a.name for a in molecule.topology.atoms()]}
    if molecule.solvent is not None:  # OpenMM checkpoints only load on the platform that wrote them
        record["platform"] = molecule.platform
    return json.dumps(record, sort_keys=True)


def _record_frame(record: dict[str, np.ndarray], row: int, state: openmm.State, molecule: Molecule,
                  evaluator: openmm.Context, solvent: openmm.Context | None) -> None:
    """Write frame `row` of a chunk from the integrated context's `state` (positions, forces and
    energy): the solute's positions (n, 3) nm, total force (n, 3) kJ/mol/nm, kinetic energy,
    and per term energies (G,) kJ/mol and forces (G, n, 3) kJ/mol/nm (module docstring)."""
    groups, n = tuple(molecule.groups.values()), molecule.n_solute
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    forces = state.getForces(asNumpy=True).value_in_unit(KJ_PER_MOL_NM)
    record["positions"][row], record["forces"][row] = positions[:n], forces[:n]
    record["kinetic_energy"][row] = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    if solvent is None:
        evaluator.setPositions(state.getPositions())
        record["group_energies"][row], record["group_forces"][row] = evaluate(evaluator, groups)
        return
    evaluator.setPositions(positions[:n] * unit.nanometer)
    energies, terms = evaluate(evaluator, groups)
    solvent.setPeriodicBoxVectors(*state.getPeriodicBoxVectors())
    solvent.setPositions(state.getPositions())
    water = solvent.getState(getEnergy=True).getPotentialEnergy()
    interaction = (state.getPotentialEnergy() - water).value_in_unit(unit.kilojoule_per_mole)
    record["group_energies"][row] = (*energies, interaction - energies.sum())
    record["group_forces"][row] = np.concatenate([terms, (forces[:n] - terms.sum(0))[None]])


def _run_trajectory(index: int, settings: TrajectorySettings, molecule: Molecule, chunks: ChunkDir,
                    stop: threading.Event, on_chunk: Callable[[int], None] | None) -> None:
    """Run the unfinished blocks of trajectory `index`, from the last finished block's checkpoint."""
    per = settings.chunks_per_trajectory
    numbers = range(index * per, (index + 1) * per)
    first = next((k for k in numbers if not chunks.done(k)), None)
    if first is None or stop.is_set():
        return
    n_atoms, n_terms = molecule.n_solute, len(molecule.terms)
    integrator_seed, velocity_seed = trajectory_seeds(settings.seed, index)
    integrator = openmm.LangevinMiddleIntegrator(
        settings.temperature_K * unit.kelvin, settings.friction_per_ps / unit.picosecond,
        settings.timestep_fs * unit.femtosecond,
    )  # fmt: skip
    integrator.setRandomNumberSeed(integrator_seed)
    context = make_context(molecule.dynamics, integrator, molecule.platform, threads=1)
    evaluator = make_context(molecule.system, openmm.VerletIntegrator(0.001), "CPU", threads=1)
    solvent = None if molecule.solvent is None else make_context(
        molecule.solvent, openmm.VerletIntegrator(0.001), molecule.platform, threads=1)
    if first == numbers.start:
        context.setPositions(molecule.start * unit.nanometer)
        velocities = maxwell_boltzmann(molecule.dynamics, settings.temperature_K, velocity_seed)
        context.setVelocities(velocities * unit.nanometer / unit.picosecond)
        if settings.equilibration_steps:
            integrator.step(settings.equilibration_steps)
    else:
        frames = settings.chunk(first - 1)[1]
        previous = chunks.load(first - 1, len(frames), n_atoms, n_terms)
        context.loadCheckpoint(previous["checkpoint"].tobytes())
    for number in range(first, numbers.stop):
        if stop.is_set():
            return
        frames = settings.chunk(number)[1]
        record = {name: np.empty((len(frames), *frame_shape(spec, n_atoms, n_terms)), dtype)
                  for name, (dtype, spec) in FRAME_FIELDS.items()}
        for row in range(len(frames)):
            integrator.step(settings.steps_per_frame)
            state = context.getState(getPositions=True, getForces=True, getEnergy=True)
            _record_frame(record, row, state, molecule, evaluator, solvent)
        checkpoint = np.frombuffer(context.createCheckpoint(), dtype=np.uint8)
        chunks.save(number, {**record, "checkpoint": checkpoint})
        if on_chunk is not None:
            on_chunk(number)


def simulate_trajectories(out: str | Path, settings: TrajectorySettings, *, workers: int = 2,
                          molecule: Molecule | None = None, overwrite: bool = False,
                          on_chunk: Callable[[int], None] | None = None, keep_parts: bool = False,
                          attrs: dict | None = None) -> Path:
    """Simulate `settings.n_trajectories` Langevin trajectories into the HDF5 file `out`.

    Resumes from `out.parts/` when an earlier run with the same settings was interrupted.

    Args:
        out: the HDF5 file to write (layout in `molecules.datafile`).
        settings: the run.
        workers: trajectories simulated at once (threads; one CPU thread per OpenMM context).
        molecule: the prepared molecule; default alanine dipeptide from `settings`.
        overwrite: discard an existing `out` and unfinished chunks; otherwise an existing `out`
            is refused.
        on_chunk: called with the chunk number after each chunk file is written (from a worker
            thread); an exception raised there stops the run and is re-raised, the chunks
            written so far stay on disk.
        keep_parts: keep `out.parts/` after assembly.
        attrs: more scalar metadata for the file (e.g. the run's config as YAML text).

    Returns:
        The path of the assembled file.
    """
    out = Path(out)
    molecule = Molecule.alanine(settings) if molecule is None else molecule
    chunks = ChunkDir(out, _fingerprint(settings, molecule))
    if overwrite:
        out.unlink(missing_ok=True)
        chunks.remove()
    elif out.exists():
        raise SpinscoreError(f"{out}: exists; pass --overwrite to replace it")
    chunks.open()
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_run_trajectory, i, settings, molecule, chunks, stop, on_chunk)
                   for i in range(settings.n_trajectories)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            stop.set()
            for future in futures:
                future.cancel()
    failures = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    if failures:
        raise failures[0]
    write_molecule_file(out, _load_all(settings, molecule, chunks), settings.n_trajectories,
                        settings.n_frames, _static(settings, molecule),
                        {**_attrs(settings, molecule), **(attrs or {})})
    if not keep_parts:
        chunks.remove()
    return out


def _load_all(settings: TrajectorySettings, molecule: Molecule,
              chunks: ChunkDir) -> Iterator[tuple[int, range, dict[str, np.ndarray]]]:
    n_atoms, n_terms = molecule.n_solute, len(molecule.terms)
    for number in range(settings.n_chunks):
        trajectory, frames = settings.chunk(number)
        yield trajectory, frames, chunks.load(number, len(frames), n_atoms, n_terms)


def _static(settings: TrajectorySettings, molecule: Molecule) -> dict:
    """Topology and force-field arrays of the file (see `molecules.datafile`)."""
    atoms = list(molecule.topology.atoms())  # the solute's
    bonds = [(a.index, b.index) for a, b in molecule.topology.bonds()]
    types, classes = atom_types(molecule.topology, settings.solvent)
    nonbonded = next(f for f in molecule.dynamics.getForces() if isinstance(f, openmm.NonbondedForce))
    return {
        "term_names": list(molecule.terms),
        "atom_names": [a.name for a in atoms],
        "elements": [a.element.symbol for a in atoms],
        "residue_names": [a.residue.name for a in atoms],
        "residue_index": np.array([a.residue.index for a in atoms], dtype=np.int32),
        "bonds": np.array(bonds, dtype=np.int32).reshape(-1, 2),
        "atom_types": types,
        "atom_classes": classes,
        "masses": md.system_masses(molecule.dynamics)[:len(atoms)],
        "charges": np.array([nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                             for i in range(len(atoms))]),
    }


def _attrs(settings: TrajectorySettings, molecule: Molecule) -> dict:
    extra = {} if molecule.solvent is None else {"solvated_atoms": molecule.dynamics.getNumParticles()}
    return {**settings.record(), **extra, "platform": molecule.platform, "threads_per_context": 1,
            "integrator": "LangevinMiddleIntegrator", "openmm_version": openmm.__version__,
            "spinscore_version": __version__, "git_commit": git_commit()}
