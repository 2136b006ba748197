"""Checkpoints: atomic save, validated load, and rebuilding the model they hold."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
import yaml

from spinscore import __version__
from spinscore.config import ModelConfig, RunConfig, parse_config
from spinscore.errors import SpinscoreError
from spinscore.io import atomic_write_bytes
from spinscore.model import ScoreModel


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save `state` to `path` atomically (a crash leaves the previous checkpoint)."""
    buf = io.BytesIO()
    torch.save({**state, "spinscore_version": __version__}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict (on the CPU); clear errors for missing or unreadable files."""
    path = Path(path)
    if not path.exists():
        raise SpinscoreError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise SpinscoreError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    for key in ("model", "ema", "config", "meta", "step"):
        if key not in state:
            raise SpinscoreError(f"{path}: not a spinscore checkpoint (field '{key}' missing)")
    return state


# Model fields added after checkpoints were first written, with the value those checkpoints were
# trained with. A checkpoint stores its fully resolved config, so a missing field means an older
# checkpoint, not the current default.
LEGACY_MODEL_FIELDS = {"time_octaves": 8}


def checkpoint_config(state: dict[str, Any], path: Path | str = "<checkpoint>") -> RunConfig:
    raw = yaml.safe_load(state["config"])
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw["model"] = {**LEGACY_MODEL_FIELDS, **raw["model"]}
    return parse_config(raw, f"{path} (stored config)")


def build_model(model_cfg: ModelConfig, meta: dict[str, Any]) -> ScoreModel:
    return ScoreModel(model_cfg, n_types=len(meta["types"]), max_length=meta["max_length"],
                      output_scale=meta["output_scale"])


def load_model(path: str | Path, ema: bool = True) -> tuple[ScoreModel, RunConfig, dict]:
    """The trained network of a checkpoint (EMA weights by default), in eval mode, float32.

    Returns (model, config, meta); meta has `types`, `max_range`, `max_length`, `beta`,
    `output_scale` of the data it was trained on.
    """
    state = load_checkpoint(path)
    config = checkpoint_config(state, path)
    model = build_model(config.model, state["meta"])
    weights = state["ema"] if ema else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise SpinscoreError(f"{path}: weights do not fit the stored model config: {exc}") from None
    return model.eval(), config, state["meta"]


def check_compatible(meta: dict[str, Any], types: tuple[str, ...], max_range: int,
                     what: str) -> None:
    """Refuse a checkpoint trained on other site types or interaction ranges than `what`."""
    if list(meta["types"]) != list(types):
        raise SpinscoreError(f"{what}: site types {list(types)} do not match the checkpoint's "
                             f"{list(meta['types'])}")
    if meta["max_range"] != max_range:
        raise SpinscoreError(f"{what}: interaction range {max_range} does not match the "
                             f"checkpoint's {meta['max_range']}")


def load_model_for_sequence(checkpoint: str | Path, data: str | Path, sequence_index: int):
    """The model of `checkpoint` and one sequence of the data set `data`, checked to fit.

    Refuses (SpinscoreError naming the file) a data set of other site types or interaction
    range than the checkpoint's, and an index outside the file. Returns (model, config, meta,
    dataset (types and lengths only), types (L,) of sequence `sequence_index`).
    """
    from spinscore.io import read_dataset

    model, config, meta = load_model(checkpoint)
    ds = read_dataset(data, fields=("types", "length"))
    check_compatible(meta, ds.config.system.types, ds.config.system.max_range, str(data))
    if not 0 <= sequence_index < len(ds.length):
        raise SpinscoreError(f"{data}: sequence index {sequence_index} out of range (the file "
                             f"holds {len(ds.length)} sequences)")
    return model, config, meta, ds, ds.types[sequence_index, : ds.length[sequence_index]]
