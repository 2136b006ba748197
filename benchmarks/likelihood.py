"""Cost of log p by the probability-flow ODE with the exact divergence (prints, asserts nothing).

    .venv/bin/python benchmarks/likelihood.py [--checkpoint CKPT --data TEST.h5] [--length 30]
        [--chains 8] [--batch 100] [--threads N] [--tols 1e-5,1e-4]

Model: with --checkpoint, a trained model (its t_min, t_max); without, the paper-size network
(ModelConfig(): c_s 64, c_z 32, 4 blocks, 4 heads), two site types, random weights with the
output head's last layer, zero at initialisation, set to N(0, 0.02²) so the score is not
identically zero. Configurations: with --data, thermal ones (the snapshots of the sequences of
`--length` sites in the file, distinct as far as the file allows); without, uniform random
spins of random types.

For each integrator (the default "quadrature": trajectory by dopri5, divergence integral by
adaptive Gauss–Kronrod; "augmented": the divergence integral in the ODE state) and tolerance
(rtol = atol on the trajectory), over `--chains` chains solved one at a time: the median and
largest wall time of `solve_likelihood`, the network calls of the trajectory solves (NFE), the
divergence evaluations (2N vector–Jacobian products each), and the median and largest error in
nats per spin against a reference solve by the augmented integrator at rtol = atol = 1e-7 (the
textbook method, independent of the quadrature). Then one batch of `--batch` chains: exact
divergence by the quadrature, and Hutchinson (one probe) by the augmented integrator, without
and with the pairwise control variate, each with its RMS error against the exact log p.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
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


def random_chains(b: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (uniform_sphere((b, n), generator=g, dtype=torch.float64),
            torch.randint(0, 2, (b, n), generator=g))


def thermal_chains(path: str, b: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """b thermal configurations of n sites: snapshot 0 of each sequence of n sites, then
    snapshot 1, ... (distinct as long as the file has enough; cycles after that)."""
    from spinscore.io import read_dataset

    ds = read_dataset(path, fields=("spins", "types", "length"))
    rows = np.flatnonzero(ds.length == n)
    if len(rows) == 0:
        raise SystemExit(f"{path}: no sequence of {n} sites")
    pairs = [(r, s) for s in range(ds.spins.shape[1]) for r in rows]
    pairs = [pairs[k % len(pairs)] for k in range(b)]
    seq, snap = np.array(pairs).T
    return (torch.as_tensor(ds.spins[seq, snap, :n], dtype=torch.float64),
            torch.as_tensor(ds.types[seq, :n], dtype=torch.long))


def timed(**kw):
    start = time.perf_counter()
    res = solve_likelihood(**kw)
    return time.perf_counter() - start, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--length", type=int, default=30)
    ap.add_argument("--chains", type=int, default=8, help="single chains timed one by one")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tols", default="1e-5,1e-4")
    ap.add_argument("--integrators", default="quadrature,augmented")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        from spinscore.checkpoints import load_model

        model, config, _ = load_model(args.checkpoint)
        t_min, t_max = config.diffusion.t_min, config.diffusion.t_max
    else:
        model, t_min, t_max = paper_model(), 1e-3, 5.0
    n = args.length

    def chains(b: int, seed: int):
        return thermal_chains(args.data, b, n) if args.data else random_chains(b, n, seed)

    x, types = chains(args.chains, seed=1)
    common = {"model": model, "t_min": t_min, "t_max": t_max}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.chains} chains of "
          f"{n} spins ({'thermal, ' + args.data if args.data else 'uniform random'}), "
          f"t in [{t_min:g}, {t_max:g}], {sum(p.numel() for p in model.parameters())} parameters")
    solve_likelihood(spins=x[:1], types=types[:1], rtol=1e-3, atol=1e-3, **common)  # warm-up
    start = time.perf_counter()
    ref = [solve_likelihood(spins=x[k:k + 1], types=types[k:k + 1], rtol=1e-7, atol=1e-7,
                            integrator="augmented", **common).log_p[0] for k in range(len(x))]
    print(f"reference: augmented integrator at rtol = atol = 1e-7, "
          f"{(time.perf_counter() - start) / len(x):.1f} s per chain")
    print("integrator  tol     median_s   max_s  NFE  div_evals  |error| nats/spin median, max"
          "   (exact divergence, one chain at a time)")
    for integrator in args.integrators.split(","):
        for tol in (float(v) for v in args.tols.split(",")):
            rows = [timed(spins=x[k:k + 1], types=types[k:k + 1], rtol=tol, atol=tol,
                          integrator=integrator, **common) for k in range(len(x))]
            secs = [sec for sec, _ in rows]
            errs = [abs(float(res.log_p[0] - r)) / n for (_, res), r in zip(rows, ref, strict=True)]
            print(f"{integrator:<11} {tol:<7.0e} {statistics.median(secs):8.3f} {max(secs):7.3f} "
                  f"{statistics.median(res.nfe for _, res in rows):4.0f} "
                  f"{statistics.median(res.n_divergence for _, res in rows):10.0f}   "
                  f"{statistics.median(errs):.2e}, {max(errs):.2e}")
    if args.batch > 1:
        xb, tb = chains(args.batch, seed=2)
        tol = min(float(v) for v in args.tols.split(","))
        exact = None
        for divergence, integrator, control in (("exact", "quadrature", False),
                                                ("hutchinson", "augmented", False),
                                                ("hutchinson", "augmented", True)):
            sec, res = timed(spins=xb, types=tb, rtol=tol, atol=tol, divergence=divergence,
                             integrator=integrator, generator=torch.Generator().manual_seed(0),
                             control_variate=control, **common)
            exact = res.log_p if exact is None else exact
            rms = float((res.log_p - exact).pow(2).mean().sqrt())
            label = divergence + (" (1 probe, control variate)" if control else
                                  " (1 probe)" if divergence == "hutchinson" else "")
            print(f"batch of {args.batch} chains, {label}, {integrator}, tol {tol:g}: "
                  f"{sec:.2f} s ({sec / args.batch:.3f} s per chain), NFE {res.nfe}, "
                  f"{res.n_divergence} divergence evaluations"
                  + (f"; RMS error against the exact divergence {rms:.3f} nats per chain"
                     if divergence == "hutchinson" else ""))


if __name__ == "__main__":
    main()
