"""Data-set files: crash-safe chunked writing, assembly into HDF5, validated reading.

A simulation writes each finished chunk of chains as its own file `OUT.parts/chunk_NNNNNN.npz`
(written to a temporary name, then renamed: a chunk file is either complete or absent). When all
chunks are there they are assembled into a temporary file beside OUT and renamed to OUT. A
killed run resumes by skipping the chunks already on disk; since every chain depends only on
(config, index), the resumed file is identical to an uninterrupted one.

HDF5 layout (one data set):
    spins               float32 (n_seq, n_snap, L_max, 3)  unit spins, zero padding
    types               int8    (n_seq, L_max)             site types, -1 on padding
    length              int32   (n_seq,)
    energy              float64 (n_seq, n_snap)            H of the stored spins, units of J
    swap_acceptance     float64 (n_seq, R-1)               per neighbouring temperature pair
    ladder_energy_mean  float64 (n_seq, R)                 <E> at each ladder temperature
    ladder_energy_var   float64 (n_seq, R)                 Var E at each ladder temperature
    round_trips         int32   (n_seq,)
    temperatures        float64 (R,)                       ladder, hottest first
    couplings           float64 (K, n_types, n_types)      J_r(a, b)
    attrs: config (resolved YAML), spinscore_version, git_commit, seed, type_names,
           parameter_names, format_version
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spinscore import __version__
from spinscore.config import DATA_SECTIONS, RunConfig, parse_config
from spinscore.errors import DataError, SpinscoreError

FORMAT_VERSION = 1
CHUNK_FIELDS = (
    "spins", "types", "length", "energy", "swap_acceptance",
    "ladder_energy_mean", "ladder_energy_var", "round_trips",
)  # fmt: skip
UNIT_NORM_TOL = 1e-4  # float32 storage keeps |S| = 1 to ~1e-7


def git_commit() -> str:
    """The commit of the source tree this package runs from, or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary file beside `path` for the caller to write; when the block ends it is
    synced to disk and renamed to `path`, and the folder is synced, so a crash (or a power
    loss) leaves the old file or the new one, never part of one. On an exception the temporary
    file is removed and `path` is untouched. The name is unique (`.NAME.XXXX.tmp`), so two
    writers of one path never write into each other's file."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows): the rename is all it has
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


class ChunkStore:
    """The directory of finished chunks of one simulation, `OUT.parts/`.

    It records a fingerprint of the configuration; resuming with a different configuration is
    refused, so chunks of two different runs are never mixed.
    """

    def __init__(self, out: Path, config: RunConfig):
        self.dir = out.with_name(out.name + ".parts")
        self.config_text = config.to_yaml(DATA_SECTIONS)
        self.fingerprint = hashlib.sha256(self.config_text.encode()).hexdigest()

    def open(self) -> None:
        stamp = self.dir / "config.yaml"
        if stamp.exists():
            if stamp.read_text() != self.config_text:
                raise SpinscoreError(
                    f"{self.dir}: unfinished chunks of a run with another configuration; "
                    "rerun with the same arguments, or pass --overwrite to discard them"
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(stamp, self.config_text.encode())

    def path(self, chunk: range) -> Path:
        return self.dir / f"chunk_{chunk.start:07d}_{chunk.stop:07d}.npz"

    def done(self, chunk: range) -> bool:
        return self.path(chunk).exists()

    def save(self, chunk: range, arrays: dict[str, np.ndarray]) -> None:
        import io as _io

        buf = _io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path(chunk), buf.getvalue())

    def load(self, chunk: range) -> dict[str, np.ndarray]:
        path = self.path(chunk)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable chunk is reported the same way
            raise DataError(f"{path}: unreadable chunk file ({exc}); delete it to recompute") from None
        if list(arrays.get("index", [])) != list(chunk):
            raise DataError(f"{path}: holds chains {arrays.get('index')}, expected {chunk}")
        return arrays

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def write_dataset(out: Path, config: RunConfig, store: ChunkStore, chunks: list[range],
                  temperatures: np.ndarray) -> None:
    """Assemble the finished chunks into the HDF5 file `out` (atomically)."""
    system, sim = config.system, config.simulation
    with atomic_path(out) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        datasets = {}
        for chunk in chunks:
            arrays = store.load(chunk)
            for name in CHUNK_FIELDS:
                if name not in datasets:
                    shape = (sim.sequences, *arrays[name].shape[1:])
                    chunk_shape = (min(sim.chunk_size, sim.sequences), *arrays[name].shape[1:])
                    datasets[name] = f.create_dataset(
                        name, shape=shape, dtype=arrays[name].dtype,
                        chunks=chunk_shape if all(chunk_shape) else None, track_times=False,
                    )  # fmt: skip
                datasets[name][chunk.start : chunk.stop] = arrays[name]
        f.create_dataset("temperatures", data=temperatures, track_times=False)
        f.create_dataset("couplings", data=system.coupling_table(), track_times=False)
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["config"] = config.to_yaml(DATA_SECTIONS)
        f.attrs["spinscore_version"] = __version__
        f.attrs["git_commit"] = git_commit()
        f.attrs["seed"] = sim.seed
        f.attrs["type_names"] = json.dumps(list(system.types))
        f.attrs["parameter_names"] = json.dumps(system.parameter_names())


