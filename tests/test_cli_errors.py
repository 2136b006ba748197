"""Bad input: one clear line naming file and field, exit code 2, no traceback, no output file."""

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import PAPER_SYSTEM, REPO, assert_clean_error, run, write_config
from spinscore.cli import main

CONFIG_ERRORS = [
    (["--set", "system.couplings.1.AX=0.3"], "unknown site type 'X'"),
    (["--set", "system.temperature=-0.1"], "system.temperature"),
    (["--set", "simulation.snapshots=0"], "simulation.snapshots"),
    (["--set", "system.length=[2, 30]"], "too short for interaction range 2"),
    (["--set", "simulation.sequencs=10"], "did you mean 'sequences'"),
    (["--set", "simulation.replicas=four"], "simulation.replicas"),
    (["--set", "simulation.sequences"], "expected section.key=value"),
    (["--set", "simulation.t_max=inf"], "simulation.t_max: Input should be a finite number"),
    (["--set", "simulation.seed=99999999999999999999"], "simulation.seed"),
    (["--set", "simulation.sequences=[1"], "cannot parse value"),
]


@pytest.mark.parametrize("extra,expected", CONFIG_ERRORS)
def test_simulate_config_errors(tmp_path, extra, expected):
    cfg = write_config(tmp_path / "cfg.yaml", sequences=2)
    out = tmp_path / "o.h5"
    code, output = run(["simulate", "--config", str(cfg), "--out", str(out), *extra])
    assert_clean_error(code, output, expected, "cfg.yaml")
    assert not out.exists() and not (tmp_path / "o.h5.parts").exists()


def test_unknown_type_in_file(tmp_path):
    system = {**PAPER_SYSTEM, "couplings": {1: {"AA": 1, "AB": 1, "BB": 1, "AC": 2}}}
    cfg = write_config(tmp_path / "cfg.yaml", system=system)
    code, output = run(["simulate", "--config", str(cfg), "--out", str(tmp_path / "o.h5")])
    assert_clean_error(code, output, "couplings.1.AC: unknown site type 'C'")


def test_debug_shows_traceback(tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", sequences=2)
    res = CliRunner().invoke(main, ["--debug", "simulate", "--config", str(cfg), "--out",
                                    str(tmp_path / "o.h5"), "--set", "system.temperature=0"])
    assert res.exit_code != 0 and res.exception is not None


@pytest.fixture
def broken_copy(tmp_path, small_dataset):
    def make(name, edit):
        path = tmp_path / name
        shutil.copy(small_dataset, path)
        edit(path)
        return path
    return make


def _set(field, fn):
    def edit(path):
        with h5py.File(path, "r+") as f:
            data = f[field][()]
            fn(data)
            f[field][...] = data
    return edit


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"not an hdf5 file at all" * 100)


def _drop(field):
    def edit(path):
        with h5py.File(path, "r+") as f:
            del f[field]
    return edit


def _replace(field, fn):
    def edit(path):
        with h5py.File(path, "r+") as f:
            data = fn(f[field][()])
            del f[field]
            f[field] = data
    return edit


def _as_group(field):
    def edit(path):
        with h5py.File(path, "r+") as f:
            del f[field]
            f.create_group(field)
    return edit


def _config_attr(value):
    def edit(path):
        with h5py.File(path, "r+") as f:
            f.attrs["config"] = value
    return edit


BAD_FILES = [
    ("nan.h5", _set("spins", lambda s: s.__setitem__((1, 0, 3, 0), np.nan)), "'spins': non-finite"),
    ("norm.h5", _set("spins", lambda s: s.__setitem__((2, 1, 4), [1.0, 1.0, 0.0])),
     "'spins': not a unit vector at sequence 2, snapshot 1, site 4"),
    ("types.h5", _set("types", lambda t: t.__setitem__((0, 0), 5)), "'types'"),
    ("trunc.h5", _truncate, "not a readable HDF5 file"),
    ("garbage.h5", _garbage, "not a readable HDF5 file"),
    ("nofield.h5", _drop("energy"), "field 'energy' missing"),
    ("nan_energy.h5", _set("energy", lambda e: e.__setitem__((0, 0), np.nan)),
     "field 'energy': expected finite numbers"),
    ("nan_temperature.h5", _set("temperatures", lambda t: t.__setitem__(0, np.inf)),
     "field 'temperatures': expected finite numbers"),
    ("float_types.h5", _replace("types", lambda t: t.astype(np.float64)),
     "field 'types': expected integers, got float64"),
    ("length_2d.h5", _replace("length", lambda n: np.stack([n, n], axis=1)),
     "field 'length': expected shape"),
    ("group.h5", _as_group("spins"), "field 'spins': expected an array, got an HDF5 group"),
    ("config_int.h5", _config_attr(3), "attribute 'config': expected the run config as YAML"),
    ("round_trips_2d.h5", _replace("round_trips", lambda r: r[:, None]),
     "field 'round_trips': expected shape (12,), got (12, 1)"),
    ("round_trips_float.h5", _replace("round_trips", lambda r: r + 0.5),
     "field 'round_trips': expected integers"),
    ("swap_short.h5", _replace("swap_acceptance", lambda a: a[:, :-1]),
     "field 'swap_acceptance': expected shape (12, 3), got (12, 2)"),
    ("ladder_nan.h5", _set("ladder_energy_var", lambda v: v.__setitem__((3, 1), np.nan)),
     "field 'ladder_energy_var': expected finite numbers"),
    ("temperatures_long.h5", _replace("temperatures", lambda t: np.append(t, 0.01)),
     "field 'temperatures': expected shape (4,), got (5,)"),
    ("couplings_shape.h5", _replace("couplings", lambda c: c[:1]),
     "field 'couplings': expected shape (2, 2, 2), got (1, 2, 2)"),
]


