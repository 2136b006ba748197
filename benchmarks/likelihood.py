"""Cost of log p by the probability-flow ODE with the exact divergence (prints, asserts nothing).

    .venv/bin/python benchmarks/likelihood.py [--length 30] [--batch 100] [--repeats 3]
        [--threads 1] [--tols 1e-5,1e-4,1e-3] [--checkpoint CKPT]

Model: the paper-size network (ModelConfig(): c_s 64, c_z 32, 4 blocks, 4 heads), two site
types, max_length 64, output_scale 20, random weights; the output head's last layer, zero at
initialisation, is set to N(0, 0.02²) so the score is not identically zero. With --checkpoint a
trained model is used instead (its t_min, t_max). Configurations: uniform random spins (the
cost per evaluation does not depend on the values; the number of solver steps does).

For each tolerance (rtol = atol): the median wall time of `solve_likelihood` on one chain, the
number of right-hand-side evaluations (NFE: one network call plus 2N batched vector-Jacobian
products each), the seconds per NFE, and the error in nats per spin against a reference solve
at rtol = atol = 1e-8. Then one batch of `--batch` chains (one joint solve, shared steps), the
Hutchinson estimator (one probe) for comparison, and the forward-mode (jvp) products.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spinscore.config import ModelConfig
from spinscore.diffusion.likelihood import solve_likelihood
from spinscore.geometry.sphere import uniform_sphere
from spinscore.model import ScoreModel


def paper_model(seed: int = 0) -> ScoreModel:
    torch.manual_seed(seed)
    model = ScoreModel(ModelConfig(), n_types=2, max_length=64, output_scale=20.0)
    torch.nn.init.normal_(model.head[-1].weight, std=0.02)
    torch.nn.init.normal_(model.head[-1].bias, std=0.02)
    return model.eval()


def chains(b: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (uniform_sphere((b, n), generator=g, dtype=torch.float64),
            torch.randint(0, 2, (b, n), generator=g))


def timed(repeats: int, **kw):
    times, res = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        res = solve_likelihood(**kw)
        times.append(time.perf_counter() - start)
    return statistics.median(times), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tols", default="1e-5,1e-4,1e-3")
    ap.add_argument("--batch-tol", type=float, default=1e-3)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        from spinscore.training.checkpoint import load_model

        model, config, _ = load_model(args.checkpoint)
        t_min, t_max = config.diffusion.t_min, config.diffusion.t_max
    else:
        model, t_min, t_max = paper_model(), 1e-3, 5.0
    n = args.length
    x, types = chains(1, n, seed=1)
    common = {"model": model, "t_min": t_min, "t_max": t_max}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; chain of {n} spins, "
          f"t in [{t_min:g}, {t_max:g}]")
    solve_likelihood(spins=x, types=types, rtol=1e-3, atol=1e-3, **common)  # warm-up
    ref = solve_likelihood(spins=x, types=types, rtol=1e-8, atol=1e-8, **common)
    print(f"reference (tol 1e-8): log p = {float(ref.log_p[0]):.6f} nats, NFE {ref.nfe}")
    print("tol      median_s  NFE  s/NFE   |error| nats/spin   (exact divergence, 1 chain)")
    for tol in (float(v) for v in args.tols.split(",")):
        sec, res = timed(args.repeats, spins=x, types=types, rtol=tol, atol=tol, **common)
        err = abs(float(res.log_p[0] - ref.log_p[0])) / n
        print(f"{tol:<8.0e} {sec:8.3f} {res.nfe:4d} {sec / res.nfe:6.4f}   {err:.2e}")
    sec, res = timed(args.repeats, spins=x, types=types, rtol=1e-5, atol=1e-5,
                     products="forward", **common)
    print(f"forward-mode products (jvp), tol 1e-5: {sec:.3f} s, NFE {res.nfe}")
    sec, res = timed(args.repeats, spins=x, types=types, rtol=1e-5, atol=1e-5,
                     divergence="hutchinson", generator=torch.Generator().manual_seed(0),
                     **common)
    print(f"hutchinson (1 probe), tol 1e-5: {sec:.3f} s, NFE {res.nfe}, "
          f"log p {float(res.log_p[0]):.4f} (exact {float(ref.log_p[0]):.4f})")
    if args.batch > 1:
        xb, tb = chains(args.batch, n, seed=2)
        for divergence in ("exact", "hutchinson"):
            start = time.perf_counter()
            res = solve_likelihood(spins=xb, types=tb, rtol=args.batch_tol, atol=args.batch_tol,
                                   divergence=divergence, generator=torch.Generator().manual_seed(0),
                                   **common)
            sec = time.perf_counter() - start
            print(f"batch of {args.batch} chains, {divergence}, tol {args.batch_tol:g}: {sec:.2f} s "
                  f"({sec / args.batch:.3f} s per chain), NFE {res.nfe}")


if __name__ == "__main__":
    main()
