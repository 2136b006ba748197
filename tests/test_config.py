"""Configuration: the documented form loads, presets load, bad input names file and key."""

import numpy as np
import pytest

from conftest import PAPER_SYSTEM, REPO, make_config, write_config
from spinscore.config import load_config, parse_config
from spinscore.errors import ConfigError


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_presets_load(preset):
    cfg = load_config(REPO / "configs" / f"{preset}.yaml")
    assert cfg.system.parameter_names() == ["J1_AA", "J1_BB", "J1_AB", "J2_AA", "J2_BB", "J2_AB"]
    np.testing.assert_array_equal(cfg.system.parameter_vector(),
                                  [1.0, 0.5, 0.8, -0.45, -0.25, -0.35])
    assert cfg.system.beta == pytest.approx(20.0)


def test_paper_preset_sizes():
    sim = load_config(REPO / "configs" / "paper.yaml").simulation
    assert (sim.sequences, sim.snapshots, sim.replicas, sim.burn_in, sim.thinning,
            sim.swap_every, sim.t_max) == (40000, 10, 16, 2000, 100, 10, 5.0)


def test_coupling_table_symmetric():
    table = make_config().system.coupling_table()
    assert table.shape == (2, 2, 2)
    np.testing.assert_array_equal(table, table.transpose(0, 2, 1))
    assert table[0, 0, 1] == 0.8 and table[1, 1, 1] == -0.25


def test_three_types_and_third_range():
    system = {"types": ["A", "B", "C"], "length": [10, 12], "temperature": 0.5,
              "couplings": {1: {"AA": 1, "BB": 1, "CC": 1, "AB": 0.5, "AC": 0.2, "BC": -0.1},
                            3: {"AA": -0.2, "BB": 0, "CC": 0, "AB": 0, "AC": 0.1, "BC": 0}}}
    cfg = make_config(system)
    names = cfg.system.parameter_names()
    assert names[:6] == ["J1_AA", "J1_BB", "J1_CC", "J1_AB", "J1_AC", "J1_BC"]
    assert len(names) == 18 and names[-1] == "J3_BC"
    assert cfg.system.coupling_table()[2, 0, 2] == 0.1
    assert np.all(cfg.system.coupling_table()[1] == 0)  # range 2 not given: zero


def test_multichar_type_names_use_dash():
    system = {**PAPER_SYSTEM, "types": ["up", "dn"],
              "couplings": {1: {"up-up": 1.0, "up-dn": 0.5, "dn-dn": 0.2}}}
    cfg = make_config(system)
    assert cfg.system.parameter_names() == ["J1_up-up", "J1_dn-dn", "J1_up-dn"]


def test_set_override_and_int_range_key(tmp_path):
    path = write_config(tmp_path / "c.yaml")
    cfg = load_config(path, ["simulation.sequences=5", "system.couplings.1.AA=2.5",
                             "system.temperature=0.1"])
    assert cfg.simulation.sequences == 5
    assert cfg.system.coupling_table()[0, 0, 0] == 2.5
    assert cfg.system.temperature == 0.1


def test_yaml_round_trip():
    cfg = make_config()
    import yaml

    assert parse_config(yaml.safe_load(cfg.to_yaml())) == cfg


BAD = [
    ({"system.couplings.1.AC": 0.3}, "couplings.1.AC: unknown site type 'C'"),
    ({"system.temperature": -1}, "system.temperature"),
    ({"analysis.partition.per_temperature": 2}, "needs at least 3 configurations, got 2 x 1"),
    ({"system.temperature": 0}, "system.temperature"),
    ({"simulation.sequences": 0}, "simulation.sequences"),
    ({"simulation.replicas": -2}, "simulation.replicas"),
    ({"system.length": [2, 10]}, "too short for interaction range 2"),
    ({"system.length": [30, 20]}, "min <= max"),
    ({"simulation.sequences": "many"}, "simulation.sequences"),
    ({"simulation.t_max": 0.01}, "simulation.t_max"),
    ({"analysis.partition.ti_sweeps": 4},
     "analysis.partition.ti_sweeps: expected at least simulation.swap_every (5) sweeps, got 4"),
    ({"reproduce.thermo_sweeps": 3}, "reproduce.thermo_sweeps: expected at least"),
    ({"simulation.thinning": 1}, "snapshots x thinning (3 x 1): no swap step (every 5 sweeps)"),
    ({"train.batch_size": 7}, "train.batch_size: expected an even number with diffusion.antithetic"),
    ({"diffusion.t_sampling": [{"weight": 1, "low": 0.01, "high": 1.0}]},
     "must cover [t_min, t_max] = [0.001, 5.0]; they reach from t_min only to 0.001"),
    ({"diffusion.t_sampling": [{"weight": 1, "low": 0.001, "high": 0.1},
                               {"weight": 1, "low": 0.2, "high": 5.0}]}, "only to 0.1"),
]


@pytest.mark.parametrize("override,expected", BAD)
def test_bad_values_name_the_key(tmp_path, override, expected):
    path = write_config(tmp_path / "bad.yaml")
    key, value = next(iter(override.items()))
    import yaml

    with pytest.raises(ConfigError) as err:
        load_config(path, [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_misspelt_key_suggests(tmp_path):
    path = write_config(tmp_path / "c.yaml")
    text = path.read_text().replace("thinning", "thining")
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"simulation.thining: unknown key \(did you mean 'thinning'\?\)"):
        load_config(path)


def test_every_problem_of_a_config_on_one_line(tmp_path):
    path = write_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["simulation.sequences=0", "simulation.thining=3"])
    message = str(err.value)
    assert "\n" not in message and message.count(str(path)) == 1, message
    assert "simulation.sequences: " in message and "simulation.thining: unknown key" in message


def test_missing_pair_and_missing_file(tmp_path):
    system = {**PAPER_SYSTEM, "couplings": {1: {"AA": 1.0, "AB": 0.8}}}
    with pytest.raises(ConfigError, match="missing pair 'BB'"):
        make_config(system)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_a_lattice_sequence_needs_one_type_per_site():
    from spinscore.errors import SpinscoreError

    system = make_config({"types": ["A", "B"], "temperature": 0.5,
                          "lattice": {"kind": "square", "size": [3, 3], "boundary": "open"},
                          "couplings": {1: {"AA": -1.0, "AB": -0.5, "BB": 0.3}}}).system
    np.testing.assert_array_equal(system.sequence_from_text("ABBAABBAA"),
                                  [0, 1, 1, 0, 0, 1, 1, 0, 0])
    for text, n in (("ABBA", 4), ("ABBAABBAAB", 10)):
        with pytest.raises(SpinscoreError, match=f"{n} site types given; the lattice has 9"):
            system.sequence_from_text(text)
