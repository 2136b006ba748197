"""Checkpoints: atomic save, validated load, and rebuilding the model they hold."""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml

from spinscore import __version__
from spinscore.config import ModelConfig, RunConfig, SystemConfig, parse_config
from spinscore.errors import SpinscoreError
from spinscore.io import atomic_write_bytes
from spinscore.model import ScoreModel
from spinscore.model.published import (
    PUBLISHED_RUN_CONFIG,
    is_published_state_dict,
    published_from_state_dict,
)
from spinscore.systems import system_from_config


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save `state` to `path` atomically (a crash leaves the previous checkpoint)."""
    buf = io.BytesIO()
    torch.save({**state, "spinscore_version": __version__}, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint_file(path: str | Path) -> Any:
    """Unpickle a checkpoint safely (on the CPU): `torch.load(weights_only=True)` accepts only
    tensors, numbers, strings, lists, tuples and dicts, so a crafted file cannot run code.
    Raises SpinscoreError (one line naming the file) for a missing, truncated, foreign or
    unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise SpinscoreError(f"{path}: no such checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        # neither torch.save's zip archive nor a (legacy) pickle: do not call it unsafe
        raise SpinscoreError(f"{path}: not a readable checkpoint (not a file written by "
                             "torch.save)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(Unsupported global: GLOBAL [\w.]+|Unsupported operand \d+)", str(exc))
        why = found.group(1) if found else str(exc).splitlines()[0]
        raise SpinscoreError(
            f"{path}: refused: not a weights-only checkpoint (it holds Python objects that "
            f"would run code when opened: {why}); spinscore opens only tensors and plain data"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        first = str(exc).splitlines()[0] if str(exc) else ""
        why = "a torch archive cut short or damaged" if head.startswith(b"PK") and \
            not zipfile.is_zipfile(path) else f"{type(exc).__name__}: {first}"
        raise SpinscoreError(f"{path}: not a readable checkpoint ({why})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A spinscore training checkpoint (dict with model, ema, config, meta, step), read safely;
    clear errors for missing, unreadable, unsafe or foreign files."""
    state = read_checkpoint_file(path)
    if is_published_state_dict(state):
        raise SpinscoreError(f"{path}: a published Mini-AF3 state dict (weights only), not a "
                             "spinscore training run; it can be read (extract, ood, partition, "
                             "sample) but not resumed")
    if not isinstance(state, dict):
        raise SpinscoreError(f"{path}: not a spinscore checkpoint (holds a "
                             f"{type(state).__name__}, expected a dict)")
    for key in ("model", "ema", "config", "meta", "step"):
        if key not in state:
            raise SpinscoreError(f"{path}: not a spinscore checkpoint (field '{key}' missing)")
    meta = state["meta"]
    missing = [k for k in META_FIELDS if not isinstance(meta, dict) or k not in meta]
    if missing or not isinstance(state["config"], str):
        what = f"meta lacks {', '.join(missing)}" if missing else "config is not YAML text"
        raise SpinscoreError(f"{path}: not a spinscore checkpoint ({what})")
    for key, ok, expected in _FIELD_TYPES:
        value = meta[key] if key in META_FIELDS else state[key]
        if not ok(value):
            where = f"meta.{key}" if key in META_FIELDS else key
            raise SpinscoreError(f"{path}: field '{where}': expected {expected}, got "
                                 f"{type(value).__name__}")
    return state


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# (field, check, what is expected) of a checkpoint's fields, checked before anything uses them
_FIELD_TYPES = (
    ("types", lambda v: isinstance(v, list | tuple) and all(isinstance(x, str) for x in v),
     "a list of site-type names"),
    ("max_range", _is_int, "an integer"),
    ("max_length", _is_int, "an integer"),
    ("output_scale", lambda v: isinstance(v, int | float) and not isinstance(v, bool),
     "a number"),
    ("step", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    ("model", lambda v: isinstance(v, dict), "a state dict (mapping)"),
    ("ema", lambda v: isinstance(v, dict), "a state dict (mapping)"),
)


EARLY_CHECKPOINT = "early.pt"  # the under-trained state (TrainConfig.early_checkpoint)

# What a checkpoint's `meta` must hold to rebuild its model and check data against it.
META_FIELDS = ("types", "max_range", "max_length", "output_scale")


# Model fields added after checkpoints were first written, with the value those checkpoints were
# trained with. A checkpoint stores its fully resolved config, so a missing field means an older
# checkpoint, not the current default.
LEGACY_MODEL_FIELDS = {"time_octaves": 8}


# The sections of the stored config that describe the trained model and its data; how a run
# was evaluated (analysis, reproduce) is not the checkpoint's and changes between versions,
# except the times the model is read at (READOUT_FIELDS): they belong to its training.
MODEL_SECTIONS = ("system", "simulation", "model", "diffusion", "train")
READOUT_FIELDS = ("t_eval", "t_extrapolate")


def checkpoint_config(state: dict[str, Any], path: Path | str = "<checkpoint>") -> RunConfig:
    """The stored config of a checkpoint (its model-defining sections and the analysis
    section's READOUT_FIELDS; the others default)."""
    try:
        raw = yaml.safe_load(state["config"])
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise SpinscoreError(f"{path}: stored config is not readable YAML ({first})") from None
    if isinstance(raw, dict):
        analysis = raw.get("analysis")
        raw = {k: v for k, v in raw.items() if k in MODEL_SECTIONS}
        if isinstance(analysis, dict):
            raw["analysis"] = {k: analysis[k] for k in READOUT_FIELDS if k in analysis}
        if isinstance(raw.get("model"), dict):
            raw["model"] = {**LEGACY_MODEL_FIELDS, **raw["model"]}
    return parse_config(raw, f"{path} (stored config)")


def state_dict_error(exc: BaseException) -> str:
    """One line of a `load_state_dict` error: torch's first line is a title ("Error(s) in
    loading state_dict for ...") over one line per mismatch; the first mismatch is shown."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    return lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]


def build_model(model_cfg: ModelConfig, meta: dict[str, Any],
                system: SystemConfig | None = None) -> ScoreModel:
    """The score network of `model_cfg` for data described by `meta` (META_FIELDS), on the
    geometry of `system` (a chain when None or a chain)."""
    sites = None if system is None or system.geometry == "chain" else system_from_config(system)
    return ScoreModel(model_cfg, n_types=len(meta["types"]), max_length=meta["max_length"],
                      output_scale=meta["output_scale"], system=sites)


def load_model(path: str | Path, ema: bool = True) -> tuple[torch.nn.Module, RunConfig, dict]:
    """The trained network of a checkpoint (EMA weights by default), in eval mode, float32.

    Reads spinscore checkpoints and the authors' published Mini-AF3 state dicts (detected by
    their key names; their system is the paper's). Returns (model, config, meta); meta has
    `types`, `max_range`, `max_length`, `beta`, `output_scale` of the data it was trained on,
    `format` ("spinscore" or "published") and `trained_t` ([low, high] of the training times).
    The config's analysis section holds the defaults and the run's stored readout times.
    """
    state = read_checkpoint_file(path)
    if is_published_state_dict(state):
        try:
            model = published_from_state_dict(state)
        except RuntimeError as exc:
            raise SpinscoreError(f"{path}: published-format weights of unexpected shapes: "
                                 f"{state_dict_error(exc)}") from None
        config = parse_config(PUBLISHED_RUN_CONFIG, "published Mini-AF3 config")
        return model, config, _meta(config, model.max_length, "published")
    state = load_checkpoint(path)
    config = checkpoint_config(state, path)
    model = build_model(config.model, state["meta"], config.system)
    weights = state["ema"] if ema else state["model"]
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise SpinscoreError(f"{path}: weights do not fit the stored model config: "
                             f"{state_dict_error(exc)}") from None
    meta = {**_meta(config, state["meta"]["max_length"], "spinscore"), **state["meta"]}
    return model.eval(), config, meta


def _meta(config: RunConfig, max_length: int, fmt: str) -> dict[str, Any]:
    system = config.system
    return {"types": list(system.types), "max_range": system.max_range, "max_length": max_length,
            "beta": system.beta, "output_scale": system.beta, "format": fmt,
            "trained_t": list(config.diffusion.trained_range)}


def site_limit(model: torch.nn.Module) -> int | None:
    """The most sites a sample may have for `model`: the length of its position embedding
    (chains, the published model), None for a model without one (lattices, graphs, stand-in
    fields)."""
    return None if getattr(model, "pos_embed", True) is None else \
        getattr(model, "max_length", None)


def check_sites(model: torch.nn.Module, n_sites: int, what: str) -> None:
    """Refuse samples of `n_sites` sites beyond the model's position embedding."""
    limit = site_limit(model)
    if limit is not None and n_sites > limit:
        raise SpinscoreError(f"{what}: {n_sites} sites exceed the model's max_length {limit}")


def time_range_warning(meta: dict[str, Any], times, what: str) -> str | None:
    """One line when a readout time lies outside the times the model was trained on."""
    low, high = meta["trained_t"]
    outside = [t for t in times if not low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
    if not outside:
        return None
    return (f"warning: {what}: t = {', '.join(f'{t:g}' for t in outside)} outside the "
            f"training times [{low:g}, {high:g}] of the model; the network extrapolates there")


def check_compatible(meta: dict[str, Any], types: tuple[str, ...], max_range: int,
                     what: str) -> None:
    """Refuse a checkpoint trained on other site types or interaction ranges than `what`."""
    if list(meta["types"]) != list(types):
        raise SpinscoreError(f"{what}: site types {list(types)} do not match the checkpoint's "
                             f"{list(meta['types'])}")
    if meta["max_range"] != max_range:
        raise SpinscoreError(f"{what}: interaction range {max_range} does not match the "
                             f"checkpoint's {meta['max_range']}")


def check_geometry(model_system, data_system, what: str) -> None:
    """Refuse data of another geometry than the checkpoint was trained on: a chain model on a
    lattice, a square-lattice model on a triangular one, a lattice model on a graph. The size
    may differ (a lattice model reads a larger lattice of its kind). Both SystemConfig."""
    def kind(s) -> str:
        return (f"{s.lattice.boundary} {s.lattice.kind} lattice" if s.lattice is not None
                else s.geometry)
    if kind(model_system) != kind(data_system):
        raise SpinscoreError(f"{what}: data on a {kind(data_system)}; the checkpoint was "
                             f"trained on a {kind(model_system)}")


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
    check_geometry(config.system, ds.config.system, str(data))
    if not 0 <= sequence_index < len(ds.length):
        raise SpinscoreError(f"{data}: sequence index {sequence_index} out of range (the file "
                             f"holds {len(ds.length)} sequences)")
    return model, config, meta, ds, ds.types[sequence_index, : ds.length[sequence_index]]
