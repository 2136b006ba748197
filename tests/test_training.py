"""Training: resume equals an uninterrupted run, DDP equals one process, bad input is refused."""

import csv
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import PAPER_SYSTEM, write_config
from spinscore.cli import main
from spinscore.config import load_config
from spinscore.errors import SpinscoreError
from spinscore.stages import train

TINY = dict(single_dim=8, pair_dim=4, blocks=1, heads=2, transition=1, max_distance=4)


def tiny_config(tmp_path, **train_kw):
    path = write_config(tmp_path / "cfg.yaml")
    sets = [f"model.{k}={v}" for k, v in TINY.items()]
    sets += [f"train.{k}={v}" for k, v in {"samples": 64, "batch_size": 8, "log_every": 1,
                                            "checkpoint_every": 2, "micro_batch_tokens": 5000,
                                            **train_kw}.items()]
    return load_config(path, sets), path, sets


def weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def test_resume_gives_the_same_weights(tmp_path, small_dataset):
    cfg, _, _ = tiny_config(tmp_path)
    train(cfg, small_dataset, tmp_path / "a", progress=False)
    train(cfg, small_dataset, tmp_path / "b", progress=False, max_steps=5)  # "crash" at step 5
    assert weights(tmp_path / "b")["step"] == 5
    with pytest.raises(SpinscoreError, match="--resume"):
        train(cfg, small_dataset, tmp_path / "b", progress=False)
    train(cfg, small_dataset, tmp_path / "b", resume=True, progress=False)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a["step"] == b["step"] == 8
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    with open(tmp_path / "b" / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, 9))  # each step logged once
    assert (tmp_path / "a" / "loss_curve.png").exists()


def test_resume_refuses_other_training_settings_and_overwrite_starts_clean(tmp_path,
                                                                           small_dataset):
    """A resumed run must be the run started: another seed, learning rate or noise schedule
    is one error (when checkpoints are kept may change); --overwrite leaves nothing of the old
    run behind (its finished checkpoint, summary and loss curve)."""
    cfg, _, _ = tiny_config(tmp_path)
    train(cfg, small_dataset, tmp_path / "a", progress=False)
    assert (tmp_path / "a" / "train_summary.json").exists()
    stopped = tmp_path / "b"
    train(cfg, small_dataset, stopped, progress=False, max_steps=3)
    for section, key, value in (("train", "seed", 5), ("train", "lr", 0.5),
                                ("diffusion", "antithetic", not cfg.diffusion.antithetic)):
        other = cfg.model_copy(update={section: getattr(cfg, section).model_copy(
            update={key: value})})
        with pytest.raises(SpinscoreError, match=f"{section}.{key} was"):
            train(other, small_dataset, stopped, resume=True, progress=False)
    assert weights(stopped)["step"] == 3  # nothing changed by the refusals
    kept = cfg.model_copy(update={"train": cfg.train.model_copy(update={"checkpoint_every": 3})})
    train(kept, small_dataset, stopped, resume=True, progress=False)
    assert weights(stopped)["step"] == 8
    seeded = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 5})})
    train(seeded, small_dataset, tmp_path / "a", overwrite=True, progress=False, max_steps=2)
    assert weights(tmp_path / "a")["step"] == 2
    assert not (tmp_path / "a" / "train_summary.json").exists()
    assert not (tmp_path / "a" / "loss_curve.png").exists()


def test_early_checkpoint_is_the_state_at_its_step(tmp_path, small_dataset):
    """early.pt holds the run at round(fraction x steps), whether or not the run crashed."""
    cfg, _, _ = tiny_config(tmp_path, early_checkpoint=0.25)  # 8 steps: kept after step 2
    train(cfg, small_dataset, tmp_path / "a", progress=False, max_steps=2)
    at_two = weights(tmp_path / "a")
    train(cfg, small_dataset, tmp_path / "a", resume=True, progress=False)
    early = torch.load(tmp_path / "a" / "early.pt", weights_only=True)
    assert early["step"] == 2 and weights(tmp_path / "a")["step"] == 8
    for key in at_two["model"]:
        assert torch.equal(early["model"][key], at_two["model"][key]), key
    cfg, _, _ = tiny_config(tmp_path, early_checkpoint=0)
    train(cfg, small_dataset, tmp_path / "none", progress=False)
    assert not (tmp_path / "none" / "early.pt").exists()


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path, small_dataset):
    cfg, cfg_path, sets = tiny_config(tmp_path, samples=48)
    train(cfg, small_dataset, tmp_path / "single", progress=False)
    args = ["train", "--data", str(small_dataset), "--config", str(cfg_path), "--out",
            str(tmp_path / "ddp"), "--quiet", "--device", "cpu"]
    for s in sets:
        args += ["--set", s]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node=2", "-m", "spinscore.cli", *args], check=True,
                   capture_output=True, timeout=300)
    a, b = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5)
    with open(tmp_path / "single" / "metrics.csv") as f1, open(tmp_path / "ddp" / "metrics.csv") as f2:
        l1 = [float(r["loss"]) for r in csv.DictReader(f1)]
        l2 = [float(r["loss"]) for r in csv.DictReader(f2)]
    np.testing.assert_allclose(l1, l2, rtol=1e-4)


