"""Time per generated chain and per ln Z estimate (prints medians, asserts nothing).

    .venv/bin/python benchmarks/density.py [--checkpoint runs/quick/train/checkpoint.pt]
        [--sequence BBABBBAAAABBAABAAAAB] [--chains 64] [--repeats 3] [--threads 2]

Generation (needs --checkpoint; skipped without it): `sample_chains` of `--chains` chains of
the sequence by each sampler of `spinscore sample` (adaptive probability-flow ODE; reverse SDE,
500 steps; predictor-corrector, 250 SDE steps with 3 Langevin steps each, the setting measured
on the quick model), seconds per chain. Reference in the same run: REMC, seconds per
equilibrium snapshot of the same sequence with the config's schedule (one replica-exchange
chain, burn-in included, divided over its snapshots).

ln Z (needs no model): of the sequence under the config's Hamiltonian at its temperature, by
Simpson TI (`analysis.thermo`, 100 grid points) and by MBAR over the simulation ladder
(`analysis.mbar`), both with 8 runs of 4000 sweeps, one thread; seconds per estimate, the
value and its error bar, and MBAR's time over TI's. With --checkpoint, by importance sampling
from the model (`analysis.importance`, `--is-samples` chains with their exact log q).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLERS = {"ode (adaptive)": {"method": "ode"},
            "sde (500 steps)": {"method": "sde", "steps": 500},
            "pc (250 x (1 + 3))": {"method": "pc", "steps": 250, "corrector_steps": 3}}


def median_time(fn, repeats: int) -> tuple[float, object]:
    """Median wall time of fn() over `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        tick = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times), out


def generation(checkpoint: str, sequence: str, chains: int, repeats: int) -> None:
    from spinscore.checkpoints import load_model
    from spinscore.diffusion.generate import sample_chains
    from spinscore.sampling.remc import simulate_chain

    model, config, _ = load_model(checkpoint)
    types = config.system.sequence_from_text(sequence)
    d, sim = config.diffusion, config.simulation
    snapshots = 50
    remc, _ = median_time(lambda: simulate_chain(
        config.system, sim.model_copy(update={"snapshots": snapshots}), 0, types=types), repeats)
    print(f"generation: {sequence} (L = {len(types)}), {chains} chains, median of {repeats}")
    print(f"  REMC (reference)       {1e3 * remc / snapshots:9.2f} ms per snapshot "
          f"({sim.replicas} replicas, burn-in {sim.burn_in}, thinning {sim.thinning})")
    for name, kw in SAMPLERS.items():
        def run(kw=kw):
            with torch.no_grad():
                return sample_chains(model, torch.as_tensor(types), chains, t_min=d.t_min,
                                     t_max=d.t_max, generator=torch.Generator().manual_seed(0),
                                     **kw)
        seconds, _ = median_time(run, repeats)
        print(f"  {name:<22} {1e3 * seconds / chains:9.2f} ms per chain "
              f"({seconds / chains / (remc / snapshots):.1f}x a REMC snapshot)")


def log_z(sequence: str, repeats: int, config_path: Path) -> None:
    from spinscore.analysis.mbar import mbar_log_z
    from spinscore.analysis.thermo import thermodynamic_integration
    from spinscore.config import load_config

    config = load_config(config_path)
    system, sim = config.system, config.simulation
    types = system.sequence_from_text(sequence)
    kw = {"runs": 8, "sweeps": 4000, "threads": 1}
    ti_s, ti = median_time(lambda: thermodynamic_integration(
        system, types, system.beta, 100, sim, 0, **kw), repeats)
    mbar_s, mb = median_time(lambda: mbar_log_z(system, types, None, sim, 0, **kw), repeats)
    print(f"ln Z: {sequence} (L = {len(types)}), beta = {system.beta:g}, 8 runs x 4000 sweeps, "
          f"median of {repeats}")
    print(f"  TI (reference, 100 points) {ti_s:7.2f} s per estimate: "
          f"{ti['log_z']:.3f} +- {ti['log_z_err']:.3f}")
    print(f"  MBAR ({sim.replicas} rungs, {mb['anchor']} anchor)  {mbar_s:7.2f} s per estimate: "
          f"{mb['log_z'][-1]:.3f} +- {mb['log_z_err'][-1]:.3f}  ({mbar_s / ti_s:.2f}x TI)")


def importance(checkpoint: str, sequence: str, samples: int, repeats: int) -> None:
    """ln Z by importance sampling: probability-flow chains and their exact log q."""
    from spinscore.analysis.importance import importance_estimate, model_samples_with_log_q
    from spinscore.checkpoints import load_model
    from spinscore.physics.hamiltonian import system_couplings, system_energy
    from spinscore.systems import system_from_config

    model, config, _ = load_model(checkpoint)
    system, d = config.system, config.diffusion
    types = system.sequence_from_text(sequence)
    sites = system_from_config(system)
    couplings = system_couplings(sites, types, system.coupling_table())

    def estimate():
        spins, log_q, _ = model_samples_with_log_q(model, torch.as_tensor(types), samples,
                                                   t_min=d.t_min, t_max=d.t_max)
        return importance_estimate(-system.beta * system_energy(sites, spins, couplings) - log_q)

    seconds, r = median_time(estimate, repeats)
    print(f"  importance sampling ({samples} chains) {seconds:7.2f} s per estimate "
          f"({seconds / samples:.2f} s per chain): {r['log_z']:.3f} +- {r['log_z_err']:.3f}, "
          f"ESS {r['ess']:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "runs/quick/train/checkpoint.pt"))
    ap.add_argument("--config", default=str(REPO / "configs/quick.yaml"))
    ap.add_argument("--sequence", default="BBABBBAAAABBAABAAAAB")  # quick test sequence 0
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--is-samples", type=int, default=32, help="chains per importance estimate")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    log_z(args.sequence, args.repeats, Path(args.config))
    if Path(args.checkpoint).exists():
        importance(args.checkpoint, args.sequence, args.is_samples, args.repeats)
        generation(args.checkpoint, args.sequence, args.chains, args.repeats)
    else:
        print(f"generation skipped: no checkpoint at {args.checkpoint} (run the quick preset)")


if __name__ == "__main__":
    main()
