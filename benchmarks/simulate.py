"""Sampler throughput, end to end through `spinscore simulate` (prints figures, asserts nothing).

    .venv/bin/python benchmarks/simulate.py [--sequences 600] [--repeats 3] [--threads N]

Spin updates = sum over chains of L x replicas x (burn_in + snapshots x thinning) for the paper's
system and schedule (configs/paper.yaml). The wall time includes start-up, the progress bar and
writing the HDF5 file. For scale, the plain NumPy reference sampler (sampling/reference.py,
vectorised over chains and colours) is timed on the same system in the same run.
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

REPO = Path(__file__).resolve().parents[1]


def numpy_reference_rate(seconds: float = 3.0) -> float:
    from spinscore.config import load_config
    from spinscore.physics.hamiltonian import bond_couplings
    from spinscore.sampling.reference import colour_sweep
    from spinscore.sampling.remc import draw_sequence, temperature_ladder

    cfg = load_config(REPO / "configs" / "paper.yaml", ["system.length=[35, 35]"])
    rng = np.random.default_rng(0)
    types = np.stack([draw_sequence(cfg.system, rng) for _ in range(64)])
    betas = np.tile(1 / temperature_ladder(0.05, 5.0, 16), 4)  # 64 = 4 chains x 16 replicas
    bonds = bond_couplings(types, cfg.system.coupling_table())
    spins = rng.standard_normal((64, 35, 3))
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        colour_sweep(spins, bonds, betas, 3, rng)
        n += spins.shape[0] * spins.shape[1]
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "spinscore.cli"]
    threads = ["--threads", str(args.threads)] if args.threads else []
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        # warm the compiled-kernel cache so that the timing does not include compilation
        subprocess.run([*exe, "simulate", "--config", str(REPO / "configs/paper.yaml"), "--set",
                        "simulation.sequences=2", "--out", f"{tmp}/warm.h5", "--quiet"], check=True)
        for k in range(args.repeats):
            out = f"{tmp}/run{k}.h5"
            start = time.perf_counter()
            subprocess.run([*exe, "simulate", "--config", str(REPO / "configs/paper.yaml"),
                            "--set", f"simulation.sequences={args.sequences}", "--out", out,
                            "--quiet", *threads], check=True)
            wall = time.perf_counter() - start
            with h5py.File(out) as f:
                total_sites = int(f["length"][()].sum())
                n_rep = len(f["temperatures"])
            sweeps = 2000 + 10 * 100
            updates = total_sites * n_rep * sweeps
            rates.append(updates / wall)
            print(f"run {k}: {updates / 1e9:.3f} G spin updates in {wall:.2f} s "
                  f"= {updates / wall / 1e6:.1f} M/s")
    ref = numpy_reference_rate()
    med = statistics.median(rates)
    print(f"numpy reference sampler: {ref / 1e6:.2f} M spin updates/s")
    print(f"median: {med / 1e6:.1f} M spin updates/s ({med / ref:.0f}x the NumPy reference, "
          f"{med / 2.1e6:.0f}x the published sampler's ~2.1 M/s per core)")
    print(f"spin_updates_per_s={med:.4g}")


if __name__ == "__main__":
    main()
