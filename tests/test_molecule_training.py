"""The molecular training stage: resumable after a kill, refuses foreign inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openmm")

from spinscore.config import parse_config  # noqa: E402
from spinscore.errors import SpinscoreError  # noqa: E402
from spinscore.stages.molecule_training import (  # noqa: E402
    load_molecule_checkpoint,
    load_molecule_model,
    train_molecule,
    w_scale_from_positions,
)
from spinscore.stages.molecules import simulate_molecule  # noqa: E402

SYSTEM = {"molecule": {"name": "alanine-dipeptide", "solvent": "vacuum", "temperature": 300}}
SIMULATION = {"trajectories": 3, "frames": 12, "steps_per_frame": 20, "equilibration_steps": 200,
              "frames_per_chunk": 6}
CONFIG = {"system": SYSTEM, "simulation": SIMULATION,
          "model": {"single_dim": 8, "pair_dim": 4, "blocks": 1, "heads": 2, "n_radial": 6},
          "train": {"steps": 24, "batch_size": 4, "checkpoint_every": 8, "log_every": 4,
                    "holdout_trajectories": 1},
          "generate": {"chains": 4, "picoseconds": 0.05}}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ala") / "ala.h5"
    simulate_molecule(parse_config(CONFIG), out, threads=2, progress=False)
    return out


def test_a_killed_training_resumes_to_the_same_model(tiny_data, tmp_path):
    config = parse_config(CONFIG)
    whole = train_molecule(config, tiny_data, tmp_path / "whole", progress=False)
    part = train_molecule(config, tiny_data, tmp_path / "part", progress=False, max_steps=13)
    stopped = load_molecule_checkpoint(part)
    assert stopped["trainer"]["step"] == 13  # saved at the stop, with its clock
    assert not (tmp_path / "part" / "train_summary.json").exists()
    with pytest.raises(SpinscoreError, match="exists; pass --resume"):
        train_molecule(config, tiny_data, tmp_path / "part", progress=False)
    train_molecule(config, tiny_data, tmp_path / "part", progress=False, resume=True)
    a, b = load_molecule_checkpoint(whole), load_molecule_checkpoint(part)
    for key in ("model", "ema"):
        for name, tensor in a["trainer"][key].items():
            assert torch.equal(tensor, b["trainer"][key][name]), (key, name)
    assert [r[:2] for r in a["rows"]] == [r[:2] for r in b["rows"]]
    # the resumed clock continues from the checkpoint's, not from the last logged row
    assert all(r[2] >= stopped["elapsed_s"] for r in b["rows"] if r[0] > 13)
    assert [r[2] for r in b["rows"]] == sorted(r[2] for r in b["rows"])
    assert (tmp_path / "part" / "loss_curve.png").exists()
    model, loaded = load_molecule_model(whole)
    assert loaded == config and model.n_atoms == 22


def test_foreign_inputs_are_one_clear_error(tiny_data, tmp_path):
    other = parse_config({**CONFIG, "simulation": {**SIMULATION, "seed": 7}})
    with pytest.raises(SpinscoreError, match="simulated with another simulation section"):
        train_molecule(other, tiny_data, tmp_path / "o", progress=False)
    greedy = parse_config({**CONFIG, "train": {**CONFIG["train"], "holdout_trajectories": 3}})
    with pytest.raises(SpinscoreError, match="train.holdout_trajectories: 3 leaves none"):
        train_molecule(greedy, tiny_data, tmp_path / "g", progress=False)
    spin_checkpoint = tmp_path / "spin.pt"
    torch.save({"model": {}, "ema": {}, "config": "", "meta": {}, "step": 0}, spin_checkpoint)
    with pytest.raises(SpinscoreError, match="not a molecular spinscore checkpoint"):
        load_molecule_checkpoint(spin_checkpoint)


def test_w_scale_is_the_equipartition_size_of_a_bond_weight():
    """Bonds sampled from their Boltzmann distribution: std(r) = 1 / sqrt(beta k), so the scale
    is sqrt(beta k) / r0 (no force needed)."""
    rng = np.random.default_rng(0)
    beta_k, r0, m = 1.0e5, 0.11, 20_000  # nm^-2, nm
    r = r0 + rng.standard_normal(m) / np.sqrt(beta_k)
    positions = np.zeros((m, 2, 3))
    positions[:, 1, 0] = r
    expected = np.sqrt(beta_k) / r0
    assert w_scale_from_positions(positions, np.array([[0, 1]])) == pytest.approx(expected, rel=0.02)


def test_a_molecular_preset_end_to_end(tmp_path):
    """reproduce on a tiny molecular config: every stage, the oracle exact on the basis, the
    report; then the same command again (all cached)."""
    import json

    import yaml
    from click.testing import CliRunner

    from spinscore.cli import main

    preset = tmp_path / "ala.yaml"
    preset.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "run"
    args = ["reproduce", "--preset", str(preset), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["stage_seconds"]) == {"simulate", "inspect", "train", "readout", "generate"}
    sim = CONFIG["simulation"]  # score matching reads every training frame by default
    assert metrics["readout"]["fit_frames"] == (sim["trajectories"] - 1) * sim["frames"]
    oracle = metrics["readout"]["oracle"]
    assert oracle["parameters"]["bond_r0_nm"]["worst"] < 1e-5  # float32 forces in the file
    assert min(s["cosine"] for s in oracle["sectors"].values()) > 0.9999
    assert "The force field read back" in (out / "report.html").read_text()
    first = (out / "stages" / "train.json").read_text()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert (out / "stages" / "train.json").read_text() == first
    result = CliRunner().invoke(main, ["readout", "--checkpoint", str(out / "train" / "checkpoint.pt"),
                                       "--data", str(out / "simulate" / "data.h5"),
                                       "--out", str(tmp_path / "ro"), "--frames", "12", "--fit-frames", "6"])
    assert result.exit_code == 0 and "oracle: bond 1.0000" in result.output, result.output
    generation = metrics["generation"]
    assert generation["frames_per_chain"] == 5 and 0 <= generation["js_divergence"] <= np.log(2)
    assert "Generation: Langevin dynamics" in (out / "report.html").read_text()
    result = CliRunner().invoke(main, ["langevin", "--checkpoint", str(out / "train" / "checkpoint.pt"),
                                       "--data", str(out / "simulate" / "data.h5"),
                                       "--out", str(tmp_path / "gen"), "--chains", "1"])
    assert result.exit_code == 2 and "--chains" in result.output


def test_the_config_defaults_are_the_library_defaults():
    """`model:` and `train:` mirror the library's defaults (the measured settings): a change
    on one side only would silently train another model than the documented one."""
    from dataclasses import asdict

    from spinscore.config.molecule import AtomModelConfig, DSMConfig
    from spinscore.molecules import DSMSettings
    from spinscore.molecules.score_model import HYPER_DEFAULTS

    model = AtomModelConfig().model_dump()
    assert model.pop("w_scale") is None  # from the positions, never a constant
    assert model == {k: v for k, v in HYPER_DEFAULTS.items() if k != "w_scale"}
    train = DSMConfig().model_dump()
    library = asdict(DSMSettings())
    assert {k: train[k] for k in library} == {k: v for k, v in library.items()}
