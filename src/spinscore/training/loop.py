"""`spinscore train`: denoising score matching of the equivariant score model.

One optimizer step sees `train.batch_size` samples. The batch is split into micro-batches of
similar length, each cropped to its longest chain (gradients accumulate, so the step equals
one full-batch step). Everything random in step k is drawn from a generator seeded by
(seed, k), so a resumed run repeats an uninterrupted one exactly, and a run on several
processes (torchrun, DDP: the batch is dealt out across ranks) sees the same samples.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from spinscore.checkpoints import (
    EARLY_CHECKPOINT,
    build_model,
    check_compatible,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
    state_dict_error,
)
from spinscore.config import RunConfig
from spinscore.diffusion.losses import dsm_loss_sum
from spinscore.diffusion.sde import mirror, perturb, sample_times
from spinscore.errors import SpinscoreError
from spinscore.io import atomic_write_bytes, read_dataset
from spinscore.training.data import TrainingData, micro_batches

# what a training run writes in its folder (--overwrite removes them all before it starts)
# what the training stage writes once the run is complete (`stages.training`)
LOSS_CURVE, SUMMARY = "loss_curve.png", "train_summary.json"
RUN_FILES = ("checkpoint.pt", "early.pt", "metrics.csv", "config.yaml", SUMMARY, LOSS_CURVE)
# settings that may differ when a run is resumed: when checkpoints are kept, and how a batch is
# split into forward passes (memory; the same gradient up to summation order)
RESUMABLE_CHANGES = {"checkpoint_every", "micro_batch_tokens"}
METRICS_FIELDS = ["step", "samples", "loss", "loss_t", "lr", "grad_norm", "samples_per_s", "elapsed_s"]


def step_generator(seed: int, step: int) -> torch.Generator:
    state = np.random.SeedSequence(seed, spawn_key=(2, step)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state & np.uint64(2**63 - 1)))


def ema_update(decay: float):
    """EMA of the weights with the decay warmed up as min(decay, (1 + n) / (10 + n)) after n
    updates: a plain 0.999 EMA still holds e^{-n/1000} of the initial (zero-output) weights
    after n steps, which shrank the learned couplings of short runs (scale/beta 0.05 instead
    of 0.9 at step 200)."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        for a, c in zip(averaged, current, strict=True):
            a.lerp_(c, 1.0 - d)
    return update


def lr_lambda(cfg, total_steps: int):
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        if cfg.lr_schedule == "constant":
            return warm
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return factor