# --- reading ------------------------------------------------------------------------------------


class Dataset:
    """A validated data set in memory. Arrays as in the module docstring; `config` is the
    `RunConfig` it was simulated with."""

    def __init__(self, path: Path, config: RunConfig, arrays: dict[str, np.ndarray],
                 attrs: dict[str, Any]):
        self.path, self.config, self.attrs = path, config, attrs
        self.arrays = arrays

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def n_sequences(self) -> int:
        return self.arrays["spins"].shape[0]

    def head(self, n: int) -> Dataset:
        """The first `n` sequences with all their snapshots. Sequences are independent draws
        (types and length) in index order, so this is an unbiased subset; the snapshot
        iterators sort by length, and cutting one of them short is not."""
        if n >= self.n_sequences:
            return self
        per_sequence = {k: v[:n] if k in CHUNK_FIELDS else v for k, v in self.arrays.items()}
        return Dataset(self.path, self.config, per_sequence, self.attrs)

    @property
    def n_snapshots(self) -> int:
        return self.arrays["spins"].shape[1]

    @property
    def valid(self) -> np.ndarray:
        """(n_seq, L_max) bool, True on real sites."""
        return self.arrays["types"] >= 0


def open_hdf5(path: Path, what: str) -> h5py.File:
    """`path` opened read-only; DataError "PATH: no such WHAT" or "not a readable HDF5 file"."""
    if not path.exists():
        raise DataError(f"{path}: no such {what}")
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a {what}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): "
                        f"{' '.join(str(exc).split())}") from None


def read_dataset(path: str | Path, fields: tuple[str, ...] | None = None) -> Dataset:
    """Open and validate a data set; raise `DataError` naming the file and the field.

    Checks: readable HDF5, required fields with the expected dtypes and shapes, types within
    the configured range and -1 exactly beyond each chain's length, finite unit spins on real
    sites (|S| = 1 within 1e-4) and zeros on padding.
    """
    path = Path(path)
    with open_hdf5(path, "data file") as f:
        if "config" not in f.attrs:
            raise DataError(f"{path}: attribute 'config' missing: not a spinscore data set")
        if not isinstance(f.attrs["config"], str | bytes):
            raise DataError(f"{path}: attribute 'config': expected the run config as YAML text, "
                            f"got {type(f.attrs['config']).__name__}")
        config = parse_config(_yaml(f.attrs["config"], path), f"{path} (attribute config)")
        wanted = CHUNK_FIELDS + ("temperatures", "couplings") if fields is None else fields
        arrays = {}
        for name in wanted:
            if name not in f:
                raise DataError(f"{path}: field '{name}' missing")
            if not isinstance(f[name], h5py.Dataset):
                raise DataError(f"{path}: field '{name}': expected an array, got an HDF5 group")
            try:
                arrays[name] = f[name][()]
            except (OSError, RuntimeError) as exc:
                raise DataError(f"{path}: field '{name}' unreadable (corrupt?): {exc}") from None
        attrs = {k: f.attrs[k] for k in f.attrs}
    _validate(path, config, arrays)
    return Dataset(path, config, arrays, attrs)


