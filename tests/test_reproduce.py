"""`spinscore reproduce`: stage caching and the derived data sets."""

import json

import pytest
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
