"""Throughput of the molecular pipeline on alanine dipeptide (prints figures, asserts nothing).

    .venv/bin/python benchmarks/molecule_throughput.py [--repeats 3] [--threads 2]

md:       spinscore's trajectory runner (Langevin steps, and every frame the positions, the
          total force and every force-group's force and energy written to chunk files), one
          trajectory and two at once, against plain OpenMM steps of the same system and
          integrator, in ns/day.
train:    optimiser steps of the default atom score model (batch 32, antithetic: 64 noised
          samples) in training samples/s, against the same model without triangle updates.
generate: Langevin dynamics with the learned force (64 chains at once) in ns/day summed over
          the chains, against OpenMM MD of one chain.
Medians over `--repeats` timings. The machine must be otherwise idle.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import unit

from spinscore.molecules import (
    AtomScoreModel,
    DSMSettings,
    Molecule,
    MoleculeTrainer,
    TrajectorySettings,
    atom_types,
    make_context,
    simulate_trajectories,
)
from spinscore.molecules.generation import model_score, score_langevin
from spinscore.molecules.md import system_masses

TIMESTEP_FS = 0.5


def ns_per_day(steps: int, seconds: float, chains: int = 1) -> float:
    return steps * TIMESTEP_FS * 1e-6 * chains / (seconds / 86400)


def plain_md(molecule: Molecule, steps: int) -> float:
    """Seconds for `steps` LangevinMiddleIntegrator steps of the unsplit system, 1 thread."""
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond,
                                                 TIMESTEP_FS * unit.femtosecond)
    context = make_context(molecule.dynamics, integrator, "CPU", threads=1)
    context.setPositions(molecule.start * unit.nanometer)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(100)
    start = time.perf_counter()
    integrator.step(steps)
    return time.perf_counter() - start


def spinscore_md(frames: int, steps_per_frame: int, seed: int, workers: int = 1) -> float:
    """Seconds for `workers` trajectories of `frames` frames through `simulate_trajectories`,
    run at once."""
    settings = TrajectorySettings(n_trajectories=workers, n_frames=frames,
                                  steps_per_frame=steps_per_frame, equilibration_steps=0,
                                  frames_per_chunk=frames, seed=seed)
    molecule = Molecule.alanine(settings)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        simulate_trajectories(Path(tmp) / "md.h5", settings, workers=workers, molecule=molecule)
        return time.perf_counter() - start


def training_samples_per_s(positions: np.ndarray, classes, bonds, triangle: bool,
                           steps: int) -> float:
    torch.manual_seed(0)
    model = AtomScoreModel.for_molecule(classes, bonds, positions=positions, triangle=triangle)
    trainer = MoleculeTrainer(model, torch.as_tensor(positions), DSMSettings(steps=steps + 2))
    trainer.step()  # warm-up: allocators and caches
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return steps * trainer.settings.batch_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--md-steps", type=int, default=20_000)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--generate-steps", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    molecule = Molecule.alanine(TrajectorySettings())
    print(f"alanine dipeptide, vacuum, {TIMESTEP_FS} fs; openmm {openmm.__version__}, torch "
          f"{torch.__version__}, {args.threads} torch threads, OpenMM CPU 1 thread")

    plain = [ns_per_day(args.md_steps, plain_md(molecule, args.md_steps)) for _ in range(args.repeats)]
    frames = args.md_steps // 200
    ours = [ns_per_day(frames * 200, spinscore_md(frames, 200, seed)) for seed in range(args.repeats)]
    md = statistics.median(plain)
    print(f"md plain OpenMM:            median {md:8.2f} ns/day")
    print(f"md spinscore (frame / 0.1 ps, all force groups): median "
          f"{statistics.median(ours):8.2f} ns/day, ratio to plain {statistics.median(ours) / md:.3f}")
    # On a virtual machine one OpenMM thread alone is slowed by its thread hand-offs waking an
    # idle core; with both cores busy (the way `simulate --threads 2` runs) each runs faster.
    pair = [ns_per_day(2 * frames * 200, spinscore_md(frames, 200, seed, workers=2))
            for seed in range(args.repeats)]
    print(f"md spinscore, 2 trajectories at once: median {statistics.median(pair):8.2f} ns/day "
          f"in all, ratio to plain (one alone) {statistics.median(pair) / md:.3f}")

    rng = np.random.default_rng(0)
    positions = molecule.start[None] + 0.003 * rng.standard_normal((256, *molecule.start.shape))
    _, classes = atom_types(molecule.topology)
    bonds = np.array([(a.index, b.index) for a, b in molecule.topology.bonds()])
    rates = {t: statistics.median(training_samples_per_s(positions, classes, bonds, t, args.train_steps)
                                  for _ in range(args.repeats)) for t in (True, False)}
    print(f"train default model:        median {rates[True]:8.1f} samples/s "
          f"({rates[True] / 32:.2f} steps/s of batch 32)")
    print(f"train without triangles:    median {rates[False]:8.1f} samples/s, ratio default / "
          f"this {rates[True] / rates[False]:.3f}")

    torch.manual_seed(0)
    model = AtomScoreModel.for_molecule(classes, bonds, positions=positions).eval()
    score = model_score(model, 3e-5)
    start_x = positions[rng.integers(0, len(positions), args.chains)]
    timings = []
    for seed in range(args.repeats):
        clock = time.perf_counter()
        score_langevin(score, start_x, system_masses(molecule.system), temperature_K=300.0,
                       timestep_fs=TIMESTEP_FS, friction_per_ps=1.0, steps=args.generate_steps,
                       record_every=args.generate_steps, seed=seed)
        timings.append(time.perf_counter() - clock)
    gen = ns_per_day(args.generate_steps, statistics.median(timings), args.chains)
    print(f"generate ({args.chains} chains, learned force): median {gen:8.2f} ns/day, ratio to "
          f"plain OpenMM MD {gen / md:.3f}")
    print(f"md_ns_per_day={statistics.median(pair):.2f} train_samples_per_s={rates[True]:.1f} "
          f"generate_ns_per_day={gen:.2f}")


if __name__ == "__main__":
    main()
