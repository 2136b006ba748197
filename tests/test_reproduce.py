"""`spinscore reproduce`: stage caching and the derived data sets."""

import json

import pytest
import torch
from tqdm import tqdm

from conftest import REPO
from spinscore.config import load_config
from spinscore.reproduce import Pipeline, data_configs


def test_stages_are_cached_rerun_on_change_and_resumed_after_a_crash(tmp_path):
    calls = []

    def work(stage_dir, label="a"):
        calls.append(label)
        (stage_dir / "out.txt").write_text(label)
        return {"label": label}

    bar = tqdm(disable=True)
    pipe = Pipeline(tmp_path)
    pipe.stage("s", ["input 1"], work, bar)
    assert calls == ["a"] and json.loads((tmp_path / "stages" / "s.json").read_text())[
        "summary"] == {"label": "a"}
    Pipeline(tmp_path).stage("s", ["input 1"], work, bar)  # same inputs: skipped
    assert calls == ["a"]
    (tmp_path / "s" / "stale.txt").write_text("x")
    Pipeline(tmp_path).stage("s", ["input 2"], lambda d: work(d, "b"), bar)  # changed: redone
    assert calls == ["a", "b"] and not (tmp_path / "s" / "stale.txt").exists()

    def crash(stage_dir):
        (stage_dir / "partial.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        Pipeline(tmp_path).stage("t", ["x"], crash, bar)
    assert not (tmp_path / "stages" / "t.json").exists()

    def resume(stage_dir):  # a stage without a record finds its partial work
        calls.append((stage_dir / "partial.txt").read_text())
    Pipeline(tmp_path).stage("t", ["x"], resume, bar)
    assert calls[-1] == "half"


def test_derived_data_sets():
    config = load_config(REPO / "configs" / "quick.yaml")
    sets = data_configs(config)
    rc = config.reproduce
    assert sets["test"].simulation.seed != config.simulation.seed
    assert sets["test"].simulation.sequences == rc.test_sequences
    assert sets["ood_longer_chains"].system.length[0] > config.system.length[1]
    assert sets["ood_higher_temperature"].system.temperature > config.system.temperature
    extra = sets["ood_extra_range"].system
    assert extra.max_range == config.system.max_range + 1
    assert extra.couplings[3]["AA"] == pytest.approx(rc.ood_extra_fraction
                                                     * config.system.couplings[1]["AA"])
    seeds = {c.simulation.seed for c in sets.values()}
    assert len(seeds) == len(sets)  # independent random streams


TINY_PRESET = {
    "simulation": {"sequences": 16, "snapshots": 3, "replicas": 4, "t_max": 1.0, "burn_in": 50,
                   "thinning": 10, "swap_every": 5, "seed": 3, "chunk_size": 8},
    "model": {"single_dim": 8, "pair_dim": 4, "blocks": 1, "heads": 2, "transition": 1,
              "max_distance": 4},
    "train": {"samples": 2048, "batch_size": 32, "lr": 0.01, "checkpoint_every": 20, "log_every": 4},
    "analysis": {"bootstrap": 5, "partition": {"per_temperature": 4},
                 "trust": {"configurations": 8}},
    "reproduce": {"test_sequences": 6, "test_snapshots": 2, "ood_sequences": 4,
                  "ood_snapshots": 2, "ood_length": [24, 30], "generate": 4,
                  "mixing_sequences": 4, "thermo_points": 5, "thermo_runs": 2,
                  "thermo_sweeps": 50, "thermo_samples": 4},
}


@pytest.mark.slow
def test_reproduce_end_to_end_on_a_tiny_preset(tmp_path):
    """Every stage through the command line, then the same command again (all cached)."""
    import copy

    import yaml

    from conftest import PAPER_SYSTEM, run

    preset = tmp_path / "tiny.yaml"
    system = {**copy.deepcopy(PAPER_SYSTEM), "length": [20, 24]}
    preset.write_text(yaml.safe_dump({"system": system, **TINY_PRESET}, sort_keys=False))
    out = tmp_path / "run"
    code, text = run(["reproduce", "--preset", str(preset), "--out", str(out), "--quiet"])
    assert code == 0, text
    metrics = json.loads((out / "metrics.json").read_text())
    for stage in ("train", "extract", "extract_published", "mixing", "ood", "generate",
                  "partition", "thermo"):
        assert stage in metrics["stage_seconds"], stage
    ex = metrics["extraction"]
    assert ex["t_eval"] == 0.001 and ex["extrapolated"]["times"] == [0.001, 0.002, 0.004, 0.008]
    assert metrics["published_measured"]["checkpoint_format"] == "published"
    assert metrics["oracle"]["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["mixing"]["sequences"] == 16
    page = (out / "report.html").read_text()
    assert "Both versions of the paper" in page and "direct-W" in page
    thermo = metrics["thermo"]  # ln Z by three routes (no exact one: two interaction ranges)
    assert thermo["importance"]["n"] == 4 and len(thermo["mbar"]["log_z"]) == 4
    assert "ln Z by three routes" in page and "ln Z: MBAR - TI (combined sigma)" in metrics["targets"]
    # the trust pool: every set, the under-trained state kept at 10 % of the 64 steps
    trust = metrics["ood"]["trust"]
    assert trust["early_checkpoint"].endswith("early.pt") and "Trust flag" in page
    assert set(trust["sets"]) == {"in-distribution", "longer_chains", "higher_temperature",
                                  "extra_range", "uniform", "under_trained"}
    assert torch.load(out / "train" / "early.pt", weights_only=True)["step"] == 6
    first = (out / "stages" / "train.json").read_text()
    code, text = run(["reproduce", "--preset", str(preset), "--out", str(out), "--quiet"])
    assert code == 0, text
    assert (out / "stages" / "train.json").read_text() == first  # cached, not retrained
    # trained under t_eval 0.002, then read under the config's own (the default, 0.001): the
    # cached checkpoint's stored t_eval must not leak; thermo, no longer asked for, is removed
    retrained = ["--set", "train.lr=0.002", "--set", "reproduce.thermo=false"]
    for extra in (["--set", "analysis.t_eval=0.002"], []):
        code, text = run(["reproduce", "--preset", str(preset), "--out", str(out), "--quiet",
                          *retrained, *extra])
        assert code == 0, text
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["extraction"]["t_eval"] == (0.002 if extra else 0.001)
        assert metrics["ood"]["t_eval"] == (0.002 if extra else 0.001)
        assert metrics["thermo"] is None and not (out / "thermo").exists()
        assert not (out / "stages" / "thermo.json").exists()
    assert (out / "stages" / "train.json").read_text() != first
