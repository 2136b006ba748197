"""Inputs that do not belong to a run: a truncated, crafted or foreign checkpoint, a data set
of another system. Every command that reads them (train --resume, extract, partition) gives one
error line naming the file, exit status 2, and leaves every file as it was."""

import copy
import shutil
from pathlib import Path

import pytest
import torch
from test_crash_safety import files_of, train_config

from conftest import PAPER_SYSTEM, REPO, SYSTEM3, assert_clean_error, run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_dataset):
    """A training run stopped at step 12 of 64 (config file, run directory)."""
    from spinscore.config import load_config
    from spinscore.stages import train

    root = tmp_path_factory.mktemp("trained")
    config = train_config(root / "cfg.yaml")
    train(load_config(config), small_dataset, root / "run", progress=False, max_steps=12)
    return config, root / "run"


@pytest.fixture(scope="module")
def foreign_data(tmp_path_factory):
    """Data sets of other systems: other couplings, another temperature, three site types, a
    ring (the same types and range on another geometry)."""
    from conftest import make_config
    from spinscore.sampling.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("foreign")
    couplings = copy.deepcopy(PAPER_SYSTEM)
    couplings["couplings"][1]["AA"] = 0.7
    ring = {k: v for k, v in PAPER_SYSTEM.items() if k != "length"}  # same types and range
    systems = {"couplings": couplings, "temperature": {**PAPER_SYSTEM, "temperature": 0.1},
               "types": SYSTEM3,
               "ring": {**ring, "lattice": {"kind": "chain", "size": [12], "boundary": "periodic"}}}
    paths = {}
    for name, system in systems.items():
        paths[name] = root / f"{name}.h5"
        simulate_dataset(make_config(system=copy.deepcopy(system)), paths[name], threads=1,
                         progress=False)
    return paths


def _commands(config: Path, run_dir: Path, data: Path, out: Path) -> dict[str, list]:
    """Every command that reads the run's checkpoint, each with an output of its own that
    already holds a file from before."""
    for name in ("extract", "partition"):
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "before.json").write_text("{}")
    checkpoint = run_dir / "checkpoint.pt"
    return {
        "train --resume": ["train", "--data", data, "--config", config, "--out", run_dir,
                           "--resume", "--quiet"],
        "extract": ["extract", "--data", data, "--checkpoint", checkpoint, "--out",
                    out / "extract", "--quiet"],
        "partition": ["partition", "--data", data, "--checkpoint", checkpoint, "--out",
                      out / "partition", "--quiet"],
    }


def _shapes_changed(weights: dict) -> dict:
    return {k: torch.zeros(v.numel() + 1) for k, v in weights.items()}


CHECKPOINTS = {  # name: (how the file is made from the run's state and bytes, expected text)
    "random bytes": (lambda s, b, p: p.write_bytes(bytes(range(256)) * 40),
                     "not a readable checkpoint"),
    "empty": (lambda s, b, p: p.write_bytes(b""), "not a readable checkpoint"),
    "truncated": (lambda s, b, p: p.write_bytes(b[: len(b) // 2]), "not a readable checkpoint"),
    "a tensor": (lambda s, b, p: torch.save(torch.zeros(3), p), "not a spinscore checkpoint"),
    "another dict": (lambda s, b, p: torch.save({"state_dict": s["model"]}, p),
                     "field 'model' missing"),
    "no meta": (lambda s, b, p: torch.save({**s, "meta": {}}, p), "meta lacks types"),
    "config not YAML": (lambda s, b, p: torch.save({**s, "config": "model: ["}, p),
                        "stored config is not readable YAML"),
    "config section not a mapping": (lambda s, b, p: torch.save({**s, "config": "system: 3"}, p),
                                     "system: Input should be a valid dictionary"),
    "weights of other shapes": (
        lambda s, b, p: torch.save({**s, **{k: _shapes_changed(s[k]) for k in ("model", "ema")},
                                    "ema_full": _shapes_changed(s["ema_full"])}, p), "fit"),
    "meta.types not a list": (lambda s, b, p: torch.save({**s, "meta": {**s["meta"], "types": 5}},
                                                           p), "field 'meta.types': expected a list"),
    "meta.max_length text": (lambda s, b, p: torch.save(
        {**s, "meta": {**s["meta"], "max_length": "x"}}, p), "field 'meta.max_length'"),
    "step text": (lambda s, b, p: torch.save({**s, "step": "abc"}, p),
                  "field 'step': expected a non-negative integer"),
    "ema a list": (lambda s, b, p: torch.save({**s, "ema": [1, 2]}, p),
                   "field 'ema': expected a state dict"),
    "weights only": (lambda s, b, p: torch.save({k: v for k, v in s.items()
                                                 if k != "optimizer"}, p),
                     "not a resumable training checkpoint"),
    "published": (lambda s, b, p: shutil.copy(REPO / "tests" / "data" / "mini_af3_epoch_20.pt", p),
                  "published Mini-AF3 state dict"),
}
TRAIN_ONLY = {"weights only", "published"}  # fine to read (extract, partition), not to resume


@pytest.mark.parametrize("case,command", [
    (case, command) for case in CHECKPOINTS for command in ("train --resume", "extract",
                                                            "partition")
    if command == "train --resume" or case not in TRAIN_ONLY])
def test_a_broken_or_foreign_checkpoint_is_one_error_and_nothing_is_written(
        case, command, trained, small_dataset, tmp_path):
    config, run_dir = trained
    shutil.copytree(run_dir, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    make, expected = CHECKPOINTS[case]
    make(torch.load(checkpoint, weights_only=True), checkpoint.read_bytes(), checkpoint)
    args = _commands(config, tmp_path / "run", small_dataset, tmp_path / "out")[command]
    before = files_of(tmp_path, small_dataset)
    code, output = run(list(map(str, args)))
    assert_clean_error(code, output, str(checkpoint), expected)
    assert files_of(tmp_path, small_dataset) == before


DATA = [  # (command, data set, expected text)
    ("train --resume", "couplings", "simulated with other couplings or temperature"),
    ("train --resume", "temperature", "simulated with other couplings or temperature (T = "),
    ("train --resume", "types", "types ['A', 'B', 'C']"),
    ("extract", "types", "site types ['A', 'B', 'C'] do not match"),
    ("partition", "couplings", "couplings differ"),
    ("partition", "types", "site types ['A', 'B', 'C'] do not match"),
    ("extract", "ring", "data on a periodic chain lattice; the checkpoint was trained on a chain"),
    ("partition", "ring", "data on a periodic chain lattice; the checkpoint was trained on a "
     "chain"),
]


@pytest.mark.parametrize("command,data,expected", DATA)
def test_data_of_another_system_is_one_error_and_nothing_is_written(
        command, data, expected, trained, foreign_data, tmp_path):
    config, run_dir = trained
    shutil.copytree(run_dir, tmp_path / "run")
    path = foreign_data[data]
    args = _commands(config, tmp_path / "run", path, tmp_path / "out")[command]
    before = files_of(tmp_path, path)
    code, output = run(list(map(str, args)))
    assert_clean_error(code, output, str(path), expected)
    assert files_of(tmp_path, path) == before
