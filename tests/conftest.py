"""Shared fixtures: small configurations and data sets."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from spinscore.config import RunConfig, parse_config

REPO = Path(__file__).resolve().parents[1]

PAPER_SYSTEM = {
    "types": ["A", "B"],
    "couplings": {1: {"AA": 1.0, "AB": 0.8, "BB": 0.5}, 2: {"AA": -0.45, "AB": -0.35, "BB": -0.25}},
    "length": [20, 50],
    "temperature": 0.05,
}
# three types, interaction range 3, short chains: the general case of the code paths
SYSTEM3 = {"types": ["A", "B", "C"], "length": [8, 15], "temperature": 0.5,
           "couplings": {1: {"AA": 1, "BB": 0.7, "CC": -0.3, "AB": 0.5, "AC": 0.2, "BC": -0.1},
                         2: {"AA": -0.4, "BB": -0.2, "CC": 0.1, "AB": 0.3, "AC": 0, "BC": -0.6},
                         3: {"AA": 0.05, "BB": 0, "CC": 0.2, "AB": 0, "AC": -0.1, "BC": 0}}}
SMALL_SIMULATION = {
    "sequences": 12, "snapshots": 3, "replicas": 4, "t_max": 1.0, "burn_in": 20,
    "thinning": 10, "swap_every": 5, "seed": 7, "chunk_size": 4,
}


def make_config(system: dict | None = None, simulation: dict | None = None, **sim_kw) -> RunConfig:
    """A RunConfig from the paper system and a tiny simulation, with overrides."""
    sys_ = copy.deepcopy(PAPER_SYSTEM) if system is None else system
    sim = {**SMALL_SIMULATION, **(simulation or {}), **sim_kw}
    return parse_config({"system": sys_, "simulation": sim})


def write_config(path: Path, system: dict | None = None, **sim_kw) -> Path:
    data = {"system": copy.deepcopy(PAPER_SYSTEM) if system is None else system,
            "simulation": {**SMALL_SIMULATION, **sim_kw}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(args: list[str]) -> tuple[int, str]:
    """Run the `spinscore` CLI in-process; (exit code, output)."""
    from click.testing import CliRunner

    from spinscore.cli import main

    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


def simulate_cli(folder: Path, system: dict, simulation: dict) -> Path:
    """`spinscore simulate` (one thread, quiet) of `system` with `simulation` into
    folder/data.h5; the path."""
    cfg, out = folder / "config.yaml", folder / "data.h5"
    cfg.write_text(yaml.safe_dump({"system": system, "simulation": simulation}))
    code, output = run(["simulate", "--config", str(cfg), "--out", str(out), "--quiet",
                        "--threads", "1"])
    assert code == 0, output
    return out


def assert_clean_error(code: int, output: str, *expected: str) -> None:
    """Bad input: exit code 2, one `error:` line, no traceback, each `expected` text in it."""
    assert code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for text in expected:
        assert text in output, output


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A small simulated data set of the paper's system (12 chains x 3 snapshots)."""
    from spinscore.sampling.simulate import simulate_dataset

    out = tmp_path_factory.mktemp("data") / "small.h5"
    simulate_dataset(make_config(), out, threads=2, progress=False)
    return out


@pytest.fixture(scope="session")
def j3_dataset(tmp_path_factory) -> Path:
    """The small data set's chains with an extra J3 term (an OOD set)."""
    from spinscore.sampling.simulate import simulate_dataset

    system = copy.deepcopy(PAPER_SYSTEM)
    system["couplings"][3] = {"AA": 0.3, "AB": 0.2, "BB": 0.1}
    out = tmp_path_factory.mktemp("ood") / "j3.h5"
    simulate_dataset(make_config(system), out, threads=2, progress=False)
    return out
