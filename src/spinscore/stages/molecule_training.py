"""The molecular training stage: the atom score model trained by denoising score matching on a
trajectory file, checkpointed atomically and resumable after a crash."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from spinscore.config.molecule import MoleculeRunConfig
from spinscore.errors import SpinscoreError
from spinscore.io import atomic_write_bytes, git_commit
from spinscore.stages.data import write_json

CHECKPOINT = "checkpoint.pt"
FORMAT = "spinscore-molecule-1"
COLUMNS = ("step", "loss", "seconds")


def w_scale_from_positions(positions: np.ndarray, bonds: np.ndarray) -> float:
    """A scale for W (nm^-2) from positions alone: the mean over bonds of 1 / (std(r) mean(r)).

    By equipartition a harmonic bond of stiffness k has std(r) = 1 / sqrt(beta k), which is
    also the rms of its score beta k (r - r0); carried by one pair weight over a distance r
    that is |W| ~ 1 / (std(r) r): the size W takes on bonds. No forces are used.
    positions: (M, n, 3) nm; bonds: (n_bonds, 2)."""
    x = np.asarray(positions, dtype=np.float64)
    r = np.linalg.norm(x[:, bonds[:, 0]] - x[:, bonds[:, 1]], axis=-1)  # (M, n_bonds)
    return float(np.mean(1.0 / (r.std(axis=0) * r.mean(axis=0))))


def training_frames(config: MoleculeRunConfig, data) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) positions, (M, n, 3) and (M', n, 3) nm: the last
    `train.holdout_trajectories` trajectories are held out."""
    held = config.train.holdout_trajectories
    if held >= data.n_trajectories:
        raise SpinscoreError(f"train.holdout_trajectories: {held} leaves none of the "
                             f"{data.n_trajectories} trajectories of {data.path} to train on")
    n = data.n_atoms
    return (data.positions[:-held].reshape(-1, n, 3), data.positions[-held:].reshape(-1, n, 3))


def _check_data(config: MoleculeRunConfig, data) -> None:
    from spinscore.stages.molecules import data_config

    simulated = data_config(data)
    for section in ("system", "simulation"):
        if getattr(simulated, section) != getattr(config, section):
            raise SpinscoreError(f"{data.path}: simulated with another {section} section than "
                                 "the config's; train with the config the data was simulated with")


def _sections(text: str) -> dict:
    """The sections of a config's YAML that a checkpoint depends on (not `generate:`)."""
    import yaml

    from spinscore.config.molecule import MOLECULE_MODEL_SECTIONS

    return {k: v for k, v in yaml.safe_load(text).items() if k in MOLECULE_MODEL_SECTIONS}


def build_trainer(config: MoleculeRunConfig, data, train_positions: np.ndarray):
    """(model, trainer), freshly initialised from train.seed."""
    import torch

    from spinscore.molecules import AtomScoreModel, DSMSettings, MoleculeTrainer

    tc = config.train
    hyper = config.model.model_dump()
    if hyper["w_scale"] is None:
        hyper["w_scale"] = w_scale_from_positions(train_positions, data.bonds)
    torch.manual_seed(tc.seed)
    model = AtomScoreModel.for_molecule(list(data.atom_classes), data.bonds,
                                        positions=train_positions, **hyper)
    settings = DSMSettings(**tc.model_dump(include=set(DSMSettings.__dataclass_fields__)))
    return model, MoleculeTrainer(model, torch.as_tensor(train_positions), settings)


def _save(path: Path, config: MoleculeRunConfig, model, trainer, rows: list, window: list,
          data_path, elapsed: float) -> None:
    import torch

    # `window`: the losses since the last row, so a resumed run writes the same next row;
    # `elapsed`: training seconds up to this checkpoint, which a resumed run's clock continues
    state = {"format": FORMAT, "config": config.to_yaml(), "model_config": model.config(),
             "trainer": trainer.state_dict(), "rows": rows, "window": list(window),
             "data": str(data_path), "git_commit": git_commit(), "elapsed_s": elapsed}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    lines = io.StringIO()
    csv.writer(lines).writerows([COLUMNS, *rows])
    atomic_write_bytes(path.parent / "metrics.csv", lines.getvalue().encode())


