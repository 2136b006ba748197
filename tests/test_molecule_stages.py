"""The molecular config, the simulate stage and the MD validation (`spinscore inspect`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("openmm")

from spinscore.cli import main  # noqa: E402
from spinscore.config import load_config, parse_config  # noqa: E402
from spinscore.config.molecule import MoleculeRunConfig  # noqa: E402
from spinscore.errors import ConfigError  # noqa: E402
from spinscore.molecules import (  # noqa: E402
    Molecule,
    TrajectorySettings,
    degrees_of_freedom,
    nve_drift,
    read_molecule_data,
)
from spinscore.molecules.md import MOLAR_GAS_CONSTANT  # noqa: E402
from spinscore.molecules.validation import (  # noqa: E402
    energy_conservation,
    kinetic_temperature,
    population_agreement,
)

TINY = {"system": {"molecule": {"name": "alanine-dipeptide", "solvent": "vacuum", "temperature": 300}},
        "simulation": {"trajectories": 4, "frames": 40, "steps_per_frame": 50,
                       "equilibration_steps": 20000, "frames_per_chunk": 20, "nve_steps": 2000}}


def test_a_molecular_config_is_recognised_and_validated(tmp_path):
    config = parse_config(TINY)
    assert isinstance(config, MoleculeRunConfig)
    assert config.system.temperature == 300 and config.simulation.simulated_ps == 4 * 40 * 50 * 0.5e-3
    assert parse_config(yaml.safe_load(config.to_yaml())) == config
    bad = [({"solvent": "gas"}, "system.molecule.solvent: Input should be"),
           ({"temperature": -1}, "system.molecule.temperature"),
           ({"temprature": 300}, "unknown key \\(did you mean 'temperature'\\?\\)")]
    for change, message in bad:
        data = {**TINY, "system": {"molecule": {**TINY["system"]["molecule"], **change}}}
        with pytest.raises(ConfigError, match=message):
            parse_config(data, "x.yaml")
    with pytest.raises(ConfigError, match="timestep_fs: bonds are flexible .* at most 1.0 fs, got 2"):
        parse_config({**TINY, "simulation": {"timestep_fs": 2.0}}, "x.yaml")
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert load_config(path, ["simulation.seed=5"]).simulation.seed == 5
    result = CliRunner().invoke(main, ["simulate", "--config", str(path), "--out", str(tmp_path / "o.h5"),
                                       "--set", "simulation.timestep_fs=3"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "timestep_fs" in result.output
    result = CliRunner().invoke(main, ["thermo", "--config", str(path), "--sequence", "AB", "--out", "o"])
    assert result.exit_code == 2 and "describes a molecule" in result.output


@pytest.mark.parametrize("name", ["alanine-vacuum", "alanine-implicit"])
def test_the_molecule_configs_load(name):
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
    assert config.system.molecule.solvent == name.split("-")[1]


def test_energy_conservation_and_kinetic_temperature_on_known_traces():
    rng = np.random.default_rng(0)
    t = np.arange(2001) * 10 * 0.5e-3  # ps, a record every 10 steps of 0.5 fs
    trace = 3.0 + 0.2 * t + rng.normal(0, 0.05, t.size)
    check = energy_conservation(trace, 0.5, 10, 300.0, 63)
    assert check.drift_per_ps == pytest.approx(0.2, abs=0.01)
    assert check.fluctuation == pytest.approx(0.05, rel=0.05)
    assert check.thermal_scale == pytest.approx(MOLAR_GAS_CONSTANT * 300 * np.sqrt(31.5))
    # Canonical kinetic energies of n_dof quadratic modes: Gamma(n_dof / 2, kT).
    n_dof, temperature = 63, 300.0
    kinetic = rng.gamma(n_dof / 2, MOLAR_GAS_CONSTANT * temperature, size=(8, 500))
    mean, stderr, per = kinetic_temperature(kinetic, n_dof)
    assert per.shape == (8,)
    exact_stderr = temperature * np.sqrt(2 / n_dof) / np.sqrt(kinetic.size)
    assert stderr == pytest.approx(exact_stderr, rel=0.6)  # 8 trajectories: a rough estimate
    assert abs(mean - temperature) < 4 * exact_stderr
    one = kinetic_temperature(kinetic[:1], n_dof)  # one trajectory: no standard error
    assert one[0] == per[0] and one[1] is None
    with pytest.raises(ValueError, match="T, F >= 1"):
        kinetic_temperature(kinetic[:0], n_dof)


def test_population_agreement_z_scores():
    phi = np.full((2, 4), -80.0)
    psi = np.array([[75.0, 75.0, -40.0, 75.0], [75.0, 75.0, 75.0, 75.0]])
    agreement = population_agreement(phi, psi, phi, np.full((2, 4), 75.0))
    assert agreement["alphaR"]["mean"] == pytest.approx(0.125)
    assert agreement["alphaR"]["z"] == pytest.approx(0.125 / 0.125)  # stderr |0.25 - 0| / 2
    assert agreement["C7ax_alphaL"]["z"] == 0.0


def test_the_time_step_check_sees_the_integration_error_grow_as_dt_squared():
    """The NVE fluctuation of velocity Verlet scales as dt²: the check can fail."""
    settings = TrajectorySettings()
    molecule = Molecule.alanine(settings)
    n_dof = degrees_of_freedom(molecule.dynamics)
    ratios = {}
    for dt in (0.25, 0.5, 1.0):
        steps = int(2000 * 0.5 / dt)  # the same 1 ps
        trace = nve_drift(molecule.dynamics, molecule.start, dt, steps, 300.0, seed=3, steps_per_record=4)
        ratios[dt] = energy_conservation(trace, dt, 4, 300.0, n_dof).ratio
    assert ratios[0.5] < 0.02  # the default step conserves energy to 2 % of kT sqrt(n_dof / 2)
    assert 2.5 < ratios[1.0] / ratios[0.5] < 6 and 2.5 < ratios[0.5] / ratios[0.25] < 6


def test_simulate_then_inspect_a_molecule(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(TINY))
    runner = CliRunner()
    result = runner.invoke(main, ["simulate", "--config", str(path), "--out", str(tmp_path / "ala.h5"),
                                  "--quiet", "--threads", "2"])
    assert result.exit_code == 0, result.output
    data = read_molecule_data(tmp_path / "ala.h5")
    assert parse_config(yaml.safe_load(data.attrs["config"])) == load_config(path)
    assert data.positions.shape == (4, 40, 22, 3)
    result = runner.invoke(main, ["inspect", str(tmp_path / "ala.h5"), "--plots", str(tmp_path / "chk"),
                                  "--reference", str(tmp_path / "ala.h5")])
    assert result.exit_code == 0, result.output
    assert "kinetic temperature" in result.output and (tmp_path / "chk" / "md_check.png").exists()
    check = json.loads((tmp_path / "chk" / "md_check.json").read_text())
    assert check["energy_conservation"]["ratio"] < 0.02
    t = check["kinetic_temperature"]
    assert abs(t["mean"] - 300) < 5 * t["stderr"]  # 4 trajectories: a t-distribution with 3 dof
    assert all(b["z"] == 0 for b in check["basins_against_reference"].values()
               if isinstance(b, dict))
    # by bond type (amber classes), each about its own r0: amber14 CT-HC 0.109, C-N 0.1335 nm
    assert 0.108 < check["bond_lengths"]["CT-HC"]["mean"] < 0.111
    assert 0.131 < check["bond_lengths"]["C-N"]["mean"] < 0.136
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    result = runner.invoke(main, ["inspect", str(bad)])
    assert result.exit_code == 2