def _yaml(text: Any, path: Path) -> Any:
    import yaml

    from spinscore.config.load import yaml_problem

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: attribute 'config' is not valid YAML: {yaml_problem(exc)}"
                        ) from None


def _validate(path: Path, config: RunConfig, a: dict[str, np.ndarray]) -> None:
    def fail(field: str, what: str) -> None:
        raise DataError(f"{path}: field '{field}': {what}")

    l_max = config.system.n_sites_range[1]
    if "spins" in a:
        s = a["spins"]
        if s.ndim != 4 or s.shape[2] != l_max or s.shape[3] != 3:
            fail("spins", f"expected shape (n_seq, n_snap, {l_max}, 3), got {s.shape}")
        if not np.issubdtype(s.dtype, np.floating):
            fail("spins", f"expected floats, got {s.dtype}")
    if "types" in a:
        t = a["types"]
        if t.ndim != 2 or t.shape[1] != l_max:
            fail("types", f"expected shape (n_seq, {l_max}), got {t.shape}")
        if not np.issubdtype(t.dtype, np.integer):
            fail("types", f"expected integers, got {t.dtype}")
        if t.min(initial=0) < -1 or t.max(initial=0) >= config.system.n_types:
            fail("types", f"expected values in -1..{config.system.n_types - 1}")
        if "length" in a:
            if a["length"].shape != t.shape[:1]:
                fail("length", f"expected shape {t.shape[:1]}, got {a['length'].shape}")
            expect = np.arange(l_max)[None, :] < a["length"][:, None]
            if not np.array_equal(t >= 0, expect):
                fail("length", "does not match the non-padding sites of 'types'")
    if "spins" in a and "types" in a:
        s, valid = a["spins"], a["types"] >= 0
        if s.shape[0] != valid.shape[0]:
            fail("spins", f"{s.shape[0]} sequences but 'types' has {valid.shape[0]}")
        if not np.all(np.isfinite(s)):
            bad = np.argwhere(~np.isfinite(s))[0]
            fail("spins", f"non-finite value at sequence {bad[0]}, snapshot {bad[1]}, site {bad[2]}")
        norms = np.linalg.norm(s.astype(np.float64), axis=-1)
        off = np.abs(norms - 1.0) * valid[:, None, :]
        if off.max(initial=0) > UNIT_NORM_TOL:
            bad = np.unravel_index(np.argmax(off), off.shape)
            fail("spins", f"not a unit vector at sequence {bad[0]}, snapshot {bad[1]}, site "
                 f"{bad[2]} (|S| = {norms[bad]:.6g})")
        if np.any(norms * ~valid[:, None, :] != 0):
            fail("spins", "non-zero values on padding sites")
    n_seq = next((a[k].shape[0] for k in ("spins", "types") if k in a and a[k].ndim), None)
    for name, shape in _expected_shapes(config, n_seq, a).items():
        if name in a and a[name].shape != shape:
            fail(name, f"expected shape {shape}, got {a[name].shape}")
    for name in ("energy", "temperatures", "swap_acceptance", "ladder_energy_mean",
                 "ladder_energy_var", "couplings"):
        if name in a and not (np.issubdtype(a[name].dtype, np.number)
                              and np.all(np.isfinite(a[name]))):
            fail(name, "expected finite numbers")
    if "round_trips" in a and not np.issubdtype(a["round_trips"].dtype, np.integer):
        fail("round_trips", f"expected integers, got {a['round_trips'].dtype}")


def _expected_shapes(config: RunConfig, n_seq: int | None, a: dict[str, np.ndarray]
                     ) -> dict[str, tuple[int, ...]]:
    """The shapes the module docstring gives for the fields known from `config`, the number
    of sequences `n_seq` (None: unknown, per-sequence fields unchecked) and the spins."""
    replicas = config.simulation.replicas
    shapes = {"temperatures": (replicas,), "couplings": config.system.coupling_table().shape}
    if n_seq is not None:
        shapes.update({"round_trips": (n_seq,), "swap_acceptance": (n_seq, replicas - 1),
                       "ladder_energy_mean": (n_seq, replicas),
                       "ladder_energy_var": (n_seq, replicas)})
        if "spins" in a:
            shapes["energy"] = a["spins"].shape[:2]
    return shapes