def load_molecule_checkpoint(path: str | Path) -> dict:
    """A molecular training checkpoint, read safely (weights only); one clear error for a file
    that is not one."""
    from spinscore.checkpoints import read_checkpoint_file

    state = read_checkpoint_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SpinscoreError(f"{path}: not a molecular spinscore checkpoint (field 'format': "
                             f"expected {FORMAT!r})")
    for key in ("config", "model_config", "trainer", "rows"):
        if key not in state:
            raise SpinscoreError(f"{path}: field '{key}' missing from the checkpoint")
    return state


def load_molecule_model(path: str | Path, ema: bool = True):
    """(model, config) of a molecular checkpoint; the EMA weights by default."""
    import yaml

    from spinscore.config import parse_config
    from spinscore.molecules import AtomScoreModel

    state = load_molecule_checkpoint(path)
    config = parse_config(yaml.safe_load(state["config"]), f"{path}: config")
    try:
        weights = state["trainer"]["ema" if ema else "model"]
        model = AtomScoreModel.from_state_dict(weights, state["model_config"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise SpinscoreError(f"{path}: model weights do not fit its model_config ({exc})".split(
            "\n")[0]) from None
    return model.eval(), config


def train_molecule(config: MoleculeRunConfig, data_path: str | Path, out_dir: str | Path, *,
                   resume: bool = False, overwrite: bool = False, progress: bool = True,
                   max_steps: int | None = None) -> Path:
    """`spinscore train` for a molecule: OUT_DIR/checkpoint.pt (every train.checkpoint_every
    steps, atomically), metrics.csv, and when done loss_curve.png and train_summary.json.

    `resume` continues from the checkpoint (bit-identical to an uninterrupted run);
    `max_steps` stops early (for tests: a run killed at a known step). Returns the checkpoint.
    """
    from tqdm.auto import tqdm

    from spinscore.molecules import read_molecule_data

    data = read_molecule_data(data_path)
    _check_data(config, data)
    out = Path(out_dir)
    path = out / CHECKPOINT
    if path.exists() and not (resume or overwrite):
        raise SpinscoreError(f"{path}: exists; pass --resume to continue or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    train_positions, _ = training_frames(config, data)
    model, trainer = build_trainer(config, data, train_positions)
    rows: list = []
    losses: list[float] = []
    elapsed0 = 0.0
    if resume and path.exists():
        state = load_molecule_checkpoint(path)
        if _sections(state["config"]) != _sections(config.to_yaml()):
            raise SpinscoreError(f"{path}: a run with another config; --overwrite to start again")
        trainer.load_state_dict(state["trainer"])
        rows = [list(r) for r in state["rows"]]
        losses = [float(v) for v in state.get("window", [])]
        elapsed0 = float(state.get("elapsed_s", rows[-1][2] if rows else 0.0))
    tc = config.train
    stop = tc.steps if max_steps is None else min(tc.steps, max_steps)
    start = time.perf_counter()
    with tqdm(total=tc.steps, initial=trainer.step_count, desc="train", disable=not progress) as bar:
        while trainer.step_count < stop:
            losses.append(trainer.step())
            bar.update()
            step = trainer.step_count
            if step % tc.log_every == 0 or step == tc.steps:
                rows.append([step, float(np.mean(losses)), elapsed0 + time.perf_counter() - start])
                losses = []
            if step % tc.checkpoint_every == 0 or step == stop:
                _save(path, config, model, trainer, rows, losses, data_path,
                      elapsed0 + time.perf_counter() - start)
    if trainer.step_count >= tc.steps:
        _summary(out, rows, trainer, model, len(train_positions))
    return path


def _summary(out: Path, rows: list, trainer, model, frames: int) -> None:
    from spinscore.report.figures import save_figure
    from spinscore.report.molecule_figures import loss_figure

    table = np.asarray(rows, dtype=float)
    save_figure(loss_figure(table[:, 0], table[:, 1]), out / "loss_curve.png")
    seconds = float(table[-1, 2])
    write_json(out / "train_summary.json", {
        "steps": trainer.step_count, "training_frames": frames, "seconds": seconds,
        "steps_per_second": trainer.step_count / seconds if seconds > 0 else None,
        "final_loss": float(table[-1, 1]), "w_scale": model.config().get("w_scale"),
        "parameters": sum(p.numel() for p in model.parameters())})
