"""Molecular dynamics with OpenMM: Langevin trajectories with per-group energies and forces,
an NVE energy trace to validate the time step, and energy minimisation.

Numbers in, numbers out: positions in nm, energies in kJ/mol, forces in kJ/mol/nm.
"""

from dataclasses import dataclass

import numpy as np
import openmm
from openmm import unit

from spinscore.molecules.forcefield import MOTION_REMOVER_GROUP

# Boltzmann constant times Avogadro's number, kJ/mol/K (OpenMM's value).
MOLAR_GAS_CONSTANT = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)


@dataclass(frozen=True)
class Trajectory:
    """Frames of a Langevin run.

    positions: (F, n_atoms, 3) nm.
    forces: (F, n_atoms, 3) kJ/mol/nm, the total force.
    group_energies: (F, n_groups) kJ/mol; column g is force group `groups[g]`.
    group_forces: (F, n_groups, n_atoms, 3) kJ/mol/nm.
    kinetic_energies: (F,) kJ/mol.
    groups: (n_groups,) the force groups of the columns.
    """

    positions: np.ndarray
    forces: np.ndarray
    group_energies: np.ndarray
    group_forces: np.ndarray
    kinetic_energies: np.ndarray
    groups: tuple[int, ...]


def openmm_seeds(seed: int) -> tuple[int, int]:
    """Two positive 31-bit seeds (integrator, velocities) derived from one integer seed.

    OpenMM reads an integrator seed of 0 as "choose one at random", so seeds are never 0.
    """
    state = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32)
    return tuple(int(s % (2**31 - 1)) + 1 for s in state)


def energy_groups(system: openmm.System) -> tuple[int, ...]:
    """Sorted force groups of `system` that carry energy (the CMMotionRemover's group is left out)."""
    return tuple(sorted({f.getForceGroup() for f in system.getForces()} - {MOTION_REMOVER_GROUP}))


def system_masses(system: openmm.System) -> np.ndarray:
    """(n_atoms,) particle masses of `system`, dalton (0 for massless particles)."""
    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton)
                     for i in range(system.getNumParticles())])


def degrees_of_freedom(system: openmm.System) -> int:
    """3N − constraints − 3 if a CMMotionRemover is present (massless particles do not move)."""
    moving = int(np.sum(system_masses(system) > 0))
    removes_cm = any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    return 3 * moving - system.getNumConstraints() - (3 if removes_cm else 0)


def maxwell_boltzmann(system: openmm.System, temperature_K: float, seed: int) -> np.ndarray:
    """Velocities (n_atoms, 3) nm/ps drawn from Maxwell–Boltzmann at `temperature_K`.

    With a CMMotionRemover in the system the centre-of-mass velocity is subtracted: the remover
    would otherwise take that kinetic energy away at the first step, a jump in an NVE trace.
    (OpenMM's `setVelocitiesToTemperature` does not remove it.) Massless particles stay at rest.
    """
    masses = system_masses(system)
    rng = np.random.default_rng(seed)
    scale = np.sqrt(MOLAR_GAS_CONSTANT * temperature_K / np.where(masses > 0, masses, np.inf))
    velocities = rng.standard_normal((masses.size, 3)) * scale[:, None]
    if any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces()):
        velocities -= (masses @ velocities) / masses.sum()
        velocities[masses == 0] = 0.0
    return velocities


def available_platforms() -> tuple[str, ...]:
    """Names of the OpenMM platforms this installation can use, e.g. ("Reference", "CPU")."""
    return tuple(openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms()))


def choose_platform(system: openmm.System) -> str:
    """The platform `make_context` uses when none is named: CUDA for a periodic system (explicit
    water) when a CUDA platform is present, otherwise CPU. Vacuum and implicit-solvent systems
    (22 atoms, no periodic box) always run on the CPU: a GPU does not speed them up, and one
    CPU thread keeps them bitwise reproducible."""
    if system.usesPeriodicBoundaryConditions() and "CUDA" in available_platforms():
        return "CUDA"
    return "CPU"