def test_bad_inputs(tmp_path, small_dataset):
    cfg, cfg_path, sets = tiny_config(tmp_path)
    runner = CliRunner()
    base = ["train", "--data", str(small_dataset), "--config", str(cfg_path), "--quiet"]
    for s in sets:
        base += ["--set", s]
    # types of the config differ from the data's
    system3 = {**PAPER_SYSTEM, "types": ["A", "B", "C"],
               "couplings": {1: {"AA": 1, "BB": 1, "CC": 1, "AB": 1, "AC": 1, "BC": 1}}}
    path3 = write_config(tmp_path / "three.yaml", system=system3)
    res = runner.invoke(main, ["train", "--data", str(small_dataset), "--config", str(path3),
                               "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "types ['A', 'B']" in res.output and "Traceback" not in res.output
    # an empty data set
    empty = tmp_path / "empty.h5"
    shutil.copy(small_dataset, empty)
    with h5py.File(empty, "r+") as f:
        for name in list(f):
            if name not in ("temperatures", "couplings"):
                data = f[name][()]
                del f[name]
                f.create_dataset(name, data=data[:0])
    res = runner.invoke(main, ["train", "--data", str(empty), "--config", str(cfg_path),
                               "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "empty" in res.output, res.output
    # resuming with a model of another size
    assert runner.invoke(main, [*base, "--out", str(tmp_path / "run")]).exit_code == 0
    res = runner.invoke(main, [*base, "--out", str(tmp_path / "run"), "--resume",
                               "--set", "model.pair_dim=6"])
    assert res.exit_code == 2 and "checkpoint of another model" in res.output, res.output
    # nothing to resume
    res = runner.invoke(main, [*base, "--out", str(tmp_path / "none"), "--resume"])
    assert res.exit_code == 2 and "nothing to resume" in res.output


def test_ema_decay_is_warmed_up():
    """The EMA forgets its starting point: after n updates towards a new constant it holds
    prod_k d_k of the start, d_k = min(decay, (1 + k) / (10 + k)); a plain 0.999 EMA would
    still hold 0.999^n (95 % after 50 steps), which shrank the couplings of short runs."""
    from torch.optim.swa_utils import AveragedModel

    from spinscore.training.loop import ema_update

    model = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = AveragedModel(model, multi_avg_fn=ema_update(0.999))
    ema.update_parameters(model)  # the first update copies the (zero) weights
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(50):
        ema.update_parameters(model)
    kept = np.prod([min(0.999, (1 + k) / (10 + k)) for k in range(1, 51)])
    np.testing.assert_allclose(ema.module.weight.detach().numpy(), 1 - kept, rtol=1e-6)
    assert ema.module.weight.min() > 0.999


def test_checkpoint_from_before_time_octaves_loads_with_its_eight_octaves(tmp_path, small_dataset):
    """Checkpoints store their resolved config; one written before `model.time_octaves` existed
    was trained with 8 octaves and must load as such (not with today's default of 4, whose time
    MLP has another input width), and give the network it held."""
    import yaml

    from spinscore.checkpoints import load_model, save_checkpoint

    cfg, path, sets = tiny_config(tmp_path, samples=16)
    old = load_config(path, sets + ["model.time_octaves=8"])
    train(old, small_dataset, tmp_path / "run", progress=False)
    state = weights(tmp_path / "run")
    raw = yaml.safe_load(state["config"])
    del raw["model"]["time_octaves"]  # what an older spinscore wrote
    save_checkpoint(tmp_path / "legacy.pt", {**state, "config": yaml.safe_dump(raw)})
    model, config, _ = load_model(tmp_path / "legacy.pt")
    assert config.model.time_octaves == 8
    reference, _, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    spins = torch.nn.functional.normalize(torch.randn(2, 6, 3), dim=-1)
    types = torch.zeros(2, 6, dtype=torch.long)
    t = torch.tensor([0.01, 1.0])
    assert torch.equal(model(spins, types, t), reference(spins, types, t))
    assert cfg.model.time_octaves == 4  # today's default


def test_checkpoint_written_with_an_older_reproduce_section_loads(tmp_path, small_dataset):
    """Evaluation settings moved from `reproduce` to `analysis`; a checkpoint stores the whole
    config of its run, and only the sections that define the model are read back."""
    import yaml

    from spinscore.checkpoints import load_model, save_checkpoint

    cfg, _, _ = tiny_config(tmp_path, samples=16)
    train(cfg, small_dataset, tmp_path / "run", progress=False)
    state = weights(tmp_path / "run")
    raw = yaml.safe_load(state["config"])
    raw["reproduce"] = {**raw["reproduce"], "t_eval": 1e-4, "partition_per_temperature": 10}
    save_checkpoint(tmp_path / "old.pt", {**state, "config": yaml.safe_dump(raw)})
    model, config, _ = load_model(tmp_path / "old.pt")
    assert config.model == cfg.model and config.system == cfg.system
