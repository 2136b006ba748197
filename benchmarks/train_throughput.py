"""Training throughput of the paper-size model (prints figures, asserts nothing).

    .venv/bin/python benchmarks/train_throughput.py [--steps 5] [--batch 256] [--blocks 4]

One optimizer step on a batch of 256 chains with lengths uniform in [20, 50] (random spins;
the cost does not depend on the values), the full training step: heat-kernel noise and
targets, forward, backward, clipping, AdamW, EMA. Compared in the same run with a plain
implementation of the same network: the batch padded to 50 and run in one piece, the pair
update through the (B, N, N, 2 c_s) concatenation. Last line: samples_per_s=<value>.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from spinscore.config import DiffusionConfig, ModelConfig, RunConfig, SimulationConfig, SystemConfig
from spinscore.model import ScoreModel, count_parameters
from spinscore.model.reference import plain_copy
from spinscore.training.data import TrainingData
from spinscore.training.loop import _Distributed, _train_step, ema_update


def synthetic_data(n_seq: int, l_max: int = 50, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    length = rng.integers(20, l_max + 1, n_seq)
    spins = rng.standard_normal((n_seq, 1, l_max, 3)).astype(np.float32)
    spins /= np.linalg.norm(spins, axis=-1, keepdims=True)
    types = rng.integers(0, 2, (n_seq, l_max))
    for k, n in enumerate(length):
        types[k, n:] = -1
        spins[k, :, n:] = 0
    return TrainingData(torch.from_numpy(spins), torch.from_numpy(types), length, seed)


def time_steps(model, config: RunConfig, data: TrainingData, steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    ema = AveragedModel(model, multi_avg_fn=ema_update(0.999))
    ddp = _Distributed(torch.device("cpu"))
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and caches
        start = time.perf_counter()
        _train_step(model, opt, data, config, step, torch.device("cpu"), ddp)
        ema.update_parameters(model)
        if step:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--plain-steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--micro-batch-tokens", type=int, default=None)
    args = ap.parse_args()
    system = SystemConfig(types=("A", "B"), couplings={1: {"AA": 1, "AB": 1, "BB": 1},
                                                        2: {"AA": 1, "AB": 1, "BB": 1}},
                          length=(20, 50), temperature=0.05)
    model_cfg = ModelConfig(blocks=args.blocks)
    base = RunConfig(system=system, simulation=SimulationConfig(sequences=1, snapshots=1),
                     model=model_cfg, diffusion=DiffusionConfig())
    train_kw = {"batch_size": args.batch}
    if args.micro_batch_tokens:
        train_kw["micro_batch_tokens"] = args.micro_batch_tokens
    fast_cfg = base.model_copy(update={"train": base.train.model_copy(update=train_kw)})
    plain_cfg = base.model_copy(update={"train": base.train.model_copy(
        update={"batch_size": args.batch, "micro_batch_tokens": 10**9})})
    data = synthetic_data(4 * args.batch)
    torch.manual_seed(0)
    model = ScoreModel(model_cfg, n_types=2, max_length=50, output_scale=20.0)
    print(f"model: c_s {model_cfg.single_dim}, c_z {model_cfg.pair_dim}, {model_cfg.blocks} "
          f"blocks, {model_cfg.heads} heads, {count_parameters(model)} parameters; batch "
          f"{args.batch}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    plain = statistics.median(time_steps(plain_copy(model), plain_cfg, data, args.plain_steps))
    print(f"plain (padded to 50, concatenation): {plain:.2f} s/step = "
          f"{args.batch / plain:.1f} samples/s")
    fast_times = time_steps(model, fast_cfg, data, args.steps)
    fast = statistics.median(fast_times)
    print(f"spinscore (length-sorted micro-batches of <= {fast_cfg.train.micro_batch_tokens} "
          f"L^2, factorised pair update): {fast:.2f} s/step (min {min(fast_times):.2f}) = "
          f"{args.batch / fast:.1f} samples/s")
    print(f"speed-up over plain: {plain / fast:.2f}x")
    print(f"samples_per_s={args.batch / fast:.4g}")


if __name__ == "__main__":
    main()
