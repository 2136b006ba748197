"""The training stage: `training.loop.train`, then the loss curve and a summary of the run."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from spinscore.config import RunConfig
from spinscore.stages.data import write_json


def train(config: RunConfig, data_path: str | Path, out_dir: str | Path, resume: bool = False,
          overwrite: bool = False, device: str | None = None, progress: bool = True,
          max_steps: int | None = None) -> Path:
    """`spinscore train`: checkpoints and metrics.csv (`training.loop.train`) and, once the run
    is complete, loss_curve.png and train_summary.json in `out_dir`. Returns the checkpoint."""
    from spinscore.training.loop import train as run_training

    path = run_training(config, data_path, out_dir, resume=resume, overwrite=overwrite,
                        device=device, progress=progress, max_steps=max_steps)
    out = Path(out_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0  # torchrun: rank 0 writes
    if main_process and (out / "metrics.csv").exists() and _finished(path):
        _training_summary(out)
    return path


def _finished(checkpoint: Path) -> bool:
    """Whether the run in `checkpoint` reached the end of its schedule (main process only)."""
    import math

    from spinscore.checkpoints import checkpoint_config, load_checkpoint

    if not checkpoint.exists():
        return False
    state = load_checkpoint(checkpoint)
    tc = checkpoint_config(state, checkpoint).train
    return state["step"] >= math.ceil(tc.samples / tc.batch_size)


def _training_summary(out: Path) -> dict:
    """loss_curve.png and train_summary.json from metrics.csv."""
    from spinscore.report.figures import loss_curve_figure, save_figure
    from spinscore.training.loop import LOSS_CURVE, SUMMARY

    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = np.array([float(r["samples"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    loss_t = np.array([float(r["loss_t"]) for r in rows])
    save_figure(loss_curve_figure(steps, loss, loss_t), out / LOSS_CURVE)
    rates = [float(r["samples_per_s"]) for r in rows]
    summary = {
        "steps": int(rows[-1]["step"]), "samples": int(rows[-1]["samples"]),
        "final_loss": float(np.mean(loss[-max(1, len(loss) // 10):])),
        "final_loss_t": float(np.mean(loss_t[-max(1, len(loss) // 10):])),
        "samples_per_s_median": float(np.median(rates)),
        "elapsed_s": float(rows[-1]["elapsed_s"]),
    }
    write_json(out / SUMMARY, summary)
    return summary
