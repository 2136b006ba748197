"""`spinscore simulate`: file contents, determinism, kill-and-resume, Dask."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import make_config, write_config
from spinscore.cli import main
from spinscore.io import atomic_path, read_dataset
from spinscore.physics.hamiltonian import bond_couplings, energy
from spinscore.sampling.remc import simulate_chunk
from spinscore.sampling.simulate import simulate_dataset


def h5_contents(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in f}
        attrs = {k: f.attrs[k] for k in f.attrs}
    return data, attrs


def assert_same_file(a, b):
    da, aa = h5_contents(a)
    db, ab = h5_contents(b)
    assert da.keys() == db.keys() and aa.keys() == ab.keys()
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)
    for k in aa:
        assert str(aa[k]) == str(ab[k]), k
    assert a.read_bytes() == b.read_bytes()


def test_dataset_fields(small_dataset):
    ds = read_dataset(small_dataset)
    cfg = make_config()
    assert ds.config == cfg
    n, l_max = 12, cfg.system.length[1]
    assert ds.spins.shape == (n, 3, l_max, 3) and ds.spins.dtype == np.float32
    assert ds.types.shape == (n, l_max) and ds.types.dtype == np.int8
    assert ds.energy.dtype == np.float64 and ds.energy.shape == (n, 3)
    assert ds.swap_acceptance.shape == (n, 3)
    assert np.all((ds.length >= 20) & (ds.length <= 50))
    # the stored energy is the energy of the stored spins
    bonds = bond_couplings(ds.types, cfg.system.coupling_table())[:, None]
    np.testing.assert_allclose(ds.energy, energy(ds.spins.astype(float), bonds), rtol=0, atol=1e-12)
    assert np.all(ds.spins.transpose(0, 2, 1, 3)[~ds.valid] == 0)
    assert ds.attrs["seed"] == 7 and "spinscore_version" in ds.attrs
    np.testing.assert_allclose(ds.temperatures, [1.0, 0.3684, 0.1357, 0.05], rtol=1e-3)


def test_chains_do_not_depend_on_chunking():
    cfg = make_config()
    whole = simulate_chunk(cfg, range(0, 6))
    parts = [simulate_chunk(cfg, range(0, 2)), simulate_chunk(cfg, range(2, 6))]
    for key in whole:
        np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))


def test_same_file_whatever_the_thread_count(tmp_path, small_dataset):
    one = simulate_dataset(make_config(), tmp_path / "one.h5", threads=1, progress=False)
    assert_same_file(one, small_dataset)  # the fixture used 2 threads


def test_refuses_to_overwrite(tmp_path):
    cfg_path = write_config(tmp_path / "c.yaml", sequences=2)
    out = tmp_path / "d.h5"
    runner = CliRunner()
    args = ["simulate", "--config", str(cfg_path), "--out", str(out), "--quiet"]
    assert runner.invoke(main, args).exit_code == 0
    stamp = out.stat().st_mtime_ns
    res = runner.invoke(main, args)
    assert res.exit_code == 2 and "exists; pass --overwrite" in res.output
    assert out.stat().st_mtime_ns == stamp
    assert runner.invoke(main, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_kill_and_resume_gives_the_same_file(tmp_path, overwrite):
    """Killed, then the plain command again; a killed `--overwrite` of an older file too (its
    rerun needs no --overwrite: the older file went first, the finished chunks stay)."""
    cfg_path = write_config(tmp_path / "c.yaml", sequences=24, chunk_size=2, burn_in=400,
                            thinning=40)
    ref = tmp_path / "ref.h5"
    simulate_dataset(make_config(sequences=24, chunk_size=2, burn_in=400, thinning=40), ref,
                     threads=1, progress=False)
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "spinscore.cli", "simulate", "--config", str(cfg_path),
           "--out", str(out), "--threads", "1", "--quiet"]
    if overwrite:
        simulate_dataset(make_config(sequences=2), out, threads=1, progress=False)
    proc = subprocess.Popen(cmd + ["--overwrite"] * overwrite)
    parts = tmp_path / "killed.h5.parts"
    deadline = time.time() + 120
    while len(list(parts.glob("chunk_*.npz"))) < 3:
        assert proc.poll() is None, "finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list(parts.glob("chunk_*.npz")))
    assert not out.exists() and 3 <= n_done < 12
    subprocess.run(cmd, check=True)
    assert not parts.exists()
    assert_same_file(out, ref)


@pytest.mark.slow
def test_dask_cluster_gives_the_same_file(tmp_path, small_dataset):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        cfg_path = write_config(tmp_path / "c.yaml")
        out = tmp_path / "dask.h5"
        res = CliRunner().invoke(main, ["simulate", "--config", str(cfg_path), "--out", str(out),
                                        "--scheduler", cluster.scheduler_address, "--quiet"])
        assert res.exit_code == 0, res.output
    assert_same_file(out, small_dataset)


def test_atomic_path_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "data.h5"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as first, atomic_path(target) as second:  # two writers at once
        assert first != second and first.parent == second.parent == tmp_path
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the last rename wins, whole
    assert list(tmp_path.iterdir()) == [target]
