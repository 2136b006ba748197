"""Replica-exchange throughput on lattices, end to end through `spinscore simulate` (prints
figures, asserts nothing).

    .venv/bin/python benchmarks/graph_remc.py [--presets square triangular] [--samples 40]
        [--repeats 3] [--threads N]

Spin updates = samples x sites x replicas x (burn_in + snapshots x thinning) for the preset's
lattice and schedule (configs/NAME.yaml). The wall time includes start-up, the progress bar and
writing the HDF5 file. For scale, a plain NumPy heat-bath sweep on the same lattice (all sites
of one colour at once, fields by a sparse matrix product, von Mises-Fisher draws from
`sampling.reference`) is timed in the same run on the same replicas.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from scipy import sparse

REPO = Path(__file__).resolve().parents[1]


def numpy_reference_rate(preset: str, seconds: float = 3.0) -> float:
    """Spin updates per second of the NumPy colour sweep on the preset's lattice, its
    replicas at the preset's temperature ladder."""
    from spinscore.config import load_config
    from spinscore.physics.hamiltonian import system_couplings
    from spinscore.sampling.reference import vmf_sample
    from spinscore.sampling.remc import temperature_ladder
    from spinscore.systems import system_from_config

    cfg = load_config(REPO / "configs" / f"{preset}.yaml")
    system, sim = system_from_config(cfg.system), cfg.simulation
    rng = np.random.default_rng(0)
    n = system.max_sites
    pairs = system.pairs(n)
    couplings = system_couplings(system, system.draw_types(rng), cfg.system.coupling_table())
    adjacency = sparse.coo_matrix((np.concatenate([couplings, couplings]),
                                   (np.concatenate([pairs.i, pairs.j]),
                                    np.concatenate([pairs.j, pairs.i]))), shape=(n, n)).tocsr()
    colours = system.colouring(n)
    betas = 1.0 / temperature_ladder(cfg.system.temperature, sim.t_max, sim.replicas)
    spins = rng.standard_normal((sim.replicas, n, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    updates, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for c in np.unique(colours):
            sites = np.flatnonzero(colours == c)
            h = np.stack([adjacency[sites] @ s for s in spins])  # (R, n_c, 3)
            norm = np.linalg.norm(h, axis=-1)
            mean = h / np.where(norm > 0, norm, 1.0)[..., None]
            spins[:, sites] = vmf_sample(mean, betas[:, None] * norm, rng)
        updates += spins.shape[0] * n
    return updates / (time.perf_counter() - start)


def simulate_rate(preset: str, samples: int, repeats: int, threads: list[str], tmp: str):
    """Median spin updates per second of `spinscore simulate` over `repeats` runs."""
    from spinscore.config import load_config

    sim = load_config(REPO / "configs" / f"{preset}.yaml").simulation
    exe = [sys.executable, "-m", "spinscore.cli", "simulate", "--config",
           str(REPO / "configs" / f"{preset}.yaml"), "--quiet", *threads]
    # warm the compiled-kernel cache so that the timing does not include compilation
    subprocess.run([*exe, "--set", "simulation.sequences=2", "--out", f"{tmp}/{preset}-warm.h5"],
                   check=True)
    rates = []
    for k in range(repeats):
        out = f"{tmp}/{preset}{k}.h5"
        start = time.perf_counter()
        subprocess.run([*exe, "--set", f"simulation.sequences={samples}", "--out", out],
                       check=True)
        wall = time.perf_counter() - start
        with h5py.File(out) as f:
            sites = int(f["length"][()].sum())
            n_rep = len(f["temperatures"])
        updates = sites * n_rep * (sim.burn_in + sim.snapshots * sim.thinning)
        rates.append(updates / wall)
        print(f"{preset} run {k}: {updates / 1e9:.3f} G spin updates in {wall:.2f} s "
              f"= {updates / wall / 1e6:.1f} M/s")
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["square", "triangular"])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            med = simulate_rate(preset, args.samples, args.repeats, threads, tmp)
            ref = numpy_reference_rate(preset)
            print(f"{preset}: numpy reference sweep {ref / 1e6:.2f} M spin updates/s; median "
                  f"{med / 1e6:.1f} M/s ({med / ref:.0f}x the NumPy reference)")
            print(f"{preset}_spin_updates_per_s={med:.4g}")


if __name__ == "__main__":
    main()