@pytest.mark.parametrize("name,edit,expected", BAD_FILES)
def test_inspect_bad_files(broken_copy, tmp_path, name, edit, expected):
    path = broken_copy(name, edit)
    code, output = run(["inspect", str(path), "--plots", str(tmp_path / "plots")])
    assert_clean_error(code, output, name, expected)
    assert not (tmp_path / "plots").exists()


def test_inspect_missing_file(tmp_path):
    code, output = run(["inspect", str(tmp_path / "none.h5")])
    assert_clean_error(code, output, "none.h5", "no such data file")


def test_inspect_summary_and_plots(small_dataset, tmp_path):
    code, output = run(["inspect", str(small_dataset), "--plots", str(tmp_path / "p")])
    assert code == 0, output
    assert "12 sequences x 3 snapshots" in output and "swap rates" in output
    assert (tmp_path / "p" / "dataset.png").stat().st_size > 10_000
    assert (tmp_path / "p" / "dataset_summary.json").exists()


@pytest.mark.parametrize("name,edit,expected", [BAD_FILES[0], BAD_FILES[5],
                                                ("nospins.h5", _drop("spins"),
                                                 "field 'spins' missing")])
def test_extract_bad_files(broken_copy, tmp_path, name, edit, expected):
    path = broken_copy(name, edit)
    code, output = run(["extract", "--method", "oracle", "--data", str(path), "--out",
                        str(tmp_path / "x")])
    assert_clean_error(code, output, name, expected)
    assert not (tmp_path / "x").exists()


def test_unreadable_inputs_and_unwritable_outputs_are_one_line(tmp_path, small_dataset):
    """A binary file as the config, a YAML syntax error, a folder as the preset, an output
    under a file, bad readout times, an existing sample output: one line, exit 2."""
    cfg = write_config(tmp_path / "cfg.yaml", sequences=2)
    broken = tmp_path / "broken.yaml"
    broken.write_text("system: [\n  types: A\n")
    published = str(REPO / "tests" / "data" / "mini_af3_epoch_20.pt")
    taken = tmp_path / "taken.h5"
    taken.write_bytes(b"mine")
    cases = [
        (["simulate", "--config", str(small_dataset), "--out", str(tmp_path / "a.h5")],
         "not a text file"),
        (["simulate", "--config", str(broken), "--out", str(tmp_path / "a.h5")],
         "not valid YAML"),
        (["reproduce", "--preset", str(tmp_path), "--out", str(tmp_path / "r")], "--preset"),
        (["simulate", "--config", str(cfg), "--out", str(cfg / "a.h5")], "cfg.yaml"),
        (["extract", "--data", str(small_dataset), "--checkpoint", published, "--out",
          str(tmp_path / "x"), "--t-eval", "nan"], "--t-eval: expected a time"),
        (["extract", "--data", str(small_dataset), "--checkpoint", published, "--out",
          str(tmp_path / "x"), "--t-extrapolate", "0.1,inf"], "--t-extrapolate: expected"),
        (["ood", "--data", str(small_dataset), "--checkpoint", published, "--out",
          str(tmp_path / "o"), "--ood", f"hot={small_dataset}", "--t-eval", "1e300"],
         "--t-eval: expected a time"),
        (["sample", "--checkpoint", published, "--sequence", "ABBABAABBBABABBAABAB", "--out",
          str(taken)], "taken.h5: exists; pass --overwrite"),
    ]
    for args, expected in cases:
        code, output = run(args)
        assert_clean_error(code, output, expected)
    assert taken.read_bytes() == b"mine"


def test_train_options_that_cannot_work_are_refused_first(tmp_path, small_dataset):
    cfg = write_config(tmp_path / "cfg.yaml", sequences=2)
    base = ["train", "--data", str(small_dataset), "--config", str(cfg), "--out",
            str(tmp_path / "run"), "--quiet"]
    assert_clean_error(*run([*base, "--device", "foo"]), "--device")
    assert_clean_error(*run([*base, "--resume", "--overwrite"]), "--resume and --overwrite")
    assert not (tmp_path / "run").exists()
