"""Dense against cutoff pair track on periodic square lattices (prints figures, asserts nothing).

    .venv/bin/python benchmarks/pair_track.py [--sizes 8,16,32] [--cutoff 2] [--batch 2]
        [--repeats 3] [--threads 1] [--dense-cap-gib 3] [--blocks 4]

For each L x L periodic square lattice (couplings to shell `--cutoff`), the paper-size network
(ModelConfig(): c_s 64, c_z 32, 4 heads; `--blocks` blocks) with the dense pair track
(B, N, N, c_z), the reference, and with `pair_cutoff = --cutoff` (B, N, K, c_z): the median
wall time of one forward + backward (score -> sum of squares -> gradients) of a batch of
`--batch` random configurations over `--repeats` runs after one warm-up, and the peak memory
of that work. Each (track, size) runs in a fresh process; its memory figure is the growth of
the process's peak resident set (ru_maxrss) from before the first forward pass (model, tables
and inputs built) to the end, so it counts everything the passes allocate, torch's tensors and
caches included. The dense track is skipped where its memory, extrapolated as N^2 from the
previous size, would exceed `--dense-cap-gib`. Last line: the dense/cutoff ratios at the
largest size both ran.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from spinscore.config import ModelConfig
from spinscore.model import ScoreModel
from spinscore.systems import Lattice


def measure(side: int, cutoff: int, dense: bool, batch: int, repeats: int, threads: int,
            blocks: int) -> dict:
    """In a fresh process: {"times": [s] per forward + backward, "peak_mib": growth of the
    peak RSS over the passes, "width": pair slots per site (N when dense)}."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lattice = Lattice("square", (side, side), "periodic", n_types=2, n_shells=cutoff)
    cfg = ModelConfig(blocks=blocks, pair_cutoff=None if dense else cutoff)
    model = ScoreModel(cfg, n_types=2, max_length=64, output_scale=5.0, system=lattice)
    torch.nn.init.normal_(model.head[-1].weight, std=0.02)
    n = lattice.max_sites
    spins = torch.nn.functional.normalize(torch.randn(batch, n, 3), dim=-1)
    types = torch.randint(0, 2, (batch, n))
    t = torch.full((batch,), 0.1)
    # the pair geometry is built once per size, outside the timed passes
    width = n if dense else model.neighbour_table(n, torch.device("cpu")).index.shape[1]
    if dense:
        model.pair_features(n, torch.device("cpu"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for k in range(repeats + 1):  # the first pass warms up allocators and caches
        start = time.perf_counter()
        model(spins, types, t).square().sum().backward()
        model.zero_grad(set_to_none=True)
        if k:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    return {"times": times, "peak_mib": peak / 1024, "width": width}


def run_isolated(**kw) -> dict:
    """`measure` in a process of its own (spawned: its peak RSS is its own)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure, **kw).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,16,32", help="lattice sides L (N = L^2 sites)")
    ap.add_argument("--cutoff", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--dense-cap-gib", type=float, default=3.0)
    args = ap.parse_args()
    common = {"cutoff": args.cutoff, "batch": args.batch, "repeats": args.repeats,
              "threads": args.threads, "blocks": args.blocks}
    print(f"periodic square lattices, shells <= {args.cutoff}; ModelConfig() widths, "
          f"{args.blocks} blocks; batch {args.batch}; median of {args.repeats} forward + "
          f"backward; torch {torch.__version__}, {args.threads} thread(s)")
    print(f"{'L':>4} {'N':>6} {'K':>4} | {'dense s':>8} {'cutoff s':>9} {'ratio':>6} | "
          f"{'dense MiB':>10} {'cutoff MiB':>11} {'ratio':>6}")
    last_dense: tuple[int, float] | None = None  # (N, peak MiB) of the last dense run
    summary = None
    for side in (int(s) for s in args.sizes.split(",")):
        n = side * side
        cut = run_isolated(side=side, dense=False, **common)
        cut_s = statistics.median(cut["times"])
        guess = None if last_dense is None else last_dense[1] * (n / last_dense[0]) ** 2
        if guess is not None and guess > args.dense_cap_gib * 1024:
            print(f"{side:>4} {n:>6} {cut['width']:>4} | {'-':>8} {cut_s:>9.3f} {'-':>6} | "
                  f"{'-':>10} {cut['peak_mib']:>11.0f} {'-':>6}   dense skipped: ~{guess:.0f} "
                  f"MiB extrapolated > cap {args.dense_cap_gib:g} GiB")
            continue
        dense = run_isolated(side=side, dense=True, **common)
        dense_s = statistics.median(dense["times"])
        last_dense = (n, dense["peak_mib"])
        mem_ratio = dense["peak_mib"] / max(cut["peak_mib"], 1.0)
        print(f"{side:>4} {n:>6} {cut['width']:>4} | {dense_s:>8.3f} {cut_s:>9.3f} "
              f"{dense_s / cut_s:>6.1f} | {dense['peak_mib']:>10.0f} {cut['peak_mib']:>11.0f} "
              f"{mem_ratio:>6.1f}")
        summary = (n, dense_s / cut_s, mem_ratio)
    if summary is not None:
        print(f"dense/cutoff at N={summary[0]}: time_ratio={summary[1]:.3g} "
              f"memory_ratio={summary[2]:.3g}")


if __name__ == "__main__":
    main()
