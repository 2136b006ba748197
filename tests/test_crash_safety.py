"""Crash-safe runs, checked the way a user crashes them: `kill -9` of the real command line (a
subprocess in its own process group, killed with SIGKILL), then the same command again, ends
where an uninterrupted run ends; and a run directory of another preset, or a stage that
crashed with other inputs, is refused or started again (foreign checkpoints and data sets:
test_foreign_inputs.py)."""

import copy
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_reproduce import TINY_PRESET
from tqdm import tqdm

from conftest import PAPER_SYSTEM, REPO, SMALL_SIMULATION, assert_clean_error, run

ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
TINY_MODEL = {"single_dim": 8, "pair_dim": 4, "blocks": 1, "heads": 2, "transition": 1,
              "max_distance": 4}
# 64 steps; checkpoints every 6 steps and log rows every 4, so a resume from a checkpoint
# starts inside a logging window (the row after it averages steps from both processes)
TRAIN = {"samples": 512, "batch_size": 8, "checkpoint_every": 6, "log_every": 4}


def spinscore(*args) -> list[str]:
    """The command line of the installed `spinscore` script (python -m without one)."""
    script = Path(sys.executable).with_name("spinscore")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "spinscore.cli"]
    return [*base, *map(str, args)]


def run_cli(*args) -> str:
    """Run the command line to the end in a subprocess; its output (it must succeed)."""
    res = subprocess.run(spinscore(*args), env=ENV, cwd=REPO, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def kill_when(args: list, ready, log: Path, timeout: float = 900.0) -> None:
    """Start the command line in a process group of its own and SIGKILL the whole group as soon
    as `ready()` holds; fails if the command ends first."""
    with open(log, "w") as out:
        proc = subprocess.Popen(spinscore(*args), env=ENV, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"ended (exit {proc.returncode}) before the kill:\n" \
                                        f"{log.read_text()}"
            assert time.monotonic() < deadline, "never reached the moment to kill it"
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()


def logged_steps(path: Path) -> list[int]:
    """The steps of metrics.csv (a half-written last line while training runs: ignored)."""
    try:
        with open(path, newline="") as f:
            return [int(r["step"]) for r in csv.DictReader(f) if r.get("elapsed_s")]
    except (OSError, ValueError):
        return []


def assert_same_tree(a, b, where: str = "checkpoint") -> None:
    """Equal nested dicts/lists; tensors bit for bit (same dtype, shape and values)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, x in enumerate(a):
            assert_same_tree(x, b[i], f"{where}[{i}]")
    else:
        assert a == b, where


def files_of(*roots: Path) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of every file under `roots` (to show that nothing was written)."""
    found = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        found.update({str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in paths})
    return found


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def train_config(path: Path) -> Path:
    """The paper's system, a tiny model and TRAIN, as a config file."""
    return write_yaml(path, {"system": PAPER_SYSTEM, "simulation": SMALL_SIMULATION,
                             "model": TINY_MODEL, "train": TRAIN})


@pytest.mark.slow
def test_train_killed_then_resumed_ends_with_the_same_weights(tmp_path, small_dataset):
    config = train_config(tmp_path / "cfg.yaml")
    command = ["train", "--data", small_dataset, "--config", config, "--quiet", "--out"]
    run_cli(*command, tmp_path / "whole")
    crashed = tmp_path / "crashed"
    # killed between checkpoints: after the first one, once a later step has been logged
    kill_when([*command, crashed],
              lambda: (crashed / "checkpoint.pt").exists()
              and max(logged_steps(crashed / "metrics.csv"), default=0) > TRAIN["checkpoint_every"],
              tmp_path / "killed.log")
    total = TRAIN["samples"] // TRAIN["batch_size"]
    step = torch.load(crashed / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < total and not (crashed / "train_summary.json").exists()
    assert max(logged_steps(crashed / "metrics.csv")) > step  # work lost by the kill

    run_cli(*command, crashed, "--resume")
    whole, resumed = (torch.load(d / "checkpoint.pt", weights_only=True)
                      for d in (tmp_path / "whole", crashed))
    assert whole["step"] == total
    assert_same_tree(whole, resumed)  # model, EMA, optimizer, schedule, step, config, meta
    # metrics.csv: every row once, with the same numbers (timings aside)
    rows = [[{k: v for k, v in r.items() if k not in ("samples_per_s", "elapsed_s")}
             for r in csv.DictReader((d / "metrics.csv").read_text().splitlines())]
            for d in (tmp_path / "whole", crashed)]
    assert [int(r["step"]) for r in rows[1]] == list(range(4, total + 1, 4))
    assert rows[0] == rows[1]
    a, b = (json.loads((d / "train_summary.json").read_text()) for d in (tmp_path / "whole", crashed))
    assert all(a[k] == b[k] for k in ("steps", "final_loss", "final_loss_t"))


MACHINE = ("stage_seconds", "total_seconds", "environment")
TIME_LIKE = re.compile(r"(^|_)(s|seconds|elapsed|wall|finished|timestamp|timings)(_|$)")


def comparable(run_dir: Path) -> tuple[dict[str, str], list[str]]:
    """metrics.json flattened to {path: JSON of the value}, without what measures the machine
    or the clock (MACHINE, and keys that TIME_LIKE matches: training.elapsed_s,
    training.samples_per_s_median, generate.sample_seconds and remc_seconds, partition.timings);
    the run directory's own path in strings reads RUN. Returns (values, the paths left out)."""
    values, left_out = {}, []

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                if (not path and key in MACHINE) or TIME_LIKE.search(key):
                    left_out.append(f"{path}/{key}")
                else:
                    walk(item, f"{path}/{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        else:
            text = json.dumps(value)  # NaN compares equal as text
            values[path] = text.replace(str(run_dir.resolve()), "RUN").replace(str(run_dir), "RUN")

    walk(json.loads((run_dir / "metrics.json").read_text()), "")
    return values, left_out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny preset (checkpoints every 6 of its 64 training steps, log rows every 4; alpha fitted on the
    whole ladder, where it is positive, and a short TI, so the partition stage ends with
    numbers) and an uninterrupted `spinscore reproduce` of it."""
    root = tmp_path_factory.mktemp("tiny")
    system = {**copy.deepcopy(PAPER_SYSTEM), "length": [20, 24]}
    analysis = copy.deepcopy(TINY_PRESET["analysis"])
    analysis["partition"].update(fit_temperatures=4, ti_points=11, ti_runs=2, ti_sweeps=200)
    preset = write_yaml(root / "tiny.yaml", {
        **TINY_PRESET, "system": system, "train": {**TINY_PRESET["train"], "checkpoint_every": 6},
        "analysis": analysis})
    run_cli("reproduce", "--preset", preset, "--out", root / "whole", "--quiet")
    return preset, root / "whole"


def _killed_and_rerun(tmp_path, tiny_run, ready_in, killed_state):
    preset, whole = tiny_run
    out = tmp_path / "run"
    command = ["reproduce", "--preset", preset, "--out", out, "--quiet"]
    kill_when(command, lambda: ready_in(out), tmp_path / "killed.log")
    killed_state(out)
    assert not (out / "metrics.json").exists()
    run_cli(*command)
    (expected, left_out), (got, _) = comparable(whole), comparable(out)
    for key in ("/extraction/cosine", "/training/final_loss", "/partition/alpha",
                "/partition/points/log_p[15]", "/generate/mean_generated"):
        assert key in expected, key
    assert {"/training/elapsed_s", "/stage_seconds", "/environment",
            "/partition/timings"} <= set(left_out)
    assert got == expected


@pytest.mark.slow
def test_reproduce_killed_in_training_then_rerun_gives_the_same_metrics(tmp_path, tiny_run):
    def training(out):
        return (out / "train" / "checkpoint.pt").exists() \
            and not (out / "stages" / "train.json").exists()

    def incomplete(out):
        state = torch.load(out / "train" / "checkpoint.pt", weights_only=True)
        assert 0 < state["step"] < 64 and not (out / "stages" / "train.json").exists()

    _killed_and_rerun(tmp_path, tiny_run, training, incomplete)


@pytest.mark.slow
def test_reproduce_killed_in_partition_then_rerun_gives_the_same_metrics(tmp_path, tiny_run):
    def partitioning(out):
        return (out / "partition").is_dir() and not (out / "stages" / "partition.json").exists()

    def incomplete(out):
        assert (out / "stages" / "train.json").exists()
        assert not (out / "stages" / "partition.json").exists()
        assert not (out / "partition" / "partition.json").exists()

    _killed_and_rerun(tmp_path, tiny_run, partitioning, incomplete)


@pytest.mark.slow
def test_a_run_directory_of_another_preset_is_refused(tmp_path, tiny_run):
    preset, whole = tiny_run
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    other = yaml.safe_load(preset.read_text())
    other["simulation"]["seed"] += 1
    other = write_yaml(tmp_path / "other.yaml", other)
    before = files_of(out)
    for wrong in (other, "quick"):
        code, output = run(["reproduce", "--preset", str(wrong), "--out", str(out), "--quiet"])
        assert_clean_error(code, output, str(out / "run.json"), "holds a run of preset",
                           str(preset.resolve()))
        assert files_of(out) == before
    # --set of the same preset is the same run: the stages it changes run again, no others
    code, output = run(["reproduce", "--preset", str(preset), "--out", str(out), "--quiet",
                        "--set", "analysis.bootstrap=6"])
    assert code == 0, output
    after = files_of(out)
    unchanged = [f"stages/{s}.json" for s in ("simulate_train", "simulate_test", "train", "ood",
                                              "generate", "mixing")]
    for name in [*unchanged, "run.json", "train/checkpoint.pt"]:
        assert after[str(out / name)] == before[str(out / name)], name
    assert after[str(out / "stages" / "extract.json")] != before[str(out / "stages" / "extract.json")]
    assert json.loads((out / "metrics.json").read_text())["extraction"]["bootstrap_samples"] == 6


def test_a_stage_that_crashed_with_other_inputs_starts_again(tmp_path):
    """A crashed stage resumes its partial work only if it is rerun with the same inputs (a
    training checkpoint of lr = 0.01 must not be continued as a run of lr = 0.02)."""
    from spinscore.reproduce import Pipeline

    def crash(stage_dir):
        (stage_dir / "checkpoint.pt").write_text("lr = 0.01, step 20")
        raise RuntimeError("killed")

    found = []

    def look(stage_dir):
        found.append(sorted(p.name for p in stage_dir.iterdir()))

    bar = tqdm(disable=True)
    for inputs, expected in ((["lr = 0.01"], ["checkpoint.pt"]), (["lr = 0.02"], [])):
        with pytest.raises(RuntimeError):
            Pipeline(tmp_path).stage("train", ["lr = 0.01"], crash, bar)
        Pipeline(tmp_path).stage("train", inputs, look, bar)
        assert found[-1] == expected, inputs
        assert not (tmp_path / "stages" / "train.started").exists()
        (tmp_path / "stages" / "train.json").unlink()