class _Distributed:
    """Rank and world size under torchrun (WORLD_SIZE > 1), else a single process."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor)


def train(config: RunConfig, data_path: str | Path, out_dir: str | Path, resume: bool = False,
          overwrite: bool = False, device: str | None = None, progress: bool = True,
          max_steps: int | None = None) -> Path:
    """Train a score model on the data set `data_path`; write checkpoints and metrics.csv to
    `out_dir` (atomically, resumable). Returns the path of the final checkpoint.

    `max_steps` stops early (e.g. to simulate a crash in tests) without changing the schedule.
    """
    tc = config.train
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ddp = _Distributed(dev)
    out = Path(out_dir)
    last = out / "checkpoint.pt"
    if last.exists() and not (resume or overwrite):
        raise SpinscoreError(f"{out}: holds a training run; pass --resume to continue it or "
                             "--overwrite to start again")
    if resume and not last.exists():
        raise SpinscoreError(f"{out}: nothing to resume (no checkpoint.pt)")

    data, meta = _training_data(config, data_path)
    if overwrite and not resume and ddp.main:  # nothing of the old run may pass for the new one
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    total_steps = math.ceil(tc.samples / tc.batch_size)
    model, ema, opt, sched = _optimisation(config, meta, dev, total_steps)
    start, window = _resume(last, config, meta, data_path, model, ema, opt, sched) \
        if resume else (0, [])
    net = DistributedDataParallel(model) if ddp.world > 1 else model

    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "config.yaml", config.to_yaml().encode())
        metrics = _MetricsLog(out / "metrics.csv", start)
    stop = total_steps if max_steps is None else min(total_steps, max_steps)
    bar = tqdm(total=total_steps, initial=start, unit="step", desc="train",
               disable=not (progress and ddp.main))
    t0 = time.perf_counter()
    for step in range(start, stop):
        tick = time.perf_counter()
        loss, loss_t, grad_norm = _train_step(net, opt, data, config, step, dev, ddp)
        sched.step()
        ema.update_parameters(model)
        window.append((time.perf_counter() - tick, loss, loss_t, grad_norm))
        if ddp.main and ((step + 1) % tc.log_every == 0 or step + 1 == stop):
            secs, losses, losses_t, norms = (np.array(c) for c in zip(*window, strict=True))
            rate = tc.batch_size * len(window) / secs.sum()
            # means over the steps since the last row (one step's loss is very noisy)
            metrics.write([step + 1, (step + 1) * tc.batch_size, f"{losses.mean():.6g}",
                           f"{losses_t.mean():.6g}", f"{sched.get_last_lr()[0]:.6g}",
                           f"{norms.mean():.6g}", f"{rate:.4g}",
                           f"{time.perf_counter() - t0:.2f}"])
            bar.set_postfix(loss_t=f"{losses_t.mean():.4g}", samples_per_s=f"{rate:.1f}")
            window = []
        bar.update(1)
        # early.pt before checkpoint.pt: a run killed between the two resumes from before
        # this step and writes early.pt again
        if ddp.main and step + 1 == round(tc.early_checkpoint * total_steps):
            _save(out / EARLY_CHECKPOINT, model, ema, opt, sched, step + 1, config, meta, window)
        if ddp.main and ((step + 1) % tc.checkpoint_every == 0 or step + 1 == stop):
            _save(last, model, ema, opt, sched, step + 1, config, meta, window)
    bar.close()
    if ddp.main:
        metrics.close()
    if ddp.world > 1:
        dist.barrier()
    return last


def _training_data(config: RunConfig, data_path: str | Path) -> tuple[TrainingData, dict]:
    """The data stream of a run and the checkpoint's `meta`; refuses a data set of other site
    types, range, couplings, temperature or geometry than the config, or longer chains than
    the model takes."""
    ds = read_dataset(data_path)
    system = ds.config.system
    if config.system.types != system.types or config.system.max_range != system.max_range:
        raise SpinscoreError(
            f"{data_path}: data set has types {list(system.types)} and range {system.max_range},"
            f" the config has {list(config.system.types)} and range {config.system.max_range}")
    if config.system.coupling_table().tolist() != system.coupling_table().tolist() \
            or config.system.temperature != system.temperature:
        raise SpinscoreError(
            f"{data_path}: data set simulated with other couplings or temperature (T = "
            f"{system.temperature}) than the config's (T = {config.system.temperature}); train "
            "with the config the data set was simulated with")
    if (config.system.lattice, config.system.graph) != (system.lattice, system.graph):
        raise SpinscoreError(f"{data_path}: data set on a {system.geometry} other than the "
                             f"config's {config.system.geometry} (system.lattice/graph differ)")
    if system.geometry == "chain" and system.length[1] > config.model.max_length:
        raise SpinscoreError(f"{data_path}: chains of up to {system.length[1]} sites exceed "
                             f"model.max_length = {config.model.max_length}")
    meta = {"types": list(system.types), "max_range": system.max_range,
            "max_length": config.model.max_length, "beta": system.beta, "output_scale": system.beta,
            "couplings": system.coupling_table().tolist(), "data": str(data_path)}
    return TrainingData.from_dataset(ds, config.train.seed), meta


def _optimisation(config: RunConfig, meta: dict, dev: torch.device, total_steps: int):
    """(model, EMA, AdamW, LR schedule), freshly initialised from train.seed."""
    tc = config.train
    torch.manual_seed(tc.seed)
    model = build_model(config.model, meta, config.system).to(dev)
    ema = AveragedModel(model, multi_avg_fn=ema_update(tc.ema_decay))
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tc, total_steps))
    return model, ema, opt, sched


def _resume(last: Path, config: RunConfig, meta: dict, data_path, model, ema, opt,
            sched) -> tuple[int, list]:
    """Load the state of checkpoint `last` into the run (checked to be the same model and
    system, and a whole training state); returns its step and the log window (the steps since
    the last metrics.csv row), so the first row after a resume averages the same steps as in
    an uninterrupted run."""
    state = load_checkpoint(last)
    old = checkpoint_config(state, last)
    if old.model != config.model:
        raise SpinscoreError(f"{last}: checkpoint of another model ({old.model}); "
                             f"the config asks for {config.model}")
    for section in ("train", "diffusion"):  # the run continued must be the run started
        before, now = getattr(old, section).model_dump(), getattr(config, section).model_dump()
        changed = [k for k in before if k not in RESUMABLE_CHANGES and before[k] != now.get(k)]
        if changed:
            k = changed[0]
            raise SpinscoreError(f"{last}: {section}.{k} was {before[k]!r} in this run, the "
                                 f"config asks for {now.get(k)!r}; resume with the run's "
                                 "settings (its config.yaml) or start again with --overwrite")
    for key in ("ema_full", "optimizer", "scheduler"):
        if key not in state:
            raise SpinscoreError(f"{last}: not a resumable training checkpoint (field '{key}' "
                                 "missing)")
    _check_same_system(state["meta"], meta, last, data_path)
    try:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema_full"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise SpinscoreError(f"{last}: training state does not fit the config's model "
                             f"({type(exc).__name__}: {state_dict_error(exc)})") from None
    return state["step"], [tuple(row) for row in state.get("log_window", [])]


def _check_same_system(old: dict, new: dict, last: Path, data_path) -> None:
    """Refuse to continue a run on data of another system: other site types, range,
    temperature or couplings (checkpoints before the couplings were stored: not compared)."""
    check_compatible(old, new["types"], new["max_range"], str(data_path))
    for key, what in (("beta", "its inverse temperature differs from that"),
                      ("couplings", "its couplings differ from those")):
        if key in old and old[key] != new[key]:
            raise SpinscoreError(f"{data_path}: {what} of the run in {last}")


def make_batch(data: TrainingData, config: RunConfig, step: int):
    """The noised batch of optimizer step `step` (a function of (seed, step) only).

    Returns x_t (B, L_max, 3) float64, types (B, L_max), t (B,), target (B, L_max, 3),
    weight (B,), lengths (B,) numpy. With antithetic noise, rows B/2.. mirror rows ..B/2.
    """
    tc, dc = config.train, config.diffusion
    n_draw = tc.batch_size // 2 if dc.antithetic else tc.batch_size
    seq, snap = data.sample_ids(step * n_draw, n_draw)
    gen = step_generator(tc.seed, step)
    x0, types = data.spins[seq, snap].to(torch.float64), data.types[seq]  # (B, L_max, ...)
    t, weight = sample_times(dc, n_draw, gen, dtype=torch.float64)
    valid = types >= 0
    x_t, target = torch.zeros_like(x0), torch.zeros_like(x0)
    # noise only the real spins (padding stays zero), each with the time of its chain
    x_t[valid], target[valid] = perturb(x0[valid], t[:, None].expand(valid.shape)[valid], gen)
    lengths = data.length[seq]
    if dc.antithetic:
        x_t = torch.cat([x_t, mirror(x0, x_t)])
        target = torch.cat([target, mirror(x0, target)])
        types, t, weight = torch.cat([types, types]), torch.cat([t, t]), torch.cat([weight, weight])
        lengths = np.concatenate([lengths, lengths])
    return x_t, types, t, target, weight, lengths


def _train_step(net, opt, data: TrainingData, config: RunConfig, step: int,
                dev: torch.device, ddp: _Distributed) -> tuple[float, float, float]:
    tc = config.train
    x_t, types, t, target, weight, lengths = make_batch(data, config, step)
    n_spins = float((types >= 0).sum())
    mine = np.argsort(lengths, kind="stable")[ddp.rank :: ddp.world]  # deal out by length
    groups = [mine[g] for g in micro_batches(lengths[mine], tc.micro_batch_tokens)]
    opt.zero_grad(set_to_none=True)
    total = total_t = 0.0
    for k, idx in enumerate(groups):
        n = int(lengths[idx].max())
        sync = k == len(groups) - 1 or ddp.world == 1
        ctx = contextlib.nullcontext() if sync else net.no_sync()
        with ctx:
            loss, loss_t = dsm_loss_sum(
                net, x_t[idx, :n].float().to(dev), types[idx, :n].to(dev),
                t[idx].float().to(dev), target[idx, :n].float().to(dev),
                weight[idx].float().to(dev))
            (loss / n_spins * ddp.world).backward()  # DDP averages over ranks; we want the sum
        total += loss.item() / n_spins
        total_t += loss_t.item() / n_spins
    grad_norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip))
    opt.step()
    return ddp.all_sum(total), ddp.all_sum(total_t), grad_norm


def _save(path: Path, model, ema, opt, sched, step: int, config: RunConfig, meta: dict,
          window: list) -> None:
    save_checkpoint(path, {
        "model": model.state_dict(),
        "ema": ema.module.state_dict(),
        "ema_full": ema.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "config": config.to_yaml(),
        "meta": meta,
        "log_window": [list(row) for row in window],  # steps since the last metrics.csv row
    })


class _MetricsLog:
    """metrics.csv, appended row by row. On resume, rows past the checkpoint's step (written
    after it, before the crash) are dropped, so every step appears once."""

    def __init__(self, path: Path, start_step: int):
        rows = []
        if start_step and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
        kept = io.StringIO()  # the kept rows replace the file atomically: a crash now loses none
        table = csv.writer(kept)
        table.writerow(METRICS_FIELDS)
        for r in rows:
            table.writerow([r[k] for k in METRICS_FIELDS])
        atomic_write_bytes(path, kept.getvalue().encode())
        self.file = open(path, "a", newline="")  # noqa: SIM115 - closed by close()
        self.writer = csv.writer(self.file)

    def write(self, row: list) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()