def make_context(system: openmm.System, integrator: openmm.Integrator, platform: str | None = "CPU",
                 threads: int | None = 1) -> openmm.Context:
    """An OpenMM context on the named platform (None: `choose_platform(system)`); `threads` sets
    the CPU platform's thread count.

    One thread makes CPU runs bitwise reproducible (the force summation order is fixed); periodic
    (PME) systems also need the CPU platform's deterministic force summation, without which
    repeated runs differ in the last bit (seen here). CUDA
    contexts use mixed precision (single-precision forces, double-precision integration, as
    flexible bonds at 0.5 fs and the NVE check need) and deterministic force summation.
    """
    platform = choose_platform(system) if platform is None else platform
    properties = {}
    if platform == "CPU" and threads is not None:
        properties = {"Threads": str(threads)}
        if system.usesPeriodicBoundaryConditions():  # PME sums vary run to run otherwise
            properties["DeterministicForces"] = "true"
    elif platform == "CUDA":
        properties = {"Precision": "mixed", "DeterministicForces": "true"}
    return openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)


def evaluate(context: openmm.Context, groups: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-group energies (n_groups,) kJ/mol and forces (n_groups, n_atoms, 3) kJ/mol/nm."""
    energies, forces = [], []
    for group in groups:
        state = context.getState(getEnergy=True, getForces=True, groups={group})
        energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces.append(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    n_atoms = context.getSystem().getNumParticles()
    energies, forces = np.asarray(energies, dtype=np.float64), np.asarray(forces, dtype=np.float64)
    return energies, forces.reshape(len(groups), n_atoms, 3)


def run_langevin(system: openmm.System, positions: np.ndarray, temperature_K: float, timestep_fs: float,
                 friction_per_ps: float, n_frames: int, steps_per_frame: int, seed: int,
                 platform: str | None = None, threads: int | None = 1,
                 groups: tuple[int, ...] | None = None,
                 dynamics_system: openmm.System | None = None) -> Trajectory:
    """Langevin dynamics (LangevinMiddleIntegrator, BAOAB-type) recording a frame every
    `steps_per_frame` steps; the first frame is after the first `steps_per_frame` steps.

    Initial velocities are drawn from Maxwell–Boltzmann at `temperature_K`. The same seed on the
    same platform and thread count gives identical frames.

    Args:
        system: the OpenMM system, e.g. from `build_system`.
        positions: (n_atoms, 3) nm, the starting configuration (minimise it first).
        temperature_K: bath temperature, K.
        timestep_fs: time step, fs.
        friction_per_ps: collision rate, 1/ps.
        n_frames, steps_per_frame: the run is n_frames × steps_per_frame steps.
        seed: integer seed for both the velocities and the integrator's noise.
        platform: OpenMM platform name ("CPU", "Reference", "CUDA", ...); None: CPU, or CUDA
            for a periodic system where present (`choose_platform`).
        threads: CPU thread count (None: OpenMM's default).
        groups: force groups to record; default `energy_groups(system)`.
        dynamics_system: an equivalent system (same particles and total energy) to integrate
            instead of `system`, e.g. `build_unsplit_system`, which runs about 1.7× faster in
            vacuum than the split one; `system` then only evaluates the recorded groups.

    Returns:
        A `Trajectory` with F = n_frames frames.
    """
    groups = energy_groups(system) if groups is None else tuple(groups)
    integrator_seed, velocity_seed = openmm_seeds(seed)
    integrator = openmm.LangevinMiddleIntegrator(
        temperature_K * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(integrator_seed)
    dynamics_system = system if dynamics_system is None else dynamics_system
    context = make_context(dynamics_system, integrator, platform, threads)
    context.setPositions(np.asarray(positions, dtype=np.float64) * unit.nanometer)
    velocities = maxwell_boltzmann(dynamics_system, temperature_K, velocity_seed)
    context.setVelocities(velocities * unit.nanometer / unit.picosecond)
    groups_context = context
    if dynamics_system is not system:
        groups_context = make_context(system, openmm.VerletIntegrator(0.001), platform, threads)

    n_atoms = system.getNumParticles()
    out_x = np.empty((n_frames, n_atoms, 3))
    out_f = np.empty((n_frames, n_atoms, 3))
    out_ge = np.empty((n_frames, len(groups)))
    out_gf = np.empty((n_frames, len(groups), n_atoms, 3))
    out_ke = np.empty(n_frames)
    for frame in range(n_frames):
        integrator.step(steps_per_frame)
        state = context.getState(getPositions=True, getForces=True, getEnergy=True)
        out_x[frame] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        out_f[frame] = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        out_ke[frame] = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if groups_context is not context:
            groups_context.setPositions(state.getPositions())
        out_ge[frame], out_gf[frame] = evaluate(groups_context, groups)
    return Trajectory(out_x, out_f, out_ge, out_gf, out_ke, groups)


def nve_drift(system: openmm.System, positions: np.ndarray, timestep_fs: float, n_steps: int,
              temperature_K: float, seed: int, platform: str | None = None, threads: int | None = 1,
              steps_per_record: int = 1) -> np.ndarray:
    """Total-energy trace of velocity-Verlet (NVE) dynamics, to validate a time step.

    Velocities start from Maxwell–Boltzmann at `temperature_K`. A good time step keeps the trace
    flat: its fluctuation and drift small compared with the kinetic-energy fluctuation
    kT √(n_dof / 2) of the canonical ensemble.

    Args:
        system: the OpenMM system.
        positions: (n_atoms, 3) nm.
        timestep_fs: time step, fs.
        n_steps: number of steps.
        temperature_K: temperature of the initial velocities, K.
        seed: velocity seed.
        platform, threads: as in `run_langevin`.
        steps_per_record: steps between recorded energies.

    Returns:
        (n_steps // steps_per_record + 1,) total energy, kJ/mol, starting at step 0.
    """
    _, velocity_seed = openmm_seeds(seed)
    integrator = openmm.VerletIntegrator(timestep_fs * unit.femtosecond)
    context = make_context(system, integrator, platform, threads)
    context.setPositions(np.asarray(positions, dtype=np.float64) * unit.nanometer)
    velocities = maxwell_boltzmann(system, temperature_K, velocity_seed)
    context.setVelocities(velocities * unit.nanometer / unit.picosecond)
    energies = []
    for record in range(n_steps // steps_per_record + 1):
        if record:
            integrator.step(steps_per_record)
        state = context.getState(getEnergy=True)
        total = state.getPotentialEnergy() + state.getKineticEnergy()
        energies.append(total.value_in_unit(unit.kilojoule_per_mole))
    return np.asarray(energies)


def minimise(system: openmm.System, positions: np.ndarray, tolerance: float = 0.1, max_iterations: int = 0,
             platform: str | None = None, threads: int | None = 1) -> tuple[np.ndarray, float]:
    """Local energy minimisation (OpenMM's L-BFGS).

    Args:
        system: the OpenMM system.
        positions: (n_atoms, 3) nm.
        tolerance: stop when the root-mean-square force is below this, kJ/mol/nm.
        max_iterations: iteration cap (0: until converged).
        platform, threads: as in `run_langevin`.

    Returns:
        positions: (n_atoms, 3) nm, the minimised configuration.
        energy: its potential energy, kJ/mol.
    """
    context = make_context(system, openmm.VerletIntegrator(0.001), platform, threads)
    context.setPositions(np.asarray(positions, dtype=np.float64) * unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, tolerance, max_iterations)
    state = context.getState(getPositions=True, getEnergy=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
